"""Tests for visualbert.metrics. Every expected value is worked out by hand in the comments."""

import importlib
import json
import os
import subprocess
import sys
import types

import numpy as np
import pytest

_HERE = os.path.dirname(os.path.abspath(__file__))
_ROOT = os.path.dirname(_HERE)

# Load metrics.py (and the fileio module it writes with) as a package of their own, so this test does not depend
# on (nor pull in paddle through) visualbert/__init__.py: metrics.py must stay importable without paddle.
_PURE = types.ModuleType("visualbert_pure")
_PURE.__path__ = [os.path.join(_ROOT, "visualbert")]
sys.modules.setdefault("visualbert_pure", _PURE)
M = importlib.import_module("visualbert_pure.metrics")


def _ann(answers, answer_type="other", question_type="what is"):
    return {"answers": list(answers), "answer_type": answer_type, "question_type": question_type}


def _official_one(pred, answers, **kw):
    """Per-question official accuracy (0..1) of one prediction."""
    res = M.vqa_official_accuracy({1: pred}, {1: _ann(answers)}, ndigits=None, **kw)
    return res["perQuestion"][1] / 100.0


# ----------------------------------------------------------------------------- soft accuracy


def test_vqa_soft_score_table():
    assert M.vqa_soft_score(0) == 0.0
    assert M.vqa_soft_score(1) == pytest.approx(0.3)
    assert M.vqa_soft_score(3) == pytest.approx(0.9)
    assert M.vqa_soft_score(4) == 1.0
    np.testing.assert_allclose(M.vqa_soft_score(np.array([2, 10])), [0.6, 1.0])


def test_vqa_soft_accuracy_logits_indices_and_unk_mask():
    # 3 examples, 4 answers (index 0 = <unk>).
    targets = np.array(
        [
            [0.0, 1.0, 0.3, 0.0],
            [0.0, 0.0, 0.6, 0.3],
            [0.0, 0.0, 0.0, 0.9],
        ]
    )
    logits = np.array(
        [
            [0.1, 5.0, 1.0, 0.0],  # argmax 1 -> 1.0
            [9.0, 0.0, 2.0, 3.0],  # argmax 0 (<unk>) -> 0.0; masked: argmax 3 -> 0.3
            [0.0, 0.0, 0.0, 4.0],  # argmax 3 -> 0.9
        ]
    )
    assert M.vqa_soft_accuracy(logits, targets) == pytest.approx((1.0 + 0.0 + 0.9) / 3)
    assert M.vqa_soft_accuracy(logits, targets, mask_unk=True) == pytest.approx((1.0 + 0.3 + 0.9) / 3)
    np.testing.assert_array_equal(M.vqa_predict(logits, mask_unk=True), [1, 3, 3])
    np.testing.assert_array_equal(M.vqa_predict(logits), [1, 0, 3])
    # Indices instead of logits.
    assert M.vqa_soft_accuracy(np.array([2, 2, 0]), targets) == pytest.approx((0.3 + 0.6 + 0.0) / 3)
    np.testing.assert_allclose(M.vqa_soft_scores([2, 2, 0], targets), [0.3, 0.6, 0.0])


def test_vqa_soft_accuracy_errors():
    targets = np.zeros((2, 3))
    with pytest.raises(ValueError):
        M.vqa_soft_accuracy(np.array([0, 1]), targets, mask_unk=True)  # cannot mask indices
    with pytest.raises(ValueError):
        M.vqa_soft_accuracy(np.array([0, 3]), targets)  # out of range
    with pytest.raises(ValueError):
        M.vqa_soft_accuracy(np.zeros((3, 3)), targets)  # N mismatch
    with pytest.raises(ValueError):
        M.vqa_soft_accuracy(np.zeros((2, 4)), targets)  # A mismatch
    with pytest.raises(ValueError):
        M.vqa_soft_accuracy(np.zeros((0,), dtype=np.int64), np.zeros((0, 3)))


# ----------------------------------------------------------------------------- official VQA: normalisation


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("Two", "2"),  # lower-case, number word
        ("none", "0"),
        ("ten", "10"),
        ("the dog", "dog"),  # article dropped
        ("a an the cat", "cat"),
        ("dont", "don't"),  # contraction table
        ("whats", "what's"),
        ("1,000", "1000"),  # digit-comma-digit: every punctuation mark deleted, not spaced
        ("yes.", "yes"),  # period not followed by a digit
        ("3.5", "3.5"),  # period followed by a digit is kept
        ("5.", "5"),
        ("yes!", "yes"),  # '!' -> ' ', then split/join
        ("black-and-white", "black and white"),  # '-' not next to a space -> space
        ("black - white", "black white"),  # '-' next to a space -> deleted
        ("(a) tree", "tree"),  # '(' -> ' ', ') ' -> deleted, then the article 'a' is dropped
        ("it's", "it's"),  # apostrophes are not punctuation here
        ("Im", "im"),  # official quirk: the key "Im" is capitalised, so it never matches
        ("  Yes\n", "yes"),
    ],
)
def test_vqa_normalize_answer(raw, expected):
    assert M.vqa_normalize_answer(raw) == expected


def test_vqa_punctuation_details():
    # Without a number-comma, ',' becomes a space; with one, all marks are deleted outright.
    assert M.vqa_process_punctuation("a,b") == "a b"
    assert M.vqa_process_punctuation("1,5 x-y") == "15 xy"
    # vqaEval.py passes re.UNICODE (= 32) as the count of periodStrip.sub: 40 periods -> 8 left.
    assert M.vqa_process_punctuation("." * 40) == "." * 8
    # Case is left to processDigitArticle.
    assert M.vqa_process_punctuation("Yes") == "Yes"


# ----------------------------------------------------------------------------- official VQA: accuracy


def _loo(count, n=10):
    """Independent leave-one-out average for an answer given by ``count`` of ``n`` annotators."""
    total = 0.0
    for i in range(n):
        left_out_matches = i < count  # answers 0..count-1 are the matching ones
        others = count - (1 if left_out_matches else 0)
        total += min(1.0, others / 3.0)
    return total / n


@pytest.mark.parametrize("count", range(11))
def test_leave_one_out_equals_soft_score(count):
    # Closed form worked independently: min(0.3 * count, 1).
    expected = min(0.3 * count, 1.0)
    assert _loo(count) == pytest.approx(expected)
    # Answers that normalisation leaves unchanged ("cat" plus distinct fillers).
    answers = ["cat"] * count + [f"filler{i}" for i in range(10 - count)]
    assert _official_one("cat", answers) == pytest.approx(expected)


def test_official_match_counts():
    # 4 matching: leaving one out always leaves >= 3 -> 1.0
    assert _official_one("yes", ["yes"] * 4 + ["no"] * 6) == pytest.approx(1.0)
    # 3 matching: 3 leave-outs with 2 left (2/3), 7 with 3 left (1) -> (2 + 7) / 10 = 0.9
    assert _official_one("yes", ["yes"] * 3 + ["no"] * 7) == pytest.approx(0.9)
    # 2 matching: 2 * (1/3) + 8 * (2/3) = 6/3 -> 0.6
    assert _official_one("yes", ["yes"] * 2 + ["no"] * 8) == pytest.approx(0.6)
    # 1 matching: 1 * 0 + 9 * (1/3) = 3 -> 0.3
    assert _official_one("yes", ["yes"] + ["no"] * 9) == pytest.approx(0.3)
    assert _official_one("maybe", ["yes"] + ["no"] * 9) == 0.0


def test_official_normalisation_applies_when_answers_differ():
    # "Two" vs "2": 3 of 10 say "2" -> 0.9
    assert _official_one("Two", ["2"] * 3 + ["3"] * 7) == pytest.approx(0.9)
    # "the dog" vs "dog" with 2 matching -> 0.6
    assert _official_one("dog", ["the dog", "a dog"] + ["cat"] * 8) == pytest.approx(0.6)
    # "dont" vs "don't": normalisation is what makes them equal (4 -> 1.0)
    assert _official_one("dont", ["don't"] * 4 + ["no"] * 6) == pytest.approx(1.0)
    # "1,000" vs "1000", 1 match -> 0.3
    assert _official_one("1,000", ["1000"] + ["500"] * 9) == pytest.approx(0.3)
    # "yes." vs "yes": 2 match -> 0.6
    assert _official_one("yes.", ["yes", "yes"] + ["no"] * 8) == pytest.approx(0.6)
    # "3.5" keeps its period: matches "3.5" but not "35"
    assert _official_one("3.5", ["3.5"] * 4 + ["35"] * 6) == pytest.approx(1.0)
    assert _official_one("35", ["3.5"] * 4 + ["35"] * 6) == pytest.approx(1.0)
    assert _official_one("3.5", ["3.5"] + ["35"] * 9) == pytest.approx(0.3)
    # 9 say "2", 1 says "two": both normalise to "2" -> 10 matches -> 1.0
    assert _official_one("2", ["2"] * 9 + ["two"]) == pytest.approx(1.0)


def test_official_no_normalisation_when_all_answers_identical():
    # vqaEval.py (head) normalises neither side when the 10 answers are identical: only the
    # \n/\t replacement and strip() apply.
    assert _official_one("two", ["2"] * 10) == 0.0
    assert _official_one("2", ["2"] * 10) == 1.0
    assert _official_one(" 2\n", ["2"] * 10) == 1.0
    assert _official_one("yes.", ["yes"] * 10) == 0.0


def test_official_aggregation_types_rounding_and_input_forms():
    annotations = [
        {"question_id": 1, **_ann(["yes"] * 3 + ["no"] * 7, "yes/no", "is the")},  # pred yes -> 0.9
        {"question_id": 2, **_ann(["no"] * 10, "yes/no", "is the")},  # pred yes -> 0.0
        {"question_id": 3, **_ann(["2"] * 2 + ["3"] * 8, "number", "how many")},  # pred two -> 0.6
    ]
    # Official dicts with answer ids are accepted too.
    annotations[2]["answers"] = [{"answer": a, "answer_id": i + 1} for i, a in enumerate(annotations[2]["answers"])]
    result_json = [
        {"question_id": 1, "answer": "yes"},
        {"question_id": 2, "answer": "yes"},
        {"question_id": 3, "answer": "two"},
    ]
    res = M.vqa_official_accuracy(result_json, annotations)
    # overall = 100 * (0.9 + 0 + 0.6) / 3 = 50.0
    assert res["overall"] == pytest.approx(50.0)
    assert res["perAnswerType"] == {"yes/no": pytest.approx(45.0), "number": pytest.approx(60.0)}
    assert res["perQuestionType"] == {"is the": pytest.approx(45.0), "how many": pytest.approx(60.0)}
    assert res["perQuestion"] == {1: pytest.approx(90.0), 2: 0.0, 3: pytest.approx(60.0)}
    assert res["num_questions"] == 3
    # Subset of questions.
    sub = M.vqa_official_accuracy({1: "yes", 3: "two"}, annotations, question_ids=[1, 3])
    assert sub["overall"] == pytest.approx(75.0)
    anns = {1: _ann(["a1"] + ["b"] * 9), 2: _ann(["a2"] * 3 + ["b"] * 7), 3: _ann(["a3"] + ["b"] * 9)}
    r = M.vqa_official_accuracy({1: "a1", 2: "a2", 3: "a3"}, anns)
    assert r["overall"] == 50.0  # (0.3 + 0.9 + 0.3) / 3
    r = M.vqa_official_accuracy({1: "a1", 2: "a2", 3: "zz"}, anns)
    assert r["overall"] == 40.0  # (0.3 + 0.9 + 0) / 3
    # A repeated question id counts twice, as in the official per-question list.
    r = M.vqa_official_accuracy({1: "a1", 2: "a2"}, anns, question_ids=[1, 2, 1])
    assert r["overall"] == 50.0  # (0.3 + 0.9 + 0.3) / 3
    r = M.vqa_official_accuracy({1: "a1", 2: "a2", 3: "a3"}, {1: anns[1], 2: anns[2]})
    assert r["overall"] == 60.0  # only annotated questions: (0.3 + 0.9) / 2
    three = {1: _ann(["x"] * 2 + ["b"] * 8), 2: _ann(["b"] * 10), 3: _ann(["b"] * 10)}
    r = M.vqa_official_accuracy({1: "x", 2: "z", 3: "z"}, three)
    assert r["overall"] == 20.0  # 60 / 3
    r = M.vqa_official_accuracy({1: "x", 2: "b", 3: "z"}, three)
    assert r["overall"] == 53.33  # 160 / 3 = 53.333..., rounded to 2 decimals (official n=2)
    r = M.vqa_official_accuracy({1: "x", 2: "b", 3: "z"}, three, ndigits=None)
    assert r["overall"] == pytest.approx(160.0 / 3)


def test_official_errors():
    anns = {1: _ann(["a"] * 10), 2: _ann(["b"] * 10)}
    with pytest.raises(KeyError, match="no prediction"):
        M.vqa_official_accuracy({1: "a"}, anns)
    with pytest.raises(KeyError, match="no annotation"):
        M.vqa_official_accuracy({1: "a", 3: "c"}, anns, question_ids=[1, 3])
    with pytest.raises(ValueError, match="duplicate"):
        M.vqa_official_accuracy([{"question_id": 1, "answer": "a"}, {"question_id": 1, "answer": "b"}], anns)
    with pytest.raises(ValueError):
        M.vqa_official_accuracy({}, {})
    with pytest.raises(ValueError):
        M.vqa_official_accuracy({1: "a"}, {1: {"answer_type": "x", "question_type": "y"}})


def test_contractions_as_the_official_table_writes_them():
    # Hand-read from vqaEval.py's ``contractions`` dict (head version): the usual forms, and its quirks
    # ("somebody'd" maps to "somebodyd", "twas" gains a leading apostrophe, "yall'd've" its inner one).
    cases = {
        "dont know": "don't know",
        "i cant": "i can't",
        "yall'd've": "y'all'd've",
        "somebody'd": "somebodyd",
        "twas": "'twas",
        "hes": "he's",
        "don't": "don't",  # already contracted: unchanged
        "dontt": "dontt",  # not in the table
    }
    for raw, expected in cases.items():
        assert M.vqa_process_digit_article(raw) == expected, raw
    # Contractions come after number words and articles, word by word.
    assert M.vqa_process_digit_article("The two dogs dont") == "2 dogs don't"


# ----------------------------------------------------------------------------- NLVR2


def test_nlvr2_sentence_key():
    assert M.nlvr2_sentence_key("dev-850-0-0") == "dev-850-0"
    assert M.nlvr2_sentence_key("test1-12-3-2") == "test1-12-2"
    with pytest.raises(ValueError):
        M.nlvr2_sentence_key("dev-850-0")


def test_nlvr2_accuracy_and_consistency_hand_built():
    # Sentence A (set 1, sentence 0) on 3 pairs; sentence B (set 1, sentence 1) on 2 pairs;
    # sentence C (set 2, sentence 0) on 1 pair -- a different sentence from A despite the same
    # sentence id.
    labels = {
        "dev-1-0-0": True, "dev-1-1-0": False, "dev-1-2-0": "True",
        "dev-1-0-1": "false", "dev-1-1-1": True,
        "dev-2-0-0": 1,
    }
    preds = {
        "dev-1-0-0": True, "dev-1-1-0": False, "dev-1-2-0": True,  # A all right
        "dev-1-0-1": False, "dev-1-1-1": False,  # B one wrong
        "dev-2-0-0": "True",  # C right
        "dev-9-9-9": True,  # extra predictions are ignored
    }
    res = M.nlvr2_metrics(preds, labels)
    assert res == {"accuracy": pytest.approx(5 / 6), "consistency": pytest.approx(2 / 3)}
    # Same thing from JSON-lines style examples.
    examples = [{"identifier": k, "label": v} for k, v in labels.items()]
    assert M.nlvr2_metrics(preds, examples) == res
    preds["dev-1-1-1"] = True
    assert M.nlvr2_metrics(preds, labels) == {"accuracy": 1.0, "consistency": 1.0}


def test_nlvr2_missing_prediction_and_bad_values():
    labels = {"dev-1-0-0": True, "dev-1-1-0": False}
    with pytest.raises(KeyError, match="dev-1-1-0"):
        M.nlvr2_metrics({"dev-1-0-0": True}, labels)
    with pytest.raises(ValueError):
        M.nlvr2_metrics({"dev-1-0-0": "yes", "dev-1-1-0": False}, labels)
    with pytest.raises(ValueError):
        M.nlvr2_metrics({}, {})
    with pytest.raises(ValueError, match="duplicate"):
        M.nlvr2_metrics({"dev-1-0-0": True}, [{"identifier": "dev-1-0-0", "label": "True"}] * 2)


def test_nlvr2_csv_round_trip_and_format(tmp_path):
    preds = {"dev-1-0-0": True, "dev-1-1-0": False, "test1-5-2-1": np.bool_(True)}
    path = tmp_path / "sub" / "predictions.csv"
    M.write_nlvr2_predictions(path, preds)
    assert path.read_text() == "dev-1-0-0,True\ndev-1-1-0,False\ntest1-5-2-1,True\n"
    assert M.read_nlvr2_predictions(path) == {"dev-1-0-0": True, "dev-1-1-0": False, "test1-5-2-1": True}
    assert [p.name for p in path.parent.iterdir()] == ["predictions.csv"]  # no temp file left
    # Case-insensitive values and blank lines on reading.
    other = tmp_path / "other.csv"
    other.write_text("dev-1-0-0,true\n\ndev-1-1-0,FALSE\n")
    assert M.read_nlvr2_predictions(other) == {"dev-1-0-0": True, "dev-1-1-0": False}


def test_nlvr2_csv_errors(tmp_path):
    with pytest.raises(ValueError):
        M.write_nlvr2_predictions(tmp_path / "x.csv", {"dev,1-0-0": True})
    with pytest.raises(ValueError):
        M.write_nlvr2_predictions(tmp_path / "x.csv", {"dev-1-0-0": "maybe"})
    assert not (tmp_path / "x.csv").exists()
    bad = tmp_path / "bad.csv"
    bad.write_text("dev-1-0-0,True\ndev-1-1-0,maybe\n")
    with pytest.raises(ValueError, match=":2:"):
        M.read_nlvr2_predictions(bad)
    bad.write_text("dev-1-0-0,True\ndev-1-0-0,False\n")
    with pytest.raises(ValueError, match="duplicate"):
        M.read_nlvr2_predictions(bad)
    bad.write_text("dev-1-0-0\n")
    with pytest.raises(ValueError):
        M.read_nlvr2_predictions(bad)


def test_nlvr2_on_dev_sample(tmp_path):
    # Real dev identifiers: perfect predictions give 1/1; flipping every prediction of one
    # sentence loses exactly that sentence.
    with open(os.path.join(_HERE, "data", "nlvr2_dev_sample.jsonl")) as f:
        examples = [json.loads(line) for line in f if line.strip()]
    perfect = {e["identifier"]: e["label"] == "True" for e in examples}
    path = tmp_path / "p.csv"
    M.write_nlvr2_predictions(path, perfect)
    assert M.nlvr2_metrics(M.read_nlvr2_predictions(path), examples) == {"accuracy": 1.0, "consistency": 1.0}
    # Sentences counted independently of nlvr2_sentence_key: (split, set, sentence) tuples.
    sentences = {(i.split("-")[0], i.split("-")[1], i.split("-")[3]) for i in perfect}
    first = examples[0]["identifier"].split("-")
    flipped = dict(perfect)
    n_flipped = 0
    for ident in perfect:
        s = ident.split("-")
        if (s[0], s[1], s[3]) == (first[0], first[1], first[3]):
            flipped[ident] = not flipped[ident]
            n_flipped += 1
    res = M.nlvr2_metrics(flipped, examples)
    assert res["accuracy"] == pytest.approx(1 - n_flipped / len(examples))
    assert res["consistency"] == pytest.approx(1 - 1 / len(sentences))


# ----------------------------------------------------------------------------- VCR


def test_vcr_metrics_joint():
    answer_logits = np.array([[0.0, 2.0, 1.0, 0.0], [3.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0], [0.0, 0.0, 5.0, 0.0]])
    # answer argmax = [1, 0, 3, 2]; labels [1, 0, 0, 2] -> correct T T F T
    answer_labels = np.array([1, 0, 0, 2])
    # rationale preds [2, 1, 3, 3]; labels [2, 0, 3, 3] -> correct T F T T
    rationale_preds = np.array([2, 1, 3, 3])
    rationale_labels = [2, 0, 3, 3]
    res = M.vcr_metrics(answer_logits, answer_labels, rationale_preds, rationale_labels)
    # both correct: T F F T -> 0.5
    assert res == {"q2a": 0.75, "qa2r": 0.75, "q2ar": 0.5}
    assert M.vcr_metrics(answer_logits, answer_labels) == {"q2a": 0.75}
    assert M.vcr_metrics(rationale_preds=rationale_preds, rationale_labels=rationale_labels) == {"qa2r": 0.75}


def test_vcr_metrics_errors():
    with pytest.raises(ValueError):
        M.vcr_metrics()
    with pytest.raises(ValueError):
        M.vcr_metrics(np.array([0, 1]), None)
    with pytest.raises(ValueError):
        M.vcr_metrics(None, np.array([0, 1]))
    with pytest.raises(ValueError):
        M.vcr_metrics(np.array([0, 1]), np.array([0, 1, 2]))
    with pytest.raises(ValueError):
        M.vcr_metrics(np.array([0, 1]), np.array([0, 1]), np.array([0]), np.array([0]))


def test_metrics_module_does_not_import_paddle(tmp_path):
    # In a fresh interpreter where ``import paddle`` fails, the metrics and their CSV writer still work.
    code = (
        "import sys, types, importlib\n"
        "sys.modules['paddle'] = None\n"
        f"pkg = types.ModuleType('vbp'); pkg.__path__ = [{os.path.join(_ROOT, 'visualbert')!r}]\n"
        "sys.modules['vbp'] = pkg\n"
        "m = importlib.import_module('vbp.metrics')\n"
        f"m.write_nlvr2_predictions({str(tmp_path / 'p.csv')!r}, {{'dev-1-0-0': True}})\n"
        "assert abs(m.vqa_soft_score(3) - 0.9) < 1e-12 and m.vqa_soft_score(4) == 1.0\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "p.csv").read_text() == "dev-1-0-0,True\n"
