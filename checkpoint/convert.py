"""Convert a VisualBERT checkpoint (HF directory, original .th file, or a Paddle contest-port .pdparams) to a
Paddle model directory of this project.

    python checkpoint/convert.py --src /path/to/uclanlp/visualbert-vqa --dst checkpoint/visualbert-vqa
    python checkpoint/convert.py --src vqa_fine_tuned.th --name visualbert-vqa --dst checkpoint/visualbert-vqa
    python checkpoint/convert.py --src logs/vqa/vqa2_ft_model_10000.pdparams/model_state.pdparams --dst checkpoint/my-vqa
    python checkpoint/convert.py --src vcr_fine_tuned.th --name visualbert-vcr --dst checkpoint/visualbert-vcr

A contest-port state dict (chenkangyang/paddle_visual_bert) is recognised by its names; its head and sizes come
from the shapes (--name overrides the head), a DataParallel ``_layers.`` prefix is removed.

An original VCR .th keeps its detector.* weights: the result (VisualBertForVCR / VisualBertForVCRPreTraining)
computes its region features from the VCR images. HF VCR directories have no detector; they convert into the
plain head class (precomputed 512-d features), and the report says so.

The output holds config.json and model_state.pdparams and loads with
``visualbert.load_pretrained(DST)`` (or ``<HeadClass>.from_pretrained(DST)``).
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from visualbert.configuration import CONFIG_NAME  # noqa: E402
from visualbert.conversion import checkpoint_names, convert_checkpoint, convert_vcr_checkpoint  # noqa: E402


def _is_vcr(src, name):
    """A released VCR name, or an HF directory whose config is the multiple-choice (VCR) head."""
    if name is not None:
        return name.startswith("visualbert-vcr")
    config_path = os.path.join(src if os.path.isdir(src) else os.path.dirname(os.path.abspath(src)), CONFIG_NAME)
    if os.path.isfile(config_path):
        with open(config_path) as f:
            architectures = json.load(f).get("architectures") or []
        return bool(set(architectures) & {"VisualBertForMultipleChoice", "VisualBertForVCR", "VisualBertForVCRPreTraining"})
    return False


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--src", required=True, help="HF model dir (config.json + model.safetensors|pytorch_model.bin), a .th/.bin/.safetensors file, "
                             "or a contest-port model_state.pdparams (or the directory holding it)")
    parser.add_argument("--dst", required=True, help="output directory (must not exist unless --overwrite)")
    parser.add_argument("--name", default=None, help=f"released checkpoint name, needed for .th files; for a contest-port .pdparams it overrides "
                                                      f"the head read from the shapes: {', '.join(checkpoint_names())}")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --dst")
    args = parser.parse_args(argv)
    try:
        convert = convert_vcr_checkpoint if _is_vcr(args.src, args.name) else convert_checkpoint
        report = convert(args.src, args.dst, name=args.name, overwrite=args.overwrite)
    except (FileNotFoundError, FileExistsError, KeyError, ValueError, ImportError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"convert.py: error: {message}", file=sys.stderr)
        return 2
    print(json.dumps({k: v for k, v in report.items() if k != "transposed"}, indent=2))
    if report.get("note"):
        print(f"note: {report['note']}")
    print(f"wrote {args.dst} ({len(report['transposed'])} Linear weights transposed)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
