#!/usr/bin/env python
"""Fine-tune VisualBERT on NLVR2 (cross-entropy on the pooled output; both images' regions, types 0/1).

    python NLVR2/run_nlvr2.py --data_dir data/nlvr2 --features data/detectron_fix_144 \
        --model_name_or_path checkpoints/visualbert-nlvr2-pre --output_dir runs/nlvr2
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from visualbert import runner  # noqa: E402
from visualbert.cli import main_wrapper, training_parser  # noqa: E402
from visualbert.modeling import VisualBertForVisualReasoning  # noqa: E402
from visualbert.tasks import NLVR2  # noqa: E402


def main(argv=None):
    parser = training_parser(__doc__, learning_rate=2e-5, batch_size=64, num_train_epochs=10)
    NLVR2.add_data_args(parser, train=True)
    args = parser.parse_args(argv)
    runner.train_task(args, NLVR2, VisualBertForVisualReasoning)
    return 0


if __name__ == "__main__":
    main_wrapper(main)
