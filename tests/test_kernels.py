"""visualbert.kernels: the C++ CPU GELU against an independent float64 reference (scipy's erf) and against
Paddle's own kernel, forward and backward; the fallbacks (static graph, disabled) are Paddle's op."""

import numpy as np
import paddle
import paddle.nn.functional as F
import pytest
from scipy.special import erf

from visualbert import kernels


def _gelu64(x):
    x = x.astype(np.float64)
    return x * 0.5 * (1.0 + erf(x / np.sqrt(2.0)))


def _gelu64_grad(x):
    x = x.astype(np.float64)
    return 0.5 * (1.0 + erf(x / np.sqrt(2.0))) + x * np.exp(-0.5 * x * x) / np.sqrt(2.0 * np.pi)


@pytest.fixture(scope="module")
def ext():
    module = kernels.load_cpu_kernels()
    if module is None:
        pytest.skip(f"C++ extension not built here: {kernels.status()['error']}")
    return module


def _inputs():
    dense = np.linspace(-10, 10, 200_001, dtype=np.float32)  # tails, the erf clamp at |x| = 4 sqrt(2), zero
    normal = np.random.RandomState(0).randn(3, 1000).astype(np.float32).ravel()
    return np.concatenate([dense, normal, np.array([0.0, -0.0, 1e-30, -1e-30, 87.0, -87.0], np.float32)])


def test_forward_matches_float64_reference(ext):
    x = _inputs()
    ours = kernels.gelu(paddle.to_tensor(x)).numpy()
    ref = _gelu64(x)
    assert ours.dtype == np.float32 and ours.shape == x.shape
    assert np.abs(ours - ref).max() < 1.1e-6
    # as close as Paddle's own float32 kernel, up to a few ulps of the output
    paddle_err = np.abs(F.gelu(paddle.to_tensor(x)).numpy() - ref)
    assert np.all(np.abs(ours - ref) <= paddle_err + 4 * np.spacing(np.abs(ref).astype(np.float32)) + 1e-6)
    assert np.all(ours[x >= 6] == x[x >= 6]) and np.all(ours[x <= -6] == 0)


def test_backward_matches_float64_reference(ext):
    x = _inputs()
    upstream = np.random.RandomState(1).uniform(-2, 2, size=x.shape).astype(np.float32)
    t = paddle.to_tensor(x, stop_gradient=False)
    (kernels.gelu(t) * paddle.to_tensor(upstream)).sum().backward()
    ref = _gelu64_grad(x) * upstream
    assert np.abs(t.grad.numpy() - ref).max() < 2e-6


def test_same_shape_and_model_layer_parity(ext):
    x = np.random.RandomState(2).randn(2, 5, 64).astype(np.float32)
    ours = kernels.gelu(paddle.to_tensor(x)).numpy()
    assert ours.shape == (2, 5, 64)
    np.testing.assert_allclose(ours, F.gelu(paddle.to_tensor(x)).numpy(), rtol=0, atol=1.1e-6)


def test_static_graph_uses_paddle_op(ext):
    """Exported programs must not contain the custom op (a predictor could not run it)."""
    class Act(paddle.nn.Layer):
        def forward(self, t):
            return kernels.gelu(t)

    fn = paddle.jit.to_static(Act(), input_spec=[paddle.static.InputSpec([None, 8], "float32")], full_graph=True)
    x = np.random.RandomState(3).randn(4, 8).astype(np.float32)
    out = fn(paddle.to_tensor(x)).numpy()
    assert "visualbert_gelu" not in str(fn.forward.concrete_program.main_program)
    np.testing.assert_array_equal(out, F.gelu(paddle.to_tensor(x)).numpy())


def test_non_float32_falls_back():
    x = paddle.to_tensor(np.random.RandomState(4).randn(16).astype(np.float64))
    np.testing.assert_array_equal(kernels.gelu(x).numpy(), F.gelu(x).numpy())


def test_failed_build_falls_back_to_paddle(monkeypatch):
    import paddle.utils.cpp_extension as cpp_extension

    def no_compiler(**kwargs):
        raise OSError("no C++ compiler")

    monkeypatch.setattr(kernels, "_state", {"tried": False, "module": None, "error": None})
    monkeypatch.setattr(cpp_extension, "load", no_compiler)
    x = paddle.to_tensor(np.random.RandomState(5).randn(32).astype(np.float32))
    np.testing.assert_array_equal(kernels.gelu(x).numpy(), F.gelu(x).numpy())
    assert kernels.status() == {"loaded": False, "error": "OSError: no C++ compiler", "tried": True}


def test_disabled_by_environment(monkeypatch):
    monkeypatch.setattr(kernels, "_state", {"tried": False, "module": None, "error": None})
    monkeypatch.setenv(kernels.DISABLE_VARIABLE, "0")
    assert kernels.load_cpu_kernels() is None and "disabled" in kernels.status()["error"]
