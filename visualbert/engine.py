"""The one training engine used by every script (pretraining, VQA2, NLVR2, VCR).

* AdamW (weight decay on everything but biases and LayerNorm parameters), linear warmup (a proportion or a
  number of steps) and linear decay to 0 (``paddlenlp.transformers.LinearDecayWithWarmup``), global-norm
  gradient clipping;
* gradient accumulation: the loss of a micro-batch is divided by the size of its accumulation group, the
  optimizer and the LR schedule step once per group (the last group of an epoch may be shorter);
* data parallelism: one global shuffled order per (seed, epoch) shared by all ranks; a global batch of
  ``batch_size * world_size`` examples is cut into contiguous per-rank shards, so N processes × batch B see
  exactly the examples of 1 process × batch N·B. ``paddle.DataParallel`` is used only when world size > 1;
* AMP on GPU (``--use_amp``, ``--amp_level O1|O2``, ``--amp_dtype float16|bfloat16``, ``--scale_loss``), a warning
  and a no-op on CPU, and fused attention (``--fused_attention auto|on|off``), all through :mod:`visualbert.accel`
  (the one implementation): micro-batch losses are scaled for float16, ``GradScaler.step`` unscales the accumulated
  gradients before the optimizer's global-norm clipping and skips updates with inf/nan; under O2 the saved weights
  are the optimizer's fp32 master weights;
* logging (JSON lines ``metrics.jsonl``), ``args.json``, evaluation every N steps or each epoch, best
  checkpoint, checkpoints ``step_<N>/`` written atomically (temporary directory + rename), exact resume.

Only rank 0 writes files.

Output directory layout::

    args.json            arguments, git commit, package versions
    metrics.jsonl        one JSON object per line: {"type": "train"|"eval", "step": ..., ...}
    step_<N>/            model (config.json, model_state.pdparams), optimizer.pdopt, scheduler.json,
                         rng.pkl, trainer_state.json (written last; a directory without it is incomplete)
    best/                model of the best evaluation (with best.json)
    final/               model at the end of training
"""

import contextlib
import json
import logging
import math
import os
import pickle
import random
import shutil
import subprocess
import sys
import time

import numpy as np
import paddle

from . import accel
from .fileio import atomic_path, fsync_dir, read_jsonl, replace_dir, write_json, append_jsonl, to_json


logger = logging.getLogger("visualbert.engine")

CHECKPOINT_PREFIX = "step_"
TRAINER_STATE = "trainer_state.json"
OPTIMIZER_FILE = "optimizer.pdopt"
SCHEDULER_FILE = "scheduler.json"
RNG_FILE = "rng.pkl"
METRICS_FILE = "metrics.jsonl"
ARGS_FILE = "args.json"

# Test hooks (never set in normal use): hard-exit right after the checkpoint of this step was written,
# or in the middle of writing it, to emulate a killed job.
_KILL_AFTER_STEP_ENV = "VISUALBERT_TEST_KILL_AFTER_STEP"
_KILL_DURING_SAVE_ENV = "VISUALBERT_TEST_KILL_DURING_SAVE"
# Test hook: every rank writes its final weights to <dir>/rank<r>.pdparams.
_DUMP_RANK_WEIGHTS_ENV = "VISUALBERT_TEST_DUMP_RANK_WEIGHTS"


class UsageError(ValueError):
    """A bad argument or input found before training; scripts print it and exit with status 2."""


# ------------------------------------------------------------------------------------------ distributed env
def world_size():
    return int(os.environ.get("PADDLE_TRAINERS_NUM", "1"))


def rank():
    return int(os.environ.get("PADDLE_TRAINER_ID", "0"))


def is_main_process():
    return rank() == 0


_PARALLEL_READY = False


def init_distributed():
    """Initialises the collective environment when launched with more than one process (no-op otherwise:
    with world size 1 paddle's collectives raise "global group is not initialized")."""
    global _PARALLEL_READY
    if world_size() > 1 and not _PARALLEL_READY:
        paddle.distributed.init_parallel_env()
        _PARALLEL_READY = True
    return world_size()


def barrier():
    if world_size() > 1 and _PARALLEL_READY:
        paddle.distributed.barrier()


def setup_logging():
    level = logging.INFO if is_main_process() else logging.WARNING
    logging.basicConfig(level=level, format=f"[%(asctime)s rank{rank()}] %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr, force=True)


def set_seed(seed):
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    paddle.seed(seed)


# ------------------------------------------------------------------------------------------ run metadata
def git_commit(path=None):
    path = path or os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        out = subprocess.run(["git", "-C", path, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        commit = out.stdout.strip() or None
        dirty = subprocess.run(["git", "-C", path, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return commit, bool(dirty)
    except Exception:
        return None, None


def package_versions():
    from importlib import metadata

    out = {"python": sys.version.split()[0]}
    for name in ("paddlepaddle", "paddlepaddle-gpu", "paddlenlp", "numpy", "tqdm", "visualbert-paddle"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def write_args_json(output_dir, args, extra=None):
    commit, dirty = git_commit()
    payload = {
        "args": {k: v for k, v in sorted(vars(args).items())},
        "argv": sys.argv,
        "git_commit": commit,
        "git_dirty": dirty,
        "packages": package_versions(),
        "world_size": world_size(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    if extra:
        payload.update(extra)
    write_json(os.path.join(output_dir, ARGS_FILE), payload, sort_keys=False)


class JsonlLogger:
    """Appends one JSON object per line (rank 0 only; a no-op elsewhere)."""

    def __init__(self, path, enabled=True):
        self.path = path
        self.enabled = enabled

    def log(self, record):
        if self.enabled:
            append_jsonl(self.path, record)


# ------------------------------------------------------------------------------------------ optimizer
def no_decay(name):
    """True for parameters without weight decay: biases and LayerNorm weights (BERT convention)."""
    return name.endswith("bias") or "LayerNorm" in name or ".norm" in name.lower()


def trainable_named_parameters(model, freeze_pooler=False):
    """(name, parameter) pairs to optimise. ``freeze_pooler`` leaves ``visual_bert.pooler`` out, as the original
    release did (its released checkpoints keep BERT's pooler)."""
    out = []
    for name, param in model.named_parameters():
        if freeze_pooler and ".pooler." in f".{name}":
            # Left out of the optimizer (as the original did) rather than marked stop_gradient: the fused
            # addmm path of modeling.py segfaults in backward on a stop_gradient weight (paddle 3.3.1 CPU).
            continue
        if not param.stop_gradient:
            out.append((name, param))
    return out


def build_optimizer(model, total_steps, learning_rate, warmup=0.1, weight_decay=0.01, adam_epsilon=1e-6,
                    adam_beta1=0.9, adam_beta2=0.999, max_grad_norm=1.0, freeze_pooler=False):
    """AdamW + ``LinearDecayWithWarmup`` + global-norm clipping.

    Args:
        warmup (float or int): a float in [0, 1] is a proportion of ``total_steps``, an int a number of steps.
        max_grad_norm (float): clip threshold; <= 0 disables clipping.

    Returns:
        tuple: (optimizer, scheduler, {param.name: structured name}).
    """
    from paddlenlp.transformers import LinearDecayWithWarmup

    named = trainable_named_parameters(model, freeze_pooler)
    scheduler = LinearDecayWithWarmup(learning_rate, max(1, int(total_steps)), warmup)
    decay_names = {p.name for n, p in named if not no_decay(n)}
    optimizer = paddle.optimizer.AdamW(
        learning_rate=scheduler,
        parameters=[p for _, p in named],
        beta1=adam_beta1,
        beta2=adam_beta2,
        epsilon=adam_epsilon,
        weight_decay=weight_decay,
        apply_decay_param_fun=lambda n: n in decay_names,
        grad_clip=paddle.nn.ClipGradByGlobalNorm(max_grad_norm) if max_grad_norm and max_grad_norm > 0 else None,
    )
    return optimizer, scheduler, {p.name: n for n, p in named}


def _optimizer_state_to_structured(state, name_map):
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


def _optimizer_state_from_structured(state, name_map):
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


# ------------------------------------------------------------------------------------------ sampling
class ShardedShuffleBatchSampler:
    """Per-rank batches of one global order.

    Every epoch the dataset indices are permuted with a generator seeded by (seed, epoch) (identical on all
    ranks), padded by wrapping to a multiple of the world size, and cut into global batches of
    ``batch_size * world_size``; rank r takes the r-th contiguous shard of each global batch (the last global
    batch is shared equally). No example is dropped.

    Args:
        num_examples (int), batch_size (int): per-rank batch size, shuffle (bool), seed (int),
        world_size (int), rank (int).
    """

    def __init__(self, num_examples, batch_size, shuffle=True, seed=0, world_size=1, rank=0):
        self.num_examples = int(num_examples)
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.seed = int(seed)
        self.world_size = int(world_size)
        self.rank = int(rank)
        self.epoch = 0
        self.skip = 0

    def set_epoch(self, epoch, skip_batches=0):
        self.epoch = int(epoch)
        self.skip = int(skip_batches)

    def global_order(self):
        if self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch, 2024]).permutation(self.num_examples)
        else:
            order = np.arange(self.num_examples)
        pad = (-len(order)) % self.world_size
        if pad:
            order = np.concatenate([order, order[:pad]])
        return order

    def all_batches(self):
        order = self.global_order()
        step = self.batch_size * self.world_size
        batches = []
        for start in range(0, len(order), step):
            chunk = order[start:start + step]
            share = len(chunk) // self.world_size
            batches.append(chunk[self.rank * share:(self.rank + 1) * share].tolist())
        return batches

    def __iter__(self):
        yield from self.all_batches()[self.skip:]

    def __len__(self):
        padded = self.num_examples + (-self.num_examples) % self.world_size
        return math.ceil(padded / (self.batch_size * self.world_size)) - self.skip


class _EpochDataset(paddle.io.Dataset):
    """Wraps a dataset of numpy dicts so that paddle's DataLoader can index it."""

    def __init__(self, dataset):
        super().__init__()
        self.dataset = dataset

    def __getitem__(self, index):
        return self.dataset[index]

    def __len__(self):
        return len(self.dataset)


def make_loader(dataset, batch_sampler, collate_fn, num_workers=0):
    """A DataLoader over ``dataset`` (``--num_workers``, default 0 = in the main process).

    A new loader is built per epoch (and :func:`eval_batches` per evaluation). Workers are not made persistent on
    purpose: ``dataset.set_epoch`` runs in the main process and persistent workers would keep the previous epoch's
    copy (stale MLM / pair draws). Paddle's DataLoader has been seen to hang occasionally when several loaders with
    workers are created in one process, which is why the scripts default to 0 workers.
    """
    return paddle.io.DataLoader(_EpochDataset(dataset), batch_sampler=batch_sampler, collate_fn=collate_fn,
                                num_workers=num_workers, use_shared_memory=False)


def eval_batches(dataset, collate_fn, batch_size, num_workers=0):
    """Sequential, unshuffled batches over the whole dataset (for evaluation and prediction on one process)."""
    sampler = paddle.io.BatchSampler(_EpochDataset(dataset), batch_size=batch_size, shuffle=False, drop_last=False)
    return paddle.io.DataLoader(_EpochDataset(dataset), batch_sampler=sampler, collate_fn=collate_fn,
                                num_workers=num_workers, use_shared_memory=False)


# ------------------------------------------------------------------------------------------ checkpoints
def _save_pretrained(model, directory, state_dict=None):
    """``model.save_pretrained(directory)``; a given ``state_dict`` (the fp32 weights of an O2 model, see
    :func:`visualbert.accel.fp32_state_dict`) replaces the weights it wrote."""
    model.save_pretrained(directory)
    if state_dict is not None:
        from .modeling import WEIGHTS_NAME

        with atomic_path(os.path.join(directory, WEIGHTS_NAME)) as tmp:
            paddle.save(state_dict, tmp)


def save_model_dir(model, directory, extra_json=None, state_dict=None):
    """Saves ``model`` (unwrapped) into ``directory`` atomically (``state_dict``: see :func:`_save_pretrained`)."""
    parent = os.path.dirname(os.path.abspath(directory))
    os.makedirs(parent, exist_ok=True)
    tmp = os.path.join(parent, f".tmp-{os.path.basename(directory)}-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    _save_pretrained(model, tmp, state_dict)
    if extra_json:
        for name, payload in extra_json.items():
            write_json(os.path.join(tmp, name), payload)
    replace_dir(tmp, directory)


def is_complete_checkpoint(path):
    return os.path.isfile(os.path.join(path, TRAINER_STATE))


def list_checkpoints(output_dir):
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


def latest_checkpoint(output_dir):
    found = list_checkpoints(output_dir)
    return found[-1][1] if found else None


def resolve_resume(resume_from, output_dir):
    """``latest`` → the newest complete checkpoint of ``output_dir`` (None if there is none yet); a path must be a
    complete checkpoint."""
    if not resume_from:
        return None
    if resume_from == "latest":
        return latest_checkpoint(output_dir)
    if not os.path.isdir(resume_from):
        raise UsageError(f"--resume_from {resume_from!r} does not exist")
    if not is_complete_checkpoint(resume_from):
        found = latest_checkpoint(resume_from)
        if found is None:
            raise UsageError(f"--resume_from {resume_from!r} is not a complete checkpoint (no {TRAINER_STATE}) and "
                             "holds no step_<N> checkpoint")
        return found
    return resume_from


def _rng_state():
    return {"python": random.getstate(), "numpy": np.random.get_state(), "paddle": paddle.get_rng_state()}


def _set_rng_state(state):
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    paddle.set_rng_state(state["paddle"])


# ------------------------------------------------------------------------------------------ trainer
class Trainer:
    """Runs training (and periodic evaluation) for one model and dataset.

    Args:
        args (argparse.Namespace): the common arguments of :mod:`visualbert.cli`.
        model (paddle.nn.Layer): an unwrapped VisualBERT model; ``model(**batch)`` returns ``loss``.
        train_dataset: indexable dataset of numpy dicts.
        collate_fn (callable): samples → batch dict of tensors (keys = forward argument names + metadata).
        evaluate_fn (callable, optional): ``evaluate_fn(model) -> dict of floats``, run on rank 0 only.
        batch_transform (callable, optional): applied to every training batch (e.g. masking the regions).
        model_kwargs (tuple[str]): batch keys passed to the model (others are metadata).
    """

    def __init__(self, args, model, train_dataset, collate_fn, evaluate_fn=None, batch_transform=None,
                 model_kwargs=None):
        self.args = args
        self.model = model
        self.train_dataset = train_dataset
        self.collate_fn = collate_fn
        self.evaluate_fn = evaluate_fn
        self.batch_transform = batch_transform
        self.model_kwargs = set(model_kwargs) if model_kwargs else None
        self.world_size = world_size()
        self.rank = rank()
        self.is_main = self.rank == 0
        self.output_dir = args.output_dir
        n = len(train_dataset)
        if args.batch_size * self.world_size > n:
            raise UsageError(f"--batch_size {args.batch_size} × {self.world_size} process(es) is larger than the "
                             f"training set ({n} examples)")
        self.sampler = ShardedShuffleBatchSampler(n, args.batch_size, shuffle=True, seed=args.seed,
                                                  world_size=self.world_size, rank=self.rank)
        self.batches_per_epoch = len(self.sampler)
        accum = args.gradient_accumulation_steps
        self.updates_per_epoch = math.ceil(self.batches_per_epoch / accum)
        if args.max_steps and args.max_steps > 0:
            self.total_steps = args.max_steps
        else:
            self.total_steps = self.updates_per_epoch * args.num_train_epochs
        self.num_epochs = math.ceil(self.total_steps / self.updates_per_epoch)
        # Precision and attention kernels: visualbert.accel (AMP off with a warning on CPU; fused attention
        # "auto" = on a GPU only).
        self.amp = accel.AmpConfig.from_args(args)
        self.fused_attention = accel.resolve_fused_attention(getattr(args, "fused_attention", "auto"))
        accel.set_fused_attention(model, self.fused_attention)
        self.optimizer, self.scheduler, self.param_names = build_optimizer(
            model, self.total_steps, args.learning_rate, warmup=args.warmup, weight_decay=args.weight_decay,
            adam_epsilon=args.adam_epsilon, adam_beta1=args.adam_beta1, adam_beta2=args.adam_beta2,
            max_grad_norm=args.max_grad_norm, freeze_pooler=getattr(args, "freeze_pooler", False))
        self.model, self.optimizer = accel.prepare(model, self.optimizer, self.amp)  # O2: low-precision weights
        model = self.model
        self.scaler = accel.grad_scaler(self.amp)  # float16 only
        if self.amp.enabled:
            logger.info("AMP %s %s%s", self.amp.level, self.amp.dtype,
                        f", initial loss scale {self.amp.init_loss_scaling:g}" if self.scaler is not None else "")
        self.state = {"global_step": 0, "epoch": 0, "batch_in_epoch": 0, "best_metric": None, "best_step": None,
                      "metric_for_best": args.metric_for_best, "greater_is_better": args.greater_is_better}
        self.log = JsonlLogger(os.path.join(self.output_dir, METRICS_FILE), enabled=self.is_main)
        self.wrapped = model
        if self.world_size > 1:
            init_distributed()
            self.wrapped = paddle.DataParallel(model, find_unused_parameters=True)

    # ------------------------------------------------------------------ state
    def group_size(self, batch_index):
        """Number of micro-batches in the accumulation group of ``batch_index`` (the epoch's last may be short)."""
        accum = self.args.gradient_accumulation_steps
        start = (batch_index // accum) * accum
        return min(accum, self.batches_per_epoch - start)

    def save_checkpoint(self):
        """Writes ``step_<N>/`` atomically (rank 0)."""
        if not self.is_main:
            return None
        step = self.state["global_step"]
        final = os.path.join(self.output_dir, f"{CHECKPOINT_PREFIX}{step}")
        tmp = os.path.join(self.output_dir, f".tmp-{CHECKPOINT_PREFIX}{step}-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        _save_pretrained(self.model, tmp, self._fp32_weights())
        paddle.save(_optimizer_state_to_structured(self.optimizer.state_dict(), self.param_names),
                    os.path.join(tmp, OPTIMIZER_FILE))
        if os.environ.get(_KILL_DURING_SAVE_ENV) == str(step):
            os._exit(17)  # emulate a kill while the checkpoint is half written
        write_json(os.path.join(tmp, SCHEDULER_FILE), self.scheduler.state_dict())
        with open(os.path.join(tmp, RNG_FILE), "wb") as f:
            pickle.dump(_rng_state(), f)
        if self.scaler is not None:
            paddle.save(self.scaler.state_dict(), os.path.join(tmp, "scaler.pdparams"))
        write_json(os.path.join(tmp, TRAINER_STATE), dict(self.state))  # last file: marks completeness
        replace_dir(tmp, final)
        self._rotate_checkpoints()
        logger.info("saved checkpoint %s", final)
        return final

    def _fp32_weights(self):
        """The weights to save under AMP O2 (fp32 master weights), None otherwise (``save_pretrained`` as is)."""
        if not (self.amp.enabled and self.amp.level == "O2"):
            return None
        return accel.fp32_state_dict(self.model, self.optimizer)

    def _rotate_checkpoints(self):
        limit = getattr(self.args, "save_total_limit", 0) or 0
        if limit <= 0:
            return
        found = list_checkpoints(self.output_dir)
        for _, path in found[:-limit]:
            shutil.rmtree(path, ignore_errors=True)

    def load_checkpoint(self, path):
        """Restores model, optimizer, scheduler, RNG and counters from ``step_<N>/``."""
        with open(os.path.join(path, TRAINER_STATE)) as f:
            state = json.load(f)
        weights = accel.match_dtypes(paddle.load(os.path.join(path, "model_state.pdparams")), self.model)
        info = self.model.load_weights(weights, source=path)
        if info["missing_keys"] or info["unexpected_keys"]:
            raise UsageError(f"checkpoint {path} does not fit the model: missing {info['missing_keys'][:5]}, "
                             f"unexpected {info['unexpected_keys'][:5]}")
        opt_state = paddle.load(os.path.join(path, OPTIMIZER_FILE))
        self.optimizer.set_state_dict(_optimizer_state_from_structured(opt_state, self.param_names))
        with open(os.path.join(path, SCHEDULER_FILE)) as f:
            self.scheduler.set_state_dict(json.load(f))
        # set_state_dict of the optimizer may carry its own LR_Scheduler entry; the scheduler file wins.
        with open(os.path.join(path, RNG_FILE), "rb") as f:
            _set_rng_state(pickle.load(f))
        scaler_path = os.path.join(path, "scaler.pdparams")
        if self.scaler is not None and os.path.isfile(scaler_path):
            self.scaler.load_state_dict(paddle.load(scaler_path))
        if state.get("total_steps") not in (None, self.total_steps):
            raise UsageError(f"checkpoint {path} was written by a run of {state['total_steps']} steps; this run has "
                             f"{self.total_steps} (keep --num_train_epochs/--max_steps/--batch_size/"
                             "--gradient_accumulation_steps and the process count the same to resume)")
        self.state.update(state)
        logger.info("resumed from %s at step %d (epoch %d, batch %d)", path, state["global_step"], state["epoch"],
                    state["batch_in_epoch"])

    # ------------------------------------------------------------------ evaluation
    def _is_better(self, value):
        best = self.state["best_metric"]
        if best is None:
            return True
        return value > best if self.args.greater_is_better else value < best

    def evaluate(self):
        if self.evaluate_fn is None or not self.is_main:
            return None
        self.model.eval()
        with paddle.no_grad(), accel.autocast(self.amp):
            metrics = self.evaluate_fn(self.model)
        self.model.train()
        step = self.state["global_step"]
        record = {"type": "eval", "step": step, "epoch": self.state["epoch"]}
        record.update(metrics)
        self.log.log(record)
        logger.info("eval at step %d: %s", step, to_json(metrics, sort_keys=True))
        key = self.args.metric_for_best
        if key and key in metrics and metrics[key] is not None and self._is_better(metrics[key]):
            self.state["best_metric"] = float(metrics[key])
            self.state["best_step"] = step
            save_model_dir(self.model, os.path.join(self.output_dir, "best"),
                           {"best.json": {"step": step, key: float(metrics[key]), "metrics": metrics}},
                           state_dict=self._fp32_weights())
        return metrics

    # ------------------------------------------------------------------ training
    def _forward(self, batch):
        kwargs = batch if self.model_kwargs is None else {k: v for k, v in batch.items() if k in self.model_kwargs}
        with accel.autocast(self.amp):
            return self.wrapped(**kwargs)["loss"]

    def train(self):
        """Trains to ``total_steps`` (resuming if asked) and returns the final trainer state."""
        args = self.args
        resume = resolve_resume(getattr(args, "resume_from", None), self.output_dir)
        if resume:
            self.load_checkpoint(resume)
        self.state["total_steps"] = self.total_steps
        self.model.train()
        accum = args.gradient_accumulation_steps
        eval_steps = getattr(args, "eval_steps", 0) or 0
        progress = None
        if self.is_main and not getattr(args, "disable_tqdm", False):
            from tqdm import tqdm

            progress = tqdm(total=self.total_steps, initial=self.state["global_step"], desc="train", dynamic_ncols=True)
        window_loss, window_batches, window_start = 0.0, 0, time.time()
        done = self.state["global_step"] >= self.total_steps
        while not done:
            epoch = self.state["epoch"]
            if hasattr(self.train_dataset, "set_epoch"):
                self.train_dataset.set_epoch(epoch)
            start_batch = self.state["batch_in_epoch"]
            self.sampler.set_epoch(epoch, skip_batches=start_batch)
            loader = make_loader(self.train_dataset, self.sampler, self.collate_fn, getattr(args, "num_workers", 0))
            batch_index = start_batch
            for batch in loader:
                if self.batch_transform is not None:
                    batch = self.batch_transform(batch)
                group = self.group_size(batch_index)
                last_of_group = (batch_index % accum == accum - 1) or (batch_index == self.batches_per_epoch - 1)
                sync = contextlib.nullcontext()
                if self.world_size > 1 and not last_of_group:
                    sync = self.wrapped.no_sync()
                with sync:
                    loss = self._forward(batch)
                    accel.backward(loss / group, self.scaler)  # scaled by the loss scale for float16 AMP
                window_loss += float(loss)
                window_batches += 1
                batch_index += 1
                if not last_of_group:
                    continue
                # Unscales (float16 AMP), skips the update on inf/nan, clips (ClipGradByGlobalNorm) and steps.
                accel.step(self.optimizer, self.scaler)
                lr = self.scheduler.get_lr()
                self.scheduler.step()
                self.model.clear_gradients()  # also parameters outside the optimizer (frozen pooler)
                self.state["global_step"] += 1
                self.state["batch_in_epoch"] = batch_index
                if batch_index >= self.batches_per_epoch:
                    self.state["epoch"] = epoch + 1
                    self.state["batch_in_epoch"] = 0
                step = self.state["global_step"]
                if progress is not None:
                    progress.update(1)
                    progress.set_postfix(loss=f"{float(loss):.4f}", lr=f"{lr:.2e}")
                if step % args.logging_steps == 0 or step == self.total_steps:
                    elapsed = time.time() - window_start
                    self.log.log({"type": "train", "step": step, "epoch": epoch, "loss": window_loss / window_batches,
                                  "learning_rate": lr, "batches_per_s": window_batches / max(elapsed, 1e-9)})
                    window_loss, window_batches, window_start = 0.0, 0, time.time()
                end_of_epoch = self.state["batch_in_epoch"] == 0
                finished = step >= self.total_steps
                if (step % eval_steps == 0) if eval_steps > 0 else (end_of_epoch or finished):
                    self.evaluate()
                elif finished:
                    self.evaluate()
                if step % args.save_steps == 0 or finished:
                    self.save_checkpoint()
                    if os.environ.get(_KILL_AFTER_STEP_ENV) == str(step):
                        os._exit(0)
                if finished:
                    done = True
                    break
        if progress is not None:
            progress.close()
        if self.is_main:
            save_model_dir(self.model, os.path.join(self.output_dir, "final"), {"trainer_state.json": dict(self.state)},
                           state_dict=self._fp32_weights())
        dump = os.environ.get(_DUMP_RANK_WEIGHTS_ENV)
        if dump:
            os.makedirs(dump, exist_ok=True)
            paddle.save(self.model.state_dict(), os.path.join(dump, f"rank{self.rank}.pdparams"))
        return dict(self.state)
