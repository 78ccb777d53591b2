"""Faster CPU kernels for the non-GEMM ops of the model and for the BertAdam update, with plain Paddle as the
fallback.

Several of Paddle's CPU kernels on the BERT-base shapes are scalar or single-threaded (paddle 3.3.1, 2 threads,
batch 8 x 228 tokens, see bench/bench_kernels.py): the exact (erf) GELU (~2-3x torch's), dropout (~33 ms per
call on the attention probabilities, 17% of a training step), the LayerNorm backward (~18 ms, 25x its
forward), softmax (~18 ms on [8, 12, 228, 228]), the transposes that split and merge the attention heads, and
BertAdam as ~15 tensor ops per parameter (2 s per step for 114M parameters). :func:`gelu`, :func:`dropout`,
:func:`layer_norm`, :func:`masked_softmax`, :func:`split_heads` / :func:`merge_heads` and :func:`bert_adam_`
run a small C++ extension instead (``visualbert/csrc/cpu_kernels.cc``: vectorised loops, OpenMP threads on
the runtime Paddle's MKL uses), compiled from source with ``paddle.utils.cpp_extension`` the first time it is
needed on a machine and cached under ``$VISUALBERT_KERNELS_DIR`` (default ``~/.cache/visualbert/kernels``).
They are used only where they are exact to float32 precision and safe: contiguous float32 CPU tensors in
dygraph mode, on the model's CPU path (``paddle.jit.to_static`` / export keep Paddle's ops, so exported models
need no extension; the portable path that a GPU runs never calls them). Anything else, a missing compiler or a
failed build (one warning), or ``VISUALBERT_CPU_KERNELS=0`` gives Paddle's ops.

Accuracy (tests/test_kernels.py, against float64 references): |gelu - float64 GELU| < 1.1e-6 over [-10, 10]
(Paddle's own float32 kernel is 6.5e-7 off on N(0, 1) inputs), gradients likewise; LayerNorm and softmax to a
few float32 ulps; the head split/merge are exact copies; BertAdam performs the same float32 operations as the
tensor-op path (tests/test_optim.py checks both against the original). Softmax and exp flush results below
float32's normal range to 0 (as an exact exp of a masked score is): denormal probabilities made every later
GEMM ~10x slower. Dropout keeps each element with probability 1 - p (to 2^-24) from a counter-based hash of
one seed drawn from Paddle's generator per call: as reproducible and resumable as Paddle's own dropout (the
generator is what checkpoints save), independent of the thread count, but not the same draws.
"""

import hashlib
import logging
import os
import threading

logger = logging.getLogger(__name__)

DISABLE_VARIABLE = "VISUALBERT_CPU_KERNELS"
DIR_VARIABLE = "VISUALBERT_KERNELS_DIR"
EXTENSION_NAME = "visualbert_cpu_kernels"
SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "csrc", "cpu_kernels.cc")

_lock = threading.Lock()
_state = {"tried": False, "module": None, "error": None}


def _cpu_flags():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def compile_flags():
    """list[str]: ``-O3 -fopenmp -fno-trapping-math`` (lets the clamps vectorise; results unchanged), plus
    AVX2/FMA and AVX-512 when this CPU has them (named explicitly, not ``-march=native``: the flags are part of
    the build directory's name, so a home directory shared by different CPUs keeps one build per CPU type)."""
    flags = ["-O3", "-fopenmp", "-fno-trapping-math"]
    cpu = _cpu_flags()
    if {"avx2", "fma"} <= cpu:
        flags += ["-mavx2", "-mfma"]
    if {"avx512f", "avx512bw", "avx512dq", "avx512vl"} <= cpu:  # dropout forward 5.5 -> 2.8 ms (1 thread)
        flags += ["-mavx512f", "-mavx512bw", "-mavx512dq", "-mavx512vl", "-mprefer-vector-width=512"]
    return flags


def link_flags():
    """list[str]: link the OpenMP runtime Paddle's MKL already runs on (``paddle/libs/libiomp5.so``, which
    implements GCC's ``GOMP_*`` entry points) instead of libgomp: two OpenMP runtimes in one process each keep
    their threads spinning after a parallel region (``KMP_BLOCKTIME``, ``GOMP_SPINCOUNT``) and steal the cores
    from each other's next region (measured: 2-thread kernels slower than 1-thread ones right after a GEMM).
    libgomp (``-fopenmp``) when Paddle ships no libiomp5."""
    import paddle

    libs = os.path.join(os.path.dirname(os.path.abspath(paddle.__file__)), "libs")
    if os.path.exists(os.path.join(libs, "libiomp5.so")):
        return [f"-L{libs}", "-liomp5", f"-Wl,-rpath,{libs}"]
    return ["-fopenmp"]


def build_directory():
    """str: where the extension is built: one directory per source, flags and Paddle version."""
    import paddle

    with open(SOURCE, "rb") as f:
        digest = hashlib.sha256(f.read())
    digest.update(" ".join(compile_flags() + link_flags()).encode())
    digest.update(paddle.__version__.encode())
    root = os.environ.get(DIR_VARIABLE) or os.path.join(os.path.expanduser("~"), ".cache", "visualbert", "kernels")
    return os.path.join(root, digest.hexdigest()[:16])


def disabled():
    return os.environ.get(DISABLE_VARIABLE, "").strip() == "0"


def load_cpu_kernels():
    """Builds (first time on this machine) and loads the extension; returns the module, or None when it is
    disabled or cannot be built (the reason is logged once and kept in :func:`status`)."""
    with _lock:
        if _state["tried"]:
            return _state["module"]
        _state["tried"] = True
        if disabled():
            _state["error"] = f"disabled by {DISABLE_VARIABLE}=0"
            return None
        try:
            import contextlib
            import fcntl
            import io
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "No ccache found" on import
                from paddle.utils.cpp_extension import load

            directory = build_directory()
            os.makedirs(directory, exist_ok=True)
            quiet = io.StringIO()
            with open(os.path.join(directory, ".lock"), "w") as lock, contextlib.redirect_stdout(quiet), \
                    contextlib.redirect_stderr(quiet), _quiet_logging(), _quiet_fds():
                fcntl.flock(lock, fcntl.LOCK_EX)  # one build per machine, other processes wait for it
                _state["module"] = load(name=EXTENSION_NAME, sources=[SOURCE], extra_cxx_cflags=compile_flags(),
                                        extra_ldflags=link_flags(), build_directory=directory, verbose=False)
        except Exception as err:  # no compiler, no headers, ...: plain Paddle kernels
            _state["error"] = f"{type(err).__name__}: {err}"
            logger.warning("visualbert CPU kernels unavailable, using Paddle's (%s)", _state["error"])
        return _state["module"]


class _quiet_fds:
    """The build runs setuptools in a child process writing to our stdout/stderr: send both to /dev/null."""

    def __enter__(self):
        import sys

        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        self.saved = [os.dup(1), os.dup(2)]
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        os.close(devnull)

    def __exit__(self, *exc):
        os.dup2(self.saved[0], 1)
        os.dup2(self.saved[1], 2)
        for fd in self.saved:
            os.close(fd)


class _quiet_logging:
    """Silences the build's INFO lines ("running build_ext", "using custom operator only") on every start."""

    def __enter__(self):
        self.level = logging.root.manager.disable
        logging.disable(logging.INFO)

    def __exit__(self, *exc):
        logging.disable(self.level)


def status():
    """dict: ``loaded`` (bool) and ``error`` (why not, or None)."""
    return {"loaded": _state["module"] is not None, "error": _state["error"], "tried": _state["tried"]}


def applies(x):
    """bool: the C++ kernels would run on ``x`` (contiguous float32 CPU tensor, dygraph, extension available)."""
    import paddle

    return (paddle.in_dynamic_mode() and x.dtype == paddle.float32 and x.place.is_cpu_place()
            and _contiguous(x) and load_cpu_kernels() is not None)


def _contiguous(x):
    # the kernels read raw buffers: a strided view (possible with FLAGS_use_stride_kernel on) takes Paddle's op
    return x.is_contiguous() if hasattr(x, "is_contiguous") else True


def gelu(x):
    """Exact GELU ``x * Phi(x)``; the C++ kernel for float32 CPU tensors in dygraph, else ``F.gelu``.

    Args:
        x (paddle.Tensor): any shape.

    Returns:
        paddle.Tensor: same shape and dtype (differentiable).
    """
    if applies(x):
        return _state["module"].visualbert_gelu(x)
    import paddle.nn.functional as F

    return F.gelu(x, approximate=False)


def dropout(x, p):
    """Inverted dropout in training (``F.dropout(x, p, training=True)``, mode ``upscale_in_train``): each element
    is kept with probability ``1 - p`` and scaled by ``1 / (1 - p)``.

    Args:
        x (paddle.Tensor): any shape.
        p (float): drop probability in [0, 1].

    Returns:
        paddle.Tensor: same shape and dtype (differentiable).
    """
    import paddle

    if 0.0 < p < 1.0 and applies(x) and paddle.device.get_device() == "cpu":  # the seed is drawn there
        # 62 bits from Paddle's generator (what checkpoints save); randint's bounds are int32
        seed = paddle.randint(0, 2**31 - 1, [2], dtype="int64")
        return _state["module"].visualbert_dropout(x, seed, float(p))[0]
    import paddle.nn.functional as F

    return F.dropout(x, p, training=True)


def layer_norm(x, weight, bias, epsilon):
    """LayerNorm over the last axis (``F.layer_norm(x, x.shape[-1:], weight, bias, epsilon)``).

    Args:
        x (paddle.Tensor): float [..., H].
        weight (paddle.Tensor): float [H].
        bias (paddle.Tensor): float [H].
        epsilon (float): added to the variance.

    Returns:
        paddle.Tensor: float [..., H] (differentiable in all three tensors).
    """
    if weight is not None and bias is not None and all(applies(t) for t in (x, weight, bias)):
        return _state["module"].visualbert_layer_norm(x, weight, bias, float(epsilon))[0]
    import paddle.nn.functional as F

    return F.layer_norm(x, x.shape[-1:], weight=weight, bias=bias, epsilon=epsilon)


def masked_softmax(scores, mask):
    """``softmax(scores + mask)`` over the last axis, the mask read broadcast (never expanded). C++ only: call it
    where :func:`applies` (the model's portable path is Paddle's add and softmax).

    Args:
        scores (paddle.Tensor): float32 [B, heads, Lq, Lk].
        mask (paddle.Tensor): additive float32 [B | 1, heads | 1, Lq | 1, Lk] (0 keep, large negative drop).

    Returns:
        paddle.Tensor: float32 [B, heads, Lq, Lk] probabilities (differentiable in ``scores``; the mask gets
        no gradient).
    """
    _require(scores, mask)
    return _state["module"].visualbert_masked_softmax(scores, mask)


def split_heads(qkv):
    """Q, K and V per head from the packed output of the one Q/K/V GEMM. C++ only: call it where
    :func:`applies` (the model's portable path is a transpose and an unbind).

    Args:
        qkv (paddle.Tensor): float32 [B, L, 3, heads, d].

    Returns:
        tuple[paddle.Tensor, paddle.Tensor, paddle.Tensor]: query, key, value, each float32 [B, heads, L, d]
        (differentiable; all three must take part in the loss).
    """
    _require(qkv)
    return tuple(_state["module"].visualbert_split_heads(qkv))


def merge_heads(context):
    """[B, heads, L, d] → [B, L, heads * d] (the inverse of the head split, for the attention's output). C++
    only: call it where :func:`applies` (the model's portable path is a transpose and a reshape).

    Args:
        context (paddle.Tensor): float32 [B, heads, L, d].

    Returns:
        paddle.Tensor: float32 [B, L, heads * d] (differentiable).
    """
    _require(context)
    return _state["module"].visualbert_merge_heads(context, context.shape[1])


def _require(*tensors):
    if not all(applies(t) for t in tensors):
        raise ValueError("visualbert C++ kernel called on a tensor it does not apply to (float32, contiguous, CPU, "
                         "dygraph, extension loaded): check kernels.applies() first")


def bert_adam_(param, grad, next_m, next_v, lr, beta1, beta2, epsilon, weight_decay, clip_norm, clip_eps):
    """One BertAdam update in place, in one pass (the C++ kernel); see :class:`visualbert.optim.BertAdam`.

    Args:
        param, grad, next_m, next_v (paddle.Tensor): float32 CPU tensors of one shape; ``param``, ``next_m`` and
            ``next_v`` are updated in place.
        lr (float): the scheduled learning rate of this step.
        beta1, beta2, epsilon, weight_decay (float): BertAdam's hyperparameters (decay 0: none).
        clip_norm (float): per-tensor gradient clipping to this L2 norm (<= 0: none).
        clip_eps (float): added to the norm in the clip factor ``min(clip_norm / (norm + clip_eps), 1)``.

    Returns:
        bool: False when the kernel does not apply (then nothing was changed and the caller updates).
    """
    tensors = (param, grad, next_m, next_v)
    if not all(applies(t) for t in tensors) or len({tuple(t.shape) for t in tensors}) != 1:
        return False
    # detach(): the same storage, without the leaf-parameter check that forbids in-place ops on it
    _state["module"].visualbert_bert_adam_(param.detach(), grad, next_m, next_v, float(lr), float(beta1),
                                           1.0 - float(beta1), float(beta2), 1.0 - float(beta2), float(epsilon),
                                           float(weight_decay), float(clip_norm), float(clip_eps))
    return True


__all__ = ["applies", "gelu", "dropout", "layer_norm", "masked_softmax", "split_heads", "merge_heads", "bert_adam_",
           "load_cpu_kernels", "status", "build_directory", "compile_flags", "link_flags"]
