"""NLVR2 from the JSON-lines annotations (``train.json``, ``dev.json``, ``test1.json``)."""

import numpy as np

from ..constants import SENTENCE_IMAGE_MATCH, SENTENCE_IMAGE_RANDOM
from ..fileio import read_jsonl
from .errors import DataFormatError, text_problem, with_example_context
from .features import FileFeatureStore, open_feature_store
from .masking import check_mask_probabilities
from .text import DEFAULT_MAX_SEQ_LENGTH, TextEncoder, example_rng

NLVR2_FEATURE_DIM = 1024
NLVR2_MAX_REGIONS = 144
_LABELS = {"true": 1, "false": 0}


def read_nlvr2_jsonl(path):
    """Reads NLVR2 annotations.

    Args:
        path (str): JSON-lines file, one object per line with ``identifier`` and ``sentence``
            (``label`` "True"/"False" optional: hidden test files have none).

    Returns:
        list[dict]: the parsed lines (blank lines skipped).

    Raises:
        FileNotFoundError, DataFormatError: naming the file and the line number.
    """
    rows = read_jsonl(path, ("identifier", "sentence"), "NLVR2 annotation file")
    for row in rows:
        lineno = row["_line"]
        if "label" in row and str(row["label"]).lower() not in _LABELS:
            raise DataFormatError(f"{path}:{lineno}: label {row['label']!r} is not 'True' or 'False'")
        if len(str(row["identifier"]).split("-")) < 4:
            raise DataFormatError(f"{path}:{lineno}: identifier {row['identifier']!r} is not split-set-pair-sentence")
        problem = text_problem(row["sentence"])
        if problem:
            raise DataFormatError(f"{path}:{lineno}: the sentence of {row['identifier']} {problem}")
    labelled = ["label" in row for row in rows]
    if any(labelled) and not all(labelled):
        row = rows[labelled.index(False)]
        raise DataFormatError(f"{path}:{row['_line']}: {row['identifier']} has no label, other lines have one "
                              f"({sum(labelled)} of {len(rows)} lines are labelled)")
    return rows


def image_keys(identifier):
    """tuple[str, str]: feature keys of the left and right image of ``identifier`` (``dev-850-0-0`` ->
    ``dev-850-0-img0.png``, ``dev-850-0-img1.png``)."""
    pair = identifier.rsplit("-", 1)[0]
    return f"{pair}-img0.png", f"{pair}-img1.png"


class NLVR2Dataset:
    """NLVR2 examples: one sentence, two images.

    Text ``[CLS] sentence [SEP]`` (types 0, truncated to ``max_seq_length``); visual inputs are the
    left image's regions followed by the right image's, with visual token types 0 (left) / 1 (right).

    Sample (``task="nlvr2"``): ``input_ids``, ``token_type_ids`` int64 [T], ``visual_embeds`` float32
    (float16 from a float16 packed store) [R0 + R1, 1024] (from a packed store a read-only view of the memory map,
    copied once by the collator), ``visual_token_type_ids`` int64 [R0 + R1], ``labels`` int64 scalar (1 = True; absent
    when the file has no labels), metadata ``identifier`` str.

    Sample (``task="pretrain"``, NLVR2 task pretraining): MLM-corrupted text with ``labels`` int64 [T]
    and the truth label as ``sentence_image_labels`` int64 scalar (1 = True, through the sentence-image head).

    Args:
        annotation_file (str): NLVR2 JSON lines.
        features (str or FeatureStore): ``detectron_fix_144`` root (or a packed store).
        tokenizer: BERT tokenizer.
        max_seq_length (int): text cap (128).
        task (str): ``"nlvr2"`` or ``"pretrain"``.
        max_regions (int): regions kept per image (144).
        mask_prob (float), seed (int): MLM.
        feature_dim (int): expected width (1024).
        check_features (bool): check every image at construction.
        rows (list[dict], optional): annotation rows given in memory (:meth:`from_sentence`) instead of read from
            ``annotation_file``, which then only names their source in messages.
    """

    def __init__(self, annotation_file, features, tokenizer, max_seq_length=DEFAULT_MAX_SEQ_LENGTH, task="nlvr2",
                 max_regions=NLVR2_MAX_REGIONS, mask_prob=0.15, seed=0, feature_dim=NLVR2_FEATURE_DIM,
                 check_features=False, rows=None):
        if task not in ("nlvr2", "pretrain"):
            raise ValueError(f"task must be 'nlvr2' or 'pretrain', got {task!r}")
        self.source = annotation_file
        self.rows = list(rows) if rows is not None else read_nlvr2_jsonl(annotation_file)
        self.has_labels = all("label" in r for r in self.rows)
        if task == "pretrain" and not self.has_labels:
            raise DataFormatError(f"{annotation_file}: task pretraining needs labels, some lines have none")
        self.store = open_feature_store(features, dim=feature_dim, max_regions=max_regions)
        self.text = TextEncoder(tokenizer, max_seq_length)
        self.task = task
        check_mask_probabilities(mask_prob)
        self.mask_prob = mask_prob
        self.seed = seed
        self.epoch = 0
        if check_features:
            self.check_features()

    @classmethod
    def from_sentence(cls, sentence, left_features, right_features, tokenizer, max_seq_length=DEFAULT_MAX_SEQ_LENGTH,
                      max_regions=NLVR2_MAX_REGIONS, feature_dim=None):
        """A dataset of one sentence about a pair of images whose region features are ``left_features`` and
        ``right_features`` (``.npy`` float [R, D] each; no annotation file).

        The sentence is checked as :func:`read_nlvr2_jsonl` checks a line's and the example is made by
        :meth:`__getitem__` (the same text and region encoding, visual token types 0 / 1, and the same errors).

        Raises:
            DataFormatError: an empty or null sentence (or, when the example is read, a bad feature array).
        """
        problem = text_problem(sentence)
        if problem:
            raise DataFormatError(f"--sentence {sentence!r}: the sentence {problem}")
        row = {"identifier": "example-0-0-0", "sentence": sentence, "_line": 1}
        left, right = image_keys(row["identifier"])
        store = FileFeatureStore({left: left_features, right: right_features}, dim=feature_dim, max_regions=max_regions)
        return cls("--sentence", store, tokenizer, max_seq_length=max_seq_length, max_regions=max_regions,
                   feature_dim=feature_dim, rows=[row])

    def check_features(self):
        """Raises :class:`MissingFeaturesError` listing every image of the split without features."""
        keys = [k for r in self.rows for k in image_keys(r["identifier"])]
        self.store.check(keys, source=self.source)

    def pretokenize(self, cache_dir=None):
        """Tokenizes every sentence once, before DataLoader workers fork; see
        :meth:`visualbert.data.text.TextEncoder.pretokenize`. Examples are unchanged."""
        return self.text.pretokenize([str(r["sentence"]) for r in self.rows], cache_dir=cache_dir)

    def set_epoch(self, epoch):
        self.epoch = int(epoch)

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, index):
        row = self.rows[index]
        try:
            return self._example(index, row)
        except Exception as e:
            raise with_example_context(e, f"example {index} ({row['identifier']}, line {row['_line']}) of {self.source}") from e

    def _example(self, index, row):
        # one read-only view of both images when the packed store holds them side by side (copied once, by the collator)
        visual, (n_left, n_right) = self.store.view_concat(image_keys(row["identifier"]))
        enc = self.text.build(self.text.wordpieces(str(row["sentence"])))
        sample = {"token_type_ids": enc["token_type_ids"]}
        label = _LABELS[str(row["label"]).lower()] if "label" in row else None
        if self.task == "nlvr2":
            sample["input_ids"] = enc["input_ids"]
            if label is not None:
                sample["labels"] = np.array(label, dtype=np.int64)
        else:
            rng = example_rng(self.seed, self.epoch, index)
            sample["input_ids"], sample["labels"] = self.text.mask(enc["input_ids"], enc["special_mask"], rng, self.mask_prob)
            sample["sentence_image_labels"] = np.array(
                SENTENCE_IMAGE_MATCH if label == 1 else SENTENCE_IMAGE_RANDOM, dtype=np.int64
            )
        sample["visual_embeds"] = visual
        sample["visual_token_type_ids"] = np.concatenate([np.zeros(n_left, dtype=np.int64), np.ones(n_right, dtype=np.int64)])
        sample["identifier"] = str(row["identifier"])
        return sample
