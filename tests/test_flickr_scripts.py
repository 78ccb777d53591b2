"""Flickr30K Entities through the real scripts on tiny synthetic data (in-process ``main(argv)``): grounding
fine-tuning and prediction, the task pre-training through run_pretrain.py, the BAN COCO converter, and bad inputs
(one ``error:`` line naming the file and line, exit status 2)."""

import importlib.util
import json
import os
import pickle
import shutil

import numpy as np
import pytest
from conftest import load_script

from visualbert import metrics as metrics_module
from visualbert.cli import main_wrapper
from visualbert.data.synthetic_flickr import generate_flickr30k
from visualbert.fileio import read_jsonl

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DIM = 24
TINY = ["--hidden_size", "32", "--num_hidden_layers", "1", "--num_attention_heads", "2", "--intermediate_size", "64",
        "--disable_tqdm", "--batch_size", "8", "--logging_steps", "1", "--save_steps", "1000", "--max_seq_length", "48",
        "--dropout", "0", "--learning_rate", "1e-3"]


@pytest.fixture(scope="module")
def flickr(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("flickr"))
    generate_flickr30k(out, images={"train": 6, "val": 3, "test": 3}, feature_dim=DIM, write_npy=False)
    return out


def data_args(root):
    return ["--data_dir", os.path.join(root, "Flickr30kEntities"), "--features", root]


def recall_from_rows(rows, k):
    """R@K recomputed from the prediction file alone: a phrase is a hit when a positive is among its top K."""
    return float(np.mean([any(r["positive"][:k]) for r in rows]))


def test_train_and_predict(flickr, tmp_path, monkeypatch):
    out = str(tmp_path / "run")
    load_script("Flickr30K/run_flickr.py")(data_args(flickr) + TINY + ["--max_steps", "4", "--eval_steps", "2",
                                                                      "--output_dir", out])
    records = [json.loads(line) for line in open(os.path.join(out, "metrics.jsonl"))]
    evals = [r for r in records if r["type"] == "eval"]
    assert [r["step"] for r in evals] == [2, 4]
    assert all(np.isfinite(r["loss"]) and 0 <= r["R@1"] <= r["R@5"] <= r["R@10"] <= r["upper_bound"] for r in evals)
    best = json.load(open(os.path.join(out, "best", "best.json")))
    assert best["R@1"] == max(r["R@1"] for r in evals)  # best/ by R@1, higher is better
    config = json.load(open(os.path.join(out, "best", "config.json")))
    assert config["architectures"] == ["VisualBertForRegionToPhraseAlignment"]
    assert config["visual_embedding_dim"] == DIM + 6  # BAN's spatial features appended

    batches = []
    original = metrics_module.GroundingEvaluator.add_batch
    monkeypatch.setattr(metrics_module.GroundingEvaluator, "add_batch",
                        lambda self, *a, **k: (batches.append(a[0].shape), original(self, *a, **k))[1])
    pred = str(tmp_path / "val")
    load_script("Flickr30K/run_predict.py")(["--model_dir", os.path.join(out, "best"), "--split", "val",
                                             "--max_seq_length", "48", "--batch_size", "4", "--output_dir", pred]
                                            + data_args(flickr))
    assert batches and all(len(shape) == 3 for shape in batches)  # [B, P, R] logits went through the evaluator
    metrics = json.load(open(os.path.join(pred, "metrics.json")))
    rows = read_jsonl(os.path.join(pred, "predictions.jsonl"))
    assert len(rows) == metrics["phrases"] == metrics["phrase_counts"]["grounded_phrases"]
    for k in (1, 5, 10):
        assert metrics[f"R@{k}"] == pytest.approx(recall_from_rows(rows, k))
    assert metrics["upper_bound"] == pytest.approx(np.mean([r["has_positive"] for r in rows]))
    # the same model on the same split: the prediction script agrees with the evaluation that chose best/
    assert metrics["R@1"] == pytest.approx(best["R@1"]) and metrics["R@10"] == pytest.approx(best["metrics"]["R@10"])
    for row in rows:
        assert len(row["boxes"]) == len(row["scores"]) == min(10, len(row["boxes"])) > 0
        assert row["scores"] == sorted(row["scores"], reverse=True) and sum(row["scores"]) <= 1 + 1e-5
    assert set(metrics["baselines"]) == {"largest_box", "random_box"}
    for baseline in metrics["baselines"].values():
        assert baseline["phrases"] == metrics["phrases"] and baseline["upper_bound"] == metrics["upper_bound"]
    assert set(metrics["per_type"]) and all(v["phrases"] <= metrics["phrases"] for v in metrics["per_type"].values())


def test_task_pretraining_through_run_pretrain(flickr, tmp_path):
    out = str(tmp_path / "pre")
    load_script("run_pretrain.py")(["--dataset", "flickr30k"] + data_args(flickr) + TINY +
                                   ["--max_steps", "2", "--output_dir", out])
    evals = [json.loads(line) for line in open(os.path.join(out, "metrics.jsonl")) if '"eval"' in line]
    assert evals and np.isfinite(evals[-1]["mlm_loss"]) and "sentence_image_loss" not in evals[-1]  # MLM only
    config = json.load(open(os.path.join(out, "final", "config.json")))
    assert config["architectures"] == ["VisualBertForPreTraining"] and config["visual_embedding_dim"] == DIM + 6


# ------------------------------------------------------------------------------------------ bad inputs
def run_failing(argv, capsys):
    main = load_script("Flickr30K/run_flickr.py")
    with pytest.raises(SystemExit) as exit_info:
        main_wrapper(lambda: main(argv))
    err = capsys.readouterr().err
    assert exit_info.value.code == 2, err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in err, err  # (the other lines are the INFO log)
    return errors[0]


@pytest.fixture
def broken(flickr, tmp_path):
    root = str(tmp_path / "broken")
    shutil.copytree(flickr, root)
    entities = os.path.join(root, "Flickr30kEntities")
    image = open(os.path.join(entities, "val.txt")).read().split()[1]  # the second image of the val list
    return root, entities, image


def edit(path, old, new):
    text = open(path).read()
    assert old in text
    with open(path, "w") as f:
        f.write(text.replace(old, new, 1))


def test_bad_inputs_name_file_and_line(broken, tmp_path, capsys):
    root, entities, image = broken
    sentences = os.path.join(entities, "Sentences", f"{image}.txt")
    xml = os.path.join(entities, "Annotations", f"{image}.xml")
    argv = data_args(root) + TINY + ["--max_steps", "1", "--output_dir", str(tmp_path / "out")]
    lines = open(sentences).read().splitlines()

    # a phrase whose chain id has no box or flag in the XML
    edit(sentences, lines[1], lines[1].replace("[/EN#1/", "[/EN#77/", 1) if "[/EN#1/" in lines[1]
         else lines[1].replace("[/EN#2/", "[/EN#77/", 1))
    err = run_failing(argv, capsys)
    assert f"{sentences}:2: phrase" in err and "has chain 77" in err and xml in err
    edit(sentences, open(sentences).read().splitlines()[1], lines[1])

    # a caption without markup
    edit(sentences, lines[2], "a man walks in the street .")
    assert f"{sentences}:3: caption without phrase markup" in run_failing(argv, capsys)
    edit(sentences, "a man walks in the street .", lines[2])

    # a malformed XML
    edit(xml, "</xmax>", "</xmx>")
    err = run_failing(argv, capsys)
    assert err.startswith(f"error: {xml}:") and "malformed XML" in err
    edit(xml, "</xmx>", "</xmax>")

    # an <object> with a name but neither a box nor a nobndbox/scene flag
    xml_text = open(xml).read()
    start = xml_text.index("<bndbox>")
    edit(xml, xml_text[start:xml_text.index("</bndbox>") + len("</bndbox>")], "")
    object_line = xml_text[:xml_text.rindex("<object>", 0, start)].count("\n") + 1
    err = run_failing(argv, capsys)
    assert err.startswith(f"error: {xml}:{object_line}: <object> for chain(s)"), err


def test_image_missing_from_the_hdf5_index(broken, tmp_path, capsys):
    root, entities, image = broken
    index = os.path.join(root, "val_imgid2idx.pkl")
    with open(index, "rb") as f:
        ids = pickle.load(f)
    del ids[int(image)]
    with open(index, "wb") as f:
        pickle.dump(ids, f)
    err = run_failing(data_args(root) + TINY + ["--max_steps", "1", "--output_dir", str(tmp_path / "out")], capsys)
    assert f"{os.path.join(entities, 'val.txt')}:2: image {image}" in err and "val_imgid2idx.pkl" in err


# ------------------------------------------------------------------------------------------ BAN COCO converter
def test_convert_ban_hdf5_appends_the_spatial_features(flickr, tmp_path):
    import h5py

    spec = importlib.util.spec_from_file_location("convert_ban_hdf5", os.path.join(ROOT, "tools", "convert_ban_hdf5.py"))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    out = str(tmp_path / "coco")
    assert tool.main(["--h5", os.path.join(flickr, "test.hdf5"), "--coco_set", "val2014", "--out", out]) == 0
    with open(os.path.join(flickr, "test_imgid2idx.pkl"), "rb") as f:
        index = pickle.load(f)
    with h5py.File(os.path.join(flickr, "test.hdf5"), "r") as h:
        for image_id, row in index.items():
            start, end = h["pos_boxes"][row]
            got = np.load(os.path.join(out, "fc6", "vqa", "val2014", f"COCO_val2014_{int(image_id):012d}.npy"))
            assert got.shape == (end - start, DIM + 6)
            np.testing.assert_array_equal(got[:, :DIM], h["image_features"][start:end])
            np.testing.assert_array_equal(got[:, DIM:], h["spatial_features"][start:end])
    assert tool.main(["--h5", os.path.join(flickr, "test.hdf5"), "--coco_set", "val2014", "--out", out]) == 2
