"""Driver of tests/test_reliability.py::test_killed_at_random_points_of_checkpoint_writes_resumes_exactly.

Imports paddle once, then forks one child per cycle: the child resumes the run (``--resume_from latest`` through
:func:`visualbert.engine.fit`), writes one checkpoint and SIGKILLs itself at a random Python line inside the next checkpoint write (a trace
function counts the line events of ``save_checkpoint`` and everything it calls: ``save_pretrained``,
``paddle.save``, ``write_json``, ``atomic_path``, ``replace_dir``...). After every kill the parent checks that each
``step_<N>/`` on disk is complete and readable. Then one child finishes the run, another trains the same run
uninterrupted, and the parent prints a JSON report (the test asserts on it).

    python tests/kill_during_save_driver.py OUT_DIR CYCLES SEED
"""

import json
import os
import signal
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import paddle  # noqa: E402
from conftest import tiny_config  # noqa: E402

from visualbert import engine, rundir  # noqa: E402
from visualbert.config import TrainConfig  # noqa: E402
from visualbert.data import Collator  # noqa: E402
from visualbert.distributed import set_seed  # noqa: E402
from visualbert.modeling import VisualBertForVisualReasoning  # noqa: E402
from visualbert.safety import checkpoint_problem, latest_complete_checkpoint  # noqa: E402

DIM = 8
STEPS = 44  # 20 cycles advance 1 or 2 steps each


class Toy:
    def __init__(self, n=16, seed=0):
        rng = np.random.default_rng(seed)
        self.items = []
        for i in range(n):
            t = int(rng.integers(3, 7))
            feats = rng.standard_normal((3, DIM)).astype(np.float32)
            self.items.append({"input_ids": rng.integers(1000, 1100, t).astype(np.int64),
                               "token_type_ids": np.zeros(t, np.int64), "visual_embeds": feats,
                               "visual_token_type_ids": np.zeros(3, np.int64),
                               "labels": np.array(int(feats[0, 0] > 0), np.int64)})

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


rundir.git_commit = lambda path=None: (None, None)  # args.json's commit: two git calls per start, not tested here


def config(out, resume, save_steps=1):
    return TrainConfig(output_dir=out, learning_rate=1e-3, batch_size=4, eval_batch_size=8, max_steps=STEPS,
                       save_steps=save_steps, logging_steps=1, disable_tqdm=True, resume_from="latest" if resume else None,
                       metric_for_best=None, arguments={"output_dir": out})


def train(out, resume, save_steps=1):
    set_seed(0)
    model = VisualBertForVisualReasoning(tiny_config(hidden_size=16, num_attention_heads=2, intermediate_size=32,
                                                     visual_embedding_dim=DIM, num_labels=2, max_position_embeddings=32,
                                                     hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1))
    set_seed(1)
    engine.fit(config(out, resume, save_steps), model, Toy(), None, None, Collator())


def count_save_events(out):
    """(line events of one checkpoint write, the event at which its ``replace_dir`` starts), for the kill points."""
    original = engine.save_checkpoint
    counts, renames = [], []

    def counting(*args, **kwargs):
        n = [0]

        def tracer(frame, event, arg):
            if event == "line":
                n[0] += 1
            elif event == "call" and frame.f_code.co_name == "replace_dir":
                renames.append(n[0])
            return tracer

        sys.settrace(tracer)
        try:
            return original(*args, **kwargs)
        finally:
            sys.settrace(None)
            counts.append(n[0])

    engine.save_checkpoint = counting
    train(out, resume=False, save_steps=STEPS // 3)
    engine.save_checkpoint = original
    return int(np.median(counts)), int(np.median(renames))


def kill_at(k, skip=1):
    """Makes the process SIGKILL itself at the k-th line event counted inside checkpoint writes, after ``skip``
    complete writes (so that every cycle makes progress)."""
    original = engine.save_checkpoint
    remaining = [k]
    skipped = [0]

    def tracer(frame, event, arg):
        if event == "line":
            remaining[0] -= 1
            if remaining[0] <= 0:
                with open(os.path.join(sys.argv[1], "kills.txt"), "a") as f:
                    f.write(f"{frame.f_code.co_name} {os.path.basename(frame.f_code.co_filename)}:{frame.f_lineno}\n")
                os.kill(os.getpid(), signal.SIGKILL)
        return tracer

    def killing(*args, **kwargs):
        if skipped[0] < skip:
            skipped[0] += 1
            return original(*args, **kwargs)
        sys.settrace(tracer)
        try:
            return original(*args, **kwargs)
        finally:
            sys.settrace(None)

    engine.save_checkpoint = killing


def in_child(fn):
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            fn()
        except BaseException as e:  # noqa: BLE001 - reported through the exit status
            print(f"child error: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
            code = 1
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    return status


def main():
    out, cycles, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    rng = np.random.default_rng(seed)
    run, ref, calib = (os.path.join(out, name) for name in ("run", "ref", "calib"))
    events = []

    def calibrate():
        with open(os.path.join(out, "events"), "w") as f:
            json.dump(count_save_events(calib), f)

    assert in_child(calibrate) == 0
    with open(os.path.join(out, "events")) as f:
        per_save, rename_at = json.load(f)
    report = {"per_save_events": per_save, "replace_dir_at": rename_at, "cycles": []}
    for cycle in range(cycles):
        # every other kill around the end: writing trainer_state.json, the renames of replace_dir
        low = 1 if cycle % 2 == 0 else max(1, rename_at - 40)
        k = int(rng.integers(low, per_save + 1))
        status = in_child(lambda: (kill_at(k), train(run, resume=True)))
        steps = sorted(int(n[5:]) for n in os.listdir(run) if n.startswith("step_") and n[5:].isdigit())
        broken = {s: checkpoint_problem(os.path.join(run, f"step_{s}")) for s in steps}
        latest, skipped = latest_complete_checkpoint(run)
        report["cycles"].append({"kill_at": k, "killed": os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL,
                                 "steps": steps, "broken": {s: p for s, p in broken.items() if p},
                                 "latest": os.path.basename(latest) if latest else None, "skipped": skipped,
                                 "temporaries": sorted(n for n in os.listdir(run) if n.startswith((".tmp-", ".old-")))})
        events.append(k)
    report["finish_status"] = in_child(lambda: train(run, resume=True))
    # saving consumes no random numbers: the reference saves only at the end
    report["reference_status"] = in_child(lambda: train(ref, resume=False, save_steps=STEPS))
    a = paddle.load(os.path.join(ref, "final", "model_state.pdparams"))
    b = paddle.load(os.path.join(run, "final", "model_state.pdparams"))
    report["weights_differ"] = sorted(k for k in a if not np.array_equal(a[k].numpy(), b[k].numpy()))
    with open(os.path.join(out, "kills.txt")) as f:
        report["kill_points"] = f.read().splitlines()  # function file:line of each kill
    report["left_over"] = sorted(n for n in os.listdir(run) if n.startswith((".tmp-", ".old-")))
    print(json.dumps(report))


if __name__ == "__main__":
    main()
