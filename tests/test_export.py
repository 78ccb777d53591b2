"""Static-graph export: paddle.inference outputs equal dygraph (1e-5) on shapes other than the export's."""

import os
import subprocess
import sys

import numpy as np
import paddle
import pytest

import visualbert  # noqa: F401  (runtime defaults before paddle)
from visualbert.configuration import VisualBertConfig
from visualbert.inference import Predictor, export_model
from visualbert.inputs import make_inputs
from visualbert.modeling import VisualBertForQuestionAnswering, VisualBertForVisualReasoning

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
from conftest import TINY  # noqa: E402


def _model(cls, num_labels):
    paddle.seed(0)
    model = cls(VisualBertConfig(num_labels=num_labels, architectures=[cls.__name__], **TINY))
    model.eval()
    return model


def _dygraph(model, inputs):
    with paddle.no_grad():
        return model(**{k: paddle.to_tensor(v) for k, v in inputs.items()})["logits"].numpy()


@pytest.mark.parametrize("cls,num_labels", [(VisualBertForQuestionAnswering, 7), (VisualBertForVisualReasoning, 2)])
@pytest.mark.parametrize("use_mkldnn", [False, True])
def test_exported_predictor_matches_dygraph(tmp_path, cls, num_labels, use_mkldnn):
    model = _model(cls, num_labels)
    export_model(model, str(tmp_path))
    predictor = Predictor(str(tmp_path), use_mkldnn=use_mkldnn)
    for batch, text_len, regions in ((3, 12, 6), (1, 20, 9), (5, 8, 3)):
        inputs = make_inputs(model.config, cls.__name__, batch_size=batch, text_len=text_len, num_regions=regions,
                             seed=batch, with_labels=False)
        got = predictor.run(inputs)["logits"]
        assert got.shape == (batch, num_labels)
        np.testing.assert_allclose(got, _dygraph(model, inputs), atol=1e-5, rtol=0)


def test_vqa_gather_follows_each_rows_length(tmp_path):
    """The answer token index (attention_mask.sum(1) - 2) is computed in the graph, per row."""
    model = _model(VisualBertForQuestionAnswering, 7)
    export_model(model, str(tmp_path))
    predictor = Predictor(str(tmp_path))
    inputs = make_inputs(model.config, "VisualBertForQuestionAnswering", batch_size=4, text_len=14, num_regions=5,
                         seed=3, with_labels=False)
    assert len(set(inputs["attention_mask"].sum(1))) > 1  # rows of different lengths
    np.testing.assert_allclose(predictor.run(inputs)["logits"], _dygraph(model, inputs), atol=1e-5, rtol=0)


def test_export_rejects_other_heads(tmp_path):
    from visualbert.modeling import VisualBertForPreTraining

    model = VisualBertForPreTraining(VisualBertConfig(**TINY))
    with pytest.raises(ValueError, match="export supports"):
        export_model(model, str(tmp_path))


def test_cli_export_and_check(tmp_path):
    model = _model(VisualBertForVisualReasoning, 2)
    model.save_pretrained(str(tmp_path / "model"))
    out = tmp_path / "exported"
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "export_model.py"), "--model",
                           str(tmp_path / "model"), "--out", str(out), "--check"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "max |Δ|" in proc.stdout
    assert (out / "export.json").is_file()


# ------------------------------------------------------------------------------------------ ONNX
@pytest.mark.parametrize("cls,num_labels", [(VisualBertForQuestionAnswering, 7), (VisualBertForVisualReasoning, 2)])
def test_onnx_export_runs_in_onnxruntime_like_dygraph_offline(tmp_path, monkeypatch, cls, num_labels):
    """paddle2onnx export (nothing installed at export time: any pip call fails the test) run in onnxruntime on
    padded batches of two shapes equals dygraph (max |Δ| <= 1e-4); the model keeps its own kernels afterwards."""
    from visualbert.inference import OnnxPredictor, export_onnx

    real_popen = subprocess.Popen

    def no_pip(args, *a, **k):
        if "pip" in " ".join(map(str, args if isinstance(args, (list, tuple)) else [args])):
            raise AssertionError(f"export tried to run {args}")
        return real_popen(args, *a, **k)

    monkeypatch.setattr(subprocess, "Popen", no_pip)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    model = _model(cls, num_labels)
    kernels = model.cpu_kernels
    path = export_onnx(model, str(tmp_path))
    assert os.path.basename(path) == "model.onnx" and model.cpu_kernels == kernels
    predictor = OnnxPredictor(str(tmp_path))
    assert predictor.meta["format"] == "onnx" and predictor.meta["architecture"] == cls.__name__
    for batch, text_len, regions in ((3, 16, 10), (4, 9, 5)):
        inputs = make_inputs(model.config, cls.__name__, batch_size=batch, text_len=text_len, num_regions=regions,
                             seed=batch, with_labels=False)
        assert inputs["attention_mask"].min() == 0 and inputs["visual_attention_mask"].min() == 0  # padded
        got = predictor.run(inputs)["logits"]
        assert got.shape == (batch, num_labels)
        assert np.abs(got - _dygraph(model, inputs)).max() <= 1e-4
