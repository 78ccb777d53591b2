"""Parity machinery shared by ``compare/compare.py`` and the tests: the HF reference model, realistic
random inputs, running both frameworks and measuring the differences.

Needs ``torch`` and ``transformers`` (the reference side); the Paddle model never imports this module.
"""

import numpy as np

from .configuration import VisualBertConfig
from .constants import ALIGNMENT_PAD, IGNORE_INDEX

CLS_ID, SEP_ID, MASK_ID, PAD_ID = 101, 102, 103, 0

# Outputs and their tolerances: (max |Δ|, mean |Δ|). MLM logits accumulate a 768×30522 product in float32.
TOLERANCES = {
    "prediction_logits": (5e-4, 5e-5),
    "default": (1e-5, None),
}


def tolerance_for(output_name):
    return TOLERANCES.get(output_name, TOLERANCES["default"])


def hf_config(config):
    """The transformers ``VisualBertConfig`` with the same fields."""
    import transformers

    values = config.to_dict()
    values.pop("model_type", None)
    values.pop("architectures", None)
    num_labels = values.pop("num_labels")
    return transformers.VisualBertConfig(num_labels=num_labels, **values)


def make_hf_model(config, architecture, seed=0):
    """An HF reference model with random weights, every parameter (LayerNorms and biases included) perturbed
    so that a swapped, untransposed or dropped tensor cannot go unnoticed. In eval mode.

    Returns:
        transformers.PreTrainedModel
    """
    import torch
    import transformers

    torch.manual_seed(seed)
    model = getattr(transformers, architecture)(hf_config(config))
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("decoder.weight"):
                continue  # tied to the word embeddings
            noise = torch.randn(param.shape, generator=generator) * config.initializer_range
            param.add_(noise)
    model.eval()
    return model


def hf_state_dict(model):
    """HF model weights as float32 numpy arrays (HF names, tied aliases included as HF saves them)."""
    return {k: v.detach().cpu().float().numpy() for k, v in model.state_dict().items()}


def make_inputs(config, architecture, batch_size=3, text_len=16, num_regions=10, num_choices=4, alignment_slots=3,
                num_phrases=4, seed=0, with_labels=True):
    """Random but realistic inputs as numpy arrays, named like the model arguments.

    Texts have different lengths (right-padded, ``[CLS] ... [SEP]``, VQA ``... [MASK] [SEP]``), examples have
    different numbers of valid regions (visual mask with zeros), NLVR2 (2 labels, pairs of images) uses visual
    token types 0/1, multiple choice has ``num_choices`` sequences and ``image_text_alignment``.
    """
    rng = np.random.RandomState(seed)
    multiple_choice = architecture == "VisualBertForMultipleChoice"
    rows = batch_size * num_choices if multiple_choice else batch_size

    lengths = rng.randint(max(4, text_len // 2), text_len + 1, size=rows)
    lengths[0] = text_len  # at least one unpadded row
    input_ids = np.full((rows, text_len), PAD_ID, dtype=np.int64)
    token_type_ids = np.zeros((rows, text_len), dtype=np.int64)
    attention_mask = np.zeros((rows, text_len), dtype=np.int64)
    for r, n in enumerate(lengths):
        input_ids[r, :n] = rng.randint(1000, config.vocab_size, size=n)
        input_ids[r, 0], input_ids[r, n - 1] = CLS_ID, SEP_ID
        if architecture == "VisualBertForQuestionAnswering":
            input_ids[r, n - 2] = MASK_ID
        attention_mask[r, :n] = 1
        if architecture in ("VisualBertForPreTraining", "VisualBertForMultipleChoice"):
            second = rng.randint(2, n - 1)
            token_type_ids[r, second:n] = 1  # "[CLS] A [SEP] B [SEP]" pairs

    visual_embeds = rng.randn(rows, num_regions, config.visual_embedding_dim).astype(np.float32)
    valid_regions = rng.randint(max(1, num_regions // 2), num_regions + 1, size=rows)
    valid_regions[-1] = num_regions
    visual_attention_mask = (np.arange(num_regions)[None, :] < valid_regions[:, None]).astype(np.int64)
    visual_embeds *= visual_attention_mask[:, :, None]  # padded regions are zero vectors, as a collator makes them
    visual_token_type_ids = np.zeros((rows, num_regions), dtype=np.int64)
    if architecture == "VisualBertForVisualReasoning" or (config.visual_embedding_dim == 1024 and architecture == "VisualBertForPreTraining"):
        visual_token_type_ids[:, num_regions // 2:] = 1  # left image 0, right image 1

    inputs = dict(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                  visual_embeds=visual_embeds, visual_attention_mask=visual_attention_mask,
                  visual_token_type_ids=visual_token_type_ids)

    if multiple_choice:
        alignment = rng.randint(1, text_len - 1, size=(rows, num_regions, alignment_slots)).astype(np.int64)
        alignment[rng.rand(*alignment.shape) < 0.4] = ALIGNMENT_PAD
        alignment[:, 0, :] = ALIGNMENT_PAD  # a region with no alignment at all
        inputs["image_text_alignment"] = alignment
        inputs = {k: v.reshape((batch_size, num_choices) + v.shape[1:]) for k, v in inputs.items()}

    if architecture == "VisualBertForRegionToPhraseAlignment":
        positions = rng.randint(1, text_len - 1, size=(batch_size, num_phrases)).astype(np.int64)
        positions[:, -1] = ALIGNMENT_PAD
        inputs["region_to_phrase_position"] = positions

    if not with_labels:
        return inputs
    if architecture == "VisualBertForPreTraining":
        labels = np.full((batch_size, text_len + num_regions), IGNORE_INDEX, dtype=np.int64)
        chosen = (rng.rand(batch_size, text_len) < 0.3) & (attention_mask == 1)
        chosen[:, 1] = True
        labels[:, :text_len][chosen] = rng.randint(0, config.vocab_size, size=int(chosen.sum()))
        inputs["labels"] = labels
        inputs["sentence_image_labels"] = rng.randint(0, 2, size=batch_size).astype(np.int64)
    elif architecture == "VisualBertForQuestionAnswering":
        scores = np.zeros((batch_size, config.num_labels), dtype=np.float32)
        for b in range(batch_size):
            picks = rng.choice(config.num_labels, size=3, replace=False)
            scores[b, picks] = [1.0, 0.6, 0.3]  # min(0.3 * count, 1) for counts 4, 2, 1
        inputs["labels"] = scores
    elif architecture in ("VisualBertForVisualReasoning",):
        inputs["labels"] = rng.randint(0, config.num_labels, size=batch_size).astype(np.int64)
    elif architecture == "VisualBertForMultipleChoice":
        inputs["labels"] = rng.randint(0, num_choices, size=batch_size).astype(np.int64)
    elif architecture == "VisualBertForRegionToPhraseAlignment":
        target = rng.rand(batch_size, num_phrases, num_regions).astype(np.float32)
        target *= visual_attention_mask[:, None, :]  # no mass on padded regions
        inputs["labels"] = target / target.sum(-1, keepdims=True)
    return inputs


def run_hf(model, inputs, architecture):
    """Runs the HF model; returns float64 numpy outputs named as in the Paddle model.

    Differences handled here (and only here): HF's multiple-choice head does not flatten
    ``image_text_alignment`` with the choices, so it is passed already flattened; HF's VQA head returns the
    log-softmax of the logits when labels are given, so it runs once more without labels for raw logits.
    """
    import torch

    feed = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in inputs.items()}
    if architecture == "VisualBertForMultipleChoice" and "image_text_alignment" in feed:
        alignment = feed["image_text_alignment"]
        feed["image_text_alignment"] = alignment.reshape((-1,) + tuple(alignment.shape[2:]))
    out = {}
    with torch.no_grad():
        result = model(**feed, return_dict=True)
        if architecture == "VisualBertForQuestionAnswering" and "labels" in feed:
            out["log_softmax_logits"] = result.logits
            result_raw = model(**{k: v for k, v in feed.items() if k != "labels"}, return_dict=True)
            out["logits"] = result_raw.logits
        for name in ("loss", "logits", "prediction_logits", "seq_relationship_logits", "last_hidden_state", "pooler_output"):
            value = getattr(result, name, None)
            if value is not None and name not in out:
                out[name] = value
    return {k: v.double().numpy() for k, v in out.items()}


def run_paddle(model, inputs, architecture):
    """Runs the Paddle model; returns float64 numpy outputs with the same names as :func:`run_hf`."""
    import paddle
    import paddle.nn.functional as F

    feed = {k: paddle.to_tensor(v) for k, v in inputs.items()}
    out = {}
    with paddle.no_grad():
        result = model(**feed)
        for name in ("loss", "logits", "prediction_logits", "seq_relationship_logits", "last_hidden_state", "pooler_output"):
            if result.get(name) is not None:
                out[name] = result[name]
        if architecture == "VisualBertForQuestionAnswering" and "labels" in feed:
            out["log_softmax_logits"] = F.log_softmax(result["logits"], axis=-1)
    return {k: v.astype("float64").numpy() for k, v in out.items()}


def diff_outputs(ours, reference):
    """Max and mean |Δ| per output present in both; raises if the output sets or shapes differ."""
    if set(ours) != set(reference):
        raise AssertionError(f"outputs differ: paddle has {sorted(ours)}, reference has {sorted(reference)}")
    report = {}
    for name in sorted(reference):
        a, b = ours[name], reference[name]
        if a.shape != b.shape:
            raise AssertionError(f"{name}: paddle shape {a.shape} != reference shape {b.shape}")
        delta = np.abs(a - b)
        max_tol, mean_tol = tolerance_for(name)
        report[name] = {
            "shape": list(a.shape),
            "max_abs_diff": float(delta.max()) if delta.size else 0.0,
            "mean_abs_diff": float(delta.mean()) if delta.size else 0.0,
            "max_tolerance": max_tol,
            "mean_tolerance": mean_tol,
        }
        report[name]["ok"] = report[name]["max_abs_diff"] <= max_tol and (
            mean_tol is None or report[name]["mean_abs_diff"] <= mean_tol)
    return report


def paddle_from_hf(hf_model, config, architecture):
    """The Paddle model with the HF model's weights, converted through the conversion table (in memory)."""
    import paddle

    from .conversion import convert_state_dict
    from .modeling import model_class_for

    model = model_class_for(architecture)(VisualBertConfig.from_dict(config.to_dict()))
    expected = {k: list(v.shape) for k, v in model.state_dict().items()}
    converted = convert_state_dict(hf_state_dict(hf_model), config, architecture, expected)
    model.set_state_dict({k: paddle.to_tensor(v) for k, v in converted.items()})
    model.eval()
    return model
