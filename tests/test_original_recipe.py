"""Text and splits as the original's dataloaders build them (uclanlp/visualbert visualbert/dataloaders/):
VQA task pre-training's answer (vqa_dataset.py) and the COCO validation split under expand_coco (coco_dataset.py)."""

import json
import os

import numpy as np
import pytest

from visualbert.constants import IGNORE_INDEX
from visualbert.data import CocoCaptionsPretrainDataset, VQA2Dataset
from visualbert.data.synthetic import generate
from visualbert.tokenizer import load_tokenizer


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer()


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("synth_recipe"))
    generate(out, num_images=20, questions_per_image=2, regions=4, vqa_dim=32, tasks=("vqa", "coco"))
    return out


def _imdb(path, entries):
    arr = np.empty(len(entries) + 1, dtype=object)
    arr[0] = {"create_time": "t", "dataset_name": "vqa", "version": 1, "has_answer": True, "has_gt_layout": False}
    for i, e in enumerate(entries):
        arr[i + 1] = e
    np.save(path, arr, allow_pickle=True)
    return str(path)


def _text(ds, index):
    s = ds[index]
    restored = np.where(s["labels"] != IGNORE_INDEX, s["labels"], s["input_ids"]).tolist()
    return ds.text.tokenizer.convert_ids_to_tokens(restored)


def test_vqa_pretraining_answer_as_the_original(tmp_path, synth, tok):
    """vqa_dataset.py (no_next_sentence): text_a = tokenize(" ".join(question_tokens)) + ["?"] +
    tokenize(" ".join(answer)), where answer = np.random.choice(valid_answers) is a string, so " ".join spells
    it out character by character."""
    e = {"image_name": "COCO_train2014_000000000001", "image_id": 1, "question_id": 5,
         "question_tokens": ["what", "is", "on", "the", "t-shirt"], "answers": ["x"] * 10,
         "valid_answers": ["red and white"] * 10}
    path = _imdb(tmp_path / "imdb_one.npy", [e])
    feats = os.path.join(synth, "detectron_fix_100")
    original = VQA2Dataset(path, feats, tok, feature_dim=32, task="mlm")
    assert original.answer_text == "characters"
    # hand-built from the original's expression, with BERT's basic tokenizer splitting on whitespace/punctuation
    expected_a = tok.tokenize("what is on the t-shirt") + ["?"] + tok.tokenize(" ".join("red and white"))
    assert tok.tokenize(" ".join("red and white")) == list("redandwhite")
    assert _text(original, 0) == ["[CLS]"] + expected_a + ["[SEP]"]
    words = VQA2Dataset(path, feats, tok, feature_dim=32, task="mlm", answer_text="words")
    assert _text(words, 0)[-4:] == ["red", "and", "white", "[SEP]"]
    with pytest.raises(ValueError, match="answer_text"):
        VQA2Dataset(path, feats, tok, feature_dim=32, task="mlm", answer_text="chars")


def test_vqa_pretraining_character_answers_are_mlm_targets(tmp_path, synth, tok):
    e = {"image_name": "COCO_train2014_000000000001", "image_id": 1, "question_id": 5,
         "question_str": "is it?", "answers": ["yes"] * 10, "valid_answers": ["yes"] * 10}
    ds = VQA2Dataset(_imdb(tmp_path / "imdb_yes.npy", [e]), os.path.join(synth, "detectron_fix_100"), tok,
                     feature_dim=32, task="mlm", mask_prob=1.0)
    assert _text(ds, 0) == ["[CLS]", "is", "it", "?", "y", "e", "s", "[SEP]"]
    labels = ds[0]["labels"]
    assert (labels[1:-1] != IGNORE_INDEX).all() and labels[0] == labels[-1] == IGNORE_INDEX


def test_coco_validation_under_expand_coco_is_the_minival_images(synth, tok):
    """coco_dataset.py, expand_coco: validationset.items = the val2014 captions whose image is in VQA minival."""
    ann = os.path.join(synth, "coco", "annotations")
    raw = json.load(open(os.path.join(ann, "captions_val2014.json")))
    stems = {img["id"]: os.path.splitext(img["file_name"])[0] for img in raw["images"]}
    minival = {str(x["image_name"]) for x in np.load(os.path.join(synth, "vqa2", "imdb", "imdb_minival2014.npy"),
                                                    allow_pickle=True)[1:]}
    expected = sorted(a["id"] for a in raw["annotations"] if stems[a["image_id"]] in minival)
    assert 0 < len(expected) < len(raw["annotations"])
    ds = CocoCaptionsPretrainDataset(os.path.join(ann, "captions_val2014.json"), os.path.join(synth, "detectron_fix_100"),
                                     tok, only_image_ids=minival)
    assert sorted(ds.caption_ids) == expected and set(ds.image_keys) == minival & set(stems.values())
    assert ds.num_excluded_captions == len(raw["annotations"]) - len(expected)
