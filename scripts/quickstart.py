#!/usr/bin/env python
"""Quickstart (``make demo``): synthetic data → tiny VisualBERT trained from scratch on VQA2 and NLVR2 on CPU, with a
text-only run (regions masked out) and the majority baseline for each, then a results table; and Flickr30K Entities
grounding (R@1/5/10 on test beside the largest-box and random-box baselines and the upper bound).

The image and text-only runs of a task train side by side (one thread each; ``--sequential`` for one at a time),
logging to ``<out>/logs/``. NLVR2 uses the ``simple`` synthetic templates (presence statements about the left,
right or both images; one True and one False image pair per sentence, so the text alone scores 50%).
Writes ``<out>/results.json``, ``<out>/results.md`` and ``<out>/curves.png`` (the training curves of the four runs,
tools/plot_run.py: loss, learning rate and the evaluation every 100 steps, image and text-only runs side by side),
and copies them to ``logs/quickstart/``.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# tiny from-scratch model; initializer_range 0.1 (BERT's 0.02 leaves a model this small on a loss plateau for
# hundreds of steps on these data)
CONFIG = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 128,
          "initializer_range": 0.1}
# AdamW with the pooler trained, not the scripts' default (the original's BertAdam, pooler frozen): a tiny model from
# scratch at lr 1e-3 learns more in 500 steps with it (VQA2 val with regions, measured: 67.1 AdamW, 60.8 BertAdam).
TRAIN = ["--dropout", "0", "--learning_rate", "1e-3", "--warmup", "0.1", "--batch_size", "32", "--max_seq_length", "32",
         "--logging_steps", "10", "--save_steps", "100000", "--eval_steps", "100", "--disable_tqdm", "--overwrite_output_dir",
         "--check_features", "--optimizer", "adamw", "--train_pooler"]
VARIANTS = (("image", []), ("text_only", ["--text_only"]))
FLICKR_DATA = ["--flickr_images", "800", "--flickr_dim", "64"]  # 600 train / 100 val / 100 test images, 5 captions each


def flickr_table(metrics):
    """Markdown rows of the Flickr30K test metrics: the baselines, the trained model and the upper bound."""
    lines = ["| Flickr30K test (%) | largest box | random box | VisualBERT | upper bound |", "|---|---|---|---|---|"]
    for k in ("R@1", "R@5", "R@10"):
        vals = [metrics["baselines"]["largest_box"][k], metrics["baselines"]["random_box"][k], metrics[k],
                metrics["upper_bound"]]
        lines.append(f"| {k} | " + " | ".join(f"{100 * v:.1f}" for v in vals) + " |")
    return "\n".join(lines)


def sh(cmd):
    print("+", " ".join(cmd), flush=True)
    start = time.time()
    subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL if "--quiet" in sys.argv else None)
    return time.time() - start


def run_pair(cmds, logs, threads):
    """Runs the commands at the same time (one per variant), each logging to its file; raises if one fails."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    procs = []
    for cmd, log in zip(cmds, logs):
        print("+", " ".join(cmd), f"> {os.path.relpath(log, ROOT)}", flush=True)
        os.makedirs(os.path.dirname(log), exist_ok=True)
        with open(log, "w") as f:
            procs.append(subprocess.Popen(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, env=env))
    failed = [(cmd, log) for p, cmd, log in zip(procs, cmds, logs) if p.wait() != 0]
    for cmd, log in failed:
        with open(log) as f:
            tail = f.read()[-3000:]
        print(f"FAILED: {' '.join(cmd)}\n--- {log} (tail) ---\n{tail}", file=sys.stderr)
    if failed:
        raise SystemExit(1)


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", default=os.path.join(ROOT, "runs", "quickstart"))
    p.add_argument("--vqa_steps", type=int, default=500, help="optimizer steps per VQA2 training run")
    p.add_argument("--nlvr2_steps", type=int, default=400, help="optimizer steps per NLVR2 training run")
    p.add_argument("--num_images", type=int, default=3000, help="synthetic VQA2 images (3 questions each, 60%% train)")
    p.add_argument("--nlvr2_sets", type=int, default=5000,
                   help="synthetic NLVR2 sentences (2 image pairs each, 60%% train)")
    p.add_argument("--flickr_steps", type=int, default=300, help="optimizer steps of the Flickr30K grounding run")
    p.add_argument("--sequential", action="store_true",
                   help="one run at a time with all cores (default: the image and text-only runs side by side, "
                        "one thread each)")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args()
    py = sys.executable
    data = os.path.join(args.out, "data")
    t0 = time.time()
    if os.path.isdir(data):
        shutil.rmtree(data)  # no stale feature files from a run of another size
    sh([py, "tools/make_synthetic_data.py", "--out", data, "--tasks", "vqa,nlvr2,flickr30k", *FLICKR_DATA,
        "--num_images", str(args.num_images),
        "--nlvr2_sets", str(args.nlvr2_sets), "--nlvr2_templates", "simple", "--vqa_dim", "64", "--nlvr2_dim", "64",
        "--quiet"])
    os.makedirs(args.out, exist_ok=True)
    config = os.path.join(args.out, "model_config.json")
    with open(config, "w") as f:
        json.dump(CONFIG, f, indent=1)
    model = ["--config", config] + TRAIN
    vqa_data = ["--imdb_dir", f"{data}/vqa2/imdb", "--features", f"{data}/detectron_fix_100"]
    nlvr2_data = ["--data_dir", f"{data}/nlvr2", "--features", f"{data}/detectron_fix_144"]
    results = {"settings": {"vqa_steps": args.vqa_steps, "nlvr2_steps": args.nlvr2_steps,
                            "num_images": args.num_images, "nlvr2_sets": args.nlvr2_sets, "nlvr2_templates": "simple",
                            "model": "hidden 64, 2 layers, 4 heads, FFN 128, init std 0.1, from scratch",
                            "optimizer": "AdamW lr 1e-3, warmup 10%, batch 32"}}
    jobs = []
    for task, script, predict, data_args, splits, split, steps in (
            ("vqa2", "VQA2/run_vqa2.py", "VQA2/run_predict.py", vqa_data, ["--train_split", "train", "--eval_split", "val"],
             "val", args.vqa_steps),
            ("nlvr2", "NLVR2/run_nlvr2.py", "NLVR2/run_predict.py", nlvr2_data, [], "dev", args.nlvr2_steps)):
        train_cmds, predict_cmds, logs = [], [], []
        for variant, extra in VARIANTS:
            run = os.path.join(args.out, f"{task}_{variant}")
            train_cmds.append([py, script] + data_args + splits + ["--output_dir", run, "--max_steps", str(steps)]
                              + model + extra)
            predict_cmds.append([py, predict, "--model_dir", f"{run}/final", "--split", split, "--output_dir",
                                 f"{run}/{split}"] + data_args + extra)
            logs.append(os.path.join(args.out, "logs", f"{task}_{variant}"))
        jobs.append((train_cmds, predict_cmds, logs))
    for train_cmds, predict_cmds, logs in jobs:
        if args.sequential:
            for cmd in train_cmds + predict_cmds:
                sh(cmd)
        else:
            run_pair(train_cmds, [log + ".train.log" for log in logs], threads=1)
            run_pair(predict_cmds, [log + ".predict.log" for log in logs], threads=1)
    flickr = os.path.join(args.out, "flickr30k")
    flickr_data = ["--data_dir", f"{data}/flickr30k/Flickr30kEntities", "--features", f"{data}/flickr30k"]
    for cmd, log in (([py, "Flickr30K/run_flickr.py"] + flickr_data + ["--output_dir", flickr, "--max_steps",
                                                                       str(args.flickr_steps)] + model, "train"),
                     ([py, "Flickr30K/run_predict.py", "--model_dir", f"{flickr}/final", "--split", "test",
                       "--max_seq_length", "32", "--output_dir", f"{flickr}/test"] + flickr_data, "predict")):
        run_pair([cmd], [os.path.join(args.out, "logs", f"flickr30k.{log}.log")], threads=2)
    with open(os.path.join(flickr, "test", "metrics.json")) as f:
        results["flickr30k"] = json.load(f)
    for task, split in (("vqa2", "val"), ("nlvr2", "dev")):
        for variant, _ in VARIANTS:
            with open(os.path.join(args.out, f"{task}_{variant}", split, "metrics.json")) as f:
                results[f"{task}_{variant}"] = json.load(f)

    from visualbert.build import build_dataset
    from visualbert.fileio import write_json, write_text
    from visualbert.tasks import NLVR2, VQA2
    from visualbert.tokenizer import load_tokenizer

    ns = argparse.Namespace(imdb_dir=f"{data}/vqa2/imdb", features=f"{data}/detectron_fix_100", answers_file=None,
                            max_seq_length=32, seed=0, vocab_file=None, data_dir=f"{data}/nlvr2", max_regions=144)
    tok = load_tokenizer()
    results["vqa2_majority"] = VQA2.majority_baseline(build_dataset(VQA2, "train", ns, tok),
                                                      build_dataset(VQA2, "val", ns, tok))
    ns.features = f"{data}/detectron_fix_144"
    results["nlvr2_majority"] = NLVR2.majority_baseline(build_dataset(NLVR2, "train", ns, tok),
                                                        build_dataset(NLVR2, "dev", ns, tok))
    runs = [os.path.join(args.out, f"{task}_{variant}") for task in ("vqa2", "nlvr2") for variant, _ in VARIANTS]
    sh([py, "tools/plot_run.py"] + runs + ["-o", os.path.join(args.out, "curves.png"), "--labels"]
       + [f"{task} {variant.replace('_', ' ')}" for task in ("VQA2", "NLVR2") for variant, _ in VARIANTS]
       + ["--title", "make demo: VisualBERT (tiny, from scratch) with regions vs text only (regions masked)"])
    results["seconds"] = round(time.time() - t0, 1)

    rows = [("VQA2 val: VQA accuracy (official, %)", "vqa2", "vqa_accuracy", 1.0),
            ("NLVR2 dev: accuracy (%)", "nlvr2", "accuracy", 100.0),
            ("NLVR2 dev: consistency (%)", "nlvr2", "consistency", 100.0)]
    lines = ["| metric | majority baseline | text only (regions masked) | VisualBERT (with regions) |", "|---|---|---|---|"]
    for label, task, key, scale in rows:
        vals = [results[f"{task}_{v}"][key] * scale for v in ("majority", "text_only", "image")]
        lines.append(f"| {label} | " + " | ".join(f"{v:.1f}" for v in vals) + " |")
    table = "\n".join(lines) + "\n\n" + flickr_table(results["flickr30k"])
    print("\n" + table + f"\n\n({results['seconds']} s; {args.vqa_steps} VQA2 / {args.nlvr2_steps} NLVR2 steps per run, "
          f"{args.flickr_steps} Flickr30K steps)")
    write_json(os.path.join(args.out, "results.json"), results)
    write_text(os.path.join(args.out, "results.md"), table + "\n")
    logs = os.path.join(ROOT, "logs", "quickstart")
    os.makedirs(logs, exist_ok=True)
    for name in ("results.json", "results.md", "curves.png"):
        shutil.copyfile(os.path.join(args.out, name), os.path.join(logs, name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
