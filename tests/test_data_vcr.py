"""VCR Q->A / QA->R with object references turned into image_text_alignment."""

import json

import numpy as np
import pytest

from visualbert.constants import ALIGNMENT_PAD
from visualbert.data import Collator, DataFormatError, VCRDataset, read_vcr_jsonl


@pytest.fixture
def vcr(tmp_path):
    row = {
        "annot_id": "val-7", "img_fn": "movie_a/clip@3.jpg", "metadata_fn": "movie_a/clip@3.json",
        "objects": ["person", "person", "dog"],
        "question": ["Why", "is", [0], "looking", "at", [2], "?"],
        "answer_choices": [["Because", [1, 0], "like", "it", "."], ["No", "."], [[2], "barks", "."], ["It", "is", "raining", "."]],
        "rationale_choices": [["The", [2], "is", "cute", "."], ["x"], ["y"], ["z"]],
        "answer_label": 2, "rationale_label": 0,
    }
    ann = tmp_path / "val.jsonl"
    ann.write_text(json.dumps(row) + "\n")
    feats = tmp_path / "features" / "movie_a"
    feats.mkdir(parents=True)
    np.save(feats / "clip@3.npy", np.arange(3 * 16, dtype=np.float32).reshape(3, 16))
    return str(ann), str(tmp_path / "features"), row


def _positions_of(tok, ids, word):
    pieces = tok.convert_tokens_to_ids(tok.tokenize(word))
    return [i for i in range(len(ids) - len(pieces) + 1) if list(ids[i: i + len(pieces)]) == pieces]


def test_q_to_a_alignment(tok, vcr):
    ann, feats, row = vcr
    s = VCRDataset(ann, feats, tok, feature_dim=16)[0]
    C, T = s["input_ids"].shape
    assert C == 4 and s["image_text_alignment"].shape[:2] == (4, 3)
    assert int(s["labels"]) == 2 and s["visual_embeds"].shape == (3, 16)
    for c in range(4):
        ids = s["input_ids"][c]
        n = int(s["attention_mask"][c].sum())
        toks = tok.convert_ids_to_tokens(ids[:n].tolist())
        assert toks[0] == "[CLS]" and toks.count("[SEP]") == 2 and toks[-1] == "[SEP]"
        align = s["image_text_alignment"][c]
        for r in range(3):
            pos = [p for p in align[r] if p != ALIGNMENT_PAD]
            assert all(toks[p] == row["objects"][r] for p in pos)  # each listed position is that box's word
        # dog (box 2) is mentioned in the question; choice 2 mentions it again
        assert len([p for p in align[2] if p >= 0]) == (2 if c == 2 else 1)
    # choice 0 refers to boxes [1, 0]: "person and person"; box 0 is also in the question
    a0 = s["image_text_alignment"][0]
    assert len([p for p in a0[0] if p >= 0]) == 2 and len([p for p in a0[1] if p >= 0]) == 1
    assert (s["token_type_ids"][0][: s["input_ids"][0].tolist().index(102) + 1] == 0).all()


def test_qa_to_r_uses_correct_answer(tok, vcr):
    ann, feats, row = vcr
    s = VCRDataset(ann, feats, tok, mode="qar", feature_dim=16)[0]
    assert int(s["labels"]) == 0
    first = tok.convert_ids_to_tokens(s["input_ids"][0].tolist())
    sep = first.index("[SEP]")
    assert _positions_of(tok, s["input_ids"][0][:sep], "barks")  # the correct answer (choice 2) is in the context
    assert not _positions_of(tok, s["input_ids"][0][:sep], "raining")
    # dog mentioned in question, answer and rationale 0
    assert len([p for p in s["image_text_alignment"][0][2] if p >= 0]) == 3


def test_box_offset_and_collate(tok, vcr):
    ann, feats, row = vcr
    ds = VCRDataset(ann, feats, tok, feature_dim=16, box_offset=0)
    b = Collator(return_tensors="np")([ds[0], ds[0]])
    assert b["input_ids"].shape[:2] == (2, 4) and b["image_text_alignment"].shape[:3] == (2, 4, 3)
    with pytest.raises(DataFormatError, match=r"beyond the 3 feature rows.*val\.jsonl"):
        VCRDataset(ann, feats, tok, feature_dim=16, box_offset=1)[0]


def test_bad_reference(tok, vcr, tmp_path):
    ann, feats, row = vcr
    row = dict(row, question=["what", [5], "?"])
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(row) + "\n")
    # found when the file is read (before training), naming the file, the line and the field
    with pytest.raises(DataFormatError, match=r"bad\.jsonl:1: question refers to object 5, outside the 3 objects"):
        VCRDataset(str(bad), feats, tok, feature_dim=16)
    bad.write_text("{}\n")
    with pytest.raises(DataFormatError, match=r"bad\.jsonl:1: lacks"):
        read_vcr_jsonl(str(bad))


def test_generated_vcr(tok, tmp_path):
    from visualbert.data.synthetic import generate

    generate(str(tmp_path), tasks=("vcr",), vcr_examples=6, vcr_dim=32)
    ds = VCRDataset(str(tmp_path / "vcr" / "train.jsonl"), str(tmp_path / "vcr" / "features"), tok, feature_dim=32,
                    check_features=True)
    s = ds[0]
    assert s["visual_embeds"].shape[1] == 32 and s["input_ids"].shape[0] == 4
