"""Data pipeline: region-feature stores, datasets returning dicts of numpy values, and the one collator.

Dataset code never imports the model; tensors are made only by :class:`Collator`.
"""

from .answers import AnswerVocab, load_answer_vocab
from .check import check_split, split_keys
from .coco import CocoCaptionsPretrainDataset, coco_image_key, load_coco_captions
from .collate import TENSOR_KEYS, Collator
from .errors import DataFormatError, MissingFeaturesError
from .features import (
    FeatureStore,
    NpyFeatureStore,
    PackedFeatureStore,
    detect_layout,
    open_feature_store,
    pack_features,
)
from .masking import mask_tokens, random_token_candidates
from .nlvr2 import NLVR2Dataset, image_keys, read_nlvr2_jsonl
from .text import DEFAULT_MAX_SEQ_LENGTH, TextEncoder
from .vcr import VCRDataset, read_vcr_jsonl, vcr_image_key
from .vcr_images import VCRImageDataset
from .vqa2 import VQA2Dataset, imdb_files, load_imdb

__all__ = [
    "AnswerVocab",
    "CocoCaptionsPretrainDataset",
    "Collator",
    "DEFAULT_MAX_SEQ_LENGTH",
    "DataFormatError",
    "FeatureStore",
    "MissingFeaturesError",
    "NLVR2Dataset",
    "NpyFeatureStore",
    "PackedFeatureStore",
    "TENSOR_KEYS",
    "TextEncoder",
    "check_split",
    "split_keys",
    "VCRDataset",
    "VCRImageDataset",
    "VQA2Dataset",
    "coco_image_key",
    "detect_layout",
    "image_keys",
    "imdb_files",
    "load_answer_vocab",
    "load_coco_captions",
    "load_imdb",
    "mask_tokens",
    "open_feature_store",
    "pack_features",
    "random_token_candidates",
    "read_nlvr2_jsonl",
    "read_vcr_jsonl",
    "vcr_image_key",
]

# Flickr30K Entities grounding (kept apart from the lists above so that merges stay simple)
from .flickr30k import Flickr30KDataset, box_iou, phrase_targets  # noqa: E402
from .flickr30k_entities import load_grounded_captions, parse_caption, read_annotation, read_captions  # noqa: E402
from .regions import BoxedFeatureStore, Hdf5RegionStore, open_region_store  # noqa: E402

__all__ += [
    "BoxedFeatureStore",
    "Flickr30KDataset",
    "Hdf5RegionStore",
    "box_iou",
    "load_grounded_captions",
    "open_region_store",
    "parse_caption",
    "phrase_targets",
    "read_annotation",
    "read_captions",
]
