"""Masked-LM masking (BERT 15%, 80/10/10). Special tokens and visual positions are never masked.

The ignore index lives in :mod:`visualbert.constants` (``IGNORE_INDEX``) and is used only through here
and the collator.
"""

import numpy as np

from ..constants import IGNORE_INDEX


def check_mask_probabilities(mask_prob, mask_frac=0.8, random_frac=0.1):
    """Raises ``ValueError`` unless ``mask_prob``, ``mask_frac`` and ``random_frac`` are probabilities and
    ``mask_frac + random_frac <= 1`` (see :func:`mask_tokens`). Datasets call it at construction, so a bad
    ``--mask_prob`` fails at start-up, not at the first example."""
    for name, value in (("mask_prob", mask_prob), ("mask_frac", mask_frac), ("random_frac", random_frac)):
        try:
            ok = 0.0 <= float(value) <= 1.0
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise ValueError(f"{name} must be a probability in [0, 1], got {value!r}")
    if float(mask_frac) + float(random_frac) > 1.0:
        raise ValueError(f"mask_frac + random_frac must be <= 1, got {mask_frac} + {random_frac}")


def random_token_candidates(tokenizer):
    """Ids a "random token" replacement may draw: every vocabulary entry that is not ``[...]``-bracketed.

    Args:
        tokenizer: a paddlenlp ``BertTokenizer``.

    Returns:
        np.ndarray: int64 [K], sorted.
    """
    vocab = tokenizer.vocab.token_to_idx if hasattr(tokenizer.vocab, "token_to_idx") else tokenizer.vocab
    ids = [i for t, i in vocab.items() if not (t.startswith("[") and t.endswith("]"))]
    return np.array(sorted(ids), dtype=np.int64)


def mask_tokens(input_ids, special_mask, rng, mask_token_id, candidate_ids, mask_prob=0.15, mask_frac=0.8, random_frac=0.1):
    """Chooses MLM targets and corrupts the input.

    Each non-special position is chosen with probability ``mask_prob``; a chosen position becomes
    ``[MASK]`` with probability ``mask_frac``, a random token with ``random_frac``, else stays unchanged.

    Args:
        input_ids (np.ndarray): int64 [T].
        special_mask (np.ndarray): bool [T], True for positions never to mask ([CLS], [SEP], answer slot...).
        rng (np.random.Generator): randomness (seed it per example and epoch for reproducibility).
        mask_token_id (int): id of ``[MASK]``.
        candidate_ids (np.ndarray): int64 [K], ids a random replacement is drawn from.
        mask_prob (float): probability a position is a target.
        mask_frac (float): share of targets replaced by ``[MASK]``.
        random_frac (float): share of targets replaced by a random token.

    Returns:
        tuple[np.ndarray, np.ndarray]: corrupted ``input_ids`` int64 [T] and ``labels`` int64 [T]
        (the original id at targets, ``IGNORE_INDEX`` elsewhere).
    """
    check_mask_probabilities(mask_prob, mask_frac, random_frac)
    ids = np.array(input_ids, dtype=np.int64, copy=True)
    special = np.asarray(special_mask, dtype=bool)
    n = ids.shape[0]
    chosen = (rng.random(n) < mask_prob) & ~special
    labels = np.full(n, IGNORE_INDEX, dtype=np.int64)
    labels[chosen] = ids[chosen]
    u = rng.random(n)
    to_mask = chosen & (u < mask_frac)
    to_random = chosen & (u >= mask_frac) & (u < mask_frac + random_frac)
    ids[to_mask] = mask_token_id
    if to_random.any():
        ids[to_random] = candidate_ids[rng.integers(0, len(candidate_ids), int(to_random.sum()))]
    return ids, labels
