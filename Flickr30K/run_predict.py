#!/usr/bin/env python
"""Ground the phrases of a Flickr30K Entities split (val or test) with a trained model.

Writes ``predictions.jsonl`` (one line per phrase: ``image_id``, ``caption_index``, ``phrase``, ``chain_id``,
``types``, ``gt_boxes``, the top-10 ``boxes`` best first with their softmax ``scores`` and whether each is a
``positive``) and ``metrics.json``: ``R@1``, ``R@5``, ``R@10`` over every phrase with a box, ``upper_bound`` (the
phrases with a proposal of IoU >= 0.5), ``per_type``, and the largest-box and random-box ``baselines`` of the same
phrases (fractions).

    python Flickr30K/run_predict.py --model_dir runs/flickr30k/best --data_dir data/flickr30k/Flickr30kEntities \
        --features data/flickr30k --split test --output_dir runs/flickr30k/test
"""

import json
import os

from visualbert.build import build_collator, build_dataset, check_model_fits, load_prediction_model
from visualbert.cli import UsageError, check_prediction_outputs, main_wrapper, prediction_parser
from visualbert.tasks import Flickr30K
from visualbert.tokenizer import load_tokenizer


def main(argv=None):
    parser = prediction_parser(__doc__)
    Flickr30K.add_data_args(parser, train=False)
    args = parser.parse_args(argv)
    Flickr30K.check_data_args(args)
    if not args.output_dir:
        raise UsageError("--output_dir is required (where predictions.jsonl and metrics.json are written)")
    check_prediction_outputs(args.output_dir, ("predictions.jsonl", "metrics.json"), args.overwrite)
    model = load_prediction_model(args, Flickr30K)
    tokenizer = load_tokenizer(args.vocab_file)
    dataset = build_dataset(Flickr30K, args.split, args, tokenizer)
    check_model_fits(model, dataset)
    rows, metrics = Flickr30K.predict(model, dataset, args, build_collator(tokenizer))
    print(f"wrote {len(rows)} grounded phrases to {os.path.join(args.output_dir, 'predictions.jsonl')}")
    print(json.dumps({k: v for k, v in metrics.items() if k != "per_type"}, indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":
    main_wrapper(main)
