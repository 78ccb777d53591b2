"""The typed training configuration: task defaults for the best-model metric, validation in one place, frozen."""

import dataclasses

import pytest

from visualbert.cli import UsageError, training_parser
from visualbert.config import TrainConfig, best_metric
from visualbert.tasks import NLVR2


def test_task_default_metric_and_direction():
    assert best_metric(None, None, False, "soft_accuracy", True) == ("soft_accuracy", True)


def test_a_loss_picked_as_best_metric_is_minimised():
    for metric in ("loss", "mlm_loss", "error_rate"):
        assert best_metric(metric, None, False, "accuracy", True) == (metric, False), metric
    assert best_metric("consistency", None, False, "accuracy", True) == ("consistency", True)


def test_explicit_direction_wins():
    assert best_metric("loss", True, False, "accuracy", True) == ("loss", True)


def test_no_eval_has_no_best_metric():
    assert best_metric(None, None, True, "accuracy", True)[0] is None


def _parse(tmp_path, *argv):
    parser = training_parser("test")
    NLVR2.add_data_args(parser, train=True)
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    return parser.parse_args(["--output_dir", str(tmp_path / "run"), "--data_dir", str(data), "--features", str(data),
                              *argv])


def test_config_from_args_resolves_defaults_once_and_is_frozen(tmp_path):
    args = _parse(tmp_path, "--batch_size", "3")
    config = TrainConfig.from_args(args, NLVR2)
    assert (config.eval_batch_size, config.metric_for_best, config.greater_is_better) == (6, "accuracy", True)
    assert (config.train_split, config.eval_split) == ("train", "dev")
    assert args.eval_batch_size is None and args.metric_for_best is None  # the namespace is not changed
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.batch_size = 4
    with pytest.raises(TypeError):
        config.arguments["batch_size"] = 4  # the copy of the command line for args.json is read-only too
    assert config.arguments["batch_size"] == 3
    assert TrainConfig.from_args(_parse(tmp_path, "--no_eval"), NLVR2).eval_split is None
    # the original's recipe by default: BertAdam, pooler frozen, no early stopping unless asked
    assert (config.optimizer, config.train_pooler, config.patience) == ("bertadam", False, 0)
    assert TrainConfig.from_args(_parse(tmp_path, "--freeze_pooler"), NLVR2).train_pooler is False  # old alias


@pytest.mark.parametrize("argv, message", [
    (("--save_steps", "0"), "--save_steps must be a positive number of steps"),
    (("--gradient_accumulation_steps", "0"), "--gradient_accumulation_steps must be positive"),
    (("--learning_rate", "0"), "--learning_rate must be positive"),
    (("--num_train_epochs", "0"), "--num_train_epochs must be positive"),
    (("--eval_steps", "-1"), "--eval_steps must be >= 0"),
    (("--patience", "-1"), "--patience must be >= 0"),
    (("--freeze_pooler", "--train_pooler"), "contradict"),
])
def test_bad_values_are_one_usage_error(tmp_path, argv, message):
    with pytest.raises(UsageError, match=message):
        TrainConfig.from_args(_parse(tmp_path, *argv), NLVR2)


def test_an_existing_run_is_not_overwritten_silently(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "metrics.jsonl").write_text("{}\n")
    with pytest.raises(UsageError, match="already holds a run"):
        TrainConfig.from_args(_parse(tmp_path), NLVR2)
    assert TrainConfig.from_args(_parse(tmp_path, "--resume_from", "latest"), NLVR2).resume_from == "latest"
