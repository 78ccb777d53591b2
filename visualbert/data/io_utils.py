"""Small file helpers: atomic writes used by every tool that writes data."""

import contextlib
import json
import os
import tempfile

import numpy as np


@contextlib.contextmanager
def atomic_path(path):
    """Yields a temporary path next to ``path``; on success it is renamed onto ``path`` (``os.replace``).

    A crash mid-write therefore never leaves a truncated file under the final name.
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


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
