#!/usr/bin/env python
"""Predict NLVR2 with a trained model: the official ``predictions.csv`` (``identifier,True|False``) and, when the
split has labels, ``metrics.json`` with ``accuracy`` and ``consistency`` (fractions), also printed.

    python NLVR2/run_predict.py --model_dir runs/nlvr2/best --data_dir data/nlvr2 \
        --features data/detectron_fix_144 --split dev --output_dir runs/nlvr2/dev

With ``--inference_model DIR`` instead of ``--model_dir``, a model exported by ``tools/export_model.py`` runs on
the ``paddle.inference`` predictor (same files written):

    python tools/export_model.py --model runs/nlvr2/best --out export/nlvr2
    python NLVR2/run_predict.py --inference_model export/nlvr2 --data_dir data/nlvr2 \
        --features data/detectron_fix_144 --split dev --output_dir runs/nlvr2/dev

``--onnx_model DIR`` (``tools/export_model.py --format onnx``) runs the exported model in onnxruntime, the same way.

One statement about one pair of images (their region features as ``.npy`` [regions, 1024]) prints True or False
with its probability (``--json``: as JSON); nothing is written:

    python NLVR2/run_predict.py --model_dir runs/nlvr2/best --sentence "The left image contains two dogs." \
        --left_features a.npy --right_features b.npy
"""

import json
import os

from visualbert.build import build_collator, build_dataset, check_model_fits, load_prediction_model
from visualbert.cli import main_wrapper, prediction_parser
from visualbert.tasks import NLVR2
from visualbert.tokenizer import load_tokenizer


def main(argv=None):
    parser = prediction_parser(__doc__)
    NLVR2.add_data_args(parser, train=False)
    args = parser.parse_args(argv)
    NLVR2.check_data_args(args)
    model = load_prediction_model(args, NLVR2)  # --model_dir, --inference_model or --onnx_model
    tokenizer = load_tokenizer(args.vocab_file)
    if args.sentence is not None:
        dataset = NLVR2.one_example(args, tokenizer)
        check_model_fits(model, dataset)
        verdict = NLVR2.judge(model, dataset, build_collator(tokenizer), args.text_only)
        if args.json:
            print(json.dumps(dict(sentence=args.sentence, **verdict), indent=1))
        else:
            print(f"{verdict['label']}  ({verdict['probability']:.3f})")
        return 0
    dataset = build_dataset(NLVR2, args.split, args, tokenizer)
    check_model_fits(model, dataset)
    predictions, metrics = NLVR2.predict(model, dataset, args, build_collator(tokenizer))
    print(f"wrote {len(predictions)} predictions to {os.path.join(args.output_dir, 'predictions.csv')}")
    if metrics:
        print(json.dumps(metrics, indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":
    main_wrapper(main)
