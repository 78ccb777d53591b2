"""CPU runtime defaults (visualbert.runtime) and accelerator helpers (visualbert.accel)."""

import argparse
import os
import subprocess
import sys

import numpy as np
import paddle
import pytest
from parity import diff_outputs, make_hf_model, paddle_from_hf, run_hf, run_paddle

import visualbert  # noqa: F401
from visualbert import accel, runtime
from visualbert.configuration import VisualBertConfig
from visualbert.inputs import make_inputs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
from conftest import TINY  # noqa: E402


def test_defaults_do_not_override_the_user():
    env = {"OMP_NUM_THREADS": "7"}
    report = runtime.apply_cpu_defaults(env)
    assert env["OMP_NUM_THREADS"] == "7" and report["kept"]["OMP_NUM_THREADS"] == "7"
    assert env["MKL_NUM_THREADS"] == str(runtime.default_threads())


def test_opt_out():
    env = {runtime.OPT_OUT: "1"}
    assert runtime.apply_cpu_defaults(env)["skipped"] and "OMP_NUM_THREADS" not in env


def test_mkl_code_path_only_on_amd(monkeypatch):
    monkeypatch.setattr(runtime, "cpu_vendor", lambda: "GenuineIntel")
    assert "MKL_DEBUG_CPU_TYPE" not in runtime.recommended_environment()
    monkeypatch.setattr(runtime, "cpu_vendor", lambda: "AuthenticAMD")
    assert runtime.recommended_environment()["MKL_DEBUG_CPU_TYPE"] == "5"


def _child_env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "MKL_DEBUG_CPU_TYPE")}
    env.update(extra)
    return env


def test_import_visualbert_before_paddle_sets_threads():
    code = "import visualbert, paddle, os; print(os.environ['OMP_NUM_THREADS'])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_child_env(), cwd=ROOT)
    assert out.stdout.strip().splitlines()[-1] == str(runtime.default_threads())
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=_child_env(OMP_NUM_THREADS="1"), cwd=ROOT)
    assert out.stdout.strip().splitlines()[-1] == "1"


def test_accel_flags_and_cpu_fallback():
    parser = accel.add_accel_arguments(argparse.ArgumentParser())
    args = parser.parse_args([])
    assert (args.use_amp, args.amp_level, args.amp_dtype, args.fused_attention) == (False, "O1", "bfloat16", "auto")
    args = parser.parse_args(["--use_amp", "--amp_level", "O2", "--amp_dtype", "float16", "--fused_attention", "off"])
    amp = accel.AmpConfig.from_args(args)
    if not accel.on_gpu():
        assert not amp.enabled  # AMP is a no-op on CPU
        assert accel.grad_scaler(amp) is None
        assert accel.resolve_fused_attention("auto") is False
    with pytest.raises(ValueError):
        accel.resolve_amp(accel.AmpConfig(True, "O3", "float16"))


@pytest.mark.parametrize("arch", ["VisualBertForQuestionAnswering", "VisualBertForVisualReasoning"])
def test_fused_attention_path_keeps_parity(arch):
    config = VisualBertConfig(num_labels=7 if arch == "VisualBertForQuestionAnswering" else 2, architectures=[arch], **TINY)
    hf = make_hf_model(config, arch)
    model = paddle_from_hf(hf, config, arch)
    assert accel.set_fused_attention(model, True) == TINY["num_hidden_layers"]
    inputs = make_inputs(config, arch, text_len=12, num_regions=6)
    report = diff_outputs(run_paddle(model, inputs, arch), run_hf(hf, inputs, arch))
    assert all(v["ok"] for v in report.values()), report


def test_fused_attention_training_step_runs():
    arch = "VisualBertForQuestionAnswering"
    config = VisualBertConfig(num_labels=7, architectures=[arch], **TINY)
    from visualbert.modeling import VisualBertForQuestionAnswering

    model = VisualBertForQuestionAnswering(config)
    accel.set_fused_attention(model, True)
    opt = paddle.optimizer.AdamW(parameters=model.parameters())
    amp = accel.AmpConfig()
    model, opt = accel.prepare(model, opt, amp)
    inputs = make_inputs(config, arch, text_len=12, num_regions=6)
    model.train()
    with accel.autocast(amp):
        loss = model(**{k: paddle.to_tensor(v) for k, v in inputs.items()})["loss"]
    accel.backward_and_step(loss, opt, accel.grad_scaler(amp))
    assert np.isfinite(float(loss))


def test_frozen_linear_layers_train_without_crash():
    """paddle 3.3.1's addmm backward segfaults when the bias has stop_gradient=True: _linear must avoid it
    (a frozen pooler is the common case). Runs in a child process so a crash fails the test, not the run."""
    code = (
        "import visualbert, paddle\n"
        "from visualbert.configuration import VisualBertConfig\n"
        "from visualbert.modeling import VisualBertForVisualReasoning\n"
        "from visualbert.inputs import make_inputs\n"
        f"cfg = VisualBertConfig(num_labels=2, **{TINY!r})\n"
        "m = VisualBertForVisualReasoning(cfg); m.train()\n"
        "for p in m.visual_bert.pooler.parameters(): p.stop_gradient = True\n"
        "m.visual_bert.encoder.layer[0].output.dense.bias.stop_gradient = True\n"
        "inp = make_inputs(cfg, 'VisualBertForVisualReasoning', text_len=12, num_regions=6)\n"
        "out = m(**{k: paddle.to_tensor(v) for k, v in inp.items()})\n"
        "out['loss'].backward()\n"
        "assert m.visual_bert.encoder.layer[0].output.dense.weight.grad is not None\n"
        "print('OK')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("OK"), (proc.returncode, proc.stderr[-2000:])
