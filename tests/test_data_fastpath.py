"""The loader's fast paths give exactly what the plain definitions give: the one-copy collator against a
straightforward reference collator (the previous implementation: per-sample float32 copies, np.zeros
batches, np.stack), ``store.view`` against ``store[key]``, pretokenized (and disk-cached) text against
tokenizing on the fly, the special-token mask against ``np.isin``."""

import os

import numpy as np
import pytest

from visualbert.constants import ALIGNMENT_PAD, IGNORE_INDEX
from visualbert.data import Collator, NLVR2Dataset, VQA2Dataset, open_feature_store, pack_features
from visualbert.data.synthetic import generate
from visualbert.tokenizer import load_tokenizer


def reference_collate(samples, pad_token_id=0):
    """The plain definition: every array padded into a fresh zero/pad-filled batch, features as float32."""
    B = len(samples)
    ids = [np.asarray(s["input_ids"]) for s in samples]
    mc = ids[0].ndim == 2
    T = max(x.shape[-1] for x in ids)
    lead = (B, ids[0].shape[0]) if mc else (B,)
    out = {"input_ids": np.full(lead + (T,), pad_token_id, np.int64), "token_type_ids": np.zeros(lead + (T,), np.int64),
           "attention_mask": np.zeros(lead + (T,), np.int64)}
    for b, s in enumerate(samples):
        t = ids[b].shape[-1]
        out["input_ids"][b, ..., :t] = ids[b]
        out["token_type_ids"][b, ..., :t] = s["token_type_ids"]
        out["attention_mask"][b, ..., :t] = (ids[b] != pad_token_id) if mc else 1
    visual = [np.asarray(s["visual_embeds"]).astype(np.float32) for s in samples]
    R, D = max(v.shape[0] for v in visual), visual[0].shape[1]
    out["visual_embeds"] = np.zeros((B, R, D), np.float32)
    out["visual_attention_mask"] = np.zeros((B, R), np.int64)
    out["visual_token_type_ids"] = np.zeros((B, R), np.int64)
    for b, (s, v) in enumerate(zip(samples, visual)):
        out["visual_embeds"][b, : len(v)] = v
        out["visual_attention_mask"][b, : len(v)] = 1
        out["visual_token_type_ids"][b, : len(v)] = s["visual_token_type_ids"]
    if "image_text_alignment" in samples[0]:
        A = max(np.asarray(s["image_text_alignment"]).shape[-1] for s in samples)
        out["image_text_alignment"] = np.full(lead + (R, A), ALIGNMENT_PAD, np.int64)
        for b, s in enumerate(samples):
            a = np.asarray(s["image_text_alignment"])
            out["image_text_alignment"][b, ..., : a.shape[-2], : a.shape[-1]] = a
    labels = np.asarray(samples[0]["labels"])
    if np.issubdtype(labels.dtype, np.integer) and labels.shape == ids[0].shape:
        out["labels"] = np.full((B, T + R), IGNORE_INDEX, np.int64)
        for b, s in enumerate(samples):
            out["labels"][b, : len(s["labels"])] = s["labels"]
    else:
        out["labels"] = np.stack([np.asarray(s["labels"]) for s in samples])
    return out


def _samples(n, dtype=np.float32, mlm=False, seed=0):
    rng = np.random.RandomState(seed)
    out = []
    for i in range(n):
        T, R = 3 + i % 5, 1 + (7 * i) % 9
        s = {"input_ids": rng.randint(1, 999, size=T).astype(np.int64), "token_type_ids": rng.randint(0, 2, size=T),
             "visual_embeds": rng.randn(R, 8).astype(dtype), "visual_token_type_ids": rng.randint(0, 2, size=R),
             "question_id": i}
        s["labels"] = (np.where(rng.rand(T) < 0.3, rng.randint(0, 999, size=T), IGNORE_INDEX).astype(np.int64) if mlm
                       else rng.rand(5).astype(np.float32))
        out.append(s)
    return out


def _check(batch, ref):
    for key, value in ref.items():
        got = batch[key].numpy() if hasattr(batch[key], "numpy") else batch[key]
        assert got.dtype == value.dtype, key
        np.testing.assert_array_equal(got, value, err_msg=key)


@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.float64])
@pytest.mark.parametrize("return_tensors", ["np", "paddle"])
@pytest.mark.parametrize("mlm", [False, True])
def test_collate_equals_reference(dtype, return_tensors, mlm):
    samples = _samples(7, dtype, mlm)
    collate = Collator(return_tensors=return_tensors)
    for _ in range(3):  # pooled buffers reused: each batch still exact
        _check(collate(samples), reference_collate(samples))


def test_collate_multiple_choice_equals_reference():
    rng = np.random.RandomState(5)
    samples = []
    for i in range(3):
        T, R = 4 + i, 2 + i
        samples.append({"input_ids": rng.randint(1, 99, size=(4, T)), "token_type_ids": rng.randint(0, 2, size=(4, T)),
                        "visual_embeds": rng.randn(R, 8).astype(np.float32), "visual_token_type_ids": np.zeros(R, np.int64),
                        "image_text_alignment": rng.randint(-1, T, size=(4, R, 2)), "labels": np.array(i % 4)})
    _check(Collator(return_tensors="np")(samples), reference_collate(samples))


def test_pooled_buffer_never_overwrites_a_batch_in_use(monkeypatch):
    monkeypatch.setattr("visualbert.data.collate._BatchBuffers.MIN_BYTES", 0)  # pool even tiny arrays
    a, b = _samples(4, seed=1), _samples(4, seed=2)
    for return_tensors in ("np", "paddle"):
        collate = Collator(return_tensors=return_tensors)
        first = collate(a)
        view = first["visual_embeds"][0]  # a view keeps its batch alive too
        second = collate(b)
        _check(first, reference_collate(a))
        _check(second, reference_collate(b))
        del first, second
        np.testing.assert_array_equal(np.asarray(view.numpy() if hasattr(view, "numpy") else view),
                                      reference_collate(a)["visual_embeds"][0])
    collate = Collator(return_tensors="np")
    first = collate(a)
    address = first["visual_embeds"].ctypes.data
    del first
    assert collate(a)["visual_embeds"].ctypes.data == address  # released: reused


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("fastpath"))
    generate(out, num_images=10, questions_per_image=3, regions=6, vqa_dim=64, nlvr2_sets=10, nlvr2_regions=5,
             nlvr2_dim=32, tasks=("vqa", "nlvr2"))
    return out


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer()


@pytest.mark.parametrize("float16", [False, True])
def test_view_equals_getitem(synth, tmp_path, float16):
    per_image = open_feature_store(os.path.join(synth, "detectron_fix_100", "fc6", "vqa", "train2014"))
    packed_dir = str(tmp_path / "packed")
    pack_features(per_image, packed_dir, float16=float16)
    for store in (per_image, open_feature_store(packed_dir, max_regions=4)):
        for key in store.keys():
            view = store.view(key)
            assert view.dtype == (np.float16 if float16 and store is not per_image else np.float32)
            np.testing.assert_array_equal(view.astype(np.float32), store[key])
            if store is not per_image:
                assert not view.flags.writeable  # never written through: the collator copies it


def _vqa(synth, tok, features, **kw):
    return VQA2Dataset(os.path.join(synth, "vqa2", "imdb", "imdb_train2014.npy"), features, tok, feature_dim=64, **kw)


@pytest.mark.parametrize("task", ["vqa", "mlm"])
def test_vqa_batches_equal_reference_on_every_store(synth, tok, tmp_path, task):
    """Batches from a packed float16 / float32 store through the fast path equal the reference collation
    of the per-image float32 features (rounded to float16 where the store is float16)."""
    per_image = os.path.join(synth, "detectron_fix_100")
    base = _vqa(synth, tok, per_image, task=task)
    for float16 in (False, True):
        packed_dir = str(tmp_path / f"packed_{task}_{float16}")
        pack_features(open_feature_store(os.path.join(per_image, "fc6", "vqa", "train2014")), packed_dir, float16=float16)
        ds = _vqa(synth, tok, packed_dir, task=task)
        idx = list(range(len(ds)))
        ref_samples = [base[i] for i in idx]
        if float16:
            for s in ref_samples:
                s["visual_embeds"] = s["visual_embeds"].astype(np.float16).astype(np.float32)
        ref = reference_collate(ref_samples)
        for return_tensors in ("np", "paddle"):
            _check(Collator(return_tensors=return_tensors)([ds[i] for i in idx]), ref)


def test_pretokenize_gives_the_same_examples_and_caches(synth, tok, tmp_path, monkeypatch):
    per_image = os.path.join(synth, "detectron_fix_100")
    for task in ("vqa", "mlm"):
        plain = _vqa(synth, tok, per_image, task=task)
        fast = _vqa(synth, tok, per_image, task=task)
        assert fast.pretokenize(cache_dir=str(tmp_path / "cache")) > 0
        for i in range(len(plain)):
            a, b = plain[i], fast[i]
            for key in ("input_ids", "token_type_ids", "labels"):
                np.testing.assert_array_equal(a[key], b[key])
    cached = os.listdir(tmp_path / "cache")
    assert len(cached) == 2 and all(f.startswith("wordpieces-") and f.endswith(".npz") for f in cached)
    # a new dataset loads the ids from the cache: the tokenizer is not called
    plain, again = _vqa(synth, tok, per_image), _vqa(synth, tok, per_image)
    expected = [plain[i]["input_ids"] for i in range(len(plain))]
    monkeypatch.setattr(tok, "tokenize", lambda text: (_ for _ in ()).throw(AssertionError(text)))
    again.pretokenize(cache_dir=str(tmp_path / "cache"))
    for i in range(len(again)):
        np.testing.assert_array_equal(expected[i], again[i]["input_ids"])
    monkeypatch.undo()
    nlvr2 = os.path.join(synth, "nlvr2", "train.json")
    a = NLVR2Dataset(nlvr2, os.path.join(synth, "detectron_fix_144"), tok, feature_dim=32)
    b = NLVR2Dataset(nlvr2, os.path.join(synth, "detectron_fix_144"), tok, feature_dim=32)
    b.pretokenize(cache_dir=str(tmp_path / "cache"))
    assert len(os.listdir(tmp_path / "cache")) == 3  # other texts: another key
    for i in range(len(a)):
        np.testing.assert_array_equal(a[i]["input_ids"], b[i]["input_ids"])
        np.testing.assert_array_equal(a[i]["visual_embeds"], b[i]["visual_embeds"])
    # a new cache format (tokenization changed in the code) is a new key, never the old ids
    monkeypatch.setattr("visualbert.data.text._CACHE_FORMAT", "wordpieces-test")
    _vqa(synth, tok, per_image).pretokenize(cache_dir=str(tmp_path / "cache"))
    assert len(os.listdir(tmp_path / "cache")) == 4


def test_special_mask_equals_isin(synth, tok):
    ds = _vqa(synth, tok, os.path.join(synth, "detectron_fix_100"))
    t = ds.text
    for i in range(len(ds)):
        enc = t.build(t.wordpieces("what is it"), t.wordpieces("a b [MASK] [PAD]"), a_suffix=[t.mask_id])
        np.testing.assert_array_equal(enc["special_mask"], np.isin(enc["input_ids"], [t.cls_id, t.sep_id, t.mask_id, t.pad_id]))
