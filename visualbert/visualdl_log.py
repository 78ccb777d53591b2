"""VisualDL scalars of a training run (``--visualdl``, on by default in the training scripts).

:class:`VisualDLCallback` is a :class:`visualbert.engine.TrainerCallback`: every record the engine logs (the same
records as ``metrics.jsonl``, rank 0 only) becomes scalars under ``<output_dir>/visualdl``, tagged
``train/<key>`` (loss and its parts, learning rate, grad norm, throughput: whatever the train records hold) and
``eval/<key>`` (the task's metrics; nested dicts such as ``per_answer_type`` flattened to
``eval/per_answer_type.yes-no``), at the record's optimizer step. View with ``visualdl --logdir <output_dir>/visualdl``.
"""

from __future__ import annotations

import math
import os
from typing import Any, Iterator

from .engine import TrainerCallback

VISUALDL_DIR = "visualdl"
SKIPPED_KEYS = ("type", "step", "epoch")


def scalars(record: dict, prefix: str = "") -> Iterator[tuple[str, float]]:
    """(tag, value) of every finite number of ``record`` (nested dicts flattened with ``.``; ``/`` in a key, as in
    the answer type ``yes/no``, becomes ``-`` so that it does not open a VisualDL tag group)."""
    for key, value in record.items():
        if not prefix and key in SKIPPED_KEYS:
            continue
        name = prefix + str(key).replace("/", "-")
        if isinstance(value, dict):
            yield from scalars(value, name + ".")
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            yield name, float(value)


class VisualDLCallback(TrainerCallback):
    """Writes the logged records as VisualDL scalars under ``<output_dir>/visualdl`` (opened at the first record,
    closed at the end of training or by :meth:`close` when the run stops on an error or an interrupt)."""

    def __init__(self, logdir: str | None = None):
        self.logdir = logdir
        self.writer = None

    def on_log(self, trainer: Any, record: dict) -> None:
        if self.writer is None:
            from visualdl import LogWriter

            self.logdir = self.logdir or os.path.join(trainer.output_dir, VISUALDL_DIR)
            self.writer = LogWriter(logdir=self.logdir)
        kind = record.get("type", "train")
        for tag, value in scalars(record):
            self.writer.add_scalar(tag=f"{kind}/{tag}", value=value, step=int(record["step"]))

    def on_train_end(self, trainer: Any) -> None:
        self.close()

    def close(self) -> None:
        """Flushes and closes the event file (idempotent)."""
        if self.writer is not None:
            self.writer.close()
            self.writer = None
