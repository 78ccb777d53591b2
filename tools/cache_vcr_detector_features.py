#!/usr/bin/env python
"""Caches the VCR detector's 512-d region features (``obj_reps``) of every annotation line.

    python tools/cache_vcr_detector_features.py --model_dir checkpoint/visualbert-vcr \
        --annotations X_VCR/val.jsonl --images X_VCR/vcr1images --out features/vcr_val

Writes ``OUT/<annot_id>.npy`` (float32 [1 + used boxes, 512]; row 0 = the whole image), the boxes chosen as the
original does (referenced ones, "everyone" = every person, whole image first). Read them back with
``VCRImageDataset(..., features=OUT)`` and a ``VisualBertForMultipleChoice`` (the converted model's VisualBERT
part). The detector runs in evaluation mode on centred images: the training-time random padding and the
detector's fine-tuning are not in the cache.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model_dir", required=True, help="a converted VisualBertForVCR / VisualBertForVCRPreTraining directory")
    p.add_argument("--annotations", required=True, help="VCR {train,val,test}.jsonl")
    p.add_argument("--images", required=True, help="vcr1images (img_fn and metadata_fn are relative to it)")
    p.add_argument("--out", required=True, help="output directory (one .npy per annotation line)")
    p.add_argument("--vocab_file", default=None, help="bert-base-uncased vocab.txt (default: the packaged copy)")
    p.add_argument("--batch_size", type=int, default=8)
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    args = p.parse_args(argv)

    from visualbert.data import Collator, DataFormatError
    from visualbert.data.vcr_images import VCRImageDataset
    from visualbert.fileio import save_npy
    from visualbert.modeling import load_pretrained
    from visualbert.tokenizer import load_tokenizer
    from visualbert.vcr_model import VCR_MODEL_CLASSES

    try:
        import paddle

        model = load_pretrained(args.model_dir)
        if type(model).__name__ not in VCR_MODEL_CLASSES:
            raise ValueError(f"{args.model_dir} holds a {type(model).__name__}, which has no detector "
                             f"(convert an original vcr_*.th with checkpoint/convert.py --name visualbert-vcr)")
        dataset = VCRImageDataset(args.annotations, args.images, load_tokenizer(args.vocab_file), mode="qa")
        collate = Collator()
        model.eval()
        written = 0
        with paddle.no_grad():
            for start in range(0, len(dataset), args.batch_size):
                samples = [dataset[i] for i in range(start, min(len(dataset), start + args.batch_size))]
                batch = collate(samples)
                regions = model.regions(batch["images"], batch["boxes"], batch["box_mask"], batch["objects"],
                                        batch["segms"])["obj_reps"].numpy()
                for sample, features in zip(samples, regions):
                    save_npy(os.path.join(args.out, sample["annot_id"] + ".npy"), features[: len(sample["boxes"])])
                    written += 1
    except (FileNotFoundError, DataFormatError, ValueError, KeyError) as err:
        if args.debug:
            raise
        print(f"cache_vcr_detector_features.py: error: {err}", file=sys.stderr)
        return 2
    print(f"wrote detector features of {written} annotation lines to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
