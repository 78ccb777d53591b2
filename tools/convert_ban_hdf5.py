#!/usr/bin/env python
"""Converts BAN's bottom-up COCO features (``{train,val}36.hdf5`` + ``{train,val}36_imgid2idx.pkl``, written by
ban-vqa's ``tools/adaptive_detection_features_converter.py`` from the bottom-up-attention TSV files; 10-100 boxes
an image) to the 2054-d per-image features of the Flickr line's COCO pre-training (``configs/flickr/
coco-pre-train.json``: ``image_feature_type`` "flickr", ``add_spatial_features``): the 2048-d ``image_features``
with BAN's 6 ``spatial_features`` appended, one ``.npy`` per image in the COCO layout the coco_captions dataset
reads (``OUT/fc6/vqa/<set>/COCO_<set>_<id:012d>.npy``).

    python tools/convert_ban_hdf5.py --h5 data/ban/train36.hdf5 --coco_set train2014 --out data/coco_2054
    python tools/convert_ban_hdf5.py --h5 data/ban/val36.hdf5 --coco_set val2014 --out data/coco_2054

The index keys are COCO image ids (ints); ``--coco_set`` names the set they belong to.
"""

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from visualbert.data.errors import DataFormatError  # noqa: E402
from visualbert.data.features import check_finite  # noqa: E402
from visualbert.data.regions import Hdf5RegionStore  # noqa: E402
from visualbert.fileio import save_npy  # noqa: E402


def output_path(out, coco_set, image_id):
    """str: ``out/fc6/vqa/<set>/COCO_<set>_<id:012d>.npy``."""
    if not str(image_id).isdigit():
        raise DataFormatError(f"image id {image_id!r} of the BAN index is not a COCO image id")
    name = f"COCO_{coco_set}_{int(image_id):012d}"
    return os.path.join(out, "fc6", "vqa", coco_set, name + ".npy")


def convert(h5_path, out, coco_set, index_path=None, overwrite=False):
    """Writes every image of one BAN file; returns the number of images written.

    Every image is read and checked (finite values) before anything is written; an existing output file is an
    error unless ``overwrite``.

    Raises:
        FileNotFoundError, DataFormatError: the file or index is missing or bad (the image named).
        FileExistsError: an output file exists and ``overwrite`` is False.
    """
    store = Hdf5RegionStore(h5_path, index_path)
    keys = store.keys()
    paths = {key: output_path(out, coco_set, key) for key in keys}
    existing = [p for p in paths.values() if os.path.exists(p)]
    if existing and not overwrite:
        raise FileExistsError(f"{len(existing)} of the {len(paths)} output files of {h5_path} exist already (first: "
                              f"{existing[0]}); pass --overwrite to replace them")

    def features(key):
        regions = store[key]
        return np.concatenate([regions.features, regions.spatial], axis=1).astype(np.float32)

    for key in keys:  # two passes: a bad image is found before anything is written
        check_finite(features(key), f"{h5_path} (image {key})")
    for key in keys:
        save_npy(paths[key], features(key))
    return len(keys)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--h5", required=True, help="BAN's <name>.hdf5 (image_features, image_bb, spatial_features, pos_boxes)")
    p.add_argument("--index", default=None, help="its imgid2idx pickle (default: <name>_imgid2idx.pkl beside it)")
    p.add_argument("--coco_set", required=True, help="the COCO set of the image ids, e.g. train2014 or val2014")
    p.add_argument("--out", required=True, help="output feature root")
    p.add_argument("--overwrite", action="store_true", help="replace output files that exist")
    args = p.parse_args(argv)
    try:
        n = convert(args.h5, args.out, args.coco_set, args.index, args.overwrite)
    except (FileNotFoundError, FileExistsError, DataFormatError) as err:
        print(f"convert_ban_hdf5.py: error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {n} images of {args.h5} to {os.path.join(args.out, 'fc6', 'vqa', args.coco_set)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
