"""The output directory of a training run: checking it before training, clearing and creating it, and the run's
metadata file ``args.json`` (arguments, git commit, package versions)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Any, Mapping

from .checkpoints import list_checkpoints
from .cli import UsageError
from .distributed import is_main_process, world_size
from .fileio import write_json
from .safety import RefusedError, append_args_record, clear_run_dir, overwrite_problem, remove_stale_temporaries

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


def args_record(arguments: Mapping[str, Any], extra: Mapping[str, Any] | None = None) -> dict:
    """This invocation's ``args.json`` record: the command-line arguments, argv, git commit, package versions, world
    size, time (and ``extra``)."""
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
    return payload


def args_json_content(output_dir: str, record: Mapping[str, Any]) -> Any:
    """What ``args.json`` holds once ``record`` is added: the record itself for a new run; for a later invocation
    (a resume) the existing records, untouched, followed by this one (a list). Call it before training starts: a
    corrupt ``args.json`` is a :class:`~visualbert.safety.RefusedError` then, with nothing written."""
    records = append_args_record(os.path.join(output_dir, ARGS_FILE), dict(record))
    return records[0] if len(records) == 1 else records


def write_args_json(output_dir: str, content: Any) -> None:
    """Writes ``args.json`` (:func:`args_json_content`) atomically."""
    write_json(os.path.join(output_dir, ARGS_FILE), content, sort_keys=False)


def run_inputs(arguments: Mapping[str, Any]) -> list[str]:
    """list[str]: the paths a run reads: every argument value (but ``--output_dir``) naming an existing file or
    directory (feature roots, annotation directories, models, vocabularies, ``--resume_from``)."""
    return [value for key, value in arguments.items()
            if key != "output_dir" and isinstance(value, str) and value and os.path.exists(value)]


def holds_run(path: str) -> bool:
    """bool: ``path`` already holds a training run (args.json, metrics.jsonl or a complete checkpoint)."""
    return os.path.isdir(path) and (os.path.exists(os.path.join(path, ARGS_FILE))
                                    or os.path.exists(os.path.join(path, METRICS_FILE)) or bool(list_checkpoints(path)))


def check_output_dir(output_dir: str, resume_from: str | None, overwrite: bool, inputs=()) -> None:
    """Raises :class:`UsageError` when ``output_dir`` is a file, or holds another run that is neither resumed nor to
    be overwritten; :class:`~visualbert.safety.RefusedError` when ``--overwrite_output_dir`` would clear a directory
    that is not a run of ours or holds one of the run's ``inputs`` (:func:`visualbert.safety.overwrite_problem`)."""
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise UsageError(f"--output_dir {output_dir!r} is a file")
    inside = bool(resume_from) and os.path.abspath(resume_from).startswith(os.path.abspath(output_dir) + os.sep)
    resuming_here = resume_from == "latest" or inside
    if holds_run(output_dir) and not resuming_here and not overwrite:
        raise UsageError(f"--output_dir {output_dir!r} already holds a run (args.json / metrics.jsonl / step_<N>); pass "
                         "--overwrite_output_dir to replace it or --resume_from latest to continue it")
    problem = overwrite_problem(output_dir, inputs) if overwrite and not resume_from else None
    if problem:
        raise RefusedError(problem)


def prepare_output_dir(output_dir: str, resume_from: str | None, overwrite: bool, inputs=()) -> None:
    """Clears (``overwrite`` and not resuming; only a run of ours that holds none of ``inputs``:
    :func:`visualbert.safety.clear_run_dir`) and creates the output directory, and removes what interrupted writes
    of dead processes left in it (:func:`visualbert.safety.remove_stale_temporaries`); rank 0 only."""
    if not is_main_process():
        return
    if overwrite and os.path.isdir(output_dir) and not resume_from:
        clear_run_dir(output_dir, inputs)
    os.makedirs(output_dir, exist_ok=True)
    remove_stale_temporaries(output_dir)
