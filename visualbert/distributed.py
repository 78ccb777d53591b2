"""The process environment of a run: rank and world size (from ``paddle.distributed.launch``), the process group,
per-rank logging and seeding."""

from __future__ import annotations

import atexit
import ctypes
import logging
import os
import random
import sys
import threading
from typing import NoReturn

import numpy as np
import paddle

_PARALLEL_READY = False


def world_size() -> int:
    """int: number of training processes (1 without ``paddle.distributed.launch``)."""
    return int(os.environ.get("PADDLE_TRAINERS_NUM", "1"))


def rank() -> int:
    """int: this process's rank (0 without ``paddle.distributed.launch``)."""
    return int(os.environ.get("PADDLE_TRAINER_ID", "0"))


def is_main_process() -> bool:
    """bool: rank 0, the only process that writes files."""
    return rank() == 0


def init_distributed() -> int:
    """Initialises the collective environment when launched with more than one process (no-op otherwise:
    with world size 1 paddle's collectives raise "global group is not initialized"). Returns the world size."""
    global _PARALLEL_READY
    if world_size() > 1 and not _PARALLEL_READY:
        paddle.distributed.init_parallel_env()
        _PARALLEL_READY = True
    return world_size()


def exit_process(status: int) -> NoReturn:
    """Ends the process with exit ``status``: ``sys.exit`` in a single process. In a launched multi-process run:
    Python's own exit work (``threading._shutdown``: its exit hooks and the join of non-daemon threads; every
    ``atexit`` callback: logging flushed, multiprocessing's children reaped, Paddle's process groups destroyed), the
    Python and C stdio buffers flushed, then ``os._exit``. That skips the rest of interpreter finalization and the C
    library's exit handlers, C++ static destructors included; everything the project writes is closed by its
    ``with`` / ``finally`` before this point.

    Why: rank 0 hosts Paddle's TCPStore server (paddle 3.3.1, libuv), whose thread logs with glog (a ``VLOG`` in
    ``LibUVClient::readCallback``) when a peer closes its connection. A peer closing while rank 0's static
    destructors run finds glog's lock destroyed, and rank 0 dies with SIGABRT and no message after a finished run
    (core dump: the main thread in ``_dl_fini``, the store thread in ``google::InitVLOG3__`` -> ``abort``). It hit
    about one two-process test per full suite here; a library with a slow shutdown widens the window to every run
    (``tests/test_distributed.py``). Without the destructors there is no such window. The world size decides, not a
    finished ``init_distributed``: a failed process-group setup may already have started the store.
    """
    if world_size() == 1:
        sys.exit(status)
    try:
        threading._shutdown()  # what Python's own shutdown calls first (concurrent.futures stops its threads here)
        atexit._run_exitfuncs()
    finally:  # a second Ctrl-C while joining must not bring the C library's exit back
        for stream in (sys.stdout, sys.stderr):
            try:
                if stream is not None:
                    stream.flush()
            except (OSError, ValueError):  # closed or a broken pipe: nothing left to lose
                pass
        try:
            ctypes.CDLL(None).fflush(None)  # C stdio buffers (Paddle's C++ prints)
        except (OSError, AttributeError):
            pass
        os._exit(status)


def setup_logging() -> None:
    """INFO on rank 0, WARNING elsewhere, each line tagged with the rank."""
    level = logging.INFO if is_main_process() else logging.WARNING
    handler = _CurrentStderrHandler()
    handler.setFormatter(logging.Formatter(f"[%(asctime)s rank{rank()}] %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler], force=True)


class _CurrentStderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a record is emitted, not to the stream of the first call (a
    replaced or closed stderr, e.g. a caller's redirect, would otherwise make every later record a logging error)."""

    def __init__(self):
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


def set_seed(seed: int) -> None:
    """Seeds python's, numpy's and paddle's generators."""
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    paddle.seed(seed)


def setup_process(seed: int) -> None:
    """What every script does once before building anything: logging, the process group, the seed."""
    setup_logging()
    init_distributed()
    set_seed(seed)
