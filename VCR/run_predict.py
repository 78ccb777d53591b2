#!/usr/bin/env python
"""Predict VCR with a Q->A model (``--model_dir``) and/or a QA->R model (``--qar_model_dir``).

Writes ``predictions.jsonl`` (``annot_id``, ``answer_probs``, ``rationale_probs``) and, when the split has
labels, ``metrics.json`` with ``q2a``, ``qa2r`` and ``q2ar`` (fractions; Q->AR = both right, QA->R scored with the
gold answer in its input as in the standard protocol).

    python VCR/run_predict.py --model_dir runs/vcr_qa/best --qar_model_dir runs/vcr_qar/best \
        --data_dir data/vcr --features data/vcr/features --split val --output_dir runs/vcr/val

From the images as the original (``--images``; the model directories hold a VisualBertForVCR, e.g. converted
from ``vcr_fine_tuned.th`` by checkpoint/convert.py, or a VCR-from-images run's ``best/``; ``--data_dir`` may be
spelled ``--annotations``). On a split without labels (test) with both models, QA->R is scored for each of the 4
answers and ``leaderboard.csv`` is written in the leaderboard's layout
(:func:`visualbert.vcr_submission.write_leaderboard_csv`):

    python VCR/run_predict.py --model_dir runs/vcr_qa/best --qar_model_dir runs/vcr_qar/best \
        --annotations data/vcr --images data/vcr/vcr1images --split test --output_dir runs/vcr/test
"""

import json
import os

import numpy as np

from visualbert.build import build_collator, build_dataset, check_lengths, check_model_fits, load_trained_model
from visualbert.cli import UsageError, argument_group, check_prediction_outputs, main_wrapper, prediction_parser
from visualbert.fileio import write_json, write_jsonl
from visualbert.metrics import vcr_metrics
from visualbert.safety import check_trained_mode
from visualbert.tasks import VCR, VCRImages
from visualbert.tokenizer import load_tokenizer
from visualbert.vcr_submission import write_leaderboard_csv


def main(argv=None):
    parser = prediction_parser(__doc__)
    for action in parser._actions:
        if action.dest == "model_dir":
            action.help = "Q->A model directory"
        elif action.dest in ("inference_model", "onnx_model"):
            action.help = "not supported for VCR (tools/export_model.py has no multiple-choice head)"
    argument_group(parser, "model").add_argument("--qar_model_dir", default=None, help="QA->R model directory")
    VCR.add_data_args(parser, train=False)
    args = parser.parse_args(argv)
    if args.inference_model or args.onnx_model:
        raise UsageError("--inference_model / --onnx_model are not supported for VCR: tools/export_model.py exports only the VQA2 and "
                         "NLVR2 heads (no multiple-choice head); give --model_dir (Q->A) and/or --qar_model_dir (QA->R)")
    if not args.output_dir:
        raise UsageError("--output_dir is required (where the predictions are written)")
    if not args.model_dir and not args.qar_model_dir:
        raise UsageError("give --model_dir (Q->A) and/or --qar_model_dir (QA->R)")
    task = VCR.for_args(args)
    task.check_data_args(args)
    check_prediction_outputs(args.output_dir, ("predictions.jsonl", "leaderboard.csv", "metrics.json"), args.overwrite)
    tokenizer = load_tokenizer(args.vocab_file)
    from_images = task is VCRImages
    unlabelled = from_images and not has_labels(task.annotation_file(args, args.split))
    rows, parts, logits = {}, {}, {}
    for key, model_dir, mode in (("answer", args.model_dir, "qa"), ("rationale", args.qar_model_dir, "qar")):
        if not model_dir:
            continue
        check_trained_mode(model_dir, "mode", mode, "--model_dir" if mode == "qa" else "--qar_model_dir")
        model = load_trained_model(model_dir, task.model_class)
        check_lengths(args, model.config)
        # From images on test: QA->R conditioned on each of the 4 answers (the Q->AR submission needs all 16).
        options = {"expand_answers": unlabelled and mode == "qar"} if from_images else {}
        dataset = build_dataset(task, args.split, args, tokenizer, mode=mode, **options)
        if not from_images:
            check_model_fits(model, dataset)
        probs, labels, ids = task.probabilities(model, dataset, args, build_collator(tokenizer))
        logits[key] = probs
        if options.get("expand_answers"):
            probs, ids = probs.reshape(-1, 4, 4), ids[::4]  # line-major, answer-minor
        parts[key] = (probs, labels)
        for i, annot in enumerate(ids):
            rows.setdefault(annot, {"annot_id": annot})[f"{key}_probs"] = probs[i].tolist()
    os.makedirs(args.output_dir, exist_ok=True)
    write_jsonl(os.path.join(args.output_dir, "predictions.jsonl"), rows.values(), sort_keys=False)
    if unlabelled and len(logits) == 2:
        path = os.path.join(args.output_dir, "leaderboard.csv")
        # softmax is shift-invariant: log-probabilities give the file's probabilities back exactly.
        write_leaderboard_csv(path, list(rows), np.log(logits["answer"]), np.log(logits["rationale"]))
        print(f"wrote the leaderboard file {path}")
    elif unlabelled:
        print("note: the leaderboard file needs both --model_dir (Q->A) and --qar_model_dir (QA->R)")
    have_labels = not unlabelled and all(p[1] is not None for p in parts.values())
    if have_labels:
        a = parts.get("answer", (None, None))
        r = parts.get("rationale", (None, None))
        metrics = vcr_metrics(a[0], a[1], r[0], r[1])
        metrics["split"] = args.split
        write_json(os.path.join(args.output_dir, "metrics.json"), metrics)
        print(json.dumps(metrics, indent=1, sort_keys=True))
    print(f"wrote {len(rows)} predictions to {os.path.join(args.output_dir, 'predictions.jsonl')}")
    return 0


def has_labels(annotation_file: str) -> bool:
    """True when the annotation lines carry ``answer_label`` (train/val; the test split has none)."""
    from visualbert.data.vcr_images import read_vcr_annotations

    return all("answer_label" in row for row in read_vcr_annotations(annotation_file))


if __name__ == "__main__":
    main_wrapper(main)
