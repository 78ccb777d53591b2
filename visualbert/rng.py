"""Random-number state for checkpoints that resume on another number of devices (or CPU <-> GPU).

``paddle.get_rng_state()`` returns one generator state per VISIBLE device of the current kind (all GPUs of the
machine, whichever this process uses) and ``paddle.set_rng_state`` refuses a list of another length ("Length of
gpu state list should be equal to the gpu device count"), so a checkpoint written with 4 visible GPUs cannot be
resumed with 2, nor on CPU. A process only draws from the CPU generator and the generator of ITS device
(dropout on the GPU), so :func:`get_state` saves exactly those two, and :func:`set_state` restores the device
state into whatever device this process runs on, when it is of the same kind (a GPU state is not a CPU state:
resuming a GPU run on CPU restores Python, numpy and the CPU generator, and logs that dropout starts a new
stream).

State layout (a picklable dict)::

    {"python": random.getstate(), "numpy": np.random.get_state(), "paddle_cpu": GeneratorState,
     "paddle_device": {"kind": "gpu", "state": GeneratorState} or None}

Checkpoints written before this module hold ``"paddle": paddle.get_rng_state()`` (a list); :func:`set_state`
reads them too, taking the entry of this process's device when the list has one.
"""

import logging
import random

import numpy as np

logger = logging.getLogger(__name__)


def _device():
    """(kind, index) of the device this process computes on: ("cpu", None), ("gpu", 0), ("xpu", 1), ..."""
    import paddle

    name = paddle.device.get_device()
    kind, _, index = name.partition(":")
    return kind, (int(index) if index else None)


def _device_generator(kind, index):
    """The default generator of device ``kind:index`` (None for the CPU: that one is saved separately)."""
    from paddle.base import core

    if kind == "gpu":
        return core.default_cuda_generator(index or 0)
    if kind == "xpu":
        return core.default_xpu_generator(index or 0)
    return None


def _cpu_generator():
    from paddle.base import core

    return core.default_cpu_generator()


def get_state():
    """Python, numpy, Paddle-CPU and current-device generator states (see the module docstring)."""
    kind, index = _device()
    generator = _device_generator(kind, index)
    return {"python": random.getstate(), "numpy": np.random.get_state(), "paddle_cpu": _cpu_generator().get_state(),
            "paddle_device": None if generator is None else {"kind": kind, "state": generator.get_state()}}


def set_state(state):
    """Restores :func:`get_state` output (or a legacy ``{"python", "numpy", "paddle": [states]}`` dict) on any
    number of devices. Returns the list of generators restored (``"python"``, ``"numpy"``, ``"paddle_cpu"``,
    ``"paddle_gpu"``, ...)."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    restored = ["python", "numpy"]
    kind, index = _device()
    generator = _device_generator(kind, index)
    if "paddle" in state and "paddle_cpu" not in state:  # legacy: paddle.get_rng_state() of the saving process
        legacy = list(state["paddle"])
        if kind == "cpu":
            cpu_state, device_state = (legacy[0] if len(legacy) == 1 else None), None
        else:
            cpu_state, device_state = None, (legacy[index or 0] if legacy and (index or 0) < len(legacy) else None)
        if cpu_state is not None:
            _cpu_generator().set_state(cpu_state)
            restored.append("paddle_cpu")
        if device_state is not None and generator is not None:
            generator.set_state(device_state)
            restored.append(f"paddle_{kind}")
        return restored
    _cpu_generator().set_state(state["paddle_cpu"])
    restored.append("paddle_cpu")
    saved = state.get("paddle_device")
    if saved is not None and generator is not None and saved["kind"] == kind:
        generator.set_state(saved["state"])
        restored.append(f"paddle_{kind}")
    elif saved is not None or generator is not None:
        logger.info("RNG state was saved on %s, resuming on %s: the device random stream (dropout) keeps the one "
                    "seeded at start", saved["kind"] if saved else "cpu", kind)
    return restored


__all__ = ["get_state", "set_state"]
