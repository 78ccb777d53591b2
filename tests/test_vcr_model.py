"""The whole VCR model (detector + VisualBertForMultipleChoice) converted from an original-format .th (bert.* +
detector.* keys) against the torch reference: the detector transcription + HF VisualBertForMultipleChoice."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from parity import make_hf_model
from test_conversion import _original_names
from vcr_torch_reference import TorchSimpleDetector, randomize_batchnorm

from visualbert import load_pretrained
from visualbert.configuration import VisualBertConfig
from visualbert.conversion import convert_vcr_checkpoint
from visualbert.vcr_model import VisualBertForVCR

CONVERT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "checkpoint", "convert.py")
DETECTOR = dict(base_width=8, blocks=(3, 4, 6, 3), final_dim=32)


def tiny_vcr_config(**overrides):
    values = dict(vocab_size=200, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48,
                  visual_embedding_dim=32, max_position_embeddings=64, num_labels=2,
                  architectures=["VisualBertForVCR"], detector=dict(DETECTOR, blocks=list(DETECTOR["blocks"])))
    values.update(overrides)
    return VisualBertConfig(**values)


@pytest.fixture(scope="module")
def original_vcr(tmp_path_factory):
    """A synthetic vcr_fine_tuned.th (original names, detector.* with BatchNorm counters) + its torch reference."""
    root = tmp_path_factory.mktemp("vcr_th")
    config = tiny_vcr_config()
    torch.manual_seed(0)
    detector = randomize_batchnorm(TorchSimpleDetector(**DETECTOR), torch.Generator().manual_seed(2)).eval()
    hf_model = make_hf_model(config, "VisualBertForMultipleChoice", seed=4)
    state = _original_names({k: v.detach().numpy() for k, v in hf_model.state_dict().items()})
    state.update({"detector." + k: v.clone() for k, v in detector.state_dict().items()})
    assert "detector.backbone.1.num_batches_tracked" in state and "detector.after_roi_align.0.2.bn3.running_var" in state
    torch.save(state, str(root / "vcr_fine_tuned.th"))
    config.save_pretrained(str(root))
    return root, config, detector, hf_model, state


def _inputs(seed=0, batch=2, choices=4, text_len=9, height=64, width=96):
    rng = np.random.default_rng(seed)
    images = rng.standard_normal((batch, 3, height, width)).astype("float32")
    boxes = np.full((batch, 3, 4), -1.0, dtype="float32")
    boxes[:, 0] = [0, 0, width, height]
    boxes[0, 1:] = [[4.0, 6.0, 50.0, 60.0], [30.0, 2.0, 90.0, 40.0]]
    boxes[1, 1] = [10.0, 10.0, 40.0, 30.0]
    box_mask = (boxes >= 0).all(-1).astype("int64")
    objects = np.array([[0, 1, 3], [0, 1, 0]], dtype="int64")
    segms = (rng.random((batch, 3, 14, 14)) > 0.4).astype("float32")
    lengths = rng.integers(5, text_len + 1, size=(batch, choices))
    input_ids = rng.integers(5, 200, size=(batch, choices, text_len)).astype("int64")
    attention_mask = (np.arange(text_len)[None, None] < lengths[..., None]).astype("int64")
    input_ids *= attention_mask
    token_type_ids = (np.arange(text_len)[None, None] >= 4).astype("int64") * attention_mask
    alignment = np.full((batch, choices, 3, 2), -1, dtype="int64")
    alignment[0, :, 1, 0] = 2
    alignment[0, :, 2, :] = [1, 3]
    alignment[1, :2, 1, 0] = 3
    labels = np.array([2, 0], dtype="int64")
    return dict(images=images, boxes=boxes, box_mask=box_mask, objects=objects, segms=segms, input_ids=input_ids,
                attention_mask=attention_mask, token_type_ids=token_type_ids, image_text_alignment=alignment,
                labels=labels)


def _torch_reference(detector, hf_model, inputs):
    t = {k: torch.from_numpy(v) for k, v in inputs.items()}
    with torch.no_grad():
        det = detector(t["images"], t["boxes"], t["box_mask"], t["objects"], t["segms"])
        batch, choices = t["input_ids"].shape[:2]
        regions = det["obj_reps"].unsqueeze(1).expand(batch, choices, *det["obj_reps"].shape[1:]).contiguous()
        mask = t["box_mask"].unsqueeze(1).expand(batch, choices, t["box_mask"].shape[1]).contiguous()
        out = hf_model(input_ids=t["input_ids"], attention_mask=t["attention_mask"], token_type_ids=t["token_type_ids"],
                       visual_embeds=regions, visual_attention_mask=mask, visual_token_type_ids=torch.zeros_like(mask),
                       image_text_alignment=t["image_text_alignment"].flatten(0, 1), labels=t["labels"],
                       return_dict=True)
    return out.logits.numpy(), float(out.loss), float(det["cnn_regularization_loss"])


def _paddle(model, inputs):
    import paddle

    out = model(**{k: paddle.to_tensor(v) for k, v in inputs.items()})
    return out.logits.numpy(), float(out.loss), float(out.cnn_regularization_loss)


def test_converted_vcr_model_matches_detector_plus_hf(original_vcr, tmp_path):
    root, config, detector, hf_model, _ = original_vcr
    report = convert_vcr_checkpoint(str(root / "vcr_fine_tuned.th"), str(tmp_path / "pd"))
    assert report["detector"] and report["architecture"] == "VisualBertForVCR"
    model = load_pretrained(str(tmp_path / "pd"))
    assert isinstance(model, VisualBertForVCR) and not model.training
    for seed, size in ((0, (64, 96)), (1, (96, 80))):
        inputs = _inputs(seed, height=size[0], width=size[1])
        ref_logits, ref_loss, ref_cnn = _torch_reference(detector, hf_model, inputs)
        logits, loss, cnn = _paddle(model, inputs)
        assert np.abs(logits - ref_logits).max() <= 1e-4 * np.abs(ref_logits).max()
        assert abs(loss - ref_loss) < 1e-5 and abs(cnn - ref_cnn) < 1e-5
    # cnn_loss_ratio adds ratio x the detector's classification loss (the original's cnn_regularization_loss).
    weighted = load_pretrained(str(tmp_path / "pd"), cnn_loss_ratio=0.5)
    _, loss_weighted, _ = _paddle(weighted, inputs)
    assert abs(loss_weighted - (ref_loss + 0.5 * ref_cnn)) < 1e-5


def test_missing_or_misshapen_detector_key_is_named(original_vcr, tmp_path):
    root, _, _, _, state = original_vcr
    (tmp_path / "a").mkdir()
    missing = {k: v for k, v in state.items() if k != "detector.backbone.6.3.conv2.weight"}
    torch.save(missing, str(tmp_path / "a" / "vcr.th"))
    tiny_vcr_config().save_pretrained(str(tmp_path / "a"))
    with pytest.raises(KeyError, match=r"detector\.backbone\.6\.3\.conv2\.weight"):
        convert_vcr_checkpoint(str(tmp_path / "a" / "vcr.th"), str(tmp_path / "out"))
    (tmp_path / "b").mkdir()
    bad = dict(state)
    bad["detector.regularizing_predictor.weight"] = torch.zeros(80, 256)
    torch.save(bad, str(tmp_path / "b" / "vcr.th"))
    tiny_vcr_config().save_pretrained(str(tmp_path / "b"))
    result = subprocess.run([sys.executable, CONVERT, "--src", str(tmp_path / "b" / "vcr.th"), "--dst",
                             str(tmp_path / "out")], capture_output=True, text=True)
    assert result.returncode == 2 and "detector.regularizing_predictor.weight" in result.stderr, result.stderr
    assert not (tmp_path / "out").exists()


def test_hf_vcr_directory_without_detector_is_accepted_and_says_so(tmp_path):
    config = tiny_vcr_config(architectures=["VisualBertForMultipleChoice"], detector=None)
    hf_model = make_hf_model(config, "VisualBertForMultipleChoice", seed=1)
    hf_model.save_pretrained(str(tmp_path / "hf"))
    result = subprocess.run([sys.executable, CONVERT, "--src", str(tmp_path / "hf"), "--dst", str(tmp_path / "pd")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "no detector.* weights" in result.stdout and "precomputed" in result.stdout
    with open(tmp_path / "pd" / "config.json") as f:
        assert json.load(f)["architectures"] == ["VisualBertForMultipleChoice"]
