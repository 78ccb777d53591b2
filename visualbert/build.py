"""The constructors the scripts call: datasets (:func:`build_dataset`), the collator and models (:func:`build_model`
for training, :func:`load_prediction_model` for prediction); the tokenizer is :func:`visualbert.tokenizer.load_tokenizer`.

A new task is a class in :mod:`visualbert.tasks` (see its docstring) added to :data:`TASKS`.
"""

from __future__ import annotations

import argparse
import logging
import os
from typing import Any

import numpy as np

from .cli import UsageError, require_path
from .data import Collator
from .data.collate import LABEL_KEYS
from .detector import DetectorConfig
from .tasks import NLVR2, VCR, VQA2, Flickr30K, Pretrain, VCRImages, VCRImagesPretrain
from .vcr_model import vcr_model_class

TASKS = {task.name: task for task in (VQA2, NLVR2, VCR, Pretrain, VCRImages, VCRImagesPretrain, Flickr30K)}


def get_task(task: str | type) -> type:
    """The task class of a name of :data:`TASKS` (a class is returned as is)."""
    if isinstance(task, str):
        if task not in TASKS:
            raise UsageError(f"unknown task {task!r} (known: {', '.join(sorted(TASKS))})")
        return TASKS[task]
    return task


def build_collator(tokenizer=None) -> Collator:
    """The collator padding text with the tokenizer's ``[PAD]`` id (0 without a tokenizer)."""
    pad = 0 if tokenizer is None else int(tokenizer.convert_tokens_to_ids(["[PAD]"])[0])
    return Collator(pad_token_id=pad)


def build_dataset(task: str | type, split: str, args: argparse.Namespace, tokenizer, **options: Any):
    """The dataset of ``split`` for ``task`` (a name of :data:`TASKS` or a task class), from the data arguments of
    ``task.add_data_args``; ``options`` go to ``task.dataset`` (VCR: ``mode``).

    A dataset with ``pretokenize`` (VQA2, NLVR2) has every text tokenized here, once, before loader workers fork:
    the pure-Python WordPiece tokenizer is otherwise the slowest step of an example in the first epoch. The ids are
    kept in :func:`visualbert.data.text.text_cache_dir` (``$VISUALBERT_TEXT_CACHE_DIR``, default
    ``~/.cache/visualbert/wordpieces``), keyed by the vocabulary and the split's texts, so a later run on the same
    annotations only loads them. Examples are the same either way."""
    dataset = get_task(task).dataset(args, tokenizer, split, **options)
    if hasattr(dataset, "pretokenize"):
        pretokenize(dataset, split)
    return dataset


def pretokenize(dataset, split: str, cache_dir: str | None = None) -> int:
    """``dataset.pretokenize`` with the text cache (default :func:`~visualbert.data.text.text_cache_dir`), logged;
    returns the number of distinct texts."""
    import time

    from .data.text import text_cache_dir

    cache_dir = cache_dir or text_cache_dir()
    start = time.perf_counter()
    count = dataset.pretokenize(cache_dir=cache_dir)
    logging.getLogger("visualbert.build").info("split %s: %d distinct texts tokenized in %.1f s (cache %s)", split,
                                               count, time.perf_counter() - start, cache_dir)
    return count


def visual_width(dataset) -> int:
    """int: the region-feature width D of ``dataset``, from its feature store (a packed store's index, else the
    first array the store holds; a dataset that appends columns, as Flickr30K's spatial features, says so itself)."""
    if hasattr(dataset, "visual_width"):
        return dataset.visual_width()
    return dataset.store.width()


def _head_width(architecture: str, num_labels: int) -> int | None:
    if architecture in ("VisualBertForMultipleChoice", "VisualBertForVCR"):
        return 1
    if architecture in ("VisualBertForQuestionAnswering", "VisualBertForVisualReasoning"):
        return num_labels
    return None


def build_model(args: argparse.Namespace, task: str | type, train_dataset):
    """The model of ``task`` for ``train_dataset`` (width of its features, ``task.num_labels`` outputs), from
    ``--model_name_or_path``, ``--bert_model`` or from scratch (``--config`` / ``--hidden_size`` ...).

    Raises:
        UsageError: an empty training set, or a checkpoint whose visual width or classifier head does not fit.
    """
    from .configuration import VisualBertConfig

    task = get_task(task)
    if len(train_dataset) == 0:
        raise UsageError("the training set is empty")
    model_class = task.model_class
    # VCR from images: None, the detector makes the regions (their width is the checkpoint's / the config's).
    visual_dim = task.visual_width(train_dataset) if hasattr(task, "visual_width") else visual_width(train_dataset)
    with_detector = vcr_model_class(model_class.__name__) is not None
    num_labels = task.num_labels(train_dataset)
    overrides = {}
    if getattr(args, "dropout", None) is not None:
        overrides.update(hidden_dropout_prob=args.dropout, attention_probs_dropout_prob=args.dropout)
    if args.model_name_or_path:
        config = VisualBertConfig.from_pretrained(args.model_name_or_path)
        if visual_dim is not None and config.visual_embedding_dim != visual_dim:
            raise UsageError(f"--model_name_or_path {args.model_name_or_path!r} has visual_embedding_dim="
                             f"{config.visual_embedding_dim}, but the task's region features are {visual_dim}-d "
                             "(VQA checkpoints expect 2048, NLVR2 1024, VCR 512)")
        source_arch = (config.architectures or ["VisualBertModel"])[0]
        if with_detector and vcr_model_class(source_arch) is None:
            raise UsageError(f"--model_name_or_path {args.model_name_or_path!r} holds a {source_arch}, which has no detector "
                             "weights: VCR from images needs a directory converted from an original vcr_*.th "
                             "(checkpoint/convert.py keeps its detector.* keys) or saved by a VCR-from-images run; HF VCR "
                             "directories have no detector (use them with --features)")
        have = _head_width(source_arch, config.num_labels)
        want = _head_width(model_class.__name__, num_labels)
        if have is not None and want is not None and have != want and not args.ignore_mismatched_sizes:
            raise UsageError(f"--model_name_or_path {args.model_name_or_path!r} has a {source_arch} head with {have} "
                             f"outputs; {model_class.__name__} for this task needs {want} "
                             "(pass --ignore_mismatched_sizes to re-initialise the head)")
        try:
            model, info = model_class.from_pretrained(args.model_name_or_path, output_loading_info=True,
                                                      ignore_mismatched_sizes=args.ignore_mismatched_sizes,
                                                      num_labels=num_labels, **overrides)
        except ValueError as err:
            raise UsageError(str(err)) from None
        if with_detector:
            missing = [k for k in info["missing_keys"] if k.startswith("detector.")]
            if missing:
                raise UsageError(f"--model_name_or_path {args.model_name_or_path!r} has no detector weights ({len(missing)} "
                                 f"detector.* keys missing, e.g. {missing[0]}): VCR from images needs a directory converted "
                                 "from an original vcr_*.th (checkpoint/convert.py keeps its detector.* keys) or saved "
                                 "by a VCR-from-images run; HF VCR directories have no detector")
        return _configured(model, task, args)
    if getattr(args, "config", None):
        width = {} if visual_dim is None else {"visual_embedding_dim": visual_dim}
        config = VisualBertConfig.from_pretrained(args.config, num_labels=num_labels, **width, **overrides)
    else:
        values = dict(visual_embedding_dim=visual_dim or DetectorConfig().final_dim, num_labels=num_labels, **overrides)
        for key in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size"):
            if getattr(args, key, None) is not None:
                values[key] = getattr(args, key)
        if args.bert_model:
            from .bert_init import read_bert_config

            bert = read_bert_config(args.bert_model)
            bert.update({k: v for k, v in values.items() if k not in bert or k in ("visual_embedding_dim", "num_labels")
                         or k in overrides})
            values = bert
        config = VisualBertConfig(**values)
    model = model_class(config)
    if args.bert_model:
        from .bert_init import load_bert_weights

        try:
            load_bert_weights(model, args.bert_model)
        except (KeyError, ValueError) as err:
            raise UsageError(f"--bert_model {args.bert_model!r}: {err}") from None
    if with_detector:
        logging.getLogger("visualbert.build").warning(
            "%s: the detector starts from random weights (the original starts it from torchvision's ImageNet "
            "ResNet-50, which is not available here): initialise from a converted vcr_*.th instead", model_class.__name__)
    return _configured(model, task, args)


def _configured(model, task, args):
    if hasattr(task, "configure_model"):
        task.configure_model(model, args)
    check_lengths(args, model.config)
    model.train()
    return model


def check_lengths(args: argparse.Namespace, config) -> None:
    """``--max_seq_length`` must fit the model's position table: a start-up error
    (:func:`visualbert.safety.check_position_table`), not an index error at the first long batch. The region count
    is not checked: every region takes visual position 0 (modeling's embeddings), so it indexes no table."""
    from .safety import check_position_table

    check_position_table(getattr(args, "max_seq_length", None), config.max_position_embeddings)


# ------------------------------------------------------------------------------------------ prediction models
def load_trained_model(model_dir: str, model_class: type):
    """A trained model for prediction (``best/``, ``final/`` or ``step_<N>/``) of ``model_class``."""
    require_path(model_dir, "--model_dir", "dir")
    if not os.path.isfile(os.path.join(model_dir, "model_state.pdparams")):
        raise UsageError(f"--model_dir {model_dir!r} has no model_state.pdparams")
    from .configuration import VisualBertConfig

    config = VisualBertConfig.from_pretrained(model_dir)
    arch = (config.architectures or [None])[0]
    if arch != model_class.__name__:
        raise UsageError(f"--model_dir {model_dir!r} holds a {arch}, this script needs a {model_class.__name__}")
    model = model_class.from_pretrained(model_dir)
    model.eval()
    return model


class ExportedModel:
    """A model exported by ``tools/export_model.py`` behind the dygraph model's prediction interface, so that one
    prediction loop (:func:`visualbert.engine.predict`) serves both: ``model(**inputs)`` takes the tensors of a
    collated batch (converted to numpy for the :class:`~visualbert.inference.Predictor`) and returns
    ``{"logits": numpy array}`` (no loss: the exported program takes no labels).

    Attributes: ``config`` (:class:`VisualBertConfig` from ``export.json``), ``architecture``.
    """

    flag = "--inference_model"

    def __init__(self, model_dir: str, threads: int | None = None, use_mkldnn: bool = False):
        from .configuration import VisualBertConfig
        from .inference import EXPORT_META, FEED_NAMES

        require_path(model_dir, self.flag, "dir")
        if not os.path.isfile(os.path.join(model_dir, EXPORT_META)):
            raise UsageError(f"{self.flag} {model_dir!r} has no {EXPORT_META} (export a trained model with "
                             "tools/export_model.py; a training run's best/ or final/ goes to --model_dir)")
        self.predictor = self.open_predictor(model_dir, threads, use_mkldnn)
        meta = self.predictor.meta
        self.architecture = meta.get("architecture")
        self.config = VisualBertConfig.from_dict(meta["config"])
        self.feed_names = tuple(meta.get("feed_names") or FEED_NAMES)
        self.model_dir = model_dir

    def eval(self) -> "ExportedModel":
        return self

    def __call__(self, **inputs) -> dict:
        ignored = sorted(k for k in inputs if k not in self.feed_names and k not in LABEL_KEYS)
        if ignored:
            raise UsageError(f"the exported model {self.model_dir!r} takes {', '.join(self.feed_names)}; the batch also "
                             f"has {', '.join(ignored)}, which it would ignore (predict with --model_dir instead)")
        feed = {k: v.numpy() if hasattr(v, "numpy") else np.asarray(v) for k, v in inputs.items() if k in self.feed_names}
        return {"logits": self.predictor.run(feed)["logits"]}

    @staticmethod
    def open_predictor(model_dir: str, threads: int | None, use_mkldnn: bool):
        from .inference import Predictor

        return Predictor(model_dir, threads=threads, use_mkldnn=use_mkldnn)


class OnnxModel(ExportedModel):
    """:class:`ExportedModel` over ``tools/export_model.py --format onnx`` output, run by ``onnxruntime``
    (:class:`~visualbert.inference.OnnxPredictor`)."""

    flag = "--onnx_model"

    @staticmethod
    def open_predictor(model_dir: str, threads: int | None, use_mkldnn: bool):
        from .inference import OnnxPredictor

        try:
            return OnnxPredictor(model_dir, threads=threads)
        except ImportError:
            raise UsageError("--onnx_model needs onnxruntime (pip install onnxruntime, or the package's 'test' "
                             "extra)") from None


MODEL_SOURCES = ("--model_dir (a trained model directory), --inference_model (a model exported by "
                 "tools/export_model.py) or --onnx_model (exported with --format onnx)")


def load_prediction_model(args: argparse.Namespace, task: str | type):
    """The model to predict ``task`` with: ``--model_dir`` (dygraph, :func:`load_trained_model`),
    ``--inference_model`` (an :class:`ExportedModel`) or ``--onnx_model`` (an :class:`OnnxModel`); exactly one must
    be given."""
    model_class = get_task(task).model_class
    given = {flag: getattr(args, flag[2:], None) for flag in ("--model_dir", "--inference_model", "--onnx_model")}
    given = {flag: path for flag, path in given.items() if path}
    if len(given) != 1:
        raise UsageError(f"give exactly one of {MODEL_SOURCES}" + (f"; got {', '.join(given)}" if given else ""))
    (flag, path), = given.items()
    if flag == "--model_dir":
        model = load_trained_model(path, model_class)
        check_lengths(args, model.config)
        return model
    model = (ExportedModel if flag == "--inference_model" else OnnxModel)(path)
    check_lengths(args, model.config)
    if model.architecture != model_class.__name__:
        raise UsageError(f"{flag} {path!r} holds an exported {model.architecture}, this script needs a "
                         f"{model_class.__name__}")
    return model


def check_model_fits(model, dataset, num_labels: int | None = None) -> None:
    """Raises :class:`UsageError` when the model's visual width (or answer count) does not fit ``dataset``."""
    width = visual_width(dataset)
    if model.config.visual_embedding_dim != width:
        raise UsageError(f"the model expects {model.config.visual_embedding_dim}-d region features, the data has {width}-d")
    if num_labels is not None and model.config.num_labels != num_labels:
        raise UsageError(f"the model has {model.config.num_labels} answers, the answer vocabulary {num_labels}")
