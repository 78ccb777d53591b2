"""Prove that a converted Paddle VisualBERT computes what the PyTorch (HF) reference computes.

One script for all nine released checkpoints:

    # real weights: a local copy of uclanlp/<name> (config.json + model.safetensors|pytorch_model.bin)
    python compare/compare.py --name visualbert-vqa --torch_dir /path/to/visualbert-vqa
    # no weights at hand: the reference model at the checkpoint's full config with random weights,
    # saved as an HF directory, converted by checkpoint/convert.py, compared
    python compare/compare.py --name visualbert-vqa
    python compare/compare.py --name all

Inputs are random and realistic (batch ≥ 2, padded texts of different lengths, different numbers of
valid regions, NLVR2 visual token types 0/1, VCR with 4 choices and image_text_alignment) and carry
labels so that the losses are compared too. A JSON report (max and mean |Δ| per output) is written to
``--report_dir``; the exit status is 1 if any output is above tolerance (task logits and losses max
|Δ| ≤ 1e-5; MLM logits max ≤ 5e-4 and mean ≤ 5e-5).
"""

import argparse
import logging
import os
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import visualbert  # noqa: E402,F401  (sets the CPU runtime defaults before paddle is imported)
from visualbert.configuration import PRETRAINED_CHECKPOINTS, checkpoint_info, config_for_checkpoint  # noqa: E402
from visualbert.fileio import write_json  # noqa: E402

# Input sizes per checkpoint family: realistic region counts (VQA 100 boxes; NLVR2 two images; VCR a few
# dozen boxes shared by 4 choices), short padded texts.
INPUT_SIZES = {
    "vqa": dict(batch_size=3, text_len=24, num_regions=100),
    "nlvr2": dict(batch_size=3, text_len=32, num_regions=72),
    "vcr": dict(batch_size=2, text_len=40, num_regions=24, num_choices=4, alignment_slots=3),
}


def _family(name):
    return name.split("-")[1]


def _convert(src, dst):
    """Runs the real converter CLI, as a user would."""
    cmd = [sys.executable, os.path.join(REPO, "checkpoint", "convert.py"), "--src", src, "--dst", dst]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"checkpoint/convert.py failed:\n{result.stderr}")


def compare_checkpoint(name, torch_dir=None, paddle_dir=None, seed=0, config_overrides=None):
    """Builds/loads both models for ``name``, runs them on the same inputs and returns the report dict."""
    import torch
    import transformers
    from parity import diff_outputs, make_hf_model, make_inputs, run_hf, run_paddle

    from visualbert import load_pretrained

    info = checkpoint_info(name)
    architecture = info["architecture"]
    started = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        if torch_dir is None:
            config = config_for_checkpoint(name, **(config_overrides or {}))
            hf_model = make_hf_model(config, architecture, seed=seed)
            torch_dir = os.path.join(tmp, "torch")
            hf_model.save_pretrained(torch_dir)  # model.safetensors + config.json, as on the hub
            source = "random weights at the checkpoint's config (no --torch_dir)"
        else:
            hf_model = getattr(transformers, architecture).from_pretrained(torch_dir, local_files_only=True)
            hf_model.eval()
            source = os.path.abspath(torch_dir)
        if paddle_dir is None:
            paddle_dir = os.path.join(tmp, "paddle")
            _convert(torch_dir, paddle_dir)
        model = load_pretrained(paddle_dir)
        model.eval()
        config = model.config
        if type(model).__name__ != architecture:
            raise RuntimeError(f"{paddle_dir} loads as {type(model).__name__}, expected {architecture}")

        sizes = dict(INPUT_SIZES[_family(name)])
        inputs = make_inputs(config, architecture, seed=seed, **sizes)
        with torch.no_grad():
            reference = run_hf(hf_model, inputs, architecture)
        ours = run_paddle(model, inputs, architecture)
    outputs = diff_outputs(ours, reference)
    return {
        "name": name,
        "architecture": architecture,
        "weights": source,
        "config": {k: getattr(config, k) for k in ("hidden_size", "num_hidden_layers", "visual_embedding_dim", "num_labels", "vocab_size")},
        "inputs": {k: list(v.shape) for k, v in inputs.items()},
        "outputs": outputs,
        "ok": all(o["ok"] for o in outputs.values()),
        "seconds": round(time.time() - started, 1),
        "versions": _versions(),
    }


def _versions():
    import paddle
    import torch
    import transformers

    return {"paddle": paddle.__version__, "torch": torch.__version__, "transformers": transformers.__version__}


def _print_report(report):
    status = "OK" if report["ok"] else "FAIL"
    print(f"[{status}] {report['name']} ({report['architecture']}, {report['seconds']} s)")
    for out_name, o in report["outputs"].items():
        mean_tol = "" if o["mean_tolerance"] is None else f" (≤ {o['mean_tolerance']:.0e})"
        print(f"    {out_name:26s} {str(o['shape']):22s} max|Δ| {o['max_abs_diff']:.3e} (≤ {o['max_tolerance']:.0e})  "
              f"mean|Δ| {o['mean_abs_diff']:.3e}{mean_tol}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", required=True, help=f"checkpoint name or 'all': {', '.join(PRETRAINED_CHECKPOINTS)}")
    parser.add_argument("--torch_dir", default=None, help="local HF directory of the real checkpoint")
    parser.add_argument("--paddle_dir", default=None, help="an already converted Paddle directory (default: convert now)")
    parser.add_argument("--report_dir", default=os.path.join(REPO, "compare", "reports"), help="where <name>.json goes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tiny", action="store_true", help="2-layer hidden-64 config (smoke test of the script itself)")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.ERROR)
    names = list(PRETRAINED_CHECKPOINTS) if args.name == "all" else [args.name]
    try:
        for name in names:
            checkpoint_info(name)
    except KeyError as err:
        parser.error(err.args[0])
    if len(names) > 1 and (args.torch_dir or args.paddle_dir):
        parser.error("--torch_dir/--paddle_dir belong to one checkpoint; pass a single --name")
    if args.torch_dir is not None and not os.path.isdir(args.torch_dir):
        parser.error(f"--torch_dir {args.torch_dir!r} is not a directory")
    overrides = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128) if args.tiny else None

    all_ok = True
    for name in names:
        # A different seed per name, so that the nine reports are nine independent draws.
        seed = args.seed + list(PRETRAINED_CHECKPOINTS).index(name)
        report = compare_checkpoint(name, args.torch_dir, args.paddle_dir, seed, overrides)
        report["seed"] = seed
        report["tiny"] = bool(args.tiny)
        _print_report(report)
        write_json(os.path.join(args.report_dir, f"{name}{'-tiny' if args.tiny else ''}.json"), report, sort_keys=False)
        all_ok &= report["ok"]
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
