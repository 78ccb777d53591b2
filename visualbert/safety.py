"""Safety rules of a run, as pure helpers the CLI and the engine call (standard library at import time, so that
:mod:`visualbert.atomic` can use :func:`apply_umask`; numpy / paddle only inside the functions that need them).

* :func:`overwrite_problem` / :func:`clear_run_dir`: ``--overwrite_output_dir`` replaces only a directory that holds
  a run of ours (recognised by its files) and never one that is or contains the run's own inputs;
* :func:`remove_stale_temporaries`: removes ``.tmp-<name>-<pid>`` directories of dead processes and puts back a
  ``.old-<name>-*`` directory whose replacement never arrived;
* :func:`truncate_metrics`: a resume from step S drops the ``metrics.jsonl`` records beyond S (they are logged
  again), and a torn last line;
* :func:`checkpoint_problem` / :func:`latest_complete_checkpoint`: the newest checkpoint that is complete and
  readable, falling back past corrupt ones with a warning naming both;
* :func:`apply_umask`: the mode a file or directory would have had if created with ``open()`` / ``mkdir()``
  (``tempfile`` creates 0600 / 0700 whatever the umask);
* :class:`StopSignals`: SIGINT and SIGTERM raise :class:`RunInterrupted` in the main thread, deferred while a
  checkpoint is being written;
* :class:`NonFiniteGuard` and :func:`non_finite_parameters`: stop on a non-finite loss (or after too many skipped
  float16 steps) naming the step and the batch's examples, and never save non-finite weights;
* :func:`check_position_table`, :func:`check_trained_mode`: impossible flag values found at start-up.

Every ``*_problem`` function returns None or the reason (one line) to refuse; the raising variants raise
:class:`RefusedError` (a ``ValueError``: one ``error:`` line, exit status 2).
"""

import json
import logging
import math
import os
import re
import shutil
import signal
import threading

logger = logging.getLogger("visualbert.safety")

ARGS_FILE = "args.json"
METRICS_FILE = "metrics.jsonl"
TRAINER_STATE = "trainer_state.json"
CHECKPOINT_PREFIX = "step_"
# a complete step_<N>/ (engine.save_checkpoint; trainer_state.json is written last); scaler.pdparams is optional
CHECKPOINT_FILES = ("config.json", "model_state.pdparams", "optimizer.pdopt", "scheduler.json", "rng.pkl", TRAINER_STATE)
JSON_CHECKPOINT_FILES = ("config.json", "scheduler.json", TRAINER_STATE)
# what a training run writes at the top of its output directory (engine, cli) and what prediction writes
RUN_ENTRY_RE = re.compile(r"^(args\.json|metrics\.jsonl|visualdl|best|final|step_\d+|\.tmp-.+|\.old-.+|\..+\.tmp)$")
PREDICTION_FILES = ("result.json", "predictions.csv", "metrics.json", "predictions.jsonl")
TMP_DIR_RE = re.compile(r"^\.tmp-(?P<name>.+)-(?P<pid>\d+)$")
OLD_DIR_RE = re.compile(r"^\.old-(?P<name>.+)-[A-Za-z0-9_]+$")


class RefusedError(ValueError):
    """The run refuses an unsafe request (a directory to clear, a checkpoint, a flag value); the message says why."""


class RunInterrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived. ``signum`` says which; the exit status is ``128 + signum``."""

    def __init__(self, signum):
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum

    @property
    def exit_status(self):
        return 128 + self.signum


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite (the message names the step and the batch's examples)."""


# ------------------------------------------------------------------------------------------ output directories
def _real(path):
    return os.path.realpath(os.path.abspath(os.fspath(path)))


def _contains(outer, inner):
    """bool: ``inner`` is ``outer`` or below it (real paths: symlinks resolved)."""
    outer, inner = _real(outer), _real(inner)
    return inner == outer or inner.startswith(outer.rstrip(os.sep) + os.sep)


def is_run_dir(path):
    """bool: ``path`` holds a training run of ours: an ``args.json`` written by the engine (an object with ``args``
    and ``argv``), and nothing at its top level but what a run writes (``metrics.jsonl``, ``step_<N>/``, ``best/``,
    ``final/``, temporaries, prediction outputs)."""
    return not _run_dir_problem(path)


def _run_dir_problem(path):
    try:
        with open(os.path.join(path, ARGS_FILE), encoding="utf-8") as f:
            meta = json.load(f)
    except FileNotFoundError:
        return f"it holds no {ARGS_FILE}"
    except (OSError, ValueError) as e:
        return f"its {ARGS_FILE} is not one we wrote ({e})"
    records = meta if isinstance(meta, list) else [meta]  # a list once resumes append their records
    if not records or not all(isinstance(r, dict) and "args" in r and "argv" in r for r in records):
        return f"its {ARGS_FILE} is not one we wrote (no 'args' and 'argv')"
    foreign = sorted(n for n in os.listdir(path) if not _run_entry(path, n))
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        return f"it also holds files a run does not write ({shown})"
    return None


def _is_prediction_dir(path):
    """A directory a prediction script wrote (e.g. ``<run>/val/`` with result.json / metrics.json only)."""
    if not os.path.isdir(path) or os.path.islink(path):
        return False
    names = os.listdir(path)
    return bool(names) and all(n in PREDICTION_FILES or re.match(r"^\..+\.tmp$", n) for n in names)


def _run_entry(run_dir, name):
    return bool(RUN_ENTRY_RE.match(name)) or name in PREDICTION_FILES or _is_prediction_dir(os.path.join(run_dir, name))


def existing_outputs_problem(paths, flag="--overwrite"):
    """Why a tool must not write ``paths`` (some exist already), or None: for result.json, predictions.csv,
    metrics.json, stores and exports, which are replaced only with ``flag``."""
    existing = [p for p in paths if os.path.lexists(p)]
    if not existing:
        return None
    more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
    return f"{existing[0]}{more} exists already; pass {flag} to replace it"


def overwrite_problem(output_dir, inputs=()):
    """Why ``--overwrite_output_dir`` must not clear ``output_dir``, or None when it may.

    Args:
        output_dir (str): the run's output directory.
        inputs (iterable of str): every path the run reads (feature roots, annotation files and directories,
            ``--model_name_or_path``, ``--resume_from``, ``--config``, vocabularies); None entries are ignored.

    Returns:
        str or None: the reason, naming the directory (and the input or the foreign files).
    """
    if not os.path.exists(output_dir):
        return None
    if not os.path.isdir(output_dir):
        return f"--output_dir {output_dir} is a file, not a run directory"
    for path in inputs:
        if path and os.path.exists(path) and _contains(output_dir, path):
            return (f"refusing to clear --output_dir {output_dir}: it holds an input of this run ({path})")
    if not os.listdir(output_dir):
        return None
    problem = _run_dir_problem(output_dir)
    if problem:
        return f"refusing to clear --output_dir {output_dir}: {problem}; it is not a run of ours"
    return None


def clear_run_dir(output_dir, inputs=()):
    """Empties ``output_dir`` for ``--overwrite_output_dir`` after :func:`overwrite_problem` allowed it, removing
    only the entries a run writes (so even a misrecognised directory loses nothing else).

    Raises:
        RefusedError: :func:`overwrite_problem` gave a reason.

    Returns:
        list[str]: the removed entry names.
    """
    problem = overwrite_problem(output_dir, inputs)
    if problem:
        raise RefusedError(problem)
    removed = []
    if not os.path.isdir(output_dir):
        return removed
    for name in sorted(os.listdir(output_dir)):
        if not _run_entry(output_dir, name):
            continue
        path = os.path.join(output_dir, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.remove(path)
        removed.append(name)
    return removed


def append_args_record(path, record):
    """The ``args.json`` content after a new invocation: the original record stays first and untouched, every later
    invocation (a resume) appends its own. Returns the list to write (atomically, by the caller).

    Args:
        path (str): ``<output_dir>/args.json`` (may not exist yet).
        record (dict): this invocation's arguments, argv, commit, time...

    Raises:
        RefusedError: the existing file is not JSON (it is left alone; the caller should stop).
    """
    if not os.path.exists(path):
        return [record]
    try:
        with open(path, encoding="utf-8") as f:
            existing = json.load(f)
    except ValueError as e:
        raise RefusedError(f"{path} is not valid JSON ({e}); not appending to it") from e
    records = existing if isinstance(existing, list) else [existing]
    return records + [record]


# ------------------------------------------------------------------------------------------ stale temporaries
def pid_alive(pid):
    """bool: a process ``pid`` exists (a zombie counts as dead; another user's process as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def remove_stale_temporaries(output_dir):
    """Cleans what interrupted atomic directory writes left in ``output_dir`` (call at start, on rank 0).

    * ``.tmp-<name>-<pid>/`` (engine checkpoints and model directories) of a process that is no longer alive:
      removed (a live pid, including this process's, is left alone);
    * ``.old-<name>-<suffix>/old`` (``atomic.replace_dir`` renamed the previous ``<name>`` aside): removed when
      ``<name>`` exists (the new one arrived); otherwise the old directory is moved back to ``<name>``, since it is
      then the only copy.

    Returns:
        dict: ``removed`` and ``restored`` (lists of paths).
    """
    out = {"removed": [], "restored": []}
    if not os.path.isdir(output_dir):
        return out
    for name in sorted(os.listdir(output_dir)):
        path = os.path.join(output_dir, name)
        if not os.path.isdir(path) or os.path.islink(path):
            continue
        m = TMP_DIR_RE.match(name)
        if m:
            pid = int(m.group("pid"))
            if pid != os.getpid() and not pid_alive(pid):
                shutil.rmtree(path, ignore_errors=True)
                out["removed"].append(path)
                logger.warning("removed %s, left by an interrupted write of process %d", path, pid)
            continue
        m = OLD_DIR_RE.match(name)
        if m:
            target = os.path.join(output_dir, m.group("name"))
            old = os.path.join(path, "old")
            if not os.path.exists(target) and os.path.isdir(old):
                os.replace(old, target)
                out["restored"].append(target)
                logger.warning("restored %s from %s (its replacement was interrupted)", target, path)
            shutil.rmtree(path, ignore_errors=True)
            out["removed"].append(path)
    return out


# ------------------------------------------------------------------------------------------ metrics.jsonl
def truncate_metrics(path, resume_step):
    """Drops the records of steps after ``resume_step`` from ``metrics.jsonl`` (the resumed run logs them again)
    and an unparsable line (a write torn by a kill). Rewritten atomically, keeping the file's mode.

    Args:
        path (str): ``<output_dir>/metrics.jsonl``.
        resume_step (int): the ``global_step`` of the checkpoint resumed from.

    Returns:
        int: the number of lines dropped.
    """
    if not os.path.isfile(path):
        return 0
    kept, dropped = [], 0
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                dropped += 1
                continue
            if isinstance(record, dict) and isinstance(record.get("step"), int) and record["step"] > resume_step:
                dropped += 1
                continue
            kept.append(line if line.endswith("\n") else line + "\n")
    if dropped:
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.writelines(kept)
            f.flush()
            os.fsync(f.fileno())
        shutil.copymode(path, tmp)
        os.replace(tmp, path)
        logger.info("%s: dropped %d record(s) after step %d (resumed there)", path, dropped, resume_step)
    return dropped


def dedupe_records(records):
    """The last record of each (``type``, ``step``), in first-appearance order: for reading a ``metrics.jsonl``
    written before :func:`truncate_metrics` existed."""
    order, last = [], {}
    for r in records:
        key = (r.get("type"), r.get("step"))
        if key not in last:
            order.append(key)
        last[key] = r
    return [last[k] for k in order]


# ------------------------------------------------------------------------------------------ checkpoints
def checkpoint_problem(path):
    """Why ``step_<N>/`` at ``path`` cannot be resumed from, or None. Cheap: files present and non-empty, the JSON
    files parse, ``trainer_state.json`` is an object whose ``global_step`` is N (the weights are not loaded).
    """
    for name in CHECKPOINT_FILES:
        file = os.path.join(path, name)
        if not os.path.isfile(file):
            return f"{name} is missing"
        if os.path.getsize(file) == 0:
            return f"{name} is empty"
    for name in JSON_CHECKPOINT_FILES:
        try:
            with open(os.path.join(path, name), encoding="utf-8") as f:
                content = json.load(f)
        except (OSError, ValueError) as e:
            return f"{name} is not valid JSON ({e})"
        if not isinstance(content, dict):
            return f"{name} is not a JSON object"
    with open(os.path.join(path, TRAINER_STATE), encoding="utf-8") as f:
        state = json.load(f)
    m = re.search(r"step_(\d+)$", os.path.basename(os.path.normpath(path)))
    if m and state.get("global_step") != int(m.group(1)):
        return f"{TRAINER_STATE} says global_step {state.get('global_step')!r}, not {int(m.group(1))}"
    return None


def latest_complete_checkpoint(output_dir, exclude=()):
    """The newest ``step_<N>/`` of ``output_dir`` without a :func:`checkpoint_problem`.

    A corrupt newer checkpoint is skipped with a warning naming it, the problem and the one used instead. Directories
    without ``trainer_state.json`` (written last) are incomplete writes and skipped silently.

    Args:
        output_dir (str): the run directory.
        exclude (iterable of str): checkpoint paths to skip (e.g. one whose weights failed to load).

    Returns:
        tuple[str or None, list[tuple[str, str]]]: the checkpoint path (None: no usable one) and the skipped
        corrupt ones with their problems.
    """
    excluded = {_real(p) for p in exclude}
    found = []
    if os.path.isdir(output_dir):
        for name in os.listdir(output_dir):
            if name.startswith(CHECKPOINT_PREFIX) and name[len(CHECKPOINT_PREFIX):].isdigit():
                found.append((int(name[len(CHECKPOINT_PREFIX):]), os.path.join(output_dir, name)))
    skipped = []
    for _, path in sorted(found, reverse=True):
        if _real(path) in excluded:
            skipped.append((path, "excluded (failed to load)"))
            continue
        if not os.path.isfile(os.path.join(path, TRAINER_STATE)):
            continue  # never completed
        problem = checkpoint_problem(path)
        if problem is None:
            for bad, why in skipped:
                logger.warning("checkpoint %s is unusable (%s); resuming from %s instead", bad, why, path)
            return path, skipped
        skipped.append((path, problem))
    for bad, why in skipped:
        logger.warning("checkpoint %s is unusable (%s) and no earlier complete checkpoint exists", bad, why)
    return None, skipped


# ------------------------------------------------------------------------------------------ file modes
_UMASK = None
_UMASK_LOCK = threading.Lock()


def current_umask():
    """int: the process umask, read from ``/proc/self/status`` (``os.umask`` would change it for a moment for
    every thread); cached."""
    global _UMASK
    with _UMASK_LOCK:
        if _UMASK is None:
            try:
                with open("/proc/self/status") as f:
                    _UMASK = next(int(line.split()[1], 8) for line in f if line.startswith("Umask:"))
            except (OSError, StopIteration, ValueError):
                _UMASK = os.umask(0o022)
                os.umask(_UMASK)
        return _UMASK


def apply_umask(path):
    """Gives ``path`` the mode ``open()`` / ``mkdir()`` would have: 0666 (file) or 0777 (directory) less the umask
    (0644 / 0755 under umask 022). ``tempfile.mkstemp`` / ``mkdtemp`` create 0600 / 0700 regardless.

    A directory's content is changed too: every file and directory below it (for an atomically written
    checkpoint directory).
    """
    umask = current_umask()
    if os.path.isdir(path) and not os.path.islink(path):
        os.chmod(path, 0o777 & ~umask)
        for dirpath, dirnames, filenames in os.walk(path):
            for d in dirnames:
                os.chmod(os.path.join(dirpath, d), 0o777 & ~umask)
            for name in filenames:
                os.chmod(os.path.join(dirpath, name), 0o666 & ~umask)
    else:
        os.chmod(path, 0o666 & ~umask)


# ------------------------------------------------------------------------------------------ signals
class StopSignals:
    """Turns SIGINT and SIGTERM into :class:`RunInterrupted` in the main thread while active.

    ``with StopSignals() as stop:`` around training or prediction; ``with stop.deferred():`` around a checkpoint
    write: a signal arriving inside is held and raised when the block ends, so the checkpoint completes (its
    atomic rename happens) instead of leaving a half-written temporary. A second signal during a deferred block
    raises at once (the temporary is then removed by :func:`remove_stale_temporaries` of the next start).
    Previous handlers are restored on exit. A no-op outside the main thread.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self._previous = {}
        self._deferring = 0
        self._pending = None

    def _handler(self, signum, frame):
        if self._deferring and self._pending is None:
            self._pending = signum
            logger.warning("%s received: stopping after the checkpoint being written", signal.Signals(signum).name)
            return
        raise RunInterrupted(signum)

    def __enter__(self):
        global _ACTIVE_STOP
        if threading.current_thread() is threading.main_thread():
            for s in self.SIGNALS:
                self._previous[s] = signal.signal(s, self._handler)
            self._outer, _ACTIVE_STOP = _ACTIVE_STOP, self
        return self

    def __exit__(self, *exc):
        global _ACTIVE_STOP
        for s, h in self._previous.items():
            signal.signal(s, h)
        if self._previous:
            _ACTIVE_STOP = self._outer
        self._previous = {}
        return False

    def deferred(self):
        stop = self

        class _Deferred:
            def __enter__(self):
                stop._deferring += 1

            def __exit__(self, exc_type, exc, tb):
                stop._deferring -= 1
                if not stop._deferring and stop._pending is not None and exc_type is None:
                    signum, stop._pending = stop._pending, None
                    raise RunInterrupted(signum)
                return False

        return _Deferred()


_ACTIVE_STOP = None


def deferred_signals():
    """``with deferred_signals():`` around a checkpoint write: :meth:`StopSignals.deferred` of the active
    :class:`StopSignals` (the one the CLI entered), or a no-op context when none is active (library use, tests)."""
    import contextlib

    return _ACTIVE_STOP.deferred() if _ACTIVE_STOP is not None else contextlib.nullcontext()


# ------------------------------------------------------------------------------------------ non-finite values
EXAMPLE_ID_KEYS = ("question_id", "identifier", "annot_id", "caption_id", "image_name")


def batch_example_ids(batch):
    """list: the example ids of a collated batch (the first of ``EXAMPLE_ID_KEYS`` it carries as metadata), for
    :meth:`NonFiniteGuard.check`; empty when it has none."""
    for key in EXAMPLE_ID_KEYS:
        if key in batch and isinstance(batch[key], (list, tuple)):
            return list(batch[key])
    return []


class NonFiniteGuard:
    """Stops training on a non-finite loss.

    Without loss scaling every non-finite loss stops the run. With float16 loss scaling (``GradScaler`` skips the
    update and lowers the scale) up to ``max_nonfinite_steps`` consecutive skipped steps are allowed.

    Args:
        max_nonfinite_steps (int): consecutive non-finite steps tolerated with loss scaling (0 = none).
        loss_scaling (bool): a float16 GradScaler is active.
    """

    def __init__(self, max_nonfinite_steps=0, loss_scaling=False):
        if int(max_nonfinite_steps) < 0:
            raise RefusedError(f"--max_nonfinite_steps must be >= 0, got {max_nonfinite_steps}")
        self.max_nonfinite_steps = int(max_nonfinite_steps) if loss_scaling else 0
        self.consecutive = 0

    def check(self, loss, step, example_ids=()):
        """Call once per micro-batch with the loss value.

        Args:
            loss (float): the (unscaled) loss.
            step (int): the optimizer step being computed.
            example_ids (list): ids of the batch's examples (question ids, identifiers...).

        Raises:
            NonFiniteLossError: naming the step, the loss and the first examples of the batch.
        """
        if math.isfinite(float(loss)):
            self.consecutive = 0
            return
        self.consecutive += 1
        if self.consecutive > self.max_nonfinite_steps:
            ids = list(example_ids)
            shown = ", ".join(str(i) for i in ids[:10]) + (f" and {len(ids) - 10} more" if len(ids) > 10 else "")
            tolerated = f" after {self.consecutive} consecutive non-finite steps" if self.max_nonfinite_steps else ""
            raise NonFiniteLossError(f"training loss is {float(loss)} at step {step}{tolerated}; batch examples: "
                                     f"{shown or 'unknown'} (no checkpoint of this step is saved; check their "
                                     "features with python -m visualbert.data.check --read)")


def non_finite_parameters(state_dict):
    """list[str]: names of the entries of ``state_dict`` holding NaN or inf (paddle tensors or numpy arrays);
    empty when all are finite. Call before writing ``best/``, ``final/`` or a checkpoint."""
    import numpy as np

    bad = []
    for name, value in state_dict.items():
        array = value.numpy() if hasattr(value, "numpy") else np.asarray(value)
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            bad.append(name)
        elif array.dtype == np.uint16:  # bf16 tensors give uint16 bit patterns: exponent all ones = inf/NaN
            if ((array & 0x7F80) == 0x7F80).any():
                bad.append(name)
    return bad


# ------------------------------------------------------------------------------------------ start-up checks
def check_position_table(max_seq_length, max_position_embeddings, max_regions=None):
    """Raises :class:`RefusedError` when ``--max_seq_length`` (or the region count, which indexes the visual position
    table) exceeds the model's position table, instead of an index error at the first long batch."""
    if max_seq_length is not None and int(max_seq_length) > int(max_position_embeddings):
        raise RefusedError(f"--max_seq_length {max_seq_length} exceeds the model's position table "
                           f"(max_position_embeddings {max_position_embeddings})")
    if max_seq_length is not None and int(max_seq_length) < 3:
        raise RefusedError(f"--max_seq_length {max_seq_length} leaves no room for text ([CLS] ... [SEP])")
    if max_regions is not None and int(max_regions) > int(max_position_embeddings):
        raise RefusedError(f"--max_regions {max_regions} exceeds the model's position table "
                           f"(max_position_embeddings {max_position_embeddings})")


def training_args(model_dir):
    """dict or None: the arguments of the run that wrote ``model_dir`` (``best/``, ``final/`` or ``step_<N>/`` of a
    run directory; the first record of ``<run>/args.json``), None when unknown (e.g. a converted checkpoint)."""
    path = os.path.join(os.path.dirname(_real(model_dir)), ARGS_FILE)
    try:
        with open(path, encoding="utf-8") as f:
            meta = json.load(f)
    except (OSError, ValueError):
        return None
    first = meta[0] if isinstance(meta, list) and meta else meta
    return first.get("args") if isinstance(first, dict) else None


def check_trained_mode(model_dir, key, expected, flag):
    """Raises :class:`RefusedError` when ``model_dir`` was trained with ``--<key>`` other than ``expected`` (e.g. a
    Q->A VCR model given as ``--qar_model_dir``). Unknown provenance passes (with a log line)."""
    args = training_args(model_dir)
    if args is None or key not in args:
        logger.info("%s: no training arguments found; cannot check that it was trained with --%s %s", model_dir, key,
                    expected)
        return
    if args[key] != expected:
        raise RefusedError(f"{flag} {model_dir} was trained with --{key} {args[key]}, expected --{key} {expected}")


# ------------------------------------------------------------------------------------------ paddle files, flag types
def load_paddle_file(path, what="weights"):
    """``paddle.load(path)`` with the file named on failure: a truncated file (paddle: "can not parse the file"), an
    empty one (``EOFError: Ran out of input``) or a missing one become one :class:`DataFormatError` /
    ``FileNotFoundError`` line.

    Args:
        path (str): a ``.pdparams`` / ``.pdopt`` file.
        what (str): what it holds, for the message (e.g. ``"checkpoint weights"``).
    """
    import pickle

    import paddle

    from .data.errors import DataFormatError

    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} file {path} does not exist")
    if os.path.getsize(path) == 0:
        raise DataFormatError(f"{path}: empty file (0 bytes), expected {what} written by paddle.save")
    try:
        return paddle.load(path)
    except (ValueError, EOFError, pickle.UnpicklingError, OSError, RuntimeError) as e:
        raise DataFormatError(f"{path}: cannot read the {what} (truncated or not a paddle.save file?): "
                              f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from e


def positive_int(text):
    """argparse ``type`` for counts that must be >= 1 (batch sizes, steps): a 0 fails at start-up with one line."""
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def probability(text):
    """argparse ``type`` for a probability in [0, 1] (``--mask_prob``)."""
    import argparse

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a probability in [0, 1], got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a probability in [0, 1], got {value:g}")
    return value
