"""MLM masking statistics and COCO captions pretraining pairs."""

import json
import os

import numpy as np
import pytest

from visualbert.constants import IGNORE_INDEX, SENTENCE_IMAGE_MATCH, SENTENCE_IMAGE_RANDOM
from visualbert.data import CocoCaptionsPretrainDataset, Collator, DataFormatError, mask_tokens

MASK, CLS, SEP = 103, 101, 102


@pytest.fixture(scope="module")
def synth(synthetic):
    return synthetic(num_images=15, questions_per_image=1, regions=5, vqa_dim=32, captions_per_image=5, tasks=("vqa",))


def _coco(synth, tok, split="train2014", **kw):
    return CocoCaptionsPretrainDataset(os.path.join(synth, "coco", "annotations", f"captions_{split}.json"),
                                       os.path.join(synth, "detectron_fix_100"), tok, **kw)


def test_masking_80_10_10():
    rng = np.random.default_rng(0)
    T, draws = 64, 3000
    ids = rng.integers(2000, 3000, size=T).astype(np.int64)
    ids[0], ids[-1], ids[30] = CLS, SEP, SEP
    special = np.isin(ids, [CLS, SEP])
    candidates = np.arange(999, 30522, dtype=np.int64)
    n_target = n_mask = n_random = n_same = 0
    for _ in range(draws):
        out, labels = mask_tokens(ids, special, rng, MASK, candidates)
        target = labels != IGNORE_INDEX
        assert not (target & special).any() and (out[special] == ids[special]).all()
        assert (labels[target] == ids[target]).all() and (out[~target] == ids[~target]).all()
        n_target += target.sum()
        n_mask += (out[target] == MASK).sum()
        same = out[target] == ids[target]
        n_same += same.sum()
        n_random += (~same & (out[target] != MASK)).sum()
    eligible = draws * (T - 3)
    assert n_target / eligible == pytest.approx(0.15, abs=0.005)
    # a random replacement can hit the original id (prob ~1/29523), negligible here
    assert n_mask / n_target == pytest.approx(0.8, abs=0.01)
    assert n_random / n_target == pytest.approx(0.1, abs=0.01)
    assert n_same / n_target == pytest.approx(0.1, abs=0.01)


def test_random_tokens_are_not_special(tok):
    from visualbert.data import random_token_candidates

    c = random_token_candidates(tok)
    assert not np.isin(c, [0, 100, 101, 102, 103]).any() and len(c) > 29000


def _norm(tok, text):
    return " ".join(tok.tokenize(text))


def test_coco_pairs_and_masking(synth, tok):
    ds = _coco(synth, tok, check_features=True)
    assert len(ds) == 9 * 5
    # ground truth from the generated captions JSON itself: caption id / caption text -> image id
    anns = json.load(open(os.path.join(synth, "coco", "annotations", "captions_train2014.json")))["annotations"]
    image_of_id = {a["id"]: a["image_id"] for a in anns}
    images_of_text = {}
    for a in anns:
        images_of_text.setdefault(_norm(tok, a["caption"]), set()).add(a["image_id"])
    assert all(len(v) == 1 for v in images_of_text.values())  # no caption text shared across images
    same = 0
    n_draws = 0
    for epoch in range(6):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            s = ds[i]
            toks = tok.convert_ids_to_tokens(s["input_ids"].tolist())
            seps = [j for j, t in enumerate(toks) if t == "[SEP]"]
            assert toks[0] == "[CLS]" and len(seps) == 2 and seps[1] == len(toks) - 1
            assert (s["token_type_ids"][: seps[0] + 1] == 0).all() and (s["token_type_ids"][seps[0] + 1:] == 1).all()
            assert (s["labels"][[0] + seps] == IGNORE_INDEX).all()  # special tokens never targets
            assert s["labels"].shape == s["input_ids"].shape
            # recover A and B from the un-masked text; the label says whether they come from the same image
            restored = np.where(s["labels"] != IGNORE_INDEX, s["labels"], s["input_ids"])
            a_text = tok.convert_tokens_to_string(tok.convert_ids_to_tokens(restored[1: seps[0]].tolist()))
            b_text = tok.convert_tokens_to_string(tok.convert_ids_to_tokens(restored[seps[0] + 1: seps[1]].tolist()))
            (a_image,) = images_of_text[_norm(tok, a_text)]
            (b_image,) = images_of_text[_norm(tok, b_text)]
            assert a_image == image_of_id[s["caption_id"]] == s["image_id"]
            label = int(s["sentence_image_labels"])
            assert label == (1 if a_image == b_image else 0)  # 1 = same image, hard-coded
            same += label
            n_draws += 1
    assert same / n_draws == pytest.approx(0.5, abs=0.07)


def test_coco_single_caption_image_never_paired_with_itself(tmp_path, synth, tok):
    src = json.load(open(os.path.join(synth, "coco", "annotations", "captions_train2014.json")))
    first, second = src["images"][:2]
    anns = [{"id": 1, "image_id": first["id"], "caption": "a lonely red cube"},
            {"id": 2, "image_id": second["id"], "caption": "two blue spheres"},
            {"id": 3, "image_id": second["id"], "caption": "blue spheres on a table"}]
    path = tmp_path / "captions_train2014.json"
    path.write_text(json.dumps(dict(src, images=[first, second], annotations=anns)))
    ds = CocoCaptionsPretrainDataset(str(path), os.path.join(synth, "detectron_fix_100"), tok, same_image_prob=1.0,
                                     mask_prob=0.0)
    for epoch in range(5):
        ds.set_epoch(epoch)
        s = ds[0]
        b = tok.convert_tokens_to_string(tok.convert_ids_to_tokens(s["input_ids"].tolist())).split("[SEP]")[1].strip()
        assert b in ("two blue spheres", "blue spheres on a table") and int(s["sentence_image_labels"]) == 0
        s = ds[1]  # the other image has two captions: the same-image draw picks the other one
        b = tok.convert_tokens_to_string(tok.convert_ids_to_tokens(s["input_ids"].tolist())).split("[SEP]")[1].strip()
        assert b == "blue spheres on a table" and int(s["sentence_image_labels"]) == 1


def test_coco_redrawn_each_epoch_and_deterministic(synth, tok):
    ds = _coco(synth, tok)
    ds.set_epoch(0)
    a = [ds[i]["input_ids"].tolist() for i in range(10)]
    again = [ds[i]["input_ids"].tolist() for i in range(10)]
    ds.set_epoch(1)
    b = [ds[i]["input_ids"].tolist() for i in range(10)]
    assert a == again and a != b


def test_coco_visual_and_collated_labels(synth, tok):
    ds = _coco(synth, tok)
    batch = Collator(return_tensors="np")([ds[i] for i in range(4)])
    T, R = batch["input_ids"].shape[1], batch["visual_embeds"].shape[1]
    assert batch["labels"].shape == (4, T + R)
    assert (batch["labels"][:, T:] == IGNORE_INDEX).all()  # regions never masked
    assert (batch["labels"][:, :T][batch["attention_mask"] == 0] == IGNORE_INDEX).all()
    assert set(batch["sentence_image_labels"].tolist()) <= {SENTENCE_IMAGE_MATCH, SENTENCE_IMAGE_RANDOM}
    assert (batch["visual_token_type_ids"] == 0).all()


def test_bad_coco_files(tmp_path, synth, tok):
    feats = os.path.join(synth, "detectron_fix_100")
    bad = tmp_path / "captions_train2014.json"
    bad.write_text("{broken")
    with pytest.raises(DataFormatError, match="captions_train2014.json"):
        CocoCaptionsPretrainDataset(str(bad), feats, tok)
    bad.write_text(json.dumps({"images": [], "annotations": [], "info": {}, "licenses": []}))
    with pytest.raises(DataFormatError, match="empty split"):
        CocoCaptionsPretrainDataset(str(bad), feats, tok)


def _raw_coco(synth, image_set):
    """{caption id: (feature key, caption)} straight from the generated JSON (keys = file-name stems)."""
    data = json.load(open(os.path.join(synth, "coco", "annotations", f"captions_{image_set}.json")))
    stem = {img["id"]: os.path.splitext(img["file_name"])[0] for img in data["images"]}
    return {a["id"]: (stem[a["image_id"]], a["caption"]) for a in data["annotations"]}


def test_coco_train_plus_val_excluding_minival(synthetic, tok):
    from types import SimpleNamespace

    from visualbert.tasks import Pretrain

    # enough val2014 images for a minival of several (the validation split draws pairs among them)
    synth = synthetic(num_images=30, questions_per_image=1, regions=5, vqa_dim=32, captions_per_image=5,
                      tasks=("vqa",))

    # ground truth from the raw files: captions JSON of both sets, image_name of the minival imdb entries
    raw = {**_raw_coco(synth, "train2014"), **_raw_coco(synth, "val2014")}
    assert len(raw) == len(_raw_coco(synth, "train2014")) + len(_raw_coco(synth, "val2014"))  # no id collision
    minival_file = os.path.join(synth, "vqa2", "imdb", "imdb_minival2014.npy")
    minival = {e["image_name"] for e in np.load(minival_file, allow_pickle=True)[1:]}
    train_images = {k for k, _ in _raw_coco(synth, "train2014").values()}
    val_images = {k for k, _ in _raw_coco(synth, "val2014").values()}
    assert minival and minival < val_images
    expected = (train_images | val_images) - minival

    args = SimpleNamespace(dataset="coco_captions", data_dir=os.path.join(synth, "coco", "annotations"),
                           features=os.path.join(synth, "detectron_fix_100"), train_split="train2014+val2014",
                           eval_split="val2014", exclude_minival=minival_file, max_seq_length=128, mask_prob=0.15,
                           seed=0, max_regions=None, check_features=True)
    ds = Pretrain.dataset(args, tok, args.train_split)
    assert set(ds.image_keys) == expected
    assert len(ds) == sum(1 for k, _ in raw.values() if k not in minival)
    assert ds.num_excluded_captions == sum(1 for k, _ in raw.values() if k in minival) > 0
    # the same through the dataset's own option, with (set, id) pairs instead of keys
    pairs = {("val2014", int(k.rsplit("_", 1)[1])) for k in minival}
    files = [os.path.join(args.data_dir, f"captions_{s}.json") for s in ("train2014", "val2014")]
    assert set(CocoCaptionsPretrainDataset(files, args.features, tok, exclude_image_ids=pairs).image_keys) == expected
    # the eval split is the minival images' val2014 captions (the original validates on exactly those)
    evaluation = Pretrain.dataset(args, tok, "val2014")
    assert set(evaluation.image_keys) == minival
    assert len(evaluation) == sum(1 for k, _ in raw.values() if k in minival)

    images_of_text = {}
    for k, c in raw.values():
        images_of_text.setdefault(_norm(tok, c), set()).add(k)
    assert all(len(v) == 1 for v in images_of_text.values())
    seen_a, seen_b = set(), set()
    for epoch in range(4):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            s = ds[i]
            a_image = raw[s["caption_id"]][0]
            toks = tok.convert_ids_to_tokens(s["input_ids"].tolist())
            seps = [j for j, t in enumerate(toks) if t == "[SEP]"]
            restored = np.where(s["labels"] != IGNORE_INDEX, s["labels"], s["input_ids"])
            b_text = tok.convert_tokens_to_string(tok.convert_ids_to_tokens(restored[seps[0] + 1: seps[1]].tolist()))
            (b_image,) = images_of_text[_norm(tok, b_text)]
            assert a_image not in minival and b_image not in minival
            assert int(s["sentence_image_labels"]) == (1 if a_image == b_image else 0)
            seen_a.add(a_image)
            seen_b.add(b_image)
    assert seen_a == expected and seen_b & val_images  # val images (outside minival) are drawn too


def test_coco_split_spec_and_exclude_errors(synth, tok, tmp_path):
    from types import SimpleNamespace

    from visualbert.tasks import Pretrain

    ann_dir = os.path.join(synth, "coco", "annotations")
    assert Pretrain.coco_caption_files(ann_dir, "train2014+val2014") == [
        os.path.join(ann_dir, "captions_train2014.json"), os.path.join(ann_dir, "captions_val2014.json")]
    with pytest.raises(FileNotFoundError, match="captions_test2015.json"):
        Pretrain.coco_caption_files(ann_dir, "train2014+test2015")
    missing = str(tmp_path / "imdb_minival2014.npy")
    args = SimpleNamespace(dataset="coco_captions", data_dir=ann_dir, features=os.path.join(synth, "detectron_fix_100"),
                           train_split="train2014", eval_split="", exclude_minival=missing, max_seq_length=64,
                           mask_prob=0.15, seed=0, max_regions=None, check_features=False)
    with pytest.raises(FileNotFoundError, match="imdb_minival2014.npy"):
        Pretrain.dataset(args, tok, "train2014")
    from visualbert.cli import UsageError

    with pytest.raises(UsageError, match="imdb_minival2014.npy"):
        Pretrain.check_data_args(args)
    # excluding every image of a file leaves nothing to train on
    keys = {k for k, _ in _raw_coco(synth, "val2014").values()}
    with pytest.raises(DataFormatError, match="excluded"):
        CocoCaptionsPretrainDataset(os.path.join(ann_dir, "captions_val2014.json"),
                                    os.path.join(synth, "detectron_fix_100"), tok, exclude_image_ids=keys)


class _FakePretrainModel:
    """Token logits [x, 0] over a 2-word vocabulary with x = the token id (label 0: loss softplus(-x));
    sentence-image logits [0, 0] (loss log 2 per example)."""

    def eval(self):
        return self

    def __call__(self, input_ids, labels=None, sentence_image_labels=None, visual_embeds=None, **_):
        import paddle

        B, T = input_ids.shape
        L = labels.shape[1]
        x = paddle.concat([input_ids.astype("float32"), paddle.zeros([B, L - T], "float32")], axis=1)
        logits = paddle.stack([x, paddle.zeros_like(x)], axis=-1)
        return {"loss": paddle.to_tensor(123.0), "prediction_logits": logits,
                "seq_relationship_logits": paddle.zeros([B, 2], "float32")}


def test_pretrain_evaluate_weights_mlm_loss_by_predicted_tokens():
    from visualbert.engine import evaluate
    from visualbert.tasks import Pretrain

    def example(ids, targets, sent):
        ids = np.array(ids, dtype=np.int64)
        labels = np.full(len(ids), IGNORE_INDEX, dtype=np.int64)
        labels[targets] = 0
        return {"input_ids": ids, "token_type_ids": np.zeros_like(ids), "labels": labels,
                "visual_embeds": np.zeros((1, 4), np.float32), "visual_token_type_ids": np.zeros(1, np.int64),
                "sentence_image_labels": np.array(sent, dtype=np.int64)}

    # example 0: one target with x = 1; example 1: three targets with x = 3 (one batch each)
    data = [example([7, 1, 7], [1], 1), example([7, 3, 3, 3, 7], [1, 2, 3], 0)]
    m = evaluate(_FakePretrainModel(), Pretrain, data, batch_size=1)
    softplus = lambda v: float(np.log1p(np.exp(v)))  # noqa: E731
    mlm = (softplus(-1) + 3 * softplus(-3)) / 4  # per token, not (softplus(-1) + softplus(-3)) / 2
    assert m["mlm_loss"] == pytest.approx(mlm, rel=1e-6)
    assert m["mlm_accuracy"] == 1.0  # x > 0: class 0 predicted everywhere
    assert m["sentence_image_loss"] == pytest.approx(np.log(2), rel=1e-6)
    assert m["sentence_image_accuracy"] == 0.5  # argmax of [0, 0] is 0: right for the second example only
    assert m["loss"] == pytest.approx(mlm + np.log(2), rel=1e-6)
