"""What users reach for (issue 14): VisualDL scalars, the curves PNG, one-example prediction, a quiet start-up and
the same --help groups in every script."""

import json
import os
import re
import struct
import subprocess
import sys
import warnings

import numpy as np
import pytest
from conftest import load_script

from visualbert.cli import GROUPS, UsageError
from visualbert.data.errors import DataFormatError
from visualbert.engine import TrainerCallback
from visualbert.fileio import read_jsonl

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DIM = 32
TINY = ["--hidden_size", "32", "--num_hidden_layers", "1", "--num_attention_heads", "2", "--intermediate_size", "64",
        "--disable_tqdm", "--batch_size", "8", "--logging_steps", "1", "--save_steps", "100", "--max_seq_length", "40"]
SCRIPTS = ("VQA2/run_vqa2.py", "VQA2/run_predict.py", "NLVR2/run_nlvr2.py", "NLVR2/run_predict.py", "VCR/run_vcr.py",
           "VCR/run_predict.py", "run_pretrain.py")


@pytest.fixture(scope="module")
def synth(synthetic):
    return synthetic(num_images=20, vqa_dim=DIM, nlvr2_dim=DIM, vcr_dim=DIM, nlvr2_sets=10, vcr_examples=12, regions=4,
                     nlvr2_regions=4)


def vqa_args(synth):
    return ["--imdb_dir", f"{synth}/vqa2/imdb", "--features", f"{synth}/detectron_fix_100"]


def nlvr2_args(synth):
    return ["--data_dir", f"{synth}/nlvr2", "--features", f"{synth}/detectron_fix_144"]


@pytest.fixture(scope="module")
def vqa_run(synth, tmp_path_factory):
    """A tiny VQA2 run (6 steps, evaluated every 3) with the default --visualdl."""
    out = str(tmp_path_factory.mktemp("vqa_run"))
    argv = vqa_args(synth) + ["--train_split", "train", "--eval_split", "val", "--max_steps", "6", "--eval_steps", "3",
                              "--output_dir", out, "--overwrite_output_dir"] + TINY
    assert load_script("VQA2/run_vqa2.py")(argv) == 0
    return out


@pytest.fixture(scope="module")
def nlvr2_run(synth, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("nlvr2_run"))
    argv = nlvr2_args(synth) + ["--max_steps", "4", "--eval_steps", "2", "--output_dir", out,
                                "--overwrite_output_dir"] + TINY
    assert load_script("NLVR2/run_nlvr2.py")(argv) == 0
    return out


# ------------------------------------------------------------------------------------------ VisualDL
def visualdl_scalars(logdir):
    """{tag: {step: value}} read back with VisualDL's own reader."""
    from visualdl import LogReader

    files = [f for f in os.listdir(logdir) if f.startswith("vdlrecords")]
    assert len(files) == 1, files
    reader = LogReader(file_path=os.path.join(logdir, files[0]))
    out = {}
    for tag in reader.get_tags().get("scalar", []):
        out[tag] = {int(r.id): float(r.value) for r in reader.get_data("scalar", tag)}
    return out


def test_visualdl_holds_every_logged_scalar(vqa_run):
    records = read_jsonl(os.path.join(vqa_run, "metrics.jsonl"))
    scalars = visualdl_scalars(os.path.join(vqa_run, "visualdl"))
    train = [r for r in records if r["type"] == "train"]
    evals = [r for r in records if r["type"] == "eval"]
    assert len(train) == 6 and [r["step"] for r in evals] == [3, 6]
    expected = {}
    for r in train:
        for key in ("loss", "learning_rate"):
            expected.setdefault(f"train/{key}", {})[r["step"]] = r[key]
    for r in evals:
        for key in ("soft_accuracy", "vqa_accuracy", "loss"):
            expected.setdefault(f"eval/{key}", {})[r["step"]] = r[key]
        for answer_type, value in r["per_answer_type"].items():
            expected.setdefault(f"eval/per_answer_type.{answer_type.replace('/', '-')}", {})[r["step"]] = value
    for tag, by_step in expected.items():
        assert tag in scalars, (tag, sorted(scalars))
        assert sorted(scalars[tag]) == sorted(by_step)
        np.testing.assert_allclose([scalars[tag][s] for s in sorted(by_step)], [by_step[s] for s in sorted(by_step)],
                                   rtol=1e-6, atol=1e-12)  # VisualDL stores float32
    assert not any(tag.endswith(("/step", "/epoch", "/type")) for tag in scalars)


def test_visualdl_off_and_closed_when_the_run_fails(synth, tmp_path):
    train = load_script("NLVR2/run_nlvr2.py")
    off = str(tmp_path / "off")
    assert train(nlvr2_args(synth) + ["--max_steps", "2", "--no_eval", "--output_dir", off, "--visualdl", "false"]
                 + TINY) == 0
    assert not os.path.exists(os.path.join(off, "visualdl"))

    class FailAtStep3(TrainerCallback):
        def on_log(self, trainer, record):
            if record["step"] == 3:
                raise RuntimeError("stop")

    failed = str(tmp_path / "failed")
    with pytest.raises(RuntimeError, match="stop"):
        train(nlvr2_args(synth) + ["--max_steps", "4", "--no_eval", "--output_dir", failed] + TINY,
              callbacks=[FailAtStep3()])
    # steps 1 and 2 reached the event file although the run died (closed, hence flushed, on the way out)
    assert sorted(visualdl_scalars(os.path.join(failed, "visualdl"))["train/loss"]) == [1, 2]


# ------------------------------------------------------------------------------------------ curves
def png_size(path):
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR"
    return struct.unpack(">II", head[16:24])


def write_run(path, records, model_class):
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "metrics.jsonl"), "w") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")
    with open(os.path.join(path, "args.json"), "w") as f:
        json.dump({"model_class": model_class}, f)


def test_plot_run_draws_every_quantity_of_each_run(tmp_path):
    """A recorded metrics.jsonl of two runs → a PNG of the asked size with one panel per quantity."""
    import matplotlib.image

    for name, scale in (("image", 1.0), ("text_only", 1.3)):
        records = [{"type": "train", "step": s, "epoch": 0, "loss": scale * 2.0 / s, "learning_rate": 1e-3 * (1 - s / 10),
                    "batches_per_s": 5.0} for s in range(1, 11)]
        records += [{"type": "eval", "step": s, "epoch": 0, "accuracy": 0.5 + 0.04 * s / scale, "num_examples": 20}
                    for s in (5, 10)]
        write_run(str(tmp_path / name), records, "VisualBertForVisualReasoning")
    out = str(tmp_path / "curves.png")
    main = load_script("tools/plot_run.py")
    assert main([str(tmp_path / "image"), str(tmp_path / "text_only"), "-o", out, "--size", "900x400",
                 "--labels", "image", "text only"]) == 0
    assert png_size(out) == (900, 400)
    pixels = matplotlib.image.imread(out)
    assert pixels.shape[:2] == (400, 900) and pixels.std() > 0.05  # drawn, not blank

    from importlib import util

    spec = util.spec_from_file_location("plot_run", os.path.join(ROOT, "tools", "plot_run.py"))
    plot_run = util.module_from_spec(spec)
    spec.loader.exec_module(plot_run)
    names = plot_run.plot_runs([str(tmp_path / "image")], str(tmp_path / "one.png"))
    assert names == ["train: loss", "train: learning_rate", "eval: accuracy"]  # no throughput, no counts
    assert png_size(str(tmp_path / "one.png")) == (3 * 420, 300)
    assert main([str(tmp_path / "missing"), "-o", out]) == 2


def test_plot_run_reads_a_real_run(vqa_run, nlvr2_run, tmp_path):
    out = str(tmp_path / "both.png")
    assert load_script("tools/plot_run.py")([vqa_run, nlvr2_run, "-o", out]) == 0
    width, height = png_size(out)
    assert width >= 1000 and height >= 600  # two tasks: two rows of panels


# ------------------------------------------------------------------------------------------ one example
def test_one_vqa_question_equals_the_batch_path(synth, vqa_run, tmp_path, capsys):
    """--question/--features_file: top-k answers = the split's result.json answer and softmax of the batch logits."""
    from visualbert.build import build_dataset, load_trained_model
    from visualbert.engine import predict
    from visualbert.tasks import VQA2, softmax
    from visualbert.tokenizer import load_tokenizer

    model_dir = os.path.join(vqa_run, "final")
    run_predict = load_script("VQA2/run_predict.py")
    out = str(tmp_path / "val")
    assert run_predict(vqa_args(synth) + ["--model_dir", model_dir, "--split", "val", "--output_dir", out]) == 0
    with open(os.path.join(out, "result.json")) as f:
        batch_answers = [r["answer"] for r in json.load(f)]
    import argparse

    tokenizer = load_tokenizer()
    ns = argparse.Namespace(imdb_dir=f"{synth}/vqa2/imdb", features=f"{synth}/detectron_fix_100", answers_file=None,
                            max_seq_length=40, seed=0, check_features=False)
    dataset = build_dataset(VQA2, "val", ns, tokenizer)
    arrays, _, _ = predict(load_trained_model(model_dir, VQA2.model_class), dataset, batch_size=5)
    capsys.readouterr()
    for index in (0, 3, 7):
        entry = dataset.entries[index]
        question = str(entry.get("question_str") or " ".join(entry["question_tokens"]))
        features = dataset.store.path(str(entry["image_name"]))
        assert run_predict(["--model_dir", model_dir, "--question", question, "--features_file", features,
                            "--top_k", "3", "--max_seq_length", "40", "--json"]) == 0
        printed = json.loads(capsys.readouterr().out)
        probs = softmax(arrays["logits"][index])
        top = np.argsort(-probs, kind="stable")[:3]
        assert [a["answer"] for a in printed["answers"]] == [dataset.vocab[int(i)] for i in top]
        assert printed["answers"][0]["answer"] == batch_answers[index]
        np.testing.assert_allclose([a["probability"] for a in printed["answers"]], probs[top], rtol=1e-4, atol=1e-7)
    assert run_predict(["--model_dir", model_dir, "--question", question, "--features_file", features]) == 0
    text = capsys.readouterr().out
    assert text.startswith(f"Q: {question}\n") and re.search(r"^ 1\. .+  \(0\.\d{3}\)$", text, re.M)


def test_one_nlvr2_statement_equals_the_batch_path(synth, nlvr2_run, tmp_path, capsys):
    import argparse

    from visualbert.build import build_dataset, load_trained_model
    from visualbert.data.nlvr2 import image_keys
    from visualbert.engine import predict
    from visualbert.metrics import read_nlvr2_predictions
    from visualbert.tasks import NLVR2, softmax
    from visualbert.tokenizer import load_tokenizer

    model_dir = os.path.join(nlvr2_run, "final")
    run_predict = load_script("NLVR2/run_predict.py")
    out = str(tmp_path / "dev")
    assert run_predict(nlvr2_args(synth) + ["--model_dir", model_dir, "--split", "dev", "--output_dir", out]) == 0
    batch = read_nlvr2_predictions(os.path.join(out, "predictions.csv"))
    ns = argparse.Namespace(data_dir=f"{synth}/nlvr2", features=f"{synth}/detectron_fix_144", max_seq_length=40,
                            max_regions=144, seed=0, check_features=False)
    dataset = build_dataset(NLVR2, "dev", ns, load_tokenizer())
    arrays, _, _ = predict(load_trained_model(model_dir, NLVR2.model_class), dataset, batch_size=4)
    capsys.readouterr()
    for index in (0, 1, 2):
        row = dataset.rows[index]
        left, right = (dataset.store.path(k) for k in image_keys(row["identifier"]))
        assert run_predict(["--model_dir", model_dir, "--sentence", row["sentence"], "--left_features", left,
                            "--right_features", right, "--max_seq_length", "40", "--json"]) == 0
        printed = json.loads(capsys.readouterr().out)
        probs = softmax(arrays["logits"][index])
        assert printed["label"] == batch[row["identifier"]] == bool(probs.argmax() == 1)
        np.testing.assert_allclose(printed["probability"], probs.max(), rtol=1e-4)
    assert run_predict(["--model_dir", model_dir, "--sentence", row["sentence"], "--left_features", left,
                        "--right_features", right]) == 0
    assert re.fullmatch(r"(True|False)  \(0\.\d{3}\)\n", capsys.readouterr().out)


def test_one_example_bad_inputs_fail_as_the_batch_path_does(synth, vqa_run, nlvr2_run, tmp_path):
    vqa = load_script("VQA2/run_predict.py")
    nlvr2 = load_script("NLVR2/run_predict.py")
    vqa_model = ["--model_dir", os.path.join(vqa_run, "final")]
    nlvr2_model = ["--model_dir", os.path.join(nlvr2_run, "final")]
    good = np.random.RandomState(0).randn(4, DIM).astype(np.float32)
    paths = {}
    for name, array in (("good", good), ("narrow", good[:, :7]), ("nan", np.where(np.eye(4, DIM) > 0, np.nan, good))):
        paths[name] = str(tmp_path / f"{name}.npy")
        np.save(paths[name], array.astype(np.float32))
    for question in ("", "  ", "?", "None"):
        with pytest.raises(DataFormatError, match=r"the question is (empty|null)"):
            vqa(vqa_model + ["--question", question, "--features_file", paths["good"]])
    with pytest.raises(UsageError, match="expects 32-d region features, the data has 7-d"):
        vqa(vqa_model + ["--question", "what is it?", "--features_file", paths["narrow"]])
    with pytest.raises(DataFormatError, match=r"nan\.npy: 4 non-finite value\(s\)"):
        vqa(vqa_model + ["--question", "what is it?", "--features_file", paths["nan"]])
    with pytest.raises(UsageError, match="--features_file .* does not exist"):
        vqa(vqa_model + ["--question", "what is it?", "--features_file", str(tmp_path / "none.npy")])
    with pytest.raises(UsageError, match="one example needs --question and --features_file"):
        vqa(vqa_model + ["--question", "what is it?"])
    with pytest.raises(UsageError, match=r"not both \(got --imdb_dir, --features\)"):
        vqa(vqa_model + vqa_args(synth) + ["--question", "what is it?", "--features_file", paths["good"]])
    with pytest.raises(UsageError, match="--output_dir required"):
        vqa(vqa_model + vqa_args(synth))
    with pytest.raises(UsageError, match="--top_k must be at least 1"):
        vqa(vqa_model + ["--question", "what?", "--features_file", paths["good"], "--top_k", "0"])
    with pytest.raises(DataFormatError, match="the sentence is empty"):
        nlvr2(nlvr2_model + ["--sentence", " ", "--left_features", paths["good"], "--right_features", paths["good"]])
    with pytest.raises(DataFormatError, match=r"narrow\.npy: expected feature width 32"):
        nlvr2(nlvr2_model + ["--sentence", "two dogs", "--left_features", paths["good"], "--right_features",
                             paths["narrow"]])
    with pytest.raises(DataFormatError, match="non-finite"):
        nlvr2(nlvr2_model + ["--sentence", "two dogs", "--left_features", paths["nan"], "--right_features",
                             paths["good"]])
    with pytest.raises(UsageError, match="one example needs --sentence and --left_features and --right_features"):
        nlvr2(nlvr2_model + ["--sentence", "two dogs", "--left_features", paths["good"]])


# ------------------------------------------------------------------------------------------ start-up
THIRD_PARTY_NOISE = ("No ccache found", "OMP_NUM_THREADS set to", "PLEASE USE OMP_NUM_THREADS WISELY",
                     "Setuptools is replacing distutils", "PyTorch version")


def test_normal_run_stderr_has_no_third_party_warning_and_one_startup_line(synth, tmp_path):
    out = str(tmp_path / "run")
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="2")
    env.pop("PYTHONWARNINGS", None)
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "NLVR2", "run_nlvr2.py")] + nlvr2_args(synth)
                          + ["--max_steps", "1", "--no_eval", "--output_dir", out, "--use_amp"] + TINY,
                          capture_output=True, text=True, env=env, cwd=str(tmp_path), timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for noise in THIRD_PARTY_NOISE:
        assert noise not in proc.stderr, (noise, proc.stderr[:3000])
    assert "--use_amp ignored: no GPU" in proc.stderr  # our own warnings still reach the console
    startup = [line for line in proc.stderr.splitlines() if "world size" in line]
    assert len(startup) == 1
    assert re.search(r"device cpu, 2 CPU threads, AMP off, world size 1, output " + re.escape(os.path.abspath(out)),
                     startup[0])


def test_filters_match_only_their_module_and_message(capsys):
    """The warning filters drop the third-party message from its module only; the stderr filter drops the two
    paddle lines only."""
    from visualbert import console

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        console.install_filters()
        warnings.warn_explicit("No ccache found. Please be aware ...", UserWarning, "extension_utils.py", 712,
                               module="paddle.utils.cpp_extension.extension_utils")
        warnings.warn_explicit("Setuptools is replacing distutils.", UserWarning, "__init__.py", 30,
                               module="_distutils_hack")
        warnings.warn_explicit("No ccache found", UserWarning, "x.py", 1, module="visualbert.engine")
        warnings.warn_explicit("something else", UserWarning, "extension_utils.py", 1,
                               module="paddle.utils.cpp_extension.extension_utils")
    assert [str(w.message) for w in caught] == ["No ccache found", "something else"]
    with console.dropping_stderr_lines(console.PADDLE_OMP_LINES):
        print("WARNING: OMP_NUM_THREADS set to 4, not 1. The computation speed will not be optimized", file=sys.stderr)
        print("PLEASE USE OMP_NUM_THREADS WISELY.", file=sys.stderr)
        print("a real error", file=sys.stderr)
        sys.stderr.write("no newline")
    assert capsys.readouterr().err == "a real error\nno newline"
    import logging

    record = logging.LogRecord("datasets", logging.INFO, "config.py", 58, "PyTorch version 2.13.0+cpu available.",
                               None, None)
    other = logging.LogRecord("datasets", logging.WARNING, "config.py", 60, "something real", None, None)
    datasets_logger = logging.getLogger("datasets")
    assert not datasets_logger.filter(record) and datasets_logger.filter(other)


# ------------------------------------------------------------------------------------------ --help
@pytest.mark.parametrize("script", SCRIPTS)
def test_help_groups_flags_the_same_way(script, capsys):
    with pytest.raises(SystemExit) as exit_:
        load_script(script)(["--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    sections = re.findall(r"^([a-z][a-z/ ]*):$", text, re.M)
    assert sections[0] == "options" and set(sections[1:]) <= set(GROUPS), sections
    assert sections[1:] == [g for g in GROUPS if g in sections[1:]]  # the same order everywhere
    assert {"model", "data", "runtime"} <= set(sections)
    options = text.split("\noptions:\n", 1)[1].split("\n\n", 1)[0]
    assert re.findall(r"^  (-[-\w]+)", options, re.M) == ["-h"]  # every flag is in a group
