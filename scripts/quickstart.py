#!/usr/bin/env python
"""Quickstart (``make demo``): synthetic data → tiny VisualBERT fine-tuned on VQA2 and NLVR2 on CPU, with a
text-only run (regions masked out) and the majority baseline for each, then a results table.

Writes ``<out>/results.json`` and ``<out>/results.md``, and copies both to ``logs/quickstart/``.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

MODEL = ["--hidden_size", "64", "--num_hidden_layers", "2", "--num_attention_heads", "4", "--intermediate_size", "128",
         "--dropout", "0", "--learning_rate", "2e-3", "--warmup", "0.05", "--batch_size", "32", "--max_seq_length", "32",
         "--logging_steps", "50", "--save_steps", "100000", "--no_eval", "--disable_tqdm", "--overwrite_output_dir"]


def sh(cmd):
    print("+", " ".join(cmd), flush=True)
    start = time.time()
    subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL if "--quiet" in sys.argv else None)
    return time.time() - start


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", default=os.path.join(ROOT, "runs", "quickstart"))
    p.add_argument("--steps", type=int, default=300, help="optimizer steps per training run")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args()
    py = sys.executable
    data = os.path.join(args.out, "data")
    t0 = time.time()
    sh([py, "tools/make_synthetic_data.py", "--out", data, "--tasks", "vqa,nlvr2", "--num_images", "600",
        "--nlvr2_sets", "500", "--vqa_dim", "64", "--nlvr2_dim", "64", "--quiet"])
    vqa_data = ["--imdb_dir", f"{data}/vqa2/imdb", "--features", f"{data}/detectron_fix_100"]
    nlvr2_data = ["--data_dir", f"{data}/nlvr2", "--features", f"{data}/detectron_fix_144"]
    steps = ["--max_steps", str(args.steps)]
    results = {"settings": {"steps": args.steps, "model": "hidden 64, 2 layers, 4 heads, FFN 128, from scratch"}}
    for variant, extra in (("image", []), ("text_only", ["--text_only"])):
        run = os.path.join(args.out, f"vqa2_{variant}")
        sh([py, "VQA2/run_vqa2.py"] + vqa_data + ["--train_split", "train", "--output_dir", run] + MODEL + steps + extra)
        sh([py, "VQA2/run_predict.py", "--model_dir", f"{run}/final", "--split", "val", "--output_dir", f"{run}/val"]
           + vqa_data + extra)
        run = os.path.join(args.out, f"nlvr2_{variant}")
        sh([py, "NLVR2/run_nlvr2.py"] + nlvr2_data + ["--output_dir", run] + MODEL + steps + extra)
        sh([py, "NLVR2/run_predict.py", "--model_dir", f"{run}/final", "--split", "dev", "--output_dir", f"{run}/dev"]
           + nlvr2_data + extra)
    for variant in ("image", "text_only"):
        with open(os.path.join(args.out, f"vqa2_{variant}", "val", "metrics.json")) as f:
            results[f"vqa2_{variant}"] = json.load(f)
        with open(os.path.join(args.out, f"nlvr2_{variant}", "dev", "metrics.json")) as f:
            results[f"nlvr2_{variant}"] = json.load(f)

    from visualbert.tasks import NLVR2, VQA2, load_tokenizer_for

    ns = argparse.Namespace(imdb_dir=f"{data}/vqa2/imdb", features=f"{data}/detectron_fix_100", answers_file=None,
                            max_seq_length=32, seed=0, vocab_file=None, data_dir=f"{data}/nlvr2", max_regions=144)
    tok = load_tokenizer_for(ns)
    results["vqa2_majority"] = VQA2.majority_baseline(VQA2.dataset(ns, tok, "train"), VQA2.dataset(ns, tok, "val"))
    ns.features = f"{data}/detectron_fix_144"
    results["nlvr2_majority"] = NLVR2.majority_baseline(NLVR2.dataset(ns, tok, "train"), NLVR2.dataset(ns, tok, "dev"))
    results["seconds"] = round(time.time() - t0, 1)

    rows = [("VQA2 val: VQA accuracy (official, %)", "vqa2", "vqa_accuracy", 1.0),
            ("NLVR2 dev: accuracy (%)", "nlvr2", "accuracy", 100.0),
            ("NLVR2 dev: consistency (%)", "nlvr2", "consistency", 100.0)]
    lines = ["| metric | majority baseline | text only (regions masked) | VisualBERT (with regions) |", "|---|---|---|---|"]
    for label, task, key, scale in rows:
        vals = [results[f"{task}_{v}"][key] * scale for v in ("majority", "text_only", "image")]
        lines.append(f"| {label} | " + " | ".join(f"{v:.1f}" for v in vals) + " |")
    table = "\n".join(lines)
    print("\n" + table + f"\n\n({results['seconds']} s, {args.steps} steps per run)")
    from visualbert.metrics import write_json_atomic

    write_json_atomic(os.path.join(args.out, "results.json"), results)
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write(table + "\n")
    logs = os.path.join(ROOT, "logs", "quickstart")
    os.makedirs(logs, exist_ok=True)
    for name in ("results.json", "results.md"):
        shutil.copyfile(os.path.join(args.out, name), os.path.join(logs, name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
