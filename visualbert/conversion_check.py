"""The one place a conversion table is applied, with the checks every checkpoint conversion makes: each source key
mapped or declared ignored, each key the table needs present, each converted shape that of the target model, each
target parameter produced. Used by the PyTorch tables (:mod:`visualbert.conversion`, BERT and the VCR detector)
and the contest-port table (:mod:`visualbert.conversion_contest`); what is particular to a source (tied entries,
buffers) is checked by its module before.
"""

import numpy as np

MAX_LISTED_KEYS = 10


def listed_keys(keys, limit=MAX_LISTED_KEYS):
    """str: the first ``limit`` of ``keys`` (sorted), comma-separated, with how many more there are."""
    keys = sorted(keys)
    return ", ".join(keys[:limit]) + (f" ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def apply_conversion_table(source, table, target, source_name="the source", ignored=(), expected_shapes=None,
                           expected_prefix=""):
    """Applies a (source key, target key, transpose) table to a state dict.

    Args:
        source (dict[str, np.ndarray]): source name → array (any float dtype; converted to float32).
        table (list[tuple[str, str, bool]]): the rows; ``transpose`` turns a 2-D [out, in] Linear weight into
            Paddle's [in, out].
        target (str): what the table converts into, named in messages (e.g. ``"VisualBertForQuestionAnswering"``).
        source_name (str): the source, named in messages (e.g. ``"the contest-port checkpoint"``).
        ignored (iterable[str]): source keys that map to nothing (the caller has checked them).
        expected_shapes (dict[str, list[int]], optional): target key → shape of the model; when given, every row
            must produce one of its keys with that shape, and every key of it under ``expected_prefix`` must be
            produced.
        expected_prefix (str): for a model converted in parts: only its keys with this prefix must be produced here.

    Returns:
        dict[str, np.ndarray]: target key → contiguous float32 array.

    Raises:
        KeyError: a source key neither mapped nor ignored, a key the table needs that the source lacks, a row whose
            target the model does not have, or a model key not produced; the keys are named.
        ValueError: a converted shape that is not the model's, or a transposed entry that is not 2-D (named).
    """
    mapped = {src for src, _, _ in table}
    ignored = set(ignored)
    unknown = [k for k in source if k not in mapped and k not in ignored]
    if unknown:
        raise KeyError(f"{len(unknown)} keys of {source_name} are not in the conversion table for {target}: "
                       f"{listed_keys(unknown)}")
    missing = [src for src in mapped if src not in source]
    if missing:
        raise KeyError(f"{len(missing)} keys needed by {target} are missing from {source_name}: {listed_keys(missing)}")
    out = {}
    for src, dst, transpose in table:
        value = np.asarray(source[src], dtype=np.float32)
        if transpose:
            if value.ndim != 2:
                raise ValueError(f"{src}: expected a 2-D Linear weight to transpose, got shape {list(value.shape)}")
            value = value.T
        value = np.ascontiguousarray(value)
        if expected_shapes is not None:
            if dst not in expected_shapes:
                raise KeyError(f"the conversion table produces {dst!r}, which {target} does not have")
            if list(value.shape) != list(expected_shapes[dst]):
                raise ValueError(f"{src} → {dst}: shape {list(value.shape)} after conversion, the Paddle model "
                                 f"expects {list(expected_shapes[dst])}")
        out[dst] = value
    if expected_shapes is not None:
        not_produced = [k for k in expected_shapes if k.startswith(expected_prefix) and k not in out]
        if not_produced:
            raise KeyError(f"{len(not_produced)} parameters of {target} are not produced by the conversion table: "
                           f"{listed_keys(not_produced)}")
    return out


__all__ = ["apply_conversion_table", "listed_keys"]
