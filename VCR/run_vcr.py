#!/usr/bin/env python
"""Fine-tune VisualBERT on VCR, Q->A (``--mode qa``) or QA->R (``--mode qar``): cross-entropy over 4 choices.

    python VCR/run_vcr.py --mode qa --data_dir data/vcr --features data/vcr/features \
        --model_name_or_path checkpoints/visualbert-vcr-pre --output_dir runs/vcr_qa
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from visualbert import runner  # noqa: E402
from visualbert.cli import main_wrapper, training_parser  # noqa: E402
from visualbert.modeling import VisualBertForMultipleChoice  # noqa: E402
from visualbert.tasks import VCR  # noqa: E402


def main(argv=None):
    parser = training_parser(__doc__, learning_rate=2e-5, batch_size=32, num_train_epochs=8)
    VCR.add_data_args(parser, train=True)
    args = parser.parse_args(argv)
    runner.train_task(args, VCR, VisualBertForMultipleChoice, extra_args_json={"vcr_mode": args.mode}, mode=args.mode)
    return 0


if __name__ == "__main__":
    main_wrapper(main)
