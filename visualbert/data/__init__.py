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
