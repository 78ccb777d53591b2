#!/usr/bin/env python
"""VisualBERT pretraining: COCO captions (MLM + sentence-image matching), task pretraining on VQA2 (MLM on the
questions) or NLVR2 (MLM + the truth label through the sentence-image head).

    python run_pretrain.py --dataset coco_captions --data_dir data/coco/annotations \
        --features data/detectron_fix_100 --bert_model checkpoints/bert-base-uncased --output_dir runs/coco_pre
"""

from visualbert.build import build_collator, build_dataset, build_model
from visualbert.cli import main_wrapper, training_parser
from visualbert.config import TrainConfig
from visualbert.distributed import setup_process
from visualbert.engine import fit
from visualbert.tasks import Pretrain
from visualbert.tokenizer import load_tokenizer


def main(argv=None, callbacks=()):
    parser = training_parser(__doc__, learning_rate=5e-5, batch_size=48, num_train_epochs=10)
    Pretrain.add_data_args(parser)
    args = parser.parse_args(argv)
    config = TrainConfig.from_args(args, Pretrain)  # every usage error is raised here
    setup_process(config.seed)
    tokenizer = load_tokenizer(args.vocab_file)
    train_set = build_dataset(Pretrain, config.train_split, args, tokenizer)
    eval_set = build_dataset(Pretrain, config.eval_split, args, tokenizer) if config.eval_split else None
    model = build_model(args, Pretrain, train_set)
    fit(config, model, train_set, eval_set, Pretrain, build_collator(tokenizer), metadata={"pretrain_dataset": args.dataset}, callbacks=callbacks)
    return 0


if __name__ == "__main__":
    main_wrapper(main)
