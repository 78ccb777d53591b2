"""VQA2 imdb dataset, answer vocabulary and soft scores."""

import os

import numpy as np
import pytest

from visualbert.constants import IGNORE_INDEX
from visualbert.data import DataFormatError, MissingFeaturesError, VQA2Dataset, imdb_files, load_answer_vocab

SMALL = dict(num_images=10, questions_per_image=3, regions=6, vqa_dim=64, tasks=("vqa",))


@pytest.fixture(scope="module")
def synth(synthetic):
    return synthetic(**SMALL)


def _ds(synth, tok, split="train", **kw):
    return VQA2Dataset(imdb_files(os.path.join(synth, "vqa2", "imdb"), split), os.path.join(synth, "detectron_fix_100"),
                       tok, feature_dim=64, **kw)


def _imdb(path, entries, header=True):
    arr = np.empty(len(entries) + int(header), dtype=object)
    if header:
        arr[0] = {"create_time": "t", "dataset_name": "vqa", "version": 1, "has_answer": True, "has_gt_layout": False}
    for i, e in enumerate(entries):
        arr[i + int(header)] = e
    np.save(path, arr, allow_pickle=True)
    return str(path)


def test_real_vocab():
    vocab = load_answer_vocab()
    assert len(vocab) == 3129 and vocab[0] == "<unk>"
    assert vocab.index("yes") != 0 and vocab.index("definitely not an answer") == 0


def test_soft_scores_hand_computed():
    vocab = load_answer_vocab()
    # 10 answers: "yes" x4, "no" x3, "2" x2, an out-of-vocabulary answer x1
    scores = vocab.soft_scores(["yes"] * 4 + ["no"] * 3 + ["2"] * 2 + ["zzz not in vocab"])
    expected = {"yes": 1.0, "no": 0.9, "2": 0.6}
    for answer, s in expected.items():
        assert scores[vocab.index(answer)] == pytest.approx(s)
    assert scores[0] == 0.0 and scores.sum() == pytest.approx(2.5)
    one = vocab.soft_scores(["red"] + ["blue"] * 9)
    assert one[vocab.index("red")] == pytest.approx(0.3) and one[vocab.index("blue")] == pytest.approx(1.0)
    # equals the official leave-one-out average over the 10 answers for every count
    for c in range(1, 11):
        loo = np.mean([min(1.0, (c - 1) / 3)] * c + [min(1.0, c / 3)] * (10 - c))
        s = vocab.soft_scores(["red"] * c + ["blue"] * (10 - c))[vocab.index("red")]
        assert s == pytest.approx(loo, abs=1e-6)


def test_vocab_without_unk_at_zero(tmp_path):
    path = tmp_path / "answers.txt"
    path.write_text("yes\n<unk>\nno\n")
    with pytest.raises(DataFormatError, match=r"answers\.txt.*<unk>"):
        load_answer_vocab(str(path))
    path.write_text("")
    with pytest.raises(DataFormatError, match="<unk>"):
        load_answer_vocab(str(path))


def test_vqa_sample(synth, tok):
    ds = _ds(synth, tok, check_features=True)
    assert len(ds) == 6 * 3
    s = ds[0]
    tokens = tok.convert_ids_to_tokens(s["input_ids"].tolist())
    assert tokens[0] == "[CLS]" and tokens[-3:] == ["?", "[MASK]", "[SEP]"]
    assert s["input_ids"].dtype == np.int64 and (s["token_type_ids"] == 0).all()
    assert s["visual_embeds"].dtype == np.float32 and s["visual_embeds"].shape == (6, 64)
    assert (s["visual_token_type_ids"] == 0).all() and s["visual_token_type_ids"].dtype == np.int64
    assert s["labels"].dtype == np.float32 and s["labels"].shape == (3129,)
    assert len(s["answers"]) == 10 and isinstance(s["question_id"], int)
    vocab = load_answer_vocab()
    # the soft scores come from the ten answers
    for a in set(s["answers"]):
        assert s["labels"][vocab.index(a)] == pytest.approx(min(0.3 * s["answers"].count(a), 1.0))


@pytest.mark.parametrize("split, n", [("val", 2 * 3), ("minival", 1 * 3), ("trainval", 8 * 3), ("test2015", 2 * 3)])
def test_splits(synth, tok, split, n):
    ds = _ds(synth, tok, split)
    assert len(ds) == n
    s = ds[len(ds) - 1]
    if split == "test2015":
        assert "labels" not in s and "answers" not in s
    else:
        assert s["labels"].max() > 0


def test_trainval_falls_back_to_train_plus_val(synth, tok, tmp_path):
    imdb = os.path.join(synth, "vqa2", "imdb")
    d = tmp_path / "imdb"
    d.mkdir()
    for name in ("imdb_train2014.npy", "imdb_val2014.npy"):
        os.symlink(os.path.join(imdb, name), d / name)
    assert [os.path.basename(p) for p in imdb_files(str(d), "trainval")] == ["imdb_train2014.npy", "imdb_val2014.npy"]


def test_answers_and_valid_answers_keys(tmp_path, synth, tok):
    base = {"image_name": "COCO_train2014_000000000001", "image_id": 1, "question_id": 5,
            "question_str": "What color is it?", "question_tokens": ["what", "color", "is", "it"]}
    answers = ["red"] * 3 + ["blue"] * 7
    vocab = load_answer_vocab()
    for key in ("answers", "valid_answers"):
        path = _imdb(tmp_path / f"imdb_{key}.npy", [dict(base, **{key: answers})])
        s = VQA2Dataset(path, os.path.join(synth, "detectron_fix_100"), tok, feature_dim=64)[0]
        assert s["labels"][vocab.index("red")] == pytest.approx(0.9)
        assert s["labels"][vocab.index("blue")] == pytest.approx(1.0)


def test_truncation_keeps_answer_slot(synth, tok, tmp_path):
    long_q = " ".join(["dog"] * 300)
    e = {"image_name": "COCO_train2014_000000000001", "image_id": 1, "question_id": 5, "question_str": long_q + "?",
         "all_answers": ["yes"] * 10}
    path = _imdb(tmp_path / "imdb_long.npy", [e])
    s = VQA2Dataset(path, os.path.join(synth, "detectron_fix_100"), tok, feature_dim=64, max_seq_length=20)[0]
    assert len(s["input_ids"]) == 20
    assert tok.convert_ids_to_tokens(s["input_ids"][-3:].tolist()) == ["?", "[MASK]", "[SEP]"]


def test_mlm_task(synth, tok):
    ds = _ds(synth, tok, task="mlm", mask_prob=0.5)
    s = ds[0]
    assert s["labels"].shape == s["input_ids"].shape and s["labels"].dtype == np.int64
    assert (s["labels"][[0, -1]] == IGNORE_INDEX).all()
    assert tok.convert_ids_to_tokens([int(s["input_ids"][-1])]) == ["[SEP]"]


def _unmasked(s):
    return np.where(s["labels"] != IGNORE_INDEX, s["labels"], s["input_ids"]).tolist()


def test_mlm_task_text_is_question_answer(synth, tok):
    """VQA task pretraining with answer_text="words": MLM over ``[CLS] question ? answer [SEP]`` (the original's
    character-by-character answer: tests/test_original_recipe.py)."""
    ds = _ds(synth, tok, task="mlm", answer_text="words")
    for i in range(len(ds)):
        s, entry = ds[i], ds.entries[i]
        text = _unmasked(s)
        q = tok.convert_tokens_to_ids(tok.tokenize(" ".join(entry["question_tokens"])))
        qmark = tok.convert_tokens_to_ids(["?"])
        cls, sep = tok.convert_tokens_to_ids(["[CLS]", "[SEP]"])
        assert text[0] == cls and text[-1] == sep and text[1:1 + len(q) + 1] == q + qmark
        answer_ids = text[2 + len(q):-1]
        assert answer_ids, "the answer's wordpieces follow the question mark"
        matches = [a for a in entry["valid_answers"] if tok.convert_tokens_to_ids(tok.tokenize(a)) == answer_ids]
        assert matches, (tok.convert_ids_to_tokens(answer_ids), entry["valid_answers"])
        assert (s["labels"][[0, -1]] == IGNORE_INDEX).all()
    # deterministic per (seed, epoch, index); another epoch may draw other answers / masks
    np.testing.assert_array_equal(ds[0]["input_ids"], _ds(synth, tok, task="mlm", answer_text="words")[0]["input_ids"])


def test_mlm_answer_drawn_from_valid_answers(tmp_path, synth, tok):
    e = {"image_name": "COCO_train2014_000000000001", "image_id": 1, "question_id": 5,
         "question_str": "What color is it?", "answers": ["zebra"] * 10, "valid_answers": ["red", "blue"]}
    path = _imdb(tmp_path / "imdb_mlm.npy", [e])
    ds = VQA2Dataset(path, os.path.join(synth, "detectron_fix_100"), tok, feature_dim=64, task="mlm",
                     answer_text="words")
    drawn = set()
    for epoch in range(30):
        ds.set_epoch(epoch)
        text = tok.convert_ids_to_tokens(_unmasked(ds[0]))
        assert text[:7] == ["[CLS]", "what", "color", "is", "it", "?", text[6]] and text[-1] == "[SEP]"
        assert len(text) == 8 and text[6] in ("red", "blue")
        drawn.add(text[6])
    assert drawn == {"red", "blue"}


def test_mlm_without_answers_is_question_only(synth, tok):
    ds = _ds(synth, tok, split="test2015", task="mlm")
    for i in range(len(ds)):
        text = tok.convert_ids_to_tokens(_unmasked(ds[i]))
        assert text[-2:] == ["?", "[SEP]"]


def test_imdb_without_header(tmp_path, synth, tok):
    e = {"image_name": "COCO_train2014_000000000001", "image_id": 1, "question_id": 5, "question_str": "x?"}
    path = _imdb(tmp_path / "imdb_noheader.npy", [e, e], header=False)
    with pytest.raises(DataFormatError, match=r"imdb_noheader\.npy.*header"):
        VQA2Dataset(path, os.path.join(synth, "detectron_fix_100"), tok)


def test_empty_split(tmp_path, synth, tok):
    path = _imdb(tmp_path / "imdb_empty.npy", [])
    with pytest.raises(DataFormatError, match=r"imdb_empty\.npy.*empty split"):
        VQA2Dataset(path, os.path.join(synth, "detectron_fix_100"), tok)


def test_truncated_imdb(tmp_path, synth, tok):
    src = os.path.join(synth, "vqa2", "imdb", "imdb_train2014.npy")
    data = open(src, "rb").read()
    path = tmp_path / "imdb_cut.npy"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataFormatError, match=r"imdb_cut\.npy"):
        VQA2Dataset(str(path), os.path.join(synth, "detectron_fix_100"), tok)


def test_missing_feature_names_file_and_example(tmp_path, synth, tok):
    es = [{"image_name": "COCO_train2014_000000000001", "image_id": 1, "question_id": 5, "question_str": "x?"},
          {"image_name": "COCO_train2014_000000099999", "image_id": 99999, "question_id": 77, "question_str": "y?"}]
    path = _imdb(tmp_path / "imdb_missing.npy", es)
    with pytest.raises(MissingFeaturesError, match="COCO_train2014_000000099999"):
        VQA2Dataset(path, os.path.join(synth, "detectron_fix_100"), tok, check_features=True)
    ds = VQA2Dataset(path, os.path.join(synth, "detectron_fix_100"), tok)
    with pytest.raises(MissingFeaturesError) as info:
        ds[1]
    msg = str(info.value)
    assert "COCO_train2014_000000099999.npy" in msg and "question_id 77" in msg and "imdb_missing.npy" in msg


def test_missing_feature_root(synth, tok, tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        _ds(synth, tok).__class__(os.path.join(synth, "vqa2", "imdb", "imdb_val2014.npy"), str(tmp_path / "nowhere"), tok)
