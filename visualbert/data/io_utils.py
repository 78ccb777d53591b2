"""Small file helpers: the JSON-lines reader of the annotation files and the atomic writes of the tools."""

import json
import os

import numpy as np

from ..atomic import atomic_path


def save_npy(path, array, allow_pickle=False):
    """Atomically writes ``array`` as a ``.npy`` file at exactly ``path``."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, array, allow_pickle=allow_pickle)


def save_json(path, obj, indent=None):
    """Atomically writes ``obj`` as JSON (sorted keys, deterministic)."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=indent, sort_keys=True)


def save_jsonl(path, rows):
    """Atomically writes one JSON object per line (sorted keys)."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, sort_keys=True) + "\n")


def save_text_lines(path, lines):
    """Atomically writes one string per line."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            for line in lines:
                f.write(f"{line}\n")


def read_jsonl(path, required_keys, what):
    """Reads a JSON-lines annotation file, one object per line (blank lines skipped).

    Args:
        path (str): the file.
        required_keys (tuple[str]): keys every line must have.
        what (str): what the file is, for messages (e.g. ``"NLVR2 annotation file"``).

    Returns:
        list[dict]: the parsed objects, each with its 1-based line number under ``"_line"``.

    Raises:
        FileNotFoundError: the file does not exist.
        DataFormatError: a line that is not a JSON object or lacks a key (file:line named), or no lines at all.
    """
    from .errors import DataFormatError

    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} {path} does not exist")
    rows = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataFormatError(f"{path}:{lineno}: not a JSON object ({e}): {line[:80]!r}") from e
            if not isinstance(row, dict):
                raise DataFormatError(f"{path}:{lineno}: expected a JSON object, got {type(row).__name__}")
            for key in required_keys:
                if key not in row:
                    raise DataFormatError(f"{path}:{lineno}: lacks {key!r} (keys: {sorted(row)})")
            row["_line"] = lineno
            rows.append(row)
    if not rows:
        raise DataFormatError(f"{path}: empty split (no annotation lines)")
    return rows
