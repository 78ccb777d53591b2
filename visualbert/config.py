"""The typed training configuration: every engine setting with its default in one place, built once from the parsed
command line (:meth:`TrainConfig.from_args`), validated in ``__post_init__`` and frozen afterwards.

The engine (:class:`visualbert.engine.Trainer`) receives a :class:`TrainConfig`, never the argparse namespace.
Model and data arguments stay with their builders (:func:`visualbert.build.build_model`,
:func:`visualbert.build.build_dataset`).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import types
from typing import Any, Mapping

from .cli import UsageError, check_model_args


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Settings of one training run (the flags of :func:`visualbert.cli.training_parser` of the same names).

    Attributes beyond the flags: ``train_split`` / ``eval_split`` are the resolved splits (``eval_split`` None when
    nothing is evaluated), ``metric_for_best`` / ``greater_is_better`` the resolved best-model criterion and
    ``arguments`` every parsed argument as given (written to ``args.json``, read by nothing else).
    """

    output_dir: str
    learning_rate: float = 2e-5
    batch_size: int = 64
    eval_batch_size: int = 128
    gradient_accumulation_steps: int = 1
    num_train_epochs: int = 10
    max_steps: int = -1
    warmup: float | int = 0.1
    weight_decay: float = 0.01
    adam_epsilon: float = 1e-6
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    max_grad_norm: float = 1.0
    train_pooler: bool = False
    optimizer: str = "bertadam"
    patience: int = 0
    seed: int = 42
    use_amp: bool = False
    amp_level: str = "O1"
    amp_dtype: str = "bfloat16"
    scale_loss: float | None = None
    fused_attention: str = "auto"
    overwrite_output_dir: bool = False
    resume_from: str | None = None
    logging_steps: int = 50
    save_steps: int = 1000
    save_total_limit: int = 0
    eval_steps: int = 0
    metric_for_best: str | None = None
    greater_is_better: bool = True
    num_workers: int = 0
    disable_tqdm: bool = False
    text_only: bool = False
    max_nonfinite_steps: int = 0
    visualdl: bool = False
    train_split: str | None = None
    eval_split: str | None = None
    arguments: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.save_steps <= 0:
            raise UsageError(f"--save_steps must be a positive number of steps, got {self.save_steps}")
        for name in ("logging_steps", "batch_size", "eval_batch_size", "gradient_accumulation_steps"):
            if getattr(self, name) <= 0:
                raise UsageError(f"--{name} must be positive, got {getattr(self, name)}")
        if self.max_steps <= 0 and self.num_train_epochs <= 0:
            raise UsageError("--num_train_epochs must be positive (or give --max_steps)")
        if self.eval_steps < 0:
            raise UsageError(f"--eval_steps must be >= 0, got {self.eval_steps}")
        if self.optimizer not in ("bertadam", "adamw"):
            raise UsageError(f"--optimizer must be bertadam or adamw, got {self.optimizer!r}")
        if self.patience < 0:
            raise UsageError(f"--patience must be >= 0, got {self.patience}")
        if self.optimizer == "bertadam" and isinstance(self.warmup, float) and self.warmup >= 1.0:
            raise UsageError(f"--warmup {self.warmup}: BertAdam's warmup proportion must be below 1")
        if self.learning_rate <= 0:
            raise UsageError(f"--learning_rate must be positive, got {self.learning_rate}")
        if self.resume_from and self.resume_from != "latest" and not os.path.isdir(self.resume_from):
            raise UsageError(f"--resume_from {self.resume_from!r} does not exist")
        from .rundir import check_output_dir, run_inputs

        if self.max_nonfinite_steps < 0:
            raise UsageError(f"--max_nonfinite_steps must be >= 0, got {self.max_nonfinite_steps}")
        check_output_dir(self.output_dir, self.resume_from, self.overwrite_output_dir, run_inputs(self.arguments))

    @classmethod
    def from_args(cls, args: argparse.Namespace, task: Any) -> "TrainConfig":
        """The configuration of a training script's parsed arguments and its task (:mod:`visualbert.tasks`).

        Checks the model and data arguments too (``task.check_data_args``), so that every usage error is raised
        here, before anything is built.

        Raises:
            UsageError: a bad argument (one line naming it).
        """
        check_model_args(args)
        task.check_data_args(args)
        if getattr(args, "freeze_pooler", False) and getattr(args, "train_pooler", False):
            raise UsageError("--freeze_pooler and --train_pooler contradict each other (the pooler is frozen by "
                             "default; --freeze_pooler is only kept for old command lines)")
        metric, greater = best_metric(args.metric_for_best, args.greater_is_better, args.no_eval,
                                      task.metric_for_best, task.greater_is_better)
        train_split, eval_split = task.splits(args)
        names = {f.name for f in dataclasses.fields(cls)} - {"arguments", "train_split", "eval_split",
                                                            "metric_for_best", "greater_is_better", "eval_batch_size"}
        values = {name: getattr(args, name) for name in names if hasattr(args, name)}
        eval_batch = args.eval_batch_size if args.eval_batch_size is not None else 2 * args.batch_size
        return cls(**values, eval_batch_size=eval_batch, metric_for_best=metric, greater_is_better=greater,
                   train_split=train_split, eval_split=eval_split if eval_split and not args.no_eval else None,
                   arguments=types.MappingProxyType(dict(vars(args))))


def best_metric(metric: str | None, greater_is_better: bool | None, no_eval: bool, task_metric: str,
                task_greater: bool) -> tuple[str | None, bool]:
    """(``metric_for_best``, ``greater_is_better``) from the flags and the task's defaults. For another metric than
    the task's, the direction is guessed from its name (losses and errors are minimised) unless given explicitly."""
    if no_eval:
        metric = None
    elif metric is None:
        metric = task_metric
    if greater_is_better is None:
        if metric == task_metric:
            greater_is_better = task_greater
        else:
            name = (metric or "").lower()
            greater_is_better = not any(word in name for word in ("loss", "error", "perplexity"))
    return metric, bool(greater_is_better)
