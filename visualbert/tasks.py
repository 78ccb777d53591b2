"""The tasks: their data arguments, dataset builders, model class and metrics, and their prediction files.

Each task class exposes ``model_class``, ``add_data_args(parser, train)``, ``check_data_args(args)``,
``splits(args) -> (train, eval)``, ``dataset(args, tokenizer, split, ...)``, ``num_labels(train_dataset)``,
``outputs`` (the model outputs its metrics read) and ``score(dataset, arrays, meta, loss) -> dict``: a pure
function of the outputs of :func:`visualbert.engine.predict` and the examples. The predict scripts call
``predict(model, dataset, args)`` (prediction files + ``metrics.json`` when the split has labels). A new task is a
:class:`Task` subclass here plus an entry in :data:`visualbert.build.TASKS`.
"""

from __future__ import annotations

import collections
import logging
import os
from argparse import ArgumentParser, Namespace

import numpy as np

from .cli import UsageError, argument_group, check_prediction_outputs, require_path
from .constants import IGNORE_INDEX
from .engine import predict
from .fileio import write_json
from .metrics import (
    nlvr2_metrics,
    vcr_metrics,
    vqa_official_accuracy,
    vqa_predict,
    vqa_soft_accuracy,
    write_nlvr2_predictions,
)
from .modeling import (
    VisualBertForMultipleChoice,
    VisualBertForPreTraining,
    VisualBertForQuestionAnswering,
    VisualBertForRegionToPhraseAlignment,
    VisualBertForVisualReasoning,
)
from .safety import probability
from .vcr_model import VisualBertForVCR, VisualBertForVCRPreTraining


def softmax(logits: np.ndarray) -> np.ndarray:
    """float64 probabilities over the last axis of ``logits`` (the heads' losses are cross-entropies / KL to the
    log-softmax, so this is the model's distribution)."""
    z = np.asarray(logits, dtype=np.float64)
    z = np.exp(z - z.max(-1, keepdims=True))
    return z / z.sum(-1, keepdims=True)


def check_one_example(args: Namespace, one: tuple[str, ...], batch: tuple[str, ...]) -> bool:
    """For the predict scripts: True when the flags ``one`` (one example from the command line, all needed) are
    given, False for a split (the flags ``batch`` needed, and ``--output_dir``); raises :class:`UsageError` on a
    mix or a missing flag."""
    given = [flag for flag in one if getattr(args, flag[2:], None) is not None]
    if given:
        if len(given) != len(one):
            raise UsageError(f"one example needs {' and '.join(one)} (got only {', '.join(given)})")
        mixed = [flag for flag in batch if getattr(args, flag[2:], None)]
        if mixed:
            raise UsageError(f"give {' and '.join(one)} (one example) or {' and '.join(batch)} (a split), not both "
                             f"(got {', '.join(mixed)})")
        return True
    missing = [flag for flag in batch + ("--output_dir",) if not getattr(args, flag[2:], None)]
    if missing:
        raise UsageError(f"{', '.join(missing)} required (or {' and '.join(one)} for one example)")
    return False


def checked(args: Namespace, dataset):
    """``--check_features``: raises :class:`~visualbert.data.errors.MissingFeaturesError` (the scripts print it and
    exit with status 2) listing every image of ``dataset`` without a feature file; returns ``dataset``."""
    if getattr(args, "check_features", False):
        dataset.check_features()
        source = getattr(dataset, "source", None) or ", ".join(sorted(set(getattr(dataset, "sources", ())))) or "the split"
        logging.getLogger("visualbert.tasks").info("--check_features: every image of %s (%d examples) has features",
                                                   source, len(dataset))
    return dataset


class Task:
    """The defaults every task shares (see the module docstring for the whole protocol)."""

    name = None
    model_class = None
    metric_for_best = "accuracy"
    greater_is_better = True
    outputs = ("logits",)

    @staticmethod
    def splits(args: Namespace) -> tuple[str | None, str | None]:
        """(train, eval) split names from ``--train_split`` / ``--eval_split``."""
        return args.train_split, args.eval_split

    @staticmethod
    def num_labels(train_dataset) -> int:
        """int: width of the classifier head for this training set."""
        return 2


# ============================================================================================ VQA2
class VQA2(Task):
    name = "vqa2"
    model_class = VisualBertForQuestionAnswering
    metric_for_best = "soft_accuracy"

    @staticmethod
    def num_labels(train_dataset) -> int:
        """int: the answer vocabulary."""
        return len(train_dataset.vocab)

    @staticmethod
    def add_data_args(parser: ArgumentParser, train: bool = True) -> None:
        parser.task = VQA2.name  # which script this is, for the contest-port flags (cli.ScriptParser)
        g = argument_group(parser, "data")
        g.add_argument("--imdb_dir", required=train, help="directory with the Pythia imdb_*.npy files")
        g.add_argument("--features", required=train, help="detectron_fix_100 root (or its fc6/vqa, or a packed store)")
        g.add_argument("--answers_file", default=None, help="answers_vqa.txt (default: the packaged 3129 answers)")
        if train:
            g.add_argument("--train_split", default="trainval", help="imdb split(s) to train on, comma-separated")
            g.add_argument("--eval_split", default="minival", help="split evaluated during training ('' = none)")
        else:
            g.add_argument("--split", default="test2015", help="split to predict (test2015 writes the EvalAI result.json)")
            g.add_argument("--question", default=None,
                           help="one question (with --features_file) instead of a split: prints the top answers")
            g.add_argument("--features_file", default=None, help="with --question: the image's region features, "
                                                                 ".npy float [regions, width]")
            p = argument_group(parser, "evaluation/prediction")
            p.add_argument("--top_k", type=int, default=5, help="with --question: answers printed")
            p.add_argument("--json", action="store_true", help="with --question: print JSON")

    @staticmethod
    def check_data_args(args: Namespace) -> None:
        if args.answers_file:
            require_path(args.answers_file, "--answers_file", "file")
        if hasattr(args, "question") and check_one_example(args, ("--question", "--features_file"),
                                                           ("--imdb_dir", "--features")):
            require_path(args.features_file, "--features_file", "file")
            if args.top_k < 1:
                raise UsageError(f"--top_k must be at least 1, got {args.top_k}")
            return
        require_path(args.imdb_dir, "--imdb_dir", "dir")
        require_path(args.features, "--features", "dir")

    @staticmethod
    def dataset(args: Namespace, tokenizer, split: str, task: str = "vqa"):
        from .data import VQA2Dataset, imdb_files

        files = []
        for part in split.split(","):
            try:
                files += imdb_files(args.imdb_dir, part.strip())
            except ValueError as err:
                raise UsageError(str(err)) from None
        width = None  # accept any width; it is checked against the model instead
        dataset = checked(args, VQA2Dataset(files, args.features, tokenizer, answers_file=args.answers_file,
                                            max_seq_length=args.max_seq_length, task=task, seed=getattr(args, "seed", 0),
                                            feature_dim=width))
        if task == "vqa" and split == getattr(args, "train_split", None):
            dataset.check_answer_coverage()  # logged; too few in-vocabulary answers = all-zero targets: an error
        return dataset

    @staticmethod
    def one_example(args: Namespace, tokenizer):
        """The dataset of ``--question`` about ``--features_file`` (:meth:`VQA2Dataset.from_question`)."""
        from .data import VQA2Dataset

        dataset = VQA2Dataset.from_question(args.question, args.features_file, tokenizer,
                                            answers_file=args.answers_file, max_seq_length=args.max_seq_length)
        dataset[0]  # bad features raise here: raised inside paddle's DataLoader, an error hangs its iterator
        return dataset

    @staticmethod
    def top_answers(model, dataset, top_k: int = 5, collate_fn=None, text_only: bool = False) -> list[dict]:
        """The ``top_k`` answers to the first question of ``dataset`` with their probabilities (softmax over the
        whole vocabulary; the first is the batch path's answer), through the one prediction loop.

        Returns:
            list[dict]: ``{"answer": str, "probability": float}``, most probable first.
        """
        arrays, _, _ = predict(model, dataset, 1, collate_fn, text_only)
        probs = softmax(arrays["logits"][0])
        order = np.argsort(-probs, kind="stable")[:top_k]
        return [{"answer": dataset.vocab[int(i)], "probability": float(probs[i])} for i in order]

    @staticmethod
    def answer_types(dataset) -> list[str]:
        """Answer type per question: the imdb's ``answer_type`` when present, else derived from the most common
        human answer as the official annotations define it (yes/no, number, other)."""
        out = []
        for entry in dataset.entries:
            if entry.get("answer_type"):
                out.append(entry["answer_type"])
                continue
            answers = entry.get("all_answers") or entry.get("answers") or []
            top = collections.Counter(answers).most_common(1)[0][0] if len(answers) else ""
            out.append("yes/no" if top in ("yes", "no") else "number" if str(top).isdigit() else "other")
        return out

    @classmethod
    def scores(cls, dataset, logits: np.ndarray, answers, mask_unk: bool):
        preds = vqa_predict(logits, mask_unk=mask_unk)
        pred_str = [dataset.vocab[int(i)] for i in preds]
        metrics = {}
        if answers is not None:
            targets = np.stack([dataset.vocab.soft_scores(a) for a in answers])
            metrics["soft_accuracy"] = vqa_soft_accuracy(preds, targets)
            types = cls.answer_types(dataset)
            anns = [{"question_id": i, "answers": list(a), "answer_type": t} for i, (a, t) in enumerate(zip(answers, types))]
            official = vqa_official_accuracy({i: p for i, p in enumerate(pred_str)}, anns)
            metrics["vqa_accuracy"] = official["overall"]
            metrics["per_answer_type"] = official["perAnswerType"]
            metrics["num_questions"] = official["num_questions"]
        return preds, pred_str, metrics

    @classmethod
    def score(cls, dataset, arrays: dict, meta: dict, loss: float | None) -> dict:
        """Training-time metrics: soft and official accuracy over the vocabulary without ``<unk>``, and ``loss``."""
        _, _, metrics = cls.scores(dataset, arrays["logits"], meta.get("answers"), mask_unk=True)
        metrics["loss"] = loss
        return metrics

    @classmethod
    def predict(cls, model, dataset, args: Namespace, collate_fn=None):
        check_prediction_outputs(args.output_dir, ("result.json", "metrics.json"), getattr(args, "overwrite", False))
        arrays, meta, _ = predict(model, dataset, args.batch_size, collate_fn, args.text_only, args.num_workers)
        answers = meta.get("answers") if dataset.has_answers else None
        _, pred_str, metrics = cls.scores(dataset, arrays["logits"], answers, mask_unk=False)
        result = [{"question_id": int(q), "answer": a} for q, a in zip(meta["question_id"], pred_str)]
        os.makedirs(args.output_dir, exist_ok=True)
        write_json(os.path.join(args.output_dir, "result.json"), result, indent=None)
        if metrics:
            metrics["split"] = args.split
            write_json(os.path.join(args.output_dir, "metrics.json"), metrics)
        return result, metrics

    @staticmethod
    def majority_baseline(train_dataset, eval_dataset) -> dict:
        """Official accuracy of always answering the most frequent training answer."""
        counts = collections.Counter()
        for entry in train_dataset.entries:
            answers = entry.get("all_answers") or entry.get("answers") or []
            if len(answers):
                counts[collections.Counter(answers).most_common(1)[0][0]] += 1
        answer = counts.most_common(1)[0][0]
        anns = [{"question_id": i, "answers": list(e.get("all_answers") or e.get("answers"))}
                for i, e in enumerate(eval_dataset.entries)]
        official = vqa_official_accuracy({i: answer for i in range(len(anns))}, anns)
        targets = np.stack([eval_dataset.vocab.soft_scores(a["answers"]) for a in anns])
        soft = vqa_soft_accuracy(np.full(len(anns), eval_dataset.vocab.index(answer)), targets)
        return {"answer": answer, "vqa_accuracy": official["overall"], "soft_accuracy": soft}


# ============================================================================================ NLVR2
class NLVR2(Task):
    name = "nlvr2"
    model_class = VisualBertForVisualReasoning

    @staticmethod
    def add_data_args(parser: ArgumentParser, train: bool = True) -> None:
        parser.task = NLVR2.name  # which script this is, for the contest-port flags (cli.ScriptParser)
        g = argument_group(parser, "data")
        g.add_argument("--data_dir", required=train, help="directory with train.json, dev.json, test1.json")
        g.add_argument("--features", required=train, help="detectron_fix_144 root (or a packed store)")
        g.add_argument("--max_regions", type=int, default=144, help="regions kept per image")
        if train:
            g.add_argument("--train_split", default="train")
            g.add_argument("--eval_split", default="dev", help="'' = no evaluation")
        else:
            g.add_argument("--split", default="dev", help="dev, test1 (or any <name> with <name>.json)")
            g.add_argument("--sentence", default=None, help="one statement (with --left_features and "
                                                            "--right_features) instead of a split: prints True/False")
            g.add_argument("--left_features", default=None, help="with --sentence: the left image's region "
                                                                 "features, .npy float [regions, width]")
            g.add_argument("--right_features", default=None, help="with --sentence: the right image's")
            argument_group(parser, "evaluation/prediction").add_argument(
                "--json", action="store_true", help="with --sentence: print JSON")

    @staticmethod
    def check_data_args(args: Namespace) -> None:
        if hasattr(args, "sentence") and check_one_example(args, ("--sentence", "--left_features", "--right_features"),
                                                           ("--data_dir", "--features")):
            require_path(args.left_features, "--left_features", "file")
            require_path(args.right_features, "--right_features", "file")
            return
        require_path(args.data_dir, "--data_dir", "dir")
        require_path(args.features, "--features", "dir")

    @staticmethod
    def annotation_file(args: Namespace, split: str) -> str:
        path = split if split.endswith(".json") or split.endswith(".jsonl") else os.path.join(args.data_dir, f"{split}.json")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"NLVR2 annotation file {path} does not exist (split {split!r})")
        return path

    @classmethod
    def dataset(cls, args: Namespace, tokenizer, split: str, task: str = "nlvr2"):
        from .data import NLVR2Dataset

        return checked(args, NLVR2Dataset(cls.annotation_file(args, split), args.features, tokenizer,
                                          max_seq_length=args.max_seq_length, task=task, max_regions=args.max_regions,
                                          seed=getattr(args, "seed", 0), feature_dim=None))

    @staticmethod
    def one_example(args: Namespace, tokenizer):
        """The dataset of ``--sentence`` about ``--left_features`` / ``--right_features``
        (:meth:`NLVR2Dataset.from_sentence`)."""
        from .data import NLVR2Dataset

        dataset = NLVR2Dataset.from_sentence(args.sentence, args.left_features, args.right_features, tokenizer,
                                             max_seq_length=args.max_seq_length, max_regions=args.max_regions)
        dataset[0]  # bad features raise here: raised inside paddle's DataLoader, an error hangs its iterator
        return dataset

    @staticmethod
    def judge(model, dataset, collate_fn=None, text_only: bool = False) -> dict:
        """True/False for the first statement of ``dataset`` (the batch path's prediction) and its probability
        (softmax of the two logits), through the one prediction loop.

        Returns:
            dict: ``{"label": bool, "probability": float}``.
        """
        arrays, _, _ = predict(model, dataset, 1, collate_fn, text_only)
        probs = softmax(arrays["logits"][0])
        label = bool(probs.argmax() == 1)
        return {"label": label, "probability": float(probs[int(label)])}

    @staticmethod
    def scores(dataset, logits: np.ndarray):
        preds = np.asarray(logits).argmax(-1) == 1
        idents = [r["identifier"] for r in dataset.rows]
        predictions = dict(zip(idents, preds.tolist()))
        metrics = nlvr2_metrics(predictions, dataset.rows) if dataset.has_labels else {}
        return predictions, metrics

    @classmethod
    def score(cls, dataset, arrays: dict, meta: dict, loss: float | None) -> dict:
        """``accuracy``, ``consistency`` (lil-lab's metrics) and ``loss``."""
        _, metrics = cls.scores(dataset, arrays["logits"])
        metrics["loss"] = loss
        return metrics

    @classmethod
    def predict(cls, model, dataset, args: Namespace, collate_fn=None):
        check_prediction_outputs(args.output_dir, ("predictions.csv", "metrics.json"), getattr(args, "overwrite", False))
        arrays, _, _ = predict(model, dataset, args.batch_size, collate_fn, args.text_only, args.num_workers)
        predictions, metrics = cls.scores(dataset, arrays["logits"])
        os.makedirs(args.output_dir, exist_ok=True)
        write_nlvr2_predictions(os.path.join(args.output_dir, "predictions.csv"), predictions)
        if metrics:
            metrics["split"] = args.split
            metrics["num_examples"] = len(predictions)
            write_json(os.path.join(args.output_dir, "metrics.json"), metrics)
        return predictions, metrics

    @staticmethod
    def majority_baseline(train_dataset, eval_dataset) -> dict:
        labels = [str(r["label"]).lower() == "true" for r in train_dataset.rows]
        majority = sum(labels) * 2 >= len(labels)
        preds = {r["identifier"]: majority for r in eval_dataset.rows}
        return dict(nlvr2_metrics(preds, eval_dataset.rows), label=majority)


# ============================================================================================ VCR
class VCR(Task):
    name = "vcr"
    model_class = VisualBertForMultipleChoice

    @staticmethod
    def add_data_args(parser: ArgumentParser, train: bool = True) -> None:
        g = argument_group(parser, "data")
        g.add_argument("--data_dir", "--annotations", dest="data_dir", required=True,
                       help="directory with train.jsonl, val.jsonl (test.jsonl)")
        g.add_argument("--features", default=None,
                       help="precomputed region features: per-image box features (<img_fn stem>.npy) or a packed "
                            "store (VisualBertForMultipleChoice); give this or --images")
        g.add_argument("--images", default=None, metavar="VCR1IMAGES",
                       help="VCR from the images as the original: the vcr1images directory holding every img_fn "
                            "and metadata_fn (the model carries the detector: VisualBertForVCR)")
        g.add_argument("--box_offset", type=int, default=0, help="feature row of box 0 (1 if row 0 is the whole image)")
        if train:
            g.add_argument("--mode", choices=("qa", "qar"), default="qa", help="Q->A or QA->R")
            VCRImages.add_training_args(argument_group(parser, "training"))
            g.add_argument("--train_split", default="train")
            g.add_argument("--eval_split", default="val", help="'' = no evaluation")
        else:
            g.add_argument("--split", default="val")

    @staticmethod
    def for_args(args: Namespace) -> type:
        """The task of the parsed VCR arguments: :class:`VCR` (``--features``), :class:`VCRImages` (``--images``) or,
        with ``--stage pretrain``, :class:`VCRImagesPretrain`."""
        if getattr(args, "stage", "finetune") == "pretrain":
            return VCRImagesPretrain
        return VCRImages if getattr(args, "images", None) else VCR

    @staticmethod
    def check_data_args(args: Namespace) -> None:
        require_path(args.data_dir, "--data_dir", "dir")
        if bool(args.features) == bool(getattr(args, "images", None)):
            raise UsageError("give --features (precomputed region features) or --images (the vcr1images directory), "
                             "exactly one")
        if args.features:
            require_path(args.features, "--features", "dir")
            given = [f"--{k}" for k in ("freeze_detector", "cnn_loss_ratio") if getattr(args, k, None) is not None]
            if given:
                raise UsageError(f"{', '.join(given)} apply to the detector of VCR from images (--images); precomputed "
                                 "--features have none")

    @staticmethod
    def annotation_file(args: Namespace, split: str) -> str:
        path = split if split.endswith(".jsonl") else os.path.join(args.data_dir, f"{split}.jsonl")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"VCR annotation file {path} does not exist (split {split!r})")
        return path

    @classmethod
    def dataset(cls, args: Namespace, tokenizer, split: str, mode: str | None = None):
        """``mode``: "qa" (Q->A) or "qar" (QA->R); default ``--mode``."""
        from .data import VCRDataset

        path = cls.annotation_file(args, split)
        mode = mode or args.mode
        return checked(args, VCRDataset(path, args.features, tokenizer, mode=mode, max_seq_length=args.max_seq_length,
                                        box_offset=args.box_offset, feature_dim=None))

    @staticmethod
    def score(dataset, arrays: dict, meta: dict, loss: float | None) -> dict:
        """``accuracy`` (= ``q2a`` or ``qa2r`` of :func:`visualbert.metrics.vcr_metrics` for the dataset's mode;
        None without labels) and ``loss``."""
        labels = meta.get("labels")
        if labels is None:
            return {"accuracy": None, "loss": loss}
        if dataset.mode == "qa":
            metrics = vcr_metrics(arrays["logits"], labels)
        else:
            metrics = vcr_metrics(rationale_preds=arrays["logits"], rationale_labels=labels)
        (acc,) = metrics.values()
        return dict(metrics, accuracy=acc, loss=loss)

    @staticmethod
    def probabilities(model, dataset, args: Namespace, collate_fn=None):
        arrays, meta, _ = predict(model, dataset, args.batch_size, collate_fn, args.text_only, args.num_workers)
        logits = arrays["logits"]
        probs = np.exp(logits - logits.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        return probs, meta.get("labels"), meta["annot_id"]


class VCRImages(VCR):
    """VCR from the images as the original (``--images``): :class:`~visualbert.data.vcr_images.VCRImageDataset`
    (the original's boxes, names, alignment and truncation) and :class:`~visualbert.vcr_model.VisualBertForVCR`
    (the jointly trained detector + the multiple-choice head). Its loss is the model's: the choice cross-entropy
    plus ``cnn_loss_ratio`` x ``cnn_regularization_loss``."""

    name = "vcr_images"
    model_class = VisualBertForVCR
    # configs/vcr: both pre-training configs keep the original train.py's default (frozen), fine-tuning unfreezes.
    FREEZE_DETECTOR_DEFAULT = {"pretrain": True, "finetune": False}

    @staticmethod
    def add_training_args(group) -> None:
        from .cli import str2bool

        group.add_argument("--stage", choices=("finetune", "pretrain"), default="finetune",
                           help="finetune: Q->A / QA->R (fine-tune-qa/qar.json); pretrain: VCR task pre-training from "
                                "the images (pre-train.json: complete_shuffle, pretraining_include_qa_and_qar, masked "
                                "LM + is-the-right-choice through the sentence-image head; needs --images)")
        group.add_argument("--freeze_detector", type=str2bool, default=None,
                           help="--images: stop the detector backbone's gradient and use batch statistics in its "
                                "BatchNorms, as the original's freeze_detector (default: true for --stage pretrain, "
                                "false for finetune, as configs/vcr/*.json)")
        group.add_argument("--cnn_loss_ratio", type=float, default=None,
                           help="--images: weight of the detector's cnn_regularization_loss in the loss (the "
                                "original's cnn_loss_ratio; 0 in every released config; default: the checkpoint's)")

    @staticmethod
    def check_data_args(args: Namespace) -> None:
        VCR.check_data_args(args)
        require_path(args.images, "--images", "dir")
        if getattr(args, "text_only", False):
            raise UsageError("--text_only masks precomputed regions; it is not supported with --images")

    @staticmethod
    def visual_width(train_dataset) -> None:
        """None: the detector makes the regions, their width is the model's ``visual_embedding_dim``."""
        return None

    @staticmethod
    def configure_model(model, args: Namespace):
        """``--freeze_detector`` (default per ``--stage``) and ``--cnn_loss_ratio`` on a built VCR-from-images
        model (for training)."""
        if getattr(args, "cnn_loss_ratio", None) is not None:
            model.config.cnn_loss_ratio = float(args.cnn_loss_ratio)
        freeze = getattr(args, "freeze_detector", None)
        if freeze is None:
            freeze = VCRImages.FREEZE_DETECTOR_DEFAULT[getattr(args, "stage", "finetune")]
        if freeze:
            model.freeze_detector()
        logging.getLogger("visualbert.tasks").info("VCR from images: detector backbone %s, cnn_loss_ratio %g",
                                                   "frozen" if freeze else "trained", model.config.cnn_loss_ratio)
        return model

    @classmethod
    def dataset(cls, args: Namespace, tokenizer, split: str, mode: str | None = None, expand_answers: bool = False,
                train: bool | None = None):
        """``mode`` as :meth:`VCR.dataset`; ``expand_answers``: QA->R for each of the 4 answers (the test file);
        ``train``: random padding offsets (default: ``split`` is the training split)."""
        from .data.vcr_images import VCRImageDataset

        path = cls.annotation_file(args, split)
        if train is None:
            train = split == getattr(args, "train_split", None)
        dataset = VCRImageDataset(path, args.images, tokenizer, mode=mode or args.mode, max_seq_length=args.max_seq_length,
                                  expand_answers=expand_answers, train=train, seed=getattr(args, "seed", 0))
        return checked_images(dataset)


def checked_images(dataset):
    """Every line of a VCR-from-images ``dataset`` checked (:meth:`VCRImageDataset.check_inputs`) before anything
    runs on it; a bad line is refused with one message naming the file and the example."""
    from .data.errors import DataFormatError

    try:
        dataset.check_inputs()
    except DataFormatError as err:  # the scripts' usage-error path: one line, exit status 2
        raise UsageError(str(err)) from None
    logging.getLogger("visualbert.tasks").info("%s: %d lines checked (images, metadata, boxes, polygons)",
                                               dataset.source, len(dataset.rows))
    return dataset


# ============================================================================================ Flickr30K
class GroundingReduction:
    """``on_batch`` of :func:`visualbert.engine.predict` for grounding: feeds every batch to a
    :class:`~visualbert.metrics.GroundingEvaluator` (the phrase and region counts vary per batch, so no output is
    concatenated), optionally with the prediction rows and the two baselines (largest box, random box) of the same
    phrases.

    Args:
        records (bool): keep :func:`~visualbert.metrics.grounding_prediction_records` rows (``rows``).
        baselines (bool): also score the largest-box and random-box rankings (``baselines``).
        seed (int): the random-box draw.
    """

    def __init__(self, records: bool = False, baselines: bool = False, seed: int = 0):
        from .metrics import GroundingEvaluator

        self.evaluator = GroundingEvaluator()
        self.rows = [] if records else None
        self.baselines = {"largest_box": GroundingEvaluator(), "random_box": GroundingEvaluator()} if baselines else None
        self.rng = np.random.default_rng([seed, 30])

    def __call__(self, batch: dict, out) -> None:
        from .accel import to_float32_numpy
        from .metrics import grounding_prediction_records, largest_box_scores, random_box_scores

        logits = to_float32_numpy(out["logits"])
        targets = to_float32_numpy(batch["labels"])
        positions = to_float32_numpy(batch["region_to_phrase_position"])
        mask = to_float32_numpy(batch["visual_attention_mask"])
        types = [[p["types"] for p in phrases] for phrases in batch["phrases"]]
        self.evaluator.add_batch(logits, targets, positions, mask, types)
        for b, phrases in enumerate(batch["phrases"]):
            num_phrases, boxes = len(phrases), np.asarray(batch["region_boxes"][b])
            scores, target = logits[b, :num_phrases, : len(boxes)], targets[b, :num_phrases, : len(boxes)]
            if self.rows is not None:
                self.rows += grounding_prediction_records(scores, target, boxes, phrases, batch["image_id"][b],
                                                          batch["caption_index"][b])
            if self.baselines is not None:
                self.baselines["largest_box"].add(largest_box_scores(boxes, num_phrases), target, types[b])
                self.baselines["random_box"].add(random_box_scores(len(boxes), num_phrases, self.rng), target, types[b])

    def result(self) -> dict:
        """dict: :meth:`GroundingEvaluator.result` (``R@1``, ``R@5``, ``R@10``, ``upper_bound``, ``per_type`` ...),
        with ``baselines`` (name -> the same keys without ``per_type``) when asked for."""
        metrics = self.evaluator.result()
        if self.baselines is not None:
            metrics["baselines"] = {}
            for name, evaluator in self.baselines.items():
                metrics["baselines"][name] = {k: v for k, v in evaluator.result().items() if k != "per_type"}
        return metrics


class Flickr30K(Task):
    """Flickr30K Entities region-to-phrase grounding (``configs/flickr/fine-tune.json``): the KL-divergence loss of
    :class:`~visualbert.modeling.VisualBertForRegionToPhraseAlignment`, R@1/5/10 over every phrase with a box, best
    checkpoint by R@1."""

    name = "flickr30k"
    model_class = VisualBertForRegionToPhraseAlignment
    metric_for_best = "R@1"
    outputs = ()

    @staticmethod
    def add_data_args(parser: ArgumentParser, train: bool = True) -> None:
        from .cli import str2bool

        g = argument_group(parser, "data")
        g.add_argument("--data_dir", required=True,
                       help="Flickr30K Entities directory: Sentences/, Annotations/, train.txt, val.txt, test.txt (or "
                            "BAN's data root holding Flickr30kEntities/)")
        g.add_argument("--features", required=True,
                       help="proposals: a directory with BAN's <split>.hdf5 + <split>_imgid2idx.pkl, or our stores "
                            "(<split>/features + <split>/boxes, or features/ + boxes/)")
        g.add_argument("--max_regions", type=int, default=None, help="proposals kept per image (default: all)")
        g.add_argument("--spatial_features", type=str2bool, default=True,
                       help="append BAN's 6 spatial features to the region features (every Flickr config: 2048 + 6)")
        g.add_argument("--iou_threshold", type=float, default=0.5, help="IoU of a positive proposal")
        if train:
            g.add_argument("--train_split", default="train")
            g.add_argument("--eval_split", default="val", help="'' = no evaluation")
        else:
            g.add_argument("--split", default="val", help="val or test (the image list <split>.txt)")

    @staticmethod
    def check_data_args(args: Namespace) -> None:
        require_path(args.data_dir, "--data_dir", "dir")
        require_path(args.features, "--features", "any")
        if not 0.0 < getattr(args, "iou_threshold", 0.5) <= 1.0:
            raise UsageError(f"--iou_threshold must lie in (0, 1], got {args.iou_threshold}")

    @staticmethod
    def open_dataset(args: Namespace, tokenizer, split: str, **options):
        """The :class:`~visualbert.data.flickr30k.Flickr30KDataset` of ``split`` (grounding, or the MLM of task
        pre-training with ``task="mlm"``); a bad annotation or feature file becomes a :class:`UsageError` naming the
        file and line."""
        from .data.errors import DataFormatError
        from .data.flickr30k import Flickr30KDataset

        try:
            dataset = Flickr30KDataset(args.data_dir, split, args.features, tokenizer, max_seq_length=args.max_seq_length,
                                       add_spatial_features=getattr(args, "spatial_features", True),
                                       iou_threshold=getattr(args, "iou_threshold", 0.5),
                                       max_regions=getattr(args, "max_regions", None), **options)
        except DataFormatError as err:
            raise UsageError(str(err)) from None
        logging.getLogger("visualbert.tasks").info(
            "flickr30k %s: %d captions; phrase counts %s", split, len(dataset), dict(sorted(dataset.counts.items())))
        return checked(args, dataset)

    @classmethod
    def dataset(cls, args: Namespace, tokenizer, split: str):
        return cls.open_dataset(args, tokenizer, split)

    @staticmethod
    def evaluator(dataset) -> GroundingReduction:
        """The ``on_batch`` reduction :func:`visualbert.engine.evaluate` feeds (see :meth:`score`)."""
        return GroundingReduction()

    @staticmethod
    def score(dataset, arrays: dict, meta: dict, loss: float | None) -> dict:
        """``R@1``, ``R@5``, ``R@10``, ``upper_bound`` (fractions over the phrases with a box), ``per_type``,
        ``phrases`` and ``loss`` from the :meth:`evaluator` reduction (``meta["evaluator"]``)."""
        return dict(meta["evaluator"].result(), loss=loss)

    @classmethod
    def predict(cls, model, dataset, args: Namespace, collate_fn=None):
        """Writes ``predictions.jsonl`` (per phrase: its text, chain, types, ground-truth boxes, the top-10 proposals
        with their softmax scores) and ``metrics.json`` (:meth:`score` plus the largest-box and random-box
        baselines of the same phrases, and the phrase counts of the split)."""
        from .metrics import write_grounding_predictions

        reduction = GroundingReduction(records=True, baselines=True, seed=getattr(args, "seed", 0))
        _, _, loss = predict(model, dataset, args.batch_size, collate_fn, args.text_only, args.num_workers,
                             outputs=(), on_batch=reduction, collect_meta=False)
        metrics = cls.score(dataset, {}, {"evaluator": reduction}, loss)
        metrics.update(split=args.split, captions=len(dataset), phrase_counts=dict(sorted(dataset.counts.items())))
        os.makedirs(args.output_dir, exist_ok=True)
        write_grounding_predictions(os.path.join(args.output_dir, "predictions.jsonl"), reduction.rows)
        write_json(os.path.join(args.output_dir, "metrics.json"), metrics)
        return reduction.rows, metrics


# ============================================================================================ pretraining
class Pretrain(Task):
    name = "pretrain"
    model_class = VisualBertForPreTraining
    metric_for_best = "loss"
    greater_is_better = False
    outputs = ()

    @staticmethod
    def add_data_args(parser: ArgumentParser) -> None:
        parser.task = Pretrain.name  # which script this is, for the contest-port flags (cli.ScriptParser)
        g = argument_group(parser, "data")
        g.add_argument("--dataset", choices=("coco_captions", "vqa2", "nlvr2", "flickr30k"), required=True,
                       help="coco_captions: MLM + sentence-image; vqa2: MLM on the questions; nlvr2: MLM + the label "
                            "through the sentence-image head; flickr30k: MLM on the Flickr30K Entities captions")
        g.add_argument("--data_dir", required=True,
                       help="coco_captions: the annotations directory (captions_{train,val}2014.json); vqa2: the imdb "
                            "directory; nlvr2: the directory with train.json / dev.json; flickr30k: the Flickr30K "
                            "Entities directory (Sentences/, Annotations/, train.txt ...)")
        g.add_argument("--features", required=True, help="region-feature root (see the task scripts)")
        g.add_argument("--train_split", default=None,
                       help="default: train2014 / trainval / train; coco_captions: '+'-joined sets read together, "
                            "e.g. train2014+val2014 (captions_train2014.json and captions_val2014.json)")
        g.add_argument("--eval_split", default=None, help="default: val2014 / minival / dev; '' = none")
        g.add_argument("--exclude_minival", default=None, metavar="IMDB_FILE",
                       help="coco_captions: drop from the training split every image of this VQA imdb (e.g. "
                            "imdb_minival2014.npy; its entries' image_name), as the original exclude_minival")
        g.add_argument("--max_regions", type=int, default=None, help="cap on regions per image")
        g.add_argument("--mask_prob", type=probability, default=0.15)
        g.add_argument("--answer_text", choices=("characters", "words"), default="characters",
                       help="vqa2: the answer appended to the question as the original's vqa_dataset.py does "
                            "(characters: 'y e s', how the released visualbert-vqa-pre was trained) or as WordPieces "
                            "(words)")

    DEFAULT_SPLITS = {"coco_captions": ("train2014", "val2014"), "vqa2": ("trainval", "minival"), "nlvr2": ("train", "dev"),
                      "flickr30k": ("train", "val")}

    @classmethod
    def check_data_args(cls, args: Namespace) -> None:
        require_path(args.data_dir, "--data_dir", "dir")
        require_path(args.features, "--features", "dir")
        if getattr(args, "exclude_minival", None):
            if args.dataset != "coco_captions":
                raise UsageError("--exclude_minival applies to --dataset coco_captions only")
            require_path(args.exclude_minival, "--exclude_minival", "file")

    @classmethod
    def splits(cls, args: Namespace) -> tuple[str, str]:
        """(train, eval) split: the flags, or the defaults of ``--dataset``."""
        train, val = cls.DEFAULT_SPLITS[args.dataset]
        return (train if args.train_split is None else args.train_split,
                val if args.eval_split is None else args.eval_split)

    @staticmethod
    def coco_caption_files(data_dir: str, split: str) -> list[str]:
        """list[str]: caption files of a coco_captions split spec (``train2014``, ``train2014+val2014``, or
        ``.json`` paths; ``+`` or ``,`` joins several).

        Raises:
            FileNotFoundError: naming the missing file and the split.
        """
        parts = [p.strip() for p in split.replace(",", "+").split("+") if p.strip()]
        if not parts:
            raise UsageError(f"empty COCO captions split {split!r}")
        paths = [p if p.endswith(".json") else os.path.join(data_dir, f"captions_{p}.json") for p in parts]
        for p in paths:
            if not os.path.isfile(p):
                raise FileNotFoundError(f"COCO captions file {p} does not exist (split {split!r})")
        return paths

    @staticmethod
    def minival_image_keys(imdb_file: str) -> set[str]:
        """set[str]: feature keys (``image_name``) of the images of a VQA imdb (e.g. ``imdb_minival2014.npy``).

        Raises:
            FileNotFoundError, DataFormatError: naming the file.
        """
        from .data import load_imdb

        if not os.path.isfile(imdb_file):
            raise FileNotFoundError(f"--exclude_minival: VQA imdb file {imdb_file} does not exist")
        _, entries = load_imdb(imdb_file)
        return {os.path.splitext(os.path.basename(str(e["image_name"])))[0] for e in entries}

    @staticmethod
    def dataset(args: Namespace, tokenizer, split: str):
        from .data import CocoCaptionsPretrainDataset, NLVR2Dataset, VQA2Dataset, imdb_files

        if args.dataset == "coco_captions":
            paths = Pretrain.coco_caption_files(args.data_dir, split)
            exclude = only = None
            if getattr(args, "exclude_minival", None):
                # The original (expand_coco + exclude_minival) trains without the minival images and validates
                # on exactly them.
                if split == Pretrain.splits(args)[0]:
                    exclude = Pretrain.minival_image_keys(args.exclude_minival)
                else:
                    only = Pretrain.minival_image_keys(args.exclude_minival)
            ds = CocoCaptionsPretrainDataset(
                paths, args.features, tokenizer, max_seq_length=args.max_seq_length, mask_prob=args.mask_prob,
                seed=args.seed, max_regions=args.max_regions, exclude_image_ids=exclude, only_image_ids=only)
            if exclude is not None:
                logging.getLogger("visualbert.tasks").info(
                    "coco_captions %s: excluded %d captions of the %d images of %s", split, ds.num_excluded_captions,
                    len(exclude), args.exclude_minival)
            return checked(args, ds)
        if args.dataset == "vqa2":
            try:
                files = [f for part in split.split(",") for f in imdb_files(args.data_dir, part.strip())]
            except ValueError as err:
                raise UsageError(str(err)) from None
            return checked(args, VQA2Dataset(files, args.features, tokenizer, max_seq_length=args.max_seq_length,
                                             task="mlm", mask_prob=args.mask_prob, seed=args.seed, feature_dim=None,
                                             answer_text=getattr(args, "answer_text", "characters")))
        if args.dataset == "flickr30k":  # configs/flickr/pre-train.json: MLM only, spatial features on
            return Flickr30K.open_dataset(args, tokenizer, split, task="mlm", mask_prob=args.mask_prob, seed=args.seed)
        path = os.path.join(args.data_dir, f"{split}.json")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"NLVR2 annotation file {path} does not exist (split {split!r})")
        return checked(args, NLVR2Dataset(path, args.features, tokenizer, max_seq_length=args.max_seq_length,
                                          task="pretrain", max_regions=args.max_regions or 144, mask_prob=args.mask_prob,
                                          seed=args.seed, feature_dim=None))

    @staticmethod
    def batch_statistics(batch: dict, out) -> dict:
        """Sums of one batch for :meth:`score` (the MLM logits of a whole split are too large to keep)."""
        import paddle.nn.functional as F

        acc = {}
        labels = batch["labels"].reshape([-1])
        keep = labels != IGNORE_INDEX
        n = int(keep.astype("int64").sum())
        if n:
            logits = out["prediction_logits"].reshape([labels.shape[0], -1])
            token_losses = F.cross_entropy(logits, labels, ignore_index=IGNORE_INDEX, reduction="none").reshape([-1])
            acc["mlm_loss"] = float((token_losses * keep.astype(token_losses.dtype)).sum())
            acc["mlm_ok"] = int(((logits.argmax(-1) == labels) & keep).astype("int64").sum())
            acc["mlm_n"] = n
        if "sentence_image_labels" in batch:
            target = batch["sentence_image_labels"].reshape([-1])
            logits = out["seq_relationship_logits"]
            acc["sent_loss"] = float(F.cross_entropy(logits, target, reduction="sum"))
            acc["sent_ok"] = int((logits.argmax(-1) == target).astype("int64").sum())
            acc["sent_n"] = int(target.shape[0])
        return acc

    @staticmethod
    def score(dataset, arrays: dict, meta: dict, loss: float | None) -> dict:
        """Pretraining metrics over ``dataset`` from the summed :meth:`batch_statistics` (``meta["statistics"]``).

        Returns:
            dict: ``mlm_loss`` (mean cross-entropy over all predicted tokens of the split, i.e. batch sums divided by
            the total number of non-``IGNORE_INDEX`` labels), ``mlm_accuracy``, and when the dataset has
            sentence-image labels ``sentence_image_loss`` (mean over examples) and ``sentence_image_accuracy``;
            ``loss`` = ``mlm_loss`` + ``sentence_image_loss`` (the training objective's two means).
        """
        acc = collections.Counter(meta["statistics"])
        metrics = {"mlm_loss": acc["mlm_loss"] / acc["mlm_n"] if acc["mlm_n"] else None,
                   "mlm_accuracy": acc["mlm_ok"] / acc["mlm_n"] if acc["mlm_n"] else None}
        if acc["sent_n"]:
            metrics["sentence_image_loss"] = acc["sent_loss"] / acc["sent_n"]
            metrics["sentence_image_accuracy"] = acc["sent_ok"] / acc["sent_n"]
        parts = [metrics[k] for k in ("mlm_loss", "sentence_image_loss") if metrics.get(k) is not None]
        metrics["loss"] = float(sum(parts)) if parts else None
        return metrics


class VCRImagesPretrain(Pretrain):
    """VCR task pre-training from the images (``configs/vcr/pre-train.json``): every line gives its 4 Q->A and 4
    QA->R texts as separate examples (``complete_shuffle``, ``pretraining_include_qa_and_qar``), masked LM on the
    WordPieces and, through the sentence-image head, whether the text's choice is the right one (the original's
    ``is_random_next`` for VCR), with :class:`~visualbert.vcr_model.VisualBertForVCRPreTraining` (the detector
    frozen by default). Metrics as :class:`Pretrain`."""

    name = "vcr_pretrain"
    model_class = VisualBertForVCRPreTraining
    visual_width = staticmethod(VCRImages.visual_width)

    @staticmethod
    def add_data_args(parser: ArgumentParser, train: bool = True) -> None:
        VCR.add_data_args(parser, train)

    @staticmethod
    def check_data_args(args: Namespace) -> None:
        if not getattr(args, "images", None):
            raise UsageError("--stage pretrain reads the images: give --images (the vcr1images directory)")
        VCRImages.check_data_args(args)

    @staticmethod
    def splits(args: Namespace) -> tuple[str | None, str | None]:
        return args.train_split, args.eval_split

    configure_model = staticmethod(VCRImages.configure_model)

    @staticmethod
    def dataset(args: Namespace, tokenizer, split: str):
        from .data.vcr_images import VCRImageDataset

        path = VCR.annotation_file(args, split)
        dataset = VCRImageDataset(path, args.images, tokenizer, max_seq_length=args.max_seq_length,
                                  complete_shuffle=True, include_qa_and_qar=True, pretraining=True,
                                  train=split == args.train_split, seed=getattr(args, "seed", 0))
        return checked_images(dataset)
