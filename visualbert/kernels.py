"""Faster CPU kernels for the non-GEMM ops of the model, with plain Paddle as the fallback.

Paddle's CPU kernel of the exact (erf) GELU is scalar and single-threaded (measured ~2-3x torch's on the
BERT-base FFN shape, forward and backward). :func:`gelu` runs a small C++ extension instead
(``visualbert/csrc/cpu_kernels.cc``: vectorised erf/exp polynomials, OpenMP threads), compiled from source with
``paddle.utils.cpp_extension`` the first time it is needed on a machine and cached under
``$VISUALBERT_KERNELS_DIR`` (default ``~/.cache/visualbert/kernels``). It is used only where it is exact to
float32 precision and safe: float32 CPU tensors in dygraph mode (``paddle.jit.to_static`` / export keep
Paddle's op, so exported models need no extension). Anything else, a missing compiler or a failed build
(one warning), or ``VISUALBERT_CPU_KERNELS=0`` gives ``F.gelu``.

Accuracy (tests/test_kernels.py): |gelu - float64 GELU| < 1.1e-6 over [-10, 10] (Paddle's own float32 kernel
is 6.5e-7 off on N(0, 1) inputs), gradients likewise.
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
    AVX2/FMA when this CPU has them (the build is per machine)."""
    flags = ["-O3", "-fopenmp", "-fno-trapping-math"]
    cpu = _cpu_flags()
    if {"avx2", "fma"} <= cpu:
        flags += ["-mavx2", "-mfma"]
    return flags


def build_directory():
    """str: where the extension is built: one directory per source, flags and Paddle version."""
    import paddle

    with open(SOURCE, "rb") as f:
        digest = hashlib.sha256(f.read())
    digest.update(" ".join(compile_flags()).encode())
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
                                        extra_ldflags=["-fopenmp"], build_directory=directory, verbose=False)
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


def _use_extension(x):
    import paddle

    return (paddle.in_dynamic_mode() and x.dtype == paddle.float32 and x.place.is_cpu_place()
            and load_cpu_kernels() is not None)


def gelu(x):
    """Exact GELU ``x * Phi(x)``; the C++ kernel for float32 CPU tensors in dygraph, else ``F.gelu``.

    Args:
        x (paddle.Tensor): any shape.

    Returns:
        paddle.Tensor: same shape and dtype (differentiable).
    """
    if _use_extension(x):
        return _state["module"].visualbert_gelu(x)
    import paddle.nn.functional as F

    return F.gelu(x, approximate=False)


__all__ = ["gelu", "load_cpu_kernels", "status", "build_directory", "compile_flags"]
