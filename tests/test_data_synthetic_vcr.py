"""The synthetic VCR release (visualbert/data/synthetic_vcr.py) is in the real formats and seeded."""

import hashlib
import json
import os

import numpy as np
from PIL import Image

from visualbert.data.synthetic_vcr import make_synthetic_vcr
from visualbert.data.vcr_images import COCO_OBJECT_INDEX


def _digest(root):
    digest = hashlib.sha256()
    for folder, _, files in sorted(os.walk(root)):
        for name in sorted(files):
            path = os.path.join(folder, name)
            digest.update(os.path.relpath(path, root).encode())
            with open(path, "rb") as f:
                digest.update(f.read())
    return digest.hexdigest()


def test_formats_and_references(tmp_path):
    paths = make_synthetic_vcr(str(tmp_path / "a"), lines_per_split=(3, 2, 2), seed=1)
    for split in ("train", "val", "test"):
        with open(paths[split]) as f:
            rows = [json.loads(line) for line in f]
        assert len(rows) == {"train": 3, "val": 2, "test": 2}[split]
        for row in rows:
            assert ("answer_label" in row) == (split != "test") and ("rationale_label" in row) == (split != "test")
            assert len(row["answer_choices"]) == 4 and len(row["rationale_choices"]) == 4
            assert all(name in COCO_OBJECT_INDEX for name in row["objects"])
            with Image.open(os.path.join(paths["image_dir"], row["img_fn"])) as image:
                assert image.format == "JPEG" and image.mode == "RGB"
                width, height = image.size
            with open(os.path.join(paths["image_dir"], row["metadata_fn"])) as f:
                meta = json.load(f)
            assert (meta["width"], meta["height"]) == (width, height) and meta["names"] == row["objects"]
            assert len(meta["boxes"]) == len(meta["segms"]) == len(row["objects"])
            for box, polygons in zip(meta["boxes"], meta["segms"]):
                x1, y1, x2, y2, confidence = box
                assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height and 0 < confidence <= 1
                for polygon in polygons:
                    points = np.array(polygon)
                    assert points.shape[1] == 2 and len(points) >= 3
                    assert (points[:, 0] >= x1).all() and (points[:, 0] <= x2).all()
                    assert (points[:, 1] >= y1).all() and (points[:, 1] <= y2).all()
            for sent in [row["question"]] + row["answer_choices"] + row["rationale_choices"]:
                for tok in sent:
                    assert isinstance(tok, str) or all(0 <= b < len(row["objects"]) for b in tok)


def test_seeded(tmp_path):
    make_synthetic_vcr(str(tmp_path / "a"), seed=5)
    make_synthetic_vcr(str(tmp_path / "b"), seed=5)
    make_synthetic_vcr(str(tmp_path / "c"), seed=6)
    assert _digest(str(tmp_path / "a")) == _digest(str(tmp_path / "b")) != _digest(str(tmp_path / "c"))
