"""VCR (Q->A and QA->R) from the VCR JSON lines, with precomputed per-box features."""

import os

import numpy as np

from ..constants import ALIGNMENT_PAD
from ..fileio import read_jsonl
from .errors import DataFormatError, text_problem, with_example_context
from .features import open_feature_store
from .text import DEFAULT_MAX_SEQ_LENGTH, TextEncoder

VCR_FEATURE_DIM = 512
NUM_CHOICES = 4


def read_vcr_jsonl(path):
    """Reads VCR annotations (one JSON object per line with ``question``, ``answer_choices``,
    ``rationale_choices``, ``objects``, ``img_fn`` and, except on test, ``answer_label``/``rationale_label``).

    Raises:
        FileNotFoundError, DataFormatError: naming the file and line.
    """
    rows = read_jsonl(path, ("question", "answer_choices", "rationale_choices", "objects", "img_fn"),
                      "VCR annotation file")
    for row in rows:
        texts = [("question", row["question"])]
        for key in ("answer_choices", "rationale_choices"):
            if not isinstance(row[key], list):
                raise DataFormatError(f"{path}:{row['_line']}: {key} is a {type(row[key]).__name__}, expected a list")
            texts += [(f"{key}[{i}]", c) for i, c in enumerate(row[key])]
        for what, tokens in texts:
            problem = _tokens_problem(tokens, row["objects"])
            if problem:
                raise DataFormatError(f"{path}:{row['_line']}: {what} {problem}")
    return rows


def _tokens_problem(tokens, objects):
    """Why a VCR token list (words and lists of object indices) is unusable, or None."""
    if not isinstance(tokens, list) or not tokens:
        return "is empty" if isinstance(tokens, list) else f"is a {type(tokens).__name__}, expected a token list"
    words = []
    for tok in tokens:
        if isinstance(tok, list):
            for box in tok:
                if isinstance(box, bool) or not isinstance(box, int) or not 0 <= box < len(objects):
                    return f"refers to object {box!r}, outside the {len(objects)} objects of the image"
            words.append("object")
        elif tok is None:
            return "has a null token"
        else:
            words.append(str(tok))
    return text_problem(" ".join(words))


def pack_choices(encoded, num_regions, pad_id):
    """The C texts of one VCR example as arrays (the collator pads them across examples).

    Args:
        encoded (list[tuple]): per choice ``(ids, token_type_ids, mentions)``, ``mentions[r]`` the text positions
            that refer to region ``r`` (``num_regions`` lists).
        num_regions (int): R.
        pad_id (int): the text padding id.

    Returns:
        tuple: ``input_ids``, ``token_type_ids``, ``attention_mask`` int64 [C, T] (0 / pad on padding) and
        ``image_text_alignment`` int64 [C, R, A] (``ALIGNMENT_PAD`` on padding).
    """
    T = max(len(ids) for ids, _, _ in encoded)
    A = max([1] + [len(m) for _, _, ms in encoded for m in ms])
    C = len(encoded)
    input_ids = np.full((C, T), pad_id, dtype=np.int64)
    token_type_ids = np.zeros((C, T), dtype=np.int64)
    attention_mask = np.zeros((C, T), dtype=np.int64)
    alignment = np.full((C, num_regions, A), ALIGNMENT_PAD, dtype=np.int64)
    for c, (ids, types, mentions) in enumerate(encoded):
        input_ids[c, : len(ids)] = ids
        token_type_ids[c, : len(ids)] = types
        attention_mask[c, : len(ids)] = 1
        for r, positions in enumerate(mentions):
            alignment[c, r, : len(positions)] = positions
    return input_ids, token_type_ids, attention_mask, alignment


def vcr_image_key(img_fn):
    """str: feature key of a VCR image: ``img_fn`` without its extension (``movie/clip@0.jpg`` -> ``movie/clip@0``)."""
    return os.path.splitext(img_fn)[0]


class VCRDataset:
    """VCR multiple choice (4 choices) in the Q->A or QA->R mode.

    Q->A: ``[CLS] question [SEP] answer_i [SEP]``; QA->R: ``[CLS] question answer* [SEP] rationale_i [SEP]``
    (answer* = the correct answer); types 0 / 1. Object references (lists of box indices inside the token
    lists) are written as the boxes' class names (``"person and dog"``); every wordpiece of box k's name adds
    its text position to row ``k + box_offset`` of ``image_text_alignment`` (padding -1).

    Sample: ``input_ids``, ``token_type_ids``, ``attention_mask`` int64 [C, T] (choices padded to the
    longest), ``image_text_alignment`` int64 [C, R, A], ``visual_embeds`` float32 [R, 512] shared by the
    choices, ``visual_token_type_ids`` int64 [R] (zeros), ``labels`` int64 scalar (absent on test),
    metadata ``annot_id``.

    Args:
        annotation_file (str): ``{train,val,test}.jsonl``.
        features (str or FeatureStore): per-image arrays keyed by :func:`vcr_image_key`, one row per box
            (after ``box_offset`` leading rows, e.g. 1 when row 0 is the whole image).
        tokenizer: BERT tokenizer.
        mode (str): ``"qa"`` (Q->A) or ``"qar"`` (QA->R).
        max_seq_length (int): text cap per choice (longest-first truncation; alignment entries of dropped
            words are dropped too).
        box_offset (int): feature row of box 0.
        feature_dim (int): expected width (512).
    """

    def __init__(self, annotation_file, features, tokenizer, mode="qa", max_seq_length=DEFAULT_MAX_SEQ_LENGTH,
                 box_offset=0, feature_dim=VCR_FEATURE_DIM, check_features=False):
        if mode not in ("qa", "qar"):
            raise ValueError(f"mode must be 'qa' or 'qar', got {mode!r}")
        self.source = annotation_file
        self.rows = read_vcr_jsonl(annotation_file)
        self.store = open_feature_store(features, dim=feature_dim)
        self.text = TextEncoder(tokenizer, max_seq_length)
        self.mode = mode
        self.box_offset = int(box_offset)
        if check_features:
            self.check_features()

    def check_features(self):
        self.store.check([vcr_image_key(r["img_fn"]) for r in self.rows], source=self.source)

    def set_epoch(self, epoch):
        pass

    def __len__(self):
        return len(self.rows)

    def _pieces(self, tokens, objects):
        """list[tuple[int, int]]: (wordpiece id, box index or -1) of a VCR token list."""
        out = []
        for tok in tokens:
            if isinstance(tok, list):
                for n, box in enumerate(tok):
                    if not isinstance(box, int) or not 0 <= box < len(objects):
                        raise DataFormatError(f"object reference {tok} is outside the {len(objects)} objects")
                    if n:
                        out += [(i, -1) for i in self.text.wordpieces("and")]
                    out += [(i, box) for i in self.text.wordpieces(str(objects[box]))]
            else:
                out += [(i, -1) for i in self.text.wordpieces(str(tok))]
        return out

    def _choice(self, a, b, num_regions):
        a, b = self.text._truncate(a, b, self.text.max_seq_length - 3)
        pieces = [(self.text.cls_id, -1)] + a + [(self.text.sep_id, -1)] + b + [(self.text.sep_id, -1)]
        ids = np.array([p[0] for p in pieces], dtype=np.int64)
        types = np.array([0] * (len(a) + 2) + [1] * (len(b) + 1), dtype=np.int64)
        mentions = [[] for _ in range(num_regions)]
        for pos, (_, box) in enumerate(pieces):
            if box >= 0:
                region = box + self.box_offset
                if region >= num_regions:
                    raise DataFormatError(
                        f"box {box} (feature row {region}) is beyond the {num_regions} feature rows of the image"
                    )
                mentions[region].append(pos)
        return ids, types, mentions

    def __getitem__(self, index):
        row = self.rows[index]
        try:
            return self._example(row)
        except Exception as e:
            raise with_example_context(e, f"example {index} (line {row['_line']}) of {self.source}") from e

    def _example(self, row):
        visual = self.store[vcr_image_key(row["img_fn"])]
        objects = row["objects"]
        question = self._pieces(row["question"], objects)
        if self.mode == "qa":
            choices, label_key = row["answer_choices"], "answer_label"
        else:
            if "answer_label" not in row:
                raise DataFormatError("QA->R needs 'answer_label' to build the question + answer context")
            question = question + self._pieces(row["answer_choices"][row["answer_label"]], objects)
            choices, label_key = row["rationale_choices"], "rationale_label"
        if len(choices) != NUM_CHOICES:
            raise DataFormatError(f"expected {NUM_CHOICES} choices, got {len(choices)}")
        R = visual.shape[0]
        built = [self._choice(question, self._pieces(c, objects), R) for c in choices]
        input_ids, token_type_ids, attention_mask, alignment = pack_choices(built, R, self.text.pad_id)
        sample = {
            "input_ids": input_ids,
            "token_type_ids": token_type_ids,
            "attention_mask": attention_mask,
            "image_text_alignment": alignment,
            "visual_embeds": visual,
            "visual_token_type_ids": np.zeros(R, dtype=np.int64),
            "annot_id": str(row.get("annot_id", row["_line"])),
        }
        if label_key in row:
            sample["labels"] = np.array(int(row[label_key]), dtype=np.int64)
        return sample
