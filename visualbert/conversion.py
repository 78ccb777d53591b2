"""PyTorch VisualBERT checkpoints → Paddle: one declarative table, strict checks, atomic output.

Sources understood:
* an HF model directory (``config.json`` + ``model.safetensors`` or ``pytorch_model.bin``), e.g. a local
  copy of ``uclanlp/visualbert-vqa``; safetensors are read without torch;
* an original UCLA NLP ``.th`` file (``vqa_fine_tuned.th`` ...), whose keys are renamed to the HF ones
  first (``ORIGINAL_RENAMES``); the checkpoint name picks the config.

Every source key must be in the table or on ``IGNORED_SOURCE_KEYS``; every Paddle key must be produced;
shapes must match. Anything else is an error that names the key.
"""

import json
import os
import shutil
import tempfile

import numpy as np

from .configuration import CONFIG_NAME, VisualBertConfig, checkpoint_info, config_for_checkpoint
from .conversion_check import apply_conversion_table
from .conversion_contest import (
    contest_conversion_table,
    convert_contest_state_dict,
    is_paddle_source,
    read_contest_source,
)
from .fileio import replace_dir

# ------------------------------------------------------------------------------------------------ the table
# (source name, Paddle name, transpose). Source names are HF's; "{i}" is the layer index. torch Linear
# weights are [out, in] and Paddle's [in, out]: exactly the Linear weights are transposed. Embedding
# tables ([rows, hidden]), biases and LayerNorm parameters are copied as they are.
_EMBEDDINGS = [
    ("embeddings.word_embeddings.weight", "embeddings.word_embeddings.weight", False),
    ("embeddings.position_embeddings.weight", "embeddings.position_embeddings.weight", False),
    ("embeddings.token_type_embeddings.weight", "embeddings.token_type_embeddings.weight", False),
    ("embeddings.visual_token_type_embeddings.weight", "embeddings.visual_token_type_embeddings.weight", False),
    ("embeddings.visual_position_embeddings.weight", "embeddings.visual_position_embeddings.weight", False),
    ("embeddings.visual_projection.weight", "embeddings.visual_projection.weight", True),
    ("embeddings.visual_projection.bias", "embeddings.visual_projection.bias", False),
    ("embeddings.LayerNorm.weight", "embeddings.LayerNorm.weight", False),
    ("embeddings.LayerNorm.bias", "embeddings.LayerNorm.bias", False),
]
_LAYER = [
    ("{layer}.attention.self.query.weight", "{layer}.attention.self.query.weight", True),
    ("{layer}.attention.self.query.bias", "{layer}.attention.self.query.bias", False),
    ("{layer}.attention.self.key.weight", "{layer}.attention.self.key.weight", True),
    ("{layer}.attention.self.key.bias", "{layer}.attention.self.key.bias", False),
    ("{layer}.attention.self.value.weight", "{layer}.attention.self.value.weight", True),
    ("{layer}.attention.self.value.bias", "{layer}.attention.self.value.bias", False),
    ("{layer}.attention.output.dense.weight", "{layer}.attention.output.dense.weight", True),
    ("{layer}.attention.output.dense.bias", "{layer}.attention.output.dense.bias", False),
    ("{layer}.attention.output.LayerNorm.weight", "{layer}.attention.output.LayerNorm.weight", False),
    ("{layer}.attention.output.LayerNorm.bias", "{layer}.attention.output.LayerNorm.bias", False),
    ("{layer}.intermediate.dense.weight", "{layer}.intermediate.dense.weight", True),
    ("{layer}.intermediate.dense.bias", "{layer}.intermediate.dense.bias", False),
    ("{layer}.output.dense.weight", "{layer}.output.dense.weight", True),
    ("{layer}.output.dense.bias", "{layer}.output.dense.bias", False),
    ("{layer}.output.LayerNorm.weight", "{layer}.output.LayerNorm.weight", False),
    ("{layer}.output.LayerNorm.bias", "{layer}.output.LayerNorm.bias", False),
]
_POOLER = [
    ("pooler.dense.weight", "pooler.dense.weight", True),
    ("pooler.dense.bias", "pooler.dense.bias", False),
]
_PRETRAINING_HEADS = [
    ("cls.predictions.bias", "cls.predictions.bias", False),
    ("cls.predictions.transform.dense.weight", "cls.predictions.transform.dense.weight", True),
    ("cls.predictions.transform.dense.bias", "cls.predictions.transform.dense.bias", False),
    ("cls.predictions.transform.LayerNorm.weight", "cls.predictions.transform.LayerNorm.weight", False),
    ("cls.predictions.transform.LayerNorm.bias", "cls.predictions.transform.LayerNorm.bias", False),
    ("cls.seq_relationship.weight", "cls.seq_relationship.weight", True),
    ("cls.seq_relationship.bias", "cls.seq_relationship.bias", False),
]
_CLASSIFIER = [
    ("cls.weight", "cls.weight", True),
    ("cls.bias", "cls.bias", False),
]
_REGION_TO_PHRASE = _PRETRAINING_HEADS + [
    ("attention.query.weight", "attention.query.weight", True),
    ("attention.query.bias", "attention.query.bias", False),
    ("attention.key.weight", "attention.key.weight", True),
    ("attention.key.bias", "attention.key.bias", False),
    ("attention.value.weight", "attention.value.weight", True),
    ("attention.value.bias", "attention.value.bias", False),
]
HEAD_ENTRIES = {
    "VisualBertModel": [],
    "VisualBertForPreTraining": _PRETRAINING_HEADS,
    "VisualBertForQuestionAnswering": _CLASSIFIER,
    "VisualBertForVisualReasoning": _CLASSIFIER,
    "VisualBertForMultipleChoice": _CLASSIFIER,
    "VisualBertForRegionToPhraseAlignment": _REGION_TO_PHRASE,
}

# Source keys that carry no parameter of their own. Each is checked, not just dropped.
IGNORED_SOURCE_KEYS = {
    "embeddings.position_ids": "non-persistent arange buffer",
    "cls.predictions.decoder.weight": "tied to embeddings.word_embeddings.weight (checked equal)",
    "cls.predictions.decoder.bias": "alias of cls.predictions.bias (checked equal)",
}
_TIED = {
    "cls.predictions.decoder.weight": "embeddings.word_embeddings.weight",
    "cls.predictions.decoder.bias": "cls.predictions.bias",
}

# Original release (.th) → HF names, applied in order as substring replacements (as HF's own converter).
ORIGINAL_RENAMES = [
    ("bert.bert.", "visual_bert."),
    ("bert.cls.", "cls."),
    ("bert.classifier.", "cls."),
    ("token_type_embeddings_visual", "visual_token_type_embeddings"),
    ("position_embeddings_visual", "visual_position_embeddings"),
    ("projection", "visual_projection"),
]
# Original keys dropped on purpose: the VCR checkpoints carry their detector's weights.
ORIGINAL_DROPPED_PREFIXES = ("detector.",)


def conversion_table(config, architecture):
    """The full (source key, Paddle key, transpose) list for one architecture.

    Args:
        config (VisualBertConfig): decides the number of layers and ``bypass_transformer``.
        architecture (str): HF/Paddle class name, e.g. ``"VisualBertForQuestionAnswering"``.

    Returns:
        list[tuple[str, str, bool]]
    """
    if architecture not in HEAD_ENTRIES:
        raise KeyError(f"no conversion table for architecture {architecture!r}; known: {', '.join(HEAD_ENTRIES)}")
    backbone = list(_EMBEDDINGS)
    for i in range(config.num_hidden_layers):
        backbone += [(s.format(layer=f"encoder.layer.{i}"), d.format(layer=f"encoder.layer.{i}"), t) for s, d, t in _LAYER]
    if config.bypass_transformer:
        backbone += [(s.format(layer="additional_layer"), d.format(layer="additional_layer"), t) for s, d, t in _LAYER]
    backbone += _POOLER
    if architecture == "VisualBertModel":
        return backbone
    prefixed = [("visual_bert." + s, "visual_bert." + d, t) for s, d, t in backbone]
    return prefixed + list(HEAD_ENTRIES[architecture])


def _ignored_keys(architecture):
    prefix = "" if architecture == "VisualBertModel" else "visual_bert."
    out = {}
    for key, why in IGNORED_SOURCE_KEYS.items():
        out[(prefix + key) if key.startswith("embeddings.") else key] = why
    return out


def convert_state_dict(source, config, architecture, expected_shapes=None):
    """Applies the table to a source state dict.

    Args:
        source (dict[str, np.ndarray]): HF-named float arrays.
        config (VisualBertConfig): the target config.
        architecture (str): the target class name.
        expected_shapes (dict[str, list[int]], optional): Paddle key → shape, checked when given.

    Returns:
        dict[str, np.ndarray]: Paddle-named arrays (Linear weights transposed).

    Raises:
        KeyError: a source key that is neither mapped nor ignored, or a Paddle key not produced.
        ValueError: a shape mismatch, or a tied weight that differs from its tie.
    """
    table = conversion_table(config, architecture)
    ignored = _ignored_keys(architecture)
    # Only the pre-training head uses its decoder; HF's region-to-phrase class keeps an untied, unused copy.
    for alias, target in (_TIED.items() if architecture == "VisualBertForPreTraining" else ()):
        target_key = ("visual_bert." + target) if target.startswith("embeddings.") else target
        if alias in source and target_key in source and not np.array_equal(np.asarray(source[alias]), np.asarray(source[target_key])):
            raise ValueError(f"{alias} should be tied to {target_key} but differs from it; the Paddle model ties them")
    return apply_conversion_table(source, table, architecture, "the source", ignored, expected_shapes)


# ------------------------------------------------------------------------------------------------ reading
def rename_original_keys(state_dict):
    """Original ``.th`` names → HF names; drops the VCR detector weights."""
    out = {}
    for key, value in state_dict.items():
        if key.startswith(ORIGINAL_DROPPED_PREFIXES):
            continue
        new_key = key
        for old, new in ORIGINAL_RENAMES:
            new_key = new_key.replace(old, new)
        out[new_key] = value
    return out


def _torch_load(path):
    try:
        import torch
    except ImportError:
        raise ImportError(f"reading {path} needs torch (pip install torch==2.13.0); safetensors sources do not") from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a corrupt file
        raise ValueError(f"{path} is not a readable torch checkpoint: {err}") from None
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    if not isinstance(state, dict):
        raise ValueError(f"{path} does not hold a state dict (got {type(state).__name__})")
    return {k: v.detach().float().numpy() for k, v in state.items()}


def _safetensors_load(path):
    from safetensors.numpy import load_file

    try:
        return {k: v.astype(np.float32) for k, v in load_file(path).items()}
    except Exception as err:
        raise ValueError(f"{path} is not a readable safetensors file: {err}") from None


HF_WEIGHTS_NAMES = ("model.safetensors", "pytorch_model.bin")


def hf_weights_file(directory):
    """The weights file of an HF model directory (``model.safetensors`` preferred), or None."""
    for name in HF_WEIGHTS_NAMES:
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            return path
    return None


def load_weights_file(path):
    """A torch / safetensors weights file as float32 numpy arrays (safetensors without torch)."""
    return _safetensors_load(path) if path.endswith(".safetensors") else _torch_load(path)


def read_source(src, name=None):
    """Reads a source checkpoint and decides its config and architecture.

    Args:
        src (str): HF model directory, or a ``.th`` / ``.bin`` / ``.safetensors`` file.
        name (str, optional): released checkpoint name (``visualbert-vqa`` ...); required for single files
            without a ``config.json`` beside them, checked against the directory's config otherwise.

    Returns:
        tuple: (state dict with HF names, VisualBertConfig, architecture name).
    """
    if not os.path.exists(src):
        raise FileNotFoundError(f"source checkpoint {src!r} does not exist")
    config = None
    if os.path.isdir(src):
        config_path = os.path.join(src, CONFIG_NAME)
        weights_path = hf_weights_file(src)
        if weights_path is None:
            raise FileNotFoundError(f"{src!r} has neither model.safetensors nor pytorch_model.bin: not an HF checkpoint directory")
        if os.path.isfile(config_path):
            config = VisualBertConfig.from_pretrained(config_path)
    else:
        weights_path = src
        sibling = os.path.join(os.path.dirname(os.path.abspath(src)), CONFIG_NAME)
        if name is None and os.path.isfile(sibling):
            config = VisualBertConfig.from_pretrained(sibling)

    state = load_weights_file(weights_path)
    if not state:
        raise ValueError(f"{weights_path} holds an empty state dict")
    if any(k.startswith(("bert.bert.", "bert.cls.", "bert.classifier.")) for k in state):
        state = rename_original_keys(state)

    if name is not None:
        named = config_for_checkpoint(name)
        if config is not None:
            for field in ("visual_embedding_dim", "hidden_size", "num_hidden_layers"):
                if getattr(config, field) != getattr(named, field):
                    raise ValueError(f"{src}: config.json has {field}={getattr(config, field)}, but {name} has "
                                     f"{getattr(named, field)}")
            config.architectures = config.architectures or named.architectures
        else:
            config = named
    if config is None:
        raise ValueError(f"{src}: no config.json found; pass --name (one of the released checkpoint names) "
                         "to choose the configuration")
    if not config.architectures:
        raise ValueError(f"{src}: config.json does not name the model class (architectures); pass --name")
    architecture = config.architectures[0]
    if architecture == "VisualBertForMultipleChoice":
        config.num_labels = 2 if config.num_labels is None else config.num_labels
    # Classifier width comes from the weights when the config has no id2label (HF omits it for 2 labels).
    if "cls.weight" in state and architecture in ("VisualBertForQuestionAnswering", "VisualBertForVisualReasoning"):
        config.num_labels = int(np.asarray(state["cls.weight"]).shape[0])
    return state, config, architecture


# ------------------------------------------------------------------------------------------------ writing
def convert_checkpoint(src, dst, name=None, overwrite=False):
    """Converts ``src`` into a Paddle model directory ``dst`` loadable with ``from_pretrained``.

    The result is written into a temporary directory beside ``dst`` and renamed into place at the end, so an
    interrupted conversion never leaves a half-written ``dst``.

    Returns:
        dict: a report with the architecture, the number of tensors and the transposed keys.

    Raises:
        FileExistsError: ``dst`` exists and ``overwrite`` is False.
    """
    import paddle

    from .modeling import model_class_for

    dst = os.path.abspath(dst)
    if os.path.exists(dst) and not overwrite:
        raise FileExistsError(f"destination {dst!r} exists; pass --overwrite to replace it")
    # A Paddle .pdparams source is a contest-port checkpoint (visualbert/conversion_contest.py); others are PyTorch.
    if is_paddle_source(src):
        source_format, (state, config, architecture) = "contest", read_contest_source(src, name)
        convert, table_for = convert_contest_state_dict, contest_conversion_table
    else:
        source_format, (state, config, architecture) = "pytorch", read_source(src, name)
        convert, table_for = convert_state_dict, conversion_table
    config.architectures = [architecture]
    model = model_class_for(architecture)(config)
    expected = {k: list(v.shape) for k, v in model.state_dict().items()}
    converted = convert(state, config, architecture, expected)
    model.set_state_dict({k: paddle.to_tensor(v) for k, v in converted.items()})

    return write_converted(model, dst, {
        "source": os.path.abspath(src),
        "name": name,
        "source_format": source_format,
        "architecture": architecture,
        "num_tensors": len(converted),
        "transposed": sorted(d for _, d, t in table_for(config, architecture) if t),
    })


def write_converted(model, dst, report):
    """Writes ``model`` (``save_pretrained``) and ``conversion.json`` (``report``) into a temporary directory beside
    ``dst`` and renames it into place: an interrupted conversion leaves nothing at ``dst``. Returns ``report``."""
    parent = os.path.dirname(dst)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".tmp-convert-", dir=parent)
    try:
        model.save_pretrained(tmp)
        with open(os.path.join(tmp, "conversion.json"), "w") as f:
            json.dump(report, f, indent=2)
        replace_dir(tmp, dst)
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
    return report


def checkpoint_names():
    """Names accepted by ``--name`` (for argparse choices and messages)."""
    from .configuration import PRETRAINED_CHECKPOINTS

    return list(PRETRAINED_CHECKPOINTS)


__all__ = ["conversion_table", "convert_state_dict", "read_source", "convert_checkpoint", "rename_original_keys",
           "IGNORED_SOURCE_KEYS", "ORIGINAL_RENAMES", "checkpoint_info", "checkpoint_names"]


# ================================================================================== VCR detector (detector.*)
# The original VCR checkpoints (vcr_fine_tuned.th, vcr_pre_train.th, vcr_coco_pre_train.th) hold the jointly
# trained SimpleDetector as detector.* keys. They convert into the VCR-from-images classes of vcr_model.py.
# torch BatchNorm2d running_mean/running_var are Paddle's _mean/_variance; num_batches_tracked has no
# counterpart (the momentum is fixed) and is checked to be a scalar and dropped; the two Linear weights are
# transposed; convolutions and the embedding are copied as they are.
_DETECTOR_BN = [("weight", "weight"), ("bias", "bias"), ("running_mean", "_mean"), ("running_var", "_variance")]


def _bn_entries(prefix):
    return [(f"{prefix}.{s}", f"{prefix}.{d}", False) for s, d in _DETECTOR_BN]


def _bottleneck_entries(prefix, has_downsample):
    out = []
    for i in (1, 2, 3):
        out.append((f"{prefix}.conv{i}.weight", f"{prefix}.conv{i}.weight", False))
        out += _bn_entries(f"{prefix}.bn{i}")
    if has_downsample:
        out.append((f"{prefix}.downsample.0.weight", f"{prefix}.downsample.0.weight", False))
        out += _bn_entries(f"{prefix}.downsample.1")
    return out


def detector_conversion_table(detector_config=None):
    """(original key without ``detector.``, Paddle key without ``detector.``, transpose) for SimpleDetector.

    Args:
        detector_config (DetectorConfig, optional): block counts and ``semantic``; default the released one.

    Returns:
        list[tuple[str, str, bool]]
    """
    from .detector import DetectorConfig

    cfg = detector_config or DetectorConfig()
    table = [("backbone.0.weight", "backbone.0.weight", False)] + _bn_entries("backbone.1")
    stages = [("backbone.4", cfg.blocks[0]), ("backbone.5", cfg.blocks[1]), ("backbone.6", cfg.blocks[2]),
              ("after_roi_align.0", cfg.blocks[3])]
    for prefix, blocks in stages:
        for j in range(blocks):
            table += _bottleneck_entries(f"{prefix}.{j}", has_downsample=(j == 0))
    if cfg.semantic:
        table += [("object_embed.weight", "object_embed.weight", False),
                  ("mask_upsample.weight", "mask_upsample.weight", False),
                  ("mask_upsample.bias", "mask_upsample.bias", False)]
    table += [("obj_downsample.1.weight", "obj_downsample.1.weight", True),
              ("obj_downsample.1.bias", "obj_downsample.1.bias", False),
              ("regularizing_predictor.weight", "regularizing_predictor.weight", True),
              ("regularizing_predictor.bias", "regularizing_predictor.bias", False)]
    return table


def convert_detector_state_dict(source, detector_config=None, expected_shapes=None):
    """Applies :func:`detector_conversion_table` to the ``detector.*`` part of an original state dict.

    Args:
        source (dict[str, np.ndarray]): keys WITH the ``detector.`` prefix (other keys are ignored).
        expected_shapes (dict[str, list[int]], optional): Paddle key (with ``detector.``) -> shape.

    Returns:
        dict[str, np.ndarray]: Paddle keys with the ``detector.`` prefix.

    Raises:
        KeyError: a missing detector key, or a detector key the table does not know (both named).
        ValueError: a shape mismatch (named), or a ``num_batches_tracked`` that is not a scalar.
    """
    prefix = "detector."
    table = [(prefix + s, prefix + d, t) for s, d, t in detector_conversion_table(detector_config)]
    detector = {k: v for k, v in source.items() if k.startswith(prefix)}
    tracked = [k for k in detector if k.endswith(".num_batches_tracked")]
    for key in tracked:
        if np.asarray(detector[key]).size != 1:
            raise ValueError(f"{key}: expected a scalar BatchNorm counter, got shape {list(np.shape(detector[key]))}")
    return apply_conversion_table(detector, table, "the detector", "the source", tracked, expected_shapes, prefix)


def convert_vcr_state_dict(source, config, architecture):
    """An original VCR state dict (``bert.*`` + ``detector.*``) -> the Paddle state dict of a VCR-from-images
    model (see :mod:`visualbert.vcr_model`), every key and shape checked against the model.

    Returns:
        tuple: (Paddle state dict, the built model with it loaded).
    """
    import paddle

    from .detector import DetectorConfig
    from .vcr_model import vcr_model_class

    cls = vcr_model_class(architecture)
    if cls is None:
        raise KeyError(f"{architecture!r} is not a VCR-from-images class")
    config.architectures = [architecture]
    detector_config = DetectorConfig.from_dict(config.detector)
    convert_detector_state_dict(source, detector_config)  # unknown / missing keys, before building a full model
    model = cls(config)
    expected = {k: list(v.shape) for k, v in model.state_dict().items()}
    detector_part = convert_detector_state_dict(source, detector_config, expected)
    head = "VisualBertForMultipleChoice" if architecture == "VisualBertForVCR" else "VisualBertForPreTraining"
    bert_source = rename_original_keys({k: v for k, v in source.items() if not k.startswith("detector.")})
    bert_part = convert_state_dict(bert_source, config, head,
                                   {k: v for k, v in expected.items() if not k.startswith("detector.")})
    converted = {**bert_part, **detector_part}
    model.set_state_dict({k: paddle.to_tensor(v) for k, v in converted.items()})
    return converted, model


def convert_vcr_checkpoint(src, dst, name=None, overwrite=False):
    """Converts a VCR checkpoint. An original ``.th`` with ``detector.*`` keys becomes a
    ``VisualBertForVCR`` / ``VisualBertForVCRPreTraining`` directory (answers from images); a source without
    detector weights (HF ``uclanlp/visualbert-vcr*`` directories) becomes the plain head class, and the report
    says that it needs precomputed 512-d region features.

    Returns:
        dict: the conversion report (``architecture``, ``num_tensors``, ``detector``: True/False, ``note``).
    """
    from .configuration import config_for_checkpoint
    from .vcr_model import VCR_CHECKPOINT_ARCHITECTURES

    dst = os.path.abspath(dst)
    if os.path.exists(dst) and not overwrite:
        raise FileExistsError(f"destination {dst!r} exists; pass --overwrite to replace it")
    if not os.path.exists(src):
        raise FileNotFoundError(f"source checkpoint {src!r} does not exist")
    raw = load_weights_file(src) if os.path.isfile(src) else None
    sibling = os.path.join(os.path.dirname(os.path.abspath(src)), CONFIG_NAME)
    config = VisualBertConfig.from_pretrained(sibling) if name is None and os.path.isfile(sibling) else None
    architecture = (config.architectures or [""])[0] if config is not None else None
    has_detector = raw is not None and any(k.startswith("detector.") for k in raw)
    if not has_detector or architecture in ("VisualBertForMultipleChoice", "VisualBertForPreTraining"):
        report = convert_checkpoint(src, dst, name=name, overwrite=overwrite)
        report["detector"] = False
        why = (f"{sibling} names {architecture}, so the detector.* weights were left out" if has_detector
               else f"{src} has no detector.* weights")
        report["note"] = f"{why}: {report['architecture']} reads precomputed 512-d region features, not images"
        return report
    if config is not None:  # a config.json beside the file (small or custom models)
        if architecture not in VCR_CHECKPOINT_ARCHITECTURES.values():
            raise ValueError(f"{sibling} names {architecture!r}, but {src} holds detector.* weights: expected one "
                             f"of {sorted(set(VCR_CHECKPOINT_ARCHITECTURES.values()))}")
    elif name in VCR_CHECKPOINT_ARCHITECTURES:
        architecture = VCR_CHECKPOINT_ARCHITECTURES[name]
        config = config_for_checkpoint(name)
    else:
        raise ValueError(f"{src} holds detector.* weights (a VCR checkpoint); pass --name, one of "
                         f"{', '.join(VCR_CHECKPOINT_ARCHITECTURES)}")
    converted, model = convert_vcr_state_dict(raw, config, architecture)
    return write_converted(model, dst, {
        "source": os.path.abspath(src),
        "name": name,
        "architecture": architecture,
        "num_tensors": len(converted),
        "detector": True,
        "transposed": sorted([d for _, d, t in conversion_table(config, "VisualBertForMultipleChoice"
                              if architecture == "VisualBertForVCR" else "VisualBertForPreTraining") if t]
                             + ["detector." + d for _, d, t in detector_conversion_table() if t]),
    })


__all__ += ["detector_conversion_table", "convert_detector_state_dict", "convert_vcr_state_dict",
            "convert_vcr_checkpoint"]
