"""visualbert.data.loader.BatchLoader: a data error, a dead or stuck worker, or Ctrl-C ends the iteration within
seconds for 0, 1 and 2 workers. Hang cases run in a subprocess with a timeout: a hang FAILS the test."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from visualbert.data import MissingFeaturesError
from visualbert.data.loader import BatchLoader, LoaderWorkerError, sequential_batches

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HANG_SECONDS = 60  # generous for a loaded 2-core machine; a working loader needs ~1 s

PRELUDE = textwrap.dedent("""
    import os, sys, time
    import numpy as np
    from visualbert.data.errors import MissingFeaturesError, with_example_context
    from visualbert.data.loader import BatchLoader

    class Data:
        def __init__(self, bad=None, mode="raise"):
            self.bad, self.mode = bad, mode
        def __len__(self):
            return 40
        def __getitem__(self, i):
            if i == self.bad:
                if self.mode == "raise":
                    e = MissingFeaturesError(f"no region features for image 'img{i}': /data/img{i}.npy does not exist")
                    raise with_example_context(e, f"example {i} (question_id {1000 + i}) of /data/imdb.npy") from e
                if self.mode == "die":
                    os.kill(os.getpid(), 9)
                if self.mode == "sleep":
                    time.sleep(3600)
            if self.mode == "slow":
                time.sleep(0.05)
            return {"x": np.full(3, i, dtype=np.float32)}

    def collate(samples):
        return {"x": np.stack([s["x"] for s in samples])}

    batches = [list(range(s, s + 4)) for s in range(0, 40, 4)]
""")


def run_script(body, timeout=HANG_SECONDS):
    """Runs PRELUDE + body in a fresh interpreter; a timeout is a hang and fails the test."""
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, "-c", PRELUDE + textwrap.dedent(body)], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"HANG: no exit within {timeout} s\nstdout: {out}\nstderr: {err[-2000:]}")
    return proc.returncode, out, err


@pytest.mark.parametrize("workers", [0, 1, 2])
def test_data_error_stops_iteration_with_the_datasets_message(workers):
    rc, out, err = run_script(f"""
        loader = BatchLoader(Data(bad=21), batches, collate, num_workers={workers}, to_tensor=False)
        seen = 0
        try:
            for batch in loader:
                seen += 1
        except MissingFeaturesError as e:
            print("CAUGHT", seen, e)
            sys.exit(3)
    """)
    assert rc == 3, err
    # batches 0..4 are complete (example 21 is in batch 5); the message names the file and the example
    assert out.startswith("CAUGHT 5 ") and "/data/img21.npy does not exist" in out
    assert "example 21 (question_id 1021) of /data/imdb.npy" in out


@pytest.mark.parametrize("workers", [1, 2])
def test_dead_worker_is_an_error_naming_the_examples(workers):
    rc, out, err = run_script(f"""
        from visualbert.data.loader import LoaderWorkerError
        try:
            list(BatchLoader(Data(bad=13, mode="die"), batches, collate, num_workers={workers}, to_tensor=False))
        except LoaderWorkerError as e:
            print("CAUGHT", e)
            sys.exit(3)
    """)
    assert rc == 3, err
    assert "died with SIGKILL" in out and "examples [12, 13, 14, 15]" in out


def test_stuck_worker_times_out():
    rc, out, err = run_script("""
        from visualbert.data.loader import LoaderWorkerError
        try:
            list(BatchLoader(Data(bad=5, mode="sleep"), batches, collate, num_workers=2, timeout=2, to_tensor=False))
        except LoaderWorkerError as e:
            print("CAUGHT", e)
            sys.exit(3)
    """)
    assert rc == 3, err
    assert "gave no batch in 2 s" in out and "examples [4, 5, 6, 7]" in out


@pytest.mark.parametrize("workers", [0, 2])
def test_sigint_stops_promptly_and_leaves_no_worker(workers):
    env = dict(os.environ, PYTHONPATH=ROOT)
    body = f"""
        loader = BatchLoader(Data(mode="slow"), batches * 1000, collate, num_workers={workers}, to_tensor=False)
        for i, batch in enumerate(loader):
            if i == 2:
                import multiprocessing
                print("PIDS", " ".join(str(p.pid) for p in multiprocessing.active_children()), flush=True)
    """
    # A suite started in the background by a non-interactive shell has SIGINT ignored, and a child inheriting
    # SIG_IGN never gets Python's KeyboardInterrupt handler: the child installs it itself.
    restore_sigint = "import signal\nsignal.signal(signal.SIGINT, signal.default_int_handler)\n"
    proc = subprocess.Popen([sys.executable, "-c", restore_sigint + PRELUDE + textwrap.dedent(body)], env=env,
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("PIDS"), proc.stderr.read()
        children = [int(p) for p in line.split()[1:]]
        assert len(children) == workers
        proc.send_signal(signal.SIGINT)
        start = time.time()
        _, err = proc.communicate(timeout=HANG_SECONDS)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("HANG: SIGINT did not stop the loader")
    assert time.time() - start < 10
    assert proc.returncode != 0 and "KeyboardInterrupt" in err
    for pid in children:
        assert not _alive(pid), f"worker {pid} outlived the main process"


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie is dead
        return f.read().split()[2] != "Z"


# ------------------------------------------------------------------------------------------ in-process
class Squares:
    def __len__(self):
        return 23

    def __getitem__(self, i):
        return {"x": np.arange(3, dtype=np.float32) + i * i, "id": i}


def stack(samples):
    return {"x": np.stack([s["x"] for s in samples]), "id": [s["id"] for s in samples]}


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_workers_give_the_same_batches_in_sampler_order(workers):
    order = np.random.default_rng(0).permutation(23).tolist()
    batches = [order[s:s + 5] for s in range(0, 23, 5)]
    expected = [stack([Squares()[i] for i in b]) for b in batches]
    got = list(BatchLoader(Squares(), batches, stack, num_workers=workers, prefetch=1, to_tensor=False))
    assert len(got) == len(expected) == 5
    for g, e in zip(got, expected):
        assert g["id"] == e["id"] and np.array_equal(g["x"], e["x"])


def test_real_collator_gives_numpy_in_workers_and_paddle_tensors_out():
    import paddle

    from visualbert.data.collate import Collator

    class Samples:
        def __len__(self):
            return 6

        def __getitem__(self, i):
            n = 2 + i % 3
            return {"input_ids": np.arange(1, n + 1), "token_type_ids": np.zeros(n, np.int64),
                    "visual_embeds": np.full((2, 4), i, np.float32), "question_id": 100 + i}

    batches = [[0, 1, 2], [3, 4, 5]]
    direct = [Collator()([Samples()[i] for i in b]) for b in batches]
    for workers in (0, 2):
        got = list(BatchLoader(Samples(), batches, Collator(), num_workers=workers))
        for g, d in zip(got, direct):
            assert isinstance(g["input_ids"], paddle.Tensor) and isinstance(g["visual_embeds"], paddle.Tensor)
            assert g["question_id"] == d["question_id"]
            for key in ("input_ids", "attention_mask", "visual_embeds", "visual_attention_mask"):
                assert np.array_equal(g[key].numpy(), d[key].numpy()), key


def test_break_terminates_the_workers():
    loader = BatchLoader(Squares(), [[i] for i in range(23)], stack, num_workers=2, to_tensor=False)
    it = iter(loader)
    next(it)
    workers = list(loader._workers)
    assert len(workers) == 2 and all(p.is_alive() for p in workers)
    it.close()  # what a ``break`` out of the for loop does when the iterator is dropped
    assert not any(p.is_alive() for p in workers) and loader._workers == []


def test_unpicklable_worker_error_still_reaches_the_main_process():
    class Unpicklable(Exception):
        def __init__(self, a, b):
            super().__init__(f"{a} {b}")

    class Bad(Squares):
        def __getitem__(self, i):
            if i == 3:
                raise Unpicklable("broken", lambda: 0)
            return super().__getitem__(i)

    with pytest.raises(LoaderWorkerError, match=r"Unpicklable: broken .* \[in a loader worker, batch 1\]") as info:
        list(BatchLoader(Bad(), [[0, 1, 2], [3, 4]], stack, num_workers=1, to_tensor=False))
    assert "raise Unpicklable" in info.value.worker_traceback


def test_vqa_missing_feature_file_is_one_error_for_every_worker_count(tmp_path):
    """The issue's reproduction at the data layer: one feature file of the VQA train split removed."""
    from visualbert.data import VQA2Dataset, imdb_files
    from visualbert.data.collate import Collator
    from visualbert.data.synthetic import generate
    from visualbert.tokenizer import load_tokenizer

    generate(str(tmp_path), num_images=10, questions_per_image=2, regions=3, vqa_dim=32, tasks=("vqa",))
    victim = tmp_path / "detectron_fix_100" / "fc6" / "vqa" / "train2014" / "COCO_train2014_000000000004.npy"
    os.remove(victim)
    ds = VQA2Dataset(imdb_files(str(tmp_path / "vqa2" / "imdb"), "train"), str(tmp_path / "detectron_fix_100"),
                     load_tokenizer(), feature_dim=32)
    batches = [list(range(s, min(s + 2, len(ds)))) for s in range(0, len(ds), 2)]
    for workers in (0, 1, 2):
        start = time.time()
        with pytest.raises(MissingFeaturesError) as info:
            list(BatchLoader(ds, batches, Collator(), num_workers=workers))
        assert time.time() - start < 30
        message = str(info.value)
        assert str(victim) in message and "while loading example" in message and "imdb_train2014.npy" in message


def test_sequential_batches():
    assert sequential_batches(7, 3) == [[0, 1, 2], [3, 4, 5], [6]]
    assert sequential_batches(0, 3) == []
    with pytest.raises(ValueError, match="batch size must be >= 1, got 0"):
        sequential_batches(7, 0)
