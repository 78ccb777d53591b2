#!/usr/bin/env python
"""Fine-tune VisualBERT on VQA2 (KL-divergence to the soft answer scores).

    python VQA2/run_vqa2.py --imdb_dir data/vqa2/imdb --features data/detectron_fix_100 \
        --model_name_or_path checkpoints/visualbert-vqa-pre --output_dir runs/vqa2
"""

from visualbert.build import build_collator, build_dataset, build_model
from visualbert.cli import main_wrapper, training_parser
from visualbert.config import TrainConfig
from visualbert.distributed import setup_process
from visualbert.engine import fit
from visualbert.tasks import VQA2
from visualbert.tokenizer import load_tokenizer


def main(argv=None, callbacks=()):
    parser = training_parser(__doc__, learning_rate=2e-5, batch_size=64, num_train_epochs=10)
    VQA2.add_data_args(parser, train=True)
    args = parser.parse_args(argv)
    config = TrainConfig.from_args(args, VQA2)  # every usage error is raised here
    setup_process(config.seed)
    tokenizer = load_tokenizer(args.vocab_file)
    train_set = build_dataset(VQA2, config.train_split, args, tokenizer)
    eval_set = build_dataset(VQA2, config.eval_split, args, tokenizer) if config.eval_split else None
    model = build_model(args, VQA2, train_set)
    fit(config, model, train_set, eval_set, VQA2, build_collator(tokenizer), callbacks=callbacks)
    return 0


if __name__ == "__main__":
    main_wrapper(main)
