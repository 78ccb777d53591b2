#!/usr/bin/env python
"""Predict VQA2 answers with a trained model.

Writes ``result.json`` (EvalAI format: ``[{"question_id": int, "answer": str}]``, answer = argmax over the whole
vocabulary) for any split; for splits with answers also ``metrics.json``: ``vqa_accuracy`` (official VQA accuracy
×100, vqaEval.py), ``soft_accuracy`` (fraction), ``per_answer_type`` (×100).

    python VQA2/run_predict.py --model_dir runs/vqa2/best --imdb_dir data/vqa2/imdb \
        --features data/detectron_fix_100 --split test2015 --output_dir runs/vqa2/test2015

With ``--inference_model DIR`` instead of ``--model_dir``, a model exported by ``tools/export_model.py`` runs on
the ``paddle.inference`` predictor (same files written):

    python tools/export_model.py --model runs/vqa2/best --out export/vqa2
    python VQA2/run_predict.py --inference_model export/vqa2 --imdb_dir data/vqa2/imdb \
        --features data/detectron_fix_100 --split test2015 --output_dir runs/vqa2/test2015

``--onnx_model DIR`` (``tools/export_model.py --format onnx``) runs the exported model in onnxruntime, the same way.

One question about one image (its region features as a ``.npy`` [regions, 2048]) prints the ``--top_k`` answers
with their probabilities (``--json``: as JSON); nothing is written:

    python VQA2/run_predict.py --model_dir runs/vqa2/best --question "what color is the bus?" --features_file x.npy
"""

import json
import os

from visualbert.build import build_collator, build_dataset, check_model_fits, load_prediction_model
from visualbert.cli import main_wrapper, prediction_parser
from visualbert.tasks import VQA2
from visualbert.tokenizer import load_tokenizer


def main(argv=None):
    parser = prediction_parser(__doc__)
    VQA2.add_data_args(parser, train=False)
    args = parser.parse_args(argv)
    VQA2.check_data_args(args)
    model = load_prediction_model(args, VQA2)  # --model_dir, --inference_model or --onnx_model
    tokenizer = load_tokenizer(args.vocab_file)
    if args.question is not None:
        dataset = VQA2.one_example(args, tokenizer)
        check_model_fits(model, dataset, len(dataset.vocab))
        answers = VQA2.top_answers(model, dataset, args.top_k, build_collator(tokenizer), args.text_only)
        if args.json:
            print(json.dumps({"question": args.question, "answers": answers}, indent=1))
        else:
            print(f"Q: {args.question}")
            for rank, a in enumerate(answers, 1):
                print(f"{rank:2d}. {a['answer']}  ({a['probability']:.3f})")
        return 0
    dataset = build_dataset(VQA2, args.split, args, tokenizer)
    check_model_fits(model, dataset, len(dataset.vocab))
    result, metrics = VQA2.predict(model, dataset, args, build_collator(tokenizer))
    print(f"wrote {len(result)} answers to {os.path.join(args.output_dir, 'result.json')}")
    if metrics:
        print(json.dumps(metrics, indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":
    main_wrapper(main)
