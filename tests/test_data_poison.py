"""Poison caught at its source: non-finite or integer features (per-image and packed stores, data.check --read),
empty or null texts (VQA2, NLVR2, COCO, VCR), answer-vocabulary coverage and impossible masking probabilities."""

import json
import os

import numpy as np
import pytest

from visualbert.data import (
    CocoCaptionsPretrainDataset,
    DataFormatError,
    NLVR2Dataset,
    NpyFeatureStore,
    PackedFeatureStore,
    VCRDataset,
    VQA2Dataset,
    imdb_files,
    load_answer_vocab,
    mask_tokens,
    pack_features,
)
from visualbert.data.answers import AnswerVocab, answer_coverage, check_answer_coverage
from visualbert.data.check import main as check_main
from visualbert.data.errors import text_problem
from visualbert.data.synthetic import generate
from visualbert.tokenizer import load_tokenizer

DIM = 32


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer()


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("synth_poison"))
    generate(out, num_images=10, questions_per_image=2, regions=3, vqa_dim=DIM, nlvr2_dim=DIM, vcr_dim=DIM,
             nlvr2_sets=5, vcr_examples=6, nlvr2_regions=3)
    return out


# ------------------------------------------------------------------------------------------ features
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_feature_file_is_an_error_naming_the_file(tmp_path, value):
    array = np.ones((4, DIM), np.float32)
    array[2, 7] = value
    np.save(tmp_path / "img.npy", array)
    with pytest.raises(DataFormatError, match=rf"{tmp_path}/img\.npy: 1 non-finite value\(s\).*region 2, column 7"):
        NpyFeatureStore(str(tmp_path), dim=DIM)["img"]


def test_float64_overflowing_float32_is_caught_after_the_cast(tmp_path):
    array = np.ones((2, DIM), np.float64)
    array[1, 0] = 1e39  # finite in float64, inf in float32
    np.save(tmp_path / "img.npy", array)
    with pytest.raises(DataFormatError, match="non-finite"):
        NpyFeatureStore(str(tmp_path), dim=DIM)["img"]


def test_nan_beyond_the_region_cap_is_not_used_and_not_an_error(tmp_path):
    array = np.ones((5, DIM), np.float32)
    array[4] = np.nan
    np.save(tmp_path / "img.npy", array)
    assert NpyFeatureStore(str(tmp_path), dim=DIM, max_regions=4)["img"].shape == (4, DIM)


@pytest.mark.parametrize("dtype", [np.int64, np.uint8, np.bool_])
def test_integer_features_are_an_error(tmp_path, dtype):
    np.save(tmp_path / "img.npy", np.ones((3, DIM), dtype))
    with pytest.raises(DataFormatError, match=r"img\.npy: expected float32 or float16 region features, got dtype"):
        NpyFeatureStore(str(tmp_path), dim=DIM)["img"]


def test_packed_store_nan_names_the_store_and_the_image(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for k in ("a", "b"):
        np.save(src / f"{k}.npy", np.ones((3, DIM), np.float32))
    out = str(tmp_path / "packed")
    pack_features(NpyFeatureStore(str(src), dim=DIM), out, progress=False)
    array = np.load(os.path.join(out, "features.npy"), mmap_mode="r+")
    array[4, 1] = np.nan  # row 1 of image "b" (rows 3..5)
    array.flush()
    del array
    store = PackedFeatureStore(out, dim=DIM)
    assert np.isfinite(store["a"]).all()
    with pytest.raises(DataFormatError, match=r"features\.npy rows 3\.\.5 \(image 'b'\): 1 non-finite"):
        store["b"]
    with pytest.raises(DataFormatError, match=r"features\.npy rows 3\.\.5 \(image 'b'\): 1 non-finite"):
        store.view("b")  # the datasets' no-copy read is checked too


def test_packing_refuses_a_nan_source(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    bad = np.ones((3, DIM), np.float32)
    bad[0, 0] = np.nan
    np.save(src / "a.npy", bad)
    with pytest.raises(DataFormatError, match=r"a\.npy: 1 non-finite"):
        pack_features(NpyFeatureStore(str(src), dim=DIM), str(tmp_path / "packed"), progress=False)
    assert not os.path.exists(tmp_path / "packed" / "index.json")


def test_check_read_reports_nan_and_integer_files(synth, tmp_path, capsys):
    import shutil

    feats = str(tmp_path / "feats")
    shutil.copytree(os.path.join(synth, "detectron_fix_100"), feats)
    base = os.path.join(feats, "fc6", "vqa", "train2014")
    names = sorted(os.listdir(base))
    nan_file, int_file = os.path.join(base, names[0]), os.path.join(base, names[1])
    a = np.load(nan_file)
    a[0, 0] = np.nan
    np.save(nan_file, a)
    np.save(int_file, np.load(int_file).astype(np.int32))
    argv = ["--task", "vqa", "--annotations", os.path.join(synth, "vqa2", "imdb", "imdb_train2014.npy"),
            "--features", feats, "--dim", str(DIM)]
    assert check_main(argv) == 0  # without --read only presence is checked
    capsys.readouterr()
    assert check_main(argv + ["--read"]) == 1
    lines = capsys.readouterr().out.splitlines()
    bad = [line for line in lines if line.startswith("bad: ")]
    assert len(bad) == 2
    assert any(nan_file in line and "non-finite" in line for line in bad)
    assert any(int_file in line and "dtype int32" in line for line in bad)
    assert lines[-1].endswith("0 missing, 2 unreadable")


# ------------------------------------------------------------------------------------------ texts
@pytest.mark.parametrize("value,expected", [
    (None, "is null"), ("", "is empty"), ("   ", "is empty"), ("None", "is null ('None')"), (" null ", "is null"),
    (float("nan"), "is null (NaN)"), (3, "is a int, not a string"), ("Is there a dog?", None), ("no one", None),
])
def test_text_problem(value, expected):
    got = text_problem(value)
    assert (got is None) if expected is None else got.startswith(expected)


def _rewrite_imdb(src, dst, index, **changes):
    data = np.load(src, allow_pickle=True)
    entry = dict(data[index + 1])
    entry.update(changes)
    data[index + 1] = entry
    np.save(dst, data, allow_pickle=True)
    return int(entry["question_id"])


@pytest.mark.parametrize("question", ["", "None", None, "?"])
def test_vqa_empty_or_null_question_names_the_example(synth, tok, tmp_path, question):
    src = imdb_files(os.path.join(synth, "vqa2", "imdb"), "train")[0]
    dst = str(tmp_path / "imdb_train2014.npy")
    qid = _rewrite_imdb(src, dst, 3, question_str=question, question_tokens=None)
    with pytest.raises(DataFormatError, match=rf"imdb_train2014\.npy: element 4 \(question_id {qid}\): the question is"):
        VQA2Dataset(dst, os.path.join(synth, "detectron_fix_100"), tok, feature_dim=DIM)


def _rewrite_jsonl(src, dst, index, drop=(), **changes):
    with open(src) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    rows[index].update(changes)
    for key in drop:
        rows[index].pop(key)
    with open(dst, "w") as f:
        f.write("".join(json.dumps(r) + "\n" for r in rows))
    return rows[index]


@pytest.mark.parametrize("sentence", ["", "None", None, "null"])
def test_nlvr2_empty_or_null_sentence_names_the_line(synth, tok, tmp_path, sentence):
    dst = str(tmp_path / "train.json")
    row = _rewrite_jsonl(os.path.join(synth, "nlvr2", "train.json"), dst, 2, sentence=sentence)
    with pytest.raises(DataFormatError, match=rf"train\.json:3: the sentence of {row['identifier']} is"):
        NLVR2Dataset(dst, os.path.join(synth, "detectron_fix_144"), tok, feature_dim=DIM)


def test_nlvr2_label_missing_on_one_line_names_it(synth, tok, tmp_path):
    dst = str(tmp_path / "train.json")
    row = _rewrite_jsonl(os.path.join(synth, "nlvr2", "train.json"), dst, 4, drop=("label",))
    with pytest.raises(DataFormatError, match=rf"train\.json:5: {row['identifier']} has no label, other lines have one"):
        NLVR2Dataset(dst, os.path.join(synth, "detectron_fix_144"), tok, feature_dim=DIM)


@pytest.mark.parametrize("caption", ["", "None", None])
def test_coco_empty_or_null_caption_names_the_annotation(synth, tok, tmp_path, caption):
    with open(os.path.join(synth, "coco", "annotations", "captions_train2014.json")) as f:
        coco = json.load(f)
    ann = coco["annotations"][5]
    ann["caption"] = caption
    dst = tmp_path / "captions_train2014.json"
    dst.write_text(json.dumps(coco))
    with pytest.raises(DataFormatError, match=rf"the caption of annotation {ann['id']} \(image {ann['image_id']}\) is"):
        CocoCaptionsPretrainDataset(str(dst), os.path.join(synth, "detectron_fix_100"), tok, feature_dim=DIM)


@pytest.mark.parametrize("field,value,expected", [
    ("question", [], "question is empty"),
    ("question", ["None"], "question is null"),
    ("answer_choices", [["a"], [], ["c"], ["d"]], r"answer_choices\[1\] is empty"),
    ("rationale_choices", [["a"], ["b"], ["c", None], ["d"]], r"rationale_choices\[2\] has a null token"),
    ("answer_choices", [["a", [0, 9]], ["b"], ["c"], ["d"]], r"answer_choices\[0\] refers to object 9"),
])
def test_vcr_empty_null_or_bad_reference_names_the_line(synth, tok, tmp_path, field, value, expected):
    dst = str(tmp_path / "train.jsonl")
    _rewrite_jsonl(os.path.join(synth, "vcr", "train.jsonl"), dst, 1, **{field: value})
    with pytest.raises(DataFormatError, match=rf"train\.jsonl:2: {expected}"):
        VCRDataset(dst, os.path.join(synth, "vcr", "features"), tok, feature_dim=DIM)


# ------------------------------------------------------------------------------------------ answers
def test_answer_coverage_hand_computed():
    vocab = AnswerVocab(["<unk>", "yes", "no"], source="v.txt")
    stats = answer_coverage(vocab, [["yes", "yes", "maybe"], ["maybe", "perhaps"], None, ["no"], ["<unk>"]])
    assert stats == {"questions": 4, "covered_questions": 2, "question_coverage": 0.5, "answers": 7,
                     "covered_answers": 3, "answer_coverage": 3 / 7}


def test_answer_coverage_below_threshold_names_the_vocabulary_file(tmp_path):
    path = tmp_path / "answers.txt"
    path.write_text("<unk>\nred\nblue\n")
    vocab = load_answer_vocab(str(path))
    lists = [["red"]] + [["cat"]] * 3
    logged = []
    stats = check_answer_coverage(vocab, lists, "imdb_train.npy", min_coverage=0.25, log=logged.append)
    assert stats["question_coverage"] == 0.25 and "1 of 4 questions of imdb_train.npy (25.0%)" in logged[0]
    with pytest.raises(DataFormatError, match=rf"answer vocabulary {path}: 1 of 4 questions .* below the minimum 50%"):
        check_answer_coverage(vocab, lists, "imdb_train.npy", log=logged.append)


def test_vqa_dataset_coverage_packaged_vs_foreign_vocabulary(synth, tok, tmp_path):
    imdb = imdb_files(os.path.join(synth, "vqa2", "imdb"), "train")
    feats = os.path.join(synth, "detectron_fix_100")
    stats = VQA2Dataset(imdb, feats, tok, answers_file=os.path.join(synth, "vqa2", "answers_vqa.txt"),
                        feature_dim=DIM).check_answer_coverage()
    assert stats["question_coverage"] > 0.9
    foreign = tmp_path / "answers.txt"
    foreign.write_text("<unk>\nnot an answer of this split\n")
    with pytest.raises(DataFormatError, match=rf"answer vocabulary {foreign}: 0 of {stats['questions']} questions"):
        VQA2Dataset(imdb, feats, tok, answers_file=str(foreign), feature_dim=DIM).check_answer_coverage()


# ------------------------------------------------------------------------------------------ masking
@pytest.mark.parametrize("mask_prob", [2.0, -0.1, float("nan"), "x"])
def test_impossible_mask_prob_fails_at_construction(synth, tok, mask_prob):
    with pytest.raises(ValueError, match="mask_prob must be a probability in"):
        NLVR2Dataset(os.path.join(synth, "nlvr2", "train.json"), os.path.join(synth, "detectron_fix_144"), tok,
                     task="pretrain", mask_prob=mask_prob, feature_dim=DIM)
    with pytest.raises(ValueError, match="mask_prob must be a probability in"):
        VQA2Dataset(imdb_files(os.path.join(synth, "vqa2", "imdb"), "train"), os.path.join(synth, "detectron_fix_100"),
                    tok, task="mlm", mask_prob=mask_prob, feature_dim=DIM)
    with pytest.raises(ValueError, match="mask_prob must be a probability in"):
        CocoCaptionsPretrainDataset(os.path.join(synth, "coco", "annotations", "captions_train2014.json"),
                                    os.path.join(synth, "detectron_fix_100"), tok, mask_prob=mask_prob,
                                    feature_dim=DIM)


def test_mask_tokens_bounds():
    rng = np.random.default_rng(0)
    ids, special = np.arange(5, 15), np.zeros(10, bool)
    _, labels = mask_tokens(ids, special, rng, 103, np.arange(1000, 1010), mask_prob=1.0)
    assert (labels == ids).all()  # 1.0 is allowed: every position is a target
    with pytest.raises(ValueError, match=r"mask_frac \+ random_frac must be <= 1"):
        mask_tokens(ids, special, rng, 103, np.arange(1000, 1010), mask_frac=0.8, random_frac=0.3)
