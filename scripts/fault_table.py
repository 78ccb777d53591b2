#!/usr/bin/env python
"""Reruns the scripted cases of tests/fault_cases.md and prints their classification as a markdown table.

    python scripts/fault_table.py --work /tmp/fault            # all scripted cases (~10 s each on 2 cores)
    python scripts/fault_table.py --work /tmp/fault --cases 1,19,37

Each case copies a tiny synthetic dataset, breaks it, runs a script in a subprocess with a timeout and classifies:
HANG (no exit within --timeout), DAMAGE (a file that must survive is gone or changed), SILENT (exit 0 where an
error was expected), CLEAR (the expected exit status and one ``error:`` line containing the expected text, no
traceback), UNCLEAR (anything else: the last stderr line is shown), OK (a success case that succeeded).
Case numbers are those of tests/fault_cases.md; cases that need a GPU, a signal at a precise moment or engine
hooks are listed there and checked by the tests named in it.
"""

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--hidden_size", "32", "--num_hidden_layers", "1", "--num_attention_heads", "2", "--intermediate_size", "64",
        "--disable_tqdm", "--batch_size", "4", "--num_train_epochs", "1", "--max_seq_length", "40",
        "--logging_steps", "1", "--save_steps", "2"]
DIM = 32
VQA_FILE = "detectron_fix_100/fc6/vqa/train2014/COCO_train2014_000000000005.npy"
TEST_FILE = "detectron_fix_100/fc6/vqa/test2015/COCO_test2015_000000000017.npy"
NLVR2_FILE = "detectron_fix_144/train/feature_1024dim/train-0-0-img1.png.npy"
VCR_FILE = "vcr/features/synthetic_movie_train/clip_0000@0.npy"


def vqa(b):
    return ["--imdb_dir", f"{b}/vqa2/imdb", "--features", f"{b}/detectron_fix_100", "--train_split", "train",
            "--eval_split", "val"]


def nlvr2(b):
    return ["--data_dir", f"{b}/nlvr2", "--features", f"{b}/detectron_fix_144"]


def vcr(b):
    return ["--data_dir", f"{b}/vcr", "--features", f"{b}/vcr/features"]


def poke(path, fn):
    a = np.load(path)
    np.save(path, fn(a))


def rewrite_jsonl(path, line, **changes):
    with open(path) as f:
        rows = [json.loads(x) for x in f if x.strip()]
    for k, v in changes.items():
        if v is KeyError:
            rows[line].pop(k)
        else:
            rows[line][k] = v
    with open(path, "w") as f:
        f.write("".join(json.dumps(r) + "\n" for r in rows))


def rewrite_imdb(path, index, **changes):
    data = np.load(path, allow_pickle=True)
    entry = dict(data[index + 1])
    entry.update(changes)
    data[index + 1] = entry
    np.save(path, data, allow_pickle=True)


def digest(paths):
    h = hashlib.sha256()
    for p in sorted(paths):
        for d, _, files in sorted(os.walk(p)) if os.path.isdir(p) else [(os.path.dirname(p), [], [os.path.basename(p)])]:
            for f in sorted(files):
                full = os.path.join(d, f)
                h.update(full.encode())
                with open(full, "rb") as fh:
                    h.update(fh.read())
    return h.hexdigest()


# case: (number, title, setup(b) -> None, argv(b) -> list, expected exit, expected text, paths that must survive(b))
def cases(trained):
    train_vqa = ["VQA2/run_vqa2.py"]
    out = lambda b: ["--output_dir", f"{b}/out"]  # noqa: E731
    return [
        (1, "VQA feature file missing, 0 workers", lambda b: os.remove(f"{b}/{VQA_FILE}"),
         lambda b: train_vqa + vqa(b) + TINY + out(b), 2, "COCO_train2014_000000000005.npy does not exist", None),
        (2, "same, 1 worker", lambda b: os.remove(f"{b}/{VQA_FILE}"),
         lambda b: train_vqa + vqa(b) + TINY + out(b) + ["--num_workers", "1"], 2, "does not exist", None),
        (3, "same, 2 workers", lambda b: os.remove(f"{b}/{VQA_FILE}"),
         lambda b: train_vqa + vqa(b) + TINY + out(b) + ["--num_workers", "2"], 2, "does not exist", None),
        (4, "VQA feature file truncated", lambda b: _truncate(f"{b}/{VQA_FILE}"),
         lambda b: train_vqa + vqa(b) + TINY + out(b), 2, "truncated", None),
        (5, "VQA feature file of wrong width", lambda b: np.save(f"{b}/{VQA_FILE}", np.ones((4, 16), np.float32)),
         lambda b: train_vqa + vqa(b) + TINY + out(b), 2, "expected feature width", None),
        (7, "feature missing at prediction", lambda b: os.remove(f"{b}/{TEST_FILE}"),
         lambda b: ["VQA2/run_predict.py", "--model_dir", f"{trained}/vqa/final", "--imdb_dir", f"{b}/vqa2/imdb",
                    "--features", f"{b}/detectron_fix_100", "--split", "test2015"] + out(b), 2, "does not exist", None),
        (8, "NLVR2 label missing on one line", lambda b: rewrite_jsonl(f"{b}/nlvr2/train.json", 4, label=KeyError),
         lambda b: ["NLVR2/run_nlvr2.py"] + nlvr2(b) + TINY + out(b), 2, "has no label", None),
        (10, "VCR bad object reference", lambda b: rewrite_jsonl(f"{b}/vcr/train.jsonl", 1, question=["who", [9], "?"]),
         lambda b: ["VCR/run_vcr.py"] + vcr(b) + TINY + out(b), 2, "refers to object 9", None),
        (19, "--overwrite_output_dir on user files", lambda b: _user_dir(f"{b}/out"),
         lambda b: train_vqa + vqa(b) + TINY + out(b) + ["--overwrite_output_dir"], 2, "not a run of ours",
         lambda b: [f"{b}/out/thesis.tex"]),
        (20, "--output_dir = the data root", None,
         lambda b: train_vqa + vqa(b) + TINY + ["--output_dir", b, "--overwrite_output_dir"], 2, "holds an input",
         lambda b: [f"{b}/detectron_fix_100", f"{b}/vqa2"]),
        (21, "--output_dir = the feature root", None,
         lambda b: train_vqa + vqa(b) + TINY + ["--output_dir", f"{b}/detectron_fix_100", "--overwrite_output_dir"], 2,
         "holds an input", lambda b: [f"{b}/detectron_fix_100"]),
        (27, "pack_features onto an existing store", lambda b: _pack(b),
         lambda b: ["tools/pack_features.py", "--features", f"{b}/detectron_fix_100/fc6/vqa/train2014", "--out",
                    f"{b}/packed", "--quiet"], 2, "already holds a packed store", lambda b: [f"{b}/packed"]),
        (30, "make_synthetic_data into a user dir", lambda b: _user_dir(f"{b}/u"),
         lambda b: ["tools/make_synthetic_data.py", "--out", f"{b}/u", "--tasks", "nlvr2", "--nlvr2_sets", "3",
                    "--quiet", "--overwrite"], 2, "holds no synthetic dataset", lambda b: [f"{b}/u/thesis.tex"]),
        (34, "VQA predict onto an existing result.json", lambda b: _result(b),
         lambda b: ["VQA2/run_predict.py", "--model_dir", f"{trained}/vqa/final", "--imdb_dir", f"{b}/vqa2/imdb",
                    "--features", f"{b}/detectron_fix_100", "--split", "test2015"] + out(b), 2, "exists already",
         lambda b: [f"{b}/out/result.json"]),
        (37, "NaN in one region", lambda b: poke(f"{b}/{VQA_FILE}", lambda a: _set(a, np.nan)),
         lambda b: train_vqa + vqa(b) + TINY + out(b), 2, "non-finite", None),
        (38, "inf in one region", lambda b: poke(f"{b}/{VQA_FILE}", lambda a: _set(a, np.inf)),
         lambda b: train_vqa + vqa(b) + TINY + out(b), 2, "non-finite", None),
        (40, "data.check --read on a NaN file", lambda b: poke(f"{b}/{VQA_FILE}", lambda a: _set(a, np.nan)),
         lambda b: ["-m", "visualbert.data.check", "--task", "vqa", "--annotations",
                    f"{b}/vqa2/imdb/imdb_train2014.npy", "--features", f"{b}/detectron_fix_100", "--read", "--dim",
                    str(DIM)], 1, None, None),
        (41, "prediction with a NaN file", lambda b: poke(f"{b}/{TEST_FILE}", lambda a: _set(a, np.nan)),
         lambda b: ["VQA2/run_predict.py", "--model_dir", f"{trained}/vqa/final", "--imdb_dir", f"{b}/vqa2/imdb",
                    "--features", f"{b}/detectron_fix_100", "--split", "test2015"] + out(b), 2, "non-finite", None),
        (42, "integer features", lambda b: poke(f"{b}/{VQA_FILE}", lambda a: a.astype(np.int32)),
         lambda b: train_vqa + vqa(b) + TINY + out(b), 2, "dtype int32", None),
        (44, "answer vocabulary matching none", lambda b: _write(f"{b}/foreign.txt", "<unk>\nzzz\n"),
         lambda b: train_vqa + vqa(b) + TINY + out(b) + ["--answers_file", f"{b}/foreign.txt"], 2,
         "below the minimum", None),
        (46, "empty VQA question",
         lambda b: rewrite_imdb(f"{b}/vqa2/imdb/imdb_train2014.npy", 3, question_str="", question_tokens=None),
         lambda b: train_vqa + vqa(b) + TINY + out(b), 2, "the question is empty", None),
        (47, "null VQA question",
         lambda b: rewrite_imdb(f"{b}/vqa2/imdb/imdb_train2014.npy", 3, question_str="None", question_tokens=None),
         lambda b: train_vqa + vqa(b) + TINY + out(b), 2, "the question is null", None),
        (48, "empty NLVR2 sentence", lambda b: rewrite_jsonl(f"{b}/nlvr2/train.json", 2, sentence=""),
         lambda b: ["NLVR2/run_nlvr2.py"] + nlvr2(b) + TINY + out(b), 2, "is empty", None),
        (52, "--mask_prob 2.0", None,
         lambda b: ["run_pretrain.py", "--dataset", "nlvr2"] + nlvr2(b) + TINY + out(b) + ["--mask_prob", "2.0"], 2,
         "probability", None),
        (54, "--max_seq_length 10000", None,
         lambda b: train_vqa + vqa(b) + TINY + out(b) + ["--max_seq_length", "10000"], 2, "position table", None),
        (56, "Q->A model as --qar_model_dir", None,
         lambda b: ["VCR/run_predict.py", "--qar_model_dir", f"{trained}/vcr/final", "--split", "val"] + vcr(b)
         + out(b), 2, "was trained with --mode qa", None),
        (59, "--batch_size 0 at prediction", None,
         lambda b: ["VQA2/run_predict.py", "--model_dir", f"{trained}/vqa/final", "--imdb_dir", f"{b}/vqa2/imdb",
                    "--features", f"{b}/detectron_fix_100", "--split", "test2015", "--batch_size", "0"] + out(b),
         2, "positive", None),
        (61, "imdb without its header", lambda b: _headerless(f"{b}/vqa2/imdb/imdb_train2014.npy"),
         lambda b: train_vqa + vqa(b) + TINY + out(b), 2, "imdb header", None),
        (63, "truncated weights in --model_dir", lambda b: _copy_truncated(f"{trained}/vqa/final", f"{b}/model"),
         lambda b: ["VQA2/run_predict.py", "--model_dir", f"{b}/model", "--imdb_dir", f"{b}/vqa2/imdb", "--features",
                    f"{b}/detectron_fix_100", "--split", "test2015"] + out(b), 2, "model_state.pdparams", None),
        (66, "missing --features root", None,
         lambda b: train_vqa + vqa(b)[:2] + ["--features", "/nonexistent", "--train_split", "train"] + TINY + out(b), 2,
         "/nonexistent", None),
        # added in phase 2
        (9, "NLVR2 feature file missing", lambda b: os.remove(f"{b}/{NLVR2_FILE}"),
         lambda b: ["NLVR2/run_nlvr2.py"] + nlvr2(b) + TINY + out(b), 2, "train-0-0-img1.png.npy does not exist", None),
        (11, "VCR feature file missing", lambda b: os.remove(f"{b}/{VCR_FILE}"),
         lambda b: ["VCR/run_vcr.py"] + vcr(b) + TINY + out(b), 2, "does not exist", None),
        (22, "--output_dir containing --model_name_or_path", lambda b: shutil.copytree(f"{trained}/vqa/final",
                                                                                      f"{b}/out/model"),
         lambda b: train_vqa + vqa(b) + TINY + out(b) + ["--model_name_or_path", f"{b}/out/model",
                                                         "--overwrite_output_dir"], 2, "holds an input",
         lambda b: [f"{b}/out/model"]),
        (23, "--overwrite_output_dir on a run of ours", lambda b: shutil.copytree(f"{trained}/vqa", f"{b}/out"),
         lambda b: train_vqa + vqa(b) + TINY + out(b) + ["--overwrite_output_dir"], 0, None, None),
        (24, "a run of ours plus a user file", lambda b: (shutil.copytree(f"{trained}/vqa", f"{b}/out"),
                                                         _write(f"{b}/out/notes.txt", "mine")),
         lambda b: train_vqa + vqa(b) + TINY + out(b) + ["--overwrite_output_dir"], 2, "notes.txt",
         lambda b: [f"{b}/out/notes.txt", f"{b}/out/args.json"]),
        (25, "a resume that is rejected (other --batch_size)", lambda b: shutil.copytree(f"{trained}/vqa", f"{b}/out"),
         lambda b: train_vqa + vqa(b) + TINY + out(b) + ["--resume_from", "latest", "--batch_size", "2"], 2,
         "/out/step_9", lambda b: [f"{b}/out/args.json"]),
        (35, "VCR predict onto an existing predictions.jsonl", lambda b: _write(f"{b}/predictions.jsonl", "{}\n"),
         lambda b: ["VCR/run_predict.py", "--model_dir", f"{trained}/vcr/final", "--split", "val"] + vcr(b)
         + ["--output_dir", b], 2, "exists already", lambda b: [f"{b}/predictions.jsonl"]),
        (36, "--output_dir is a file", lambda b: _write(f"{b}/f", "x"),
         lambda b: train_vqa + vqa(b) + TINY + ["--output_dir", f"{b}/f"], 2, "is a file", lambda b: [f"{b}/f"]),
        (49, "null NLVR2 sentence", lambda b: rewrite_jsonl(f"{b}/nlvr2/train.json", 2, sentence=None),
         lambda b: ["NLVR2/run_nlvr2.py"] + nlvr2(b) + TINY + out(b), 2, "is null", None),
        (53, "--mask_prob -0.1", None,
         lambda b: ["run_pretrain.py", "--dataset", "nlvr2"] + nlvr2(b) + TINY + out(b) + ["--mask_prob", "-0.1"], 2,
         "probability", None),
        (55, "--max_seq_length 2", None,
         lambda b: train_vqa + vqa(b) + TINY + out(b) + ["--max_seq_length", "2"], 2, "leaves no room", None),
        (57, "non-finite loss (--learning_rate 1e30)", None,
         lambda b: train_vqa + vqa(b) + TINY + out(b) + ["--learning_rate", "1e30", "--max_grad_norm", "0"], 1,
         "training loss is nan", None),
        (60, "--batch_size 0 at training", None,
         lambda b: train_vqa + vqa(b) + TINY + out(b) + ["--batch_size", "0"], 2, "--batch_size must be positive", None),
        (64, "truncated weights in the latest checkpoint at resume",
         lambda b: (shutil.copytree(f"{trained}/vqa", f"{b}/out"), _truncate(f"{b}/out/step_9/model_state.pdparams")),
         lambda b: train_vqa + vqa(b) + TINY + out(b) + ["--resume_from", "latest"], 0, None, None),
        (67, "missing --answers_file", None,
         lambda b: train_vqa + vqa(b) + TINY + out(b) + ["--answers_file", "/nope.txt"], 2, "/nope.txt", None),
        (74, "corrupt trainer_state.json in the latest checkpoint",
         lambda b: (shutil.copytree(f"{trained}/vqa", f"{b}/out"), _write(f"{b}/out/step_9/trainer_state.json", "{")),
         lambda b: train_vqa + vqa(b) + TINY + out(b) + ["--resume_from", "latest"], 0, None, None),
        (75, "every checkpoint corrupt, --resume_from latest",
         lambda b: (shutil.copytree(f"{trained}/vqa", f"{b}/out"),
                    [_write(f"{b}/out/step_{s}/trainer_state.json", "{") for s in (2, 4, 6, 8, 9)]),
         lambda b: train_vqa + vqa(b) + TINY + out(b) + ["--resume_from", "latest"], 2, "no usable checkpoint",
         lambda b: [f"{b}/out/args.json"]),
    ]


def _set(a, value):
    a = a.copy()
    a[1, 3] = value
    return a


def _truncate(path):
    data = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])


def _user_dir(path):
    os.makedirs(path, exist_ok=True)
    _write(os.path.join(path, "thesis.tex"), "precious")


def _write(path, text):
    with open(path, "w") as f:
        f.write(text)


def _pack(b):
    from visualbert.data import NpyFeatureStore, pack_features

    pack_features(NpyFeatureStore(f"{b}/detectron_fix_100/fc6/vqa/train2014", dim=DIM), f"{b}/packed", progress=False)


def _result(b):
    os.makedirs(f"{b}/out", exist_ok=True)
    _write(f"{b}/out/result.json", "[]")


def _headerless(path):
    data = np.load(path, allow_pickle=True)
    np.save(path, data[1:], allow_pickle=True)


def _copy_truncated(src, dst):
    shutil.copytree(src, dst)
    _truncate(os.path.join(dst, "model_state.pdparams"))


def run(argv, timeout, cwd=ROOT):
    env = dict(os.environ, PYTHONPATH=ROOT)
    start = time.time()
    try:
        res = subprocess.run([sys.executable] + argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        return None, (e.stderr or b"").decode(errors="replace") if isinstance(e.stderr, bytes) else (e.stderr or ""), \
            time.time() - start
    return res.returncode, res.stdout + res.stderr, time.time() - start


def classify(rc, output, expected_rc, text, survived):
    lines = [x for x in output.strip().splitlines() if x.strip()]
    last = lines[-1] if lines else ""
    if not survived:  # first: a run that deleted its data and then hung is DAMAGE
        return "DAMAGE", last
    if rc is None:
        return "HANG", last
    if expected_rc == 0:
        return ("OK", last) if rc == 0 else ("UNCLEAR", last)
    if rc == 0:
        return "SILENT", last
    if rc == expected_rc and "Traceback" not in output and (text is None or (text in last)) and (
            text is None or last.startswith(("error:", "bad:")) or ": error: " in last):
        return "CLEAR", last
    return "UNCLEAR", last


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", required=True, help="scratch directory (created; cases use fresh copies inside)")
    p.add_argument("--cases", default=None, help="comma-separated case numbers (default: all scripted)")
    p.add_argument("--timeout", type=float, default=60)
    args = p.parse_args()
    sys.path.insert(0, ROOT)
    from visualbert.data.synthetic import generate

    base = os.path.join(args.work, "synth")
    if not os.path.isdir(base):
        generate(base, num_images=20, vqa_dim=DIM, nlvr2_dim=DIM, vcr_dim=DIM, nlvr2_sets=10, vcr_examples=12,
                 regions=4, nlvr2_regions=4, progress=False)
    trained = os.path.join(args.work, "trained")
    if not os.path.isdir(os.path.join(trained, "vcr", "final")):
        for script, data, name in (("VQA2/run_vqa2.py", vqa(base), "vqa"), ("VCR/run_vcr.py", vcr(base), "vcr")):
            rc, output, _ = run([script] + data + TINY + ["--output_dir", os.path.join(trained, name),
                                                          "--overwrite_output_dir"], 600)
            if rc != 0:
                sys.exit(f"could not train the {name} model for the prediction cases:\n{output[-2000:]}")
    wanted = {int(x) for x in args.cases.split(",")} if args.cases else None
    rows = []
    for number, title, setup, argv, expected_rc, text, keep in cases(trained):
        if wanted and number not in wanted:
            continue
        b = os.path.join(args.work, f"case{number}")
        shutil.rmtree(b, ignore_errors=True)
        shutil.copytree(base, b)
        if setup:
            setup(b)
        kept = keep(b) if keep else []
        before = digest(kept) if kept else None
        rc, output, seconds = run(argv(b), args.timeout)
        survived = not kept or (all(os.path.exists(k) for k in kept) and digest(kept) == before)
        verdict, last = classify(rc, output, expected_rc, text, survived)
        rows.append((number, title, verdict, rc, seconds, last))
        print(f"case {number}: {verdict} ({rc}, {seconds:.0f} s) {last[:160]}", file=sys.stderr, flush=True)
    print("| # | Case | Result | Exit | Seconds | Last line |\n|---|------|--------|------|---------|-----------|")
    for number, title, verdict, rc, seconds, last in rows:
        print(f"| {number} | {title} | {verdict} | {rc} | {seconds:.0f} | {last[:200].replace('|', '/')} |")
    counts = {}
    for row in rows:
        counts[row[2]] = counts.get(row[2], 0) + 1
    print("\n" + ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
