"""Pre-flight check of a split: every missing feature file (and, with ``--read``, every unreadable one).

    python -m visualbert.data.check --task vqa --annotations imdb_train2014.npy --features detectron_fix_100
    python -m visualbert.data.check --task nlvr2 --annotations train.json --features detectron_fix_144 --read

Exit status 0 when the split is complete, 1 otherwise (the report lists all problems).
Training scripts call :func:`check_split` for their ``--check`` flag.
"""

import argparse
import sys

from .errors import DataFormatError, MissingFeaturesError
from .features import open_feature_store


def split_keys(task, annotations, image_set=None):
    """list[str]: the feature keys a split needs (in first-use order, unique).

    Args:
        task (str): ``vqa``, ``nlvr2``, ``coco`` or ``vcr``.
        annotations (str or list[str]): the annotation file(s).
    """
    files = [annotations] if isinstance(annotations, str) else list(annotations)
    keys = []
    for path in files:
        if task == "vqa":
            from .vqa2 import load_imdb

            keys += [str(e["image_name"]) for e in load_imdb(path)[1]]
        elif task == "nlvr2":
            from .nlvr2 import image_keys, read_nlvr2_jsonl

            keys += [k for r in read_nlvr2_jsonl(path) for k in image_keys(r["identifier"])]
        elif task == "coco":
            import os
            import re

            from .coco import coco_image_key, load_coco_captions

            m = re.search(r"captions_([a-z]+\d{4})\.json$", os.path.basename(path))
            image_set_ = image_set or (m.group(1) if m else "train2014")
            coco = load_coco_captions(path)
            keys += [coco_image_key(i["id"], image_set_, i.get("file_name")) for i in coco.dataset.get("images", [])]
        elif task == "vcr":
            from .vcr import read_vcr_jsonl, vcr_image_key

            keys += [vcr_image_key(r["img_fn"]) for r in read_vcr_jsonl(path)]
        else:
            raise ValueError(f"unknown task {task!r}")
    return list(dict.fromkeys(keys))


def check_split(task, annotations, features, read=False, progress=True, dim="auto"):
    """Finds every problem of a split's features.

    Args:
        task (str): ``vqa``, ``nlvr2``, ``coco`` or ``vcr``.
        annotations (str or list[str]): annotation file(s).
        features (str or FeatureStore): feature root.
        read (bool): also load every array (catches empty/truncated files and wrong widths).
        dim (int or None or "auto"): expected width; "auto" = the task's real width (VQA 2048, NLVR2 1024, VCR 512),
            None = whatever the first array has.
        progress (bool): tqdm bar while reading.

    Returns:
        dict: ``keys`` (int), ``missing`` (list[str], all of them), ``bad`` (list[str] messages).
    """
    from tqdm import tqdm

    from .nlvr2 import NLVR2_FEATURE_DIM
    from .vcr import VCR_FEATURE_DIM
    from .vqa2 import VQA_FEATURE_DIM

    if dim == "auto":
        dim = {"vqa": VQA_FEATURE_DIM, "nlvr2": NLVR2_FEATURE_DIM, "vcr": VCR_FEATURE_DIM}.get(task)
    store = open_feature_store(features, dim=dim)
    keys = split_keys(task, annotations)
    missing = store.missing(keys)
    bad = []
    if read:
        absent = set(missing)
        for key in tqdm([k for k in keys if k not in absent], desc="reading features", disable=not progress):
            try:
                store[key]
            except (DataFormatError, MissingFeaturesError) as e:
                bad.append(str(e))
    return {"keys": len(keys), "missing": missing, "bad": bad, "store": store}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", required=True, choices=["vqa", "nlvr2", "coco", "vcr"])
    p.add_argument("--annotations", required=True, nargs="+", help="imdb .npy / JSON lines / captions JSON")
    p.add_argument("--features", required=True, help="feature root (per-image layout or packed store)")
    p.add_argument("--read", action="store_true", help="also load every array (slow)")
    p.add_argument("--dim", type=int, default=None, help="expected width (default: the task's real width)")
    args = p.parse_args(argv)
    report = check_split(args.task, args.annotations, args.features, read=args.read, dim=args.dim or "auto")
    store = report["store"]
    for key in report["missing"]:
        print(f"missing: {store.describe(key)}")
    for message in report["bad"]:
        print(f"bad: {message}")
    print(f"{report['keys']} images, {len(report['missing'])} missing, {len(report['bad'])} unreadable")
    return 1 if report["missing"] or report["bad"] else 0


if __name__ == "__main__":
    sys.exit(main())
