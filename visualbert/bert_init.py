"""Initialise VisualBERT from an HF BERT checkpoint (e.g. a local bert-base-uncased directory).

BERT's keys (``bert.embeddings.*``, ``bert.encoder.layer.{i}.*``, ``bert.pooler.*``, ``cls.predictions.*``,
``cls.seq_relationship.*``) are the VisualBERT ones with ``bert.`` for ``visual_bert.``, so the HF → Paddle
table of :mod:`visualbert.conversion` is reused (Linear weights transposed). The VisualBERT-only tables are
then set as the original release did: ``visual_token_type_embeddings`` / ``visual_position_embeddings``
copied from the text ones (:meth:`init_visual_tables_from_text`); ``visual_projection`` and any task head
stay randomly initialised. Nothing is downloaded.
"""

import json
import os

import numpy as np

from .conversion import conversion_table, hf_weights_file, load_weights_file

# VisualBERT weights that BERT does not have.
VISUAL_ONLY = ("embeddings.visual_token_type_embeddings.", "embeddings.visual_position_embeddings.",
               "embeddings.visual_projection.")
BERT_CONFIG_KEYS = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                    "hidden_act", "hidden_dropout_prob", "attention_probs_dropout_prob", "max_position_embeddings",
                    "type_vocab_size", "initializer_range", "layer_norm_eps")


def read_bert_config(bert_dir):
    """dict: the VisualBERT config fields found in an HF BERT ``config.json``."""
    path = os.path.join(bert_dir, "config.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"--bert_model {bert_dir!r} has no config.json")
    with open(path) as f:
        values = json.load(f)
    return {k: values[k] for k in BERT_CONFIG_KEYS if k in values}


def read_bert_state(bert_dir):
    """HF BERT weights as numpy arrays with ``gamma``/``beta`` renamed and the ``bert.`` prefix ensured."""
    path = hf_weights_file(bert_dir)
    if path is None:
        raise FileNotFoundError(f"--bert_model {bert_dir!r} has neither model.safetensors nor pytorch_model.bin")
    state = load_weights_file(path)
    out = {}
    bare = not any(k.startswith("bert.") for k in state)
    for key, value in state.items():
        key = key.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias")
        if bare and not key.startswith("cls."):
            key = "bert." + key
        out[key] = np.asarray(value, dtype=np.float32)
    return out


def bert_to_visualbert(state, config, architecture):
    """Maps BERT weights to the Paddle names of ``architecture``.

    Returns:
        tuple: (dict Paddle name → array, list of Paddle names left at their initialisation).

    Raises:
        KeyError: a backbone weight is missing from the BERT checkpoint.
    """
    out, left = {}, []
    for src, dst, transpose in conversion_table(config, architecture):
        backbone_key = src[len("visual_bert."):] if src.startswith("visual_bert.") else src
        if backbone_key.startswith(VISUAL_ONLY):
            left.append(dst)
            continue
        if src.startswith("cls.") or src.startswith("attention."):
            bert_key = src  # pretraining heads share names with BERT's; task heads do not exist there
        else:
            bert_key = "bert." + backbone_key
        if bert_key not in state:
            if src.startswith(("cls.", "attention.")):
                left.append(dst)
                continue
            raise KeyError(f"BERT checkpoint lacks {bert_key!r} (needed for {dst})")
        value = state[bert_key]
        out[dst] = np.ascontiguousarray(value.T) if transpose else value
    return out, left


def load_bert_weights(model, bert_dir):
    """Loads BERT weights into a VisualBERT model and copies the text tables to the visual ones.

    Returns:
        list[str]: the Paddle names left at their random initialisation (visual projection, task head).
    """
    state = read_bert_state(bert_dir)
    mapped, left = bert_to_visualbert(state, model.config, type(model).__name__)
    # The one loading path of the package: shape checks naming the key, and one summary of what stays random.
    model.load_weights(mapped, source=f"BERT weights in {bert_dir}")
    model.init_visual_tables_from_text()
    return left
