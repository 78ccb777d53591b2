"""Two CPU processes (gloo) under ``python -m paddle.distributed.launch``: with BertAdam (the original's optimizer,
per-tensor clipping on the all-reduced gradients) the updates of 2 processes × batch B equal 1 process × batch 2B,
both ranks end with identical weights, the evaluation sharded over the 2 ranks gives the 1-process metrics, and only
rank 0 writes files."""

import os
import shutil
import subprocess
import sys

import numpy as np
import paddle
import pytest

from visualbert.fileio import read_jsonl

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = ["--hidden_size", "32", "--num_hidden_layers", "2", "--num_attention_heads", "2", "--intermediate_size", "64",
         "--disable_tqdm", "--dropout", "0", "--learning_rate", "1e-3", "--warmup", "0", "--logging_steps", "1",
         "--save_steps", "1", "--max_seq_length", "40", "--seed", "7"]


@pytest.fixture(scope="module")
def synth(synthetic):
    return synthetic(tasks=("nlvr2",), nlvr2_dim=32, nlvr2_sets=10, nlvr2_regions=4)


DRIVER = os.path.join(ROOT, "tests", "rank_weights_driver.py")  # every rank writes its final weights


def run(synth, out, nproc, batch, steps, dump, log_dir, optimizer="bertadam"):
    script = [DRIVER, dump, "NLVR2/run_nlvr2.py", "--data_dir", f"{synth}/nlvr2", "--features", f"{synth}/detectron_fix_144",
              "--output_dir", out, "--batch_size", str(batch), "--max_steps", str(steps), "--eval_steps", str(steps),
              "--optimizer", optimizer] + MODEL
    if nproc == 1:
        cmd = [sys.executable] + script
    else:
        cmd = [sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", str(nproc), "--log_dir", log_dir] + script
    launch(cmd, log_dir)


def launch(cmd, log_dir):
    """Runs ``cmd`` (a launch or a plain process) and asserts it succeeded, showing the ranks' logs if not."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PADDLE_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")]))
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=400, env=env)
    logs = ""
    if os.path.isdir(log_dir):
        for name in sorted(os.listdir(log_dir)):
            with open(os.path.join(log_dir, name), errors="replace") as f:
                logs += f"--- {name}\n" + f.read()[-3000:]
    assert p.returncode == 0, p.stderr[-3000:] + logs


def load(path):
    return {k: v.numpy() for k, v in paddle.load(path).items()}


@pytest.mark.parametrize("optimizer", ["bertadam", "adamw"])
def test_two_processes_equal_one_process_with_double_batch(synth, tmp_path, optimizer):
    one, two = str(tmp_path / "one"), str(tmp_path / "two")
    run(synth, one, 1, 4, 2, str(tmp_path / "dump1"), str(tmp_path / "log1"), optimizer)
    run(synth, two, 2, 2, 2, str(tmp_path / "dump2"), str(tmp_path / "log2"), optimizer)

    # First update: step_1 of both runs.
    w1 = load(os.path.join(one, "step_1", "model_state.pdparams"))
    w2 = load(os.path.join(two, "step_1", "model_state.pdparams"))
    for k in w1:
        np.testing.assert_allclose(w2[k], w1[k], rtol=1e-5, atol=1e-6, err_msg=k)
    # and training changed the weights (the comparison is not vacuous)
    final1 = load(os.path.join(one, "final", "model_state.pdparams"))
    assert any(not np.allclose(w1[k], final1[k]) for k in w1)

    # Both ranks end with identical weights (all-reduced gradients, same optimizer state).
    r0 = load(str(tmp_path / "dump2" / "rank0.pdparams"))
    r1 = load(str(tmp_path / "dump2" / "rank1.pdparams"))
    for k in r0:
        np.testing.assert_array_equal(r0[k], r1[k], err_msg=k)
    final2 = load(os.path.join(two, "final", "model_state.pdparams"))
    for k in final2:
        np.testing.assert_allclose(final2[k], final1[k], rtol=1e-4, atol=1e-5, err_msg=k)

    # Only rank 0 writes: the same files as the single-process run, each metrics record written once.
    assert sorted(os.listdir(two)) == sorted(os.listdir(one))
    rec1, rec2 = read_jsonl(os.path.join(one, "metrics.jsonl")), read_jsonl(os.path.join(two, "metrics.jsonl"))
    assert [(r["type"], r["step"]) for r in rec2] == [(r["type"], r["step"]) for r in rec1] == \
        [("train", 1), ("train", 2), ("eval", 2)]
    ev1, ev2 = rec1[-1], rec2[-1]
    assert ev1["accuracy"] == ev2["accuracy"]
    assert ev2["loss"] == pytest.approx(ev1["loss"], rel=1e-4)


EXIT_SCRIPT = """
import atexit, sys
atexit.register(lambda: sys.stdout.write("unflushed, last"))  # registered before any import's: runs last
import concurrent.futures, ctypes, threading, time
import visualbert.distributed as distributed
atexit.register(lambda: print("atexit callback ran", flush=True))
worker = threading.Thread(target=lambda: (time.sleep(0.3), print("thread finished", flush=True)))
worker.start()
concurrent.futures.ThreadPoolExecutor(1).submit(time.sleep, 0.2)  # never shut down: Python's exit hook stops it
ctypes.CDLL(None).puts(b"C stdio")  # a pipe: fully buffered in the C library
try:
    distributed.exit_process(3)
except SystemExit as e:
    print("SystemExit", e.code)
    raise
print("after exit_process")
"""


@pytest.mark.parametrize("world", ["2", "1"])
def test_exit_process_keeps_pythons_exit_work(world):
    """Launched multi-process: exit_process skips only what follows Python's exit work (the TCPStore abort), so the
    status, the buffered Python and C output, a running thread, an executor never shut down and the atexit callbacks
    are all kept, in Python's order; one process: a plain SystemExit."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # buffered, or the flushes go untested
    env.update(PADDLE_TRAINERS_NUM=world, PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])))
    p = subprocess.run([sys.executable, "-c", EXIT_SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 3, p.stderr[-2000:]
    out = p.stdout
    assert "C stdio" in out and "unflushed, last" in out
    assert "thread finished" in out and "atexit callback ran" in out
    assert out.index("thread finished") < out.index("atexit callback ran")  # Python's own order
    assert "after exit_process" not in out
    assert ("SystemExit 3" in out) == (world == "1")


SLOW_FINI = "#include <unistd.h>\n__attribute__((destructor)) static void slow_fini(void) { usleep(2000000); }\n"


def test_a_peer_closing_while_rank_0_exits_does_not_abort_it(synth, tmp_path):
    """Rank 0's exit is held 2 s after the C++ static destructors (a library destructor sleeping) and rank 1 closes
    its connections 1 s after training, inside that window: with a plain exit rank 0 died with SIGABRT (exit -6)
    every time; exit_process keeps the finished run's status 0."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.skip("no C compiler for the slow-exit library")
    (tmp_path / "slow_fini.c").write_text(SLOW_FINI)
    library = str(tmp_path / "libslow_fini.so")
    subprocess.run([compiler, "-shared", "-fPIC", "-o", library, str(tmp_path / "slow_fini.c")], check=True)
    driver = os.path.join(ROOT, "tests", "late_peer_exit_driver.py")
    log_dir = str(tmp_path / "log")
    cmd = [sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", "2", "--log_dir", log_dir, driver,
           library, "1.0", "NLVR2/run_nlvr2.py", "--data_dir", f"{synth}/nlvr2", "--features",
           f"{synth}/detectron_fix_144", "--output_dir", str(tmp_path / "out"), "--batch_size", "2", "--max_steps", "1",
           "--eval_steps", "1"] + MODEL
    launch(cmd, log_dir)
    assert os.path.isfile(str(tmp_path / "out" / "final" / "model_state.pdparams"))
