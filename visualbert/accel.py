"""Accelerator helpers for training and evaluation: mixed precision (AMP) and fused attention.

Everything is off by default and safe on CPU (where AMP does nothing useful: Paddle's CPU build has no
fp16/bf16 matmul kernels, so :func:`resolve_amp` turns it off there with a warning).

Typical use in a training loop::

    from visualbert import accel
    accel.add_accel_arguments(parser)     # --use_amp --amp_level --amp_dtype --scale_loss --fused_attention
    amp = accel.AmpConfig.from_args(args)
    accel.set_fused_attention(model, accel.resolve_fused_attention(args.fused_attention))
    model, optimizer = accel.prepare(model, optimizer, amp,  # O2: fp16/bf16 weights + fp32 master weights
                                     keep_float32=accel.float32_layers(model, freeze_pooler))
    scaler = accel.grad_scaler(amp)
    for batch in loader:
        with accel.autocast(amp):
            loss = model(**batch)["loss"]
        accel.backward_and_step(loss, optimizer, scaler)     # scaled for fp16, plain for bf16 / fp32
        optimizer.clear_grad()

With gradient accumulation, call :func:`backward` on every micro-batch and :func:`step` once per group (this is
what :class:`visualbert.engine.Trainer` does). Global-norm clipping configured on the optimizer
(``grad_clip=ClipGradByGlobalNorm``) sees unscaled gradients: ``GradScaler.step`` unscales them (and skips the
update on inf/nan) before ``optimizer.step`` clips. Under O2, save weights with :func:`fp32_state_dict` (the
optimizer's fp32 master weights) and load them with :func:`match_dtypes`.

    with accel.autocast(amp):                                # evaluation under the same precision
        logits = model(**batch)["logits"]

Levels: O1 = the white-listed ops (matmul / linear / attention) run in low precision, everything else
(softmax, LayerNorm, losses) in fp32; O2 = the model's weights are cast to fp16/bf16 and the optimizer keeps
fp32 master weights and (``master_grad``) fp32 gradients, so that accumulated micro-batch gradients are summed
in fp32. Paddle 3.3.1 keeps LayerNorm weights fp32 under O2 for float16 only; under bfloat16 they are cast too
(``paddle.amp.decorate``). Layers outside the optimizer (the pooler, frozen unless ``--train_pooler``) have no master
weight: :func:`prepare` keeps the ones named in ``keep_float32`` (see :func:`float32_layers`) in fp32, else
their weights would be rounded to 8 mantissa bits for good and saved that way. fp16 needs loss scaling (``GradScaler``, dynamic); bf16 does
not (its exponent range is fp32's) and needs an Ampere-or-newer GPU. The model's additive attention mask
(-10000) is finite in both. Recommended on GPU: ``--use_amp --amp_level O2 --amp_dtype bfloat16`` on
A100/H100-class cards, ``--amp_dtype float16`` on older ones (V100, T4).

Fused attention (``--fused_attention auto|on|off``, default ``auto``): routes self-attention through
``paddle.nn.functional.scaled_dot_product_attention`` (flash / memory-efficient kernels on GPU), except when
attention probabilities are requested. ``auto`` turns it on only on a GPU; on CPU Paddle has only the
unfused "math" fallback, measured slower than this port's own attention. Which kernel runs is Paddle's choice
per call (``paddle/nn/functional/sdpa.py``): flash for fp16/bf16 on compute capability 8.0-12.1, else the
memory-efficient kernel when the key length is a multiple of 8 (fp32 too, from 5.0), else "math". The
memory-efficient kernel rejects a mask whose query dimension is broadcast ("The 2nd last dim of attn_bias should
be equal to the sequence length of query", ``memory_efficient_attention_utils.h``), which Paddle leaves at 1 for
our [B, 1, 1, L] padding mask; :func:`sdpa_attention_mask` gives every call the full [B, heads, L, L] shape,
which all three kernels take.
"""

import logging
from contextlib import nullcontext
from dataclasses import dataclass

logger = logging.getLogger(__name__)

AMP_LEVELS = ("O1", "O2")
AMP_DTYPES = ("float16", "bfloat16")
FUSED_CHOICES = ("auto", "on", "off")
DEFAULT_LOSS_SCALE = 2.0 ** 15


@dataclass
class AmpConfig:
    enabled: bool = False
    level: str = "O1"
    dtype: str = "bfloat16"
    init_loss_scaling: float = DEFAULT_LOSS_SCALE
    # O2: float32 weight gradients (``paddle.amp.decorate(master_grad=True)``): accumulation, clipping and the
    # update see fp32 sums instead of bf16/fp16 ones.
    master_grad: bool = True

    @classmethod
    def from_args(cls, args):
        """From the flags of :func:`add_accel_arguments`, resolved for the current device."""
        scale = getattr(args, "scale_loss", None)
        amp = resolve_amp(cls(enabled=bool(getattr(args, "use_amp", False)), level=getattr(args, "amp_level", "O1"),
                              dtype=getattr(args, "amp_dtype", "bfloat16"),
                              init_loss_scaling=DEFAULT_LOSS_SCALE if scale is None else float(scale)))
        if amp.enabled and amp.dtype != "float16" and scale is not None:
            logger.warning("--scale_loss %g unused: %s AMP needs no loss scaling (pass --amp_dtype float16 for it)",
                           float(scale), amp.dtype)
        return amp


def add_accel_arguments(parser):
    """Adds ``--use_amp``, ``--amp_level``, ``--amp_dtype``, ``--scale_loss``, ``--fused_attention`` to an argparse
    parser (in a group of their own) or to an argument group."""
    group = parser.add_argument_group("accelerator (GPU) options") if hasattr(parser, "parse_args") else parser
    group.add_argument("--use_amp", action="store_true",
                       help="automatic mixed precision (GPU only; a warning and float32 training on CPU)")
    group.add_argument("--amp_level", choices=AMP_LEVELS, default="O1",
                       help="O1: low-precision white-listed ops; O2: low-precision weights + fp32 master weights")
    group.add_argument("--amp_dtype", choices=AMP_DTYPES, default="bfloat16",
                       help="bfloat16 (Ampere+, no loss scaling) or float16 (dynamic loss scaling)")
    group.add_argument("--scale_loss", type=float, default=None,
                       help=f"initial (dynamic) loss scale of float16 AMP (default {DEFAULT_LOSS_SCALE:g}); unused "
                            "for bfloat16 and float32")
    group.add_argument("--fused_attention", choices=FUSED_CHOICES, default="auto",
                       help="scaled_dot_product_attention kernels: auto = on GPU only")
    return parser


def on_gpu():
    import paddle

    return paddle.device.get_device().startswith("gpu")


def resolve_amp(amp):
    """Returns ``amp`` with ``enabled`` cleared when there is no GPU (or bf16 unsupported), with a warning."""
    if amp.level not in AMP_LEVELS:
        raise ValueError(f"amp level must be one of {AMP_LEVELS}, got {amp.level!r}")
    if amp.dtype not in AMP_DTYPES:
        raise ValueError(f"amp dtype must be one of {AMP_DTYPES}, got {amp.dtype!r}")
    if not amp.enabled:
        return amp
    if not on_gpu():
        logger.warning("--use_amp ignored: no GPU (Paddle's CPU build has no fp16/bf16 matmul kernels)")
        return AmpConfig(False, amp.level, amp.dtype, amp.init_loss_scaling, amp.master_grad)
    if amp.dtype == "bfloat16":
        import paddle

        try:
            major = paddle.device.cuda.get_device_capability()[0]
        except Exception:  # pragma: no cover - non-CUDA GPUs
            major = 8
        if major < 8:
            logger.warning("bfloat16 AMP needs compute capability >= 8.0 (got %s): using float16", major)
            return AmpConfig(True, amp.level, "float16", amp.init_loss_scaling, amp.master_grad)
    return amp


def resolve_fused_attention(choice="auto"):
    if choice not in FUSED_CHOICES:
        raise ValueError(f"fused_attention must be one of {FUSED_CHOICES}, got {choice!r}")
    if choice == "auto":
        return on_gpu()
    return choice == "on"


def set_fused_attention(model, enabled=True):
    """Turns the ``scaled_dot_product_attention`` path on/off in every self-attention of ``model``.
    Returns the number of attention layers switched."""
    from .modeling import VisualBertSelfAttention

    count = 0
    for layer in model.sublayers(include_self=True):
        if isinstance(layer, VisualBertSelfAttention):
            layer.fused_attention = bool(enabled)
            count += 1
    return count


def prepare(model, optimizer=None, amp=None, keep_float32=()):
    """O2: casts the weights to ``amp.dtype`` (LayerNorm stays fp32 for float16 only) and makes the optimizer keep
    fp32 master weights (and fp32 gradients when ``amp.master_grad``). O1 / disabled: returns its arguments
    unchanged.

    Args:
        keep_float32 (sequence of paddle.nn.Layer): layers whose weights stay fp32 (``excluded_layers``): the
            ones outside the optimizer, which have no master weight (:func:`float32_layers`).
    """
    if amp is None or not amp.enabled or amp.level != "O2":
        return model, optimizer
    import paddle

    excluded = list(keep_float32) or None
    if optimizer is None:  # the model alone (e.g. for BertAdam, which keeps its own fp32 master weights)
        return paddle.amp.decorate(models=model, level="O2", dtype=amp.dtype, master_grad=bool(amp.master_grad),
                                   excluded_layers=excluded), None
    return paddle.amp.decorate(models=model, optimizers=optimizer, level="O2", dtype=amp.dtype,
                               master_weight=True, master_grad=bool(amp.master_grad), excluded_layers=excluded)


def float32_layers(model, freeze_pooler=False):
    """The layers :func:`prepare` must keep fp32 under O2: the pooler when it is frozen (left out of the optimizer,
    so it has no fp32 master copy). Returns a list of ``paddle.nn.Layer`` (empty when nothing is frozen)."""
    if not freeze_pooler:
        return []
    backbone = getattr(model, "visual_bert", model)
    pooler = getattr(backbone, "pooler", None)
    return [pooler] if pooler is not None else []


def sdpa_attention_mask(mask, num_heads, query_length):
    """The additive mask in the one shape every ``scaled_dot_product_attention`` kernel accepts.

    Args:
        mask (Tensor): float additive mask broadcastable to [B, heads, Lq, Lk], e.g. [B, 1, 1, Lk] (0 keep /
            -10000 drop), or None.
        num_heads (int): attention heads.
        query_length (int): Lq.

    Returns:
        Tensor: [B, heads, Lq, Lk] (``mask`` itself when it already has that shape), or None.
    """
    if mask is None:
        return None
    import paddle

    if mask.ndim == 4 and mask.shape[1] == num_heads and mask.shape[2] == query_length:
        return mask
    return paddle.expand(mask, [mask.shape[0], num_heads, query_length, mask.shape[-1]])


def to_float32_numpy(value):
    """A numpy array of ``value`` (Tensor or array-like), float16 / bfloat16 tensors cast to float32 IN PADDLE
    first: Paddle 3.3.1's ``Tensor.numpy()`` of a bfloat16 tensor returns its uint16 bit patterns
    ([-2, 0.5, 1] -> [49152, 16128, 16256]), which argmax / metrics would read as numbers. Other dtypes are
    returned as they are (float32 stays float32, int64 stays int64)."""
    import numpy as np
    import paddle

    if isinstance(value, paddle.Tensor):
        return (value.astype("float32") if _is_low_precision(value) else value).numpy()
    return np.asarray(value)


class LossWindow:
    """Sum of the training losses since the last log, kept ON THE DEVICE: ``float(loss)`` every micro-batch waits
    for the GPU to finish it (one host-device sync per micro-batch); :meth:`read` syncs once per
    ``logging_steps``.

    Example::

        window = accel.LossWindow()
        window.add(loss)                       # every micro-batch: no sync
        if step % logging_steps == 0:
            mean_loss, batches = window.read()  # one sync; the window restarts
    """

    def __init__(self):
        self.total, self.count = None, 0

    def add(self, loss):
        """Adds a 0-D loss tensor (detached, summed in float32)."""
        value = loss.detach().astype("float32")
        self.total = value if self.total is None else self.total + value
        self.count += 1

    def read(self):
        """``(mean loss as a python float or None when empty, number of losses)``, then empties the window."""
        total, count = self.total, self.count
        self.total, self.count = None, 0
        return (float(total) / count if count else None), count


# Parameters a head's forward leaves without a gradient (by structured-name prefix), given the batch keys of
# training: DataParallel must then run with find_unused_parameters=True (an extra graph traversal and all-reduce
# bookkeeping every step); the other heads use every parameter.
def _unused_parameter_prefixes(architecture, batch_keys):
    keys = set(batch_keys)
    if architecture == "VisualBertForPreTraining":
        prefixes = []
        if "sentence_image_labels" not in keys:
            prefixes += ["visual_bert.pooler.", "cls.seq_relationship."]
        if "labels" not in keys:
            prefixes += ["cls.predictions."]
        return prefixes
    if architecture == "VisualBertForQuestionAnswering":
        return ["visual_bert.pooler."]  # the answer is read at the [MASK] token, not the pooled output
    if architecture == "VisualBertForRegionToPhraseAlignment":
        return ["visual_bert.pooler.", "cls.", "attention.value."]
    return []


def needs_find_unused_parameters(model, batch_keys):
    """True when training ``model`` on batches with these keys leaves some trainable parameter without a gradient
    (``paddle.DataParallel(find_unused_parameters=...)``).

    Args:
        model (paddle.nn.Layer): the unwrapped VisualBERT head.
        batch_keys (iterable of str): the forward arguments the training batches carry (``labels``,
            ``sentence_image_labels``, ...).
    """
    prefixes = _unused_parameter_prefixes(type(model).__name__, batch_keys)
    if not prefixes:
        return False
    return any(not p.stop_gradient and name.startswith(tuple(prefixes)) for name, p in model.named_parameters())


def autocast(amp=None):
    """Context manager for the forward pass (``paddle.amp.auto_cast``), or a no-op when AMP is off."""
    if amp is None or not amp.enabled:
        return nullcontext()
    import paddle

    return paddle.amp.auto_cast(enable=True, level=amp.level, dtype=amp.dtype)


def grad_scaler(amp=None):
    """Dynamic loss scaler for fp16 AMP; None for bf16 or fp32 (no scaling needed)."""
    if amp is None or not amp.enabled or amp.dtype != "float16":
        return None
    import paddle

    return paddle.amp.GradScaler(init_loss_scaling=amp.init_loss_scaling)


def backward(loss, scaler=None):
    """``loss.backward()``, on the scaled loss when ``scaler`` is given (gradients accumulate scaled)."""
    if scaler is None:
        loss.backward()
    else:
        scaler.scale(loss).backward()


def step(optimizer, scaler=None, clip_before_step=None):
    """``optimizer.step()`` on the gradients accumulated by :func:`backward`.

    With ``scaler``: the gradients are unscaled first, the update is skipped if any is inf/nan, and the loss
    scale is updated. A ``grad_clip`` of the optimizer (``ClipGradByGlobalNorm``) runs inside ``optimizer.step``
    and so on unscaled gradients; ``clip_before_step(optimizer)``, if given, also runs on unscaled gradients."""
    if scaler is None:
        if clip_before_step is not None:
            clip_before_step(optimizer)
        optimizer.step()
        return
    if clip_before_step is not None:
        scaler.unscale_(optimizer)
        clip_before_step(optimizer)
    scaler.step(optimizer)
    scaler.update()


def backward_and_step(loss, optimizer, scaler=None, clip_before_step=None):
    """:func:`backward` then :func:`step` (no gradient accumulation)."""
    backward(loss, scaler)
    step(optimizer, scaler, clip_before_step)


def _is_low_precision(tensor):
    import paddle

    return tensor.dtype in (paddle.float16, paddle.bfloat16)


def fp32_state_dict(model, optimizer=None):
    """``model.state_dict()`` with float16/bfloat16 entries (O2 weights) replaced by the optimizer's fp32 master
    weights, or cast to float32 where there is none: what to save so that float32 models can load it.
    Returns ``model.state_dict()`` itself when nothing is in low precision."""
    state = model.state_dict()
    if not any(_is_low_precision(v) for v in state.values()):
        return state
    masters = getattr(optimizer, "_master_weights", None) or {}
    params = dict(model.named_parameters())
    out = {}
    for key, value in state.items():
        if _is_low_precision(value):
            param = params.get(key)
            master = masters.get(param.name) if param is not None else None
            value = master if master is not None else value.astype("float32")
        out[key] = value
    return out


def match_dtypes(state, model):
    """Casts the floating entries of ``state`` to the dtype of ``model``'s entry of the same name (loading float32
    weights into an O2 model; Paddle's ``set_state_dict`` refuses a dtype mismatch)."""
    import paddle

    own = model.state_dict()
    out = {}
    for key, value in state.items():
        target = own.get(key)
        if (target is not None and isinstance(value, paddle.Tensor) and value.dtype != target.dtype
                and paddle.is_floating_point(value) and paddle.is_floating_point(target)):
            value = value.astype(target.dtype)
        out[key] = value
    return out


__all__ = ["AmpConfig", "add_accel_arguments", "resolve_amp", "resolve_fused_attention", "set_fused_attention",
           "prepare", "autocast", "grad_scaler", "backward", "step", "backward_and_step", "fp32_state_dict",
           "match_dtypes", "on_gpu", "float32_layers", "sdpa_attention_mask", "to_float32_numpy",
           "needs_find_unused_parameters", "LossWindow"]
