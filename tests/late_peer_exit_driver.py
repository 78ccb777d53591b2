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

from visualbert.cli import main_wrapper
from visualbert.engine import TrainerCallback


class LatePeerExit(TrainerCallback):
    def __init__(self, delay):
        self.delay = delay

    def on_train_end(self, trainer):
        if trainer.rank != 0:
            time.sleep(self.delay)


if __name__ == "__main__":
    library, delay, script, argv = sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4:]
    if os.environ.get("PADDLE_TRAINER_ID") == "0":
        ctypes.CDLL(library)  # its destructor runs in exit's last phase, whenever it was loaded
    main = runpy.run_path(script)["main"]
    main_wrapper(lambda: main(argv, callbacks=[LatePeerExit(delay)]))
