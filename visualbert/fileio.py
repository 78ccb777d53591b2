"""The one module that writes files: every writer of the package goes through :func:`atomic_path`.

A crash mid-write never leaves a truncated file under the final name (temporary file in the same directory, fsync,
``os.replace``); the result gets the permissions of a normally created file (``0o666`` minus the user's umask, not
``mkstemp``'s 0600). Directories (checkpoints, converted models) are written under a temporary name and moved into
place with :func:`replace_dir`. The JSON readers are here too, so that the writer and the reader of a format agree.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from typing import Any, Iterable, Iterator, Sequence

import numpy as np


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def fsync_dir(path: str) -> None:
    """Flushes a directory entry (after renames inside it); best effort (not every file system allows it)."""
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
    """Yields a temporary path next to ``path``; on success it is fsynced and renamed onto ``path``.

    On error the temporary file is removed and ``path`` is untouched. Parent directories are created.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def replace_dir(tmp_dir: str, final_dir: str) -> None:
    """Moves a completely written ``tmp_dir`` (on the same file system) to ``final_dir``; an existing
    ``final_dir`` is first renamed aside and removed only after the new one is in place."""
    fsync_dir(tmp_dir)
    trash = None
    if os.path.exists(final_dir):
        trash = tempfile.mkdtemp(prefix=".old-" + os.path.basename(final_dir) + "-",
                                 dir=os.path.dirname(os.path.abspath(final_dir)))
        os.replace(final_dir, os.path.join(trash, "old"))
    os.replace(tmp_dir, final_dir)
    if trash:
        shutil.rmtree(trash, ignore_errors=True)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Writes ``text`` (UTF-8, ``\\n`` line ends) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)


def json_default(obj: Any) -> Any:
    """``json.dumps`` fallback: numpy scalars and arrays become python numbers and lists."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


def to_json(obj: Any, indent: int | None = None, sort_keys: bool = False) -> str:
    """``json.dumps`` with numpy values allowed (see :func:`json_default`)."""
    return json.dumps(obj, indent=indent, sort_keys=sort_keys, default=json_default, allow_nan=True)


def write_json(path: str | os.PathLike, obj: Any, indent: int | None = 2, sort_keys: bool = False) -> None:
    """Writes ``obj`` as JSON (plus a final newline) atomically; numpy scalars / arrays are allowed.

    Raises:
        TypeError: ``obj`` holds something that cannot be serialised (nothing is written then).
    """
    write_text(path, to_json(obj, indent=indent, sort_keys=sort_keys) + "\n")


def write_jsonl(path: str | os.PathLike, rows: Iterable[Any], sort_keys: bool = True) -> None:
    """Writes one JSON value per line atomically."""
    write_text(path, "".join(to_json(row, sort_keys=sort_keys) + "\n" for row in rows))


def append_jsonl(path: str | os.PathLike, record: Any) -> None:
    """Appends one JSON line and fsyncs it (the training log: a crash loses at most the line being written)."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(to_json(record, sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())


def save_npy(path: str | os.PathLike, array: np.ndarray, allow_pickle: bool = False) -> None:
    """Writes ``array`` as a ``.npy`` file at exactly ``path`` (``np.save`` would append ``.npy``), atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, array, allow_pickle=allow_pickle)


def read_json(path: str | os.PathLike) -> Any:
    """Reads one JSON document."""
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def read_jsonl(path: str | os.PathLike, required_keys: Sequence[str] = (), what: str | None = None) -> list:
    """Reads a JSON-lines file, one value per line (blank lines skipped).

    Without ``what`` (our own logs, e.g. ``metrics.jsonl``) the values are returned as they are. With ``what`` (an
    annotation file, e.g. ``"NLVR2 annotation file"``) every line must be a JSON object with ``required_keys``, each
    gets its 1-based line number under ``"_line"``, and the file must not be empty.

    Raises:
        FileNotFoundError: the file does not exist.
        DataFormatError: (annotation files) a line that is not a JSON object or lacks a key (file:line named), or
            no lines at all.
    """
    path = os.fspath(path)
    if what is None:
        with open(path, encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]
    from .data.errors import DataFormatError

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
