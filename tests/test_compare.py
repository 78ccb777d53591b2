"""compare/compare.py: the one parity script for all nine checkpoint names."""

import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMPARE = os.path.join(REPO, "compare", "compare.py")
sys.path.insert(0, os.path.join(REPO, "compare"))

import compare  # noqa: E402

TINY = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128)


@pytest.mark.parametrize("name", ["visualbert-vqa-pre", "visualbert-vqa", "visualbert-nlvr2", "visualbert-vcr"])
def test_every_head_family_passes_at_tiny_size(name):
    report = compare.compare_checkpoint(name, seed=1, config_overrides=TINY)
    assert report["ok"], report["outputs"]
    assert "loss" in report["outputs"]
    if name == "visualbert-vcr":
        assert report["inputs"]["image_text_alignment"][:2] == [2, 4]  # batch 2 x 4 choices
    if name == "visualbert-nlvr2":
        assert report["config"]["visual_embedding_dim"] == 1024


def test_full_size_cli_writes_a_report(tmp_path):
    """One forward-only check at the real size (BERT-base, 1024-d regions, 2 classes)."""
    result = subprocess.run([sys.executable, COMPARE, "--name", "visualbert-nlvr2", "--report_dir", str(tmp_path)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((tmp_path / "visualbert-nlvr2.json").read_text())
    assert report["config"]["hidden_size"] == 768 and report["config"]["num_hidden_layers"] == 12
    assert report["ok"] and report["outputs"]["logits"]["max_abs_diff"] <= 1e-5
    assert report["inputs"]["visual_token_type_ids"] == [3, 72]
    assert "[OK] visualbert-nlvr2" in result.stdout


def test_unknown_name_is_rejected():
    result = subprocess.run([sys.executable, COMPARE, "--name", "visualbert-gqa"], capture_output=True, text=True)
    assert result.returncode == 2 and "unknown checkpoint name" in result.stderr


def test_above_tolerance_fails(monkeypatch):
    """A Paddle output off by 2e-5 (above the 1e-5 task tolerance) must fail the report."""
    import parity

    real_run_paddle = parity.run_paddle

    def off_by_a_little(*args):
        out = real_run_paddle(*args)
        out["logits"] = out["logits"] + 2e-5
        return out

    monkeypatch.setattr(parity, "run_paddle", off_by_a_little)
    report = compare.compare_checkpoint("visualbert-nlvr2", seed=2, config_overrides=TINY)
    assert not report["ok"] and not report["outputs"]["logits"]["ok"] and report["outputs"]["loss"]["ok"]
