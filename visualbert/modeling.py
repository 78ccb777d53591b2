"""VisualBERT in Paddle: one file with the backbone and every head.

Text tokens and detector region features are embedded separately, concatenated into one
sequence and run through a post-LN BERT encoder. Module and parameter names follow the HF
``transformers`` port (``visual_bert.encoder.layer.0.attention.self.query.weight`` ...) so that the
conversion table in :mod:`visualbert.conversion` only has to transpose Linear weights.

Shapes used in the docstrings: B batch, T text length, V number of regions, L = T + V,
D visual feature width (``config.visual_embedding_dim``), H hidden size, C choices, A alignment slots,
P phrases.
"""

import logging
import math
import os
import warnings
from collections import OrderedDict

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from . import kernels
from .accel import sdpa_attention_mask
from .configuration import VisualBertConfig
from .constants import ALIGNMENT_PAD, IGNORE_INDEX
from .fileio import atomic_path

logger = logging.getLogger(__name__)

WEIGHTS_NAME = "model_state.pdparams"

# Additive mask value of the original release. exp(-10000) underflows to exactly 0 in float32, so the
# attention probabilities equal HF's (which adds the dtype minimum), and it stays finite in fp16/bf16.
_MASK_VALUE = -10000.0


def _gelu(x):
    return kernels.gelu(x)  # F.gelu(x, approximate=False), through the faster C++ CPU kernel where it applies


def _gelu_tanh(x):
    return F.gelu(x, approximate=True)


ACT2FN = {"gelu": _gelu, "gelu_new": _gelu_tanh, "gelu_pytorch_tanh": _gelu_tanh, "relu": F.relu, "tanh": paddle.tanh}


# ------------------------------------------------------------------------------------------------ fast paths
# Measured on CPU (paddle 3.3, 2 threads, BERT-base shapes; see bench/bench_model.py): Paddle's broadcasting
# elementwise kernels are ~5x slower than same-shape ones, so (a) the bias of every Linear goes into the GEMM
# (``addmm``: C = bias; C += x @ W) instead of a broadcast add after it (F.linear: 1.6x slower), (b) the
# additive attention mask is expanded ONCE per forward to [B, heads, L, L] and added in place in each layer
# (12 broadcast adds cost ~4x more than one expand + 12 same-shape adds), (c) dropout is not called at all
# in eval mode (Paddle's dropout op copies its input when is_test), (d) Q, K and V come from one GEMM on the
# concatenated weights, with the 1/sqrt(head_size) folded into the query weight and bias (exact for the
# power-of-two 1/8 of BERT-base), so no pass over the [B, heads, L, L] scores is spent on scaling.


def _dims(x):
    """Shape of ``x`` as a list usable by reshape/expand in dygraph (ints) and in static graphs (unknown
    dimensions as 0-D int tensors from ``paddle.shape``)."""
    shape = list(x.shape)
    if all(isinstance(d, int) and d >= 0 for d in shape):
        return shape
    runtime = paddle.shape(x)
    return [d if isinstance(d, int) and d >= 0 else runtime[i] for i, d in enumerate(shape)]


def on_cpu():
    """True when paddle's current device is the CPU. Read once per model, when it is built
    (:meth:`VisualBertPreTrainedModel.post_init`): the addmm / expanded-mask paths are used only there (on GPU
    ``F.linear`` has a fused bias epilogue and is on the AMP white list, which ``addmm`` is not)."""
    return paddle.device.get_device() == "cpu"


def _linear(x, weight, bias, cpu_kernels):
    """``x @ weight + bias`` over the last axis of an N-D ``x``; with ``cpu_kernels`` the bias is fused into the
    GEMM (``addmm``), otherwise ``F.linear`` (the portable path, used on GPU)."""
    # addmm's backward crashes (segfault, paddle 3.3.1) when its bias input has stop_gradient=True, e.g. a
    # frozen pooler: such layers take F.linear whenever a backward pass may follow.
    if not cpu_kernels or (bias is not None and bias.stop_gradient and paddle.is_grad_enabled()):
        return F.linear(x, weight, bias)
    lead = _dims(x)[:-1]
    x2 = x.reshape([-1, x.shape[-1]])
    out = paddle.matmul(x2, weight) if bias is None else paddle.addmm(bias, x2, weight)
    return out.reshape(lead + [weight.shape[-1]])


def _apply_linear(layer, x):
    """``layer(x)`` for an ``nn.Linear``, on the kernels chosen for its model (attribute ``cpu_kernels``)."""
    return _linear(x, layer.weight, layer.bias, layer.cpu_kernels)


def _dropout(layer, x):
    """``layer(x)`` for an ``nn.Dropout``, skipped entirely when it would be the identity."""
    if not layer.training or layer.p == 0:
        return x
    if layer.cpu_kernels and layer.mode == "upscale_in_train" and layer.axis is None:
        return kernels.dropout(x, layer.p)
    return layer(x)


class LayerNorm(nn.LayerNorm):
    """``nn.LayerNorm`` over the last axis (same parameters and names) whose CPU path is the C++ kernel
    (:func:`visualbert.kernels.layer_norm`: Paddle's CPU backward is ~25x its forward). A layer, not a function,
    so that hooks registered on it still run."""

    cpu_kernels = False  # set per model by VisualBertPreTrainedModel.set_cpu_kernels

    def forward(self, x):
        if self.cpu_kernels:
            return kernels.layer_norm(x, self.weight, self.bias, self._epsilon)
        return super().forward(x)


class ModelOutput(OrderedDict):
    """Dict of outputs that also allows attribute access (``out.logits``); ``None`` entries are dropped, so
    ``"loss" in out`` tells whether a loss was computed. An output that is not there (a misspelt name, or the
    ``loss`` of a call without labels) raises ``AttributeError``; ``out.get(name)`` returns None instead."""

    def __init__(self, **outputs):
        super().__init__((k, v) for k, v in outputs.items() if v is not None)

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"ModelOutput has no {name!r} (outputs: {', '.join(self) or 'none'})") from None


def _static_dim(tensor, axis):
    """Size of a dimension as a python int, or None when unknown (static-graph export)."""
    size = tensor.shape[axis]
    return size if isinstance(size, int) and size >= 0 else None


def _check_inputs(config, input_ids, attention_mask, token_type_ids, visual_embeds, visual_attention_mask,
                  visual_token_type_ids, image_text_alignment):
    """Raises a ValueError naming the argument when shapes cannot belong together."""
    if input_ids.ndim != 2:
        raise ValueError(f"input_ids must be [batch, text_len], got shape {list(input_ids.shape)}")
    batch, text_len = _static_dim(input_ids, 0), _static_dim(input_ids, 1)
    if text_len is not None and text_len > config.max_position_embeddings:
        raise ValueError(f"text length {text_len} exceeds max_position_embeddings={config.max_position_embeddings}")
    for name, value in (("attention_mask", attention_mask), ("token_type_ids", token_type_ids)):
        if value is not None and list(value.shape) != list(input_ids.shape):
            raise ValueError(f"{name} has shape {list(value.shape)}, expected the shape of input_ids {list(input_ids.shape)}")
    if visual_embeds is None:
        return
    if visual_embeds.ndim != 3:
        raise ValueError(f"visual_embeds must be [batch, num_regions, visual_dim], got shape {list(visual_embeds.shape)}")
    width = _static_dim(visual_embeds, 2)
    if width is not None and width != config.visual_embedding_dim:
        raise ValueError(
            f"visual_embeds has feature width {width}, but this model was built with visual_embedding_dim="
            f"{config.visual_embedding_dim} (VQA checkpoints expect 2048, NLVR2 1024, VCR 512)"
        )
    vis_batch = _static_dim(visual_embeds, 0)
    if batch is not None and vis_batch is not None and vis_batch != batch:
        raise ValueError(f"batch size mismatch: input_ids has {batch} examples, visual_embeds has {vis_batch}")
    regions = list(visual_embeds.shape[:2])
    for name, value in (("visual_attention_mask", visual_attention_mask), ("visual_token_type_ids", visual_token_type_ids)):
        if value is not None and list(value.shape) != regions:
            raise ValueError(f"{name} has shape {list(value.shape)}, expected [batch, num_regions] = {regions}")
    if image_text_alignment is not None:
        if image_text_alignment.ndim != 3 or list(image_text_alignment.shape[:2]) != regions:
            raise ValueError(
                f"image_text_alignment has shape {list(image_text_alignment.shape)}, "
                f"expected [batch, num_regions, alignment_slots] with [batch, num_regions] = {regions}"
            )


class VisualBertEmbeddings(nn.Layer):
    """Text embeddings (word + type + position) and visual embeddings (projection + type + position),
    concatenated and normalised by one LayerNorm."""

    def __init__(self, config):
        super().__init__()
        # No padding_idx: HF's pad_token_id=1 only freezes a gradient in torch, while Paddle would return zeros.
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.visual_token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.visual_position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.visual_projection = nn.Linear(config.visual_embedding_dim, config.hidden_size)
        self.LayerNorm = LayerNorm(config.hidden_size, epsilon=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids, token_type_ids=None, position_ids=None, visual_embeds=None,
                visual_token_type_ids=None, image_text_alignment=None):
        """
        Args:
            input_ids (Tensor): int64 [B, T].
            token_type_ids (Tensor, optional): int64 [B, T], default 0.
            position_ids (Tensor, optional): int64 [B, T] or [T], default 0..T-1.
            visual_embeds (Tensor, optional): float [B, V, D].
            visual_token_type_ids (Tensor, optional): int64 [B, V], default 0 (VQA/COCO/VCR convention;
                HF defaults to 1).
            image_text_alignment (Tensor, optional): int64 [B, V', A] with V' >= V, text positions each
                region is tied to, padded with -1. Region v then uses the mean of the text position
                embeddings of its aligned positions (plus visual position 0) instead of visual position 0.

        Returns:
            Tensor: float [B, T + V, H] (or [B, T, H] without visual_embeds).
        """
        if position_ids is None:
            position_ids = paddle.arange(_dims(input_ids)[1], dtype="int64")
        embeddings = self.word_embeddings(input_ids) + self.position_embeddings(position_ids)
        if token_type_ids is None:
            embeddings = embeddings + self.token_type_embeddings.weight[0]
        else:
            embeddings = embeddings + self.token_type_embeddings(token_type_ids)

        if visual_embeds is not None:
            visual = _apply_linear(self.visual_projection, visual_embeds)
            if visual_token_type_ids is None:
                visual = visual + self.visual_token_type_embeddings.weight[0]
            else:
                visual = visual + self.visual_token_type_embeddings(visual_token_type_ids)
            # Without alignment every region uses row 0 of the visual position table.
            visual = visual + self.visual_position_embeddings.weight[0]
            if image_text_alignment is not None:
                visual = visual + self._aligned_text_positions(image_text_alignment, visual_embeds.shape[1], visual.dtype)
            embeddings = paddle.concat([embeddings, visual], axis=1)

        return _dropout(self.dropout, self.LayerNorm(embeddings))

    def _aligned_text_positions(self, alignment, num_regions, dtype):
        """Mean of the text position embeddings over the valid (non -1) entries of each region: [B, V, H]."""
        valid = (alignment != ALIGNMENT_PAD).astype(dtype)
        positions = paddle.where(alignment != ALIGNMENT_PAD, alignment, paddle.zeros_like(alignment))
        summed = (self.position_embeddings(positions) * valid.unsqueeze(-1)).sum(axis=2)
        # Rows without any alignment divide by 1 (their sum is 0), as in the reference.
        count = paddle.clip(valid.sum(axis=2, keepdim=True), min=1.0)
        mean = summed / count
        # Detector fine-tuning may pad the alignment to more regions than were fed: keep the first V.
        if alignment.shape[1] != num_regions:
            if _static_dim(alignment, 1) is not None and alignment.shape[1] < num_regions:
                raise ValueError(f"image_text_alignment covers {alignment.shape[1]} regions, fewer than the {num_regions} in visual_embeds")
            mean = mean[:, :num_regions]
        return mean


class VisualBertSelfAttention(nn.Layer):
    def __init__(self, config):
        super().__init__()
        self.num_attention_heads = config.num_attention_heads
        self.attention_head_size = config.hidden_size // config.num_attention_heads
        self.all_head_size = self.num_attention_heads * self.attention_head_size
        self.query = nn.Linear(config.hidden_size, self.all_head_size)
        self.key = nn.Linear(config.hidden_size, self.all_head_size)
        self.value = nn.Linear(config.hidden_size, self.all_head_size)
        self.dropout = nn.Dropout(config.attention_probs_dropout_prob)
        # Set by visualbert.accel.set_fused_attention: F.scaled_dot_product_attention (flash / memory-efficient
        # kernels on GPU). Off by default: on CPU Paddle only has its unfused "math" fallback, measured slower.
        self.fused_attention = False

    def _project_qkv(self, hidden_states, batch, length, query_scale=None):
        """Q, K and V from ONE GEMM on the concatenated weights (the parameters stay separate):
        [B, L, 3, heads, head_size]. ``query_scale`` folds the score scale into the query weight and bias."""
        query_weight, query_bias = self.query.weight, self.query.bias
        if query_scale is not None:
            query_weight, query_bias = query_weight * query_scale, query_bias * query_scale
        weight = paddle.concat([query_weight, self.key.weight, self.value.weight], axis=1)
        bias = paddle.concat([query_bias, self.key.bias, self.value.bias], axis=0)
        qkv = _linear(hidden_states, weight, bias, self.cpu_kernels)
        return qkv.reshape([batch, length, 3, self.num_attention_heads, self.attention_head_size])

    def forward(self, hidden_states, attention_mask=None, output_attentions=False):
        """
        Args:
            hidden_states (Tensor): float [B, L, H].
            attention_mask (Tensor, optional): additive float mask, 0 keep / -10000 drop, either [B, 1, 1, L]
                (broadcast) or already expanded to [B, heads, L, L] by :meth:`VisualBertModel.expand_attention_mask`
                (faster on CPU: added in place).

        Returns:
            tuple: context float [B, L, H], and attention probabilities [B, heads, L, L] or None.
        """
        dims = _dims(hidden_states)
        batch, length = dims[0], dims[1]
        scale = 1.0 / math.sqrt(self.attention_head_size)
        if self.fused_attention and not output_attentions:
            return self._fused_forward(hidden_states, attention_mask, batch, length), None
        qkv = self._project_qkv(hidden_states, batch, length, query_scale=scale)
        fast = self.cpu_kernels and kernels.applies(qkv)
        if fast:
            query, key, value = kernels.split_heads(qkv)  # one copy, not a transpose and an unbind
        else:  # unbind: one stack in the backward, not 3 zero-filled slices
            query, key, value = paddle.unbind(qkv.transpose([2, 0, 3, 1, 4]), axis=0)
        scores = paddle.matmul(query, key, transpose_y=True)
        if attention_mask is not None and fast and attention_mask.ndim == 4 and kernels.applies(attention_mask):
            probs = kernels.masked_softmax(scores, attention_mask)  # the mask is read broadcast, never expanded
        else:
            if attention_mask is not None:
                if attention_mask.dtype != scores.dtype:  # AMP: fp16/bf16 scores, fp32 mask
                    attention_mask = attention_mask.astype(scores.dtype)
                if attention_mask.shape[1] == 1 or attention_mask.shape[2] == 1 or not paddle.in_dynamic_mode():
                    scores = scores + attention_mask
                else:
                    scores = scores.add_(attention_mask)
            probs = F.softmax(scores, axis=-1)
        context = paddle.matmul(_dropout(self.dropout, probs), value)
        if fast:
            context = kernels.merge_heads(context)
        else:
            context = context.transpose([0, 2, 1, 3]).reshape([batch, length, self.all_head_size])
        return context, (probs if output_attentions else None)

    def _fused_forward(self, hidden_states, attention_mask, batch, length):
        """Same maths through ``F.scaled_dot_product_attention`` ([B, L, heads, d] layout, no transposes)."""
        qkv = self._project_qkv(hidden_states, batch, length)  # the kernel applies the score scale itself
        query, key, value = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
        if attention_mask is not None and attention_mask.dtype != query.dtype:
            attention_mask = attention_mask.astype(query.dtype)
        attention_mask = sdpa_attention_mask(attention_mask, self.num_attention_heads, length)
        p = self.dropout.p if self.training else 0.0
        context = F.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask, dropout_p=p,
                                                 training=self.training)
        return context.reshape([batch, length, self.all_head_size])


class VisualBertDenseAddNorm(nn.Layer):
    """The output of a sub-layer: dense (``input_size`` → hidden) → dropout → add the residual → LayerNorm.
    HF's ``SelfOutput`` (after attention, input_size = hidden) and ``Output`` (after the FFN, input_size =
    intermediate); parameter names ``dense`` / ``LayerNorm`` as theirs."""

    def __init__(self, config, input_size):
        super().__init__()
        self.dense = nn.Linear(input_size, config.hidden_size)
        self.LayerNorm = LayerNorm(config.hidden_size, epsilon=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden_states, input_tensor):
        return self.LayerNorm(_dropout(self.dropout, _apply_linear(self.dense, hidden_states)) + input_tensor)


class VisualBertAttention(nn.Layer):
    def __init__(self, config):
        super().__init__()
        self.self = VisualBertSelfAttention(config)
        self.output = VisualBertDenseAddNorm(config, config.hidden_size)

    def forward(self, hidden_states, attention_mask=None, output_attentions=False):
        context, probs = self.self(hidden_states, attention_mask, output_attentions)
        return self.output(context, hidden_states), probs


class VisualBertIntermediate(nn.Layer):
    def __init__(self, config):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.intermediate_size)
        self.act = ACT2FN[config.hidden_act]

    def forward(self, hidden_states):
        return self.act(_apply_linear(self.dense, hidden_states))


class VisualBertLayer(nn.Layer):
    """Post-LN BERT layer: attention → add & norm → FFN (dense, GELU, dense) → add & norm."""

    def __init__(self, config):
        super().__init__()
        self.attention = VisualBertAttention(config)
        self.intermediate = VisualBertIntermediate(config)
        self.output = VisualBertDenseAddNorm(config, config.intermediate_size)

    def forward(self, hidden_states, attention_mask=None, output_attentions=False):
        attention_output, probs = self.attention(hidden_states, attention_mask, output_attentions)
        layer_output = self.output(self.intermediate(attention_output), attention_output)
        return layer_output, probs


class VisualBertEncoder(nn.Layer):
    def __init__(self, config):
        super().__init__()
        self.layer = nn.LayerList([VisualBertLayer(config) for _ in range(config.num_hidden_layers)])

    def forward(self, hidden_states, attention_mask=None, output_attentions=False, output_hidden_states=False):
        all_hidden = [hidden_states] if output_hidden_states else None
        all_attentions = [] if output_attentions else None
        for layer in self.layer:
            hidden_states, probs = layer(hidden_states, attention_mask, output_attentions)
            if output_hidden_states:
                all_hidden.append(hidden_states)
            if output_attentions:
                all_attentions.append(probs)
        return hidden_states, all_hidden, all_attentions


class VisualBertPooler(nn.Layer):
    def __init__(self, config):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, hidden_states):
        return paddle.tanh(_apply_linear(self.dense, hidden_states[:, 0]))


class VisualBertPreTrainedModel(nn.Layer):
    """Weight initialisation and local ``save_pretrained`` / ``from_pretrained`` for every VisualBERT class."""

    base_model_prefix = "visual_bert"

    def __init__(self, config):
        super().__init__()
        if not isinstance(config, VisualBertConfig):
            raise TypeError(f"config must be a VisualBertConfig, got {type(config).__name__}")
        self.config = config

    # ---------------------------------------------------------------- initialisation
    def post_init(self):
        """What every model class does once, at the end of its constructor: :meth:`init_weights`, then the choice
        of kernels for the current device (:meth:`set_cpu_kernels`)."""
        self.init_weights()
        self.set_cpu_kernels(on_cpu())

    def set_cpu_kernels(self, enabled):
        """Selects the CPU fast paths (bias fused into the GEMM with ``addmm``, the attention mask expanded once per
        forward) or the portable path (``F.linear``, broadcast mask: what a GPU runs) for every layer."""
        for layer in self.sublayers(include_self=True):
            layer.cpu_kernels = bool(enabled)

    def init_weights(self):
        """BERT initialisation: normal(0, initializer_range) for Linear and Embedding weights, zero biases,
        LayerNorm (1, 0); then, if ``special_visual_initialize``, the visual tables copy the text ones."""
        normal = nn.initializer.Normal(mean=0.0, std=self.config.initializer_range)
        zeros, ones = nn.initializer.Constant(0.0), nn.initializer.Constant(1.0)
        with paddle.no_grad():
            for layer in self.sublayers(include_self=True):
                if isinstance(layer, (nn.Linear, nn.Embedding)):
                    normal(layer.weight)
                    if getattr(layer, "bias", None) is not None:
                        zeros(layer.bias)
                elif isinstance(layer, nn.LayerNorm):
                    ones(layer.weight)
                    zeros(layer.bias)
            for name, param in self.named_parameters():
                if name.endswith("predictions.bias"):
                    zeros(param)
        if self.config.special_visual_initialize:
            self.init_visual_tables_from_text()

    def init_visual_tables_from_text(self):
        """Copies ``token_type_embeddings`` → ``visual_token_type_embeddings`` and ``position_embeddings`` →
        ``visual_position_embeddings``. Call it after loading text-only BERT weights (the original release's
        ``special_visual_initialize``; in HF the copy runs before the weights exist and does nothing)."""
        embeddings = self._backbone().embeddings
        with paddle.no_grad():
            embeddings.visual_token_type_embeddings.weight.set_value(embeddings.token_type_embeddings.weight.clone())
            embeddings.visual_position_embeddings.weight.set_value(embeddings.position_embeddings.weight.clone())

    def _backbone(self):
        return getattr(self, self.base_model_prefix, self)

    # ---------------------------------------------------------------- save / load
    def save_pretrained(self, save_directory):
        """Writes ``config.json`` and ``model_state.pdparams`` into ``save_directory``, each file atomically."""
        os.makedirs(save_directory, exist_ok=True)
        self.config.architectures = [type(self).__name__]
        self.config.save_pretrained(save_directory)
        with atomic_path(os.path.join(save_directory, WEIGHTS_NAME)) as tmp:
            paddle.save(self.state_dict(), tmp)

    @classmethod
    def from_pretrained(cls, pretrained_dir, config=None, ignore_mismatched_sizes=False, output_loading_info=False,
                        **config_overrides):
        """Builds the class and loads weights saved by :meth:`save_pretrained` (or ``checkpoint/convert.py``).

        A bare :class:`VisualBertModel` loads from a head checkpoint (the head weights are reported as unused)
        and a head class loads from a bare or other-head checkpoint (its new head is reported as newly
        initialised).

        Args:
            pretrained_dir (str): directory with ``config.json`` and ``model_state.pdparams``.
            config (VisualBertConfig, optional): use this instead of the directory's ``config.json``.
            ignore_mismatched_sizes (bool): re-initialise, instead of failing on, weights whose shape differs
                (e.g. a classifier with another number of labels).
            output_loading_info (bool): also return ``{"missing_keys", "unexpected_keys", "mismatched_keys"}``.
            **config_overrides: fields to override in the loaded config (e.g. ``num_labels=3129``).

        Raises:
            FileNotFoundError: the directory or one of its files is missing.
            ValueError: a weight has the wrong shape (unless ``ignore_mismatched_sizes``).
        """
        if not os.path.isdir(pretrained_dir):
            raise FileNotFoundError(f"pretrained model directory {pretrained_dir!r} does not exist")
        weights_path = os.path.join(pretrained_dir, WEIGHTS_NAME)
        if not os.path.isfile(weights_path):
            raise FileNotFoundError(f"{pretrained_dir!r} has no {WEIGHTS_NAME} (convert torch checkpoints with checkpoint/convert.py)")
        if config is None:
            config = VisualBertConfig.from_pretrained(pretrained_dir, **config_overrides)
        model = cls(config)
        from .safety import load_paddle_file  # a truncated file: one line naming it, not paddle's parse error

        state_dict = load_paddle_file(weights_path, "model weights")
        info = model.load_weights(state_dict, ignore_mismatched_sizes=ignore_mismatched_sizes, source=weights_path)
        model.eval()
        return (model, info) if output_loading_info else model

    def load_weights(self, state_dict, ignore_mismatched_sizes=False, source="state_dict"):
        """Loads a state dict whose keys may carry or lack the ``visual_bert.`` prefix; reports the rest.

        Returns:
            dict: ``missing_keys`` (kept at their initialisation), ``unexpected_keys`` (ignored),
            ``mismatched_keys`` (re-initialised; only with ``ignore_mismatched_sizes``).
        """
        prefix = self.base_model_prefix + "."
        own = self.state_dict()
        has_prefix = any(k.startswith(prefix) for k in own)
        adapted = {}
        for key, value in state_dict.items():
            if has_prefix and not key.startswith(prefix) and prefix + key in own:
                key = prefix + key
            elif not has_prefix and key.startswith(prefix):
                key = key[len(prefix):]
            adapted[key] = value
        unexpected = sorted(k for k in adapted if k not in own)
        missing = sorted(k for k in own if k not in adapted)
        mismatched, to_load = [], {}
        for key, target in own.items():
            if key not in adapted:
                continue
            value = adapted[key]
            if list(value.shape) != list(target.shape):
                if not ignore_mismatched_sizes:
                    raise ValueError(
                        f"{source}: weight {key!r} has shape {list(value.shape)}, the model expects {list(target.shape)} "
                        f"(wrong visual_embedding_dim or num_labels? pass ignore_mismatched_sizes=True to re-initialise it)"
                    )
                mismatched.append((key, list(value.shape), list(target.shape)))
                continue
            to_load[key] = value
        with warnings.catch_warnings():  # Paddle warns per missing key; the summary below says it once
            warnings.simplefilter("ignore")
            self.set_state_dict(to_load)
        if missing:
            logger.warning("%s: %d weights newly initialised in %s: %s", source, len(missing), type(self).__name__, missing)
        if unexpected:
            logger.warning("%s: %d weights not used by %s: %s", source, len(unexpected), type(self).__name__, unexpected)
        if mismatched:
            logger.warning("%s: re-initialised weights with mismatched shapes: %s", source, mismatched)
        return {"missing_keys": missing, "unexpected_keys": unexpected, "mismatched_keys": mismatched}


class VisualBertModel(VisualBertPreTrainedModel):
    """The VisualBERT backbone: embeddings, encoder and pooler."""

    def __init__(self, config, add_pooling_layer=True, initialize=True):
        """``initialize=False``: the backbone of a head, which initialises the whole model once (:meth:`post_init`)."""
        super().__init__(config)
        self.embeddings = VisualBertEmbeddings(config)
        self.encoder = VisualBertEncoder(config)
        self.pooler = VisualBertPooler(config) if add_pooling_layer else None
        self.bypass_transformer = config.bypass_transformer
        if self.bypass_transformer:
            self.additional_layer = VisualBertLayer(config)
        if initialize:
            self.post_init()

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, position_ids=None, visual_embeds=None,
                visual_attention_mask=None, visual_token_type_ids=None, image_text_alignment=None,
                output_attentions=False, output_hidden_states=False):
        """
        Args:
            input_ids (Tensor): int64 [B, T] WordPiece ids, right-padded.
            attention_mask (Tensor, optional): [B, T], 1 for tokens and 0 for padding (any int/float dtype).
            token_type_ids (Tensor, optional): int64 [B, T].
            position_ids (Tensor, optional): int64 [B, T].
            visual_embeds (Tensor, optional): float32 [B, V, D] region features.
            visual_attention_mask (Tensor, optional): [B, V], 0 on padded regions.
            visual_token_type_ids (Tensor, optional): int64 [B, V]; 0 by default, 0/1 for the two NLVR2 images.
            image_text_alignment (Tensor, optional): int64 [B, V, A], see :class:`VisualBertEmbeddings`.
            output_attentions (bool): also return every layer's attention probabilities.
            output_hidden_states (bool): also return the embedding output and every layer's output.

        Returns:
            ModelOutput: ``last_hidden_state`` float [B, L, H], ``pooler_output`` float [B, H], and optionally
            ``hidden_states`` (tuple of [B, L, H]) and ``attentions`` (tuple of [B, heads, L, L]).
        """
        if paddle.in_dynamic_mode():  # static export: shapes are symbolic, checked by the exporter's InputSpec
            _check_inputs(self.config, input_ids, attention_mask, token_type_ids, visual_embeds,
                          visual_attention_mask, visual_token_type_ids, image_text_alignment)
        embedding_output = self.embeddings(input_ids, token_type_ids, position_ids, visual_embeds,
                                           visual_token_type_ids, image_text_alignment)
        mask = self._extended_attention_mask(input_ids, attention_mask, visual_embeds, visual_attention_mask,
                                             embedding_output.dtype)

        if self.bypass_transformer and visual_embeds is not None:
            # Original algorithm: only the text goes through the encoder (with the text part of the mask),
            # then text output + visual embeddings go through one extra layer with the full mask.
            text_len = input_ids.shape[1]
            text_out, all_hidden, all_attentions = self.encoder(
                embedding_output[:, :text_len], mask[:, :, :, :text_len], output_attentions, output_hidden_states)
            concatenated = paddle.concat([text_out, embedding_output[:, text_len:]], axis=1)
            sequence_output, probs = self.additional_layer(concatenated, mask, output_attentions)
            if output_hidden_states:
                all_hidden.append(sequence_output)
            if output_attentions:
                all_attentions.append(probs)
        else:
            sequence_output, all_hidden, all_attentions = self.encoder(
                embedding_output, self.expand_attention_mask(mask, embedding_output, self.config.num_attention_heads,
                                                           self.cpu_kernels),
                output_attentions, output_hidden_states)

        pooled_output = self.pooler(sequence_output) if self.pooler is not None else None
        return ModelOutput(
            last_hidden_state=sequence_output,
            pooler_output=pooled_output,
            hidden_states=tuple(all_hidden) if all_hidden is not None else None,
            attentions=tuple(all_attentions) if all_attentions is not None else None,
        )

    @staticmethod
    def expand_attention_mask(mask, hidden_states, num_heads, cpu_kernels):
        """[B, 1, 1, L] additive mask → [B, heads, L, L], once per forward, so that every layer adds it in place
        with a same-shape kernel (Paddle's broadcasting add is ~5x slower on CPU; 12 of them cost far more than
        this one expand). Kept broadcast on GPU, where the broadcast add is fused and memory matters more."""
        if mask is None or not cpu_kernels or kernels.applies(hidden_states):  # the C++ softmax broadcasts it
            return mask
        dims = _dims(hidden_states)
        return paddle.expand(mask, [dims[0], num_heads, dims[1], dims[1]])

    @staticmethod
    def _extended_attention_mask(input_ids, attention_mask, visual_embeds, visual_attention_mask, dtype):
        """Additive mask [B, 1, 1, L]: 0 where attended, -10000 on padding. Broadcast over heads and queries,
        never materialised as [B, 1, L, L]."""
        if attention_mask is None:
            attention_mask = paddle.ones(input_ids.shape, dtype=dtype)
        parts = [attention_mask.astype(dtype)]
        if visual_embeds is not None:
            if visual_attention_mask is None:
                visual_attention_mask = paddle.ones(visual_embeds.shape[:2], dtype=dtype)
            parts.append(visual_attention_mask.astype(dtype))
        mask = paddle.concat(parts, axis=1) if len(parts) > 1 else parts[0]
        return ((1.0 - mask) * _MASK_VALUE).unsqueeze([1, 2])


def _kl_div_batchmean(log_probs, target):
    """``torch.nn.KLDivLoss(reduction="batchmean")``: sum(t * (log t - log_probs)) / batch, with 0·log 0 = 0."""
    target = target.astype(log_probs.dtype)
    positive = target > 0
    safe_log_target = paddle.log(paddle.where(positive, target, paddle.ones_like(target)))
    pointwise = paddle.where(positive, target * (safe_log_target - log_probs), paddle.zeros_like(log_probs))
    return pointwise.sum() / log_probs.shape[0]


def _cross_entropy_ignoring(logits, labels):
    """Mean cross-entropy over the labels that are not ``IGNORE_INDEX`` (as torch's). Paddle's
    ``cross_entropy(ignore_index=...)`` divides by all labels, ignored ones included."""
    losses = F.cross_entropy(logits, labels, ignore_index=IGNORE_INDEX, reduction="none")
    count = (labels != IGNORE_INDEX).astype(losses.dtype).sum()
    return losses.sum() / paddle.clip(count, min=1.0)


class VisualBertPredictionHeadTransform(nn.Layer):
    def __init__(self, config):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.act = ACT2FN[config.hidden_act]
        self.LayerNorm = LayerNorm(config.hidden_size, epsilon=config.layer_norm_eps)

    def forward(self, hidden_states):
        return self.LayerNorm(self.act(_apply_linear(self.dense, hidden_states)))


class VisualBertLMPredictionHead(nn.Layer):
    """MLM head; the decoder weight is the (tied) word-embedding table, only the bias is its own."""

    def __init__(self, config, word_embeddings):
        super().__init__()
        self.transform = VisualBertPredictionHeadTransform(config)
        self._word_embeddings = [word_embeddings]  # a list so the tied table is not registered twice
        self.bias = self.create_parameter([config.vocab_size], is_bias=True)

    def forward(self, hidden_states):
        hidden_states = self.transform(hidden_states)
        return paddle.matmul(hidden_states, self._word_embeddings[0].weight, transpose_y=True) + self.bias


class VisualBertPreTrainingHeads(nn.Layer):
    def __init__(self, config, word_embeddings):
        super().__init__()
        self.predictions = VisualBertLMPredictionHead(config, word_embeddings)
        self.seq_relationship = nn.Linear(config.hidden_size, 2)

    def forward(self, sequence_output, pooled_output):
        return self.predictions(sequence_output), self.seq_relationship(pooled_output)


class VisualBertForPreTraining(VisualBertPreTrainedModel):
    """Masked language modelling over the text positions and sentence-image matching on the pooled output."""

    def __init__(self, config):
        super().__init__(config)
        self.visual_bert = VisualBertModel(config, initialize=False)
        self.cls = VisualBertPreTrainingHeads(config, self.visual_bert.embeddings.word_embeddings)
        self.post_init()

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, position_ids=None, visual_embeds=None,
                visual_attention_mask=None, visual_token_type_ids=None, image_text_alignment=None, labels=None,
                sentence_image_labels=None, output_attentions=False, output_hidden_states=False):
        """
        Args:
            labels (Tensor, optional): int64 [B, T + V] MLM targets, ``IGNORE_INDEX`` (-100) where not predicted
                (padding, regions, unmasked tokens).
            sentence_image_labels (Tensor, optional): int64 [B], 1 = the text matches the image, 0 = random text.
            Other arguments: see :meth:`VisualBertModel.forward`.

        Returns:
            ModelOutput: ``prediction_logits`` float [B, L, vocab], ``seq_relationship_logits`` float [B, 2],
            ``loss`` (MLM cross-entropy + sentence-image cross-entropy, over whichever labels are given). In
            training mode with labels, only the logits of the objectives that have labels are computed and returned.
        """
        outputs = self.visual_bert(input_ids, attention_mask, token_type_ids, position_ids, visual_embeds,
                                   visual_attention_mask, visual_token_type_ids, image_text_alignment,
                                   output_attentions, output_hidden_states)
        # DataParallel(find_unused_parameters=True) marks as used every parameter reachable from the returned
        # tensors: an output the loss does not use (seq_relationship_logits in MLM-only training) leaves its
        # parameters waiting for gradients that never come, and the gradient all-reduce never runs.
        only_what_the_loss_uses = self.training and (labels is not None or sentence_image_labels is not None)
        prediction_logits = seq_relationship_logits = None
        if labels is not None or not only_what_the_loss_uses:
            prediction_logits = self.cls.predictions(outputs.last_hidden_state)
        if sentence_image_labels is not None or not only_what_the_loss_uses:
            seq_relationship_logits = self.cls.seq_relationship(outputs.pooler_output)
        loss = None
        if labels is not None:
            total = prediction_logits.shape[1]
            if labels.shape[-1] != total:
                raise ValueError(f"MLM labels have length {labels.shape[-1]}, expected text + visual length {total}")
            loss = _cross_entropy_ignoring(prediction_logits.reshape([-1, self.config.vocab_size]), labels.reshape([-1]))
        if sentence_image_labels is not None:
            sentence_loss = F.cross_entropy(seq_relationship_logits, sentence_image_labels.reshape([-1]))
            loss = sentence_loss if loss is None else loss + sentence_loss
        return ModelOutput(loss=loss, prediction_logits=prediction_logits,
                           seq_relationship_logits=seq_relationship_logits,
                           hidden_states=outputs.get("hidden_states"), attentions=outputs.get("attentions"))


class _VisualBertClassifier(VisualBertPreTrainedModel):
    """The backbone, a dropout and a Linear ``cls`` of ``num_outputs`` scores (default ``config.num_labels``): what
    the classifier heads share."""

    def __init__(self, config, num_outputs=None):
        super().__init__(config)
        self.visual_bert = VisualBertModel(config, initialize=False)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.cls = nn.Linear(config.hidden_size, config.num_labels if num_outputs is None else num_outputs)
        self.post_init()


class VisualBertForQuestionAnswering(_VisualBertClassifier):
    """VQA: a classifier over ``num_labels`` answers on the hidden state of the ``[MASK]`` token that
    precedes the final ``[SEP]`` (text ``[CLS] question ? [MASK] [SEP]``, right-padded)."""

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, position_ids=None, visual_embeds=None,
                visual_attention_mask=None, visual_token_type_ids=None, image_text_alignment=None, labels=None,
                output_attentions=False, output_hidden_states=False):
        """
        Args:
            attention_mask (Tensor): [B, T], required: it locates the answer token at ``sum(mask) - 2``.
            labels (Tensor, optional): float [B, num_labels] soft answer scores (min(0.3·count, 1), not
                normalised).
            Other arguments: see :meth:`VisualBertModel.forward`.

        Returns:
            ModelOutput: ``logits`` float [B, num_labels], always the raw scores (HF returns their
            log-softmax when labels are given; the argmax is the same), and ``loss``:
            KL-divergence (batch mean) between the soft scores and ``log_softmax(logits)``.
        """
        if attention_mask is None:
            raise ValueError("VisualBertForQuestionAnswering needs attention_mask: the answer is read at the "
                             "[MASK] token, found as attention_mask.sum(1) - 2 in the right-padded text")
        outputs = self.visual_bert(input_ids, attention_mask, token_type_ids, position_ids, visual_embeds,
                                   visual_attention_mask, visual_token_type_ids, image_text_alignment,
                                   output_attentions, output_hidden_states)
        sequence_output = outputs.last_hidden_state
        index = attention_mask.astype("int64").sum(axis=1) - 2
        gathered = paddle.take_along_axis(sequence_output, index.reshape([-1, 1, 1]), axis=1, broadcast=True)
        logits = _apply_linear(self.cls, _dropout(self.dropout, gathered.squeeze(1)))
        loss = _kl_div_batchmean(F.log_softmax(logits, axis=-1), labels) if labels is not None else None
        return ModelOutput(loss=loss, logits=logits, hidden_states=outputs.get("hidden_states"), attentions=outputs.get("attentions"))


class VisualBertForVisualReasoning(_VisualBertClassifier):
    """NLVR2: a 2-way classifier (index 1 = True) on the pooled output."""

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, position_ids=None, visual_embeds=None,
                visual_attention_mask=None, visual_token_type_ids=None, image_text_alignment=None, labels=None,
                output_attentions=False, output_hidden_states=False):
        """
        Args:
            labels (Tensor, optional): int64 [B], 1 = the sentence is true of the image pair.
            Other arguments: see :meth:`VisualBertModel.forward` (NLVR2: visual_token_type_ids 0 for the left
            image's regions and 1 for the right's).

        Returns:
            ModelOutput: ``logits`` float [B, num_labels] and ``loss`` (cross-entropy).
        """
        outputs = self.visual_bert(input_ids, attention_mask, token_type_ids, position_ids, visual_embeds,
                                   visual_attention_mask, visual_token_type_ids, image_text_alignment,
                                   output_attentions, output_hidden_states)
        logits = _apply_linear(self.cls, _dropout(self.dropout, outputs.pooler_output))
        loss = F.cross_entropy(logits, labels.reshape([-1])) if labels is not None else None
        return ModelOutput(loss=loss, logits=logits, hidden_states=outputs.get("hidden_states"), attentions=outputs.get("attentions"))


class VisualBertForMultipleChoice(_VisualBertClassifier):
    """VCR: every (question, choice) sequence is scored by a Linear on its pooled output."""

    def __init__(self, config):
        super().__init__(config, 1)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, position_ids=None, visual_embeds=None,
                visual_attention_mask=None, visual_token_type_ids=None, image_text_alignment=None, labels=None,
                output_attentions=False, output_hidden_states=False):
        """
        Args:
            input_ids (Tensor): int64 [B, C, T]; ``attention_mask``, ``token_type_ids``, ``position_ids`` likewise.
            visual_embeds (Tensor, optional): float [B, C, V, D], or [B, V, D] shared by all choices;
                ``visual_attention_mask`` / ``visual_token_type_ids`` [B, C, V] or [B, V] to match.
            image_text_alignment (Tensor, optional): int64 [B, C, V, A] (flattened with the choices, which the
                HF port forgets to do).
            labels (Tensor, optional): int64 [B], index of the correct choice.

        Returns:
            ModelOutput: ``logits`` float [B, C] and ``loss`` (cross-entropy over the choices).
        """
        if input_ids.ndim != 3:
            raise ValueError(f"input_ids must be [batch, num_choices, text_len], got shape {list(input_ids.shape)}")
        num_choices = input_ids.shape[1]

        def per_choice(value, rank_without_choices):
            """Flattens [B, C, ...] to [B*C, ...]; repeats a shared [B, ...] input over the choices."""
            if value is None:
                return None
            if value.ndim == rank_without_choices:
                value = paddle.expand(value.unsqueeze(1), [value.shape[0], num_choices] + list(value.shape[1:]))
            return value.reshape([-1] + list(value.shape[2:]))

        outputs = self.visual_bert(
            per_choice(input_ids, 1), per_choice(attention_mask, 1), per_choice(token_type_ids, 1),
            per_choice(position_ids, 1), per_choice(visual_embeds, 3), per_choice(visual_attention_mask, 2),
            per_choice(visual_token_type_ids, 2), per_choice(image_text_alignment, 3), output_attentions, output_hidden_states)
        logits = _apply_linear(self.cls, _dropout(self.dropout, outputs.pooler_output)).reshape([-1, num_choices])
        loss = F.cross_entropy(logits, labels.reshape([-1])) if labels is not None else None
        return ModelOutput(loss=loss, logits=logits, hidden_states=outputs.get("hidden_states"), attentions=outputs.get("attentions"))


class VisualBertRegionToPhraseAttention(nn.Layer):
    """Single-head scaled dot-product scores between phrase tokens (queries) and regions (keys)."""

    def __init__(self, config):
        super().__init__()
        # One head of the size of a regular head (hidden / num_heads), as in the reference.
        self.attention_head_size = config.hidden_size // config.num_attention_heads
        self.query = nn.Linear(config.hidden_size, self.attention_head_size)
        self.key = nn.Linear(config.hidden_size, self.attention_head_size)
        self.value = nn.Linear(config.hidden_size, self.attention_head_size)  # unused, kept for checkpoint keys

    def forward(self, query, key, attention_mask):
        attention_mask = attention_mask.astype(query.dtype).unsqueeze(1)
        # The dtype minimum (not -10000) on masked regions: these scores ARE the returned logits, kept equal to HF's.
        attention_mask = (1.0 - attention_mask) * float(paddle.finfo(query.dtype).min)
        scores = paddle.matmul(self.query(query), self.key(key), transpose_y=True) / math.sqrt(self.attention_head_size)
        return scores + attention_mask


class VisualBertForRegionToPhraseAlignment(VisualBertPreTrainedModel):
    """Flickr30k-Entities style grounding: for each selected phrase token, scores over the regions."""

    def __init__(self, config):
        super().__init__(config)
        self.visual_bert = VisualBertModel(config, initialize=False)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        # Unused by the forward pass; present so that checkpoints of this class load without missing keys.
        self.cls = VisualBertPreTrainingHeads(config, self.visual_bert.embeddings.word_embeddings)
        self.attention = VisualBertRegionToPhraseAttention(config)
        self.post_init()

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, position_ids=None, visual_embeds=None,
                visual_attention_mask=None, visual_token_type_ids=None, image_text_alignment=None,
                region_to_phrase_position=None, labels=None, output_attentions=False, output_hidden_states=False):
        """
        Args:
            region_to_phrase_position (Tensor): int64 [B, P] sequence positions of the phrase tokens to ground
                (-1 = padding, read as position 0).
            visual_attention_mask (Tensor): [B, V], required.
            labels (Tensor, optional): float [B, P, V] target distributions over regions.
            Other arguments: see :meth:`VisualBertModel.forward`.

        Returns:
            ModelOutput: ``logits`` float [B, P, V] (masked regions at the dtype minimum) and ``loss``
            (KL-divergence, batch mean, to ``log_softmax(logits)``).
        """
        if region_to_phrase_position is None:
            raise ValueError("VisualBertForRegionToPhraseAlignment needs region_to_phrase_position")
        if visual_embeds is None or visual_attention_mask is None:
            raise ValueError("VisualBertForRegionToPhraseAlignment needs visual_embeds and visual_attention_mask")
        outputs = self.visual_bert(input_ids, attention_mask, token_type_ids, position_ids, visual_embeds,
                                   visual_attention_mask, visual_token_type_ids, image_text_alignment,
                                   output_attentions, output_hidden_states)
        sequence_output = outputs.last_hidden_state
        positions = paddle.where(region_to_phrase_position != ALIGNMENT_PAD, region_to_phrase_position,
                                 paddle.zeros_like(region_to_phrase_position))
        phrases = paddle.take_along_axis(sequence_output, positions.unsqueeze(-1), axis=1, broadcast=True)
        regions = sequence_output[:, input_ids.shape[1]:]
        logits = self.attention(phrases, regions, visual_attention_mask)
        loss = _kl_div_batchmean(F.log_softmax(logits, axis=-1), labels) if labels is not None else None
        return ModelOutput(loss=loss, logits=logits, hidden_states=outputs.get("hidden_states"), attentions=outputs.get("attentions"))


MODEL_CLASSES = {
    cls.__name__: cls
    for cls in (VisualBertModel, VisualBertForPreTraining, VisualBertForQuestionAnswering,
                VisualBertForVisualReasoning, VisualBertForMultipleChoice, VisualBertForRegionToPhraseAlignment)
}


def model_class_for(architecture):
    """The class named by a config's ``architectures`` entry.

    Raises:
        KeyError: unknown class name.
    """
    if architecture not in MODEL_CLASSES:
        from .vcr_model import vcr_model_class  # the VCR-from-images classes wrap the ones above

        if vcr_model_class(architecture) is not None:
            return vcr_model_class(architecture)
        raise KeyError(f"unknown VisualBERT architecture {architecture!r}; known: {', '.join(MODEL_CLASSES)}")
    return MODEL_CLASSES[architecture]


def load_pretrained(pretrained_dir, **kwargs):
    """Loads a saved model into the class recorded in its ``config.json`` (``architectures[0]``)."""
    config = VisualBertConfig.from_pretrained(pretrained_dir)
    architecture = (config.architectures or ["VisualBertModel"])[0]
    return model_class_for(architecture).from_pretrained(pretrained_dir, **kwargs)
