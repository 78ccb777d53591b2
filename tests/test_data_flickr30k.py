"""Flickr30K Entities readers, BAN hdf5 proposals, IoU targets and the grounding dataset, on hand-written files."""

import pickle
import re

import numpy as np
import pytest

from visualbert.data import Collator, DataFormatError, MissingFeaturesError
from visualbert.data.flickr30k import Flickr30KDataset, box_iou, phrase_targets, positive_proposals
from visualbert.data.flickr30k_entities import (
    load_grounded_captions,
    parse_caption,
    read_annotation,
    read_captions,
    read_split_ids,
)
from visualbert.data.regions import Hdf5RegionStore, open_region_store, read_imgid2idx, spatial_features


def original_remove_annotations(line):
    """The original's caption text (flickr_ban/utils.py:remove_annotations), the reference for ours."""
    return re.sub(r"\[[^ ]+ ", "", line).replace("]", "")


LINES = [
    "[/EN#18/people A man] in [/EN#19/clothing a blue shirt] plays [/EN#20/instruments a guitar] .",
    "[/EN#7/people/other A little girl] climbs [/EN#0/notvisual it] quickly .",
    "[/EN#3/other A `` Stop '' sign] is held by [/EN#4/people Mr. T-Bone]",
]


def test_parse_several_phrases_with_spans_and_word_indices():
    caption = parse_caption(LINES[0], "s.txt", 1)
    assert caption.text == "A man in a blue shirt plays a guitar ."
    assert [p.text for p in caption.phrases] == ["A man", "a blue shirt", "a guitar"]
    assert [p.chain_id for p in caption.phrases] == [18, 19, 20]
    assert [p.types for p in caption.phrases] == [("people",), ("clothing",), ("instruments",)]
    for p in caption.phrases:
        assert caption.text[p.start:p.end] == p.text
    assert [(p.first_word, p.last_word) for p in caption.phrases] == [(0, 1), (3, 5), (7, 8)]


def test_parse_nested_types_chain_zero_punctuation_and_phrase_at_line_end():
    girl = parse_caption(LINES[1])
    assert girl.phrases[0].types == ("people", "other")
    assert girl.phrases[1].chain_id == 0 and girl.phrases[1].types == ("notvisual",)
    sign = parse_caption(LINES[2])
    assert [p.text for p in sign.phrases] == ["A `` Stop '' sign", "Mr. T-Bone"]
    last = sign.phrases[1]
    assert last.end == len(sign.text) and sign.text.split(" ")[last.last_word] == "T-Bone"
    for line in LINES:
        assert parse_caption(line).text == original_remove_annotations(line)


@pytest.mark.parametrize("line, what", [
    ("A man plays a guitar .", "caption without phrase markup"),
    ("[/EN#1/people A man plays a guitar .", "malformed phrase markup"),
    ("[EN#1 A man] plays .", "malformed phrase markup"),
])
def test_bad_caption_names_file_and_line(tmp_path, line, what):
    path = tmp_path / "1.txt"
    path.write_text(LINES[0] + "\n" + line + "\n")
    with pytest.raises(DataFormatError, match=rf"{re.escape(str(path))}:2: {what}"):
        read_captions(str(path))


XML = """<annotation>
  <filename>1.jpg</filename>
  <size><width>500</width><height>375</height><depth>3</depth></size>
  <object>
    <name>18</name>
    <name>21</name>
    <bndbox><xmin>10</xmin><ymin>20</ymin><xmax>110</xmax><ymax>220</ymax></bndbox>
  </object>
  <object>
    <name>18</name>
    <bndbox><xmin>200</xmin><ymin>20</ymin><xmax>260</xmax><ymax>120</ymax></bndbox>
  </object>
  <object>
    <name>22</name>
    <nobndbox>0</nobndbox>
    <scene>1</scene>
  </object>
  <object>
    <name>23</name>
    <nobndbox>1</nobndbox>
    <scene>0</scene>
  </object>
</annotation>
"""


def test_xml_several_names_scene_and_nobndbox(tmp_path):
    path = tmp_path / "1.xml"
    path.write_text(XML)
    ann = read_annotation(str(path))
    assert (ann.width, ann.height) == (500, 375)
    assert ann.boxes == {18: [[10, 20, 110, 220], [200, 20, 260, 120]], 21: [[10, 20, 110, 220]]}
    assert ann.scene == {22} and ann.nobox == {23}


def test_malformed_xml_names_file_and_line(tmp_path):
    path = tmp_path / "2.xml"
    path.write_text(XML.replace("</xmax><ymax>120", "</xmx><ymax>120"))
    with pytest.raises(DataFormatError, match=rf"{re.escape(str(path))}:11: malformed XML"):
        read_annotation(str(path))


def test_object_without_box_or_flag_names_its_line(tmp_path):
    path = tmp_path / "3.xml"
    path.write_text(XML.replace("<nobndbox>1</nobndbox>", "<nobndbox>0</nobndbox>"))
    with pytest.raises(DataFormatError, match=rf"{re.escape(str(path))}:18: <object> for chain\(s\) \[23\]"):
        read_annotation(str(path))


def _write_entities(root, captions_by_image, xml_by_image, splits):
    (root / "Sentences").mkdir(parents=True, exist_ok=True)
    (root / "Annotations").mkdir(exist_ok=True)
    for image_id, lines in captions_by_image.items():
        (root / "Sentences" / f"{image_id}.txt").write_text("\n".join(lines) + "\n")
        (root / "Annotations" / f"{image_id}.xml").write_text(xml_by_image[image_id])
    for split, ids in splits.items():
        (root / f"{split}.txt").write_text("\n".join(ids) + "\n")


def test_grounding_keeps_chain_boxes_and_counts_dropped_phrases(tmp_path):
    lines = ["[/EN#18/people A man] walks in [/EN#22/scene the park] with [/EN#23/people a friend] .",
             "[/EN#0/notvisual Today] [/EN#22/scene the park] is empty .",
             "[/EN#21/people The man] waves ."]
    _write_entities(tmp_path, {"1": lines}, {"1": XML}, {"val": ["1"]})
    captions, annotations, counts = load_grounded_captions(str(tmp_path), ["1"])
    assert [c.line for c in captions] == [1, 3]  # line 2 has no phrase with a box
    assert [p.text for p in captions[0].phrases] == ["A man"]
    assert captions[0].phrases[0].boxes == [[10, 20, 110, 220], [200, 20, 260, 120]]
    assert counts["phrases"] == 6 and counts["grounded_phrases"] == 2
    assert counts["no_box"] == 3 and counts["not_visual"] == 1 and counts["captions_without_boxes"] == 1


def test_chain_without_any_annotation_names_sentence_line(tmp_path):
    _write_entities(tmp_path, {"1": ["[/EN#18/people A man] waves .", "[/EN#99/people A man] ."]}, {"1": XML},
                    {"val": ["1"]})
    sentence = tmp_path / "Sentences" / "1.txt"
    with pytest.raises(DataFormatError, match=rf"{re.escape(str(sentence))}:2: phrase 'A man' has chain 99"):
        load_grounded_captions(str(tmp_path), ["1"])
    _, _, counts = load_grounded_captions(str(tmp_path), ["1"], allow_unannotated_chains=True)
    assert counts["unannotated"] == 1


def test_split_list(tmp_path):
    path = tmp_path / "val.txt"
    path.write_text("1000092795\n\n10002456\n")
    assert read_split_ids(str(path)) == ["1000092795", "10002456"]
    path.write_text("1000092795\n1000092795.jpg\n")
    with pytest.raises(DataFormatError, match=rf"{re.escape(str(path))}:2:"):
        read_split_ids(str(path))


# ------------------------------------------------------------------------------------------- IoU / targets


def test_iou_hand_computed():
    a = [[0, 0, 10, 10]]
    b = [[0, 0, 10, 10], [10, 0, 20, 10], [5, 0, 15, 10], [0, 0, 10, 20], [20, 20, 30, 30]]
    np.testing.assert_allclose(box_iou(a, b), [[1.0, 0.0, 1 / 3, 0.5, 0.0]])


def test_targets_union_box_is_not_a_positive_and_empty_row():
    gt = [[0, 0, 10, 10], [20, 0, 30, 10]]  # one chain, two boxes
    proposals = np.array([[0, 0, 30, 10],   # the union box: IoU 1/3 with each box
                          [0, 0, 10, 10],   # one of the boxes
                          [20, 0, 30, 10],  # the other
                          [0, 0, 10, 20],   # IoU exactly 0.5 with the first: positive (>=)
                          [10, 0, 20, 10]], dtype=np.float32)  # touches both: IoU 0
    assert positive_proposals(gt, proposals).tolist() == [False, True, True, True, False]
    targets = phrase_targets([gt, [[100, 100, 120, 120]]], proposals)
    np.testing.assert_allclose(targets, [[0, 1 / 3, 1 / 3, 1 / 3, 0], [0, 0, 0, 0, 0]])
    assert targets.dtype == np.float32


# ------------------------------------------------------------------------------------------- hdf5 proposals


def _write_ban(path, per_image, ids):
    import h5py

    feats = np.concatenate([f for f, _ in per_image]).astype(np.float32)
    boxes = np.concatenate([b for _, b in per_image]).astype(np.float32)
    counts = [len(b) for _, b in per_image]
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    with h5py.File(path, "w") as h:
        h["image_features"] = feats
        h["image_bb"] = boxes
        h["spatial_features"] = np.concatenate([spatial_features(b, 500, 375) for _, b in per_image])
        h["pos_boxes"] = np.stack([starts, starts + counts], 1).astype(np.int32)
    with open(str(path).replace(".hdf5", "_imgid2idx.pkl"), "wb") as f:
        pickle.dump({int(i): n for n, i in enumerate(ids)}, f)


def test_hdf5_reader_pos_boxes_ranges(tmp_path):
    rng = np.random.default_rng(0)
    per_image = [(rng.standard_normal((n, 8)), rng.uniform(0, 300, (n, 4))) for n in (3, 5, 2)]
    h5 = tmp_path / "val.hdf5"
    _write_ban(h5, per_image, ["7", "8", "9"])
    store = open_region_store(str(tmp_path), split="val")
    assert isinstance(store, Hdf5RegionStore) and store.dim == 8 and store.keys() == ["7", "8", "9"]
    for image_id, (features, boxes) in zip(["7", "8", "9"], per_image):
        r = store[image_id]
        np.testing.assert_allclose(r.features, features, rtol=1e-6)
        np.testing.assert_allclose(r.boxes, boxes, rtol=1e-6)
        assert r.spatial.shape == (len(boxes), 6)
    with pytest.raises(MissingFeaturesError, match=r"image 10.*val_imgid2idx.pkl"):
        store["10"]
    assert pickle.loads(pickle.dumps(store))["9"].features.shape == (2, 8)


def test_hdf5_reader_rejects_bad_ranges_and_code_in_the_index(tmp_path):
    import h5py

    rng = np.random.default_rng(1)
    h5 = tmp_path / "val.hdf5"
    _write_ban(h5, [(rng.standard_normal((3, 4)), rng.uniform(0, 9, (3, 4)))], ["7"])
    with h5py.File(h5, "a") as h:
        h["pos_boxes"][0] = [1, 9]
    with pytest.raises(DataFormatError, match=r"pos_boxes\[0\] of image 7 is \[1, 9\)"):
        Hdf5RegionStore(str(h5))
    index = tmp_path / "val_imgid2idx.pkl"
    with open(index, "wb") as f:
        pickle.dump({7: print}, f)
    with pytest.raises(DataFormatError, match="val_imgid2idx.pkl: not a BAN image index"):
        read_imgid2idx(str(index))


def test_spatial_features_are_bans_six_values():
    np.testing.assert_allclose(spatial_features([[50, 30, 150, 330]], 200, 600),
                               [[0.25, 0.05, 0.75, 0.55, 0.5, 0.5]], rtol=1e-6)


# ------------------------------------------------------------------------------------------- dataset


@pytest.fixture(scope="module")
def tok():
    from visualbert.tokenizer import load_tokenizer

    return load_tokenizer()


@pytest.fixture
def tiny_flickr(tmp_path):
    lines = ["[/EN#18/people A skateboarder] in [/EN#21/people/other a T-shirt] [/EN#22/scene outside] .",
             "[/EN#21/people The skateboarder] jumps ."]
    _write_entities(tmp_path, {"1": lines}, {"1": XML}, {"val": ["1"], "test": ["1", "2"]})
    proposals = np.array([[10, 20, 110, 220], [0, 0, 500, 375], [205, 25, 260, 120], [11, 21, 100, 200]], np.float32)
    _write_ban(tmp_path / "val.hdf5", [(np.eye(4, 8), proposals)], ["1"])
    _write_ban(tmp_path / "test.hdf5", [(np.eye(4, 8), proposals)], ["1"])
    return tmp_path, proposals


def test_dataset_positions_targets_and_spatial_width(tiny_flickr, tok):
    root, proposals = tiny_flickr
    ds = Flickr30KDataset(str(root), "val", str(root), tok)
    assert len(ds) == 2 and ds.counts["no_box"] == 1
    s = ds[0]
    tokens = tok.convert_ids_to_tokens(s["input_ids"].tolist())
    assert tokens[0] == "[CLS]" and tokens[-1] == "[SEP]"
    # the last wordpiece of each phrase: "skateboarder" -> skate ##board ##er, "T-shirt" -> t - shirt
    assert [tokens[i] for i in s["region_to_phrase_position"]] == ["##er", "shirt"]
    assert s["visual_embeds"].shape == (4, 8 + 6)
    ious = box_iou([[10, 20, 110, 220], [200, 20, 260, 120]], proposals)
    chain18 = (ious >= 0.5).any(0)
    chain21 = ious[0] >= 0.5
    np.testing.assert_allclose(s["labels"], np.stack([chain18 / chain18.sum(), chain21 / chain21.sum()]))
    assert chain18.tolist() == [True, False, True, True]
    batch = Collator(return_tensors="np")([ds[0], ds[1]])
    assert batch["region_to_phrase_position"].tolist()[1][1] == -1
    assert batch["labels"].shape == (2, 2, 4) and not batch["labels"][1, 1].any()


def test_dataset_image_missing_from_hdf5_index_names_split_line(tiny_flickr, tok):
    root, _ = tiny_flickr
    with pytest.raises(MissingFeaturesError, match=rf"{re.escape(str(root / 'test.txt'))}:2: image 2 .*test_imgid2idx"):
        Flickr30KDataset(str(root), "test", str(root), tok)


def test_dataset_mlm_task_pretraining_masks_caption_tokens_only(tiny_flickr, tok):
    from visualbert.constants import IGNORE_INDEX

    root, _ = tiny_flickr
    ds = Flickr30KDataset(str(root), "val", str(root), tok, task="mlm", mask_prob=0.5, seed=3)
    clean = Flickr30KDataset(str(root), "val", str(root), tok)[0]["input_ids"]
    s = ds[0]
    targets = s["labels"] != IGNORE_INDEX
    assert "region_to_phrase_position" not in s and targets.any()
    assert not targets[0] and not targets[-1]  # never [CLS] / [SEP]
    np.testing.assert_array_equal(s["labels"][targets], clean[targets])
    ds.set_epoch(1)
    assert not np.array_equal(ds[0]["labels"], s["labels"]) or not np.array_equal(ds[0]["input_ids"], s["input_ids"])
    batch = Collator(return_tensors="np")([ds[0], ds[1]])
    assert batch["labels"].shape == (2, batch["input_ids"].shape[1] + 4)
