#!/usr/bin/env python
"""Converts the original ``features_<split>_150.th`` dumps (NLVR2 / COCO) to per-image ``.npy`` files.

The dumps are ``torch.save``d dicts ``image name -> (features [150, D], boxes [150, 4], confidence [150])``
(a dict with ``features``/``boxes``/``conf`` keys, or a bare feature tensor, is accepted too). Boxes are
sorted by descending confidence and capped at ``--max_regions`` (144, as the released models used).
torch is needed only for this tool.

    python tools/convert_th_features.py --th features_dev_150.th --out /data/detectron_fix_144 --layout nlvr2
    python tools/convert_th_features.py --th features_train2014_150.th --out /data/coco_1024 --layout vqa --coco_set train2014

Layouts written (readable by ``visualbert.data.open_feature_store(out)``):
  nlvr2: OUT/<split>/feature_1024dim/<split-set-pair>-img{0,1}.png.npy   (split from the key)
  vqa:   OUT/fc6/vqa/<set>/COCO_<set>_<id:012d>.npy                     (integer keys need --coco_set)
  flat:  OUT/<key>.npy
"""

import argparse
import os
import re
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from visualbert.data.errors import DataFormatError  # noqa: E402
from visualbert.data.features import check_finite  # noqa: E402
from visualbert.fileio import save_npy  # noqa: E402

_FEATURE_KEYS = ("features", "feature", "feats", "image_feature", "x")
_CONF_KEYS = ("conf", "confidence", "scores", "cls_prob", "box_conf")


def _numpy(x):
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def split_entry(value, where):
    """(features [N, D], confidence [N] or None) from one dump value."""
    conf = None
    if isinstance(value, dict):
        feats = next((value[k] for k in _FEATURE_KEYS if k in value), None)
        conf = next((value[k] for k in _CONF_KEYS if k in value), None)
        if feats is None:
            raise DataFormatError(f"{where}: dict without a feature entry (keys {sorted(value)}, expected one of {_FEATURE_KEYS})")
    elif isinstance(value, (tuple, list)):
        if not value:
            raise DataFormatError(f"{where}: empty tuple")
        feats = value[0]
        conf = value[2] if len(value) >= 3 else None
    else:
        feats = value
    feats = _numpy(feats)
    if not np.issubdtype(feats.dtype, np.floating):
        raise DataFormatError(f"{where}: expected float features, got dtype {feats.dtype}")
    feats = feats.astype(np.float32)
    if feats.ndim != 2 or feats.shape[0] == 0:
        raise DataFormatError(f"{where}: expected features [boxes, D], got shape {feats.shape}")
    if conf is not None:
        conf = _numpy(conf).reshape(-1)
        if conf.shape[0] != feats.shape[0]:
            raise DataFormatError(f"{where}: {conf.shape[0]} confidences for {feats.shape[0]} boxes")
    return feats, conf


def cap_regions(feats, conf, max_regions):
    """float32 [min(N, max_regions), D]: the most confident boxes first (stable order when conf is None)."""
    if conf is not None:
        feats = feats[np.argsort(-conf, kind="stable")]
    return np.ascontiguousarray(feats[:max_regions])


def output_path(out, layout, key, coco_set=None):
    name = str(key)
    if layout == "nlvr2":
        name = os.path.basename(name)
        if not name.endswith(".png"):
            name += ".png"
        return os.path.join(out, name.split("-", 1)[0], "feature_1024dim", name + ".npy")
    if layout == "vqa":
        if isinstance(key, (int, np.integer)) or name.isdigit():
            if not coco_set:
                raise DataFormatError(f"integer image id {key} needs --coco_set (e.g. train2014)")
            name = f"COCO_{coco_set}_{int(name):012d}"
        name = os.path.splitext(os.path.basename(name))[0]
        m = re.match(r"^COCO_([a-z]+\d{4})_\d+$", name)
        if m is None:
            raise DataFormatError(f"key {key!r} is not a COCO image name")
        return os.path.join(out, "fc6", "vqa", m.group(1), name + ".npy")
    return os.path.join(out, os.path.splitext(os.path.basename(name))[0] + ".npy")


def convert(th_file, out, layout="nlvr2", max_regions=144, coco_set=None, progress=True, overwrite=False):
    """Converts one dump; returns the number of images written.

    Every array is checked (float dtype, shape, finite values of the kept boxes) before any file is written, and
    an existing output file is an error unless ``overwrite`` (several dumps may fill one root, but never replace
    each other's files silently).

    Raises:
        FileNotFoundError, DataFormatError: the dump is missing or bad (the entry named).
        FileExistsError: an output file exists and ``overwrite`` is False.
    """
    import torch
    from tqdm import tqdm

    if not os.path.isfile(th_file):
        raise FileNotFoundError(f"feature dump {th_file} does not exist")
    try:
        data = torch.load(th_file, map_location="cpu", weights_only=False)
    except Exception as e:
        raise DataFormatError(f"{th_file}: cannot torch.load the dump (truncated?): {e}") from e
    if not isinstance(data, dict) or not data:
        raise DataFormatError(f"{th_file}: expected a non-empty dict image name -> features, got {type(data).__name__}")
    paths = {key: output_path(out, layout, key, coco_set) for key in data}
    existing = [path for path in paths.values() if os.path.exists(path)]
    if existing and not overwrite:
        raise FileExistsError(f"{len(existing)} of the {len(paths)} output files of {th_file} exist already (first: "
                              f"{existing[0]}); pass --overwrite to replace them")
    # two passes, so that a bad entry is found before anything is written, without holding a second copy of a
    # dump that may be tens of GB
    for key, value in tqdm(data.items(), desc=f"checking {os.path.basename(th_file)}", disable=not progress):
        where = f"{th_file}[{key!r}]"
        feats, conf = split_entry(value, where)
        check_finite(cap_regions(feats, conf, max_regions), where)
    for key, value in tqdm(data.items(), desc=os.path.basename(th_file), disable=not progress):
        feats, conf = split_entry(value, key)
        save_npy(paths[key], cap_regions(feats, conf, max_regions))
    return len(data)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--th", required=True, nargs="+", help="features_<split>_150.th file(s)")
    p.add_argument("--out", required=True, help="output feature root")
    p.add_argument("--layout", choices=["nlvr2", "vqa", "flat"], default="nlvr2")
    p.add_argument("--max_regions", type=int, default=144, help="box cap, most confident first (144)")
    p.add_argument("--coco_set", default=None, help="COCO set for integer keys (train2014, val2014, test2015)")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    try:
        total = sum(convert(f, args.out, args.layout, args.max_regions, args.coco_set, not args.quiet, args.overwrite)
                    for f in args.th)
    except (FileNotFoundError, FileExistsError, ValueError) as err:  # DataFormatError is a ValueError
        print(f"convert_th_features.py: error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {total} images under {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
