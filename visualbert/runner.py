"""The common body of every training script: seed, datasets, model, checks, then the engine."""

import logging
import os

import numpy as np

from . import cli
from .engine import Trainer, UsageError, init_distributed, set_seed, setup_logging, write_args_json
from .tasks import MODEL_INPUTS, batch_transform, collator_for, load_tokenizer_for, visual_width

logger = logging.getLogger("visualbert.runner")


def prepare(args):
    """Validation that needs no data, logging, seeding and (if launched with >1 process) the process group."""
    cli.validate_training_args(args)
    setup_logging()
    init_distributed()
    set_seed(args.seed)
    return load_tokenizer_for(args)


def train_task(args, task, model_class, num_labels=2, extra_args_json=None, **dataset_kwargs):
    """What every training script does after parsing: task defaults and data checks, datasets, then :func:`train`.

    Args:
        task: a task class of :mod:`visualbert.tasks` (``VQA2``, ``NLVR2``, ``VCR``, ``Pretrain``).
        num_labels (int or callable): head width, or ``num_labels(train_dataset)`` (VQA: the answer vocabulary).
        **dataset_kwargs: passed to ``task.dataset`` for both splits (VCR: the Q->A / QA->R mode).
    """
    cli.finalize_task_defaults(args, task.metric_for_best, task.greater_is_better)
    task.check_data_args(args)
    tokenizer = prepare(args)
    train_dataset = task.dataset(args, tokenizer, args.train_split, **dataset_kwargs)
    eval_dataset = None
    if args.eval_split and not args.no_eval:
        eval_dataset = task.dataset(args, tokenizer, args.eval_split, **dataset_kwargs)
    if callable(num_labels):
        num_labels = num_labels(train_dataset)
    return train(args, model_class, train_dataset, eval_dataset, task.evaluate, num_labels, tokenizer, extra_args_json)


def train(args, model_class, train_dataset, eval_dataset, evaluate_fn, num_labels, tokenizer=None, extra_args_json=None):
    """Builds the model, checks it against the data, and trains.

    Args:
        evaluate_fn (callable): ``evaluate_fn(model, dataset, args) -> dict`` (called on rank 0 only).

    Returns:
        dict: the final trainer state.
    """
    if len(train_dataset) == 0:
        raise UsageError("the training set is empty")
    width = visual_width(train_dataset)
    model = cli.build_model(args, model_class, width, num_labels)
    evaluate = None
    if eval_dataset is not None and not args.no_eval:
        def evaluate(m):
            return evaluate_fn(m, eval_dataset, args)
    trainer = Trainer(args, model, train_dataset, collator_for(tokenizer), evaluate_fn=evaluate,
                      batch_transform=batch_transform(args), model_kwargs=MODEL_INPUTS)
    cli.prepare_output_dir(args)
    if trainer.is_main:
        extra = {"num_train_examples": len(train_dataset), "num_eval_examples": len(eval_dataset) if eval_dataset else 0,
                 "total_steps": trainer.total_steps, "visual_embedding_dim": width, "model_class": model_class.__name__,
                 "config": model.config.to_dict()}
        extra.update(extra_args_json or {})
        write_args_json(args.output_dir, args, extra)
    logger.info("training %s on %d examples for %d steps (%d per epoch) -> %s", model_class.__name__,
                len(train_dataset), trainer.total_steps, trainer.updates_per_epoch, os.path.abspath(args.output_dir))
    return trainer.train()


def load_trained_model(model_dir, model_class):
    """A trained model for prediction (``best/``, ``final/`` or ``step_<N>/``)."""
    cli.require_path(model_dir, "--model_dir", "dir")
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
    prediction loop (:func:`visualbert.tasks.run_inference`) serves both: ``model(**batch)`` takes the tensors of a
    collated batch (converted to numpy for the :class:`~visualbert.inference.Predictor`) and returns
    ``{"logits": numpy array}`` (no loss: the exported program takes no labels).

    Attributes: ``config`` (:class:`VisualBertConfig` from ``export.json``), ``architecture``.
    """

    LABEL_KEYS = ("labels", "sentence_image_labels")

    def __init__(self, model_dir, threads=None, use_mkldnn=False):
        from .configuration import VisualBertConfig
        from .inference import EXPORT_META, FEED_NAMES, Predictor

        cli.require_path(model_dir, "--inference_model", "dir")
        if not os.path.isfile(os.path.join(model_dir, EXPORT_META)):
            raise UsageError(f"--inference_model {model_dir!r} has no {EXPORT_META} (export a trained model with "
                             "tools/export_model.py; a training run's best/ or final/ goes to --model_dir)")
        self.predictor = Predictor(model_dir, threads=threads, use_mkldnn=use_mkldnn)
        meta = self.predictor.meta
        self.architecture = meta.get("architecture")
        self.config = VisualBertConfig.from_dict(meta["config"])
        self.feed_names = tuple(meta.get("feed_names") or FEED_NAMES)
        self.model_dir = model_dir

    def eval(self):
        return self

    def __call__(self, **inputs):
        ignored = sorted(k for k in inputs if k not in self.feed_names and k not in self.LABEL_KEYS)
        if ignored:
            raise UsageError(f"the exported model {self.model_dir!r} takes {', '.join(self.feed_names)}; the batch also "
                             f"has {', '.join(ignored)}, which it would ignore (predict with --model_dir instead)")
        feed = {k: v.numpy() if hasattr(v, "numpy") else np.asarray(v) for k, v in inputs.items() if k in self.feed_names}
        return {"logits": self.predictor.run(feed)["logits"]}


def load_prediction_model(args, model_class):
    """The model to predict with: ``--model_dir`` (dygraph, :func:`load_trained_model`) or ``--inference_model``
    (an :class:`ExportedModel`); exactly one must be given."""
    model_dir, exported = getattr(args, "model_dir", None), getattr(args, "inference_model", None)
    if model_dir and exported:
        raise UsageError("give either --model_dir (a trained model directory) or --inference_model (a model exported by "
                         "tools/export_model.py), not both")
    if not model_dir and not exported:
        raise UsageError("give --model_dir (a trained model directory) or --inference_model (a model exported by "
                         "tools/export_model.py)")
    if model_dir:
        return load_trained_model(model_dir, model_class)
    model = ExportedModel(exported)
    if model.architecture != model_class.__name__:
        raise UsageError(f"--inference_model {exported!r} holds an exported {model.architecture}, this script needs a "
                         f"{model_class.__name__}")
    return model


def check_model_fits(model, dataset, num_labels=None):
    width = visual_width(dataset)
    if model.config.visual_embedding_dim != width:
        raise UsageError(f"the model expects {model.config.visual_embedding_dim}-d region features, the data has {width}-d")
    if num_labels is not None and model.config.num_labels != num_labels:
        raise UsageError(f"the model has {model.config.num_labels} answers, the answer vocabulary {num_labels}")
