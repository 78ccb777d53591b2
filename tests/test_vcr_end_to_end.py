"""VCR from images end to end on the synthetic release: a few optimiser steps of each stage (VCR task
pre-training with the detector, Q->A and QA->R fine-tuning), then val predictions and the test split's 4 x 4."""

import os

import numpy as np
import paddle
import pytest

from visualbert.configuration import VisualBertConfig
from visualbert.data import Collator
from visualbert.data.synthetic_vcr import make_synthetic_vcr
from visualbert.data.vcr_images import VCRImageDataset
from visualbert.tokenizer import load_tokenizer
from visualbert.vcr_model import VisualBertForVCR, VisualBertForVCRPreTraining

DETECTOR = dict(base_width=8, blocks=[1, 1, 1, 1], final_dim=32)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    paths = make_synthetic_vcr(str(tmp_path_factory.mktemp("vcr")), lines_per_split=(4, 2, 2), seed=3)
    return paths, load_tokenizer()


def _config(architecture, **overrides):
    values = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                  visual_embedding_dim=32, max_position_embeddings=128, architectures=[architecture],
                  detector=DETECTOR, cnn_loss_ratio=0.5)
    values.update(overrides)
    return VisualBertConfig(**values)


def _train(model, dataset, steps=2, batch_size=2):
    collate = Collator()
    optimizer = paddle.optimizer.AdamW(learning_rate=1e-3, parameters=model.parameters())
    before = {k: v.numpy().copy() for k, v in model.state_dict().items()}
    model.train()
    losses = []
    for step in range(steps):
        batch = collate([dataset[(step * batch_size + i) % len(dataset)] for i in range(batch_size)])
        out = model(**{k: v for k, v in batch.items() if isinstance(v, paddle.Tensor)})
        assert np.isfinite(float(out.loss)) and float(out.cnn_regularization_loss) > 0
        out.loss.backward()
        optimizer.step()
        optimizer.clear_grad()
        losses.append(float(out.loss))
    after = model.state_dict()
    changed = {k for k in before if not np.array_equal(before[k], after[k].numpy())}
    return losses, changed


def _predict(model, dataset, batch_size=2):
    collate = Collator()
    model.eval()
    logits, labels = [], []
    with paddle.no_grad():
        for start in range(0, len(dataset), batch_size):
            samples = [dataset[i] for i in range(start, min(len(dataset), start + batch_size))]
            batch = collate(samples)
            out = model(**{k: v for k, v in batch.items() if isinstance(v, paddle.Tensor) and k != "labels"})
            logits.append(out.logits.numpy())
            labels += [int(s["labels"]) for s in samples if "labels" in s]
    return np.concatenate(logits), np.array(labels)


def test_pretraining_then_fine_tuning_then_prediction(setup, tmp_path):
    paths, tok = setup
    # VCR task pre-training (pre-train.json): complete_shuffle, pretraining_include_qa_and_qar, frozen backbone.
    pre = VisualBertForVCRPreTraining(_config("VisualBertForVCRPreTraining"))
    pre.freeze_detector()
    pre_data = VCRImageDataset(paths["train"], paths["image_dir"], tok, complete_shuffle=True, include_qa_and_qar=True,
                               pretraining=True, train=True)
    _, changed = _train(pre, pre_data)
    assert not any(k.startswith("detector.backbone.") and not k.endswith(("_mean", "_variance")) for k in changed)
    assert "detector.after_roi_align.0.0.conv1.weight" in changed and "visual_bert.encoder.layer.0.output.dense.weight" in changed
    pre.save_pretrained(str(tmp_path / "pre"))

    # Fine-tuning (fine-tune-qa.json / fine-tune-qar.json: freeze_detector false) from the pre-trained weights.
    for mode in ("qa", "qar"):
        model, info = VisualBertForVCR.from_pretrained(str(tmp_path / "pre"), output_loading_info=True,
                                                       architectures=["VisualBertForVCR"])
        assert info["missing_keys"] == ["cls.bias", "cls.weight"]  # only the new multiple-choice head
        train = VCRImageDataset(paths["train"], paths["image_dir"], tok, mode=mode, train=True)
        losses, changed = _train(model, train)
        assert "detector.backbone.0.weight" in changed and "cls.weight" in changed
        assert "detector.backbone.1._mean" in changed  # BatchNorm running statistics move when not frozen
        val = VCRImageDataset(paths["val"], paths["image_dir"], tok, mode=mode)
        logits, labels = _predict(model, val)
        assert logits.shape == (len(val), 4) and np.isfinite(logits).all() and len(labels) == len(val)

    # Test split: Q->A, then QA->R conditioned on each of the 4 answers -> [N, 4, 4] for a Q->AR submission.
    qa_test = VCRImageDataset(paths["test"], paths["image_dir"], tok, mode="qa")
    qar_test = VCRImageDataset(paths["test"], paths["image_dir"], tok, mode="qar", expand_answers=True)
    answer_logits, _ = _predict(model, qa_test)
    rationale_logits, _ = _predict(model, qar_test)
    assert answer_logits.shape == (2, 4) and rationale_logits.reshape(2, 4, 4).shape == (2, 4, 4)
    assert [qar_test[i]["conditioned_answer"] for i in range(8)] == [0, 1, 2, 3] * 2


def test_leaderboard_csv_layout(tmp_path):
    import csv

    from visualbert.vcr_submission import write_leaderboard_csv

    answer = np.array([[0.0, 0.0, 0.0, np.log(5.0)], [1.0, 1.0, 1.0, 1.0]])
    rationale = np.zeros((8, 4))
    rationale[5] = [np.log(3.0), 0, 0, 0]  # question 1, conditioned on answer 1
    write_leaderboard_csv(str(tmp_path / "test.csv"), ["test-0", "test-1"], answer, rationale)
    with open(tmp_path / "test.csv") as f:
        rows = list(csv.reader(f))
    assert rows[0][:6] == ["annot_id", "answer_0", "answer_1", "answer_2", "answer_3", "rationale_conditioned_on_a0_0"]
    assert rows[0][-1] == "rationale_conditioned_on_a3_3" and len(rows[0]) == 21
    assert rows[1][0] == "test-0" and abs(float(rows[1][4]) - 5 / 8) < 1e-12 and abs(float(rows[1][1]) - 1 / 8) < 1e-12
    header = rows[0]
    assert abs(float(rows[2][header.index("rationale_conditioned_on_a1_0")]) - 0.5) < 1e-12
    assert abs(float(rows[2][header.index("rationale_conditioned_on_a1_1")]) - 1 / 6) < 1e-12


def test_cached_detector_features_give_the_same_logits(setup, tmp_path):
    import subprocess
    import sys

    from visualbert.modeling import VisualBertForMultipleChoice

    paths, tok = setup
    paddle.seed(0)
    model = VisualBertForVCR(_config("VisualBertForVCR"))
    model.save_pretrained(str(tmp_path / "vcr"))
    tool = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools",
                        "cache_vcr_detector_features.py")
    result = subprocess.run([sys.executable, tool, "--model_dir", str(tmp_path / "vcr"), "--annotations", paths["val"],
                             "--images", paths["image_dir"], "--out", str(tmp_path / "cache"), "--batch_size", "2"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    from_images, labels = _predict(model, VCRImageDataset(paths["val"], paths["image_dir"], tok, mode="qar"))
    plain, info = VisualBertForMultipleChoice.from_pretrained(str(tmp_path / "vcr"), output_loading_info=True)
    assert not info["missing_keys"] and all(k.startswith("detector.") for k in info["unexpected_keys"])
    cached = VCRImageDataset(paths["val"], paths["image_dir"], tok, mode="qar", features=str(tmp_path / "cache"))
    assert "images" not in cached[0] and cached[0]["visual_embeds"].shape[1] == 32
    from_cache, cached_labels = _predict(plain, cached)
    np.testing.assert_allclose(from_cache, from_images, rtol=1e-5, atol=1e-6)
    assert (labels == cached_labels).all()

    result = subprocess.run([sys.executable, tool, "--model_dir", str(tmp_path / "missing"), "--annotations",
                             paths["val"], "--images", paths["image_dir"], "--out", str(tmp_path / "c2")],
                            capture_output=True, text=True)
    assert result.returncode == 2 and "missing" in result.stderr and "Traceback" not in result.stderr
