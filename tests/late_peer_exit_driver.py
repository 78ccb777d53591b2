"""Runs a training script's ``main`` so that a peer disconnects while rank 0 is inside the C library's ``exit``:

    python tests/late_peer_exit_driver.py SLOW_FINI.so DELAY SCRIPT.py [script arguments...]

Rank 0 loads ``SLOW_FINI.so``, whose destructor sleeps during ``exit`` (after the C++ static destructors, as a
library's own slow shutdown does); the other ranks wait DELAY seconds after training, so that their connections to
rank 0's TCPStore close inside that window (the abort ``distributed.exit_process`` prevents).
"""

import ctypes
import os
import runpy
import sys
import time

if __name__ == "__main__" and os.environ.get("PADDLE_TRAINER_ID") == "0":
    ctypes.CDLL(sys.argv[1])

from visualbert.cli import main_wrapper  # noqa: E402
from visualbert.engine import TrainerCallback  # noqa: E402


class LatePeerExit(TrainerCallback):
    def __init__(self, delay):
        self.delay = delay

    def on_train_end(self, trainer):
        if trainer.rank != 0:
            time.sleep(self.delay)


if __name__ == "__main__":
    delay, script, argv = float(sys.argv[2]), sys.argv[3], sys.argv[4:]
    main = runpy.run_path(script)["main"]
    main_wrapper(lambda: main(argv, callbacks=[LatePeerExit(delay)]))
