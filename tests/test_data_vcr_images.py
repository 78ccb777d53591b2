"""VCR from images (visualbert/data/vcr_images.py) against the original loader's definitions, by hand:
person names, box selection and renumbering, alignment positions, truncation, image geometry, masks, bad input."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from visualbert.constants import ALIGNMENT_PAD
from visualbert.data import Collator, DataFormatError
from visualbert.data.synthetic_vcr import make_synthetic_vcr
from visualbert.data.vcr_images import (
    COCO_OBJECT_INDEX,
    VCRImageDataset,
    fix_item,
    fix_tokenization,
    make_mask,
    resize_image,
    retokenize_with_alignment,
    select_detections,
    to_normalized_array,
    truncate_context_answer,
)
from visualbert.tokenizer import load_tokenizer


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer()


ITEM = {
    "objects": ["person", "person", "dog", "person", "car"],
    "question": ["Is", [1], "near", [0, 2], "?"],
    "answer_choices": [["Yes", ",", [3], "and", [1], "."], ["No", "."], [[2], "barks", "."], ["Everyone", "left", "."]],
    "rationale_choices": [[[1], "smiles", "."], ["x"], [[4], "honks"], ["y"]],
    "answer_label": 0, "rationale_label": 0,
}


# ------------------------------------------------------------------------------------------------ text
def test_person_names_shared_between_context_and_choices():
    q, answers = fix_item(ITEM, rationales=False)
    # Persons are named in order of first mention; several boxes in one slot give one name each, nothing between.
    assert q == ["Is", "Casey", "near", "Riley", "dog", "?"]
    # Box 1 keeps its context name. Box 3 is new: the count restarts from the context's *names* ("Casey",
    # "Riley"), not from 'person', so it is Casey again (the original's _fix_tokenization).
    assert answers[0] == ["Yes", ",", "Casey", "and", "Casey", "."]
    assert answers[2] == ["dog", "barks", "."]
    qa, rationales = fix_item(ITEM, answer_label=0, rationales=True)
    # QA->R context = question + the answer: box 3 is named in the context now, after Casey and Riley -> Jessie.
    assert qa == ["Is", "Casey", "near", "Riley", "dog", "?", "Yes", ",", "Jessie", "and", "Casey", "."]
    assert rationales[0] == ["Casey", "smiles", "."] and rationales[2] == ["car", "honks"]


def test_fifteen_names_cycle_with_peyton_twice():
    tokens, _ = fix_tokenization([[i] for i in range(17)], ["person"] * 17)
    assert tokens[6] == tokens[10] == "Peyton" and tokens[15] == "Casey" and tokens[16] == "Riley"


def test_retokenize_with_alignment(tok):
    pieces, alignment = retokenize_with_alignment(["Skyler", "isn't", "here"], tok)
    assert pieces == ["sky", "##ler", "isn", "'", "t", "here"]
    assert alignment == [0, 0, 1, 1, 1, 2]


def test_truncation_takes_everything_from_the_front_of_the_answer():
    context = (list("abcdefghij"), list(range(10)))
    answer = (list("ABCDEFGH"), list(range(8)))
    ctx, ans = truncate_context_answer(context, answer, max_seq_length=16)  # 10 + 8 + 3 = 21: 5 too many
    assert ctx == context and ans == (list("FGH"), [5, 6, 7])
    with pytest.raises(DataFormatError, match="only the answer"):
        truncate_context_answer(context, answer, max_seq_length=12)


def test_box_selection_and_renumbering():
    used, old_to_new = select_detections(ITEM, "qa", add_all_features=False)
    assert used.tolist() == [0, 1, 2, 3] and old_to_new == [1, 2, 3, 4, -1]  # "Everyone" adds every person
    used, old_to_new = select_detections(ITEM, "qa", add_all_features=True)  # + the rationales' car
    assert used.tolist() == [0, 1, 2, 3, 4] and old_to_new == [1, 2, 3, 4, 5]
    item = dict(ITEM, question=["Why", "?"], answer_choices=[["a"]] * 4, rationale_choices=[["b", [4]]] * 4)
    used, old_to_new = select_detections(item, "qa", add_all_features=True)
    assert used.tolist() == [4] and old_to_new == [-1, -1, -1, -1, 1]
    used, _ = select_detections(item, "qa", add_all_features=False)  # nothing referenced: every person
    assert used.tolist() == [0, 1, 3]
    used, old_to_new = select_detections(item, "qa", only_use_relevant_dets=False, add_image_as_a_box=False)
    assert used.tolist() == [0, 1, 2, 3, 4] and old_to_new == [0, 1, 2, 3, 4]


# ------------------------------------------------------------------------------------------------ geometry
def test_resize_pad_and_normalise_by_hand():
    image = Image.new("RGB", (160, 96), (255, 0, 0))
    canvas, window, scale, padding = resize_image(image)
    # scale = min(768 / 160, 384 / 96) = 4 -> 640 x 384, 128 columns of padding split 64 / 64.
    assert scale == 4.0 and window == [64, 0, 704, 384] and padding == (64, 0, 64, 0) and canvas.size == (768, 384)
    pixels = to_normalized_array(canvas)
    assert pixels.shape == (3, 384, 768)
    np.testing.assert_allclose(pixels[:, 10, 100], [(1 - 0.485) / 0.229, -0.456 / 0.224, -0.406 / 0.225], rtol=1e-5)
    np.testing.assert_allclose(pixels[:, 10, 10], [-0.485 / 0.229, -0.456 / 0.224, -0.406 / 0.225], rtol=1e-5)


def test_mask_from_polygon_by_hand():
    # Grid points at 0.5, 1.5, ..., 13.5 of a 14 x 14 box; the polygon covers x < 7 and y < 3.
    mask = make_mask(14, [0, 0, 14, 14, 0.9], [[[0, 0], [7, 0], [7, 3], [0, 3]]])
    expected = np.zeros((14, 14), np.float32)
    expected[:3, :7] = 1
    np.testing.assert_array_equal(mask, expected)
    two = make_mask(14, [0, 0, 28, 14, 0.9], [[[0, 0], [2, 0], [2, 14], [0, 14]], [[26, 0], [28, 0], [28, 14], [26, 14]]])
    assert two[:, 0].all() and two[:, -1].all() and two[:, 1:-1].sum() == 0  # (points at x = 1, 3, ..., 27)


# ------------------------------------------------------------------------------------------------ dataset
def _write_line(tmp_path, row, width=160, height=96, metadata=None):
    image_dir = tmp_path / "vcr1images"
    (image_dir / "m").mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (width, height), (10, 200, 30)).save(image_dir / "m" / "c@0.png")
    n = len(row["objects"])
    meta = metadata or {"boxes": [[10 + i, 20, 30 + i, 40, 0.9] for i in range(n)],
                        "segms": [[[[10 + i, 20], [30 + i, 20], [30 + i, 40]]] for i in range(n)],
                        "names": row["objects"], "width": width, "height": height}
    (image_dir / "m" / "c@0.json").write_text(json.dumps(meta))
    row = dict(row, img_fn="m/c@0.png", metadata_fn="m/c@0.json", annot_id="val-3")
    (tmp_path / "val.jsonl").write_text(json.dumps(row) + "\n")
    return str(tmp_path / "val.jsonl"), str(image_dir)


def test_example_alignment_positions_and_boxes(tok, tmp_path):
    row = dict(ITEM, question=["Skyler", "sees", [2], "?"], answer_choices=[["Yes", [0], "."], ["No"], ["Maybe"], ["Ok"]],
               rationale_choices=[["r"], ["r"], ["r"], ["r"]])
    ann, image_dir = _write_line(tmp_path, row)
    s = VCRImageDataset(ann, image_dir, tok, mode="qa")[0]
    # Used boxes: 2 (question), 0 (answer) -> renumbered 1 (box 0), 2 (box 2) after the whole image.
    assert s["objects"].tolist() == [0, COCO_OBJECT_INDEX["person"], COCO_OBJECT_INDEX["dog"]]
    # Boxes: x 4 + 64 padding, y 4: box 0 = [10, 20, 30, 40] -> [104, 80, 184, 160], box 2 -> [112, 80, 192, 160].
    np.testing.assert_allclose(s["boxes"], [[64, 0, 704, 384], [104, 80, 184, 160], [112, 80, 192, 160]])
    assert s["segms"][0].all() and s["segms"].shape == (3, 14, 14)
    tokens = tok.convert_ids_to_tokens(s["input_ids"][0][: int(s["attention_mask"][0].sum())].tolist())
    assert tokens == ["[CLS]", "sky", "##ler", "sees", "dog", "?", "[SEP]", "yes", "casey", ".", "[SEP]"]
    assert s["token_type_ids"][0].tolist()[:11] == [0] * 7 + [1] * 4
    align = s["image_text_alignment"][0]
    # The original records raw index + offset: the dog is raw token 2 of the question -> position 3 ("sees"), not
    # the WordPiece position 4; Casey is raw token 1 of the answer, offset 1 + 5 + 1 = 7 -> position 8 ("casey").
    assert [p for p in align[2] if p != ALIGNMENT_PAD] == [3]
    assert [p for p in align[1] if p != ALIGNMENT_PAD] == [8]
    assert (align[0] == ALIGNMENT_PAD).all()
    assert int(s["labels"]) == 0


def test_qar_and_test_split_four_by_four(tok, tmp_path):
    ann, image_dir = _write_line(tmp_path, {k: v for k, v in ITEM.items() if not k.endswith("_label")})
    ds = VCRImageDataset(ann, image_dir, tok, mode="qar", expand_answers=True)
    assert len(ds) == 4
    for k in range(4):
        s = ds[k]
        assert s["conditioned_answer"] == k and "labels" not in s and s["input_ids"].shape[0] == 4
        tokens = tok.convert_ids_to_tokens(s["input_ids"][0].tolist())
        context = tokens[1: tokens.index("[SEP]")]
        answer = [t for w in fix_item(ITEM, answer_label=k)[0][6:] for t in tok.tokenize(w)]
        assert context[-len(answer):] == answer  # the context ends with answer k
    with pytest.raises(DataFormatError, match="answer_label"):
        VCRImageDataset(ann, image_dir, tok, mode="qar")[0]


def test_complete_shuffle_slots(tok, tmp_path):
    paths = make_synthetic_vcr(str(tmp_path / "syn"), lines_per_split=(3, 1, 1))
    original = VCRImageDataset(paths["train"], paths["image_dir"], tok, complete_shuffle=True, include_qa_and_qar=True)
    assert len(original) == 24
    texts = lambda ds, i: tuple(ds[i]["input_ids"].tolist())  # noqa: E731
    # index //= 8; which = index % 8: all 8 copies of line 1 use its text 1 % 8 = 1.
    assert len({texts(original, i) for i in range(8, 16)}) == 1
    uniform = VCRImageDataset(paths["train"], paths["image_dir"], tok, complete_shuffle=True, include_qa_and_qar=True,
                              original_shuffle_slot=False)
    assert texts(uniform, 9) == texts(original, 8)
    assert len({texts(uniform, i) for i in range(8, 16)}) > 1
    pretraining = VCRImageDataset(paths["train"], paths["image_dir"], tok, complete_shuffle=True,
                                  include_qa_and_qar=True, original_shuffle_slot=False, pretraining=True)
    s = pretraining[12]  # text 4: the first QA->R text; its label is rationale_label == 0
    with open(paths["train"]) as f:
        row = json.loads(f.readlines()[1])
    assert int(s["sentence_image_labels"]) == int(row["rationale_label"] == 0)
    plain = uniform[12]["input_ids"]
    targets = s["labels"] != -100
    assert s["labels"].shape == plain.shape and (s["labels"][targets] == plain[targets]).all()
    assert not targets[plain == tok.convert_tokens_to_ids("[CLS]")].any()
    assert (s["input_ids"][~targets] == plain[~targets]).all()


def test_collate_pads_boxes_with_minus_one(tok, tmp_path):
    paths = make_synthetic_vcr(str(tmp_path / "syn"), lines_per_split=(4, 1, 1))
    ds = VCRImageDataset(paths["train"], paths["image_dir"], tok, mode="qa")
    samples = [ds[i] for i in range(4)]
    batch = Collator(return_tensors="np")(samples)
    counts = [len(s["boxes"]) for s in samples]
    assert batch["boxes"].shape == (4, max(counts), 4) and batch["images"].shape == (4, 3, 384, 768)
    assert batch["box_mask"].sum(1).tolist() == counts
    assert (batch["box_mask"] == (batch["boxes"] >= 0).all(-1)).all()
    assert batch["image_text_alignment"].shape[:3] == (4, 4, max(counts))


@pytest.mark.parametrize("defect,message", [
    ("missing_image", "does not exist"),
    ("box_outside", "boxes[1]"),
    ("object_index", "refers to object 7"),
    ("not_a_polygon", "segms[1][0] is not a polygon"),
])
def test_bad_input_names_file_and_example(tok, tmp_path, defect, message):
    row = dict(ITEM)
    n = len(row["objects"])
    meta = {"boxes": [[10, 20, 30, 40, 0.9] for _ in range(n)], "segms": [[[[10, 20], [30, 20], [30, 40]]]] * n,
            "names": row["objects"], "width": 160, "height": 96}
    if defect == "box_outside":
        meta["boxes"][1] = [170, 20, 190, 40, 0.9]
    if defect == "object_index":
        row["question"] = ["Is", [7], "?"]
    if defect == "not_a_polygon":
        meta["segms"][1] = [[[10, 20], [30, 20]]]
    ann, image_dir = _write_line(tmp_path, row, metadata=meta)
    if defect == "missing_image":
        os.remove(os.path.join(image_dir, "m", "c@0.png"))
    with pytest.raises((DataFormatError, FileNotFoundError)) as info:
        VCRImageDataset(ann, image_dir, tok, mode="qa")[0]
    text = str(info.value)
    assert message in text and "example 0" in text and "val.jsonl" in text and "val-3" in text, text
    if defect in ("box_outside", "not_a_polygon"):
        assert "c@0.json" in text


def test_answer_labels_condition_qar(tok, tmp_path):
    # The original's answer_labels_path: QA->R on the answers a Q->A model chose instead of answer_label.
    ann, image_dir = _write_line(tmp_path, ITEM)
    chosen = VCRImageDataset(ann, image_dir, tok, mode="qar", answer_labels=np.array([2]))[0]
    expanded = VCRImageDataset(ann, image_dir, tok, mode="qar", expand_answers=True)[2]
    np.testing.assert_array_equal(chosen["input_ids"], expanded["input_ids"])
    np.testing.assert_array_equal(chosen["image_text_alignment"], expanded["image_text_alignment"])
    assert int(chosen["labels"]) == ITEM["rationale_label"]
