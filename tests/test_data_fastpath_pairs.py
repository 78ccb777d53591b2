"""The second round of loader fast paths against plain definitions: float16 widening by integer ops against numpy's
cast (every bit pattern), the float16 finiteness test against ``np.isfinite``, the packed store's one-view NLVR2
pair against ``np.concatenate`` of ``store[key]``, NLVR2 batches against a collation built by hand from the per-image
files, the capacity-pooled batch buffers with varying region counts, worker batches as tensors, and
``build_dataset``'s pretokenization (disk cache, a corrupt cache file) against tokenizing on the fly."""

import argparse
import os

import numpy as np
import pytest

from visualbert.data import Collator, NLVR2Dataset, open_feature_store, pack_features
from visualbert.data.collate import widen_float16
from visualbert.data.errors import DataFormatError
from visualbert.data.features import check_finite
from visualbert.data.loader import BatchLoader
from visualbert.data.nlvr2 import image_keys
from visualbert.data.synthetic import generate

ALL_HALVES = np.arange(65536, dtype=np.uint32).astype(np.uint16).view(np.float16)  # every float16 bit pattern


def test_widen_float16_equals_numpy_cast_on_every_bit_pattern():
    finite = ALL_HALVES[np.isfinite(ALL_HALVES)]
    assert finite.size == 65536 - 2 * 1024  # all but the inf / NaN exponent
    out = np.empty(finite.shape, np.float32)
    widen_float16(finite, out)
    np.testing.assert_array_equal(out.view(np.uint32), finite.astype(np.float32).view(np.uint32))  # -0.0, subnormals
    out = np.empty(ALL_HALVES.shape, np.float32)  # with inf and NaN: numpy's cast, bit for bit
    widen_float16(ALL_HALVES, out)
    np.testing.assert_array_equal(out.view(np.uint32), ALL_HALVES.astype(np.float32).view(np.uint32))


def test_widen_float16_into_a_batch_slice_from_a_read_only_view():
    rng = np.random.default_rng(0)
    src = (rng.standard_normal((7, 12)) * 1e3).astype(np.float16)
    src.setflags(write=False)
    batch = np.full((2, 9, 12), 7.0, np.float32)
    widen_float16(src, batch[1, :7])
    np.testing.assert_array_equal(batch[1, :7], src.astype(np.float32))
    assert (batch[1, 7:] == 7).all() and (batch[0] == 7).all()  # nothing else written


def test_half_finiteness_from_bits_equals_isfinite():
    for value in ALL_HALVES[::97].tolist() + [np.inf, -np.inf, np.nan]:
        array = np.zeros((3, 4), np.float16)
        array[1, 2] = value
        if np.isfinite(np.float16(value)):
            assert check_finite(array, "x") is array
        else:
            with pytest.raises(DataFormatError, match=r"x: 1 non-finite value\(s\).*region 1, column 2"):
                check_finite(array, "x")


@pytest.fixture(scope="module")
def nlvr2(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("pairs"))
    generate(out, num_images=4, questions_per_image=1, regions=4, vqa_dim=16, nlvr2_sets=8, nlvr2_regions=6,
             nlvr2_dim=24, tasks=("nlvr2",))
    root = os.path.join(out, "detectron_fix_144")
    packed = {}
    for float16 in (False, True):
        packed[float16] = os.path.join(out, f"packed_{float16}")
        pack_features(open_feature_store(root), packed[float16], float16=float16, progress=False)
    return {"annotations": os.path.join(out, "nlvr2", "train.json"), "per_image": root, "packed": packed}


@pytest.mark.parametrize("float16", [False, True])
@pytest.mark.parametrize("max_regions", [None, 3])
def test_view_concat_equals_concatenation(nlvr2, float16, max_regions):
    packed = open_feature_store(nlvr2["packed"][float16], max_regions=max_regions)
    keys = packed.keys()
    pairs = [(keys[i], keys[i + 1]) for i in range(len(keys) - 1)] + [(keys[2], keys[0]), (keys[1], keys[1])]
    for pair in pairs:
        rows, counts = packed.view_concat(pair)
        expected = np.concatenate([packed[k] for k in pair])
        assert rows.dtype == (np.float16 if float16 else np.float32)
        np.testing.assert_array_equal(rows.astype(np.float32), expected)
        assert counts == [packed.num_regions(k) for k in pair]
        assert not rows.flags.writeable or not np.shares_memory(rows, packed._open())
    left, right = image_keys(NLVR2Dataset(nlvr2["annotations"], nlvr2["per_image"], _tok(), feature_dim=24).rows[0]["identifier"])
    rows, _ = packed.view_concat((left, right))
    if max_regions is None:  # a pair packed side by side: a view of the memory map, not a copy
        assert np.shares_memory(rows, packed._open())


def _tok():
    from visualbert.tokenizer import load_tokenizer

    return load_tokenizer()


def test_view_concat_names_the_image_with_a_non_finite_value(tmp_path):
    store = str(tmp_path / "packed")
    os.makedirs(store)
    features = np.zeros((5, 3), np.float16)
    features[3, 1] = np.inf
    np.save(os.path.join(store, "features.npy"), features)
    import json

    with open(os.path.join(store, "index.json"), "w") as f:
        json.dump({"dim": 3, "dtype": "float16", "keys": ["a-img0.png", "a-img1.png"], "offsets": [0, 2],
                   "counts": [2, 3]}, f)
    with pytest.raises(DataFormatError, match=r"rows 2\.\.4 \(image 'a-img1\.png'\).*region 1, column 1"):
        open_feature_store(store).view_concat(["a-img0.png", "a-img1.png"])


def _reference_nlvr2_batch(rows, per_image_root, tok, float16):
    """The batch built by hand from the per-image .npy files: [CLS] sentence [SEP], left then right regions (types
    0 / 1), zero padding, masks 1 on real tokens and regions."""
    ids, visual = [], []
    for row in rows:
        wordpieces = tok.convert_tokens_to_ids(tok.tokenize(str(row["sentence"])))
        ids.append([101] + list(wordpieces)[:126] + [102])
        pair = []
        for k, key in enumerate(image_keys(row["identifier"])):
            name = key.split("-", 1)[0]
            array = np.load(os.path.join(per_image_root, name, "feature_1024dim", key + ".npy"))[:144]
            pair.append(array.astype(np.float16).astype(np.float32) if float16 else array.astype(np.float32))
        visual.append(pair)
    B, T = len(rows), max(len(x) for x in ids)
    R = max(len(a) + len(b) for a, b in visual)
    D = visual[0][0].shape[1]
    out = {"input_ids": np.zeros((B, T), np.int64), "token_type_ids": np.zeros((B, T), np.int64),
           "attention_mask": np.zeros((B, T), np.int64), "visual_embeds": np.zeros((B, R, D), np.float32),
           "visual_attention_mask": np.zeros((B, R), np.int64), "visual_token_type_ids": np.zeros((B, R), np.int64),
           "labels": np.array([1 if str(r["label"]).lower() == "true" else 0 for r in rows], np.int64)}
    for b, (x, (left, right)) in enumerate(zip(ids, visual)):
        out["input_ids"][b, : len(x)] = x
        out["attention_mask"][b, : len(x)] = 1
        n = len(left) + len(right)
        out["visual_embeds"][b, :n] = np.concatenate([left, right])
        out["visual_attention_mask"][b, :n] = 1
        out["visual_token_type_ids"][b, len(left) : n] = 1
    return out


@pytest.mark.parametrize("float16", [False, True])
def test_nlvr2_batches_from_packed_stores_equal_the_hand_built_batch(nlvr2, float16):
    tok = _tok()
    ds = NLVR2Dataset(nlvr2["annotations"], nlvr2["packed"][float16], tok, feature_dim=24)
    assert ds.pretokenize() > 0
    for start in range(0, len(ds), 5):  # varying region counts: pooled buffers of several sizes reused
        idx = list(range(start, min(start + 5, len(ds))))
        ref = _reference_nlvr2_batch([ds.rows[i] for i in idx], nlvr2["per_image"], tok, float16)
        for return_tensors in ("np", "paddle"):
            batch = Collator(return_tensors=return_tensors)([ds[i] for i in idx])
            for key, value in ref.items():
                got = batch[key].numpy() if hasattr(batch[key], "numpy") else batch[key]
                assert got.dtype == value.dtype, key
                np.testing.assert_array_equal(got, value, err_msg=key)


def test_capacity_pool_reuses_buffers_across_region_counts(monkeypatch):
    monkeypatch.setattr("visualbert.data.collate._BatchBuffers.MIN_BYTES", 0)
    rng = np.random.default_rng(3)
    collate = Collator(return_tensors="np")
    addresses = set()
    for R in (9, 4, 9, 2, 7, 9, 1):
        samples = [{"input_ids": np.arange(1, 4), "token_type_ids": np.zeros(3, np.int64),
                    "visual_embeds": rng.standard_normal((R - b % 2, 5)).astype(np.float16)} for b in range(3)]
        batch = collate(samples)
        expected = np.zeros((3, R, 5), np.float32)
        for b, s in enumerate(samples):
            expected[b, : len(s["visual_embeds"])] = s["visual_embeds"]
        np.testing.assert_array_equal(batch["visual_embeds"], expected)
        np.testing.assert_array_equal(batch["visual_attention_mask"], (np.abs(expected).sum(-1) > 0).astype(np.int64))
        addresses.add(batch["visual_embeds"].__array_interface__["data"][0])
        del batch
    assert len(addresses) == 1  # the first (largest) buffer served every smaller batch


class _Samples:
    def __init__(self, n):
        rng = np.random.default_rng(4)
        self.samples = [{"input_ids": np.arange(1, 3 + i % 3), "token_type_ids": np.zeros(2 + i % 3, np.int64),
                         "visual_embeds": rng.standard_normal((2 + i % 4, 6)).astype(np.float16),
                         "labels": np.array(i % 2)} for i in range(n)]

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, i):
        return self.samples[i]


def test_worker_batches_become_the_same_tensors():
    ds = _Samples(10)
    batches = [[0, 3, 5], [1, 2], [9, 8, 7, 6], [4]]
    plain = list(BatchLoader(ds, batches, Collator(), num_workers=0))
    workers = list(BatchLoader(ds, batches, Collator(), num_workers=2))
    assert len(plain) == len(workers) == 4
    for a, b in zip(plain, workers):
        for key in a:
            assert type(a[key]) is type(b[key]), key
            assert str(a[key].dtype) == str(b[key].dtype), key
            np.testing.assert_array_equal(a[key].numpy(), b[key].numpy(), err_msg=key)


def _nlvr2_args(nlvr2):
    return argparse.Namespace(data_dir=os.path.dirname(nlvr2["annotations"]), features=nlvr2["packed"][False],
                              max_seq_length=128, max_regions=144, seed=0, check_features=False)


def test_build_dataset_pretokenizes_into_the_cache(nlvr2, tmp_path, monkeypatch):
    from visualbert.build import build_dataset
    from visualbert.tasks import NLVR2

    tok = _tok()
    cache = tmp_path / "cache"
    monkeypatch.setenv("VISUALBERT_TEXT_CACHE_DIR", str(cache))
    built = build_dataset(NLVR2, "train", _nlvr2_args(nlvr2), tok)
    assert built.text._pretokenized  # tokenized at build time, before any worker forks
    files = os.listdir(cache)
    assert len(files) == 1 and files[0].startswith("wordpieces-") and files[0].endswith(".npz")
    plain = NLVR2Dataset(nlvr2["annotations"], nlvr2["packed"][False], tok, feature_dim=24)
    for i in range(len(plain)):
        np.testing.assert_array_equal(built[i]["input_ids"], plain[i]["input_ids"])
    # a later build loads the ids: the tokenizer is not called
    monkeypatch.setattr(tok, "tokenize", lambda text: (_ for _ in ()).throw(AssertionError(text)))
    again = build_dataset(NLVR2, "train", _nlvr2_args(nlvr2), tok)
    monkeypatch.undo()
    for i in range(len(plain)):
        np.testing.assert_array_equal(again[i]["input_ids"], plain[i]["input_ids"])
    # a truncated cache file is not an error: tokenized again (same ids) and rewritten
    path = os.path.join(cache, files[0])
    with open(path, "r+b") as f:
        f.truncate(40)
    monkeypatch.setenv("VISUALBERT_TEXT_CACHE_DIR", str(cache))
    third = build_dataset(NLVR2, "train", _nlvr2_args(nlvr2), tok)
    for i in range(len(plain)):
        np.testing.assert_array_equal(third[i]["input_ids"], plain[i]["input_ids"])
    with np.load(path) as data:
        assert len(data["offsets"]) == len({str(r["sentence"]) for r in plain.rows}) + 1


def _our_shared_files():
    import glob

    return glob.glob(f"/dev/shm/visualbert-loader-{os.getpid()}-*")


@pytest.mark.skipif(not os.path.isdir("/dev/shm"), reason="no /dev/shm: batches travel through the pipe (tested above)")
def test_worker_batches_through_shared_memory_equal_and_leave_no_file(monkeypatch):
    monkeypatch.setattr("visualbert.data.loader.SHARED_MIN_BYTES", 0)  # every array through a file
    ds = _Samples(12)
    batches = [[0, 3, 5], [1, 2], [9, 8, 7, 6], [4], [10, 11]]
    plain = list(BatchLoader(ds, batches, Collator(), num_workers=0))
    for to_tensor in (True, False):
        shared = list(BatchLoader(ds, batches, Collator(), num_workers=2, to_tensor=to_tensor))
        for a, b in zip(plain, shared):
            for key in a:
                got = b[key].numpy() if to_tensor else b[key]
                assert isinstance(got, np.ndarray) and a[key].numpy().dtype == got.dtype, key
                np.testing.assert_array_equal(a[key].numpy(), got, err_msg=key)
        assert _our_shared_files() == []  # mapped and removed as they arrived
    loader = BatchLoader(ds, batches * 20, Collator(), num_workers=2, prefetch=3)
    for i, _ in enumerate(loader):
        if i == 1:
            break  # batches in flight are dropped
    del loader
    assert _our_shared_files() == []


def test_full_shared_memory_falls_back_to_the_pipe(monkeypatch, tmp_path):
    monkeypatch.setattr("visualbert.data.loader.SHARED_MIN_BYTES", 0)
    monkeypatch.setattr("visualbert.data.loader.SHARED_MEMORY_DIR", str(tmp_path))
    real_write = os.write

    def full(fd, data):  # in the workers: every write to a batch file fails as on a full tmpfs
        if os.readlink(f"/proc/self/fd/{fd}").startswith(str(tmp_path)):
            raise OSError(28, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", full)
    ds = _Samples(6)
    batches = [[0, 1], [2, 3, 4], [5]]
    plain = list(BatchLoader(ds, batches, Collator(), num_workers=0))
    got = list(BatchLoader(ds, batches, Collator(), num_workers=2))
    monkeypatch.undo()
    for a, b in zip(plain, got):
        for key in a:
            np.testing.assert_array_equal(a[key].numpy(), b[key].numpy(), err_msg=key)
    assert os.listdir(tmp_path) == []


@pytest.mark.skipif(not os.path.isdir("/dev/shm"), reason="no /dev/shm")
@pytest.mark.parametrize("hold", [False, True])
def test_reused_shared_slots_never_overwrite_a_batch_in_use(monkeypatch, hold):
    """Batches built in the workers' reusable shared-memory slots: dropped batches free their slot for a later one;
    batches held (all of them, with ``hold``) keep theirs, and the later ones take other slots or plain copies."""
    monkeypatch.setattr("visualbert.data.loader.SHARED_MIN_BYTES", 0)
    monkeypatch.setattr("visualbert.data.collate._BatchBuffers.MIN_BYTES", 0)  # every batch array in a slot
    ds = _Samples(30)
    batches = [list(range(i, min(i + 3, 30))) for i in range(0, 30, 3)] * 2  # 20 batches, 4 slots per worker
    expected = [Collator(return_tensors="np")([ds[i] for i in b]) for b in batches]
    held = []
    for k, batch in enumerate(BatchLoader(ds, batches, Collator(), num_workers=2)):
        for key, value in expected[k].items():
            np.testing.assert_array_equal(batch[key].numpy(), value, err_msg=f"batch {k} {key}")
        if hold:
            held.append(batch)
    for k, batch in enumerate(held):  # still intact after every later batch was made
        for key, value in expected[k].items():
            np.testing.assert_array_equal(batch[key].numpy(), value, err_msg=f"held batch {k} {key}")
    del held
    assert _our_shared_files() == []


def test_a_held_slice_of_a_numpy_batch_keeps_its_slot(monkeypatch):
    """to_tensor=False: the caller keeps only a view (one example's features) and drops the batch; the slot under
    that view must not be reused while the view lives (numpy views refer to the base array, not the reshape)."""
    monkeypatch.setattr("visualbert.data.loader.SHARED_MIN_BYTES", 0)
    monkeypatch.setattr("visualbert.data.collate._BatchBuffers.MIN_BYTES", 0)
    ds = _Samples(30)
    batches = [list(range(i, min(i + 3, 30))) for i in range(0, 30, 3)] * 2
    expected = [Collator(return_tensors="np")([ds[i] for i in b]) for b in batches]
    kept = []
    for batch in BatchLoader(ds, batches, Collator(return_tensors="np"), num_workers=1, prefetch=1, to_tensor=False):
        kept.append(batch["visual_embeds"][0])
        del batch
    for k, view in enumerate(kept):
        np.testing.assert_array_equal(view, expected[k]["visual_embeds"][0], err_msg=f"batch {k}")
    del kept, view
    assert _our_shared_files() == []


def test_a_terminated_worker_removes_its_shared_memory_files(monkeypatch):
    """SIGTERM to the whole process group (a job scheduler): a worker removes its /dev/shm files as it dies."""
    import signal
    import time

    monkeypatch.setattr("visualbert.data.loader.SHARED_MIN_BYTES", 0)
    monkeypatch.setattr("visualbert.data.collate._BatchBuffers.MIN_BYTES", 0)
    ds = _Samples(30)
    batches = [list(range(i, min(i + 3, 30))) for i in range(0, 30, 3)]
    loader = BatchLoader(ds, batches, Collator(), num_workers=1)
    iterator = iter(loader)
    first = next(iterator)
    assert _our_shared_files()  # the worker's slots exist
    worker = loader._workers[0]
    os.kill(worker.pid, signal.SIGTERM)
    worker.join(10)
    assert worker.exitcode == 128 + signal.SIGTERM
    assert _our_shared_files() == []  # removed by the worker itself, before the main process notices
    del first
    time.sleep(0.1)
    with pytest.raises(Exception):
        for _ in iterator:
            pass
    assert _our_shared_files() == []


def test_float16_goes_to_an_accelerator_as_float16_and_arrives_float32(monkeypatch):
    """On a GPU the float16 batch is copied to the device as it is and cast there (half the bytes); the model still
    gets float32 equal to the plain cast. Simulated: the device reads as a GPU, to_tensor stays on CPU."""
    import paddle

    import visualbert.data.collate as collate_module

    sent = {}
    real = collate_module._to_paddle

    def recording(array, paddle_module, on_cpu):
        sent[array.dtype.name] = sent.get(array.dtype.name, 0) + 1
        assert not on_cpu
        return real(array, paddle_module, on_cpu)

    monkeypatch.setattr(paddle.device, "get_device", lambda: "gpu:0")
    monkeypatch.setattr(collate_module, "_to_paddle", recording)
    rng = np.random.default_rng(5)
    samples = [{"input_ids": np.arange(1, 5), "token_type_ids": np.zeros(4, np.int64),
                "visual_embeds": (rng.standard_normal((3 + b, 8)) * 100).astype(np.float16)} for b in range(3)]
    batch = Collator()(samples)
    assert sent.get("float16") == 1  # visual_embeds, as stored
    got = batch["visual_embeds"]
    assert got.dtype == paddle.float32
    expected = np.zeros((3, 5, 8), np.float32)
    for b, s in enumerate(samples):
        expected[b, : len(s["visual_embeds"])] = s["visual_embeds"].astype(np.float32)
    np.testing.assert_array_equal(got.numpy(), expected)
