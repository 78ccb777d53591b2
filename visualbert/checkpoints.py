"""Checkpoint files of a training run: writing, listing, resolving ``--resume_from`` and restoring.

A checkpoint ``step_<N>/`` holds the model (config.json, model_state.pdparams), ``optimizer.pdopt`` (accumulators
under structured parameter names), ``scheduler.json``, ``rng.pkl`` (python, numpy, paddle generators),
``scaler.pdparams`` (float16 AMP only) and ``trainer_state.json``, written last: a directory without it is
incomplete and ignored. Every directory is written under a temporary name and moved into place
(:func:`visualbert.fileio.replace_dir`).
"""

from __future__ import annotations

import logging
import os
import pickle
import shutil
from typing import Any, Callable, Mapping

import paddle

from .cli import UsageError
from .fileio import atomic_path, read_json, replace_dir, write_json
from .safety import RefusedError, checkpoint_problem, latest_complete_checkpoint, load_paddle_file

CHECKPOINT_PREFIX = "step_"
TRAINER_STATE = "trainer_state.json"
OPTIMIZER_FILE = "optimizer.pdopt"
SCHEDULER_FILE = "scheduler.json"
RNG_FILE = "rng.pkl"
SCALER_FILE = "scaler.pdparams"

logger = logging.getLogger("visualbert.checkpoints")


# ------------------------------------------------------------------------------------------ model directories
def _save_pretrained(model, directory: str, state_dict: Mapping | None = None) -> None:
    """``model.save_pretrained(directory)``; a given ``state_dict`` (the fp32 weights of an O2 model, see
    :func:`visualbert.accel.fp32_state_dict`) replaces the weights it wrote."""
    model.save_pretrained(directory)
    if state_dict is not None:
        from .modeling import WEIGHTS_NAME

        with atomic_path(os.path.join(directory, WEIGHTS_NAME)) as tmp:
            paddle.save(state_dict, tmp)


def save_model_dir(model, directory: str, extra_json: Mapping[str, Any] | None = None,
                   state_dict: Mapping | None = None) -> None:
    """Saves ``model`` (unwrapped) into ``directory`` atomically, with ``{file name: JSON payload}`` beside it."""
    parent = os.path.dirname(os.path.abspath(directory))
    os.makedirs(parent, exist_ok=True)
    tmp = os.path.join(parent, f".tmp-{os.path.basename(directory)}-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    _save_pretrained(model, tmp, state_dict)
    for name, payload in (extra_json or {}).items():
        write_json(os.path.join(tmp, name), payload)
    replace_dir(tmp, directory)


# ------------------------------------------------------------------------------------------ optimizer state
def optimizer_state_to_structured(state: Mapping, name_map: Mapping[str, str]) -> dict:
    """Renames paddle's accumulator keys (``linear_3.w_0_moment1_0``) to structured parameter names, which do
    not depend on how many layers the process created before."""
    by_len = sorted(name_map, key=len, reverse=True)
    out = {}
    for key, value in state.items():
        if key == "master_weights" and isinstance(value, dict):  # AMP O2: {param.name: fp32 master weight}
            value = {"param::" + name_map[k] if k in name_map else k: v for k, v in value.items()}
        else:
            for pname in by_len:
                if key.startswith(pname + "_"):
                    key = "param::" + name_map[pname] + "::" + key[len(pname):]
                    break
        out[key] = value
    return out


def optimizer_state_from_structured(state: Mapping, name_map: Mapping[str, str]) -> dict:
    """Inverse of :func:`optimizer_state_to_structured` for the parameters of this process.

    Raises:
        UsageError: an entry names a parameter the model does not train.
    """
    inverse = {v: k for k, v in name_map.items()}
    out = {}
    for key, value in state.items():
        if key == "master_weights" and isinstance(value, dict):
            value = {inverse.get(k[len("param::"):], k) if k.startswith("param::") else k: v for k, v in value.items()}
        elif key.startswith("param::"):
            _, structured, suffix = key.split("::", 2)
            if structured not in inverse:
                raise UsageError(f"optimizer state has an entry for parameter {structured!r}, which the model does not "
                                 "train (was the run resumed with other model flags?)")
            key = inverse[structured] + suffix
        out[key] = value
    return out


# ------------------------------------------------------------------------------------------ RNG
def rng_state() -> dict:
    """The state of python's, numpy's, paddle's CPU and this process's device generators (:mod:`visualbert.rng`:
    restorable on another number of visible devices, unlike ``paddle.get_rng_state()``)."""
    from . import rng

    return rng.get_state()


def set_rng_state(state: Mapping) -> None:
    from . import rng

    rng.set_state(state)


def _optimizer_state(optimizer, param_names: Mapping[str, str]) -> dict:
    """What ``optimizer.pdopt`` holds: BertAdam's state as it is (already keyed by structured names), paddle's
    accumulators renamed to structured names."""
    state = optimizer.state_dict()
    if isinstance(state, dict) and "format" in state:
        return state
    return optimizer_state_to_structured(state, param_names)


def _restore_optimizer(path: str, optimizer, opt_state: Mapping, param_names: Mapping[str, str]) -> None:
    from .optim import BertAdam

    saved_bertadam = isinstance(opt_state, dict) and "format" in opt_state
    if saved_bertadam != isinstance(optimizer, BertAdam):
        raise UsageError(f"checkpoint {path} was written with --optimizer {'bertadam' if saved_bertadam else 'adamw'};"
                         f" resume with the same optimizer")
    if saved_bertadam:
        try:
            optimizer.set_state_dict(dict(opt_state))
        except ValueError as err:
            raise UsageError(f"checkpoint {path}: {err}") from None
        return
    optimizer.set_state_dict(optimizer_state_from_structured(opt_state, param_names))


# ------------------------------------------------------------------------------------------ checkpoints
def save_checkpoint(output_dir: str, state: Mapping[str, Any], model, optimizer, scheduler, scaler,
                    param_names: Mapping[str, str], weights: Mapping | None = None,
                    on_partial: Callable[[str], None] | None = None) -> str:
    """Writes ``<output_dir>/step_<state["global_step"]>/`` atomically and returns its path.

    Args:
        weights: the weights to save instead of the model's (AMP O2: fp32 master weights).
        on_partial: called with the temporary directory once the model and optimizer are in it and before the
            rest (observers of a half-written checkpoint, e.g. a test killing the process there).
    """
    step = state["global_step"]
    final = os.path.join(output_dir, f"{CHECKPOINT_PREFIX}{step}")
    tmp = os.path.join(output_dir, f".tmp-{CHECKPOINT_PREFIX}{step}-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    _save_pretrained(model, tmp, weights)
    paddle.save(_optimizer_state(optimizer, param_names), os.path.join(tmp, OPTIMIZER_FILE))
    if on_partial is not None:
        on_partial(tmp)
    # BertAdam has no scheduler object (its schedule is a function of its step counts): {}.
    write_json(os.path.join(tmp, SCHEDULER_FILE), scheduler.state_dict() if scheduler is not None else {})
    with atomic_path(os.path.join(tmp, RNG_FILE)) as path:
        with open(path, "wb") as f:
            pickle.dump(rng_state(), f)
    if scaler is not None:
        paddle.save(scaler.state_dict(), os.path.join(tmp, SCALER_FILE))
    write_json(os.path.join(tmp, TRAINER_STATE), dict(state))  # last file: marks completeness
    replace_dir(tmp, final)
    return final


def load_checkpoint(path: str, model, optimizer, scheduler, scaler, param_names: Mapping[str, str]) -> dict:
    """Restores model, optimizer, scheduler, RNG (and loss scaler) from ``step_<N>/``; returns its trainer state.

    Raises:
        UsageError: the checkpoint does not fit the model or the optimizer.
    """
    from . import accel

    state = read_json(os.path.join(path, TRAINER_STATE))
    weights = accel.match_dtypes(load_paddle_file(os.path.join(path, "model_state.pdparams"), "checkpoint weights"),
                                 model)
    info = model.load_weights(weights, source=path)
    if info["missing_keys"] or info["unexpected_keys"]:
        raise UsageError(f"checkpoint {path} does not fit the model: missing {info['missing_keys'][:5]}, "
                         f"unexpected {info['unexpected_keys'][:5]}")
    opt_state = load_paddle_file(os.path.join(path, OPTIMIZER_FILE), "optimizer state")
    _restore_optimizer(path, optimizer, opt_state, param_names)
    # set_state_dict of the optimizer may carry its own LR_Scheduler entry; the scheduler file wins.
    if scheduler is not None:
        scheduler.set_state_dict(read_json(os.path.join(path, SCHEDULER_FILE)))
    with open(os.path.join(path, RNG_FILE), "rb") as f:
        set_rng_state(pickle.load(f))
    scaler_path = os.path.join(path, SCALER_FILE)
    if scaler is not None and os.path.isfile(scaler_path):
        scaler.load_state_dict(load_paddle_file(scaler_path, "loss-scaler state"))
    return state


def is_complete_checkpoint(path: str) -> bool:
    return os.path.isfile(os.path.join(path, TRAINER_STATE))


def list_checkpoints(output_dir: str) -> list[tuple[int, str]]:
    """[(step, path)] of complete ``step_<N>`` directories, by step."""
    out = []
    if not os.path.isdir(output_dir):
        return out
    for name in os.listdir(output_dir):
        if name.startswith(CHECKPOINT_PREFIX) and name[len(CHECKPOINT_PREFIX):].isdigit():
            path = os.path.join(output_dir, name)
            if is_complete_checkpoint(path):
                out.append((int(name[len(CHECKPOINT_PREFIX):]), path))
    return sorted(out)


def latest_checkpoint(output_dir: str) -> str | None:
    found = list_checkpoints(output_dir)
    return found[-1][1] if found else None


def rotate_checkpoints(output_dir: str, keep: int) -> None:
    """Removes all but the newest ``keep`` checkpoints (``keep`` <= 0: keeps all)."""
    if keep <= 0:
        return
    for _, path in list_checkpoints(output_dir)[:-keep]:
        shutil.rmtree(path, ignore_errors=True)


def _newest_usable(run_dir: str, exclude=()) -> str | None:
    """The newest usable checkpoint of ``run_dir`` (:func:`visualbert.safety.latest_complete_checkpoint`: corrupt
    newer ones are skipped with a warning naming both); :class:`RefusedError` when every complete one is corrupt
    (never a silent fresh start)."""
    path, skipped = latest_complete_checkpoint(run_dir, exclude=exclude)
    if path is None and skipped:
        reasons = "; ".join(f"{bad}: {why}" for bad, why in skipped)
        raise RefusedError(f"no usable checkpoint in {run_dir} ({reasons})")
    return path


def resolve_resume(resume_from: str | None, output_dir: str, exclude=()) -> str | None:
    """``latest`` → the newest usable checkpoint of ``output_dir`` (None if there is none yet); a run directory →
    its newest usable checkpoint; a path must otherwise be a complete, readable checkpoint."""
    if not resume_from:
        return None
    if resume_from == "latest":
        return _newest_usable(output_dir, exclude)
    if not os.path.isdir(resume_from):
        raise UsageError(f"--resume_from {resume_from!r} does not exist")
    if not is_complete_checkpoint(resume_from):
        found = _newest_usable(resume_from, exclude)
        if found is None:
            raise UsageError(f"--resume_from {resume_from!r} is not a complete checkpoint (no {TRAINER_STATE}) and "
                             "holds no step_<N> checkpoint")
        return found
    problem = checkpoint_problem(resume_from)
    if problem:
        raise RefusedError(f"--resume_from {resume_from}: {problem}")
    return resume_from


def resume_checkpoint(resume_from: str | None, output_dir: str, load: Callable[[str], Any]) -> str | None:
    """Resolves ``--resume_from`` (:func:`resolve_resume`) and calls ``load(path)``. When the weights of a checkpoint
    chosen automatically (``latest`` or a run directory) cannot be read (truncated ``.pdparams``), the previous usable
    one is loaded instead, with a warning naming both; an explicitly named checkpoint is not replaced.

    Returns:
        str or None: the checkpoint loaded (None: a fresh start).
    """
    from .data.errors import DataFormatError

    tried = []
    while True:
        path = resolve_resume(resume_from, output_dir, exclude=tried)
        if path is None:
            return None
        try:
            load(path)
            return path
        except (DataFormatError, FileNotFoundError) as err:
            if resume_from not in ("latest",) and os.path.abspath(path) == os.path.abspath(resume_from):
                raise
            logger.warning("checkpoint %s cannot be loaded (%s); trying the previous complete checkpoint", path, err)
            tried.append(path)
