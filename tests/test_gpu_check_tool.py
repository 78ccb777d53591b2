"""tools/gpu_check.sh (what GPU users run first): its shell syntax, its refusal without a GPU, and its Python half
(tools/gpu_check.py) on CPU: the fp32 fused-vs-unfused and prediction-loop checks pass, the weight checks tell
float32 weights from ones that went through a bf16/fp16 cast."""

import importlib.util
import os
import subprocess
import sys

import numpy as np
import paddle
import pytest

import visualbert  # noqa: F401
from visualbert.configuration import VisualBertConfig
from visualbert.modeling import VisualBertForVisualReasoning

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "tools", "gpu_check.sh")


@pytest.fixture(scope="module")
def tool():
    spec = importlib.util.spec_from_file_location("gpu_check_tool", os.path.join(ROOT, "tools", "gpu_check.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_shell_syntax():
    subprocess.run(["bash", "-n", SCRIPT], check=True)


@pytest.mark.skipif(paddle.device.is_compiled_with_cuda(), reason="the no-GPU refusal needs a CPU-only Paddle")
def test_refuses_without_a_gpu():
    env = dict(os.environ, PYTHON=sys.executable, PYTHONPATH=ROOT)
    p = subprocess.run(["bash", SCRIPT], capture_output=True, text=True, timeout=120, env=env, cwd=ROOT)
    assert p.returncode == 1 and "FAIL no GPU visible to Paddle" in p.stdout, p.stdout + p.stderr


def test_cpu_halves_pass(tool, capsys):
    assert tool.main(["attention"]) == 0
    assert tool.main(["bf16_eval"]) == 0
    out = capsys.readouterr().out
    assert out.count("OK   attention float32") == 4 and "FAIL" not in out


def test_weight_checks_detect_rounded_and_different_weights(tool, tmp_path, capsys):
    paddle.seed(0)
    model = VisualBertForVisualReasoning(VisualBertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=1,
                                                          num_attention_heads=2, intermediate_size=64,
                                                          visual_embedding_dim=8, num_labels=2))
    good, rounded = str(tmp_path / "good"), str(tmp_path / "rounded")
    model.save_pretrained(good)
    pooler = model.visual_bert.pooler.dense.weight
    pooler.set_value(pooler.astype("bfloat16").astype("float32"))  # what O2 does to a layer without master weight
    model.save_pretrained(rounded)
    assert tool.main(["weights", good]) == 0
    assert tool.main(["weights", rounded]) == 1
    assert tool.main(["same", good, good]) == 0
    assert tool.main(["same", good, rounded]) == 1
    assert tool.main(["same", good, rounded, "--atol", "1e-1"]) == 0
    assert "FAIL" in capsys.readouterr().out
    r = np.random.RandomState(0).randn(1000).astype(np.float32)
    assert tool.rounded_fraction(r) < 0.01
    assert tool.rounded_fraction(paddle.to_tensor(r).astype("float16").astype("float32").numpy()) == 1.0
