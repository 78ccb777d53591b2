"""The one training engine used by every script (pretraining, VQA2, NLVR2, VCR): it trains and evaluates.

* the optimizer, built by :func:`build_optimizer` (the one place): by default the original's BertAdam
  (:mod:`visualbert.optim`: per-tensor clipping, no bias correction, its warmup-linear schedule over the original's
  ``t_total``, no scheduler object), or AdamW (weight decay on everything but biases and LayerNorm parameters),
  linear warmup and decay to 0 (``paddlenlp.transformers.LinearDecayWithWarmup``) and global-norm clipping; the
  pooler is left out of the optimizer unless ``train_pooler``, as the original; ``--patience`` early stopping;
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
* the prediction loop (:func:`predict`) that evaluation during training and the predict scripts share;
* logging through :class:`RunLogger` (JSON lines ``metrics.jsonl``; the loss read from the device only at logging
  steps), evaluation every N steps or each epoch (sharded over the processes, gathered in dataset order), best
  checkpoint, checkpoints ``step_<N>/`` (:mod:`visualbert.checkpoints`), exact resume.

Only rank 0 writes files. Observers (tests, extra loggers) install :class:`TrainerCallback` objects.

Output directory layout::

    args.json            arguments, git commit, package versions (visualbert.rundir)
    metrics.jsonl        one JSON object per line: {"type": "train"|"eval", "step": ..., ...}
    step_<N>/            model (config.json, model_state.pdparams), optimizer.pdopt, scheduler.json,
                         rng.pkl, trainer_state.json (written last; a directory without it is incomplete)
    best/                model of the best evaluation (with best.json)
    final/               model at the end of training
"""

from __future__ import annotations

import collections
import contextlib
import logging
import math
import os
import time
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import paddle

from . import accel
from .checkpoints import load_checkpoint, resume_checkpoint, rotate_checkpoints, save_checkpoint, save_model_dir
from .cli import UsageError
from .config import TrainConfig
from .data.collate import LABEL_KEYS, TENSOR_KEYS, Collator
from .data.loader import BatchLoader, sequential_batches
from .distributed import init_distributed, rank, world_size
from .fileio import append_jsonl, to_json
from .optim import original_total_steps
from .rundir import METRICS_FILE, args_json_content, args_record, prepare_output_dir, run_inputs, write_args_json
from .safety import (
    NonFiniteGuard,
    NonFiniteLossError,
    batch_example_ids,
    deferred_signals,
    non_finite_parameters,
    truncate_metrics,
)

logger = logging.getLogger("visualbert.engine")


# ------------------------------------------------------------------------------------------ optimizer
def no_decay(name: str) -> bool:
    """True for parameters without weight decay: biases and LayerNorm weights (BERT convention)."""
    return name.endswith("bias") or "LayerNorm" in name or ".norm" in name.lower()


def trainable_named_parameters(model: paddle.nn.Layer, freeze_pooler: bool = False) -> list:
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


def build_optimizer(model: paddle.nn.Layer, total_steps: int, learning_rate: float, warmup: float | int = 0.1,
                    weight_decay: float = 0.01, adam_epsilon: float = 1e-6, adam_beta1: float = 0.9,
                    adam_beta2: float = 0.999, max_grad_norm: float = 1.0, freeze_pooler: bool = False,
                    optimizer: str = "adamw", master_weights: Mapping[str, Any] | None = None):
    """The optimizer of a run: ``"bertadam"`` (the original's, :class:`visualbert.optim.BertAdam` with its
    ``WarmupLinearSchedule`` inside: per-tensor clipping, no bias correction, no scheduler object) or ``"adamw"``
    (AdamW + ``LinearDecayWithWarmup`` + global-norm clipping).

    Args:
        total_steps (int): steps of the learning-rate schedule (BertAdam's ``t_total``).
        warmup (float or int): a float in [0, 1] is a proportion of ``total_steps``, an int a number of steps.
        max_grad_norm (float): clip threshold; <= 0 disables clipping.
        master_weights (dict, optional): BertAdam: ``{structured name: float32 tensor}`` taken before an AMP O2 cast.

    Returns:
        tuple: (optimizer, scheduler or None (bertadam), {param.name: structured name}).

    The one place the optimizer is made: :class:`Trainer` calls it with the :class:`TrainConfig` values.
    """
    named = trainable_named_parameters(model, freeze_pooler)
    if optimizer == "bertadam":
        from .optim import BertAdam

        total = max(1, int(total_steps))
        proportion = warmup / total if isinstance(warmup, int) else float(warmup)
        if not 0.0 <= proportion < 1.0:
            raise UsageError(f"--warmup {warmup}: BertAdam needs a warmup below the {total} steps of the schedule")
        bert_adam = BertAdam(named, learning_rate, warmup=proportion, t_total=total, b1=adam_beta1, b2=adam_beta2,
                             e=adam_epsilon, weight_decay=weight_decay, max_grad_norm=max_grad_norm,
                             master_weights=master_weights)
        return bert_adam, None, {p.name: n for n, p in named}
    if optimizer != "adamw":
        raise UsageError(f"unknown optimizer {optimizer!r} (bertadam or adamw)")
    from paddlenlp.transformers import LinearDecayWithWarmup

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

    def __init__(self, num_examples: int, batch_size: int, shuffle: bool = True, seed: int = 0, world_size: int = 1,
                 rank: int = 0):
        self.num_examples = int(num_examples)
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.seed = int(seed)
        self.world_size = int(world_size)
        self.rank = int(rank)
        self.epoch = 0
        self.skip = 0

    def set_epoch(self, epoch: int, skip_batches: int = 0) -> None:
        self.epoch = int(epoch)
        self.skip = int(skip_batches)

    def global_order(self) -> np.ndarray:
        if self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch, 2024]).permutation(self.num_examples)
        else:
            order = np.arange(self.num_examples)
        pad = (-len(order)) % self.world_size
        if pad:
            order = np.concatenate([order, order[:pad]])
        return order

    def all_batches(self) -> list[list[int]]:
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


def make_loader(dataset, batch_sampler, collate_fn: Callable, num_workers: int = 0) -> BatchLoader:
    """The batches of ``batch_sampler`` over ``dataset`` (``--num_workers``, default 0 = in the calling thread).

    :class:`visualbert.data.loader.BatchLoader`, not paddle's DataLoader: paddle's reads in a background thread
    even with 0 workers and blocks forever when the dataset raises (see the loader's docstring). With 0 workers a
    data error propagates as it is; with N workers it is re-raised in the main process and the workers end. A new
    loader is built per epoch (and :func:`eval_batches` per evaluation) because ``dataset.set_epoch`` runs in the
    main process and persistent workers would keep the previous epoch's copy (stale MLM / pair draws).
    """
    return BatchLoader(dataset, batch_sampler, collate_fn, num_workers=num_workers)


def eval_batches(dataset, collate_fn: Callable, batch_size: int, num_workers: int = 0) -> BatchLoader:
    """Sequential, unshuffled batches over the whole dataset (for evaluation and prediction on one process).

    Raises:
        ValueError: ``batch_size`` < 1.
    """
    return BatchLoader(dataset, sequential_batches(len(dataset), batch_size), collate_fn, num_workers=num_workers)


def mask_regions(batch: dict) -> dict:
    """Text-only baseline (``--text_only``): no token can attend to a region (``visual_attention_mask`` = 0)."""
    batch = dict(batch)
    batch["visual_attention_mask"] = paddle.zeros_like(batch["visual_attention_mask"])
    return batch


def model_inputs(batch: Mapping[str, Any]) -> dict:
    """The entries of a collated batch that are forward arguments of the model (the others are metadata)."""
    return {k: v for k, v in batch.items() if k in TENSOR_KEYS}


def _numpy(value):
    # Tensor.numpy() of a bf16 tensor returns its uint16 bit patterns (paddle 3.3.1): cast inside Paddle first.
    return value if isinstance(value, np.ndarray) else accel.to_float32_numpy(value)


# ------------------------------------------------------------------------------------------ prediction
def predict(model, dataset, batch_size: int, collate_fn: Callable | None = None, text_only: bool = False,
            num_workers: int = 0, outputs: Sequence[str] = ("logits",),
            on_batch: Callable[[dict, Any], None] | None = None, collect_meta: bool = True):
    """Runs the model over ``dataset`` in order: the one evaluation / prediction loop.

    ``model`` is a dygraph model or a :class:`visualbert.build.ExportedModel` (an exported model behind the same
    call: tensors of the batch in, numpy ``logits`` out, no loss).

    Args:
        outputs (tuple[str]): model outputs kept (concatenated over batches).
        on_batch (callable, optional): ``on_batch(batch, out)`` after each forward, for reductions that must not
            keep whole outputs (e.g. the pretraining MLM logits).
        collect_meta (bool): keep the labels and metadata of every example.

    Returns:
        tuple: (dict output name → numpy array concatenated over batches, dict metadata key → list (labels: numpy
        array), mean loss over examples or None)
    """
    collate_fn = collate_fn or Collator()
    model.eval()
    results = collections.defaultdict(list)
    meta = collections.defaultdict(list)
    losses, weights = [], []
    with paddle.no_grad():
        for batch in eval_batches(dataset, collate_fn, batch_size, num_workers):
            if text_only:
                batch = mask_regions(batch)
            out = model(**model_inputs(batch))
            for name in outputs:
                results[name].append(_numpy(out[name]))
            if on_batch is not None:
                on_batch(batch, out)
            if "loss" in out and out["loss"] is not None:
                losses.append(float(out["loss"]))
                weights.append(batch["input_ids"].shape[0])
            if not collect_meta:
                continue
            for key, value in batch.items():
                if key in LABEL_KEYS:
                    meta[key].append(value.numpy())
                elif key not in TENSOR_KEYS:
                    meta[key].extend(value)
    arrays = {k: np.concatenate(v) for k, v in results.items()}
    for key in LABEL_KEYS:
        if key in meta:
            try:
                meta[key] = np.concatenate(meta[key])
            except ValueError:  # MLM labels of varying width
                pass
    loss = float(np.average(losses, weights=weights)) if losses else None
    return arrays, dict(meta), loss


def evaluate(model, task, dataset, batch_size: int, collate_fn: Callable | None = None, text_only: bool = False,
             num_workers: int = 0, world_size: int = 1, rank: int = 0) -> dict:
    """The task's metrics of ``model`` on ``dataset``: :func:`predict`, then ``task.score`` (a pure function of the
    outputs and the examples).

    A task with ``batch_statistics(batch, out) -> dict of numbers`` (pretraining: its MLM logits are too large to
    keep) has them summed over batches and passed to ``score`` as ``meta["statistics"]``; a task with
    ``evaluator(dataset)`` (grounding) gets that ``on_batch`` callable back as ``meta["evaluator"]``.

    With ``world_size`` > 1 (call it on every rank) each rank predicts its contiguous block of ``dataset``
    (:mod:`visualbert.distributed_eval`) and the outputs, losses and statistics are gathered in dataset order: every
    rank returns the metrics of one process over the whole split. A task with its own ``evaluator`` is not
    sharded: every rank evaluates the whole split (same metrics everywhere, no gather).
    """
    from . import distributed_eval

    if hasattr(task, "evaluator"):  # reduces each batch itself (grounding: phrase and region counts vary per batch)
        reduction = task.evaluator(dataset)
        _, _, loss = predict(model, dataset, batch_size, collate_fn, text_only, num_workers, outputs=(),
                             on_batch=reduction, collect_meta=False)
        return task.score(dataset, {}, {"evaluator": reduction}, loss)
    if len(dataset) < world_size:  # too small to give every rank a block: each evaluates all of it alone
        world_size, rank = 1, 0
    part = distributed_eval.shard(dataset, world_size, rank)
    streaming = hasattr(task, "batch_statistics")
    totals = collections.Counter()
    on_batch = (lambda batch, out: totals.update(task.batch_statistics(batch, out))) if streaming else None
    arrays, meta, loss = predict(model, part, batch_size, collate_fn, text_only, num_workers,
                                 outputs=() if streaming else task.outputs, on_batch=on_batch,
                                 collect_meta=not streaming)
    if world_size > 1:
        arrays, meta = distributed_eval.gather_outputs(arrays, meta)
        loss = distributed_eval.combine_mean(loss, len(part))
        totals = collections.Counter(distributed_eval.sum_counts(totals)) if streaming else totals
    if streaming:
        meta["statistics"] = totals
    return task.score(dataset, arrays, meta, loss)


# ------------------------------------------------------------------------------------------ observers
class TrainerCallback:
    """Observer of a training run; every method is a no-op here. Install with ``Trainer(..., callbacks=[...])``
    (or the scripts' ``main(argv, callbacks=[...])``)."""

    def on_log(self, trainer: "Trainer", record: dict) -> None:
        """A record was logged (``record["type"]`` is "train" or "eval"; rank 0)."""

    def on_save_partial(self, trainer: "Trainer", step: int, tmp_dir: str) -> None:
        """The model and optimizer of checkpoint ``step`` are written into ``tmp_dir``, the rest is not."""

    def on_save(self, trainer: "Trainer", step: int, path: str) -> None:
        """Checkpoint ``step`` is complete at ``path`` (rank 0)."""

    def on_train_end(self, trainer: "Trainer") -> None:
        """Training finished (every rank)."""


class RunLogger:
    """Where every training and evaluation record goes: ``metrics.jsonl`` (rank 0) and the callbacks."""

    def __init__(self, path: str, enabled: bool = True, callbacks: Iterable[TrainerCallback] = ()):
        self.path = path
        self.enabled = enabled
        self.callbacks = tuple(callbacks)

    def log(self, trainer: "Trainer", record: dict) -> None:
        if not self.enabled:
            return
        append_jsonl(self.path, record)
        if record.get("type") == "eval":
            logger.info("eval at step %d: %s", record["step"], to_json(record, sort_keys=True))
        for callback in self.callbacks:
            callback.on_log(trainer, record)


# ------------------------------------------------------------------------------------------ trainer
class Trainer:
    """Runs training (and periodic evaluation) for one model and dataset.

    Args:
        config (TrainConfig): the run's settings (read only).
        model (paddle.nn.Layer): an unwrapped VisualBERT model; ``model(**inputs)`` returns ``loss``.
        train_dataset: indexable dataset of numpy dicts.
        collate_fn (callable): samples → batch dict (forward arguments of :data:`TENSOR_KEYS` + metadata).
        evaluate_fn (callable, optional): ``evaluate_fn(model) -> dict of floats``, run on every rank (collectives
            inside it must be called by all ranks; every rank must return the same metrics).
        callbacks (iterable of TrainerCallback): observers of the run.
    """

    def __init__(self, config: TrainConfig, model: paddle.nn.Layer, train_dataset, collate_fn: Callable,
                 evaluate_fn: Callable[[paddle.nn.Layer], dict] | None = None,
                 callbacks: Iterable[TrainerCallback] = ()):
        self.config = config
        self.model = model
        self.train_dataset = train_dataset
        self.collate_fn = collate_fn
        self.evaluate_fn = evaluate_fn
        self.callbacks = tuple(callbacks)
        self.world_size = world_size()
        self.rank = rank()
        self.is_main = self.rank == 0
        self.output_dir = config.output_dir
        n = len(train_dataset)
        if config.batch_size * self.world_size > n:
            raise UsageError(f"--batch_size {config.batch_size} × {self.world_size} process(es) is larger than the "
                             f"training set ({n} examples)")
        self.sampler = ShardedShuffleBatchSampler(n, config.batch_size, shuffle=True, seed=config.seed,
                                                  world_size=self.world_size, rank=self.rank)
        self.batches_per_epoch = len(self.sampler)
        self.updates_per_epoch = math.ceil(self.batches_per_epoch / config.gradient_accumulation_steps)
        if config.max_steps > 0:
            self.total_steps = config.max_steps
        else:
            self.total_steps = self.updates_per_epoch * config.num_train_epochs
        self.num_epochs = math.ceil(self.total_steps / self.updates_per_epoch)
        # Precision and attention kernels: visualbert.accel (AMP off with a warning on CPU; fused attention
        # "auto" = on a GPU only).
        self.amp = accel.AmpConfig.from_args(config)
        self.fused_attention = accel.resolve_fused_attention(config.fused_attention)
        accel.set_fused_attention(model, self.fused_attention)
        freeze_pooler = not config.train_pooler
        # O2 keeps the frozen pooler fp32: it is outside the optimizer, so it has no fp32 master weight.
        keep_float32 = accel.float32_layers(model, freeze_pooler)
        schedule_steps = self.total_steps
        if config.optimizer == "bertadam" and config.max_steps <= 0:
            # The original's t_total (int(len / global batch / accumulation) * epochs); the loop still runs every
            # batch of every epoch, as the original's, the last updates at a learning rate of 0.
            schedule_steps = original_total_steps(n, config.batch_size * self.world_size, config.num_train_epochs,
                                                  config.gradient_accumulation_steps)
        self.schedule_steps = schedule_steps
        optimizer_args = dict(warmup=config.warmup, weight_decay=config.weight_decay,
                              adam_epsilon=config.adam_epsilon, adam_beta1=config.adam_beta1,
                              adam_beta2=config.adam_beta2, max_grad_norm=config.max_grad_norm,
                              freeze_pooler=freeze_pooler, optimizer=config.optimizer)
        if config.optimizer == "bertadam":
            # BertAdam keeps its own fp32 master weights: taken BEFORE the O2 cast (paddle.amp.decorate handles
            # paddle optimizers only, so it casts the model alone here).
            masters = None
            if self.amp.enabled and self.amp.level == "O2":
                masters = {name: p.detach().astype("float32").clone()
                           for name, p in trainable_named_parameters(model, freeze_pooler)}
            self.model, _ = accel.prepare(model, None, self.amp, keep_float32=keep_float32)
            self.optimizer, self.scheduler, self.param_names = build_optimizer(
                self.model, schedule_steps, config.learning_rate, master_weights=masters, **optimizer_args)
        else:
            self.optimizer, self.scheduler, self.param_names = build_optimizer(
                model, schedule_steps, config.learning_rate, **optimizer_args)
            self.model, self.optimizer = accel.prepare(model, self.optimizer, self.amp,  # O2: low-precision weights
                                                       keep_float32=keep_float32)
        self.scaler = accel.grad_scaler(self.amp)  # float16 only
        if self.amp.enabled:
            logger.info("AMP %s %s%s", self.amp.level, self.amp.dtype,
                        f", initial loss scale {self.amp.init_loss_scaling:g}" if self.scaler is not None else "")
        self.state = {"global_step": 0, "epoch": 0, "batch_in_epoch": 0, "best_metric": None, "best_step": None,
                      "metric_for_best": config.metric_for_best, "greater_is_better": config.greater_is_better}
        self.log = RunLogger(os.path.join(self.output_dir, METRICS_FILE), enabled=self.is_main,
                             callbacks=self.callbacks)
        self.args_json = None  # args.json content, written by train() once a resume is accepted (set by fit)
        self.wrapped = self.model
        if self.world_size > 1:
            init_distributed()
            # The extra traversal and all-reduce bookkeeping only where the head leaves parameters without a gradient
            # (e.g. MLM-only pretraining: pooler and seq_relationship); keys of one collated training batch.
            keys = self.collate_fn([train_dataset[i] for i in range(min(n, config.batch_size))]).keys()
            self.wrapped = paddle.DataParallel(
                self.model, find_unused_parameters=accel.needs_find_unused_parameters(self.model, keys))

    # ------------------------------------------------------------------ state
    def group_size(self, batch_index: int) -> int:
        """Number of micro-batches in the accumulation group of ``batch_index`` (the epoch's last may be short)."""
        accum = self.config.gradient_accumulation_steps
        start = (batch_index // accum) * accum
        return min(accum, self.batches_per_epoch - start)

    def save_checkpoint(self) -> str | None:
        """Writes ``step_<N>/`` atomically (rank 0) and rotates old ones (``--save_total_limit``)."""
        if not self.is_main:
            return None
        step = self.state["global_step"]

        def partial(tmp_dir):
            for callback in self.callbacks:
                callback.on_save_partial(self, step, tmp_dir)

        weights = self._finite_weights(f"checkpoint step_{step}")
        with deferred_signals():  # a SIGINT/SIGTERM now stops the run after the rename, never half-way
            path = save_checkpoint(self.output_dir, self.state, self.model, self.optimizer, self.scheduler, self.scaler,
                                   self.param_names, weights, on_partial=partial)
            rotate_checkpoints(self.output_dir, self.config.save_total_limit)
        logger.info("saved checkpoint %s", path)
        for callback in self.callbacks:
            callback.on_save(self, step, path)
        return path

    def _fp32_weights(self):
        """The weights to save under AMP O2 (fp32 master weights), None otherwise (``save_pretrained`` as is)."""
        if not (self.amp.enabled and self.amp.level == "O2"):
            return None
        return accel.fp32_state_dict(self.model, self.optimizer)

    def _finite_weights(self, what: str):
        """:meth:`_fp32_weights`, after checking that the weights about to be saved as ``what`` are finite.

        Raises:
            NonFiniteLossError: naming the first non-finite parameters (nothing is saved).
        """
        weights = self._fp32_weights()
        bad = non_finite_parameters(weights if weights is not None else self.model.state_dict())
        if bad:
            raise NonFiniteLossError(f"not saving {what}: {len(bad)} parameter(s) hold NaN or inf at step "
                                     f"{self.state['global_step']} (first: {', '.join(bad[:3])})")
        return weights

    def _save_model_dir(self, name: str, extra_json: Mapping[str, Any]) -> None:
        """Saves ``best/`` or ``final/`` (finite weights only; signals deferred until it is in place)."""
        weights = self._finite_weights(f"{name}/")
        with deferred_signals():
            save_model_dir(self.model, os.path.join(self.output_dir, name), extra_json, state_dict=weights)

    def load_checkpoint(self, path: str) -> None:
        """Restores model, optimizer, scheduler, RNG and counters from ``step_<N>/``."""
        state = load_checkpoint(path, self.model, self.optimizer, self.scheduler, self.scaler, self.param_names)
        if state.get("total_steps") not in (None, self.total_steps):
            raise UsageError(f"checkpoint {path} was written by a run of {state['total_steps']} steps; this run has "
                             f"{self.total_steps} (keep --num_train_epochs/--max_steps/--batch_size/"
                             "--gradient_accumulation_steps and the process count the same to resume)")
        self.state.update(state)
        logger.info("resumed from %s at step %d (epoch %d, batch %d)", path, state["global_step"], state["epoch"],
                    state["batch_in_epoch"])

    def learning_rate(self) -> float:
        """float: the learning rate of the next update (BertAdam: 0 before the first, as the original)."""
        if self.scheduler is None:
            return float(self.optimizer.get_lr())
        return float(self.scheduler.get_lr())

    # ------------------------------------------------------------------ evaluation
    def patience_exhausted(self) -> bool:
        """The original's early stopping (``models/train.py``): with ``--patience N`` > 0, True once the best of the
        evaluations so far (the first best, ``np.argmax``) is more than N evaluations older than the last one."""
        history = self.state.get("eval_history") or []
        if self.config.patience <= 0 or not history:
            return False
        signed = [v if self.config.greater_is_better else -v for v in history]
        return int(np.argmax(signed)) < len(signed) - 1 - self.config.patience

    def _is_better(self, value: float) -> bool:
        best = self.state["best_metric"]
        if best is None:
            return True
        return value > best if self.config.greater_is_better else value < best

    def evaluate(self) -> dict | None:
        """Runs ``evaluate_fn`` on every rank (each evaluates its shard and the metrics are gathered, so every rank
        sees the same numbers), logs it and saves ``best/`` when the metric improved (rank 0 writes)."""
        if self.evaluate_fn is None:
            return None
        self.model.eval()
        with paddle.no_grad(), accel.autocast(self.amp):
            metrics = self.evaluate_fn(self.model)
        self.model.train()
        step = self.state["global_step"]
        self.log.log(self, dict({"type": "eval", "step": step, "epoch": self.state["epoch"]}, **metrics))
        key = self.config.metric_for_best
        if key and key in metrics and metrics[key] is not None:
            self.state["eval_history"] = list(self.state.get("eval_history") or []) + [float(metrics[key])]
        if key and key in metrics and metrics[key] is not None and self._is_better(metrics[key]):
            self.state["best_metric"] = float(metrics[key])
            self.state["best_step"] = step
            if self.is_main:
                self._save_model_dir("best", {"best.json": {"step": step, key: float(metrics[key]), "metrics": metrics}})
        return metrics

    # ------------------------------------------------------------------ training
    def _forward(self, batch: dict):
        with accel.autocast(self.amp):
            return self.wrapped(**model_inputs(batch))["loss"]

    def train(self) -> dict:
        """Trains to ``total_steps`` (resuming if asked) and returns the final trainer state."""
        config = self.config
        resume_checkpoint(config.resume_from, self.output_dir, self.load_checkpoint)
        if self.is_main:
            # the resume is accepted: only now args.json gets this invocation's record, and the log loses the
            # records of steps the run will do again
            if self.args_json is not None:
                write_args_json(self.output_dir, self.args_json)
            truncate_metrics(self.log.path, self.state["global_step"])
        guard = NonFiniteGuard(config.max_nonfinite_steps, loss_scaling=self.scaler is not None)
        self.state["total_steps"] = self.total_steps
        self.model.train()
        accum = config.gradient_accumulation_steps
        progress = None
        if self.is_main and not config.disable_tqdm:
            from tqdm import tqdm

            progress = tqdm(total=self.total_steps, initial=self.state["global_step"], desc="train", dynamic_ncols=True)
        window, window_start = accel.LossWindow(), time.time()  # the loss stays on the device until logged
        done = self.state["global_step"] >= self.total_steps or bool(self.state.get("stopped_early"))
        while not done:
            epoch = self.state["epoch"]
            if hasattr(self.train_dataset, "set_epoch"):
                self.train_dataset.set_epoch(epoch)
            start_batch = self.state["batch_in_epoch"]
            self.sampler.set_epoch(epoch, skip_batches=start_batch)
            loader = make_loader(self.train_dataset, self.sampler, self.collate_fn, config.num_workers)
            batch_index = start_batch
            for batch in loader:
                if config.text_only:
                    batch = mask_regions(batch)
                group = self.group_size(batch_index)
                last_of_group = (batch_index % accum == accum - 1) or (batch_index == self.batches_per_epoch - 1)
                sync = contextlib.nullcontext()
                if self.world_size > 1 and not last_of_group:
                    sync = self.wrapped.no_sync()
                with sync:
                    loss = self._forward(batch)
                    accel.backward(loss / group, self.scaler)  # scaled by the loss scale for float16 AMP
                window.add(loss)
                # one host sync per micro-batch: a non-finite loss stops the run at its own batch (named), before
                # the update (issue 8)
                guard.check(float(loss), self.state["global_step"] + 1, batch_example_ids(batch))
                batch_index += 1
                if not last_of_group:
                    continue
                # Unscales (float16 AMP), skips the update on inf/nan, clips (BertAdam: per tensor inside its step;
                # AdamW: ClipGradByGlobalNorm) and steps. The rate logged is the one of this update.
                lr = self.learning_rate()
                accel.step(self.optimizer, self.scaler)
                if self.scheduler is not None:
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
                if step % config.logging_steps == 0 or step == self.total_steps:
                    elapsed = time.time() - window_start
                    window_mean, window_batches = window.read()  # the one device sync per logging step
                    if progress is not None:
                        progress.set_postfix(loss=f"{window_mean:.4f}", lr=f"{lr:.2e}")
                    self.log.log(self, {"type": "train", "step": step, "epoch": epoch,
                                        "loss": window_mean, "learning_rate": lr,
                                        "batches_per_s": window_batches / max(elapsed, 1e-9)})
                    window_start = time.time()
                end_of_epoch = self.state["batch_in_epoch"] == 0
                finished = step >= self.total_steps
                if (step % config.eval_steps == 0) if config.eval_steps > 0 else (end_of_epoch or finished):
                    self.evaluate()
                elif finished:
                    self.evaluate()
                if not finished and self.patience_exhausted():
                    logger.info("early stopping at step %d: the best evaluation (step %s) is more than %d "
                                "evaluations old (--patience)", step, self.state["best_step"], config.patience)
                    self.state["stopped_early"] = True  # a resumed run does not train on
                    finished = True
                if step % config.save_steps == 0 or finished:
                    self.save_checkpoint()
                if finished:
                    done = True
                    break
        if progress is not None:
            progress.close()
        if self.is_main:
            self._save_model_dir("final", {"trainer_state.json": dict(self.state)})
        if self.world_size > 1:
            # No rank leaves (and tears down its process-group connections) while rank 0 is still writing.
            paddle.distributed.barrier()
        for callback in self.callbacks:
            callback.on_train_end(self)
        return dict(self.state)


def fit(config: TrainConfig, model: paddle.nn.Layer, train_dataset, eval_dataset, task, collate_fn: Callable,
        metadata: Mapping[str, Any] | None = None, callbacks: Iterable[TrainerCallback] = ()) -> dict:
    """Trains ``model`` on ``train_dataset``, evaluating ``task``'s metrics on ``eval_dataset`` (None: no
    evaluation): the :class:`Trainer`, the output directory and its ``args.json``, then :meth:`Trainer.train`.

    Returns:
        dict: the final trainer state.
    """
    callbacks = list(callbacks)
    if config.visualdl:  # scalars under <output_dir>/visualdl; on_log runs on rank 0 only
        from .visualdl_log import VisualDLCallback

        callbacks.append(VisualDLCallback())
    evaluate_fn = None
    if eval_dataset is not None:
        def evaluate_fn(m):
            return evaluate(m, task, eval_dataset, config.eval_batch_size, collate_fn, config.text_only,
                            config.num_workers, world_size=world_size(), rank=rank())
    trainer = Trainer(config, model, train_dataset, collate_fn, evaluate_fn=evaluate_fn, callbacks=callbacks)
    prepare_output_dir(config.output_dir, config.resume_from, config.overwrite_output_dir, run_inputs(config.arguments))
    if trainer.is_main:
        extra = {"num_train_examples": len(train_dataset), "num_eval_examples": len(eval_dataset) if eval_dataset else 0,
                 "total_steps": trainer.total_steps, "visual_embedding_dim": model.config.visual_embedding_dim,
                 "model_class": type(model).__name__, "config": model.config.to_dict()}
        extra.update(metadata or {})
        trainer.args_json = args_json_content(config.output_dir, args_record(config.arguments, extra))
    from .console import startup_line

    amp = f"{trainer.amp.level} {trainer.amp.dtype}" if trainer.amp.enabled else "off"
    logger.info(startup_line(config.output_dir, amp, trainer.world_size))
    logger.info("training %s on %d examples for %d steps (%d per epoch) -> %s", type(model).__name__,
                len(train_dataset), trainer.total_steps, trainer.updates_per_epoch, os.path.abspath(config.output_dir))
    try:
        return trainer.train()
    finally:  # also on an error or Ctrl-C: event files are flushed and closed
        for callback in callbacks:
            if hasattr(callback, "close"):
                callback.close()
