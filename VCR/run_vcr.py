#!/usr/bin/env python
"""Train VisualBERT on VCR: fine-tune Q->A (``--mode qa``) or QA->R (``--mode qar``), cross-entropy over 4 choices,
or (``--stage pretrain``, from the images) VCR task pre-training.

From precomputed region features (VisualBertForMultipleChoice):

    python VCR/run_vcr.py --mode qa --data_dir data/vcr --features data/vcr/features \
        --model_name_or_path checkpoints/visualbert-vcr-pre --output_dir runs/vcr_qa

From the images as the original (VisualBertForVCR: the jointly trained detector; ``--data_dir`` may be spelled
``--annotations``):

    python VCR/run_vcr.py --mode qa --data_dir data/vcr --images data/vcr/vcr1images \
        --model_name_or_path checkpoints/visualbert-vcr-pre --output_dir runs/vcr_qa
    python VCR/run_vcr.py --stage pretrain --data_dir data/vcr --images data/vcr/vcr1images \
        --model_name_or_path checkpoints/visualbert-vcr-coco-pre --output_dir runs/vcr_pre
"""

import argparse

from visualbert.build import build_collator, build_dataset, build_model
from visualbert.cli import main_wrapper, training_parser
from visualbert.config import TrainConfig
from visualbert.distributed import setup_process
from visualbert.engine import fit
from visualbert.tasks import VCR
from visualbert.tokenizer import load_tokenizer

# configs/vcr/fine-tune-qa.json (QA->R: 12 epochs, given by the launcher) and pre-train.json.
STAGE_DEFAULTS = {
    "finetune": dict(learning_rate=2e-5, batch_size=32, num_train_epochs=8),
    "pretrain": dict(learning_rate=5e-5, batch_size=32, num_train_epochs=1, warmup=0.1879),
}


def main(argv=None, callbacks=()):
    stage_parser = argparse.ArgumentParser(add_help=False)
    stage_parser.add_argument("--stage", choices=tuple(STAGE_DEFAULTS), default="finetune")
    stage = stage_parser.parse_known_args(argv)[0].stage
    parser = training_parser(__doc__, **STAGE_DEFAULTS[stage])
    VCR.add_data_args(parser, train=True)
    args = parser.parse_args(argv)
    task = VCR.for_args(args)
    config = TrainConfig.from_args(args, task)  # every usage error is raised here
    setup_process(config.seed)
    tokenizer = load_tokenizer(args.vocab_file)
    train_set = build_dataset(task, config.train_split, args, tokenizer)
    eval_set = build_dataset(task, config.eval_split, args, tokenizer) if config.eval_split else None
    model = build_model(args, task, train_set)
    metadata = {"vcr_mode": "pretrain" if stage == "pretrain" else args.mode, "vcr_input": "images" if args.images else "features"}
    fit(config, model, train_set, eval_set, task, build_collator(tokenizer), metadata=metadata, callbacks=callbacks)
    return 0


if __name__ == "__main__":
    main_wrapper(main)
