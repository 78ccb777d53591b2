#!/usr/bin/env python
"""Predict VCR with a Q->A model (``--model_dir``) and/or a QA->R model (``--qar_model_dir``).

Writes ``predictions.jsonl`` (``annot_id``, ``answer_probs``, ``rationale_probs``) and, when the split has
labels, ``metrics.json`` with ``q2a``, ``qa2r`` and ``q2ar`` (fractions; Q->AR = both right, QA->R scored with the
gold answer in its input as in the standard protocol).

    python VCR/run_predict.py --model_dir runs/vcr_qa/best --qar_model_dir runs/vcr_qar/best \
        --data_dir data/vcr --features data/vcr/features --split val --output_dir runs/vcr/val
"""

import json
import os


from visualbert.build import build_collator, build_dataset, check_model_fits, load_trained_model
from visualbert.cli import UsageError, argument_group, main_wrapper, prediction_parser
from visualbert.fileio import write_json, write_jsonl
from visualbert.metrics import vcr_metrics
from visualbert.tasks import VCR
from visualbert.tokenizer import load_tokenizer


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
    VCR.check_data_args(args)
    tokenizer = load_tokenizer(args.vocab_file)
    rows, parts = {}, {}
    for key, model_dir, mode in (("answer", args.model_dir, "qa"), ("rationale", args.qar_model_dir, "qar")):
        if not model_dir:
            continue
        model = load_trained_model(model_dir, VCR.model_class)
        dataset = build_dataset(VCR, args.split, args, tokenizer, mode=mode)
        check_model_fits(model, dataset)
        probs, labels, ids = VCR.probabilities(model, dataset, args, build_collator(tokenizer))
        parts[key] = (probs, labels)
        for i, annot in enumerate(ids):
            rows.setdefault(annot, {"annot_id": annot})[f"{key}_probs"] = [float(p) for p in probs[i]]
    os.makedirs(args.output_dir, exist_ok=True)
    write_jsonl(os.path.join(args.output_dir, "predictions.jsonl"), rows.values(), sort_keys=False)
    have_labels = all(p[1] is not None for p in parts.values())
    if have_labels:
        a = parts.get("answer", (None, None))
        r = parts.get("rationale", (None, None))
        metrics = vcr_metrics(a[0], a[1], r[0], r[1])
        metrics["split"] = args.split
        write_json(os.path.join(args.output_dir, "metrics.json"), metrics)
        print(json.dumps(metrics, indent=1, sort_keys=True))
    print(f"wrote {len(rows)} predictions to {os.path.join(args.output_dir, 'predictions.jsonl')}")
    return 0


if __name__ == "__main__":
    main_wrapper(main)
