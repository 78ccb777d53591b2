"""Export a VQA or NLVR2 model to a static graph for ``paddle.inference``.

    python tools/export_model.py --model checkpoint/visualbert-vqa --out export/vqa
    python tools/export_model.py --model checkpoint/visualbert-nlvr2 --out export/nlvr2 --check

``--model`` is a directory written by ``checkpoint/convert.py`` or ``save_pretrained`` holding a
``VisualBertForQuestionAnswering`` or ``VisualBertForVisualReasoning``. The output (``model.json`` or
``.pdmodel``, ``model.pdiparams``, ``export.json``) has dynamic batch, text-length and region dimensions and
is what ``--inference_model DIR`` of the predict scripts and ``visualbert.inference.Predictor`` load.
``--check`` runs the exported predictor and the dygraph model on random inputs of two different shapes and
fails if the logits differ by more than ``--tolerance`` (default 1e-5).

``--format onnx`` writes ``model.onnx`` (paddle2onnx, opset 13, the same dynamic dimensions) and ``export.json``
instead, for ``--onnx_model DIR`` of the predict scripts (onnxruntime; ``--check`` compares it with dygraph too):

    python tools/export_model.py --model runs/vqa2/best --out export/vqa2_onnx --format onnx --check
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import visualbert  # noqa: E402  (runtime defaults before paddle)
from visualbert.inference import (  # noqa: E402
    EXPORT_FORMATS,
    EXPORTABLE,
    OnnxPredictor,
    Predictor,
    export_model,
    export_onnx,
)


def check(model, out_dir, tolerance=1e-5, use_mkldnn=False, export_format="paddle"):
    """Max |Δ| between the exported predictor (paddle.inference, or onnxruntime for ``export_format="onnx"``) and
    dygraph over two padded input shapes; raises above ``tolerance``."""
    import numpy as np
    import paddle

    from visualbert.inputs import make_inputs

    predictor = OnnxPredictor(out_dir) if export_format == "onnx" else Predictor(out_dir, use_mkldnn=use_mkldnn)
    worst = 0.0
    for batch, text_len, regions in ((2, 16, 10), (3, 24, 7)):
        inputs = make_inputs(model.config, type(model).__name__, batch_size=batch, text_len=text_len,
                             num_regions=regions, with_labels=False)
        got = predictor.run(inputs)["logits"]
        with paddle.no_grad():
            ref = model(**{k: paddle.to_tensor(v) for k, v in inputs.items()})["logits"].numpy()
        worst = max(worst, float(np.abs(got - ref).max()))
    if worst > tolerance:
        raise ValueError(f"exported model differs from dygraph by {worst:.2e} > {tolerance:.0e}")
    return worst


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="Paddle model directory (config.json + model_state.pdparams)")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--format", choices=EXPORT_FORMATS, default="paddle",
                        help="paddle: model.json/.pdiparams for paddle.inference (--inference_model); onnx: model.onnx "
                             "for onnxruntime (--onnx_model), via paddle2onnx")
    parser.add_argument("--check", action="store_true", help="compare exported and dygraph logits")
    parser.add_argument("--tolerance", type=float, default=1e-5)
    parser.add_argument("--overwrite", action="store_true", help="replace an export already in --out")
    args = parser.parse_args(argv)
    if os.path.isdir(args.out) and not args.overwrite:
        existing = sorted(n for n in os.listdir(args.out) if n == "export.json" or n.startswith("model."))
        if existing:
            print(f"export_model.py: error: {args.out} already holds an export ({', '.join(existing)}); pass "
                  "--overwrite to replace it", file=sys.stderr)
            return 2
    try:
        model = visualbert.load_pretrained(args.model)
    except (FileNotFoundError, KeyError, ValueError) as err:
        print(f"export_model.py: error: {err}", file=sys.stderr)
        return 2
    if type(model).__name__ not in EXPORTABLE:
        print(f"export_model.py: error: {args.model} holds a {type(model).__name__}; export supports "
              f"{', '.join(EXPORTABLE)}", file=sys.stderr)
        return 2
    if args.format == "onnx":
        print(f"wrote {export_onnx(model, args.out)} and export.json ({type(model).__name__})")
    else:
        prefix = export_model(model, args.out)
        print(f"wrote {prefix}.* and export.json ({type(model).__name__})")
    if args.check:
        try:
            worst = check(model, args.out, args.tolerance, export_format=args.format)
        except ValueError as err:
            print(f"export_model.py: error: {err}", file=sys.stderr)
            return 1
        print(f"exported vs dygraph logits: max |Δ| {worst:.2e} (tolerance {args.tolerance:.0e})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
