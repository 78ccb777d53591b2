#!/usr/bin/env python
"""Fine-tune VisualBERT on VQA2 (KL-divergence to the soft answer scores).

    python VQA2/run_vqa2.py --imdb_dir data/vqa2/imdb --features data/detectron_fix_100 \
        --model_name_or_path checkpoints/visualbert-vqa-pre --output_dir runs/vqa2
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from visualbert import runner  # noqa: E402
from visualbert.cli import main_wrapper, training_parser  # noqa: E402
from visualbert.modeling import VisualBertForQuestionAnswering  # noqa: E402
from visualbert.tasks import VQA2  # noqa: E402


def main(argv=None):
    parser = training_parser(__doc__, learning_rate=2e-5, batch_size=64, num_train_epochs=10)
    VQA2.add_data_args(parser, train=True)
    args = parser.parse_args(argv)
    runner.train_task(args, VQA2, VisualBertForQuestionAnswering, num_labels=lambda train: len(train.vocab))
    return 0


if __name__ == "__main__":
    main_wrapper(main)
