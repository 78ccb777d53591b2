"""VCR from images end to end on the synthetic release through the real scripts (``VCR/run_vcr.py``,
``VCR/run_predict.py``, in-process ``main(argv)``): a few optimiser steps of VCR task pre-training (detector
backbone frozen), Q->A and QA->R fine-tuning (detector trained), val metrics and the test split's leaderboard file;
bad inputs refused before training with one message naming the file and the example; a synthetic original
``vcr_fine_tuned.th`` converted and run by run_predict from images against the torch reference (detector
transcription + HF VisualBertForMultipleChoice)."""

import csv
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import paddle
import pytest
from conftest import load_script

from visualbert.cli import UsageError
from visualbert.configuration import VisualBertConfig
from visualbert.data import Collator
from visualbert.data.synthetic_vcr import make_synthetic_vcr
from visualbert.data.vcr_images import VCRImageDataset
from visualbert.fileio import read_jsonl
from visualbert.tokenizer import load_tokenizer
from visualbert.vcr_model import VisualBertForVCR, VisualBertForVCRPreTraining

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DETECTOR = dict(base_width=8, blocks=[1, 1, 1, 1], final_dim=32)
RUN = ["--disable_tqdm", "--batch_size", "2", "--max_steps", "2", "--logging_steps", "1", "--save_steps", "2"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    paths = make_synthetic_vcr(str(tmp_path_factory.mktemp("vcr")), lines_per_split=(4, 2, 2), seed=3)
    return paths, load_tokenizer()


def _config(architecture, **overrides):
    values = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                  visual_embedding_dim=32, max_position_embeddings=128, architectures=[architecture],
                  detector=DETECTOR, cnn_loss_ratio=0.5)
    values.update(overrides)
    return VisualBertConfig(**values)


def _state(path):
    return {k: v.numpy() for k, v in paddle.load(os.path.join(path, "model_state.pdparams")).items()}


def _changed(before, after):
    return {k for k in before if k in after and not np.array_equal(before[k], after[k])}


def _predict(model, dataset, batch_size=2):
    collate = Collator()
    model.eval()
    logits, labels = [], []
    with paddle.no_grad():
        for start in range(0, len(dataset), batch_size):
            samples = [dataset[i] for i in range(start, min(len(dataset), start + batch_size))]
            batch = collate(samples)
            out = model(**{k: v for k, v in batch.items() if isinstance(v, paddle.Tensor) and k != "labels"})
            logits.append(out.logits.numpy())
            labels += [int(s["labels"]) for s in samples if "labels" in s]
    return np.concatenate(logits), np.array(labels)


def _softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_all_stages_from_images_through_the_scripts(setup, tmp_path):
    paths, tok = setup
    data = ["--data_dir", paths["root"], "--images", paths["image_dir"]]
    run_vcr, run_predict = load_script("VCR/run_vcr.py"), load_script("VCR/run_predict.py")
    paddle.seed(0)
    VisualBertForVCRPreTraining(_config("VisualBertForVCRPreTraining")).save_pretrained(str(tmp_path / "init"))
    init = _state(str(tmp_path / "init"))

    # VCR task pre-training (pre-train.json): complete_shuffle + include_qa_and_qar, the backbone frozen by default.
    assert run_vcr(["--stage", "pretrain", *data, "--model_name_or_path", str(tmp_path / "init"),
                    "--output_dir", str(tmp_path / "pre"), *RUN]) == 0
    args = json.load(open(tmp_path / "pre" / "args.json"))
    assert args["num_train_examples"] == 4 * 8 and args["model_class"] == "VisualBertForVCRPreTraining"
    assert args["args"]["learning_rate"] == 5e-5 and args["args"]["warmup"] == 0.1879  # pre-train.json
    pre = _state(str(tmp_path / "pre" / "final"))
    changed = _changed(init, pre)
    assert not any(k.startswith("detector.backbone.") for k in changed)  # weights AND running statistics
    assert "detector.after_roi_align.0.0.conv1.weight" in changed and "cls.predictions.transform.dense.weight" in changed
    evals = [r for r in read_jsonl(str(tmp_path / "pre" / "metrics.jsonl")) if r.get("type") == "eval"]
    assert evals and 0 <= evals[-1]["mlm_accuracy"] <= 1 and evals[-1]["sentence_image_loss"] > 0

    # Fine-tuning (fine-tune-qa.json / fine-tune-qar.json: freeze_detector false) from the pre-trained weights.
    for mode in ("qa", "qar"):
        assert run_vcr(["--mode", mode, *data, "--model_name_or_path", str(tmp_path / "pre" / "final"),
                        "--output_dir", str(tmp_path / mode), *RUN]) == 0
        changed = _changed(pre, _state(str(tmp_path / mode / "final")))
        assert "detector.backbone.0.weight" in changed and "detector.backbone.1._mean" in changed
        evals = [r for r in read_jsonl(str(tmp_path / mode / "metrics.jsonl")) if r.get("type") == "eval"]
        assert evals[-1]["q2a" if mode == "qa" else "qa2r"] == evals[-1]["accuracy"]

    # Val: Q->A, QA->R, Q->AR, checked against the predictions and the annotation file's labels.
    models = ["--model_dir", str(tmp_path / "qa" / "final"), "--qar_model_dir", str(tmp_path / "qar" / "final")]
    assert run_predict([*models, "--annotations", paths["root"], "--images", paths["image_dir"], "--split", "val",
                        "--batch_size", "2", "--output_dir", str(tmp_path / "val")]) == 0
    metrics = json.load(open(tmp_path / "val" / "metrics.json"))
    preds = {r["annot_id"]: r for r in read_jsonl(str(tmp_path / "val" / "predictions.jsonl"))}
    gold = read_jsonl(paths["val"])
    a_ok = np.array([np.argmax(preds[g["annot_id"]]["answer_probs"]) == g["answer_label"] for g in gold])
    r_ok = np.array([np.argmax(preds[g["annot_id"]]["rationale_probs"]) == g["rationale_label"] for g in gold])
    assert metrics["q2a"] == a_ok.mean() and metrics["qa2r"] == r_ok.mean() and metrics["q2ar"] == (a_ok & r_ok).mean()

    # Test: the leaderboard file, QA->R conditioned on each answer (checked against answer_labels = that answer).
    assert run_predict([*models, "--annotations", paths["root"], "--images", paths["image_dir"], "--split", "test",
                        "--batch_size", "2", "--output_dir", str(tmp_path / "test")]) == 0
    assert not (tmp_path / "test" / "metrics.json").exists()
    with open(tmp_path / "test" / "leaderboard.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["annot_id"] for r in rows] == ["test-0", "test-1"]
    qar = VisualBertForVCR.from_pretrained(str(tmp_path / "qar" / "final"))
    for answer in (0, 3):
        ds = VCRImageDataset(paths["test"], paths["image_dir"], tok, mode="qar", answer_labels=np.array([answer] * 2))
        expected = _softmax(_predict(qar, ds)[0])
        got = np.array([[float(r[f"rationale_conditioned_on_a{answer}_{i}"]) for i in range(4)] for r in rows])
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    qa = VisualBertForVCR.from_pretrained(str(tmp_path / "qa" / "final"))
    expected = _softmax(_predict(qa, VCRImageDataset(paths["test"], paths["image_dir"], tok, mode="qa"))[0])
    got = np.array([[float(r[f"answer_{i}"]) for i in range(4)] for r in rows])
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def _broken_copy(paths, tmp_path, edit):
    root = tmp_path / "broken"
    shutil.copytree(paths["root"], root)
    rows = [json.loads(line) for line in open(root / "train.jsonl")]
    edit(root, rows)
    with open(root / "train.jsonl", "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    return str(root), rows[1]


def _edit_metadata(field, value):
    def edit(root, rows):
        path = root / "vcr1images" / rows[1]["metadata_fn"]
        meta = json.load(open(path))
        meta[field] = [value(meta, i) for i in range(len(meta[field]))]
        json.dump(meta, open(path, "w"))
    return edit


@pytest.mark.parametrize("case,edit,message", [
    ("box outside the image", _edit_metadata("boxes", lambda m, i: [m["width"] + 5, 1, m["width"] + 20, 9, 0.9]),
     r"boxes\[\d\] = .* is outside the"),
    ("polygon of two points", _edit_metadata("segms", lambda m, i: [[[1, 1], [5, 5]]]), r"segms\[\d\]\[0\] is not a polygon"),
    ("object index out of range", lambda root, rows: rows[1]["question"].insert(1, [len(rows[1]["objects"]) + 3]),
     r"question refers to object \d+, but the line has \d objects"),
])
def test_bad_inputs_are_refused_before_training(setup, tmp_path, case, edit, message):
    paths, _ = setup
    root, row = _broken_copy(paths, tmp_path, edit)
    with pytest.raises(UsageError, match=message) as err:
        load_script("VCR/run_vcr.py")(["--mode", "qa", "--data_dir", root, "--images", os.path.join(root, "vcr1images"),
                                       "--output_dir", str(tmp_path / "o"), *RUN])
    text = str(err.value)
    assert "example 1 (line 2, annot_id train-1)" in text and os.path.join(root, "train.jsonl") in text
    if case != "object index out of range":
        assert row["metadata_fn"] in text  # the metadata file of that example
    assert not (tmp_path / "o").exists()  # nothing trained, nothing written


def test_missing_image_exits_2_with_one_line(setup, tmp_path):
    paths, _ = setup
    root, row = _broken_copy(paths, tmp_path, lambda root, rows: os.remove(root / "vcr1images" / rows[1]["img_fn"]))
    result = subprocess.run([sys.executable, os.path.join(ROOT, "VCR", "run_vcr.py"), "--data_dir", root, "--images",
                             os.path.join(root, "vcr1images"), "--output_dir", str(tmp_path / "o"), *RUN],
                            capture_output=True, text=True, timeout=300)
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert len(lines) == 1 and row["img_fn"] in lines[0] and "annot_id train-1" in lines[0]
    assert not (tmp_path / "o").exists()


def test_converted_original_th_through_run_predict_matches_the_torch_reference(setup, tmp_path):
    import torch
    from parity import make_hf_model
    from test_conversion import _original_names
    from vcr_torch_reference import TorchSimpleDetector, randomize_batchnorm

    paths, tok = setup
    config = VisualBertConfig(vocab_size=tok.vocab_size if hasattr(tok, "vocab_size") else len(tok.vocab),
                              hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48,
                              visual_embedding_dim=32, max_position_embeddings=128, num_labels=2,
                              architectures=["VisualBertForVCR"], detector=DETECTOR)
    torch.manual_seed(0)
    detector = randomize_batchnorm(TorchSimpleDetector(**DETECTOR), torch.Generator().manual_seed(2)).eval()
    hf_model = make_hf_model(config, "VisualBertForMultipleChoice", seed=4)
    with torch.no_grad():  # the pooled outputs of the 4 choices differ little: a large head tells them apart
        hf_model.cls.weight.mul_(30.0 / hf_model.cls.weight.abs().mean())
    state = _original_names({k: v.detach().numpy() for k, v in hf_model.state_dict().items()})
    state.update({"detector." + k: v.clone() for k, v in detector.state_dict().items()})
    (tmp_path / "th").mkdir()
    torch.save(state, str(tmp_path / "th" / "vcr_fine_tuned.th"))
    config.save_pretrained(str(tmp_path / "th"))
    result = subprocess.run([sys.executable, os.path.join(ROOT, "checkpoint", "convert.py"), "--src",
                             str(tmp_path / "th" / "vcr_fine_tuned.th"), "--dst", str(tmp_path / "pd")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]

    assert load_script("VCR/run_predict.py")(["--model_dir", str(tmp_path / "pd"), "--annotations", paths["root"],
                                              "--images", paths["image_dir"], "--split", "val", "--batch_size", "2",
                                              "--output_dir", str(tmp_path / "out")]) == 0
    got = np.array([r["answer_probs"] for r in read_jsonl(str(tmp_path / "out" / "predictions.jsonl"))])

    # Reference: the same collated samples through the torch detector and HF VisualBertForMultipleChoice.
    dataset = VCRImageDataset(paths["val"], paths["image_dir"], tok, mode="qa")
    batch = Collator(return_tensors="np")([dataset[i] for i in range(len(dataset))])
    t = {k: torch.from_numpy(np.asarray(batch[k])) for k in ("images", "boxes", "box_mask", "objects", "segms",
                                                            "input_ids", "attention_mask", "token_type_ids",
                                                            "image_text_alignment")}
    with torch.no_grad():
        det = detector(t["images"], t["boxes"], t["box_mask"], t["objects"], t["segms"])
        b, c = t["input_ids"].shape[:2]
        regions = det["obj_reps"].unsqueeze(1).expand(b, c, *det["obj_reps"].shape[1:]).contiguous()
        mask = t["box_mask"].unsqueeze(1).expand(b, c, t["box_mask"].shape[1]).contiguous()
        ref = hf_model(input_ids=t["input_ids"], attention_mask=t["attention_mask"], token_type_ids=t["token_type_ids"],
                       visual_embeds=regions, visual_attention_mask=mask, visual_token_type_ids=torch.zeros_like(mask),
                       image_text_alignment=t["image_text_alignment"].flatten(0, 1), return_dict=True).logits.numpy()
    # The predictions file holds softmax probabilities: compare centred log-probabilities with centred logits, to
    # a small fraction of the spread between the choices (so that a wrong choice order or region cannot pass).
    centred = np.log(got) - np.log(got).mean(-1, keepdims=True)
    ref_centred = ref - ref.mean(-1, keepdims=True)
    spread = np.ptp(ref, axis=-1).min()
    assert spread > 0.05
    assert np.abs(centred - ref_centred).max() <= 2e-2 * spread, (np.abs(centred - ref_centred).max(), spread)


def test_leaderboard_csv_layout(tmp_path):
    import csv

    from visualbert.vcr_submission import write_leaderboard_csv

    answer = np.array([[0.0, 0.0, 0.0, np.log(5.0)], [1.0, 1.0, 1.0, 1.0]])
    rationale = np.zeros((8, 4))
    rationale[5] = [np.log(3.0), 0, 0, 0]  # question 1, conditioned on answer 1
    write_leaderboard_csv(str(tmp_path / "test.csv"), ["test-0", "test-1"], answer, rationale)
    with open(tmp_path / "test.csv") as f:
        rows = list(csv.reader(f))
    assert rows[0][:6] == ["annot_id", "answer_0", "answer_1", "answer_2", "answer_3", "rationale_conditioned_on_a0_0"]
    assert rows[0][-1] == "rationale_conditioned_on_a3_3" and len(rows[0]) == 21
    assert rows[1][0] == "test-0" and abs(float(rows[1][4]) - 5 / 8) < 1e-12 and abs(float(rows[1][1]) - 1 / 8) < 1e-12
    header = rows[0]
    assert abs(float(rows[2][header.index("rationale_conditioned_on_a1_0")]) - 0.5) < 1e-12
    assert abs(float(rows[2][header.index("rationale_conditioned_on_a1_1")]) - 1 / 6) < 1e-12


def test_cached_detector_features_give_the_same_logits(setup, tmp_path):
    import subprocess
    import sys

    from visualbert.modeling import VisualBertForMultipleChoice

    paths, tok = setup
    paddle.seed(0)
    model = VisualBertForVCR(_config("VisualBertForVCR"))
    model.save_pretrained(str(tmp_path / "vcr"))
    tool = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools",
                        "cache_vcr_detector_features.py")
    result = subprocess.run([sys.executable, tool, "--model_dir", str(tmp_path / "vcr"), "--annotations", paths["val"],
                             "--images", paths["image_dir"], "--out", str(tmp_path / "cache"), "--batch_size", "2"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    from_images, labels = _predict(model, VCRImageDataset(paths["val"], paths["image_dir"], tok, mode="qar"))
    plain, info = VisualBertForMultipleChoice.from_pretrained(str(tmp_path / "vcr"), output_loading_info=True)
    assert not info["missing_keys"] and all(k.startswith("detector.") for k in info["unexpected_keys"])
    cached = VCRImageDataset(paths["val"], paths["image_dir"], tok, mode="qar", features=str(tmp_path / "cache"))
    assert "images" not in cached[0] and cached[0]["visual_embeds"].shape[1] == 32
    from_cache, cached_labels = _predict(plain, cached)
    np.testing.assert_allclose(from_cache, from_images, rtol=1e-5, atol=1e-6)
    assert (labels == cached_labels).all()

    result = subprocess.run([sys.executable, tool, "--model_dir", str(tmp_path / "missing"), "--annotations",
                             paths["val"], "--images", paths["image_dir"], "--out", str(tmp_path / "c2")],
                            capture_output=True, text=True)
    assert result.returncode == 2 and "missing" in result.stderr and "Traceback" not in result.stderr


def test_from_images_refuses_a_checkpoint_without_detector_and_detector_flags_without_images(setup, tmp_path):
    from visualbert.modeling import VisualBertForMultipleChoice

    paths, _ = setup
    VisualBertForMultipleChoice(_config("VisualBertForMultipleChoice", detector=None)).save_pretrained(str(tmp_path / "hf"))
    run_vcr = load_script("VCR/run_vcr.py")
    with pytest.raises(UsageError, match=r"holds a VisualBertForMultipleChoice, which has no detector weights"):
        run_vcr(["--data_dir", paths["root"], "--images", paths["image_dir"], "--model_name_or_path",
                 str(tmp_path / "hf"), "--output_dir", str(tmp_path / "o"), *RUN])
    with pytest.raises(UsageError, match="--freeze_detector apply to the detector of VCR from images"):
        run_vcr(["--data_dir", paths["root"], "--features", str(tmp_path), "--freeze_detector", "true",
                 "--output_dir", str(tmp_path / "o"), *RUN])
    with pytest.raises(UsageError, match="give --features .* or --images"):
        run_vcr(["--data_dir", paths["root"], "--output_dir", str(tmp_path / "o"), *RUN])
    assert not (tmp_path / "o").exists()
