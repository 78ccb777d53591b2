"""CPU runtime defaults, applied when :mod:`visualbert` is imported, before anything imports ``paddle``.

Why: ``import paddle`` sets ``OMP_NUM_THREADS=1`` when it is unset, so the MKL/oneDNN kernels run on one
core however many the machine has; and the MKL bundled with Paddle picks a slow (non-AVX2) code path on
AMD CPUs unless ``MKL_DEBUG_CPU_TYPE=5`` is set before it loads (measured ~2.7x on fp32 GEMM there; on
Intel CPUs the flag forces the AVX2 path instead of AVX-512 and HALVES the GEMM rate, so it is only set
on AMD).

Third: with Paddle 3's default ``FLAGS_use_stride_kernel=1``, ``transpose`` returns a strided view and the
following ``reshape``/``matmul`` materialises it through a generic strided-copy kernel that is ~7x slower
than the dense transpose kernel (BERT-base attention, batch 8: 25.7 ms vs 3.5 ms per head merge; the
attention block with its head split 99 ms vs 25 ms per layer). This package sets it to 0: views then
become copies, as in Paddle < 2.6 (nothing in this package writes through a view).

Every value is a default: ``os.environ.setdefault``, so a variable the user exported wins. Set
``VISUALBERT_NO_RUNTIME_DEFAULTS=1`` to skip all of it. Scripts must ``import visualbert`` (or any
``visualbert.*`` module) BEFORE ``import paddle``; if paddle is already loaded the thread count can
still be raised through ``paddle.set_num_threads`` equivalents, but the MKL code path cannot, and
:func:`apply_cpu_defaults` says so in its report.

Fourth: a ``paddle.inference`` predictor runs with ``FLAGS_paddle_num_threads`` threads (default 1) and, after
each run, leaves the calling thread's OpenMP/MKL thread count at 1, so a dygraph model in the same process
then runs on one core (measured with ``bench/coresident.py``: iomp5/MKL max threads 2 -> 1 after the first
predictor run). This package sets the flag to the core count, and :class:`visualbert.inference.Predictor`
re-applies the thread count after each run (:func:`configure_paddle_threads`).

This module must not import paddle (nor numpy: it is imported first).
"""

import os
import sys

OPT_OUT = "VISUALBERT_NO_RUNTIME_DEFAULTS"
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
STRIDE_FLAG = "FLAGS_use_stride_kernel"
PREDICTOR_THREADS_FLAG = "FLAGS_paddle_num_threads"

# What apply_cpu_defaults() decided at import time: {"applied": {var: value}, "kept": {var: value}, ...}.
REPORT = {}


def available_cores():
    """Cores this process may run on (CPU affinity / cgroup cpuset aware), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _cgroup_cpu_limit():
    """CPU quota of a cgroup v2 container (``cpu.max``), rounded up; None when unlimited or unknown."""
    try:
        with open("/sys/fs/cgroup/cpu.max") as f:
            quota, period = f.read().split()[:2]
        if quota == "max":
            return None
        return max(1, -(-int(quota) // int(period)))
    except (OSError, ValueError):
        return None


def cpu_vendor():
    """``GenuineIntel``, ``AuthenticAMD``, ... or ``""`` when unknown (non-Linux, non-x86)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("vendor_id"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def local_process_count(environ=None):
    """Processes of this job on this machine: ``PADDLE_LOCAL_SIZE`` (set by ``python -m paddle.distributed.launch``
    for every process it starts), else ``PADDLE_TRAINERS_NUM`` (older launchers, single node), else 1."""
    environ = os.environ if environ is None else environ
    for var in ("PADDLE_LOCAL_SIZE", "PADDLE_TRAINERS_NUM"):
        try:
            value = int(environ.get(var, ""))
        except ValueError:
            continue
        if value > 0:
            return value
    return 1


def default_threads(environ=None):
    """Math threads per process: the cores (or cgroup quota) divided among the job's processes on this machine,
    at least 1 (N launched ranks each taking every core would run N x cores threads)."""
    cores = available_cores()
    limit = _cgroup_cpu_limit()
    total = min(cores, limit) if limit else cores
    return max(1, total // local_process_count(environ))


def recommended_environment(environ=None):
    """The defaults for this machine: thread counts = available cores / local processes, the MKL code-path override on AMD, and
    Paddle's stride (view) kernels off (see the module docstring)."""
    env = {var: str(default_threads(environ)) for var in THREAD_VARIABLES}
    # the paddle.inference predictor runs its kernels with FLAGS_paddle_num_threads (default 1), whatever
    # set_cpu_math_library_num_threads says: measured busy 1.0 core of 2 without it, 2.0 with it
    env[PREDICTOR_THREADS_FLAG] = str(default_threads(environ))
    env[STRIDE_FLAG] = "0"
    if cpu_vendor() == "AuthenticAMD":
        env["MKL_DEBUG_CPU_TYPE"] = "5"
    return env


def apply_cpu_defaults(environ=None):
    """Puts :func:`recommended_environment` into ``environ`` (default ``os.environ``) where unset.

    Returns:
        dict: ``applied`` (variables set here), ``kept`` (already set by the user), ``paddle_loaded``
        (True when paddle was imported first: the variables then come too late for its math library),
        ``skipped`` (the opt-out variable is set).
    """
    environ = os.environ if environ is None else environ
    report = {"applied": {}, "kept": {}, "paddle_loaded": "paddle" in sys.modules, "skipped": False}
    if environ.get(OPT_OUT, "").strip() not in ("", "0"):
        report["skipped"] = True
        return report
    for var, value in recommended_environment(environ).items():
        if var in environ:
            report["kept"][var] = environ[var]
        else:
            environ[var] = value
            report["applied"][var] = value
    return report


def configure_paddle_threads():
    """After paddle is imported: sets its intra-op thread count to ``OMP_NUM_THREADS`` again (a
    ``paddle.inference`` predictor run leaves the calling thread's OpenMP/MKL count at 1, which would halve a
    dygraph model in the same process) and turns the stride kernels off unless the user set the flag.
    Returns the thread count in use."""
    import paddle

    if STRIDE_FLAG not in os.environ or os.environ[STRIDE_FLAG] == "0":
        paddle.set_flags({STRIDE_FLAG: False})
    threads = int(os.environ.get("OMP_NUM_THREADS") or default_threads())
    setter = getattr(paddle, "set_num_threads", None) or getattr(paddle.base.core, "set_num_threads", None)
    if setter is not None:
        setter(threads)
    return threads


REPORT.update(apply_cpu_defaults())
