#!/usr/bin/env python
"""Samples/s of the VQA2 and NLVR2 loaders at the real feature shapes, per stage and end to end.

Writes a synthetic split at the real shapes (VQA2: 100 regions x 2048 per image, NLVR2: 2 images x 144 x 1024),
with every question / sentence made distinct (as in the real splits, so tokenization is not hidden by the
per-text memo), packs the features (VQA float32 and float16, NLVR2 float32), then measures with a WARM page
cache (every feature file read once before timing):

* per stage, in one process, over every example (samples/s of that stage alone):
  ``read`` (``store.view(key)``, or ``store[key]`` on trees without it), ``text`` (tokenize + build the ids,
  first pass: the memo is empty, as in the first epoch), ``targets`` (VQA soft scores), ``example`` (the whole
  ``dataset[i]``), ``collate`` (``Collator()`` on ready samples into paddle Tensors, batch ``--batch_size``);
* end to end: the training loader (:class:`visualbert.data.loader.BatchLoader`, as ``visualbert.engine.make_loader``
  builds it, over shuffled batches; the short synthetic split's order repeated to ``--min_batches`` batches, as the
  first batches of a real epoch) for each ``--workers`` count, each in a FRESH process; the rate is counted from
  the first batch on (worker start-up is reported separately as ``startup_s``).

Texts are pretokenized before timing (``dataset.pretokenize``, with its disk cache under the work directory), as
``visualbert.build.build_dataset`` does for the scripts; ``--no_pretokenize`` measures tokenizing on the fly (the
first epoch of a run without the cache).
``--baseline DIR`` runs every measurement also with ``PYTHONPATH=DIR`` (another checkout of the package,
e.g. ``git archive <commit> visualbert | tar -x -C DIR``), alternating baseline and this tree process by
process so that load from other jobs hits both alike; ``--repeat N`` repeats each measurement (medians are
reported, all values kept in the JSON).

    python bench/bench_data.py                                   # 512 images, workers 0 1 2, batch 64
    python bench/bench_data.py --json bench/results_data.json --repeat 3
    python bench/bench_data.py --baseline /tmp/base --repeat 3 --workers 0

JSON (``--json``): ``{"vqa": {"packed_float32": {"0": samples/s, "1": ..., "2": ...}, "packed_float16": {...},
"per_image": {...}}, "nlvr2": {"packed_float32": {...}, "per_image": {...}}, "stages": {"vqa": {"packed_float32":
{"read": ..., "text": ..., ...}}, ...}, "raw": [every measurement], "machine": {...}, "config": {...}}``
(and ``"baseline"`` with the same layout when ``--baseline`` is given).
"""

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

STORES = {"vqa": ("packed_float32", "packed_float16", "per_image"), "nlvr2": ("packed_float32", "per_image")}


# ------------------------------------------------------------------------------------------------ data
def unique_texts(rows_texts, seed=0):
    """Makes every text distinct by appending two words of a fixed list (deterministic)."""
    import numpy as np

    words = ("red blue small large left right near far old new wooden metal round square bright dark "
             "open closed empty full tall short").split()
    rng = np.random.default_rng(seed)
    seen = set()
    out = []
    for text in rows_texts:
        base = text.rstrip("?").rstrip(".")
        candidate = base
        while candidate in seen:
            candidate = f"{base} {words[rng.integers(len(words))]} {words[rng.integers(len(words))]}"
        seen.add(candidate)
        out.append(candidate)
    return out


def prepare(work, images, nlvr2_sets, seed=0):
    """Synthetic VQA2 + NLVR2 data at the real shapes under ``work`` (reused when present)."""
    import numpy as np

    sys.path.insert(0, ROOT)
    from visualbert.data import open_feature_store, pack_features
    from visualbert.data.synthetic import generate
    from visualbert.fileio import save_npy, write_jsonl

    done = os.path.join(work, "prepared.json")
    if os.path.isfile(done):
        with open(done) as f:
            return json.load(f)
    raw = os.path.join(work, "raw")
    # num_images is split 60/20/20 into train/val/test: ask for enough train images
    generate(raw, tasks=("vqa", "nlvr2"), num_images=int(images / 0.6) + 1, questions_per_image=5, regions=100,
             vqa_dim=2048, nlvr2_sets=int(nlvr2_sets / 0.6) + 1, nlvr2_regions=144, nlvr2_dim=1024, seed=seed)
    imdb_path = os.path.join(raw, "vqa2", "imdb", "imdb_train2014.npy")
    imdb = np.load(imdb_path, allow_pickle=True)
    entries = list(imdb[1:])
    texts = unique_texts([e["question_str"] for e in entries], seed)
    for e, t in zip(entries, texts):
        e["question_str"] = t + "?"
        e["question_tokens"] = t.lower().split()
    unique_imdb = os.path.join(work, "imdb_train_unique.npy")
    save_npy(unique_imdb, np.array([imdb[0]] + entries, dtype=object), allow_pickle=True)
    rows = [json.loads(line) for line in open(os.path.join(raw, "nlvr2", "train.json")) if line.strip()]
    for r, t in zip(rows, unique_texts([r["sentence"] for r in rows], seed + 1)):
        r["sentence"] = t + "."
    nlvr2_json = os.path.join(work, "nlvr2_train_unique.json")
    write_jsonl(nlvr2_json, rows)
    vqa_train = os.path.join(raw, "detectron_fix_100", "fc6", "vqa", "train2014")
    paths = {"vqa": {"annotations": unique_imdb, "per_image": os.path.join(raw, "detectron_fix_100")},
             "nlvr2": {"annotations": nlvr2_json, "per_image": os.path.join(raw, "detectron_fix_144")}}
    for name, fp16 in (("packed_float32", False), ("packed_float16", True)):
        out = os.path.join(work, "vqa_" + name)
        pack_features(open_feature_store(vqa_train), out, float16=fp16)
        paths["vqa"][name] = out
    out = os.path.join(work, "nlvr2_packed_float32")
    pack_features(open_feature_store(paths["nlvr2"]["per_image"]), out)
    paths["nlvr2"]["packed_float32"] = out
    with open(done, "w") as f:
        json.dump(paths, f)
    return paths


# ------------------------------------------------------------------------------------------------ child
def _build_dataset(task, annotations, features):
    from visualbert.tokenizer import load_tokenizer

    if task == "vqa":
        from visualbert.data import VQA2Dataset

        return VQA2Dataset(annotations, features, load_tokenizer(), feature_dim=2048)
    from visualbert.data import NLVR2Dataset

    return NLVR2Dataset(annotations, features, load_tokenizer())


def _feature_keys(ds, task):
    if task == "vqa":
        return [str(e["image_name"]) for e in ds.entries]
    from visualbert.data import image_keys

    return [k for r in ds.rows for k in image_keys(r["identifier"])]


def _rate(n, fn):
    start = time.perf_counter()
    fn()
    return n / (time.perf_counter() - start)


def _drain(iterator):
    for _ in iterator:
        pass


def _stages(ds, task, batch_size):
    """samples/s of each stage alone (examples for read: images per example counted as one example)."""
    from visualbert.data import Collator

    keys = _feature_keys(ds, task)
    n = len(ds)
    read = getattr(ds.store, "view", ds.store.__getitem__)
    if task == "vqa":
        out = {"read": _rate(n, lambda: _drain(read(k) for k in keys))}
    else:  # the pair as the dataset reads it (a tree before view_concat: each image)
        pairs = [keys[i : i + 2] for i in range(0, len(keys), 2)]
        read_pair = getattr(ds.store, "view_concat", None) or (lambda pair: [read(k) for k in pair])
        out = {"read": _rate(n, lambda: _drain(read_pair(p) for p in pairs))}
    text = ds.text
    if task == "vqa":
        from visualbert.data.vqa2 import answer_list, question_text

        suffix = text.wordpieces("?") + [text.mask_id]
        out["text"] = _rate(n, lambda: _drain(text.build(text.wordpieces(question_text(e)), a_suffix=suffix)
                                              for e in ds.entries))
        out["targets"] = _rate(n, lambda: _drain(ds.vocab.soft_scores(answer_list(e)) for e in ds.entries))
    else:
        out["text"] = _rate(n, lambda: _drain(text.build(text.wordpieces(str(r["sentence"]))) for r in ds.rows))
    if not getattr(text, "_pretokenized", None):
        text.__dict__.pop("_cache", None)  # the first epoch's cost: tokenize again
    samples = []
    out["example"] = _rate(n, lambda: samples.extend(ds[i] for i in range(n)))
    collate = Collator()
    batches = [samples[i : i + batch_size] for i in range(0, n - batch_size + 1, batch_size)]
    collate(batches[0])
    def collate_all():
        for b in batches:  # each batch dropped before the next, as a training loop does
            collate(b)

    out["collate"] = _rate(len(batches) * batch_size, collate_all)
    return out


def _loader_pass(ds, batch_size, workers, min_batches):
    """One epoch of the training loader (:class:`BatchLoader` over shuffled batches with the run's one collator, as
    the engine builds it) of at least ``min_batches`` batches: the synthetic split is short (NLVR2: 8 batches), so
    its shuffled order is repeated to the length of a real epoch's first batches (VQA2 train is ~6,900 batches,
    NLVR2 ~1,350). The first batch (worker start-up) is reported as ``startup_s`` and not counted."""
    import numpy as np

    from visualbert.data import Collator
    from visualbert.data.loader import BatchLoader

    rng = np.random.default_rng(0)
    order = []
    while len(order) < (min_batches + 1) * batch_size:
        order += rng.permutation(len(ds)).tolist()
    batches = [order[i : i + batch_size] for i in range(0, len(order) - batch_size + 1, batch_size)]
    start = time.perf_counter()
    first = None
    samples = 0
    for batch in BatchLoader(ds, batches, Collator(), num_workers=workers):
        b = int(batch["input_ids"].shape[0])
        if first is None:
            first = time.perf_counter()
            startup = first - start
        else:
            samples += b
    return {"samples_per_s": samples / (time.perf_counter() - first), "startup_s": startup, "batches": len(batches) - 1}


def _measure_main(spec):
    spec = json.loads(spec)
    import visualbert  # noqa: F401  (runtime defaults before paddle)

    ds = _build_dataset(spec["task"], spec["annotations"], spec["features"])
    if spec["pretokenize"] and hasattr(ds, "pretokenize"):
        t = time.perf_counter()
        ds.pretokenize(cache_dir=spec["cache_dir"])
        pretokenize_s = time.perf_counter() - t
    else:
        pretokenize_s = None
    read = getattr(ds.store, "view", ds.store.__getitem__)
    for k in _feature_keys(ds, spec["task"]):  # warm page cache and this process's page tables
        read(k)
    if spec["kind"] == "stages":
        result = _stages(ds, spec["task"], spec["batch_size"])
    else:
        result = _loader_pass(ds, spec["batch_size"], spec["workers"], spec["min_batches"])
    result["pretokenize_s"] = pretokenize_s
    print(json.dumps(result))


def run_child(spec, pythonpath, timeout):
    env = dict(os.environ, PYTHONPATH=pythonpath)
    cmd = [sys.executable, os.path.abspath(__file__), "--_measure", json.dumps(spec)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if res.returncode != 0:
        raise SystemExit(f"measurement {spec} failed (exit {res.returncode}):\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def _loadavg():
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


# ------------------------------------------------------------------------------------------------ main
def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--_measure":
        _measure_main(argv[1])
        return 0
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=512, help="VQA train images (5 questions each)")
    p.add_argument("--nlvr2_sets", type=int, default=256, help="NLVR2 train sets (2 pairs, 4 images each)")
    p.add_argument("--batch_size", type=int, default=64)
    p.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--tasks", nargs="+", default=["vqa", "nlvr2"], choices=sorted(STORES))
    p.add_argument("--stores", nargs="+", default=None, help="subset of packed_float32 packed_float16 per_image")
    p.add_argument("--min_batches", type=int, default=60, help="batches timed per loader measurement (the split's "
                                                                   "shuffled order repeated until then)")
    p.add_argument("--repeat", type=int, default=1, help="measurements of each setting (medians reported)")
    p.add_argument("--no_pretokenize", dest="pretokenize", action="store_false",
                   help="tokenize on the fly (default: dataset.pretokenize() before timing, as build_dataset does)")
    p.add_argument("--pretokenize", dest="pretokenize", action="store_true", help="the default (kept for old command "
                                                                                 "lines)")
    p.add_argument("--no_stages", action="store_true", help="skip the per-stage measurements")
    p.add_argument("--baseline", default=None, help="a directory holding another visualbert package to A/B against")
    p.add_argument("--work_dir", default=None, help="where to write the data (default: a temp dir, removed after); "
                                                    "reused when it was prepared before")
    p.add_argument("--json", default=None)
    p.add_argument("--timeout", type=float, default=900, help="seconds per measurement process")
    args = p.parse_args(argv)

    work = args.work_dir or tempfile.mkdtemp(prefix="bench_data_")
    os.makedirs(work, exist_ok=True)
    trees = {"current": ROOT}
    if args.baseline:
        trees = {"baseline": os.path.abspath(args.baseline), "current": ROOT}
    try:
        paths = prepare(work, args.images, args.nlvr2_sets)
        plan = []
        for task in args.tasks:
            for store in STORES[task]:
                if args.stores and store not in args.stores:
                    continue
                common = {"task": task, "store": store, "annotations": paths[task]["annotations"],
                          "features": paths[task][store], "batch_size": args.batch_size,
                          "pretokenize": args.pretokenize, "cache_dir": os.path.join(work, "text_cache")}
                if not args.no_stages:
                    plan.append(dict(common, kind="stages"))
                plan += [dict(common, kind="loader", workers=w, min_batches=args.min_batches) for w in args.workers]
        raw = []
        print(f"# {platform.node()}: {os.cpu_count()} CPUs, load {_loadavg():.2f}; batch {args.batch_size}; "
              f"trees: {', '.join(f'{k}={v}' for k, v in trees.items())}", flush=True)
        for r in range(args.repeat):
            for spec in plan:
                for tree, path in trees.items():  # alternated: baseline, current, baseline, current, ...
                    load = _loadavg()
                    result = run_child(spec, path, args.timeout)
                    raw.append({"tree": tree, "repeat": r, "load": load, **spec, **result})
                    shown = (f"{result['samples_per_s']:.0f}/s (start-up {result['startup_s']:.1f} s)"
                             if spec["kind"] == "loader" else
                             " ".join(f"{k} {v:.0f}" for k, v in result.items() if isinstance(v, float) and k != "pretokenize_s"))
                    print(f"{tree:<8} {spec['task']:<5} {spec['store']:<15} {spec['kind']:<6} "
                          f"{spec.get('workers', ''):<2} {shown}   (load {load:.2f})", flush=True)
        results = summarise(raw, trees, args)
        print_table(results, trees)
        if args.json:
            os.makedirs(os.path.dirname(os.path.abspath(args.json)) or ".", exist_ok=True)
            with open(args.json, "w") as f:
                json.dump(results, f, indent=2)
            print(f"wrote {args.json}")
    finally:
        if args.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


def _median(values):
    return statistics.median(values) if values else None


def summarise(raw, trees, args):
    def layout(tree):
        out = {"stages": {}}
        for task in args.tasks:
            out[task] = {}
            out["stages"][task] = {}
            for store in STORES[task]:
                rows = [x for x in raw if x["tree"] == tree and x["task"] == task and x["store"] == store]
                if not rows:
                    continue
                out[task][store] = {str(w): _median([x["samples_per_s"] for x in rows
                                                     if x["kind"] == "loader" and x["workers"] == w])
                                    for w in args.workers}
                stage_rows = [x for x in rows if x["kind"] == "stages"]
                if stage_rows:
                    names = [k for k in ("read", "text", "targets", "example", "collate") if k in stage_rows[0]]
                    out["stages"][task][store] = {k: _median([x[k] for x in stage_rows]) for k in names}
        return out

    results = layout("current")
    if "baseline" in trees:
        results["baseline"] = layout("baseline")
    results["raw"] = raw
    results["config"] = {"batch_size": args.batch_size, "images": args.images, "nlvr2_sets": args.nlvr2_sets,
                         "workers": args.workers, "repeat": args.repeat, "pretokenize": args.pretokenize,
                         "cache": "warm", "trees": trees}
    results["machine"] = {"cpu": _cpu_name(), "cpus": os.cpu_count(), "python": platform.python_version(),
                          "date": time.strftime("%Y-%m-%d %H:%M:%S"),
                          "load_median": _median([x["load"] for x in raw if x["load"] is not None])}
    return results


def _cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def print_table(results, trees):
    print("\nloader samples/s (median; warm cache)")
    for tree in trees:
        r = results if tree == "current" else results["baseline"]
        for task in (t for t in STORES if t in r):
            for store, rates in r[task].items():
                cells = "  ".join(f"{w} workers {v:>6.0f}" if v is not None else f"{w} workers      -" for w, v in rates.items())
                stages = r["stages"].get(task, {}).get(store)
                stage_txt = ("   stages: " + ", ".join(f"{k} {v:.0f}" for k, v in stages.items())) if stages else ""
                print(f"{tree:<8} {task:<5} {store:<15} {cells}{stage_txt}")


if __name__ == "__main__":
    sys.exit(main())
