"""The HF reference side of the parity checks, shared by ``compare/compare.py`` and the tests (which put this
directory on ``sys.path``): the HF reference model, running both frameworks and measuring the differences.

Needs ``torch`` and ``transformers``; it is not part of the installed package, and the Paddle model never imports
it. Inputs come from :func:`visualbert.inputs.make_inputs`.
"""

import numpy as np

from visualbert.configuration import VisualBertConfig
from visualbert.inputs import make_inputs  # noqa: F401  (re-exported: the callers build inputs and compare)

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

    from visualbert.conversion import convert_state_dict
    from visualbert.modeling import model_class_for

    model = model_class_for(architecture)(VisualBertConfig.from_dict(config.to_dict()))
    expected = {k: list(v.shape) for k, v in model.state_dict().items()}
    converted = convert_state_dict(hf_state_dict(hf_model), config, architecture, expected)
    model.set_state_dict({k: paddle.to_tensor(v) for k, v in converted.items()})
    model.eval()
    return model
