"""R@K, the upper bound, per-type values, prediction rows and baselines of Flickr30K grounding."""

import importlib
import json
import os
import sys
import types

import numpy as np
import pytest

# Loaded as in test_metrics.py, without visualbert/__init__.py: metrics.py must stay importable without paddle.
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_PURE = types.ModuleType("visualbert_pure")
_PURE.__path__ = [os.path.join(_ROOT, "visualbert")]
sys.modules.setdefault("visualbert_pure", _PURE)
_M = importlib.import_module("visualbert_pure.metrics")
GroundingEvaluator = _M.GroundingEvaluator
grounding_prediction_records = _M.grounding_prediction_records
largest_box_scores = _M.largest_box_scores
random_box_scores = _M.random_box_scores
write_grounding_predictions = _M.write_grounding_predictions


def test_recall_hand_computed_with_a_phrase_without_positive():
    scores = np.array([[0.1, 0.9, 0.3, 0.2],    # positive ranked 1st
                       [0.9, 0.1, 0.3, 0.2],    # positive (index 2) ranked 2nd
                       [0.5, 0.4, 0.3, 0.2]])   # no positive proposal
    targets = np.array([[0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]], dtype=np.float32)
    ev = GroundingEvaluator(ks=(1, 2, 10))
    ev.add(scores, targets, types=[["people"], ["people", "other"], ["other"]])
    out = ev.result()
    assert out["R@1"] == pytest.approx(1 / 3) and out["R@2"] == pytest.approx(2 / 3)
    assert out["R@10"] == pytest.approx(2 / 3)
    assert out["upper_bound"] == pytest.approx(2 / 3)
    assert out["phrases"] == 3 and out["phrases_with_positive"] == 2
    assert out["per_type"]["people"]["R@1"] == pytest.approx(0.5) and out["per_type"]["people"]["phrases"] == 2
    assert out["per_type"]["other"]["R@2"] == pytest.approx(0.5) and out["per_type"]["other"]["upper_bound"] == 0.5


def test_padding_regions_and_phrases_never_count():
    # region 3 is padding (mask 0) with the highest score; phrase 1 of example 0 is padding (position -1)
    scores = np.array([[[0.1, 0.2, 0.3, 9.0], [5.0, 0, 0, 0]]])
    targets = np.array([[[0, 0, 1, 0], [1, 0, 0, 0]]], dtype=np.float32)
    ev = GroundingEvaluator(ks=(1,))
    ev.add_batch(scores, targets, np.array([[4, -1]]), np.array([[1, 1, 1, 0]]))
    assert ev.result() == {"R@1": 1.0, "upper_bound": 1.0, "phrases": 1, "phrases_with_positive": 1, "per_type": {}}


def _original_recall(logits, labels, recall):
    """The original's compute_score_with_logits_flickr (pytorch_pretrained_bert/modeling.py) in torch."""
    import torch

    logits, labels = torch.tensor(logits), torch.tensor(labels)
    labels_mask = (labels != 0.0).float()
    upper = labels.sum(-1).view(-1).sum(-1)
    labels = torch.ones_like(labels) * labels_mask
    if recall != 1:
        top = logits.topk(k=recall, dim=-1)[1].numpy()
        hits = sum(labels.numpy()[i][j][top[i][j]].sum() != 0 for i in range(top.shape[0]) for j in range(top.shape[1]))
        return float(hits), float(upper)
    index = torch.max(logits, -1)[1].unsqueeze(-1)
    return float(torch.gather(labels, 2, index).sum()), float(upper)


def test_recall_matches_the_original_on_random_batches():
    rng = np.random.default_rng(3)
    B, P, R = 4, 5, 12
    logits = rng.standard_normal((B, P, R))
    positive = rng.random((B, P, R)) < 0.15
    targets = np.where(positive, 1.0, 0.0) / np.maximum(positive.sum(-1, keepdims=True), 1)
    ev = GroundingEvaluator()
    ev.add_batch(logits, targets, np.zeros((B, P), dtype=np.int64), np.ones((B, R), dtype=np.int64))
    out = ev.result()
    for k in (1, 5, 10):
        hits, upper = _original_recall(logits, targets, k)
        assert out[f"R@{k}"] == pytest.approx(hits / (B * P))
        assert out["upper_bound"] == pytest.approx(upper / (B * P))


def test_prediction_records_and_jsonl(tmp_path):
    boxes = np.array([[0, 0, 10, 10], [0, 0, 50, 50], [5, 5, 20, 20]], dtype=np.float32)
    scores = np.array([[0.0, 2.0, 1.0]])
    targets = np.array([[0, 0, 1.0]])
    phrases = [{"text": "a dog", "chain_id": 3, "types": ["animals"], "boxes": [[5, 5, 20, 20]]}]
    rows = grounding_prediction_records(scores, targets, boxes, phrases, "42", 1, top=2)
    assert rows[0]["boxes"] == [[0, 0, 50, 50], [5, 5, 20, 20]] and rows[0]["positive"] == [False, True]
    expected = np.exp([2.0, 1.0]) / np.exp([0.0, 2.0, 1.0]).sum()
    np.testing.assert_allclose(rows[0]["scores"], expected, atol=1e-6)
    assert rows[0]["has_positive"] and rows[0]["phrase"] == "a dog" and rows[0]["image_id"] == "42"
    path = tmp_path / "predictions.jsonl"
    write_grounding_predictions(str(path), rows + rows)
    lines = path.read_text().splitlines()
    assert len(lines) == 2 and json.loads(lines[1])["chain_id"] == 3


def test_baselines():
    boxes = np.array([[0, 0, 10, 10], [0, 0, 50, 50], [5, 5, 20, 20]])
    targets = np.array([[0, 1.0, 0], [1.0, 0, 0]])
    ev = GroundingEvaluator(ks=(1,))
    ev.add(largest_box_scores(boxes, 2), targets)
    assert ev.result()["R@1"] == 0.5
    rng = np.random.default_rng(0)
    first = [int(np.argmax(random_box_scores(3, 1, rng))) for _ in range(3000)]
    assert np.bincount(first, minlength=3).min() > 900  # uniform over the proposals
