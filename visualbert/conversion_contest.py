"""Checkpoints of the Paddle contest port (chenkangyang/paddle_visual_bert + its PaddleNLP fork) → this project.

The contest port is Paddle too, so its Linear weights are already [in, out] like ours: the table renames and
transposes nothing. Its layout differs from ours in names only:

* the encoder is ``paddle.nn.TransformerEncoder`` (``encoder.layer.layers.{i}.self_attn.q_proj``, ``norm1``,
  ``linear1`` ...) where ours follows BERT (``encoder.layer.{i}.attention.self.query`` ...);
* LayerNorms are ``layer_norm`` (ours ``LayerNorm``), the MLM transform is one Linear ``cls.predictions.transform``;
* the MLM decoder is a separate entry ``cls.predictions.decoder_weight`` stored [vocab, hidden] like the word
  embedding table it is tied to (ours ties it without a key of its own), its bias is ``decoder_bias``;
* a ``position_ids`` buffer is saved; checkpoints saved from ``paddle.DataParallel`` carry a ``_layers.`` prefix;
  files made by the contest's own converter from HF keep HF's ``cls.predictions.decoder.bias``.

The head and the sizes come from the shapes (:func:`infer_contest_config`); ``--name`` overrides the head.
Every source key is mapped or declared ignored (and then checked), every Paddle key is produced, every shape is
checked; anything else is an error that names the key.
"""

import json
import os
import re

import numpy as np

from .configuration import VisualBertConfig, checkpoint_info
from .conversion_check import apply_conversion_table, listed_keys

CONTEST_STATE_FILE = "model_state.pdparams"
CONTEST_CONFIG_FILE = "model_config.json"
DATAPARALLEL_PREFIX = "_layers."
# paddle.save of Paddle < 2.1 adds this name table next to the tensors.
PADDLE_NAME_TABLE_KEY = "StructuredToParameterName@@"

# ------------------------------------------------------------------------------------------------ the table
# (contest name, our name). No transposes: both sides are Paddle, Linear weights [in, out] on both.
_CONTEST_EMBEDDINGS = [
    ("embeddings.word_embeddings.weight", "embeddings.word_embeddings.weight"),
    ("embeddings.position_embeddings.weight", "embeddings.position_embeddings.weight"),
    ("embeddings.token_type_embeddings.weight", "embeddings.token_type_embeddings.weight"),
    ("embeddings.visual_token_type_embeddings.weight", "embeddings.visual_token_type_embeddings.weight"),
    ("embeddings.visual_position_embeddings.weight", "embeddings.visual_position_embeddings.weight"),
    ("embeddings.visual_projection.weight", "embeddings.visual_projection.weight"),
    ("embeddings.visual_projection.bias", "embeddings.visual_projection.bias"),
    ("embeddings.layer_norm.weight", "embeddings.LayerNorm.weight"),
    ("embeddings.layer_norm.bias", "embeddings.LayerNorm.bias"),
]
# {src} is "encoder.layer.layers.{i}" (or "additional_layer"), {dst} "encoder.layer.{i}" (or "additional_layer").
_CONTEST_LAYER = [
    ("{src}.self_attn.q_proj.weight", "{dst}.attention.self.query.weight"),
    ("{src}.self_attn.q_proj.bias", "{dst}.attention.self.query.bias"),
    ("{src}.self_attn.k_proj.weight", "{dst}.attention.self.key.weight"),
    ("{src}.self_attn.k_proj.bias", "{dst}.attention.self.key.bias"),
    ("{src}.self_attn.v_proj.weight", "{dst}.attention.self.value.weight"),
    ("{src}.self_attn.v_proj.bias", "{dst}.attention.self.value.bias"),
    ("{src}.self_attn.out_proj.weight", "{dst}.attention.output.dense.weight"),
    ("{src}.self_attn.out_proj.bias", "{dst}.attention.output.dense.bias"),
    ("{src}.norm1.weight", "{dst}.attention.output.LayerNorm.weight"),
    ("{src}.norm1.bias", "{dst}.attention.output.LayerNorm.bias"),
    ("{src}.linear1.weight", "{dst}.intermediate.dense.weight"),
    ("{src}.linear1.bias", "{dst}.intermediate.dense.bias"),
    ("{src}.linear2.weight", "{dst}.output.dense.weight"),
    ("{src}.linear2.bias", "{dst}.output.dense.bias"),
    ("{src}.norm2.weight", "{dst}.output.LayerNorm.weight"),
    ("{src}.norm2.bias", "{dst}.output.LayerNorm.bias"),
]
_CONTEST_POOLER = [
    ("pooler.dense.weight", "pooler.dense.weight"),
    ("pooler.dense.bias", "pooler.dense.bias"),
]
_CONTEST_PRETRAINING_HEADS = [
    ("cls.predictions.transform.weight", "cls.predictions.transform.dense.weight"),
    ("cls.predictions.transform.bias", "cls.predictions.transform.dense.bias"),
    ("cls.predictions.layer_norm.weight", "cls.predictions.transform.LayerNorm.weight"),
    ("cls.predictions.layer_norm.bias", "cls.predictions.transform.LayerNorm.bias"),
    ("cls.predictions.decoder_bias", "cls.predictions.bias"),
    ("cls.seq_relationship.weight", "cls.seq_relationship.weight"),
    ("cls.seq_relationship.bias", "cls.seq_relationship.bias"),
]
_CONTEST_CLASSIFIER = [
    ("cls.weight", "cls.weight"),
    ("cls.bias", "cls.bias"),
]
CONTEST_HEAD_ENTRIES = {
    "VisualBertModel": [],
    "VisualBertForPreTraining": _CONTEST_PRETRAINING_HEADS,
    "VisualBertForQuestionAnswering": _CONTEST_CLASSIFIER,
    "VisualBertForVisualReasoning": _CONTEST_CLASSIFIER,
    "VisualBertForMultipleChoice": _CONTEST_CLASSIFIER,
}
# Contest keys that carry no parameter of their own. Each is checked, not just dropped.
CONTEST_IGNORED_KEYS = {
    "embeddings.position_ids": "arange buffer (checked to be 0..max_position-1)",
    "cls.predictions.decoder_weight": "tied to embeddings.word_embeddings.weight, same [vocab, hidden] layout (checked equal)",
    "cls.predictions.decoder.bias": "HF's alias left by the contest's converter (checked equal to cls.predictions.decoder_bias)",
}
_CONTEST_TIED = {  # ignored key -> the key it must equal (both with the model prefix applied)
    "cls.predictions.decoder_weight": "embeddings.word_embeddings.weight",
    "cls.predictions.decoder.bias": "cls.predictions.decoder_bias",
}
# Names that only the contest layout has, and names that only ours (and HF's) has: how a state dict is recognised.
CONTEST_MARKERS = ("encoder.layer.layers.", ".self_attn.q_proj.", "embeddings.layer_norm.", "cls.predictions.decoder_weight")
OUR_MARKERS = (".attention.self.query.", "embeddings.LayerNorm.")
# Classifier width -> head, as the contest port's checkpoints use them; any other width is a VQA-style answer head.
CLASSIFIER_WIDTH_HEADS = {1: "VisualBertForMultipleChoice", 2: "VisualBertForVisualReasoning"}


def _model_prefix(architecture):
    return "" if architecture == "VisualBertModel" else "visual_bert."


def _with_prefix(prefix, key):
    return key if key.startswith("cls.") else prefix + key


def contest_conversion_table(config, architecture):
    """The full (contest key, our key, transpose) list for one architecture; ``transpose`` is always False.

    Args:
        config (VisualBertConfig): decides the number of layers and ``bypass_transformer``.
        architecture (str): our class name, e.g. ``"VisualBertForQuestionAnswering"``.

    Returns:
        list[tuple[str, str, bool]]
    """
    if architecture not in CONTEST_HEAD_ENTRIES:
        raise KeyError(f"no contest-port conversion table for architecture {architecture!r}; the contest port has "
                       f"{', '.join(CONTEST_HEAD_ENTRIES)}")
    rows = list(_CONTEST_EMBEDDINGS)
    for i in range(config.num_hidden_layers):
        rows += [(s.format(src=f"encoder.layer.layers.{i}"), d.format(dst=f"encoder.layer.{i}")) for s, d in _CONTEST_LAYER]
    if config.bypass_transformer:
        rows += [(s.format(src="additional_layer"), d.format(dst="additional_layer")) for s, d in _CONTEST_LAYER]
    rows += _CONTEST_POOLER
    prefix = _model_prefix(architecture)
    table = [(prefix + s, prefix + d, False) for s, d in rows]
    return table + [(s, d, False) for s, d in CONTEST_HEAD_ENTRIES[architecture]]


def _contest_ignored_keys(architecture):
    prefix = _model_prefix(architecture)
    keys = {prefix + "embeddings.position_ids": CONTEST_IGNORED_KEYS["embeddings.position_ids"]}
    if architecture == "VisualBertForPreTraining":
        for key in ("cls.predictions.decoder_weight", "cls.predictions.decoder.bias"):
            keys[key] = CONTEST_IGNORED_KEYS[key]
    return keys


def convert_contest_state_dict(state, config, architecture, expected_shapes=None):
    """Applies the contest table to a contest-port state dict (``_layers.`` prefix already stripped).

    Args:
        state (dict[str, np.ndarray]): contest-named arrays.
        config (VisualBertConfig): the target config.
        architecture (str): the target class name.
        expected_shapes (dict[str, list[int]], optional): our key → shape, checked when given.

    Returns:
        dict[str, np.ndarray]: float32 arrays under our names.

    Raises:
        KeyError: a contest key neither mapped nor ignored, a key the table needs that is missing, or one of ours
            not produced; the message names the keys.
        ValueError: a shape mismatch, a tied entry that differs from its tie, or a position_ids buffer that is not
            0..max_position-1.
    """
    table = contest_conversion_table(config, architecture)
    ignored = _contest_ignored_keys(architecture)
    prefix = _model_prefix(architecture)
    for alias, target in _CONTEST_TIED.items():
        alias_key, target_key = _with_prefix(prefix, alias), _with_prefix(prefix, target)
        if alias_key in ignored and alias_key in state and target_key in state:
            a, b = np.asarray(state[alias_key]), np.asarray(state[target_key])
            if a.shape != b.shape or not np.array_equal(a, b):
                raise ValueError(f"{alias_key} (shape {list(a.shape)}) should equal {target_key} (shape {list(b.shape)}), "
                                 "to which the contest model ties it, but differs from it")
    position_key = prefix + "embeddings.position_ids"
    if position_key in state:
        ids = np.asarray(state[position_key])
        if ids.reshape(-1).shape[0] != config.max_position_embeddings or not np.array_equal(
                ids.reshape(-1), np.arange(config.max_position_embeddings)):
            raise ValueError(f"{position_key} (shape {list(ids.shape)}) is not the buffer 0..{config.max_position_embeddings - 1} "
                             "the contest model saves; this checkpoint's positions would not convert faithfully")
    return apply_conversion_table(state, table, architecture, "the contest-port checkpoint", ignored, expected_shapes)


# ------------------------------------------------------------------------------------------------ recognising
def strip_dataparallel_prefix(state, path="the checkpoint"):
    """Removes the ``_layers.`` prefix of a state dict saved from ``paddle.DataParallel`` (all keys or none)."""
    prefixed = [k for k in state if k.startswith(DATAPARALLEL_PREFIX)]
    if not prefixed:
        return dict(state)
    plain = [k for k in state if not k.startswith(DATAPARALLEL_PREFIX)]
    if plain:
        raise KeyError(f"{path}: {len(prefixed)} keys carry the DataParallel prefix {DATAPARALLEL_PREFIX!r} but "
                       f"{len(plain)} do not, e.g. {listed_keys(plain, 3)}: not one model's state dict")
    return {k[len(DATAPARALLEL_PREFIX):]: v for k, v in state.items()}


def is_contest_state_dict(keys):
    """bool: the keys follow the contest port's layout (``encoder.layer.layers.{i}.self_attn.q_proj`` ...)."""
    return any(marker in key for key in keys for marker in CONTEST_MARKERS)


def is_our_state_dict(keys):
    return any(marker in key for key in keys for marker in OUR_MARKERS) and not is_contest_state_dict(keys)


def describe_keys(keys, limit=5):
    """str: what a state dict of an unknown layout looks like (key count, top-level names, examples)."""
    keys = sorted(keys)
    counts = {}
    for key in keys:
        head = ".".join(key.split(".")[:2]) if key.count(".") >= 2 else key.split(".")[0]
        counts[head] = counts.get(head, 0) + 1
    tops = ", ".join(f"{name}.* ({n})" for name, n in sorted(counts.items(), key=lambda kv: -kv[1])[:limit])
    return f"{len(keys)} keys; top-level names {tops}; e.g. {', '.join(keys[:limit])}"


def neither_layout_message(path, keys):
    return (f"{path} is neither a contest-port VisualBERT state dict (encoder.layer.layers.{{i}}.self_attn.q_proj, "
            f"norm1, linear1, embeddings.layer_norm, cls.predictions.decoder_weight) nor one of this project "
            f"(encoder.layer.{{i}}.attention.self.query, embeddings.LayerNorm): it holds {describe_keys(keys)}")


# ------------------------------------------------------------------------------------------------ config from shapes
def _shape(state, key, path):
    if key not in state:
        raise KeyError(f"{path}: {key!r} is missing; the contest port's VisualBERT always has it")
    return list(np.asarray(state[key]).shape)


def read_contest_model_config(directory):
    """The contest port's ``model_config.json`` beside a checkpoint, flattened, or {} when there is none.

    ``save_pretrained`` writes ``{"init_args": [{...backbone...}], "init_class": ..., "num_classes": ...}``;
    ``run_pretrain.py`` writes the backbone's arguments directly.
    """
    path = os.path.join(directory, CONTEST_CONFIG_FILE)
    if not os.path.isfile(path):
        return {}
    try:
        with open(path) as f:
            values = json.load(f)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from None
    if not isinstance(values, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(values).__name__}")
    init_args = values.get("init_args")
    if isinstance(init_args, list) and init_args and isinstance(init_args[0], dict):
        return dict(init_args[0])
    return values


def infer_contest_config(state, path="the checkpoint", name=None, model_config=None):
    """The config and head of a contest-port state dict, from its shapes.

    Head: ``cls.predictions.*`` → pre-training; ``cls.weight`` [hidden, n]: n = 1 → VCR (multiple choice), 2 → NLVR2,
    any other n → VQA with n answers (3129 for the released VQA files); no ``visual_bert.`` prefix → the bare model.
    ``name`` (a released checkpoint name) overrides the head and must agree with the visual width.
    Sizes come from the tables: vocab, hidden, visual width, positions, token types, layers, FFN width. The number
    of attention heads is not in any shape: it comes from ``model_config`` (the contest's model_config.json) or
    else BERT's convention hidden / 64 (12 for the released 768-wide models).

    Returns:
        tuple[VisualBertConfig, str]: (config, architecture).
    """
    model_config = model_config or {}
    prefix = "visual_bert." if any(k.startswith("visual_bert.") for k in state) else ""
    vocab_size, hidden = _shape(state, prefix + "embeddings.word_embeddings.weight", path)
    visual_dim = _shape(state, prefix + "embeddings.visual_projection.weight", path)[0]
    max_positions = _shape(state, prefix + "embeddings.position_embeddings.weight", path)[0]
    type_vocab = _shape(state, prefix + "embeddings.token_type_embeddings.weight", path)[0]
    layer_re = re.compile(re.escape(prefix) + r"encoder\.layer\.layers\.(\d+)\.")
    indices = {int(m.group(1)) for m in (layer_re.match(k) for k in state) if m}
    if not indices:
        raise KeyError(f"{path}: no {prefix}encoder.layer.layers.{{i}}.* keys; not a contest-port VisualBERT encoder")
    intermediate = _shape(state, prefix + "encoder.layer.layers.0.linear1.weight", path)[1]
    heads = model_config.get("num_attention_heads")
    if heads is None:
        if hidden % 64:
            raise ValueError(f"{path}: the number of attention heads is not in the shapes and no {CONTEST_CONFIG_FILE} "
                             f"is beside it; hidden size {hidden} is not a multiple of 64 (BERT's head width), so put "
                             "the contest port's model_config.json next to the file")
        heads = hidden // 64

    if prefix == "":
        shape_architecture = "VisualBertModel"
    elif any(k.startswith("cls.predictions.") for k in state):
        shape_architecture = "VisualBertForPreTraining"
    elif "cls.weight" in state:
        width = _shape(state, "cls.weight", path)[1]
        shape_architecture = CLASSIFIER_WIDTH_HEADS.get(width, "VisualBertForQuestionAnswering")
    else:
        raise KeyError(f"{path}: a visual_bert.* backbone without a head (no cls.weight, no cls.predictions.*); "
                       "pass --name to say which checkpoint it is")
    architecture = shape_architecture
    num_labels = _shape(state, "cls.weight", path)[1] if "cls.weight" in state else 2
    if architecture == "VisualBertForMultipleChoice":
        num_labels = 2  # our config's default; the multiple-choice head has one output per choice regardless
    if name is not None:
        info = checkpoint_info(name)
        architecture = info["architecture"]
        if info["visual_embedding_dim"] != visual_dim:
            raise ValueError(f"{path}: --name {name} expects {info['visual_embedding_dim']}-d region features, but the "
                             f"checkpoint's {prefix}embeddings.visual_projection.weight is {visual_dim}-d")
        num_labels = info["num_labels"]
    config = VisualBertConfig(
        vocab_size=vocab_size, hidden_size=hidden, visual_embedding_dim=visual_dim,
        num_hidden_layers=max(indices) + 1, num_attention_heads=heads, intermediate_size=intermediate,
        hidden_act=model_config.get("hidden_act", "gelu"), max_position_embeddings=max_positions,
        type_vocab_size=type_vocab,
        # The contest's init_weights sets every LayerNorm epsilon to 1e-12, whatever the layer was built with.
        layer_norm_eps=1e-12,
        bypass_transformer=any(k.startswith(prefix + "additional_layer.") for k in state),
        num_labels=num_labels, architectures=[architecture])
    return config, architecture


# ------------------------------------------------------------------------------------------------ reading
def paddle_state_file(src):
    """The ``.pdparams`` file of a Paddle source (the file itself, or a directory's model_state.pdparams), or None."""
    if os.path.isfile(src) and src.endswith(".pdparams"):
        return src
    if os.path.isdir(src) and os.path.isfile(os.path.join(src, CONTEST_STATE_FILE)):
        return os.path.join(src, CONTEST_STATE_FILE)
    return None


def is_paddle_source(src):
    """bool: ``src`` is a ``.pdparams`` file, or a directory with model_state.pdparams and no PyTorch weights."""
    if os.path.isdir(src) and any(os.path.isfile(os.path.join(src, n)) for n in ("model.safetensors", "pytorch_model.bin")):
        return False
    return paddle_state_file(src) is not None


def load_pdparams(path):
    """A ``.pdparams`` file as numpy arrays (float tensors as float32, integer buffers as they are)."""
    import paddle

    try:
        state = paddle.load(path, return_numpy=True)
    except Exception as err:  # paddle raises many types for a corrupt or foreign file
        raise ValueError(f"{path} is not a readable Paddle state dict: {err}") from None
    if not isinstance(state, dict):
        raise ValueError(f"{path} does not hold a state dict (got {type(state).__name__})")
    state.pop(PADDLE_NAME_TABLE_KEY, None)
    out = {}
    for key, value in state.items():
        if not isinstance(value, np.ndarray):
            raise ValueError(f"{path}: entry {key!r} is a {type(value).__name__}, not a tensor; not a model state dict")
        out[key] = value.astype(np.float32) if np.issubdtype(value.dtype, np.floating) else value
    if not out:
        raise ValueError(f"{path} holds an empty state dict")
    return out


def read_contest_source(src, name=None):
    """Reads a contest-port checkpoint and decides its config and architecture.

    Args:
        src (str): a ``.pdparams`` file, or a directory with ``model_state.pdparams`` (the contest's
            ``save_pretrained`` output, e.g. ``vqa2_ft_model_10000.pdparams/``); a ``model_config.json`` beside it
            supplies the number of attention heads.
        name (str, optional): released checkpoint name overriding the head read from the shapes.

    Returns:
        tuple: (state dict with contest names, ``_layers.`` stripped; VisualBertConfig; architecture name).

    Raises:
        ValueError: the file is not in the contest layout (the message says what it looks like).
    """
    path = paddle_state_file(src)
    if path is None:
        raise FileNotFoundError(f"{src!r} is neither a .pdparams file nor a directory with {CONTEST_STATE_FILE}")
    state = strip_dataparallel_prefix(load_pdparams(path), path)
    if not is_contest_state_dict(state):
        if is_our_state_dict(state):
            raise ValueError(f"{path} is already in this project's layout (encoder.layer.{{i}}.attention.self.query); "
                             "no conversion needed: pass its directory (with config.json) as --model_name_or_path")
        raise ValueError(neither_layout_message(path, state))
    config, architecture = infer_contest_config(state, path, name, read_contest_model_config(os.path.dirname(path)))
    return state, config, architecture


__all__ = ["contest_conversion_table", "convert_contest_state_dict", "read_contest_source", "infer_contest_config",
           "is_contest_state_dict", "strip_dataparallel_prefix", "paddle_state_file", "is_paddle_source", "load_pdparams",
           "CONTEST_IGNORED_KEYS", "CONTEST_HEAD_ENTRIES"]
