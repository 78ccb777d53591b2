"""Runs a training script's ``main`` with a callback by which every rank writes its final weights.

    python tests/rank_weights_driver.py DUMP_DIR SCRIPT.py [script arguments...]

writes ``DUMP_DIR/rank<r>.pdparams`` at the end of training (the multi-process tests compare them). The script's
``main`` runs under ``cli.main_wrapper``, as the script's own ``__main__`` does (its errors and its exit).
"""

import os
import runpy
import sys

import paddle

from visualbert.cli import main_wrapper
from visualbert.engine import TrainerCallback


class DumpRankWeights(TrainerCallback):
    def __init__(self, dump_dir):
        self.dump_dir = dump_dir

    def on_train_end(self, trainer):
        os.makedirs(self.dump_dir, exist_ok=True)
        paddle.save(trainer.model.state_dict(), os.path.join(self.dump_dir, f"rank{trainer.rank}.pdparams"))


if __name__ == "__main__":
    dump_dir, script, argv = sys.argv[1], sys.argv[2], sys.argv[3:]
    main = runpy.run_path(script)["main"]
    main_wrapper(lambda: main(argv, callbacks=[DumpRankWeights(dump_dir)]))
