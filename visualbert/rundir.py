"""The output directory of a training run: checking it before training, clearing and creating it, and the run's
metadata file ``args.json`` (arguments, git commit, package versions)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from typing import Any, Mapping

from .checkpoints import list_checkpoints
from .cli import UsageError
from .distributed import is_main_process, world_size
from .fileio import write_json

ARGS_FILE = "args.json"
METRICS_FILE = "metrics.jsonl"


def git_commit(path: str | None = None) -> tuple[str | None, bool | None]:
    """(commit, dirty) of the repository holding ``path`` (default: this package); (None, None) outside git."""
    path = path or os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        out = subprocess.run(["git", "-C", path, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        commit = out.stdout.strip() or None
        dirty = subprocess.run(["git", "-C", path, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return commit, bool(dirty)
    except Exception:
        return None, None


def package_versions() -> dict[str, str]:
    """Versions of python and the packages a run depends on (those installed)."""
    from importlib import metadata

    out = {"python": sys.version.split()[0]}
    for name in ("paddlepaddle", "paddlepaddle-gpu", "paddlenlp", "numpy", "tqdm", "visualbert-paddle"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def write_args_json(output_dir: str, arguments: Mapping[str, Any], extra: Mapping[str, Any] | None = None) -> None:
    """Writes ``args.json``: the command-line arguments, argv, git commit, package versions, world size, time."""
    commit, dirty = git_commit()
    payload = {
        "args": dict(sorted(arguments.items())),
        "argv": sys.argv,
        "git_commit": commit,
        "git_dirty": dirty,
        "packages": package_versions(),
        "world_size": world_size(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    payload.update(extra or {})
    write_json(os.path.join(output_dir, ARGS_FILE), payload, sort_keys=False)


def holds_run(path: str) -> bool:
    """bool: ``path`` already holds a training run (args.json, metrics.jsonl or a complete checkpoint)."""
    return os.path.isdir(path) and (os.path.exists(os.path.join(path, ARGS_FILE))
                                    or os.path.exists(os.path.join(path, METRICS_FILE)) or bool(list_checkpoints(path)))


def check_output_dir(output_dir: str, resume_from: str | None, overwrite: bool) -> None:
    """Raises :class:`UsageError` when ``output_dir`` is a file, or holds another run that is neither resumed nor to
    be overwritten."""
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise UsageError(f"--output_dir {output_dir!r} is a file")
    inside = bool(resume_from) and os.path.abspath(resume_from).startswith(os.path.abspath(output_dir) + os.sep)
    resuming_here = resume_from == "latest" or inside
    if holds_run(output_dir) and not resuming_here and not overwrite:
        raise UsageError(f"--output_dir {output_dir!r} already holds a run (args.json / metrics.jsonl / step_<N>); pass "
                         "--overwrite_output_dir to replace it or --resume_from latest to continue it")


def prepare_output_dir(output_dir: str, resume_from: str | None, overwrite: bool) -> None:
    """Clears (``overwrite`` and not resuming) and creates the output directory; rank 0 only."""
    if not is_main_process():
        return
    if overwrite and os.path.isdir(output_dir) and not resume_from:
        for name in os.listdir(output_dir):
            path = os.path.join(output_dir, name)
            shutil.rmtree(path) if os.path.isdir(path) and not os.path.islink(path) else os.remove(path)
    os.makedirs(output_dir, exist_ok=True)
