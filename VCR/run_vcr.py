#!/usr/bin/env python
"""Fine-tune VisualBERT on VCR, Q->A (``--mode qa``) or QA->R (``--mode qar``): cross-entropy over 4 choices.

    python VCR/run_vcr.py --mode qa --data_dir data/vcr --features data/vcr/features \
        --model_name_or_path checkpoints/visualbert-vcr-pre --output_dir runs/vcr_qa
"""

from visualbert.build import build_collator, build_dataset, build_model
from visualbert.cli import main_wrapper, training_parser
from visualbert.config import TrainConfig
from visualbert.distributed import setup_process
from visualbert.engine import fit
from visualbert.tasks import VCR
from visualbert.tokenizer import load_tokenizer


def main(argv=None, callbacks=()):
    parser = training_parser(__doc__, learning_rate=2e-5, batch_size=32, num_train_epochs=8)
    VCR.add_data_args(parser, train=True)
    args = parser.parse_args(argv)
    config = TrainConfig.from_args(args, VCR)  # every usage error is raised here
    setup_process(config.seed)
    tokenizer = load_tokenizer(args.vocab_file)
    train_set = build_dataset(VCR, config.train_split, args, tokenizer)
    eval_set = build_dataset(VCR, config.eval_split, args, tokenizer) if config.eval_split else None
    model = build_model(args, VCR, train_set)
    fit(config, model, train_set, eval_set, VCR, build_collator(tokenizer), metadata={"vcr_mode": args.mode}, callbacks=callbacks)
    return 0


if __name__ == "__main__":
    main_wrapper(main)
