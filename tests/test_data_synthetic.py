"""The synthetic generator: real formats, determinism, answers carried by the regions and not by the text."""

import collections
import filecmp
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from visualbert.data import load_answer_vocab, load_coco_captions, load_imdb, read_nlvr2_jsonl, read_vcr_jsonl
from visualbert.data.check import check_split
from visualbert.data.synthetic import CLASSES, COLORS, NUMBER_WORDS, FeatureMaker, generate, plural

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = dict(num_images=60, questions_per_image=3, regions=6, vqa_dim=40, nlvr2_sets=30, nlvr2_regions=6,
             nlvr2_dim=40, vcr_examples=9, vcr_dim=32)


@pytest.fixture(scope="module")
def synth(synthetic):
    return synthetic(**SMALL)


def _files(root):
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)


def test_deterministic(tmp_path, synth):
    again = str(tmp_path / "again")
    generate(again, **SMALL)
    files = _files(synth)
    assert files == _files(again)
    _, mismatch, errors = filecmp.cmpfiles(synth, again, files, shallow=False)
    assert not mismatch and not errors
    other = str(tmp_path / "other")
    generate(other, seed=1, **SMALL)
    assert not filecmp.cmp(os.path.join(synth, "nlvr2", "train.json"), os.path.join(other, "nlvr2", "train.json"), shallow=False)


def test_real_formats(synth):
    imdb_dir = os.path.join(synth, "vqa2", "imdb")
    vocab = load_answer_vocab(os.path.join(synth, "vqa2", "answers_vqa.txt"))
    assert len(vocab) == 3129
    # COCO image sets each imdb may draw from (minival is a part of val2014; trainval is train + val).
    image_sets = {"train2014": {"train2014"}, "val2014": {"val2014"}, "minival2014": {"val2014"},
                  "trainval2014": {"train2014", "val2014"}, "test2015": {"test2015"}}
    for name, allowed in image_sets.items():
        header, entries = load_imdb(os.path.join(imdb_dir, f"imdb_{name}.npy"))
        assert header["has_answer"] == (name != "test2015")
        assert {"create_time", "dataset_name", "version", "has_answer", "has_gt_layout"} <= set(header)
        seen = set()
        for e in entries:
            m = re.fullmatch(r"COCO_(train2014|val2014|test2015)_(\d{12})", e["image_name"])
            assert m and m.group(1) in allowed and int(m.group(2)) == e["image_id"], (name, e["image_name"])
            assert e["feature_path"] == e["image_name"] + ".npy"
            seen.add(m.group(1))
            if name != "test2015":
                assert len(e["all_answers"]) == 10 and all(a in vocab for a in e["valid_answers"])
        assert seen == allowed, name
        e = entries[0]
        report = check_split("vqa", os.path.join(imdb_dir, f"imdb_{name}.npy"), os.path.join(synth, "detectron_fix_100"),
                             read=True, progress=False, dim=40)
        assert not report["missing"] and not report["bad"]
    arr = np.load(os.path.join(synth, "detectron_fix_100", "fc6", "vqa", e["image_name"].split("_")[1], e["image_name"] + ".npy"))
    assert arr.dtype == np.float32 and arr.shape == (6, 40)
    for s in ("train2014", "val2014"):
        path = os.path.join(synth, "coco", "annotations", f"captions_{s}.json")
        coco = load_coco_captions(path)
        assert len(coco.getImgIds()) > 0 and len(coco.getAnnIds()) == 5 * len(coco.getImgIds())
        assert set(coco.dataset["annotations"][0]) == {"id", "image_id", "caption"}
    for split in ("train", "dev", "test1"):
        rows = read_nlvr2_jsonl(os.path.join(synth, "nlvr2", f"{split}.json"))
        assert {"identifier", "sentence", "label", "left_url", "right_url"} <= set(rows[0])
        report = check_split("nlvr2", os.path.join(synth, "nlvr2", f"{split}.json"), os.path.join(synth, "detectron_fix_144"),
                             read=True, progress=False, dim=40)
        assert not report["missing"] and not report["bad"]
    rows = read_vcr_jsonl(os.path.join(synth, "vcr", "train.jsonl"))
    assert len(rows[0]["answer_choices"]) == 4 and len(rows[0]["rationale_choices"]) == 4


def _decode(features, dim):
    """(class, colour) of each region from the feature basis (None for background)."""
    fm = FeatureMaker(dim, SMALL.get("seed", 0))
    z = features @ np.linalg.pinv(fm.W)
    out = []
    for row in z:
        if row[-1] > 0.5:
            out.append(None)
        else:
            out.append((CLASSES[int(np.argmax(row[: len(CLASSES)]))], COLORS[int(np.argmax(row[len(CLASSES):-1]))]))
    return out


def _answer_from_regions(question, objects):
    q = question.lower().rstrip("?").split()
    objects = [o for o in objects if o is not None]
    if q[:3] == ["what", "color", "is"]:
        return next(col for cls, col in objects if cls == q[-1])
    if q[:2] == ["how", "many"]:
        return str(sum(1 for cls, _ in objects if cls == q[2] or cls + "s" == q[2] or (cls == "bus" and q[2] == "buses")))
    return "yes" if any(cls == q[-1] for cls, _ in objects) else "no"


def test_vqa_answers_come_from_regions_not_text(synth):
    _, entries = load_imdb(os.path.join(synth, "vqa2", "imdb", "imdb_trainval2014.npy"))
    vocab = load_answer_vocab()
    right = 0
    by_text = collections.defaultdict(collections.Counter)
    for e in entries:
        set_ = e["image_name"].split("_")[1]
        feats = np.load(os.path.join(synth, "detectron_fix_100", "fc6", "vqa", set_, e["image_name"] + ".npy"))
        scores = vocab.soft_scores(e["answers"])
        best = vocab[int(np.argmax(scores))]
        right += _answer_from_regions(e["question_str"], _decode(feats, 40)) == best
        by_text[e["question_str"]][best] += 1
    assert right == len(entries)  # the regions determine every answer
    # the question text alone does not: majority answer per question string vs. the best answer
    text_only = sum(c.most_common(1)[0][1] for c in by_text.values()) / len(entries)
    overall = collections.Counter(a for c in by_text.values() for a in c.elements())
    assert overall.most_common(1)[0][1] / len(entries) < 0.3  # no dominant answer
    templates = collections.Counter(e["question_str"].split()[0] for e in entries)
    assert len(templates) == 3 and max(templates.values()) - min(templates.values()) <= 1
    yes = overall["yes"] / (overall["yes"] + overall["no"])
    assert 0.3 < yes < 0.7
    assert text_only < 0.8


def test_nlvr2_balanced_and_consistent(synth):
    rows = read_nlvr2_jsonl(os.path.join(synth, "nlvr2", "train.json"))
    labels = [r["label"] == "True" for r in rows]
    assert 0.4 <= np.mean(labels) <= 0.6
    # each sentence appears with two image pairs, one True and one False (text alone cannot decide)
    by_sentence = collections.defaultdict(set)
    for r in rows:
        by_sentence[r["identifier"].split("-")[1]].add(r["label"])
    assert all(v == {"True", "False"} for v in by_sentence.values())


SIMPLE = re.compile(r"(The (left|right) image contains|Both images contain) an? ((\w+) )?(\w+)\.")
SINGULAR = {plural(c): c for c in CLASSES}
WORD_NUMBERS = {w: n for n, w in NUMBER_WORDS.items()}


def _nlvr2_truth(sentence, left, right):
    """Truth of a synthetic NLVR2 sentence given the decoded (class, colour) objects of each image, worked out
    from the words (independently of the generator's truth functions)."""
    def count(objects, cls):
        return sum(1 for c, _ in objects if c == SINGULAR.get(cls, cls))

    def has(objects, cls, col):
        return any(c == cls and (col is None or o == col) for c, o in objects)

    m = SIMPLE.fullmatch(sentence)
    if m:
        side, col, cls = m.group(2), m.group(4), m.group(5)
        if side is None:
            return has(left, cls, col) and has(right, cls, col)
        return has(left if side == "left" else right, cls, col)
    m = re.fullmatch(r"The left image contains exactly (\w+) (\w+)\.", sentence)
    if m:
        return count(left, m.group(2)) == WORD_NUMBERS[m.group(1)]
    m = re.fullmatch(r"There are more (\w+) in the left image than in the right image\.", sentence)
    if m:
        return count(left, m.group(1)) > count(right, m.group(1))
    m = re.fullmatch(r"Exactly one image contains (\w+)\.", sentence)
    assert m, sentence
    return (count(left, m.group(1)) > 0) != (count(right, m.group(1)) > 0)


@pytest.fixture(scope="module")
def nlvr2_variants(tmp_path_factory, synth):
    out = {"simple": synth}
    for templates in ("mixed", "hard"):
        path = str(tmp_path_factory.mktemp(f"nlvr2_{templates}"))
        generate(path, tasks=("nlvr2",), nlvr2_templates=templates, nlvr2_sets=40, nlvr2_dim=40)
        out[templates] = path
    return out


@pytest.mark.parametrize("templates", ["simple", "mixed", "hard"])
def test_nlvr2_labels_come_from_regions_not_text(nlvr2_variants, templates):
    root = nlvr2_variants[templates]
    rows = []
    for split in ("train", "dev", "test1"):
        rows += read_nlvr2_jsonl(os.path.join(root, "nlvr2", f"{split}.json"))
    by_set = collections.defaultdict(list)
    for r in rows:
        pair = r["identifier"].rsplit("-", 1)[0]
        split = pair.split("-")[0]
        left, right = (
            [o for o in _decode(np.load(os.path.join(root, "detectron_fix_144", split, "feature_1024dim",
                                                     f"{pair}-img{side}.png.npy")), 40) if o is not None]
            for side in (0, 1))
        # the regions determine every label ...
        assert _nlvr2_truth(r["sentence"], left, right) == (r["label"] == "True"), (r["identifier"], r["sentence"])
        by_set["-".join(r["identifier"].split("-")[:2])].append(r)
    # ... the text does not: every sentence has one True and one False image pair (so text alone scores 50%)
    for pairs in by_set.values():
        assert len(pairs) == 2 and len({p["sentence"] for p in pairs}) == 1
        assert sorted(p["label"] for p in pairs) == ["False", "True"]
    sentences = [r["sentence"] for r in rows]
    hard_only = sum(bool(re.match(r"The left image contains exactly|There are more|Exactly one image", t)) for t in sentences)
    class_only = sum(bool(re.fullmatch(r"(The (left|right) image contains|Both images contain) an? (\w+)\.", t))
                     for t in sentences)  # only the simple templates name a class without a colour
    if templates == "simple":
        assert all(SIMPLE.fullmatch(t) for t in sentences) and hard_only == 0 and class_only > 0
        sides = collections.Counter(t.split()[1] for t in sentences)
        assert sides["left"] > 0 and sides["right"] > 0 and sides["images"] > 0
        assert sides["left"] + sides["right"] > 0.6 * len(rows)  # dominated by statements about one side
    elif templates == "mixed":
        assert hard_only > 0 and class_only > 0
    else:
        assert hard_only > 0 and class_only == 0


def test_nlvr2_templates_flag(tmp_path):
    with pytest.raises(ValueError, match="nlvr2_templates"):
        generate(str(tmp_path / "bad"), tasks=("nlvr2",), nlvr2_templates="easy")
    out = str(tmp_path / "cli")
    subprocess.run([sys.executable, os.path.join(REPO, "tools", "make_synthetic_data.py"), "--out", out, "--quiet",
                    "--tasks", "nlvr2", "--nlvr2_sets", "5", "--nlvr2_dim", "32", "--nlvr2_templates", "hard"],
                   check=True, capture_output=True, text=True)
    with open(os.path.join(out, "manifest.json")) as f:
        assert json.load(f)["settings"]["nlvr2_templates"] == "hard"


def test_cli_default_size(tmp_path):
    out = str(tmp_path / "default")
    res = subprocess.run([sys.executable, os.path.join(REPO, "tools", "make_synthetic_data.py"), "--out", out, "--quiet"],
                         check=True, capture_output=True, text=True)
    counts = json.loads(res.stdout.strip().splitlines()[-1])
    assert counts["vqa"]["train2014"] > 0 and counts["nlvr2"]["train"] > 0
    size = sum(os.path.getsize(os.path.join(out, f)) for f in _files(out))
    assert size < 8e6
    arr = np.load(os.path.join(out, "detectron_fix_144", "dev", "feature_1024dim", "dev-0-0-img0.png.npy"))
    assert arr.shape[1] == 1024 and arr.shape[0] <= 6
