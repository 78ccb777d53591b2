"""The VCR leaderboard's test file (R2C's ``models/eval_for_leaderboard.py`` layout), from Q->A and the 4 x 4
QA->R scores of the test split (``VCRImageDataset(mode="qar", expand_answers=True)``).

One CSV row per annotation: ``annot_id``, ``answer_0..3``, then ``rationale_conditioned_on_a{i}_{r}`` for answer i
and rationale r, every value a softmax probability over the 4 choices.
"""

import csv
from typing import Sequence

import numpy as np

from .fileio import atomic_path

GROUP_NAMES = ["answer"] + [f"rationale_conditioned_on_a{i}" for i in range(4)]
COLUMNS = ["annot_id"] + [f"{group}_{i}" for group in GROUP_NAMES for i in range(4)]


def _softmax(logits):
    logits = np.asarray(logits, dtype=np.float64)
    shifted = np.exp(logits - logits.max(-1, keepdims=True))
    return shifted / shifted.sum(-1, keepdims=True)


def leaderboard_probabilities(answer_logits, rationale_logits):
    """float64 [N, 5, 4]: answer probabilities, then rationale probabilities conditioned on answers 0..3.

    Args:
        answer_logits: float [N, 4] Q->A scores.
        rationale_logits: float [N, 4, 4] (or [4N, 4] in dataset order: line-major, answer-minor) QA->R scores.
    """
    answer_logits = np.asarray(answer_logits)
    if answer_logits.ndim != 2 or answer_logits.shape[1] != 4:
        raise ValueError(f"answer_logits must be [N, 4], got {list(answer_logits.shape)}")
    n = answer_logits.shape[0]
    rationale_logits = np.asarray(rationale_logits)
    if rationale_logits.size != n * 16:
        raise ValueError(f"rationale_logits has shape {list(rationale_logits.shape)}, expected [{n}, 4, 4] "
                         f"(QA->R for each of the 4 answers of the {n} questions)")
    rationale_logits = rationale_logits.reshape(n, 4, 4)
    return np.concatenate([_softmax(answer_logits)[:, None], _softmax(rationale_logits)], axis=1)


def write_leaderboard_csv(path: str, annot_ids: Sequence[str], answer_logits, rationale_logits):
    """Writes the submission CSV atomically (see the module docstring)."""
    probs = leaderboard_probabilities(answer_logits, rationale_logits)
    if len(annot_ids) != probs.shape[0]:
        raise ValueError(f"{len(annot_ids)} annot_ids for {probs.shape[0]} questions")
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(COLUMNS)
            for annot_id, row in zip(annot_ids, probs.reshape(len(annot_ids), 20)):
                writer.writerow([annot_id] + [repr(float(v)) for v in row])


__all__ = ["COLUMNS", "leaderboard_probabilities", "write_leaderboard_csv"]
