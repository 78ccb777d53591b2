#!/usr/bin/env python
"""Packs a directory of per-image region features into one memory-mapped array plus an index.

    python tools/pack_features.py --features /data/detectron_fix_100/fc6/vqa/train2014 --out /data/packed/vqa_train2014
    python tools/pack_features.py --features /data/detectron_fix_144 --out /data/packed/nlvr2 --float16

Writes ``OUT/features.npy`` ([N_regions, D], float32 or float16) and ``OUT/index.json`` (key -> row offset and
region count). Point any ``--features`` flag at OUT afterwards: the store type is detected from the directory.
Optionally restrict to the images a split needs with ``--task``/``--annotations``.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from visualbert.data.features import NpyFeatureStore, pack_features  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--features", required=True, help="per-image feature root (any released layout)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--float16", action="store_true", help="store float16 (half the size, rounded values)")
    p.add_argument("--dim", type=int, default=None, help="expected feature width (checked)")
    p.add_argument("--max_regions", type=int, default=None, help="keep only the first N regions per image")
    p.add_argument("--task", choices=["vqa", "nlvr2", "coco", "vcr"], help="with --annotations: pack only a split's images")
    p.add_argument("--annotations", nargs="+", help="annotation files of the split(s) to pack")
    p.add_argument("--overwrite", action="store_true", help="replace a packed store already in --out")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    if args.annotations and not args.task:
        p.error("--annotations needs --task")
    try:
        store = NpyFeatureStore(args.features, dim=args.dim, max_regions=args.max_regions)
        keys = None
        if args.annotations:
            from visualbert.data.check import split_keys

            keys = split_keys(args.task, args.annotations)
        index = pack_features(store, args.out, keys=keys, float16=args.float16, progress=not args.quiet,
                              overwrite=args.overwrite)
    except (FileNotFoundError, FileExistsError, ValueError) as err:  # DataFormatError is a ValueError
        print(f"pack_features.py: error: {err}", file=sys.stderr)
        return 2
    print(f"packed {len(index['keys'])} images, {sum(index['counts'])} regions of width {index['dim']} "
          f"({index['dtype']}) into {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
