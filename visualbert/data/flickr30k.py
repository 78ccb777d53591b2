"""Flickr30K Entities region-to-phrase grounding: IoU targets and the dataset (the original's
``dataloaders/flickr_dataset.py`` on BAN's ``_load_flickr30k`` entries).

One example is one caption: text ``[CLS] caption [SEP]``, the image's proposals, and for each grounded phrase
its position in the text and a target distribution over the proposals.
"""

import numpy as np

from .errors import DataFormatError, MissingFeaturesError, with_example_context
from .flickr30k_entities import load_grounded_captions, read_split_ids, split_list_path
from .regions import SPATIAL_DIM, open_region_store, spatial_features
from .text import DEFAULT_MAX_SEQ_LENGTH, TextEncoder, example_rng

IOU_THRESHOLD = 0.5
FLICKR_FEATURE_DIM = 2048


def box_iou(boxes_a, boxes_b):
    """Pairwise IoU with the original's box arithmetic (``flickr_ban/utils.py:calculate_iou``).

    Areas are ``(x2 - x1) * (y2 - y1)`` (no ``+1``), so boxes that only touch have IoU 0.

    Args:
        boxes_a (np.ndarray): float [N, 4] ``x1, y1, x2, y2``.
        boxes_b (np.ndarray): float [M, 4].

    Returns:
        np.ndarray: float64 [N, M] (0 where the union is empty).
    """
    a = np.asarray(boxes_a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(boxes_b, dtype=np.float64).reshape(-1, 4)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    width = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    height = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = width * height
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def positive_proposals(gt_boxes, proposals, threshold=IOU_THRESHOLD):
    """Proposals matching a phrase: IoU >= ``threshold`` against ANY one of its ground-truth boxes
    (``flickr_ban/utils.py:get_match_index``; the boxes of a chain are not merged into one).

    Args:
        gt_boxes (array-like): float [G, 4] the phrase's boxes (G >= 0).
        proposals (np.ndarray): float [R, 4].
        threshold (float): IoU threshold.

    Returns:
        np.ndarray: bool [R].
    """
    gt = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4)
    if gt.shape[0] == 0:
        return np.zeros(len(proposals), dtype=bool)
    return (box_iou(gt, proposals) >= threshold).any(axis=0)


def phrase_targets(phrase_boxes, proposals, threshold=IOU_THRESHOLD):
    """Target distributions over proposals: uniform over the positives, all zero when none matches.

    Args:
        phrase_boxes (list): per phrase, its ground-truth boxes [G_p, 4].
        proposals (np.ndarray): float [R, 4].
        threshold (float): IoU threshold.

    Returns:
        np.ndarray: float32 [P, R]; each row sums to 1 or is all zero.
    """
    targets = np.zeros((len(phrase_boxes), len(proposals)), dtype=np.float32)
    for p, boxes in enumerate(phrase_boxes):
        positive = positive_proposals(boxes, proposals, threshold)
        if positive.any():
            targets[p, positive] = 1.0 / positive.sum()
    return targets


def _line_of(path, image_id):
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if line.strip() == image_id:
                return lineno
    return 0


class Flickr30KDataset:
    """Flickr30K Entities captions with their image's proposals, one example per caption.

    Sample:
        * ``input_ids`` int64 [T] ``[CLS] caption [SEP]`` (the caption split on spaces, then WordPiece, as the
          original's ``retokenize_with_alignment``), ``token_type_ids`` int64 [T] zeros;
        * ``visual_embeds`` float32 [R, D (+6)] proposals, with BAN's 6 spatial features appended when
          ``add_spatial_features`` (the configs' 2054 = 2048 + 6), ``visual_token_type_ids`` int64 [R] zeros;
        * ``region_to_phrase_position`` int64 [P]: per grounded phrase, the index in ``input_ids`` of the last
          wordpiece of its last word (the +1 of [CLS] included);
        * ``labels`` float32 [P, R]: :func:`phrase_targets` (uniform over proposals with IoU >= 0.5 against any
          box of the phrase's chain; an all-zero row when none matches);
        * metadata: ``image_id`` str, ``caption_index`` int, ``phrases`` list of dicts (``text``, ``chain_id``,
          ``types``, ``boxes``, ``start``, ``end``), ``region_boxes`` float32 [R, 4].

    Sample (``task="mlm"``, the task pre-training stage ``configs/flickr/pre-train.json``): the same text with the
    MLM corruption of :meth:`TextEncoder.mask` (15 %, 80/10/10, redrawn each epoch, :meth:`set_epoch`) and
    ``labels`` int64 [T] (``IGNORE_INDEX`` where not a target); no phrase positions, no sentence-image label
    (the original's Flickr pre-training has only the masked-LM loss).

    Args:
        entities_root (str): Flickr30K Entities directory (``Sentences/``, ``Annotations/``, ``<split>.txt``;
            or BAN's data root holding ``Flickr30kEntities/``).
        split (str): ``train``, ``val`` or ``test`` (the image list ``<split>.txt``).
        regions (str or store): proposals, see :func:`visualbert.data.regions.open_region_store` (opened with
            ``split``).
        tokenizer: BERT tokenizer.
        max_seq_length (int): text length cap; a phrase cut off by it raises at loading.
        add_spatial_features (bool): append the 6 spatial features (True in every Flickr config).
        iou_threshold (float): positive-proposal threshold (0.5).
        image_ids (list[str], optional): use these images instead of the split list.
        feature_dim (int, optional): expected feature width before the spatial features.
        max_regions (int, optional): proposal cap.
        allow_unannotated_chains (bool): see :func:`load_grounded_captions`.
        task (str): ``"grounding"`` or ``"mlm"``. mask_prob (float), seed (int): MLM corruption.

    Attributes:
        captions (list[Caption]): the examples. counts (Counter): kept and dropped phrases / captions.

    Raises:
        FileNotFoundError, DataFormatError: bad annotation files (file:line named).
        MissingFeaturesError: an image of the split without proposals (split list line and index named).
    """

    def __init__(self, entities_root, split, regions, tokenizer, max_seq_length=DEFAULT_MAX_SEQ_LENGTH,
                 add_spatial_features=True, iou_threshold=IOU_THRESHOLD, image_ids=None, feature_dim=None,
                 max_regions=None, allow_unannotated_chains=False, task="grounding", mask_prob=0.15, seed=0):
        if task not in ("grounding", "mlm"):
            raise ValueError(f"task must be 'grounding' or 'mlm', got {task!r}")
        if image_ids is None:
            list_path = split_list_path(entities_root, split)
            image_ids = read_split_ids(list_path)
        else:
            list_path = None
            image_ids = [str(i) for i in image_ids]
        self.split = split
        self.source = list_path or entities_root
        self.image_ids = image_ids
        self.task, self.mask_prob, self.seed, self.epoch = task, mask_prob, seed, 0
        self.store = open_region_store(regions, split=split, dim=feature_dim, max_regions=max_regions)
        missing = [i for i in image_ids if i not in self.store]
        if missing:
            where = f"{list_path}:{_line_of(list_path, missing[0])}: " if list_path else ""
            raise MissingFeaturesError(
                f"{where}image {missing[0]} has no proposals in {self.store.describe(missing[0])} "
                f"({len(missing)} of {len(image_ids)} images of split {split!r} missing)", missing)
        self.captions, self.annotations, self.counts = load_grounded_captions(
            entities_root, image_ids, allow_unannotated_chains=allow_unannotated_chains)
        if not self.captions:
            raise DataFormatError(f"{entities_root}: split {split!r} has no caption with a grounded phrase")
        self.text = TextEncoder(tokenizer, max_seq_length)
        self.add_spatial_features = add_spatial_features
        self.iou_threshold = iou_threshold

    def __len__(self):
        return len(self.captions)

    def visual_width(self):
        """int: the width of ``visual_embeds`` (the store's features, + 6 with ``add_spatial_features``)."""
        store = getattr(self.store, "features", self.store)  # BoxedFeatureStore: its feature store
        width = store.width() if hasattr(store, "width") else store.dim
        return int(width) + (SPATIAL_DIM if self.add_spatial_features else 0)

    def set_epoch(self, epoch):
        """Sets the epoch (the MLM draws depend on it). Call before each epoch, in the main process."""
        self.epoch = int(epoch)

    def check_features(self):
        """Raises :class:`MissingFeaturesError` for images without proposals (also done at construction)."""
        self.store.check(self.image_ids, source=self.source)

    def __getitem__(self, index):
        caption = self.captions[index]
        try:
            return self._example(index, caption)
        except Exception as e:
            raise with_example_context(e, f"caption {caption.index} of image {caption.image_id} "
                                          f"({caption.source}:{caption.line})") from e

    def phrase_positions(self, caption):
        """Token ids and phrase positions of a caption.

        Returns:
            tuple[dict, np.ndarray]: :meth:`TextEncoder.build` output and int64 [P] positions in ``input_ids``.
        """
        pieces, word_end = [], []
        for word in caption.text.split(" "):
            pieces += self.text.wordpieces(word) if word else []
            word_end.append(len(pieces))  # wordpieces up to and including this word
        enc = self.text.build(pieces)
        positions = []
        for phrase in caption.phrases:
            last = word_end[phrase.last_word]
            first = word_end[phrase.first_word - 1] if phrase.first_word > 0 else 0
            if last <= first:
                raise DataFormatError(f"phrase {phrase.text!r} has no wordpiece")
            if last > enc["a_len"]:
                raise DataFormatError(f"phrase {phrase.text!r} ends at wordpiece {last}, beyond max_seq_length "
                                      f"{self.text.max_seq_length}; raise max_seq_length")
            positions.append(last)  # index last - 1 among the caption's wordpieces, + 1 for [CLS]
        return enc, np.asarray(positions, dtype=np.int64)

    def _example(self, index, caption):
        regions = self.store[caption.image_id]
        enc, positions = self.phrase_positions(caption)
        visual = regions.features
        if self.add_spatial_features:
            spatial = regions.spatial
            if spatial is None:
                annotation = self.annotations[caption.image_id]
                if not annotation.width or not annotation.height:
                    raise DataFormatError(f"{annotation.source}: no <size> width/height, needed for the spatial "
                                          "features of boxes stored without them")
                spatial = spatial_features(regions.boxes, annotation.width, annotation.height)
            visual = np.concatenate([visual, spatial], axis=1).astype(np.float32)
        if self.task == "mlm":
            rng = example_rng(self.seed, self.epoch, index)
            input_ids, labels = self.text.mask(enc["input_ids"], enc["special_mask"], rng, self.mask_prob)
            return {"input_ids": input_ids, "token_type_ids": enc["token_type_ids"], "visual_embeds": visual,
                    "visual_token_type_ids": np.zeros(visual.shape[0], dtype=np.int64), "labels": labels,
                    "image_id": caption.image_id, "caption_index": caption.index}
        labels = phrase_targets([p.boxes for p in caption.phrases], regions.boxes, self.iou_threshold)
        return {
            "input_ids": enc["input_ids"],
            "token_type_ids": enc["token_type_ids"],
            "visual_embeds": visual,
            "visual_token_type_ids": np.zeros(visual.shape[0], dtype=np.int64),
            "region_to_phrase_position": positions,
            "labels": labels,
            "image_id": caption.image_id,
            "caption_index": caption.index,
            "phrases": [{"text": p.text, "chain_id": p.chain_id, "types": list(p.types), "boxes": p.boxes,
                         "start": p.start, "end": p.end} for p in caption.phrases],
            "region_boxes": regions.boxes,
        }


__all__ = ["FLICKR_FEATURE_DIM", "Flickr30KDataset", "IOU_THRESHOLD", "box_iou", "phrase_targets",
           "positive_proposals"]
