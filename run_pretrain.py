#!/usr/bin/env python
"""VisualBERT pretraining: COCO captions (MLM + sentence-image matching), task pretraining on VQA2 (MLM on the
questions) or NLVR2 (MLM + the truth label through the sentence-image head).

    python run_pretrain.py --dataset coco_captions --data_dir data/coco/annotations \
        --features data/detectron_fix_100 --bert_model checkpoints/bert-base-uncased --output_dir runs/coco_pre
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from visualbert import runner  # noqa: E402
from visualbert.cli import main_wrapper, training_parser  # noqa: E402
from visualbert.modeling import VisualBertForPreTraining  # noqa: E402
from visualbert.tasks import Pretrain  # noqa: E402


def main(argv=None):
    parser = training_parser(__doc__, learning_rate=5e-5, batch_size=48, num_train_epochs=10)
    Pretrain.add_data_args(parser)
    args = parser.parse_args(argv)
    runner.train_task(args, Pretrain, VisualBertForPreTraining, extra_args_json={"pretrain_dataset": args.dataset})
    return 0


if __name__ == "__main__":
    main_wrapper(main)
