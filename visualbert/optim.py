"""BertAdam and its warmup-linear schedule, as the original VisualBERT trained with them.

The original (uclanlp/visualbert ``pytorch_pretrained_bert/optimization.py``, ``models/model_wrapper.py``) does
not train with AdamW. :class:`BertAdam` reproduces its update, per parameter tensor ``p`` with gradient ``g``::

    g      = g * min(1, max_grad_norm / (||g||_2 + 1e-6))   # clip_grad_norm_ on this ONE tensor, not a global norm
    m      = b1 * m + (1 - b1) * g                          # "next_m"; no bias correction
    v      = b2 * v + (1 - b2) * g * g                      # "next_v"; no bias correction
    update = m / (sqrt(v) + e)                              # e outside the root
    update = update + weight_decay * p                      # decoupled decay (0 for biases / LayerNorm)
    p      = p - lr * schedule(step) * update               # step counted BEFORE the increment: the first
    step   = step + 1                                       # update of a tensor has learning rate 0

:class:`WarmupLinearSchedule` is the original's multiplier (``progress = step / t_total``: ``progress / warmup``
during warmup, then ``max((progress - 1) / (warmup - 1), 0)``), and :func:`original_total_steps` its count of
optimizer steps, ``int(len(train) / batch / accumulation) * epochs``, with the global batch.

Parameters are given by name (the unwrapped model's structured names), so the state (:meth:`BertAdam.state_dict`)
is keyed by those names and survives ``paddle.DataParallel`` wrapping and resuming in another process. Parameters
in float16/bfloat16 (AMP O2) are updated through float32 master weights kept by the optimizer. With
``paddle.amp.GradScaler``, ``scaler.step(optimizer)`` unscales the gradients first and skips the update (the
step counters do not move) when one is inf/nan.
"""

from typing import Callable, Dict, Iterable, List, Optional, Tuple

import numpy as np
import paddle

from . import kernels

STATE_FORMAT = "bertadam-v1"
# Substrings of the original's no_decay list (model_wrapper.initialize_opimizer).
ORIGINAL_NO_DECAY = ("bias", "LayerNorm.bias", "LayerNorm.weight")
# The original leaves every parameter whose name contains this out of the optimizer.
ORIGINAL_EXCLUDED = "pooler"
_CLIP_EPS = 1e-6  # torch.nn.utils.clip_grad_norm_: max_norm / (total_norm + 1e-6)


def original_no_decay(name: str) -> bool:
    """True for the parameters the original trains without weight decay (a name containing ``bias``,
    ``LayerNorm.bias`` or ``LayerNorm.weight``)."""
    return any(part in name for part in ORIGINAL_NO_DECAY)


def original_total_steps(num_examples: int, global_batch_size: int, num_epochs: int,
                         gradient_accumulation_steps: int = 1) -> int:
    """The original's number of optimizer steps: ``int(len(train) / batch / accumulation) * epochs``.

    The division is a float division truncated once, so a last partial batch of an epoch is not counted
    (the original's loader still runs it; its schedule then ends slightly before training does).

    Args:
        num_examples (int): training examples.
        global_batch_size (int): examples per micro-batch over all processes (the config's train_batch_size).
        num_epochs (int): epochs.
        gradient_accumulation_steps (int): micro-batches per optimizer step.

    Returns:
        int: t_total.
    """
    if global_batch_size <= 0 or gradient_accumulation_steps <= 0:
        raise ValueError("batch size and gradient accumulation steps must be positive")
    return int(num_examples / global_batch_size / gradient_accumulation_steps) * int(num_epochs)


class WarmupLinearSchedule:
    """The original's ``WarmupLinearSchedule`` multiplier.

    Args:
        warmup (float): warmup as a proportion of ``t_total``, in [0, 1) (or -1: none, as the original).
        t_total (int): planned optimizer steps; < 0 means a constant multiplier of 1.
    """

    def __init__(self, warmup: float = 0.002, t_total: int = -1):
        if not 0.0 <= warmup < 1.0 and not warmup == -1:
            raise ValueError(f"invalid warmup {warmup}: should be in [0.0, 1.0) or -1")
        self.warmup = float(max(warmup, 0.0))
        self.t_total = float(t_total)

    def __call__(self, step: int) -> float:
        """float: the multiplier of the learning rate for an update made when ``step`` updates were done."""
        if self.t_total < 0:
            return 1.0
        progress = float(step) / self.t_total
        if progress < self.warmup:
            return progress / self.warmup
        return max((progress - 1.0) / (self.warmup - 1.0), 0.0)


def _is_low_precision(tensor) -> bool:
    return tensor.dtype in (paddle.float16, paddle.bfloat16)


class BertAdam:
    """The original's BertAdam for Paddle dygraph.

    Args:
        named_parameters (iterable of (str, paddle.Tensor)): the parameters to train, by structured name
            (``model.named_parameters()`` of the unwrapped model, minus what is frozen).
        learning_rate (float): peak learning rate.
        warmup (float): warmup proportion of ``t_total`` ([0, 1) or -1).
        t_total (int): optimizer steps of the schedule (:func:`original_total_steps`); -1: constant rate.
        b1, b2 (float): moment coefficients (0.9, 0.999).
        e (float): epsilon added to ``sqrt(v)`` (1e-6).
        weight_decay (float): decoupled decay of the parameters for which ``no_decay(name)`` is false (0.01).
        max_grad_norm (float): per-tensor L2 clip of the gradient; <= 0 disables it (1.0).
        no_decay (callable): ``name -> bool``; default :func:`original_no_decay`.
        master_weights (dict, optional): ``{name: float32 tensor}`` starting values of the master weights of
            low-precision parameters (e.g. taken before an AMP O2 cast); by default a low-precision parameter's
            master weight is its own value cast to float32.

    Attributes:
        _parameter_list (list[paddle.Tensor]): the parameters (read by ``paddle.amp.GradScaler``).
        _master_weights (dict): ``{param.name: float32 master}`` for low-precision parameters (read by
            :func:`visualbert.accel.fp32_state_dict`).
    """

    def __init__(self, named_parameters: Iterable[Tuple[str, paddle.Tensor]], learning_rate: float,
                 warmup: float = -1, t_total: int = -1, b1: float = 0.9, b2: float = 0.999, e: float = 1e-6,
                 weight_decay: float = 0.01, max_grad_norm: float = 1.0,
                 no_decay: Callable[[str], bool] = original_no_decay,
                 master_weights: Optional[Dict[str, paddle.Tensor]] = None):
        if learning_rate < 0.0:
            raise ValueError(f"invalid learning rate {learning_rate}: should be >= 0.0")
        if not 0.0 <= b1 < 1.0:
            raise ValueError(f"invalid b1 {b1}: should be in [0.0, 1.0)")
        if not 0.0 <= b2 < 1.0:
            raise ValueError(f"invalid b2 {b2}: should be in [0.0, 1.0)")
        if not e >= 0.0:
            raise ValueError(f"invalid epsilon {e}: should be >= 0.0")
        self.named_parameters: List[Tuple[str, paddle.Tensor]] = list(named_parameters)
        names = [n for n, _ in self.named_parameters]
        if len(set(names)) != len(names):
            raise ValueError("BertAdam: duplicate parameter names")
        if not names:
            raise ValueError("BertAdam: no parameters to optimise")
        self.learning_rate = float(learning_rate)
        self.schedule = WarmupLinearSchedule(warmup, t_total)
        self.b1, self.b2, self.e = float(b1), float(b2), float(e)
        self.max_grad_norm = float(max_grad_norm)
        self.weight_decay = {n: (0.0 if no_decay(n) else float(weight_decay)) for n in names}
        self._parameter_list = [p for _, p in self.named_parameters]
        self.state: Dict[str, dict] = {}
        self._masters: Dict[str, paddle.Tensor] = {}
        master_weights = master_weights or {}
        for name, param in self.named_parameters:
            if _is_low_precision(param):
                start = master_weights.get(name)
                start = param if start is None else start
                master = start.detach().astype("float32").clone()
                master.stop_gradient = True
                self._masters[name] = master

    # ------------------------------------------------------------------ learning rate
    @property
    def step_count(self) -> int:
        """int: updates made (the largest per-tensor count; all tensors agree unless some had no gradient)."""
        return max((s["step"] for s in self.state.values()), default=0)

    def get_lr(self) -> float:
        """float: the learning rate of the next update (``learning_rate * schedule(step_count)``); 0 before the
        first, as the original's ``BertAdam.get_lr``."""
        return self.learning_rate * self.schedule(self.step_count)

    @property
    def _master_weights(self) -> Dict[str, paddle.Tensor]:
        by_name = dict(self.named_parameters)
        return {by_name[n].name: m for n, m in self._masters.items()}

    # ------------------------------------------------------------------ update
    @paddle.no_grad()
    def step(self) -> None:
        """One update of every parameter that has a gradient (a parameter without one is skipped and its
        counter does not move, as the original)."""
        for name, param in self.named_parameters:
            grad = param.grad
            if grad is None:
                continue
            grad = grad.astype("float32") if grad.dtype != paddle.float32 else grad
            master = self._masters.get(name)
            weight = master if master is not None else param
            state = self.state.get(name)
            if state is None:
                state = self.state[name] = {"step": 0, "next_m": paddle.zeros(weight.shape, "float32"),
                                            "next_v": paddle.zeros(weight.shape, "float32")}
            decay = self.weight_decay[name]
            lr_scheduled = self.learning_rate * self.schedule(state["step"])
            if kernels.bert_adam_(weight, grad, state["next_m"], state["next_v"], lr_scheduled, self.b1, self.b2,
                                  self.e, decay, self.max_grad_norm, _CLIP_EPS):  # CPU: one C++ pass
                if master is not None:
                    paddle.assign(master.astype(param.dtype), output=param)
                state["step"] += 1
                continue
            if self.max_grad_norm > 0:
                norm = paddle.sqrt(paddle.sum(grad * grad))
                grad = grad * paddle.clip(self.max_grad_norm / (norm + _CLIP_EPS), max=1.0)
            next_m = state["next_m"] * self.b1 + grad * (1.0 - self.b1)
            next_v = state["next_v"] * self.b2 + grad * grad * (1.0 - self.b2)
            update = next_m / (paddle.sqrt(next_v) + self.e)
            if decay > 0.0:
                update = update + weight * decay
            new_weight = weight - update * lr_scheduled
            state["next_m"], state["next_v"] = next_m, next_v
            state["step"] += 1
            if master is not None:
                paddle.assign(new_weight, output=master)
                paddle.assign(new_weight.astype(param.dtype), output=param)
            else:
                paddle.assign(new_weight, output=param)

    def clear_grad(self, set_to_zero: bool = True) -> None:
        """Clears the gradients of the optimised parameters (zeros them by default, as paddle's optimizers)."""
        for param in self._parameter_list:
            param.clear_gradient(set_to_zero)

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        """The optimizer state keyed by structured parameter name (numpy arrays; hyperparameters included so that a
        resume with other settings is refused).

        Returns:
            dict: ``{"format", "hyperparameters", "state": {name: {"step", "next_m", "next_v"}},
            "master_weights": {name: float32 array}}``.
        """
        return {
            "format": STATE_FORMAT,
            "hyperparameters": self._hyperparameters(),
            "state": {n: {"step": int(s["step"]), "next_m": s["next_m"].numpy(), "next_v": s["next_v"].numpy()}
                      for n, s in self.state.items()},
            "master_weights": {n: m.numpy() for n, m in self._masters.items()},
        }

    def set_state_dict(self, state: dict) -> None:
        """Restores :meth:`state_dict` output.

        Raises:
            ValueError: not a BertAdam state, other hyperparameters, or parameter names this optimizer does not
                train / shapes that differ.
        """
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            raise ValueError("the optimizer state is not a BertAdam state (was the checkpoint written with "
                             "--optimizer adamw?)")
        ours = self._hyperparameters()
        theirs = dict(state.get("hyperparameters", {}))
        differ = sorted(k for k in ours if k != "weight_decay" and theirs.get(k) != ours[k])
        if differ or theirs.get("weight_decay") != ours["weight_decay"]:
            what = ", ".join(f"{k}: {theirs.get(k)!r} there, {ours[k]!r} here" for k in differ) or "weight decay groups"
            raise ValueError(f"the BertAdam state was written with other settings ({what})")
        by_name = dict(self.named_parameters)
        unknown = sorted(set(state["state"]) - set(by_name))
        if unknown:
            raise ValueError(f"the optimizer state has entries for parameters this run does not train: {unknown[:5]} "
                             "(was the run resumed with other model flags, e.g. --train_pooler?)")
        restored = {}
        for name, entry in state["state"].items():
            shape = list(by_name[name].shape)
            for key in ("next_m", "next_v"):
                if list(np.shape(entry[key])) != shape:
                    raise ValueError(f"the optimizer state of {name} has shape {list(np.shape(entry[key]))}, the "
                                     f"parameter {shape}")
            restored[name] = {"step": int(entry["step"]),
                              "next_m": paddle.to_tensor(np.asarray(entry["next_m"], np.float32)),
                              "next_v": paddle.to_tensor(np.asarray(entry["next_v"], np.float32))}
        self.state = restored
        for name, value in state.get("master_weights", {}).items():
            if name in self._masters:
                paddle.assign(paddle.to_tensor(np.asarray(value, np.float32)), output=self._masters[name])

    def _hyperparameters(self) -> dict:
        return {"learning_rate": self.learning_rate, "warmup": self.schedule.warmup, "t_total": self.schedule.t_total,
                "b1": self.b1, "b2": self.b2, "e": self.e, "max_grad_norm": self.max_grad_norm,
                "weight_decay": dict(sorted(self.weight_decay.items()))}


__all__ = ["BertAdam", "WarmupLinearSchedule", "original_total_steps", "original_no_decay", "ORIGINAL_NO_DECAY",
           "ORIGINAL_EXCLUDED", "STATE_FORMAT"]
