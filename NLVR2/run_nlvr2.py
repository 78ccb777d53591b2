#!/usr/bin/env python
"""Fine-tune VisualBERT on NLVR2 (cross-entropy on the pooled output; both images' regions, types 0/1).

    python NLVR2/run_nlvr2.py --data_dir data/nlvr2 --features data/detectron_fix_144 \
        --model_name_or_path checkpoints/visualbert-nlvr2-pre --output_dir runs/nlvr2
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from visualbert import runner  # noqa: E402
from visualbert.cli import finalize_task_defaults, main_wrapper, training_parser  # noqa: E402
from visualbert.modeling import VisualBertForVisualReasoning  # noqa: E402
from visualbert.tasks import NLVR2  # noqa: E402


def main(argv=None):
    parser = training_parser(__doc__, learning_rate=2e-5, batch_size=64, num_train_epochs=10)
    NLVR2.add_data_args(parser, train=True)
    args = parser.parse_args(argv)
    finalize_task_defaults(args, NLVR2.metric_for_best, NLVR2.greater_is_better)
    NLVR2.check_data_args(args)
    tokenizer = runner.prepare(args)
    train = NLVR2.dataset(args, tokenizer, args.train_split)
    evaluation = NLVR2.dataset(args, tokenizer, args.eval_split) if args.eval_split and not args.no_eval else None
    runner.train(args, VisualBertForVisualReasoning, train, evaluation, NLVR2.evaluate, 2, tokenizer)
    return 0


if __name__ == "__main__":
    main_wrapper(main)
