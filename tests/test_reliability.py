"""Issue 8 through the real scripts and the engine: a run never hangs, never destroys, never trains on poison.

Each test asserts the exit status, the one ``error:`` line (file and example named) and what is on disk afterwards.
Scripts run in subprocesses where a hang is possible (a timeout FAILS the test, it is never a skip); elsewhere
``cli.main_wrapper`` runs the script's ``main`` in-process (same exit status and stderr, seconds cheaper).
The fault-injection test kills a run at random points of its checkpoint writes 20 times
(tests/kill_during_save_driver.py).
"""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import paddle
import pytest
from test_engine import ToyNLVR2, make_args, tiny_model

from visualbert.checkpoints import list_checkpoints
from visualbert.cli import main_wrapper
from visualbert.data import Collator
from visualbert.engine import Trainer, TrainerCallback
from visualbert.fileio import read_jsonl
from visualbert.safety import NonFiniteLossError, RefusedError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DIM = 32
TINY = ["--hidden_size", "32", "--num_hidden_layers", "1", "--num_attention_heads", "2", "--intermediate_size", "64",
        "--disable_tqdm", "--batch_size", "4", "--num_train_epochs", "1", "--max_seq_length", "40",
        "--logging_steps", "1", "--save_steps", "2"]
VQA_TRAIN = "detectron_fix_100/fc6/vqa/train2014/COCO_train2014_000000000005.npy"


@pytest.fixture()
def data(synthetic, tmp_path):
    """A fresh copy (cases break it) of a tiny synthetic VQA2 + NLVR2 + VCR set."""
    import shutil

    src = synthetic(num_images=20, vqa_dim=DIM, nlvr2_dim=DIM, vcr_dim=DIM, nlvr2_sets=10, vcr_examples=12, regions=4,
                    nlvr2_regions=4)
    dst = str(tmp_path / "data")
    shutil.copytree(src, dst)
    return dst


def vqa(b):
    return ["--imdb_dir", f"{b}/vqa2/imdb", "--features", f"{b}/detectron_fix_100", "--train_split", "train",
            "--eval_split", "val"]


def script_main(relpath):
    import importlib.util

    spec = importlib.util.spec_from_file_location("rel_" + relpath.replace("/", "_")[:-3], os.path.join(ROOT, relpath))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def wrapped(relpath, argv, capsys, monkeypatch, **kw):
    """(exit status, stderr) of ``main_wrapper(main)`` with ``sys.argv`` = the script + ``argv``."""
    main = script_main(relpath)
    monkeypatch.setattr(sys, "argv", [relpath] + list(argv))
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main_wrapper(lambda: main(argv, **kw))
    return exit_info.value.code, capsys.readouterr().err


def error_line(stderr):
    lines = [x for x in stderr.strip().splitlines() if x.strip()]
    assert "Traceback" not in stderr, stderr[-3000:]
    assert lines and lines[-1].startswith("error: "), stderr[-3000:]
    return lines[-1]


def run_script(argv, timeout=240, **kw):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])))
    proc = subprocess.Popen([sys.executable] + argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, **kw)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"HANG: no exit within {timeout} s\nstderr: {err[-2000:]}")
    return proc.returncode, out, err


# ------------------------------------------------------------------------------------------ A. never hang
@pytest.mark.parametrize("workers", ["0", "2"])
def test_missing_feature_mid_epoch_is_one_line_for_every_worker_count(data, workers):
    os.remove(f"{data}/{VQA_TRAIN}")
    out = f"{data}/out"
    start = time.time()
    rc, _, err = run_script(["VQA2/run_vqa2.py"] + vqa(data) + TINY + ["--output_dir", out, "--num_workers", workers])
    assert rc == 2, err[-3000:]
    line = error_line(err)
    assert f"{data}/{VQA_TRAIN} does not exist" in line and "while loading example" in line and "question_id" in line
    assert "Blocking queue" not in err
    assert not os.path.exists(f"{out}/final") and not os.path.exists(f"{out}/best")
    assert time.time() - start < 200


def test_sigterm_stops_training_with_workers_and_keeps_complete_checkpoints(data):
    out = f"{data}/out"
    argv = ["VQA2/run_vqa2.py"] + vqa(data) + TINY[:-6] + ["--num_train_epochs", "200", "--save_steps", "2",
                                                            "--max_seq_length", "40",
                                                            "--logging_steps", "1", "--num_workers", "2",
                                                            "--output_dir", out, "--no_eval"]
    env = dict(os.environ, PYTHONPATH=ROOT)
    log = open(f"{data}/stderr.txt", "w+")  # a file, not a pipe: a full pipe would block the run, not the signal
    proc = subprocess.Popen([sys.executable] + argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log,
                            text=True, start_new_session=True)
    try:
        deadline = time.time() + 200
        while not list_checkpoints(out) and time.time() < deadline and proc.poll() is None:
            time.sleep(0.2)
        assert list_checkpoints(out), "no checkpoint within 200 s"
        proc.send_signal(signal.SIGTERM)
        sent = time.time()
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail("HANG: SIGTERM did not stop the run within 60 s")
    log.seek(0)
    err = log.read()
    assert time.time() - sent < 30
    assert proc.returncode == 128 + signal.SIGTERM, err[-3000:]
    assert error_line(err).startswith("error: stopped by SIGTERM")
    # no loader worker outlives the run (they share its session)
    time.sleep(1)
    left = subprocess.run(["pgrep", "-s", str(proc.pid)], capture_output=True, text=True).stdout.split()
    assert not left, f"worker processes left: {left}"
    from visualbert.safety import checkpoint_problem

    for _, path in list_checkpoints(out):
        assert checkpoint_problem(path) is None


def test_a_signal_during_a_checkpoint_write_lets_it_complete_then_stops(tmp_path, capsys, monkeypatch):
    class SignalMidSave(TrainerCallback):
        def on_save_partial(self, trainer, step, tmp_dir):
            os.kill(os.getpid(), signal.SIGINT)

    out = tmp_path / "run"

    def main():
        Trainer(make_args(out, batch_size=2, save_steps=2, max_steps=6), tiny_model(), ToyNLVR2(12), Collator(),
                callbacks=[SignalMidSave()]).train()

    monkeypatch.setattr(sys, "argv", ["train"])
    with pytest.raises(SystemExit) as exit_info:
        main_wrapper(main)
    assert exit_info.value.code == 130
    assert error_line(capsys.readouterr().err).startswith("error: stopped by SIGINT")
    assert [s for s, _ in list_checkpoints(str(out))] == [2]  # completed, then stopped before step 3
    assert not [n for n in os.listdir(out) if n.startswith(".tmp")]


# ------------------------------------------------------------------------------------------ B. never destroy
def test_overwrite_refuses_user_files_and_the_data_root(data, capsys, monkeypatch):
    user = f"{data}/mine"
    os.makedirs(user)
    with open(f"{user}/thesis.tex", "w") as f:
        f.write("precious")
    rc, err = wrapped("VQA2/run_vqa2.py", vqa(data) + TINY + ["--output_dir", user, "--overwrite_output_dir"], capsys,
                      monkeypatch)
    assert rc == 2 and f"refusing to clear --output_dir {user}: it holds no args.json" in error_line(err)
    assert open(f"{user}/thesis.tex").read() == "precious"
    before = sorted(os.listdir(data))
    rc, err = wrapped("VQA2/run_vqa2.py", vqa(data) + TINY + ["--output_dir", data, "--overwrite_output_dir"], capsys,
                      monkeypatch)
    assert rc == 2 and "it holds an input of this run" in error_line(err)
    assert sorted(os.listdir(data)) == before


def test_args_json_kept_on_a_rejected_resume_and_appended_on_an_accepted_one(data, capsys, monkeypatch):
    out = f"{data}/out"
    base = vqa(data) + TINY + ["--output_dir", out, "--no_eval"]
    assert wrapped("VQA2/run_vqa2.py", base, capsys, monkeypatch)[0] == 0
    original = open(f"{out}/args.json", "rb").read()
    # a rejected resume (another batch size = another number of steps) leaves args.json byte-identical
    rc, err = wrapped("VQA2/run_vqa2.py", base + ["--resume_from", "latest", "--batch_size", "2"], capsys, monkeypatch)
    assert rc == 2 and f"checkpoint {out}/step_" in error_line(err)  # the rejected checkpoint named, with why
    assert open(f"{out}/args.json", "rb").read() == original
    # an accepted resume appends its record after the untouched original
    assert wrapped("VQA2/run_vqa2.py", base + ["--resume_from", "latest"], capsys, monkeypatch)[0] == 0
    records = json.load(open(f"{out}/args.json"))
    assert isinstance(records, list) and records[0] == json.loads(original)
    assert records[1]["args"]["resume_from"] == "latest"


def test_predict_refuses_to_replace_results_and_batch_size_0(data, tmp_path, capsys, monkeypatch):
    run = str(tmp_path / "run")
    assert wrapped("VQA2/run_vqa2.py", vqa(data) + TINY + ["--output_dir", run, "--no_eval"], capsys, monkeypatch)[0] == 0
    pred = ["--model_dir", f"{run}/final", "--imdb_dir", f"{data}/vqa2/imdb", "--features", f"{data}/detectron_fix_100",
            "--split", "val", "--output_dir", f"{run}/val"]
    assert wrapped("VQA2/run_predict.py", pred, capsys, monkeypatch)[0] == 0
    first = open(f"{run}/val/result.json").read()
    rc, err = wrapped("VQA2/run_predict.py", pred, capsys, monkeypatch)
    assert rc == 2 and error_line(err) == f"error: {run}/val/result.json (and 1 more) exists already; pass --overwrite to replace it"
    assert open(f"{run}/val/result.json").read() == first
    assert wrapped("VQA2/run_predict.py", pred + ["--overwrite"], capsys, monkeypatch)[0] == 0
    # the run directory with its prediction subdirectory is still a run of ours (--overwrite_output_dir may clear it)
    from visualbert.safety import overwrite_problem

    assert overwrite_problem(run) is None
    with pytest.raises(SystemExit) as exit_info:
        script_main("VQA2/run_predict.py")(pred + ["--batch_size", "0"])
    assert exit_info.value.code == 2 and "expected a positive integer, got 0" in capsys.readouterr().err
    # truncated weights in --model_dir: one line naming the file
    with open(f"{run}/final/model_state.pdparams", "rb") as f:
        head = f.read(1000)
    with open(f"{run}/final/model_state.pdparams", "wb") as f:
        f.write(head)
    rc, err = wrapped("VQA2/run_predict.py", pred + ["--overwrite"], capsys, monkeypatch)
    assert rc == 2 and f"{run}/final/model_state.pdparams: cannot read the model weights" in error_line(err)


# ------------------------------------------------------------------------------------------ C. never train on poison
def test_nan_feature_stops_training_naming_the_file_and_saves_nothing(data, capsys, monkeypatch):
    a = np.load(f"{data}/{VQA_TRAIN}")
    a[1, 3] = np.nan
    np.save(f"{data}/{VQA_TRAIN}", a)
    out = f"{data}/out"
    rc, err = wrapped("VQA2/run_vqa2.py", vqa(data) + TINY + ["--output_dir", out], capsys, monkeypatch)
    line = error_line(err)
    assert rc == 2 and f"{data}/{VQA_TRAIN}: 1 non-finite value(s)" in line and "question_id" in line
    assert not os.path.exists(f"{out}/final") and not os.path.exists(f"{out}/best")


class PoisonedToy(ToyNLVR2):
    """ToyNLVR2 whose example ``bad`` has an inf feature (a poison the feature check never saw) and an id."""

    def __init__(self, n, bad):
        super().__init__(n)
        self.items[bad]["visual_embeds"][0, 0] = np.inf
        for i, item in enumerate(self.items):
            item["identifier"] = f"ex-{i}"


def test_non_finite_loss_stops_with_the_step_and_examples_and_saves_no_weights(tmp_path):
    out = tmp_path / "run"
    trainer = Trainer(make_args(out, batch_size=12, save_steps=1, max_steps=3), tiny_model(), PoisonedToy(12, 5),
                      Collator())
    with pytest.raises(NonFiniteLossError, match=r"training loss is nan at step 1; batch examples: .*ex-5"):
        trainer.train()
    assert not list_checkpoints(str(out)) and not os.path.exists(out / "final")


def test_non_finite_weights_are_never_saved(tmp_path):
    class Poison(TrainerCallback):  # NaN weights after the update of step 1 (as an overflowing update would leave)
        def on_log(self, trainer, record):
            p = trainer.model.cls.weight
            p.set_value(paddle.full_like(p, float("nan")))

    out = tmp_path / "run"
    trainer = Trainer(make_args(out, batch_size=4, save_steps=1, max_steps=2), tiny_model(), ToyNLVR2(8), Collator(),
                      callbacks=[Poison()])
    with pytest.raises(NonFiniteLossError, match=r"not saving checkpoint step_1: 1 parameter\(s\) hold NaN or inf at "
                                                 r"step 1 \(first: cls.weight\)"):
        trainer.train()
    assert not list_checkpoints(str(out)) and not os.path.exists(out / "final")
    assert not [n for n in os.listdir(out) if n.startswith(".tmp")]


@pytest.mark.parametrize("flags, message", [
    (["--max_seq_length", "10000"], "--max_seq_length 10000 exceeds the model's position table"),
    (["--max_seq_length", "2"], "leaves no room for text"),
])
def test_impossible_sequence_lengths_fail_at_start_up(data, capsys, monkeypatch, flags, message):
    out = f"{data}/out"
    rc, err = wrapped("VQA2/run_vqa2.py", vqa(data) + TINY + ["--output_dir", out] + flags, capsys, monkeypatch)
    assert rc == 2 and message in error_line(err)
    assert not os.path.exists(f"{out}/args.json") and not list_checkpoints(out)


def test_mask_prob_outside_0_1_is_a_usage_error(data, capsys):
    with pytest.raises(SystemExit) as exit_info:
        script_main("run_pretrain.py")(["--dataset", "nlvr2", "--data_dir", f"{data}/nlvr2", "--features",
                                        f"{data}/detectron_fix_144", "--output_dir", f"{data}/out", "--mask_prob", "2"])
    assert exit_info.value.code == 2 and "expected a probability in [0, 1], got 2" in capsys.readouterr().err


def test_foreign_answer_vocabulary_is_an_error_naming_it(data, capsys, monkeypatch):
    with open(f"{data}/foreign.txt", "w") as f:
        f.write("<unk>\nzzz\n")
    out = f"{data}/out"
    rc, err = wrapped("VQA2/run_vqa2.py", vqa(data) + TINY + ["--output_dir", out, "--answers_file", f"{data}/foreign.txt"],
                      capsys, monkeypatch)
    line = error_line(err)
    assert rc == 2 and f"answer vocabulary {data}/foreign.txt: 0 of" in line and "below the minimum" in line
    assert not os.path.exists(f"{out}/args.json")


def test_a_qa_model_is_refused_as_the_qar_model(data, tmp_path, capsys, monkeypatch):
    run = tmp_path / "qa_run"
    (run / "best").mkdir(parents=True)
    (run / "args.json").write_text(json.dumps({"args": {"mode": "qa"}, "argv": []}))
    argv = ["--qar_model_dir", str(run / "best"), "--data_dir", f"{data}/vcr", "--features", f"{data}/vcr/features",
            "--output_dir", str(tmp_path / "pred")]
    rc, err = wrapped("VCR/run_predict.py", argv, capsys, monkeypatch)
    assert rc == 2 and error_line(err) == f"error: --qar_model_dir {run / 'best'} was trained with --mode qa, expected --mode qar"
    assert not os.path.exists(tmp_path / "pred")


# ------------------------------------------------------------------------------------------ D. one line / --debug
def test_data_format_error_is_one_line_and_debug_shows_the_traceback(data, capsys, monkeypatch):
    path = f"{data}/vqa2/imdb/imdb_train2014.npy"
    np.save(path, np.load(path, allow_pickle=True)[1:], allow_pickle=True)
    argv = vqa(data) + TINY + ["--output_dir", f"{data}/out"]
    rc, err = wrapped("VQA2/run_vqa2.py", argv, capsys, monkeypatch)
    assert rc == 2 and error_line(err).startswith(f"error: {path}: element 0 is not the imdb header")
    rc, err = wrapped("VQA2/run_vqa2.py", argv + ["--debug"], capsys, monkeypatch)
    assert rc == 2 and "Traceback" in err and err.strip().splitlines()[-1].startswith(f"error: {path}: element 0")


# ------------------------------------------------------------------------------------------ E. shared machines, resume
@pytest.mark.parametrize("mask, file_mode, dir_mode", [(0o022, 0o644, 0o755), (0o027, 0o640, 0o750)])
def test_every_written_file_has_the_umask_mode(tmp_path, mask, file_mode, dir_mode):
    old = os.umask(mask)
    try:
        out = tmp_path / "run"
        trainer = Trainer(make_args(out, batch_size=4, save_steps=1, max_steps=2, metric_for_best="accuracy"),
                          tiny_model(), ToyNLVR2(8), Collator(), evaluate_fn=lambda m: {"accuracy": 0.5})
        trainer.train()
    finally:
        os.umask(old)
    seen = 0
    for dirpath, dirnames, filenames in os.walk(out):
        for d in dirnames:
            assert os.stat(os.path.join(dirpath, d)).st_mode & 0o777 == dir_mode, os.path.join(dirpath, d)
        for name in filenames:
            path = os.path.join(dirpath, name)
            assert os.stat(path).st_mode & 0o777 == file_mode, path
            seen += 1
    assert {"best", "final", "step_1", "step_2"} <= set(os.listdir(out)) and seen > 10


def _two_checkpoints(out):
    Trainer(make_args(out, batch_size=2, save_steps=2, max_steps=4, num_train_epochs=1), tiny_model(), ToyNLVR2(8),
            Collator()).train()


@pytest.mark.parametrize("corrupt, why", [
    (lambda p: open(os.path.join(p, "trainer_state.json"), "w").write("{"), "trainer_state.json is not valid JSON"),
    (lambda p: open(os.path.join(p, "model_state.pdparams"), "r+b").truncate(100), "cannot read the checkpoint weights"),
])
def test_corrupt_latest_checkpoint_falls_back_to_the_previous(tmp_path, caplog, corrupt, why):
    out = str(tmp_path / "run")
    _two_checkpoints(out)
    corrupt(os.path.join(out, "step_4"))
    from visualbert.checkpoints import resume_checkpoint

    loaded = []
    trainer = Trainer(make_args(out, batch_size=2, save_steps=2, max_steps=4, resume_from="latest"), tiny_model(),
                      ToyNLVR2(8), Collator())
    with caplog.at_level("WARNING"):
        path = resume_checkpoint("latest", out, lambda p: (loaded.append(p), trainer.load_checkpoint(p)))
    assert path == os.path.join(out, "step_2") and trainer.state["global_step"] == 2
    warning = " ".join(r.getMessage() for r in caplog.records)
    assert "step_4" in warning and why in warning


def test_every_checkpoint_corrupt_is_one_line_not_a_fresh_start(tmp_path):
    out = str(tmp_path / "run")
    _two_checkpoints(out)
    for step in (2, 4):
        open(os.path.join(out, f"step_{step}", "trainer_state.json"), "w").write("{")
    trainer = Trainer(make_args(out, batch_size=2, save_steps=2, max_steps=4, resume_from="latest"), tiny_model(),
                      ToyNLVR2(8), Collator())
    with pytest.raises(RefusedError, match=r"no usable checkpoint in .*step_4: trainer_state.json is not valid JSON.*"
                                           r"step_2: trainer_state.json"):
        trainer.train()


def test_resume_drops_repeated_metrics_and_stale_temporaries(tmp_path):
    from visualbert.engine import fit

    out = str(tmp_path / "run")
    config = make_args(out, batch_size=2, save_steps=2, max_steps=4)
    fit(config, tiny_model(), ToyNLVR2(8), None, None, Collator())
    # what a kill after step 3 leaves: records of step 3 (logged, never checkpointed), a torn line, a temporary of a
    # dead process and a replaced directory whose swap was interrupted
    import shutil

    shutil.rmtree(os.path.join(out, "step_4"))
    records = [r for r in read_jsonl(os.path.join(out, "metrics.jsonl")) if r["step"] <= 3]
    with open(os.path.join(out, "metrics.jsonl"), "w") as f:
        f.write("".join(json.dumps(r) + "\n" for r in records) + '{"type": "tra')
    dead = subprocess.Popen(["true"])
    dead.wait()
    os.makedirs(os.path.join(out, f".tmp-step_4-{dead.pid}"))
    os.makedirs(os.path.join(out, ".old-final-abc123"))
    os.replace(os.path.join(out, "final"), os.path.join(out, ".old-final-abc123", "old"))
    resumed = make_args(out, batch_size=2, save_steps=2, max_steps=4, resume_from="latest")
    fit(resumed, tiny_model(), ToyNLVR2(8), None, None, Collator())
    keys = [(r["type"], r["step"]) for r in read_jsonl(os.path.join(out, "metrics.jsonl"))]
    assert len(keys) == len(set(keys)) and [s for t, s in keys if t == "train"] == [1, 2, 3, 4]
    assert not [n for n in os.listdir(out) if n.startswith((".tmp-", ".old-"))]


# ------------------------------------------------------------------------------------------ fault injection
def test_killed_at_random_points_of_checkpoint_writes_resumes_exactly(tmp_path):
    # /dev/shm when there is one: the writes fsync every file, which is slow on a shared disk, not what is tested
    base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else str(tmp_path)
    import tempfile

    work = tempfile.mkdtemp(prefix="kill-during-save-", dir=base)
    try:
        rc, out, err = run_script([os.path.join("tests", "kill_during_save_driver.py"), work, "20", "1234"], timeout=900)
        assert rc == 0, err[-3000:]
        report = json.loads(out.strip().splitlines()[-1])
    finally:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    cycles = report["cycles"]
    assert len(cycles) == 20 and all(c["killed"] for c in cycles), cycles
    for i, c in enumerate(cycles):
        assert not c["broken"], (i, c)  # no step_<N>/ on disk is ever incomplete or unreadable
        assert c["latest"] == f"step_{c['steps'][-1]}" and c["steps"][-1] >= i + 1, (i, c)  # resume finds it
    assert report["finish_status"] == 0 and report["reference_status"] == 0
    assert report["weights_differ"] == []  # bit-identical to the uninterrupted run
    assert report["left_over"] == []
    assert len(set(report["kill_points"])) > 5  # really at different points of the write
