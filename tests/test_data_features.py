"""Region-feature stores: layouts, packed == per-image, bad inputs, the .th converter."""

import os
import subprocess
import sys

import numpy as np
import pytest

from visualbert.data import (
    DataFormatError,
    MissingFeaturesError,
    NpyFeatureStore,
    PackedFeatureStore,
    detect_layout,
    open_feature_store,
    pack_features,
)
from visualbert.data.check import check_split

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _write(path, array):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    np.save(path, array)


@pytest.fixture
def vqa_root(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "detectron_fix_100"
    arrays = {}
    for s, ids in (("train2014", [9, 25, 30]), ("val2014", [42])):
        for i in ids:
            key = f"COCO_{s}_{i:012d}"
            arrays[key] = rng.standard_normal((100, 2048)).astype(np.float32)
            _write(str(root / "fc6" / "vqa" / s / f"{key}.npy"), arrays[key])
    return str(root), arrays


@pytest.fixture
def nlvr2_root(tmp_path):
    rng = np.random.default_rng(1)
    root = tmp_path / "detectron_fix_144"
    arrays = {}
    for key, n in (("dev-850-0-img0.png", 144), ("dev-850-0-img1.png", 37), ("train-1-2-img0.png", 5)):
        arrays[key] = rng.standard_normal((n, 1024)).astype(np.float32)
        split = key.split("-")[0]
        _write(str(root / split / "feature_1024dim" / f"{key}.npy"), arrays[key])
    return str(root), arrays


def test_vqa_layout_from_either_root(vqa_root):
    root, arrays = vqa_root
    for r in (root, os.path.join(root, "fc6", "vqa")):
        store = open_feature_store(r, dim=2048)
        assert isinstance(store, NpyFeatureStore) and store.layout == "vqa"
        for key, a in arrays.items():
            got = store[key]
            assert got.dtype == np.float32 and got.shape == (100, 2048)
            np.testing.assert_array_equal(got, a)
        assert sorted(store.keys()) == sorted(arrays)
    # a single split directory is a flat layout with the same keys
    flat = open_feature_store(os.path.join(root, "fc6", "vqa", "val2014"))
    assert flat.layout == "flat"
    np.testing.assert_array_equal(flat["COCO_val2014_000000000042"], arrays["COCO_val2014_000000000042"])


def test_nlvr2_layout_and_cap(nlvr2_root):
    root, arrays = nlvr2_root
    assert detect_layout(root)[0] == "nlvr2"
    store = open_feature_store(root, dim=1024, max_regions=100)
    assert store["dev-850-0-img0.png"].shape == (100, 1024)
    np.testing.assert_array_equal(store["dev-850-0-img0.png"], arrays["dev-850-0-img0.png"][:100])
    assert store.num_regions("dev-850-0-img1.png") == 37
    assert store.R == 100


def test_missing_root_fails_at_construction(tmp_path):
    with pytest.raises(FileNotFoundError, match="does_not_exist"):
        open_feature_store(str(tmp_path / "does_not_exist"))


def test_missing_key_names_the_file(vqa_root):
    root, _ = vqa_root
    store = open_feature_store(root)
    with pytest.raises(MissingFeaturesError, match=r"COCO_train2014_000000000777\.npy"):
        store["COCO_train2014_000000000777"]


def test_check_lists_all_missing(vqa_root):
    root, arrays = vqa_root
    store = open_feature_store(root)
    wanted = list(arrays) + [f"COCO_train2014_{i:012d}" for i in range(1000, 1015)]
    with pytest.raises(MissingFeaturesError) as info:
        store.check(wanted, source="imdb_x.npy")
    assert len(info.value.missing) == 15
    assert "15 of 19" in str(info.value) and "COCO_train2014_000000001000" in str(info.value)
    assert "imdb_x.npy" in str(info.value)


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.zeros((100, 1024), np.float32), "expected feature width 2048"),
        (np.zeros((100, 2048, 1), np.float32), "2-D"),
        (np.zeros((2048,), np.float32), "2-D"),
        (np.zeros((0, 2048), np.float32), "no regions"),
    ],
)
def test_bad_arrays(vqa_root, bad, match):
    root, _ = vqa_root
    path = os.path.join(root, "fc6", "vqa", "train2014", "COCO_train2014_000000000009.npy")
    np.save(path, bad)
    store = open_feature_store(root, dim=2048)
    with pytest.raises(DataFormatError, match=match) as info:
        store["COCO_train2014_000000000009"]
    assert "COCO_train2014_000000000009.npy" in str(info.value)


def test_width_inferred_then_enforced(vqa_root):
    root, _ = vqa_root
    np.save(os.path.join(root, "fc6", "vqa", "val2014", "COCO_val2014_000000000042.npy"), np.zeros((100, 512), np.float32))
    store = open_feature_store(root)  # no dim given: the first array read fixes it
    store["COCO_train2014_000000000009"]
    with pytest.raises(DataFormatError, match="expected feature width 2048"):
        store["COCO_val2014_000000000042"]


def test_empty_and_truncated_npy(vqa_root):
    root, _ = vqa_root
    path = os.path.join(root, "fc6", "vqa", "train2014", "COCO_train2014_000000000025.npy")
    data = open(path, "rb").read()
    store = open_feature_store(root, dim=2048)
    open(path, "wb").close()
    with pytest.raises(DataFormatError, match="empty file") as info:
        store["COCO_train2014_000000000025"]
    assert path in str(info.value)
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])
    with pytest.raises(DataFormatError, match="truncated") as info:
        store["COCO_train2014_000000000025"]
    assert path in str(info.value)


@pytest.mark.parametrize("float16", [False, True])
def test_packed_equals_per_image(tmp_path, vqa_root, nlvr2_root, float16):
    for root, arrays in (vqa_root, nlvr2_root):
        npy = open_feature_store(root)
        out = str(tmp_path / f"packed_{os.path.basename(root)}_{float16}")
        pack_features(npy, out, float16=float16, progress=False)
        packed = open_feature_store(out)
        assert isinstance(packed, PackedFeatureStore)
        assert sorted(packed.keys()) == sorted(arrays)
        for key in arrays:
            a, b = npy[key], packed[key]
            assert b.dtype == np.float32 and b.shape == a.shape
            if float16:
                np.testing.assert_allclose(b, a, rtol=1e-3, atol=1e-3)
                np.testing.assert_array_equal(b, a.astype(np.float16).astype(np.float32))
            else:
                np.testing.assert_array_equal(b, a)
        with pytest.raises(MissingFeaturesError, match="not in the packed store"):
            packed["nope"]


def test_packed_store_pickles_without_memmap(tmp_path, nlvr2_root):
    import pickle

    root, arrays = nlvr2_root
    out = str(tmp_path / "p")
    pack_features(open_feature_store(root), out, progress=False)
    store = open_feature_store(out, max_regions=10)
    store["dev-850-0-img1.png"]
    clone = pickle.loads(pickle.dumps(store))
    np.testing.assert_array_equal(clone["dev-850-0-img1.png"], arrays["dev-850-0-img1.png"][:10])


def test_packed_truncated_array_fails_at_open(tmp_path, nlvr2_root):
    root, _ = nlvr2_root
    out = str(tmp_path / "p")
    pack_features(open_feature_store(root), out, progress=False)
    path = os.path.join(out, "features.npy")
    data = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 3])
    with pytest.raises(DataFormatError, match="features.npy"):
        open_feature_store(out)


def test_pack_tool_cli(tmp_path, nlvr2_root):
    root, arrays = nlvr2_root
    out = str(tmp_path / "cli")
    subprocess.run([sys.executable, os.path.join(REPO, "tools", "pack_features.py"), "--features", root, "--out", out,
                    "--float16", "--quiet"], check=True, capture_output=True)
    packed = open_feature_store(out)
    for key, a in arrays.items():
        np.testing.assert_allclose(packed[key], a, atol=2e-3, rtol=1e-3)


def test_check_split_reports_missing_and_unreadable(tmp_path, nlvr2_root):
    import json

    root, _ = nlvr2_root
    ann = tmp_path / "dev.json"
    ann.write_text("\n".join(json.dumps({"identifier": f"dev-850-{p}-0", "sentence": "x", "label": "True"}) for p in (0, 1, 2)))
    open(os.path.join(root, "dev", "feature_1024dim", "dev-850-0-img1.png.npy"), "wb").close()
    report = check_split("nlvr2", str(ann), root, read=True, progress=False)
    assert report["keys"] == 6
    assert report["missing"] == ["dev-850-1-img0.png", "dev-850-1-img1.png", "dev-850-2-img0.png", "dev-850-2-img1.png"]
    assert len(report["bad"]) == 1 and "dev-850-0-img1.png.npy" in report["bad"][0]


def test_convert_th_caps_by_confidence(tmp_path):
    torch = pytest.importorskip("torch")
    sys.path.insert(0, os.path.join(REPO, "tools"))
    import convert_th_features

    rng = np.random.default_rng(3)
    feats = rng.standard_normal((150, 1024)).astype(np.float32)
    conf = rng.random(150).astype(np.float32)
    dump = {
        "dev-1-0-img0.png": (torch.from_numpy(feats), torch.zeros(150, 4), torch.from_numpy(conf)),
        "dev-1-0-img1.png": {"features": torch.from_numpy(feats[:20]), "conf": torch.from_numpy(conf[:20])},
    }
    th = str(tmp_path / "features_dev_150.th")
    torch.save(dump, th)
    out = str(tmp_path / "detectron_fix_144")
    assert convert_th_features.convert(th, out, layout="nlvr2", progress=False) == 2
    store = open_feature_store(out, dim=1024)
    got = store["dev-1-0-img0.png"]
    assert got.shape == (144, 1024)
    order = np.argsort(-conf, kind="stable")[:144]
    np.testing.assert_array_equal(got, feats[order])
    assert np.setdiff1d(np.arange(150), order).size == 6  # the six least confident boxes were dropped
    np.testing.assert_array_equal(store["dev-1-0-img1.png"], feats[:20][np.argsort(-conf[:20], kind="stable")])


def test_flat_store_keys_are_relative_paths_and_give_the_width(tmp_path):
    # VCR keys are "<movie>/<image>": keys() must return what __getitem__ takes, and width() reads the store
    # (not an example) when no width was declared.
    from visualbert.data import open_feature_store

    root = tmp_path / "vcr_feats"
    for key, rows in (("movie_b/clip@1", 3), ("movie_a/clip@3", 2)):
        _write(str(root / (key + ".npy")), np.ones((rows, 7), np.float32))
    store = open_feature_store(str(root))
    assert store.keys() == ["movie_a/clip@3", "movie_b/clip@1"]
    assert all(store[k].shape[1] == 7 for k in store.keys())
    assert open_feature_store(str(root)).width() == 7
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="holds no features"):
        open_feature_store(str(empty)).width()
