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


# ------------------------------------------------------------------------------------------------ dropout
def test_dropout_keeps_with_probability_one_minus_p_and_scales(ext):
    x = paddle.to_tensor(np.random.RandomState(6).uniform(0.5, 2.0, size=(8, 12, 64, 64)).astype(np.float32))
    n = x.size
    for p in (0.1, 0.5, 0.9):
        out = kernels.dropout(x, p).numpy()
        kept = out != 0
        # binomial: |kept fraction - (1 - p)| within 5 standard deviations
        assert abs(kept.mean() - (1 - p)) < 5 * np.sqrt(p * (1 - p) / n)
        np.testing.assert_allclose(out[kept], x.numpy()[kept] / (1 - p), rtol=1e-6)


def test_dropout_draws_are_independent_of_position(ext):
    """Counter-based hash: neighbouring elements, rows and the two halves of the index must not correlate."""
    out = kernels.dropout(paddle.ones([1 << 20]), 0.5).numpy() != 0
    for lag in (1, 2, 8, 64, 1024):
        a, b = out[:-lag].astype(np.float64), out[lag:].astype(np.float64)
        assert abs(np.corrcoef(a, b)[0, 1]) < 5 / np.sqrt(a.size), lag
    counts = out.reshape(1024, 1024).mean(axis=1)  # per-row keep rates spread as binomial(1024, 0.5)
    assert abs(counts.std() - 0.5 / 32) < 0.004


def test_dropout_is_reproducible_from_paddle_generator(ext):
    x = paddle.ones([4, 1000])
    paddle.seed(123)
    first = kernels.dropout(x, 0.3).numpy()
    state = paddle.get_rng_state()
    second = kernels.dropout(x, 0.3).numpy()
    assert (first != second).any()  # a new seed per call
    paddle.set_rng_state(state)  # what a resumed run restores
    np.testing.assert_array_equal(kernels.dropout(x, 0.3).numpy(), second)
    paddle.seed(123)
    np.testing.assert_array_equal(kernels.dropout(x, 0.3).numpy(), first)


def test_dropout_backward_uses_the_forward_mask(ext):
    x = paddle.to_tensor(np.random.RandomState(7).randn(6, 333).astype(np.float32), stop_gradient=False)
    upstream = np.random.RandomState(8).randn(6, 333).astype(np.float32)
    out = kernels.dropout(x, 0.25)
    (out * paddle.to_tensor(upstream)).sum().backward()
    kept = out.numpy() != 0
    np.testing.assert_allclose(x.grad.numpy(), np.where(kept, upstream / 0.75, 0.0), rtol=1e-6, atol=0)


def test_dropout_edge_probabilities_use_paddle(ext):
    x = paddle.ones([10])
    np.testing.assert_array_equal(kernels.dropout(x, 0.0).numpy(), x.numpy())
    assert (kernels.dropout(x, 1.0).numpy() == 0).all()


# ------------------------------------------------------------------------------------------------ LayerNorm
def _layer_norm64(x, gamma, beta, eps):
    x = x.astype(np.float64)
    mean = x.mean(-1, keepdims=True)
    rstd = 1.0 / np.sqrt(((x - mean) ** 2).mean(-1, keepdims=True) + eps)
    return (x - mean) * rstd * gamma + beta, (x - mean) * rstd, rstd


def test_layer_norm_forward_and_backward_match_float64_reference(ext):
    rng = np.random.RandomState(9)
    x = (rng.randn(3, 7, 96) * 3 + 1.5).astype(np.float32)
    gamma, beta = rng.randn(96).astype(np.float32), rng.randn(96).astype(np.float32)
    upstream = rng.randn(3, 7, 96).astype(np.float32)
    tx, tg, tb = (paddle.to_tensor(a, stop_gradient=False) for a in (x, gamma, beta))
    out = kernels.layer_norm(tx, tg, tb, 1e-12)
    (out * paddle.to_tensor(upstream)).sum().backward()
    ref, xhat, rstd = _layer_norm64(x, gamma.astype(np.float64), beta, 1e-12)
    assert np.abs(out.numpy() - ref).max() < 1e-5
    g = upstream.astype(np.float64) * gamma
    dx = rstd * (g - g.mean(-1, keepdims=True) - xhat * (g * xhat).mean(-1, keepdims=True))
    assert np.abs(tx.grad.numpy() - dx).max() < 1e-5 * np.abs(dx).max()
    np.testing.assert_allclose(tg.grad.numpy(), (upstream * xhat).sum((0, 1)), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(tb.grad.numpy(), upstream.astype(np.float64).sum((0, 1)), rtol=1e-5, atol=1e-5)


def test_layer_norm_matches_paddle_layer(ext):
    x = paddle.to_tensor(np.random.RandomState(10).randn(5, 64).astype(np.float32))
    layer = paddle.nn.LayerNorm(64, epsilon=1e-5)
    np.testing.assert_allclose(kernels.layer_norm(x, layer.weight, layer.bias, 1e-5).numpy(), layer(x).numpy(),
                               rtol=0, atol=2e-6)


# ------------------------------------------------------------------------------------------------ softmax
def _softmax64(scores, mask):
    z = scores.astype(np.float64) + mask
    z = np.exp(z - z.max(-1, keepdims=True))
    return z / z.sum(-1, keepdims=True)


@pytest.mark.parametrize("mask_shape", [(2, 1, 1, 9), (2, 1, 5, 9), (2, 3, 5, 9), (1, 1, 1, 9)])
def test_masked_softmax_matches_float64_reference(ext, mask_shape):
    rng = np.random.RandomState(11)
    scores = (rng.randn(2, 3, 5, 9) * 4).astype(np.float32)
    mask = np.where(rng.rand(*mask_shape) < 0.3, -10000.0, 0.0).astype(np.float32)
    mask[..., 0] = 0.0  # every row keeps one position
    upstream = rng.randn(2, 3, 5, 9).astype(np.float32)
    t = paddle.to_tensor(scores, stop_gradient=False)
    probs = kernels.masked_softmax(t, paddle.to_tensor(mask))
    (probs * paddle.to_tensor(upstream)).sum().backward()
    ref = _softmax64(scores, mask)
    assert np.abs(probs.numpy() - ref).max() < 2e-7
    grad_ref = ref * (upstream - (upstream * ref).sum(-1, keepdims=True))
    assert np.abs(t.grad.numpy() - grad_ref).max() < 1e-6


def test_masked_softmax_rejects_nothing_silently(ext):
    """A mask whose shape does not broadcast is an error, not a wrong read."""
    scores = paddle.zeros([2, 3, 5, 9])
    with pytest.raises(Exception, match="mask dim"):
        kernels.masked_softmax(scores, paddle.zeros([2, 2, 1, 9]))


def test_static_graph_uses_paddle_ops_for_every_kernel(ext):
    """The kernels with a Paddle fallback take it in a static graph; the C++-only ones refuse to run there."""
    class Block(paddle.nn.Layer):
        def __init__(self):
            super().__init__()
            self.norm = paddle.nn.LayerNorm(9)

        def forward(self, x):
            return kernels.dropout(kernels.layer_norm(kernels.gelu(x), self.norm.weight, self.norm.bias, 1e-12), 0.1)

    fn = paddle.jit.to_static(Block(), input_spec=[paddle.static.InputSpec([None, 9], "float32")], full_graph=True)
    fn(paddle.zeros([2, 9]))
    program = str(fn.forward.concrete_program.main_program)
    assert "visualbert_" not in program and "layer_norm" in program and "gelu" in program

    class Attention(paddle.nn.Layer):
        def forward(self, scores, mask):
            return kernels.masked_softmax(scores, mask)

    spec = [paddle.static.InputSpec([None, 3, 5, 9], "float32"), paddle.static.InputSpec([None, 1, 1, 9], "float32")]
    with pytest.raises(ValueError, match="kernels.applies"):
        paddle.jit.to_static(Attention(), input_spec=spec, full_graph=True)(paddle.zeros([2, 3, 5, 9]),
                                                                            paddle.zeros([2, 1, 1, 9]))


def test_layer_norm_with_other_parameter_dtypes_uses_paddle(ext):
    x = paddle.to_tensor(np.random.RandomState(13).randn(4, 8).astype(np.float64))
    layer = paddle.nn.LayerNorm(8)
    layer.to(dtype="float64")
    np.testing.assert_array_equal(kernels.layer_norm(x, layer.weight, layer.bias, 1e-5).numpy(), layer(x).numpy())


# ------------------------------------------------------------------------------------------------ attention heads
def test_split_and_merge_heads_are_the_transposes_forward_and_backward(ext):
    rng = np.random.RandomState(12)
    qkv = rng.randn(2, 5, 3, 4, 6).astype(np.float32)
    upstream = [rng.randn(2, 4, 5, 6).astype(np.float32) for _ in range(3)]
    t = paddle.to_tensor(qkv, stop_gradient=False)
    heads = kernels.split_heads(t)
    for part, head in enumerate(heads):  # numpy's transpose is the reference
        np.testing.assert_array_equal(head.numpy(), qkv[:, :, part].transpose(0, 2, 1, 3))
    sum(paddle.sum(h * paddle.to_tensor(u)) for h, u in zip(heads, upstream)).backward()
    expected = np.stack([u.transpose(0, 2, 1, 3) for u in upstream], axis=2)
    np.testing.assert_array_equal(t.grad.numpy(), expected)

    context = paddle.to_tensor(upstream[0], stop_gradient=False)
    merged = kernels.merge_heads(context)
    np.testing.assert_array_equal(merged.numpy(), upstream[0].transpose(0, 2, 1, 3).reshape(2, 5, 24))
    grad = rng.randn(2, 5, 24).astype(np.float32)
    (merged * paddle.to_tensor(grad)).sum().backward()
    np.testing.assert_array_equal(context.grad.numpy(), grad.reshape(2, 5, 4, 6).transpose(0, 2, 1, 3))


_THREADS_SCRIPT = """
import sys
import numpy as np
import paddle
from visualbert import kernels
assert kernels.load_cpu_kernels() is not None
paddle.seed(7)
rng = np.random.RandomState(0)
out = {}
x = paddle.to_tensor(rng.randn(6, 12, 40, 40).astype(np.float32))
out["dropout"] = kernels.dropout(x, 0.3).numpy()
h = paddle.to_tensor(rng.randn(300, 64).astype(np.float32), stop_gradient=False)
w = paddle.to_tensor(rng.randn(64).astype(np.float32), stop_gradient=False)
b = paddle.to_tensor(rng.randn(64).astype(np.float32), stop_gradient=False)
(kernels.layer_norm(h, w, b, 1e-12) * paddle.to_tensor(rng.randn(300, 64).astype(np.float32))).sum().backward()
out["ln_dx"], out["ln_dw"], out["ln_db"] = h.grad.numpy(), w.grad.numpy(), b.grad.numpy()
p = paddle.to_tensor(rng.randn(100003).astype(np.float32))
g = paddle.to_tensor(rng.randn(100003).astype(np.float32))
m, v = paddle.zeros([100003]), paddle.zeros([100003])
assert kernels.bert_adam_(p, g, m, v, 1e-3, 0.9, 0.999, 1e-6, 0.01, 1.0, 1e-6)
out["adam"] = p.numpy()
np.savez(sys.argv[1], **out)
"""


def test_kernel_results_do_not_depend_on_the_thread_count(ext, tmp_path):
    """Dropout masks are counter-based (bit-identical), the OpenMP reductions (LayerNorm parameter gradients,
    the BertAdam norm) agree to float32 rounding, run with 1 and with 2 threads."""
    import os
    import subprocess
    import sys

    script = tmp_path / "run.py"
    script.write_text(_THREADS_SCRIPT)
    results = {}
    for threads in (1, 2):
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
        subprocess.run([sys.executable, str(script), str(tmp_path / f"{threads}.npz")], check=True, env=env,
                       timeout=300)
        results[threads] = np.load(tmp_path / f"{threads}.npz")
    one, two = results[1], results[2]
    np.testing.assert_array_equal(one["dropout"], two["dropout"])
    for key in ("ln_dx", "ln_dw", "ln_db", "adam"):
        np.testing.assert_allclose(one[key], two[key], rtol=1e-6, atol=1e-6, err_msg=key)
