"""Tiny, seeded VCR data in the real formats, for tests and smoke runs of VCR from images.

Layout written under ``root`` (as the VCR release: annotations beside ``vcr1images``)::

    root/train.jsonl, val.jsonl, test.jsonl       one annotation per line (test: no labels)
    root/vcr1images/<movie>/<clip>@<n>.jpg         RGB JPEG
    root/vcr1images/<movie>/<clip>@<n>.json        {"boxes": [[x1, y1, x2, y2, conf]], "segms": [[polygon, ...]],
                                                    "names": [...], "width": W, "height": H}

Annotation lines carry ``objects`` (COCO class names without spaces, as VCR), ``question``, ``answer_choices``
and ``rationale_choices`` as token lists whose object references are lists of box indices, ``img_fn``,
``metadata_fn``, ``annot_id``, ``movie``, ``question_number`` and (not on test) ``answer_label`` /
``rationale_label``. The text tells the right answer apart (it names the object the question is about), so a
few steps of training can move the accuracy.
"""

import os

import numpy as np

from ..fileio import write_json, write_jsonl

SYNTHETIC_CLASSES = ("person", "dog", "car", "chair", "cup", "horse", "bottle", "diningtable")
_VERBS = ("looking", "standing", "sitting", "holding", "waiting", "walking")
_REASONS = ("it is raining", "the room is dark", "the food is ready", "the phone is ringing", "the door is open")


def _polygon_in_box(rng, box, points=8):
    x1, y1, x2, y2 = box
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    rx, ry = (x2 - x1) / 2 * rng.uniform(0.6, 0.95), (y2 - y1) / 2 * rng.uniform(0.6, 0.95)
    angles = np.sort(rng.uniform(0, 2 * np.pi, size=points))
    return [[round(float(cx + rx * np.cos(a)), 2), round(float(cy + ry * np.sin(a)), 2)] for a in angles]


def _write_image(rng, path, width, height, boxes, names):
    from PIL import Image, ImageDraw

    from ..fileio import atomic_path

    image = Image.new("RGB", (width, height), tuple(int(v) for v in rng.integers(0, 255, size=3)))
    draw = ImageDraw.Draw(image)
    for box, name in zip(boxes, names):
        colour = tuple(int(v) for v in (np.array([37, 91, 151]) * (SYNTHETIC_CLASSES.index(name) + 1)) % 256)
        draw.ellipse([int(v) for v in box[:4]], fill=colour)
    with atomic_path(path) as tmp:
        image.save(tmp, format="JPEG", quality=90)


def _line(rng, split, index, img_fn, metadata_fn, names):
    n = len(names)
    people = [i for i, name in enumerate(names) if name == "person"]
    subject = int(rng.integers(0, n))
    other = int(rng.integers(0, n))
    verb = str(rng.choice(_VERBS))
    if people and rng.random() < 0.2:
        question = ["Why", "is", "everyone", verb, "?"]
    else:
        question = ["Why", "is", [subject], verb, "?"]
    answer_label = int(rng.integers(0, 4))
    rationale_label = int(rng.integers(0, 4))
    answers = []
    for i in range(4):
        if i == answer_label:
            answers.append([[subject], "is", verb, "because", "of", [other, subject], "."])
        else:
            answers.append(["Because", str(rng.choice(_REASONS)), "."])
    rationales = []
    for i in range(4):
        if i == rationale_label:
            rationales.append(["You", "can", "see", [subject], "near", [other], "."])
        else:
            rationales.append(["It", "looks", "like", str(rng.choice(_REASONS)), "."])
    row = {
        "annot_id": f"{split}-{index}", "movie": os.path.dirname(img_fn), "question_number": index,
        "img_fn": img_fn, "metadata_fn": metadata_fn, "objects": list(names),
        "question": question, "answer_choices": answers, "rationale_choices": rationales,
    }
    if split != "test":
        row.update(answer_label=answer_label, rationale_label=rationale_label)
    return row


def make_synthetic_vcr(root, lines_per_split=(6, 4, 4), seed=0, sizes=((160, 96), (120, 120), (200, 80))):
    """Writes a synthetic VCR release under ``root`` (see the module docstring).

    Args:
        root (str): output directory (created; files inside are written atomically).
        lines_per_split (tuple[int, int, int]): annotation lines of train, val, test (one image per line).
        seed (int): everything is a function of it.
        sizes (tuple): (width, height) of the images, cycled.

    Returns:
        dict: ``{"root", "image_dir", "train", "val", "test"}`` paths.
    """
    rng = np.random.default_rng(seed)
    os.makedirs(root, exist_ok=True)
    image_dir = os.path.join(root, "vcr1images")
    paths = {"root": root, "image_dir": image_dir}
    count = 0
    for split, lines in zip(("train", "val", "test"), lines_per_split):
        rows = []
        for index in range(lines):
            movie = f"movie_{count % 3}"
            clip = f"clip_{count:03d}@{count % 2}"
            width, height = sizes[count % len(sizes)]
            n = int(rng.integers(2, 5))
            names = [str(rng.choice(SYNTHETIC_CLASSES)) for _ in range(n)]
            names[0] = "person"
            boxes, segms = [], []
            for _ in range(n):
                x1, y1 = float(rng.uniform(0, width * 0.6)), float(rng.uniform(0, height * 0.6))
                x2 = float(min(width, x1 + rng.uniform(width * 0.15, width * 0.4)))
                y2 = float(min(height, y1 + rng.uniform(height * 0.15, height * 0.4)))
                box = [round(x1, 2), round(y1, 2), round(x2, 2), round(y2, 2)]
                boxes.append(box + [round(float(rng.uniform(0.5, 1.0)), 4)])
                polygons = [_polygon_in_box(rng, box)]
                if rng.random() < 0.3:
                    polygons.append(_polygon_in_box(rng, box, points=5))
                segms.append(polygons)
            os.makedirs(os.path.join(image_dir, movie), exist_ok=True)
            img_fn, metadata_fn = f"{movie}/{clip}.jpg", f"{movie}/{clip}.json"
            _write_image(rng, os.path.join(image_dir, img_fn), width, height, boxes, names)
            write_json(os.path.join(image_dir, metadata_fn),
                       {"boxes": boxes, "segms": segms, "names": names, "width": width, "height": height},
                       indent=None, sort_keys=True)
            rows.append(_line(rng, split, index, img_fn, metadata_fn, names))
            count += 1
        path = os.path.join(root, f"{split}.jsonl")
        write_jsonl(path, rows)
        paths[split] = path
    return paths


__all__ = ["make_synthetic_vcr", "SYNTHETIC_CLASSES"]
