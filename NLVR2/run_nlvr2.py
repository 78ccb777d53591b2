#!/usr/bin/env python
"""Fine-tune VisualBERT on NLVR2 (cross-entropy on the pooled output; both images' regions, types 0/1).

    python NLVR2/run_nlvr2.py --data_dir data/nlvr2 --features data/detectron_fix_144 \
        --model_name_or_path checkpoints/visualbert-nlvr2-pre --output_dir runs/nlvr2
"""

from visualbert.build import build_collator, build_dataset, build_model
from visualbert.cli import main_wrapper, training_parser
from visualbert.config import TrainConfig
from visualbert.distributed import setup_process
from visualbert.engine import fit
from visualbert.tasks import NLVR2
from visualbert.tokenizer import load_tokenizer


def main(argv=None, callbacks=()):
    parser = training_parser(__doc__, learning_rate=2e-5, batch_size=64, num_train_epochs=10)
    NLVR2.add_data_args(parser, train=True)
    args = parser.parse_args(argv)
    config = TrainConfig.from_args(args, NLVR2)  # every usage error is raised here
    setup_process(config.seed)
    tokenizer = load_tokenizer(args.vocab_file)
    train_set = build_dataset(NLVR2, config.train_split, args, tokenizer)
    eval_set = build_dataset(NLVR2, config.eval_split, args, tokenizer) if config.eval_split else None
    model = build_model(args, NLVR2, train_set)
    fit(config, model, train_set, eval_set, NLVR2, build_collator(tokenizer), callbacks=callbacks)
    return 0


if __name__ == "__main__":
    main_wrapper(main)
