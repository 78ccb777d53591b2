#!/usr/bin/env python
"""Samples/s of VQA2 loading at the real feature shape (100 x 2048): per-image .npy vs the packed store.

Writes a synthetic VQA2 split with 100 regions x 2048 per image (``--images`` of them, ~0.8 MB each), packs
it (float32 and float16), then times a full pass of ``paddle.io.DataLoader`` (``VQA2Dataset`` + ``Collator``,
batch ``--batch_size``) for every store and worker count. ``cold`` runs evict the feature files from the
page cache first (``posix_fadvise(DONTNEED)``), so they include disk reads; ``warm`` runs read from memory.
"store reads alone" times ``store[key]`` for every image without tokenization, collation or a DataLoader.

    python bench/bench_data.py                      # 512 images, workers 0 and 2
    python bench/bench_data.py --images 2048 --workers 0 2 4 --work_dir /data/tmp
"""

import argparse
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def evict(paths):
    """Drops the files from the page cache (best effort, no root needed for our own files)."""
    for path in paths:
        try:
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)
        except (OSError, AttributeError):
            pass


def feature_files(root):
    return [os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs if f.endswith(".npy")]


def time_pass(dataset, batch_size, workers):
    from paddle.io import DataLoader

    from visualbert.data import Collator

    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers, collate_fn=Collator(),
                        drop_last=False)
    n = 0
    start = time.perf_counter()
    for batch in loader:
        n += int(batch["input_ids"].shape[0])
    return n / (time.perf_counter() - start)


def measure(root, imdb, dim, batch_size, workers, mode):
    """Runs one timing in a fresh process and returns samples/s (``workers`` -1: store reads only).

    A fresh process per timing: forking DataLoader workers from a process that already ran loaders (and
    their threads) hung in paddle 3.3.1 here.
    """
    import subprocess

    cmd = [sys.executable, os.path.abspath(__file__), "--_measure", root, imdb, str(dim), str(batch_size), str(workers), mode]
    res = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=600)
    return float(res.stdout.strip().splitlines()[-1])


def _measure_main(root, imdb, dim, batch_size, workers, mode):
    from visualbert.data import VQA2Dataset
    from visualbert.tokenizer import load_tokenizer

    ds = VQA2Dataset(imdb, root, load_tokenizer(), feature_dim=int(dim))
    keys = [e["image_name"] for e in ds.entries]
    if mode == "cold":
        evict(feature_files(root))
    else:
        for k in keys:
            ds.store[k]
    if int(workers) < 0:
        start = time.perf_counter()
        for k in keys:
            ds.store[k]
        rate = len(keys) / (time.perf_counter() - start)
    else:
        rate = time_pass(ds, int(batch_size), int(workers))
    print(rate)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--_measure":
        _measure_main(*argv[1:])
        return 0
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=512)
    p.add_argument("--regions", type=int, default=100)
    p.add_argument("--dim", type=int, default=2048)
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    p.add_argument("--work_dir", default=None, help="where to write the data (default: a temp dir, removed after)")
    p.add_argument("--modes", nargs="+", default=["cold", "warm"], choices=["cold", "warm"])
    args = p.parse_args(argv)

    from visualbert.data import open_feature_store, pack_features
    from visualbert.data.synthetic import generate

    work = args.work_dir or tempfile.mkdtemp(prefix="bench_data_")
    try:
        # all images in train2014: num_images is split 60/20/20, so ask for enough
        generate(work, tasks=("vqa",), num_images=int(args.images / 0.6) + 1, questions_per_image=1,
                 regions=args.regions, vqa_dim=args.dim, progress=True)
        per_image_root = os.path.join(work, "detectron_fix_100")
        train_dir = os.path.join(per_image_root, "fc6", "vqa", "train2014")
        stores = {"per-image .npy": per_image_root}
        for name, fp16 in (("packed float32", False), ("packed float16", True)):
            out = os.path.join(work, "packed_" + ("fp16" if fp16 else "fp32"))
            pack_features(open_feature_store(train_dir), out, float16=fp16, progress=True)
            stores[name] = out
        imdb = os.path.join(work, "vqa2", "imdb", "imdb_train2014.npy")
        print(f"\n{len(feature_files(train_dir))} images x {args.regions} regions x {args.dim}, batch {args.batch_size}, "
              f"{os.cpu_count()} CPUs")
        print(f"{'store':<16} {'cache':<5} " + " ".join(f"{f'{w} workers':>12}" for w in args.workers) + "   (samples/s)")
        for name, root in stores.items():
            for i, mode in enumerate(args.modes):
                rates = [measure(root, imdb, args.dim, args.batch_size, w, mode) for w in args.workers]
                read = measure(root, imdb, args.dim, args.batch_size, -1, mode)
                print(f"{name if i == 0 else '':<16} {mode:<5} " + " ".join(f"{r:>12.0f}" for r in rates)
                      + f"   store reads alone: {read:.0f}/s", flush=True)
    finally:
        if args.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
