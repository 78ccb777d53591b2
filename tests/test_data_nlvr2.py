"""NLVR2 reader and dataset (real dev annotations sample + generated files)."""

import json
import os

import numpy as np
import pytest

from visualbert.constants import IGNORE_INDEX
from visualbert.data import DataFormatError, MissingFeaturesError, NLVR2Dataset, image_keys, read_nlvr2_jsonl

HERE = os.path.dirname(os.path.abspath(__file__))
REAL_DEV = os.path.join(HERE, "data", "nlvr2_dev_sample.jsonl")


@pytest.fixture(scope="module")
def synth(synthetic):
    return synthetic(nlvr2_sets=10, nlvr2_regions=5, nlvr2_dim=48, tasks=("nlvr2",))


def _ds(synth, tok, split="train", **kw):
    return NLVR2Dataset(os.path.join(synth, "nlvr2", f"{split}.json"), os.path.join(synth, "detectron_fix_144"), tok,
                        feature_dim=48, **kw)


def test_real_dev_sample():
    rows = read_nlvr2_jsonl(REAL_DEV)
    assert len(rows) == 300
    assert all(r["identifier"].startswith("dev-") for r in rows)
    assert {r["label"] for r in rows} == {"True", "False"}
    left, right = image_keys(rows[0]["identifier"])
    pair = rows[0]["identifier"].rsplit("-", 1)[0]
    assert left == pair + "-img0.png" and right == pair + "-img1.png"


def test_real_dev_sample_dataset(tok, tmp_path):
    """Every real line goes through the dataset (features faked at the real width, variable counts)."""
    rows = read_nlvr2_jsonl(REAL_DEV)[:40]
    root = tmp_path / "detectron_fix_144" / "dev" / "feature_1024dim"
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for r in rows:
        for k in image_keys(r["identifier"]):
            np.save(root / f"{k}.npy", rng.standard_normal((int(rng.integers(10, 150)), 1024)).astype(np.float32))
    ann = tmp_path / "dev.json"
    ann.write_text("".join(json.dumps({k: v for k, v in r.items() if k != "_line"}) + "\n" for r in rows))
    ds = NLVR2Dataset(str(ann), str(tmp_path / "detectron_fix_144"), tok, check_features=True)
    for i, r in enumerate(rows):
        s = ds[i]
        assert s["labels"] == (1 if r["label"] == "True" else 0) and s["labels"].dtype == np.int64
        assert s["identifier"] == r["identifier"]
        r0 = min(np.load(root / f"{image_keys(r['identifier'])[0]}.npy").shape[0], 144)
        assert (s["visual_token_type_ids"][:r0] == 0).all() and (s["visual_token_type_ids"][r0:] == 1).all()
        assert s["visual_embeds"].shape[0] <= 288 and s["visual_embeds"].shape[1] == 1024


def test_generated_dataset(synth, tok):
    ds = _ds(synth, tok, check_features=True)
    assert len(ds) == 12
    store = ds.store
    for i in range(len(ds)):
        s = ds[i]
        left, right = image_keys(s["identifier"])
        n0, n1 = store.num_regions(left), store.num_regions(right)
        assert s["visual_embeds"].shape == (n0 + n1, 48)
        np.testing.assert_array_equal(s["visual_embeds"][:n0], store[left])
        np.testing.assert_array_equal(s["visual_embeds"][n0:], store[right])
        assert s["visual_token_type_ids"].tolist() == [0] * n0 + [1] * n1
        toks = tok.convert_ids_to_tokens(s["input_ids"].tolist())
        assert toks[0] == "[CLS]" and toks[-1] == "[SEP]" and "[SEP]" not in toks[1:-1]
    labels = [int(ds[i]["labels"]) for i in range(len(ds))]
    assert 0 < sum(labels) < len(labels)


def test_labels_follow_file(tmp_path, synth, tok):
    ann = tmp_path / "x.json"
    src = [json.loads(line) for line in open(os.path.join(synth, "nlvr2", "train.json"))][:2]
    src[0]["label"], src[1]["label"] = "True", "False"
    ann.write_text("\n".join(json.dumps(r) for r in src))
    ds = NLVR2Dataset(str(ann), os.path.join(synth, "detectron_fix_144"), tok, feature_dim=48)
    assert int(ds[0]["labels"]) == 1 and int(ds[1]["labels"]) == 0


def test_test_file_without_labels(tmp_path, synth, tok):
    rows = [json.loads(line) for line in open(os.path.join(synth, "nlvr2", "test1.json"))]
    ann = tmp_path / "test1.json"
    ann.write_text("\n".join(json.dumps({k: v for k, v in r.items() if k != "label"}) for r in rows))
    ds = NLVR2Dataset(str(ann), os.path.join(synth, "detectron_fix_144"), tok, feature_dim=48)
    assert not ds.has_labels and "labels" not in ds[0]


def test_pretrain_task(synth, tok):
    ds = _ds(synth, tok, task="pretrain", mask_prob=0.3)
    raw = {}
    for line in open(os.path.join(synth, "nlvr2", "train.json")):
        if line.strip():
            row = json.loads(line)
            raw[row["identifier"]] = {"True": 1, "False": 0}[row["label"]]  # the file's own strings, hard-coded
    assert set(raw.values()) == {0, 1}
    for i in range(len(ds)):
        s = ds[i]
        assert s["labels"].shape == s["input_ids"].shape and (s["labels"][[0, -1]] == IGNORE_INDEX).all()
        assert int(s["sentence_image_labels"]) == raw[s["identifier"]]


@pytest.mark.parametrize(
    "line, match",
    [
        ("{not json", r"bad\.json:2: not a JSON object"),
        (json.dumps({"sentence": "x", "label": "True"}), r"bad\.json:2: lacks 'identifier'"),
        (json.dumps({"identifier": "dev-1-0-0", "label": "True"}), r"bad\.json:2: lacks 'sentence'"),
        (json.dumps({"identifier": "dev-1-0-0", "sentence": "x", "label": "maybe"}), r"bad\.json:2: label"),
    ],
)
def test_bad_lines(tmp_path, line, match):
    ann = tmp_path / "bad.json"
    ann.write_text(json.dumps({"identifier": "dev-1-0-0", "sentence": "ok", "label": "True"}) + "\n" + line + "\n")
    with pytest.raises(DataFormatError, match=match):
        read_nlvr2_jsonl(str(ann))


def test_empty_file(tmp_path):
    ann = tmp_path / "empty.json"
    ann.write_text("\n")
    with pytest.raises(DataFormatError, match=r"empty\.json: empty split"):
        read_nlvr2_jsonl(str(ann))


def test_missing_image_names_example(tmp_path, synth, tok):
    ann = tmp_path / "dev.json"
    ann.write_text(json.dumps({"identifier": "dev-999-0-0", "sentence": "x", "label": "True"}) + "\n")
    ds = NLVR2Dataset(str(ann), os.path.join(synth, "detectron_fix_144"), tok, feature_dim=48)
    with pytest.raises(MissingFeaturesError) as info:
        ds[0]
    assert "dev-999-0-img0.png.npy" in str(info.value) and "dev-999-0-0" in str(info.value) and "dev.json" in str(info.value)
    with pytest.raises(MissingFeaturesError, match="2 of 2 images"):
        ds.check_features()
