"""COCO captions for pretraining (masked LM + sentence-image matching)."""

import contextlib
import io
import os
import re

import numpy as np

from ..constants import SENTENCE_IMAGE_MATCH, SENTENCE_IMAGE_RANDOM
from .errors import DataFormatError, text_problem, with_example_context
from .features import open_feature_store
from .masking import check_mask_probabilities
from .text import DEFAULT_MAX_SEQ_LENGTH, TextEncoder, example_rng

_SET_RE = re.compile(r"captions_([a-z]+\d{4})\.json$")


def coco_image_key(image_id, image_set="train2014", file_name=None):
    """str: feature key of a COCO image (the file-name stem, ``COCO_train2014_000000000009``)."""
    if file_name:
        return os.path.splitext(os.path.basename(file_name))[0]
    return f"COCO_{image_set}_{int(image_id):012d}"


def load_coco_captions(annotation_file):
    """Loads a COCO captions file with pycocotools.

    Returns:
        pycocotools.coco.COCO

    Raises:
        FileNotFoundError, DataFormatError: naming the file.
    """
    from pycocotools.coco import COCO

    if not os.path.isfile(annotation_file):
        raise FileNotFoundError(f"COCO captions file {annotation_file} does not exist")
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            coco = COCO(annotation_file)
    except Exception as e:  # json errors, missing 'annotations' / 'images'
        raise DataFormatError(
            f"{annotation_file}: not a COCO captions file (expected JSON with 'images' and 'annotations' "
            f"having id, image_id, caption): {e!r}"
        ) from e
    for ann in coco.dataset.get("annotations", []):
        for key in ("id", "image_id", "caption"):
            if key not in ann:
                raise DataFormatError(f"{annotation_file}: annotation {ann.get('id')} lacks {key!r}")
        problem = text_problem(ann["caption"])
        if problem:
            raise DataFormatError(f"{annotation_file}: the caption of annotation {ann['id']} (image {ann['image_id']}) "
                                  f"{problem}")
    return coco


def normalize_image_keys(image_ids):
    """set[str]: feature keys (``COCO_<set>_<id:012d>``) of ``image_ids``.

    Args:
        image_ids: iterable of feature keys / image file names (``COCO_val2014_000000000042[.jpg|.npy]``) or
            ``(image set, COCO id)`` pairs such as ``("val2014", 42)``.
    """
    keys = set()
    for item in image_ids or ():
        if isinstance(item, (tuple, list)) and len(item) == 2:
            keys.add(coco_image_key(item[1], str(item[0])))
        elif isinstance(item, str):
            keys.add(coco_image_key(None, file_name=item))
        else:
            raise ValueError(f"excluded image {item!r}: expected a feature key 'COCO_<set>_<id>' or (set, id)")
    return keys


class CocoCaptionsPretrainDataset:
    """Caption pairs for VisualBERT pretraining, redrawn every epoch.

    Example ``i`` is caption A = the i-th annotation. Each epoch (:meth:`set_epoch`), with probability
    ``same_image_prob`` caption B is another caption of the same image (``sentence_image_labels`` = 1),
    else a caption of a random other image (0). A caption is never paired with itself: when its image has no
    other caption, the draw falls back to a random other image's caption (label 0). Text ``[CLS] A [SEP] B [SEP]`` with types 0/1, longest-first
    truncation to ``max_seq_length``; MLM 15% (80/10/10) over wordpieces only. Visual: the image of A, types 0.

    Several annotation files (e.g. ``captions_train2014.json`` + ``captions_val2014.json``, the original
    ``expand_coco``) are concatenated in the given order. Images are identified by their feature key (the file-name
    stem ``COCO_<set>_<id:012d>``), so equal numeric ids in different files never merge; caption ids are only
    metadata. Images in ``exclude_image_ids`` (e.g. those of VQA minival, the original ``exclude_minival``) are
    dropped with all their captions, so they are never caption A nor caption B. ``only_image_ids`` keeps the
    captions of those images only: the original's validation set under ``expand_coco`` (the val2014 captions of the
    VQA minival images, the ones excluded from training).

    Sample: ``input_ids``, ``token_type_ids``, ``labels`` int64 [T]; ``visual_embeds`` float32 [R, D];
    ``visual_token_type_ids`` int64 [R]; ``sentence_image_labels`` int64 scalar; metadata ``image_id``,
    ``caption_id`` (the COCO ids; the feature key of example ``i`` is ``image_keys[image_index[i]]``).

    Args:
        annotation_file (str or list[str]): ``captions_{train,val}2014.json`` (one or several).
        features (str or FeatureStore): features keyed by the image file-name stem.
        tokenizer: BERT tokenizer.
        image_set (str, optional): COCO set for keys when images lack ``file_name`` (default: from each file name).
        exclude_image_ids (iterable, optional): images to drop, as feature keys / file names or ``(set, id)``
            pairs (see :func:`normalize_image_keys`).
        only_image_ids (iterable, optional): if given, the images to keep (same forms); every other is dropped.
        max_seq_length (int), mask_prob (float), same_image_prob (float), seed (int), feature_dim (int, optional),
        max_regions (int, optional), check_features (bool).
    """

    def __init__(self, annotation_file, features, tokenizer, image_set=None, max_seq_length=DEFAULT_MAX_SEQ_LENGTH,
                 mask_prob=0.15, same_image_prob=0.5, seed=0, feature_dim=None, max_regions=None, check_features=False,
                 exclude_image_ids=None, only_image_ids=None):
        files = [annotation_file] if isinstance(annotation_file, (str, os.PathLike)) else list(annotation_file)
        if not files:
            raise ValueError("CocoCaptionsPretrainDataset: no annotation file given")
        files = [os.fspath(f) for f in files]
        self.source = " + ".join(files)
        excluded = normalize_image_keys(exclude_image_ids)
        self.excluded_keys = excluded
        kept = None if only_image_ids is None else normalize_image_keys(only_image_ids)
        self.captions, self.caption_ids, raw_ids, ann_keys = [], [], [], []
        self.num_excluded_captions = 0
        for path in files:
            coco = load_coco_captions(path)
            m = _SET_RE.search(os.path.basename(path))
            file_set = image_set or (m.group(1) if m else "train2014")
            anns = sorted(coco.dataset.get("annotations", []), key=lambda a: a["id"])
            if not anns:
                raise DataFormatError(f"{path}: empty split (no caption annotations)")
            images = {img["id"]: img for img in coco.dataset.get("images", [])}
            keys = {}
            for a in anns:
                iid = int(a["image_id"])
                if iid not in keys:
                    keys[iid] = coco_image_key(iid, file_set, images.get(iid, {}).get("file_name"))
                if keys[iid] in excluded or (kept is not None and keys[iid] not in kept):
                    self.num_excluded_captions += 1
                    continue
                self.captions.append(str(a["caption"]))
                self.caption_ids.append(int(a["id"]))
                raw_ids.append(iid)
                ann_keys.append(keys[iid])
        if not self.captions:
            raise DataFormatError(f"{self.source}: empty split (every caption's image is excluded)")
        self.image_ids = np.array(raw_ids, dtype=np.int64)  # COCO ids (metadata)
        # internal image index per caption: one per feature key, so ids of different files cannot collide
        key_index = {}
        self.image_index = np.array([key_index.setdefault(k, len(key_index)) for k in ann_keys], dtype=np.int64)
        self.image_keys = list(key_index)
        self.keys = dict(enumerate(self.image_keys))  # image index -> feature key
        by_image = {}
        for idx, image in enumerate(self.image_index.tolist()):
            by_image.setdefault(image, []).append(idx)
        self.by_image = by_image
        if len(by_image) < 2:
            raise DataFormatError(f"{self.source}: needs captions of at least two images to draw random pairs")
        self.store = open_feature_store(features, dim=feature_dim, max_regions=max_regions)
        self.text = TextEncoder(tokenizer, max_seq_length)
        check_mask_probabilities(mask_prob)
        self.mask_prob = mask_prob
        self.same_image_prob = same_image_prob
        self.seed = seed
        self.epoch = 0
        if check_features:
            self.check_features()

    def check_features(self):
        self.store.check(list(self.keys.values()), source=self.source)

    def set_epoch(self, epoch):
        """Sets the epoch: pairs and masks are redrawn per epoch. Call in the main process before iterating."""
        self.epoch = int(epoch)

    def __len__(self):
        return len(self.captions)

    def draw_pair(self, index, rng):
        """tuple[int, int]: (index of caption B, sentence-image label) for caption A = ``index``.

        Same image with probability ``same_image_prob`` (another caption, label 1); otherwise, or when the image
        has no other caption, a caption of a different image (label 0). B is never A itself.
        """
        image = int(self.image_index[index])
        if rng.random() < self.same_image_prob:
            others = [j for j in self.by_image[image] if j != index]
            if others:  # else: no other caption of this image -> a different image's caption, label 0
                return others[int(rng.integers(len(others)))], SENTENCE_IMAGE_MATCH
        while True:  # a caption of another image (terminates: at least two images)
            j = int(rng.integers(len(self.captions)))
            if self.image_index[j] != image:
                return j, SENTENCE_IMAGE_RANDOM

    def __getitem__(self, index):
        try:
            return self._example(index)
        except Exception as e:
            raise with_example_context(e, f"example {index} (caption id {self.caption_ids[index]}) of {self.source}") from e

    def _example(self, index):
        rng = example_rng(self.seed, self.epoch, index)
        j, label = self.draw_pair(index, rng)
        key = self.image_keys[int(self.image_index[index])]
        visual = self.store[key]
        enc = self.text.build(self.text.wordpieces(self.captions[index]), self.text.wordpieces(self.captions[j]))
        input_ids, labels = self.text.mask(enc["input_ids"], enc["special_mask"], rng, self.mask_prob)
        return {
            "input_ids": input_ids,
            "token_type_ids": enc["token_type_ids"],
            "labels": labels,
            "visual_embeds": visual,
            "visual_token_type_ids": np.zeros(visual.shape[0], dtype=np.int64),
            "sentence_image_labels": np.array(label, dtype=np.int64),
            "image_id": int(self.image_ids[index]),
            "caption_id": self.caption_ids[index],
        }
