"""Shared command-line defaults."""

import argparse

from visualbert.cli import finalize_task_defaults


def _args(**values):
    base = dict(no_eval=False, metric_for_best=None, greater_is_better=None)
    base.update(values)
    return argparse.Namespace(**base)


def test_task_default_metric_and_direction():
    args = _args()
    finalize_task_defaults(args, "soft_accuracy", True)
    assert (args.metric_for_best, args.greater_is_better) == ("soft_accuracy", True)


def test_a_loss_picked_as_best_metric_is_minimised():
    for metric in ("loss", "mlm_loss", "error_rate"):
        args = _args(metric_for_best=metric)
        finalize_task_defaults(args, "accuracy", True)
        assert args.greater_is_better is False, metric
    args = _args(metric_for_best="consistency")
    finalize_task_defaults(args, "accuracy", True)
    assert args.greater_is_better is True


def test_explicit_direction_wins():
    args = _args(metric_for_best="loss", greater_is_better=True)
    finalize_task_defaults(args, "accuracy", True)
    assert args.greater_is_better is True


def test_no_eval_has_no_best_metric():
    args = _args(no_eval=True)
    finalize_task_defaults(args, "accuracy", True)
    assert args.metric_for_best is None
