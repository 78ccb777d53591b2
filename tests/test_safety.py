"""visualbert.safety: what --overwrite_output_dir may clear, args.json records, stale temporaries, metrics.jsonl
after a resume, checkpoint fallback, file modes under the umask, stop signals, non-finite guards, start-up checks."""

import json
import logging
import os
import signal
import stat
import subprocess
import sys
import tempfile

import numpy as np
import pytest

from visualbert import safety
from visualbert.fileio import atomic_path
from visualbert.safety import (
    NonFiniteGuard,
    NonFiniteLossError,
    RefusedError,
    RunInterrupted,
    StopSignals,
    append_args_record,
    apply_umask,
    check_position_table,
    check_trained_mode,
    clear_run_dir,
    dedupe_records,
    existing_outputs_problem,
    latest_complete_checkpoint,
    non_finite_parameters,
    overwrite_problem,
    remove_stale_temporaries,
    truncate_metrics,
)


def tree(root):
    return sorted(os.path.relpath(os.path.join(d, n), root) for d, dirs, files in os.walk(root) for n in dirs + files)


def make_checkpoint(run, step, **overrides):
    path = os.path.join(run, f"step_{step}")
    os.makedirs(path)
    files = {"config.json": "{}", "model_state.pdparams": "w", "optimizer.pdopt": "o", "scheduler.json": "{}",
             "rng.pkl": "r", "trainer_state.json": json.dumps({"global_step": step})}
    files.update(overrides)
    for name, content in files.items():
        if content is not None:
            with open(os.path.join(path, name), "w") as f:
                f.write(content)
    return path


def make_run(root):
    run = os.path.join(root, "run")
    os.makedirs(os.path.join(run, "best"))
    os.makedirs(os.path.join(run, "final"))
    os.makedirs(os.path.join(run, "val"))
    with open(os.path.join(run, "args.json"), "w") as f:
        json.dump({"args": {"mode": "qa"}, "argv": ["run_vcr.py"], "git_commit": "abc"}, f)
    with open(os.path.join(run, "metrics.jsonl"), "w") as f:
        f.write('{"type": "train", "step": 1}\n')
    with open(os.path.join(run, "val", "metrics.json"), "w") as f:
        f.write("{}")
    make_checkpoint(run, 2)
    os.makedirs(os.path.join(run, ".tmp-step_4-999999"))
    return run


# ------------------------------------------------------------------------------------------ overwrite
def test_a_run_of_ours_may_be_cleared(tmp_path):
    run = make_run(str(tmp_path))
    assert overwrite_problem(run, inputs=[str(tmp_path / "elsewhere")]) is None
    removed = clear_run_dir(run)
    assert set(removed) == {"args.json", "metrics.jsonl", "best", "final", "val", "step_2", ".tmp-step_4-999999"}
    assert os.listdir(run) == []


def test_a_directory_of_user_files_is_refused_and_kept(tmp_path):
    user = tmp_path / "thesis"
    user.mkdir()
    (user / "chapter1.tex").write_text("x")
    (user / "metrics.jsonl").write_text("{}\n")  # a name we use is not enough
    with pytest.raises(RefusedError, match=rf"refusing to clear --output_dir {user}: it holds no args.json"):
        clear_run_dir(str(user))
    assert tree(str(user)) == ["chapter1.tex", "metrics.jsonl"]


def test_a_run_with_extra_user_files_is_refused(tmp_path):
    run = make_run(str(tmp_path))
    (tmp_path / "run" / "notes.txt").write_text("mine")
    before = tree(run)
    with pytest.raises(RefusedError, match=r"it also holds files a run does not write \(notes.txt\)"):
        clear_run_dir(run)
    assert tree(run) == before


def test_foreign_args_json_is_refused(tmp_path):
    (tmp_path / "args.json").write_text('{"lr": 1}')
    assert "is not one we wrote" in overwrite_problem(str(tmp_path))


def test_a_directory_holding_the_runs_inputs_is_refused(tmp_path):
    data = tmp_path / "data"
    (data / "detectron_fix_100").mkdir(parents=True)
    run = make_run(str(tmp_path))
    features = str(data / "detectron_fix_100")
    # the data root itself, the input itself, and a run dir that a feature root was placed into
    assert "it holds an input of this run" in overwrite_problem(str(data), inputs=[features])
    assert "it holds an input of this run" in overwrite_problem(features, inputs=[features])
    os.makedirs(os.path.join(run, "best", "feats"))
    assert f"({run}/best/feats)" in overwrite_problem(run, inputs=[os.path.join(run, "best", "feats"), None])
    with pytest.raises(RefusedError):
        clear_run_dir(str(data), inputs=[features])
    assert os.path.isdir(features)


def test_absent_empty_or_file_output(tmp_path):
    assert overwrite_problem(str(tmp_path / "new")) is None
    assert overwrite_problem(str(tmp_path)) is None
    (tmp_path / "f").write_text("")
    assert "is a file" in overwrite_problem(str(tmp_path / "f"))


def test_args_json_records_are_appended_never_rewritten(tmp_path):
    path = str(tmp_path / "args.json")
    first = {"args": {"lr": 1e-4}, "argv": ["a"], "git_commit": "c1"}
    assert append_args_record(path, first) == [first]
    with open(path, "w") as f:
        json.dump(first, f)  # a run written before records were appended
    second = {"args": {"lr": 1e-4, "resume_from": "latest"}, "argv": ["b"], "git_commit": "c2"}
    records = append_args_record(path, second)
    assert records == [first, second]
    with open(path, "w") as f:
        json.dump(records, f)
    assert append_args_record(path, {"x": 3}) == [first, second, {"x": 3}]
    (tmp_path / "args.json").write_text("{broken")
    with pytest.raises(RefusedError, match="is not valid JSON"):
        append_args_record(path, second)


def test_existing_outputs_problem(tmp_path):
    (tmp_path / "result.json").write_text("[]")
    assert existing_outputs_problem([str(tmp_path / "x.csv")]) is None
    assert existing_outputs_problem([str(tmp_path / "result.json")]) == (
        f"{tmp_path}/result.json exists already; pass --overwrite to replace it")


# ------------------------------------------------------------------------------------------ temporaries
def test_stale_temporaries_of_dead_processes_only(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        run = str(tmp_path)
        for name in (f".tmp-step_4-{dead.pid}", f".tmp-best-{dead.pid}", f".tmp-step_6-{os.getpid()}",
                     f".tmp-final-{alive.pid}", "tmp-user-123", "step_2"):
            os.makedirs(os.path.join(run, name))
        # replace_dir interrupted after moving the old best/ aside but before the new one arrived: restored
        os.makedirs(os.path.join(run, ".old-best-k3j2", "old"))
        with open(os.path.join(run, ".old-best-k3j2", "old", "best.json"), "w") as f:
            f.write('{"step": 2}')
        # ... and after the new final/ arrived: the old one is garbage
        os.makedirs(os.path.join(run, ".old-final-x9", "old"))
        os.makedirs(os.path.join(run, "final"))
        out = remove_stale_temporaries(run)
        assert sorted(os.listdir(run)) == [f".tmp-final-{alive.pid}", f".tmp-step_6-{os.getpid()}", "best", "final",
                                           "step_2", "tmp-user-123"]
        assert os.path.isfile(os.path.join(run, "best", "best.json"))
        assert out["restored"] == [os.path.join(run, "best")]
        assert len(out["removed"]) == 4
    finally:
        alive.kill()
        alive.wait()


# ------------------------------------------------------------------------------------------ metrics.jsonl
def test_truncate_metrics_after_resume(tmp_path):
    path = tmp_path / "metrics.jsonl"
    lines = [json.dumps({"type": "train", "step": s, "loss": 1.0 / s}) for s in range(1, 7)]
    lines.insert(4, json.dumps({"type": "eval", "step": 4, "acc": 0.5}))
    path.write_text("\n".join(lines) + "\n" + '{"type": "train", "st')  # torn by a kill
    os.chmod(path, 0o640)
    assert truncate_metrics(str(path), 4) == 3
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(r["type"], r["step"]) for r in records] == [("train", 1), ("train", 2), ("train", 3), ("train", 4),
                                                         ("eval", 4)]
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
    assert truncate_metrics(str(path), 4) == 0
    assert truncate_metrics(str(tmp_path / "absent.jsonl"), 4) == 0


def test_dedupe_records_keeps_the_last_of_each_step():
    records = [{"type": "train", "step": 1, "v": "a"}, {"type": "train", "step": 2, "v": "a"},
               {"type": "eval", "step": 2, "v": "a"}, {"type": "train", "step": 2, "v": "b"}]
    assert dedupe_records(records) == [records[0], records[3], records[2]]


# ------------------------------------------------------------------------------------------ checkpoints
def test_corrupt_latest_checkpoint_falls_back_with_a_warning(tmp_path, caplog):
    run = str(tmp_path)
    make_checkpoint(run, 2)
    good = make_checkpoint(run, 4)
    corrupt = make_checkpoint(run, 6, **{"trainer_state.json": '{"global_step": 6, "ep'})
    make_checkpoint(run, 8, **{"trainer_state.json": None})  # never completed: skipped silently
    with caplog.at_level(logging.WARNING, logger="visualbert.safety"):
        path, skipped = latest_complete_checkpoint(run)
    assert path == good
    assert [p for p, _ in skipped] == [corrupt] and "trainer_state.json is not valid JSON" in skipped[0][1]
    assert len(caplog.records) == 1
    message = caplog.records[0].getMessage()
    assert corrupt in message and good in message and "not valid JSON" in message


@pytest.mark.parametrize("overrides,problem", [
    ({"optimizer.pdopt": None}, "optimizer.pdopt is missing"),
    ({"model_state.pdparams": ""}, "model_state.pdparams is empty"),
    ({"scheduler.json": "[1"}, "scheduler.json is not valid JSON"),
    ({"trainer_state.json": "[]"}, "trainer_state.json is not a JSON object"),
    ({"trainer_state.json": '{"global_step": 3}'}, "says global_step 3, not 4"),
])
def test_checkpoint_problems(tmp_path, overrides, problem):
    make_checkpoint(str(tmp_path), 2)
    bad = make_checkpoint(str(tmp_path), 4, **overrides)
    path, skipped = latest_complete_checkpoint(str(tmp_path))
    assert path.endswith("step_2") and len(skipped) == 1 and skipped[0][0] == bad and problem in skipped[0][1]


def test_exclude_and_nothing_usable(tmp_path):
    first = make_checkpoint(str(tmp_path), 2)
    second = make_checkpoint(str(tmp_path), 4)
    assert latest_complete_checkpoint(str(tmp_path), exclude=[second])[0] == first
    assert latest_complete_checkpoint(str(tmp_path), exclude=[first, second])[0] is None
    assert latest_complete_checkpoint(str(tmp_path / "absent")) == (None, [])


# ------------------------------------------------------------------------------------------ umask
@pytest.fixture
def umask():
    def set_umask(value):
        os.umask(value)
        safety._UMASK = None  # re-read

    old = os.umask(0o022)
    os.umask(old)
    yield set_umask
    os.umask(old)
    safety._UMASK = None


@pytest.mark.parametrize("mask,file_mode,dir_mode", [(0o022, 0o644, 0o755), (0o027, 0o640, 0o750),
                                                     (0o077, 0o600, 0o700)])
def test_apply_umask(tmp_path, umask, mask, file_mode, dir_mode):
    umask(mask)
    assert safety.current_umask() == mask
    fd, file = tempfile.mkstemp(dir=tmp_path)
    os.close(fd)
    assert stat.S_IMODE(os.stat(file).st_mode) == 0o600
    apply_umask(file)
    assert stat.S_IMODE(os.stat(file).st_mode) == file_mode
    directory = tempfile.mkdtemp(dir=tmp_path)
    fd, inner = tempfile.mkstemp(dir=directory)
    os.close(fd)
    os.mkdir(os.path.join(directory, "sub"), 0o700)
    apply_umask(directory)
    assert stat.S_IMODE(os.stat(directory).st_mode) == dir_mode
    assert stat.S_IMODE(os.stat(os.path.join(directory, "sub")).st_mode) == dir_mode
    assert stat.S_IMODE(os.stat(inner).st_mode) == file_mode


def test_atomic_write_with_apply_umask_matches_open(tmp_path, umask):
    """The phase-2 wiring: ``apply_umask(tmp)`` inside ``atomic_path`` before the rename."""
    umask(0o022)
    with atomic_path(str(tmp_path / "config.json")) as tmp:
        with open(tmp, "w") as f:
            f.write("{}")
        apply_umask(tmp)
    with open(tmp_path / "plain.json", "w") as f:
        f.write("{}")
    assert stat.S_IMODE(os.stat(tmp_path / "config.json").st_mode) == 0o644
    assert stat.S_IMODE(os.stat(tmp_path / "config.json").st_mode) == stat.S_IMODE(os.stat(tmp_path / "plain.json").st_mode)


# ------------------------------------------------------------------------------------------ signals
@pytest.mark.parametrize("signum,status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_stop_signals_raise_run_interrupted(signum, status):
    before = signal.getsignal(signum)
    with pytest.raises(RunInterrupted) as info:
        with StopSignals():
            os.kill(os.getpid(), signum)
            for _ in range(1000):  # the handler runs at the next bytecode boundary
                pass
    assert info.value.signum == signum and info.value.exit_status == status
    assert signal.getsignal(signum) == before


def test_a_signal_during_a_checkpoint_write_waits_for_it():
    done = []
    with pytest.raises(RunInterrupted):
        with StopSignals() as stop:
            with stop.deferred():
                os.kill(os.getpid(), signal.SIGTERM)
                for _ in range(1000):
                    pass
                done.append("checkpoint renamed into place")
            done.append("next step")  # never reached
    assert done == ["checkpoint renamed into place"]


def test_module_level_deferral_uses_the_active_stop_signals():
    from visualbert.safety import deferred_signals

    with deferred_signals():  # no StopSignals active: a no-op
        pass
    done = []
    with pytest.raises(RunInterrupted):
        with StopSignals():
            with deferred_signals():
                os.kill(os.getpid(), signal.SIGTERM)
                for _ in range(1000):
                    pass
                done.append("written")
    assert done == ["written"] and safety._ACTIVE_STOP is None


def test_batch_example_ids():
    from visualbert.safety import batch_example_ids

    assert batch_example_ids({"input_ids": object(), "question_id": [5, 6], "image_name": ["a", "b"]}) == [5, 6]
    assert batch_example_ids({"identifier": ("dev-1-0-0",)}) == ["dev-1-0-0"]
    assert batch_example_ids({"input_ids": object()}) == []


def test_safety_imports_only_the_standard_library_at_module_level():
    import ast

    tree_ = ast.parse(open(safety.__file__).read())
    top = {alias.name.split(".")[0] for node in tree_.body if isinstance(node, ast.Import) for alias in node.names}
    top |= {node.module.split(".")[0] for node in tree_.body if isinstance(node, ast.ImportFrom) and node.module}
    assert top and top <= set(sys.stdlib_module_names), top - set(sys.stdlib_module_names)


def test_a_second_signal_during_a_deferred_write_stops_at_once():
    done = []
    with pytest.raises(RunInterrupted):
        with StopSignals() as stop:
            with stop.deferred():
                os.kill(os.getpid(), signal.SIGINT)
                for _ in range(1000):
                    pass
                os.kill(os.getpid(), signal.SIGINT)
                for _ in range(1000):
                    pass
                done.append("end of write")
    assert done == []


# ------------------------------------------------------------------------------------------ non-finite
def test_non_finite_loss_stops_naming_step_and_examples():
    guard = NonFiniteGuard()
    guard.check(0.7, step=3, example_ids=[1, 2])
    with pytest.raises(NonFiniteLossError, match=r"training loss is nan at step 4; batch examples: 501, 502"):
        guard.check(float("nan"), step=4, example_ids=[501, 502])
    with pytest.raises(NonFiniteLossError, match=r"and 5 more"):
        NonFiniteGuard().check(float("inf"), step=1, example_ids=list(range(15)))


def test_loss_scaling_tolerates_a_few_consecutive_skipped_steps():
    guard = NonFiniteGuard(max_nonfinite_steps=2, loss_scaling=True)
    guard.check(float("inf"), 1)
    guard.check(float("inf"), 2)
    guard.check(1.0, 3)  # the scale recovered: counting restarts
    guard.check(float("nan"), 4)
    guard.check(float("nan"), 5)
    with pytest.raises(NonFiniteLossError, match="at step 6 after 3 consecutive non-finite steps"):
        guard.check(float("nan"), 6)
    # without loss scaling the allowance does not apply
    with pytest.raises(NonFiniteLossError):
        NonFiniteGuard(max_nonfinite_steps=5, loss_scaling=False).check(float("nan"), 1)
    with pytest.raises(RefusedError):
        NonFiniteGuard(max_nonfinite_steps=-1)


def test_non_finite_parameters():
    import paddle

    state = {"a": np.ones(3, np.float32), "b": np.array([1.0, np.nan]), "ids": np.arange(3),
             "t": paddle.to_tensor([1.0, float("inf")]),
             "bf16": np.array([0x3F80, 0x7FC0], np.uint16)}  # 1.0 and a bfloat16 NaN bit pattern
    assert non_finite_parameters(state) == ["b", "t", "bf16"]
    assert non_finite_parameters({"a": paddle.ones([2])}) == []


# ------------------------------------------------------------------------------------------ start-up checks
def test_position_table():
    check_position_table(128, 512, max_regions=144)
    with pytest.raises(RefusedError, match="--max_seq_length 10000 exceeds the model's position table"):
        check_position_table(10000, 512)
    with pytest.raises(RefusedError, match="--max_regions 600"):
        check_position_table(128, 512, max_regions=600)
    with pytest.raises(RefusedError, match="leaves no room"):
        check_position_table(2, 512)


def test_trained_mode(tmp_path, caplog):
    run = make_run(str(tmp_path))
    check_trained_mode(os.path.join(run, "best"), "mode", "qa", "--model_dir")
    with pytest.raises(RefusedError, match=rf"--qar_model_dir {run}/final was trained with --mode qa, expected --mode qar"):
        check_trained_mode(os.path.join(run, "final"), "mode", "qar", "--qar_model_dir")
    with open(os.path.join(run, "args.json"), "w") as f:  # the appended-records form: the first record counts
        json.dump([{"args": {"mode": "qar"}, "argv": []}, {"args": {"mode": "qa"}, "argv": []}], f)
    check_trained_mode(os.path.join(run, "final"), "mode", "qar", "--qar_model_dir")
    converted = tmp_path / "converted" / "model"
    converted.mkdir(parents=True)
    with caplog.at_level(logging.INFO, logger="visualbert.safety"):
        check_trained_mode(str(converted), "mode", "qar", "--qar_model_dir")
    assert "cannot check" in caplog.text


# ------------------------------------------------------------------------------------------ paddle files, flag types
def test_load_paddle_file_names_truncated_and_empty_files(tmp_path):
    import paddle

    from visualbert.data import DataFormatError
    from visualbert.safety import load_paddle_file

    good = str(tmp_path / "w.pdparams")
    paddle.save({"w": paddle.ones([50, 50])}, good)
    assert load_paddle_file(good)["w"].shape == [50, 50]
    data = open(good, "rb").read()
    truncated = tmp_path / "t.pdparams"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataFormatError, match=rf"{truncated}: cannot read the checkpoint weights \(truncated"):
        load_paddle_file(str(truncated), "checkpoint weights")
    (tmp_path / "e.pdparams").write_bytes(b"")
    with pytest.raises(DataFormatError, match=r"e\.pdparams: empty file"):
        load_paddle_file(str(tmp_path / "e.pdparams"))
    with pytest.raises(FileNotFoundError, match="weights file .* does not exist"):
        load_paddle_file(str(tmp_path / "absent.pdparams"))


def test_flag_types_fail_at_parse_time(capsys):
    import argparse

    from visualbert.safety import positive_int, probability

    p = argparse.ArgumentParser(prog="run_predict.py")
    p.add_argument("--eval_batch_size", type=positive_int, default=8)
    p.add_argument("--mask_prob", type=probability, default=0.15)
    assert p.parse_args(["--eval_batch_size", "3", "--mask_prob", "1"]).mask_prob == 1.0
    for argv, expected in ((["--eval_batch_size", "0"], "expected a positive integer, got 0"),
                           (["--mask_prob", "2.0"], "expected a probability in [0, 1], got 2"),
                           (["--mask_prob", "x"], "got 'x'")):
        with pytest.raises(SystemExit) as info:
            p.parse_args(argv)
        assert info.value.code == 2 and expected in capsys.readouterr().err
