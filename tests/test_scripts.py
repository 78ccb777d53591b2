"""Every script end to end on tiny synthetic data (in-process: ``main(argv)``), argument failures, BERT init,
and a killed-then-resumed run in subprocesses (a real hard exit, not an exception)."""

import json
import os
import subprocess
import sys

import numpy as np
import paddle
import pytest
from conftest import load_script

from visualbert.checkpoints import list_checkpoints
from visualbert.cli import UsageError
from visualbert.data.synthetic import generate
from visualbert.fileio import read_jsonl
from visualbert.metrics import read_nlvr2_predictions

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DIM = 32
TINY = ["--hidden_size", "32", "--num_hidden_layers", "2", "--num_attention_heads", "2", "--intermediate_size", "64",
        "--disable_tqdm", "--batch_size", "8", "--num_train_epochs", "1", "--logging_steps", "1", "--save_steps", "2",
        "--max_seq_length", "40"]


@pytest.fixture(scope="module")
def synth(synthetic):
    return synthetic(num_images=20, vqa_dim=DIM, nlvr2_dim=DIM, vcr_dim=DIM, nlvr2_sets=10, vcr_examples=12, regions=4,
                     nlvr2_regions=4)


def vqa_args(synth):
    return ["--imdb_dir", f"{synth}/vqa2/imdb", "--features", f"{synth}/detectron_fix_100", "--train_split", "train",
            "--eval_split", "val"]


def nlvr2_args(synth):
    return ["--data_dir", f"{synth}/nlvr2", "--features", f"{synth}/detectron_fix_144"]


def vcr_args(synth):
    return ["--data_dir", f"{synth}/vcr", "--features", f"{synth}/vcr/features"]


def state(path):
    return {k: v.numpy() for k, v in paddle.load(os.path.join(path, "model_state.pdparams")).items()}


# ------------------------------------------------------------------------------------------ end to end
def test_vqa2_train_and_predict(synth, tmp_path):
    out = str(tmp_path / "vqa")
    assert load_script("VQA2/run_vqa2.py")(vqa_args(synth) + TINY + ["--output_dir", out]) == 0
    with open(os.path.join(out, "args.json")) as f:
        meta = json.load(f)
    assert meta["args"]["learning_rate"] == 2e-5 and meta["git_commit"] and "paddlepaddle" in meta["packages"]
    records = read_jsonl(os.path.join(out, "metrics.jsonl"))
    evals = [r for r in records if r["type"] == "eval"]
    assert len(evals) == 1 and 0 <= evals[0]["soft_accuracy"] <= 1 and "vqa_accuracy" in evals[0]
    steps = [s for s, _ in list_checkpoints(out)]
    assert steps[-1] == max(r["step"] for r in records) and all(s % 2 == 0 for s in steps[:-1])
    for name in ("best", "final"):
        assert os.path.isfile(os.path.join(out, name, "model_state.pdparams"))

    predict = load_script("VQA2/run_predict.py")
    common = ["--model_dir", os.path.join(out, "final"), "--imdb_dir", f"{synth}/vqa2/imdb", "--features",
              f"{synth}/detectron_fix_100"]
    assert predict(common + ["--split", "test2015", "--output_dir", str(tmp_path / "test")]) == 0
    with open(tmp_path / "test" / "result.json") as f:
        result = json.load(f)
    test_ids = [e["question_id"] for e in np.load(f"{synth}/vqa2/imdb/imdb_test2015.npy", allow_pickle=True)[1:]]
    assert [r["question_id"] for r in result] == test_ids and all(isinstance(r["answer"], str) for r in result)
    assert not os.path.exists(tmp_path / "test" / "metrics.json")  # no answers on test2015

    assert predict(common + ["--split", "val", "--output_dir", str(tmp_path / "val")]) == 0
    with open(tmp_path / "val" / "metrics.json") as f:
        metrics = json.load(f)
    with open(tmp_path / "val" / "result.json") as f:
        answers = {r["question_id"]: r["answer"] for r in json.load(f)}
    # Recompute the official accuracy from the written answers and the imdb's raw answers (definition).
    entries = np.load(f"{synth}/vqa2/imdb/imdb_val2014.npy", allow_pickle=True)[1:]
    accs = []
    for e in entries:
        gts = e["all_answers"]
        pred = answers[e["question_id"]]
        accs.append(np.mean([min(1, sum(g == pred for j, g in enumerate(gts) if j != i) / 3) for i in range(len(gts))]))
    assert metrics["vqa_accuracy"] == pytest.approx(100 * np.mean(accs), abs=0.01)
    assert set(metrics) >= {"vqa_accuracy", "soft_accuracy", "per_answer_type"}


def test_nlvr2_train_and_predict(synth, tmp_path):
    out = str(tmp_path / "nlvr2")
    assert load_script("NLVR2/run_nlvr2.py")(nlvr2_args(synth) + TINY + ["--output_dir", out, "--text_only"]) == 0
    pred_dir = tmp_path / "dev"
    assert load_script("NLVR2/run_predict.py")(nlvr2_args(synth) + ["--model_dir", os.path.join(out, "best"), "--split",
                                                                    "dev", "--output_dir", str(pred_dir)]) == 0
    preds = read_nlvr2_predictions(pred_dir / "predictions.csv")
    rows = [json.loads(line) for line in open(f"{synth}/nlvr2/dev.json")]
    assert list(preds) == [r["identifier"] for r in rows]
    with open(pred_dir / "metrics.json") as f:
        metrics = json.load(f)
    correct = [preds[r["identifier"]] == (r["label"] == "True") for r in rows]
    assert metrics["accuracy"] == pytest.approx(np.mean(correct))
    by_sentence = {}
    for r, ok in zip(rows, correct):
        key = "-".join(r["identifier"].split("-")[:2] + r["identifier"].split("-")[3:])
        by_sentence[key] = by_sentence.get(key, True) and ok
    assert metrics["consistency"] == pytest.approx(np.mean(list(by_sentence.values())))


def test_vcr_train_and_predict(synth, tmp_path):
    run = load_script("VCR/run_vcr.py")
    assert run(vcr_args(synth) + TINY + ["--mode", "qa", "--output_dir", str(tmp_path / "qa")]) == 0
    assert run(vcr_args(synth) + TINY + ["--mode", "qar", "--output_dir", str(tmp_path / "qar")]) == 0
    out = tmp_path / "pred"
    assert load_script("VCR/run_predict.py")(vcr_args(synth) + [
        "--model_dir", str(tmp_path / "qa" / "final"), "--qar_model_dir", str(tmp_path / "qar" / "final"),
        "--split", "val", "--output_dir", str(out)]) == 0
    with open(out / "metrics.json") as f:
        metrics = json.load(f)
    rows = [json.loads(line) for line in open(out / "predictions.jsonl")]
    gold = [json.loads(line) for line in open(f"{synth}/vcr/val.jsonl")]
    a = np.array([np.argmax(r["answer_probs"]) == g["answer_label"] for r, g in zip(rows, gold)])
    r_ok = np.array([np.argmax(r["rationale_probs"]) == g["rationale_label"] for r, g in zip(rows, gold)])
    assert metrics["q2a"] == pytest.approx(a.mean()) and metrics["qa2r"] == pytest.approx(r_ok.mean())
    assert metrics["q2ar"] == pytest.approx((a & r_ok).mean())


@pytest.mark.parametrize("task", ["vqa2", "nlvr2"])
def test_predict_with_exported_model_equals_model_dir(synth, tmp_path, task):
    """Train briefly, export with tools/export_model.py (paddle and --format onnx), predict with --inference_model
    and --onnx_model: the same files as with --model_dir (the same prediction loop, the paddle.inference predictor /
    onnxruntime instead of the dygraph model)."""
    if task == "vqa2":
        train, predict = load_script("VQA2/run_vqa2.py"), load_script("VQA2/run_predict.py")
        train_data, data = vqa_args(synth), vqa_args(synth)[:4]
        split, pred_file, extra = "val", "result.json", []
    else:
        train, predict = load_script("NLVR2/run_nlvr2.py"), load_script("NLVR2/run_predict.py")
        train_data = data = nlvr2_args(synth)
        split, pred_file, extra = "dev", "predictions.csv", ["--text_only"]  # the mask must reach the predictor too
    run = str(tmp_path / "run")
    assert train(train_data + TINY + ["--output_dir", run, "--max_steps", "2", "--no_eval"] + extra) == 0
    final, exported = os.path.join(run, "final"), str(tmp_path / "export")
    assert load_script("tools/export_model.py")(["--model", final, "--out", exported]) == 0
    onnx_dir = str(tmp_path / "onnx")
    assert load_script("tools/export_model.py")(["--model", final, "--out", onnx_dir, "--format", "onnx"]) == 0
    written = {}
    for flag, path in (("--model_dir", final), ("--inference_model", exported), ("--onnx_model", onnx_dir)):
        out = tmp_path / flag.strip("-")
        assert predict(data + [flag, path, "--split", split, "--output_dir", str(out), "--batch_size", "5"] + extra) == 0
        with open(out / pred_file, "rb") as f, open(out / "metrics.json") as g:
            written[flag] = (f.read(), json.load(g))
    assert written["--inference_model"][0] == written["--model_dir"][0]  # predictions: byte for byte
    assert written["--inference_model"][1] == written["--model_dir"][1]  # metrics.json
    assert written["--onnx_model"] == written["--model_dir"]
    assert written["--model_dir"][1]["split"] == split

    out = ["--split", split, "--output_dir", str(tmp_path / "x")]
    with pytest.raises(UsageError, match="give exactly one of --model_dir .*, --inference_model .* or --onnx_model"):
        predict(data + out)
    with pytest.raises(UsageError, match="got --model_dir, --inference_model$"):
        predict(data + ["--model_dir", final, "--inference_model", exported] + out)
    with pytest.raises(UsageError, match="got --inference_model, --onnx_model$"):
        predict(data + ["--onnx_model", onnx_dir, "--inference_model", exported] + out)
    with pytest.raises(UsageError, match="has no export.json"):
        predict(data + ["--inference_model", final] + out)
    with pytest.raises(UsageError, match="--onnx_model .* has no export.json"):
        predict(data + ["--onnx_model", final] + out)
    with pytest.raises(FileNotFoundError, match="has no model.onnx"):
        predict(data + ["--onnx_model", exported] + out)
    if task == "nlvr2":
        with pytest.raises(UsageError, match="exported VisualBertForVisualReasoning, this script needs a "
                                             "VisualBertForQuestionAnswering"):
            load_script("VQA2/run_predict.py")(vqa_args(synth)[:4] + ["--inference_model", exported] + out)
        with pytest.raises(UsageError, match="not supported for VCR"):
            load_script("VCR/run_predict.py")(vcr_args(synth) + ["--inference_model", exported] + out)


@pytest.mark.parametrize("dataset", ["coco_captions", "vqa2", "nlvr2"])
def test_pretrain(synth, tmp_path, dataset):
    data = {"coco_captions": (f"{synth}/coco/annotations", f"{synth}/detectron_fix_100"),
            "vqa2": (f"{synth}/vqa2/imdb", f"{synth}/detectron_fix_100"),
            "nlvr2": (f"{synth}/nlvr2", f"{synth}/detectron_fix_144")}[dataset]
    out = str(tmp_path / dataset)
    argv = ["--dataset", dataset, "--data_dir", data[0], "--features", data[1], "--output_dir", out] + TINY
    if dataset == "vqa2":
        argv += ["--train_split", "train", "--eval_split", "val"]
    assert load_script("run_pretrain.py")(argv) == 0
    evals = [r for r in read_jsonl(os.path.join(out, "metrics.jsonl")) if r["type"] == "eval"]
    assert evals and np.isfinite(evals[-1]["loss"]) and ("sentence_image_accuracy" in evals[-1]) == (dataset != "vqa2")
    # Fine-tune from the pretraining checkpoint (a PreTraining head → a new task head).
    if dataset == "vqa2":
        ft = str(tmp_path / "ft")
        assert load_script("VQA2/run_vqa2.py")(vqa_args(synth) + TINY[8:] + [
            "--model_name_or_path", os.path.join(out, "final"), "--output_dir", ft]) == 0
        pre, tuned = state(os.path.join(out, "final")), state(os.path.join(ft, "final"))
        assert pre["visual_bert.embeddings.word_embeddings.weight"].shape == tuned["visual_bert.embeddings.word_embeddings.weight"].shape


# ------------------------------------------------------------------------------------------ BERT init
def test_bert_init_from_hf_bert(synth, tmp_path):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                  intermediate_size=64, max_position_embeddings=64)
    bert = transformers.BertForPreTraining(cfg)
    bert_dir = str(tmp_path / "bert")
    bert.save_pretrained(bert_dir)  # safetensors, local only
    sd = {k: v.detach().numpy() for k, v in bert.state_dict().items()}

    out = str(tmp_path / "from_bert")
    assert load_script("VQA2/run_vqa2.py")(vqa_args(synth) + TINY[8:] + [
        "--bert_model", bert_dir, "--output_dir", out, "--max_steps", "1", "--learning_rate", "1e-12"]) == 0
    with open(os.path.join(out, "args.json")) as f:
        assert json.load(f)["config"]["hidden_size"] == 32
    # Before any real update (lr 1e-12): the text side equals BERT, visual tables copy the text ones.
    from visualbert.bert_init import load_bert_weights
    from visualbert.configuration import VisualBertConfig
    from visualbert.modeling import VisualBertForPreTraining

    model = VisualBertForPreTraining(VisualBertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                                      intermediate_size=64, max_position_embeddings=64,
                                                      visual_embedding_dim=DIM))
    left = load_bert_weights(model, bert_dir)
    ours = {k: v.numpy() for k, v in model.state_dict().items()}
    np.testing.assert_array_equal(ours["visual_bert.embeddings.word_embeddings.weight"], sd["bert.embeddings.word_embeddings.weight"])
    np.testing.assert_array_equal(ours["visual_bert.encoder.layer.1.attention.self.query.weight"],
                                  sd["bert.encoder.layer.1.attention.self.query.weight"].T)
    np.testing.assert_array_equal(ours["cls.predictions.transform.dense.weight"], sd["cls.predictions.transform.dense.weight"].T)
    np.testing.assert_array_equal(ours["visual_bert.embeddings.visual_position_embeddings.weight"],
                                  sd["bert.embeddings.position_embeddings.weight"])
    np.testing.assert_array_equal(ours["visual_bert.embeddings.visual_token_type_embeddings.weight"],
                                  sd["bert.embeddings.token_type_embeddings.weight"])
    assert any("visual_projection" in k for k in left)
    tuned = state(os.path.join(out, "final"))
    np.testing.assert_allclose(tuned["visual_bert.embeddings.visual_position_embeddings.weight"],
                               sd["bert.embeddings.position_embeddings.weight"], atol=1e-6)


# ------------------------------------------------------------------------------------------ failures
def test_bad_arguments_fail_before_training(synth, tmp_path):
    vqa = load_script("VQA2/run_vqa2.py")
    out = str(tmp_path / "o")
    with pytest.raises(UsageError, match="--save_steps must be a positive"):
        vqa(vqa_args(synth) + TINY + ["--output_dir", out, "--save_steps", "0"])
    with pytest.raises(UsageError, match="--imdb_dir"):
        vqa(["--imdb_dir", str(tmp_path / "nope"), "--features", f"{synth}/detectron_fix_100"] + TINY + ["--output_dir", out])
    with pytest.raises(UsageError, match="unknown VQA split 'nope'"):
        vqa(vqa_args(synth)[:-1] + ["nope"] + TINY + ["--output_dir", out])
    with pytest.raises(FileNotFoundError, match="imdb_nope.npy"):
        vqa(vqa_args(synth)[:-1] + ["imdb_nope.npy"] + TINY + ["--output_dir", out])
    with pytest.raises(FileNotFoundError, match="holds no features"):  # the width is read from the feature store
        vqa(vqa_args(synth)[:2] + ["--features", str(tmp_path)] + vqa_args(synth)[4:] + TINY + ["--output_dir", out])
    with pytest.raises(UsageError, match="--model_name_or_path"):
        vqa(vqa_args(synth) + TINY + ["--output_dir", out, "--model_name_or_path", str(tmp_path / "missing")])
    with pytest.raises(UsageError, match="larger than the training set"):
        vqa(vqa_args(synth) + TINY + ["--output_dir", out, "--batch_size", "100000"])
    assert not os.path.exists(out) or not os.listdir(out)  # nothing written by the failed runs

    # A checkpoint whose head does not fit: an NLVR2 (2-way) model into VQA (3129 answers).
    nl = str(tmp_path / "nl")
    assert load_script("NLVR2/run_nlvr2.py")(nlvr2_args(synth) + TINY + ["--output_dir", nl, "--max_steps", "1", "--no_eval"]) == 0
    with pytest.raises(UsageError, match="head with 2 outputs"):
        vqa(vqa_args(synth) + TINY + ["--output_dir", out, "--model_name_or_path", os.path.join(nl, "final")])
    # ...accepted with --ignore_mismatched_sizes.
    assert vqa(vqa_args(synth) + TINY + ["--output_dir", out, "--model_name_or_path", os.path.join(nl, "final"),
                                         "--ignore_mismatched_sizes", "--max_steps", "1"]) == 0
    # The output directory now holds a run.
    with pytest.raises(UsageError, match="already holds a run"):
        vqa(vqa_args(synth) + TINY + ["--output_dir", out])
    assert vqa(vqa_args(synth) + TINY + ["--output_dir", out, "--overwrite_output_dir", "--max_steps", "1"]) == 0

    # A checkpoint of another visual width.
    from visualbert.configuration import VisualBertConfig
    from visualbert.modeling import VisualBertForPreTraining

    wide = str(tmp_path / "wide")
    VisualBertForPreTraining(VisualBertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                              intermediate_size=64, visual_embedding_dim=48)).save_pretrained(wide)
    with pytest.raises(UsageError, match="visual_embedding_dim=48"):
        vqa(vqa_args(synth) + TINY + ["--output_dir", str(tmp_path / "w"), "--model_name_or_path", wide])


def test_cli_exit_code_and_message(synth, tmp_path):
    proc = subprocess.run([sys.executable, "NLVR2/run_nlvr2.py"] + nlvr2_args(synth) + TINY +
                          ["--output_dir", str(tmp_path / "x"), "--save_steps", "0"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert "error: --save_steps must be a positive number of steps, got 0" in proc.stderr


@pytest.fixture()
def synth_missing(tmp_path):
    """A small NLVR2 + VQA2 copy with one feature file deleted from each of NLVR2 dev and VQA2 train2014."""
    out = str(tmp_path / "synth_missing")
    generate(out, tasks=("vqa", "nlvr2"), num_images=10, questions_per_image=1, regions=3, vqa_dim=DIM, nlvr2_dim=DIM,
             nlvr2_sets=10, nlvr2_regions=3)
    os.remove(os.path.join(out, "detectron_fix_144", "dev", "feature_1024dim", "dev-0-1-img1.png.npy"))
    name = np.load(os.path.join(out, "vqa2", "imdb", "imdb_train2014.npy"), allow_pickle=True)[2]["image_name"]
    os.remove(os.path.join(out, "detectron_fix_100", "fc6", "vqa", "train2014", name + ".npy"))
    return out, name


def test_check_features_fails_before_training(synth_missing, tmp_path):
    synth, vqa_key = synth_missing
    # NLVR2: the missing image is in the evaluation split (dev), which the run reads too -> exit 2 before training
    out = str(tmp_path / "nlvr2")
    proc = subprocess.run([sys.executable, "NLVR2/run_nlvr2.py"] + nlvr2_args(synth) + TINY +
                          ["--output_dir", out, "--check_features"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "dev-0-1-img1.png" in proc.stderr and "dev.json" in proc.stderr and "Traceback" not in proc.stderr
    assert not os.path.exists(os.path.join(out, "args.json")) and not list_checkpoints(out)
    # VQA2 (in process): the missing image is in the training split
    from visualbert.data.errors import MissingFeaturesError

    out = str(tmp_path / "vqa")
    with pytest.raises(MissingFeaturesError, match=vqa_key) as err:
        load_script("VQA2/run_vqa2.py")(vqa_args(synth) + TINY + ["--output_dir", out, "--check_features"])
    assert err.value.missing == [vqa_key]
    assert not os.path.exists(os.path.join(out, "args.json")) and not list_checkpoints(out)


# ------------------------------------------------------------------------------------------ kill and resume
# Runs NLVR2/run_nlvr2.py's main in a fresh process with a callback that hard-exits (os._exit: no cleanup, as a
# killed job) right after the checkpoint of step N is complete ("after") or while it is half written ("during").
KILLER = """
import os, runpy, sys
from visualbert.engine import TrainerCallback

when, at = sys.argv[1], int(sys.argv[2])


class Kill(TrainerCallback):
    def on_save_partial(self, trainer, step, tmp_dir):
        if when == "during" and step == at:
            os._exit(17)

    def on_save(self, trainer, step, path):
        if when == "after" and step == at:
            os._exit(0)


sys.exit(runpy.run_path("NLVR2/run_nlvr2.py")["main"](sys.argv[3:], callbacks=[Kill()]))
"""


def _run_nlvr2(synth, out, extra=(), kill=None):
    script = ["NLVR2/run_nlvr2.py"] if kill is None else ["-c", KILLER, *kill]
    argv = [sys.executable, *script] + nlvr2_args(synth) + TINY[:-6] + [
        "--batch_size", "4", "--num_train_epochs", "2", "--save_steps", "3", "--gradient_accumulation_steps", "2",
        "--learning_rate", "1e-3", "--output_dir", out, "--eval_steps", "3", "--logging_steps", "1"] + list(extra)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])))
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)


def test_killed_run_resumes_to_identical_weights_and_metrics(synth, tmp_path):
    # 12 train examples, batch 4, accumulation 2 -> 3 micro-batches, 2 updates per epoch, 4 in all; dropout on.
    ref = str(tmp_path / "ref")
    p = _run_nlvr2(synth, ref)
    assert p.returncode == 0, p.stderr[-2000:]

    run = str(tmp_path / "run")
    p = _run_nlvr2(synth, run, kill=("after", "3"))
    assert p.returncode == 0 and not os.path.exists(os.path.join(run, "final"))
    assert [s for s, _ in list_checkpoints(run)] == [3]
    p = _run_nlvr2(synth, run, ["--resume_from", "latest"])
    assert p.returncode == 0, p.stderr[-2000:]
    a, b = state(os.path.join(ref, "final")), state(os.path.join(run, "final"))
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    ev = lambda d: [r for r in read_jsonl(os.path.join(d, "metrics.jsonl")) if r["type"] == "eval"]  # noqa: E731
    assert ev(ref)[-1] == ev(run)[-1]
    train = lambda d: [r["loss"] for r in read_jsonl(os.path.join(d, "metrics.jsonl")) if r["type"] == "train"]  # noqa: E731
    assert train(ref) == train(run)

    # Killed while writing step 4's checkpoint: no half-written step_4, and resuming from step 3 still
    # reproduces the reference.
    crash = str(tmp_path / "crash")
    p = _run_nlvr2(synth, crash, kill=("during", "4"))
    assert p.returncode == 17
    assert [s for s, _ in list_checkpoints(crash)] == [3]
    assert not os.path.exists(os.path.join(crash, "step_4"))
    p = _run_nlvr2(synth, crash, ["--resume_from", os.path.join(crash, "step_3")])
    assert p.returncode == 0, p.stderr[-2000:]
    c = state(os.path.join(crash, "final"))
    for k in a:
        np.testing.assert_array_equal(a[k], c[k], err_msg=k)
