"""checkpoint/convert.py: the table's invariants, every source format, and every bad input."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import tiny_config as shared_tiny_config
from parity import diff_outputs, hf_state_dict, make_hf_model, paddle_from_hf, run_hf, run_paddle

from visualbert import load_pretrained
from visualbert.configuration import PRETRAINED_CHECKPOINTS, VisualBertConfig
from visualbert.conversion import (
    IGNORED_SOURCE_KEYS,
    conversion_table,
    convert_checkpoint,
    convert_state_dict,
)
from visualbert.inputs import make_inputs
from visualbert.modeling import model_class_for

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONVERT = os.path.join(REPO, "checkpoint", "convert.py")
HEADS = ["VisualBertModel", "VisualBertForPreTraining", "VisualBertForQuestionAnswering",
         "VisualBertForVisualReasoning", "VisualBertForMultipleChoice", "VisualBertForRegionToPhraseAlignment"]


def tiny_config(architecture="VisualBertForQuestionAnswering", **overrides):
    # hidden == intermediate == visual width: every Linear weight is square, so only the values (never a
    # shape error) can reveal a missing transpose.
    values = dict(hidden_size=32, intermediate_size=32, visual_embedding_dim=32, architectures=[architecture],
                  num_labels=32 if architecture.endswith("Answering") else 2)
    return shared_tiny_config(**dict(values, **overrides))


def _run(args):
    return subprocess.run([sys.executable, CONVERT] + args, capture_output=True, text=True)


def _assert_parity(paddle_model, hf_model, config, architecture):
    inputs = make_inputs(config, architecture, seed=1, with_labels=architecture != "VisualBertModel")
    report = diff_outputs(run_paddle(paddle_model, inputs, architecture), run_hf(hf_model, inputs, architecture))
    bad = {k: v["max_abs_diff"] for k, v in report.items() if v["max_abs_diff"] > 1e-5}
    assert not bad, bad


@pytest.mark.parametrize("architecture", HEADS)
def test_table_transposes_exactly_the_linear_weights_and_covers_every_key(architecture):
    """Checked against the HF module types, independently of the table's own flags."""
    config = tiny_config(architecture, bypass_transformer=True)
    hf_model = make_hf_model(config, architecture)
    linear = {f"{n}.weight" for n, m in hf_model.named_modules() if isinstance(m, torch.nn.Linear)}
    table = conversion_table(config, architecture)
    sources = [s for s, _, _ in table]
    assert len(sources) == len(set(sources))
    hf_keys = set(hf_model.state_dict())
    tied = {"cls.predictions.decoder.weight", "cls.predictions.decoder.bias"}
    for src, dst, transpose in table:
        assert src in hf_keys, src
        assert transpose == (src in linear), src
    assert hf_keys - set(sources) <= tied | {k for k in hf_keys if k.endswith("position_ids")}
    paddle_keys = set(model_class_for(architecture)(config).state_dict())
    assert {d for _, d, _ in table} == paddle_keys


def test_key_counts_match_the_released_checkpoints():
    """REFERENCE: PreTraining 212 keys, QA/NLVR2/MC 205, Model 203 (HF state dicts, ties included)."""
    config = VisualBertConfig(num_hidden_layers=12)
    counts = {a: len(conversion_table(config, a)) for a in HEADS[:5]}
    assert counts["VisualBertModel"] == 203
    assert counts["VisualBertForQuestionAnswering"] == counts["VisualBertForVisualReasoning"] == 205
    assert counts["VisualBertForMultipleChoice"] == 205
    assert counts["VisualBertForPreTraining"] + 2 == 212  # + the tied decoder weight and bias aliases


def test_a_missed_transpose_breaks_parity(monkeypatch):
    architecture = "VisualBertForQuestionAnswering"
    config = tiny_config(architecture)
    hf_model = make_hf_model(config, architecture)
    _assert_parity(paddle_from_hf(hf_model, config, architecture), hf_model, config, architecture)

    import visualbert.conversion as conversion

    broken = [(s, d, False) if s.endswith("layer.{layer}".replace("{layer}", "0") + ".intermediate.dense.weight") else (s, d, t)
              for s, d, t in conversion.conversion_table(config, architecture)]
    assert sum(t for _, _, t in broken) == sum(t for _, _, t in conversion.conversion_table(config, architecture)) - 1
    monkeypatch.setattr(conversion, "conversion_table", lambda *a: broken)
    with pytest.raises(AssertionError):
        _assert_parity(paddle_from_hf(hf_model, config, architecture), hf_model, config, architecture)


@pytest.mark.parametrize("safe_serialization", [True, False])
def test_cli_converts_hf_directory_and_loads_into_the_head(tmp_path, safe_serialization):
    architecture = "VisualBertForVisualReasoning"
    config = tiny_config(architecture)
    hf_model = make_hf_model(config, architecture, seed=2)
    hf_model.save_pretrained(str(tmp_path / "hf"), safe_serialization=safe_serialization)
    result = _run(["--src", str(tmp_path / "hf"), "--dst", str(tmp_path / "pd")])
    assert result.returncode == 0, result.stderr
    model = load_pretrained(str(tmp_path / "pd"))
    assert type(model).__name__ == architecture
    _assert_parity(model, hf_model, config, architecture)
    report = json.loads((tmp_path / "pd" / "conversion.json").read_text())
    assert report["architecture"] == architecture and report["num_tensors"] == len(model.state_dict())


def test_safetensors_conversion_does_not_need_torch(tmp_path):
    architecture = "VisualBertForQuestionAnswering"
    hf_model = make_hf_model(tiny_config(architecture), architecture)
    hf_model.save_pretrained(str(tmp_path / "hf"))
    code = (
        "import sys; sys.modules['torch'] = None\n"  # any `import torch` now raises ImportError
        f"sys.path.insert(0, {REPO!r})\n"
        "from visualbert.conversion import convert_checkpoint\n"
        f"convert_checkpoint({str(tmp_path / 'hf')!r}, {str(tmp_path / 'pd')!r})\n"
        "assert 'transformers' not in sys.modules\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "pd" / "model_state.pdparams").is_file()


def _original_names(state):
    """HF names → the original release's names, written out by hand (not by inverting our table)."""
    out = {}
    for key, value in state.items():
        if key.endswith("position_ids") or key == "cls.predictions.decoder.bias":
            continue  # the old code had neither
        new = key.replace("visual_bert.", "bert.bert.")
        new = new.replace("visual_token_type_embeddings", "token_type_embeddings_visual")
        new = new.replace("visual_position_embeddings", "position_embeddings_visual")
        new = new.replace("visual_projection", "projection")
        if new.startswith("cls.predictions") or new.startswith("cls.seq_relationship"):
            new = "bert." + new
        elif new.startswith("cls."):
            new = "bert.classifier." + new[len("cls."):]
        out[new] = torch.from_numpy(value)
    return out


def test_original_th_checkpoint_with_detector_weights(tmp_path):
    architecture = "VisualBertForMultipleChoice"
    config = tiny_config(architecture)
    hf_model = make_hf_model(config, architecture, seed=3)
    state = _original_names(hf_state_dict(hf_model))
    assert "bert.bert.embeddings.projection.weight" in state and "bert.classifier.weight" in state
    state["detector.backbone.conv1.weight"] = torch.zeros(4, 3, 3, 3)
    (tmp_path / "orig").mkdir()
    torch.save(state, str(tmp_path / "orig" / "vcr_fine_tune.th"))
    config.save_pretrained(str(tmp_path / "orig"))  # the tiny config beside the file (real ones use --name)
    result = _run(["--src", str(tmp_path / "orig" / "vcr_fine_tune.th"), "--dst", str(tmp_path / "pd")])
    assert result.returncode == 0, result.stderr
    _assert_parity(load_pretrained(str(tmp_path / "pd")), hf_model, config, architecture)

    assert "detector.* weights were left out" in result.stdout

    # With --name the detector weights are converted too (VisualBertForVCR): this made-up key is named.
    result = _run(["--src", str(tmp_path / "orig" / "vcr_fine_tune.th"), "--name", "visualbert-vcr",
                   "--dst", str(tmp_path / "pd2")])
    assert result.returncode == 2 and "detector.backbone.conv1.weight" in result.stderr
    assert not (tmp_path / "pd2").exists()


# ------------------------------------------------------------------------------------------ bad input
@pytest.fixture
def hf_dir(tmp_path):
    architecture = "VisualBertForPreTraining"
    hf_model = make_hf_model(tiny_config(architecture), architecture)
    hf_model.save_pretrained(str(tmp_path / "hf"))
    return tmp_path / "hf"


def test_unknown_name_is_rejected(tmp_path, hf_dir):
    result = _run(["--src", str(hf_dir), "--name", "visualbert-gqa", "--dst", str(tmp_path / "pd")])
    assert result.returncode == 2 and "unknown checkpoint name 'visualbert-gqa'" in result.stderr
    assert all(n in result.stderr for n in PRETRAINED_CHECKPOINTS)


def test_missing_or_non_checkpoint_source(tmp_path):
    result = _run(["--src", str(tmp_path / "nope"), "--dst", str(tmp_path / "pd")])
    assert result.returncode == 2 and "does not exist" in result.stderr
    (tmp_path / "empty").mkdir()
    result = _run(["--src", str(tmp_path / "empty"), "--dst", str(tmp_path / "pd")])
    assert result.returncode == 2 and "neither model.safetensors nor pytorch_model.bin" in result.stderr
    (tmp_path / "garbage.th").write_bytes(b"not a checkpoint")
    result = _run(["--src", str(tmp_path / "garbage.th"), "--name", "visualbert-vqa", "--dst", str(tmp_path / "pd")])
    assert result.returncode == 2 and "not a readable torch checkpoint" in result.stderr
    assert not (tmp_path / "pd").exists()


def test_unexpected_missing_and_misshapen_keys_are_named():
    architecture = "VisualBertForPreTraining"
    config = tiny_config(architecture)
    state = hf_state_dict(make_hf_model(config, architecture))
    expected = {k: list(v.shape) for k, v in model_class_for(architecture)(config).state_dict().items()}

    extra = dict(state, **{"visual_bert.encoder.layer.0.attention.self.rotary.weight": np.zeros(3)})
    with pytest.raises(KeyError, match="rotary"):
        convert_state_dict(extra, config, architecture, expected)
    missing = {k: v for k, v in state.items() if k != "cls.seq_relationship.bias"}
    with pytest.raises(KeyError, match="cls.seq_relationship.bias"):
        convert_state_dict(missing, config, architecture, expected)
    misshapen = dict(state, **{"visual_bert.embeddings.visual_projection.weight": np.zeros((32, 2048), np.float32)})
    with pytest.raises(ValueError, match="visual_projection.weight.*\\[2048, 32\\].*\\[32, 32\\]"):
        convert_state_dict(misshapen, config, architecture, expected)
    untied = dict(state, **{"cls.predictions.decoder.weight": state["cls.predictions.decoder.weight"] + 1})
    with pytest.raises(ValueError, match="tied"):
        convert_state_dict(untied, config, architecture, expected)
    assert set(IGNORED_SOURCE_KEYS) == {"embeddings.position_ids", "cls.predictions.decoder.weight",
                                        "cls.predictions.decoder.bias"}


def test_existing_destination_needs_overwrite(tmp_path, hf_dir):
    dst = tmp_path / "pd"
    dst.mkdir()
    (dst / "keep.txt").write_text("user data")
    result = _run(["--src", str(hf_dir), "--dst", str(dst)])
    assert result.returncode == 2 and "--overwrite" in result.stderr
    assert (dst / "keep.txt").read_text() == "user data"
    result = _run(["--src", str(hf_dir), "--dst", str(dst), "--overwrite"])
    assert result.returncode == 0, result.stderr
    assert not (dst / "keep.txt").exists() and (dst / "model_state.pdparams").is_file()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp")] == []


def test_interrupted_conversion_leaves_nothing(tmp_path, hf_dir, monkeypatch):
    from visualbert.modeling import VisualBertPreTrainedModel

    def explode(self, directory):
        open(os.path.join(directory, "model_state.pdparams"), "w").write("partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(VisualBertPreTrainedModel, "save_pretrained", explode)
    with pytest.raises(KeyboardInterrupt):
        convert_checkpoint(str(hf_dir), str(tmp_path / "pd"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hf"]
