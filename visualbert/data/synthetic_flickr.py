"""Synthetic Flickr30K Entities in the real formats, groundable from the region features only.

Each image holds a few objects, each a (name, colour) pair with a box at a random place and size. Captions
mark two or three of them (``[/EN#<chain>/<type> a red dog]``) plus a not-visual phrase (chain 0) and, in
some images, a scene chain (``<scene>1``) or a no-box chain (``<nobndbox>1``). Images always hold
distractors sharing the name or the colour of a mentioned object, so both words matter; boxes carry no
information about which object a phrase names (random positions and sizes), so neither the largest box nor
the spatial features ground a phrase: only the region features do (``scale * (onehot(name) +
onehot(colour) + noise) @ W``, W a fixed random orthonormal projection to ``feature_dim``).

Proposals: one to three per object (jittered, IoU >= 0.5 with it, the object's feature), background boxes
(IoU < 0.5 with every object, background feature), 10 to 16 an image; with ``miss_prob`` an object gets no
proposal, so some phrases have no positive (the upper bound stays below 1, as with a real detector).

Layout written under ``out``::

    Flickr30kEntities/Sentences/<image_id>.txt, Flickr30kEntities/Annotations/<image_id>.xml
    Flickr30kEntities/{train,val,test}.txt                  split lists
    {train,val,test}.hdf5, {train,val,test}_imgid2idx.pkl    BAN's proposals (image_features, image_bb,
                                                             spatial_features, pos_boxes)
    regions/<split>/{features,boxes}/<image_id>.npy         the same proposals in our per-image layout
                                                             (with ``write_npy``)
    manifest.json
"""

import os
import pickle
from xml.sax.saxutils import escape

import numpy as np

from ..fileio import atomic_path, save_npy, write_json, write_text
from .regions import spatial_features

NAMES = {
    "man": "people", "woman": "people", "boy": "people", "girl": "people/other",
    "shirt": "clothing", "hat": "clothing", "dog": "animals", "cat": "animals", "horse": "animals",
    "car": "vehicles", "bike": "vehicles", "guitar": "instruments", "drum": "instruments",
    "hand": "bodyparts", "ball": "other", "bench": "other",
}
COLOURS = ["red", "blue", "green", "yellow", "white", "black"]
VERBS = ["is next to", "looks at", "stands near", "is behind", "is left of", "faces"]
NOT_VISUAL = ["the day", "a moment", "the time", "fun"]
SCENES = ["a park", "the street", "a field"]
DEFAULTS = {
    "images": {"train": 240, "val": 40, "test": 40},
    "feature_dim": 64,
    "seed": 0,
    "min_regions": 10,
    "max_regions": 16,
    "miss_prob": 0.08,
    "noise": 0.15,
    "write_npy": True,
}


def _latent_size():
    return len(NAMES) + len(COLOURS) + 1


class ObjectFeatures:
    """(name, colour) -> feature vector of width ``dim``; background -> its own direction."""

    def __init__(self, dim, seed, noise):
        latent = _latent_size()
        if dim < latent:
            raise ValueError(f"feature_dim {dim} is below the {latent} latent dimensions")
        rng = np.random.default_rng([seed, dim, 11])
        q, _ = np.linalg.qr(rng.standard_normal((dim, latent)))
        self.W = q.T * np.sqrt(dim / latent)
        self.noise = noise
        self.names = list(NAMES)

    def __call__(self, objects, rng):
        """float32 [len(objects), dim]; an object is ``(name, colour)`` or None (background)."""
        z = np.zeros((len(objects), _latent_size()))
        for i, obj in enumerate(objects):
            if obj is None:
                z[i, -1] = 1.0
            else:
                z[i, self.names.index(obj[0])] = 1.0
                z[i, len(self.names) + COLOURS.index(obj[1])] = 1.0
        z += self.noise * rng.standard_normal(z.shape)
        return (z @ self.W).astype(np.float32)


def _iou(a, b):
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _random_box(rng, width, height, min_side=30):
    w = int(rng.integers(min_side, max(min_side + 1, width // 2)))
    h = int(rng.integers(min_side, max(min_side + 1, height // 2)))
    x = int(rng.integers(1, width - w))
    y = int(rng.integers(1, height - h))
    return [x, y, x + w, y + h]


def _jitter(rng, box, width, height):
    """A box with IoU >= 0.5 against ``box`` (small random shifts of each side)."""
    for _ in range(50):
        w, h = box[2] - box[0], box[3] - box[1]
        d = rng.uniform(-0.1, 0.1, size=4) * np.array([w, h, w, h])
        new = [max(0.0, box[0] + d[0]), max(0.0, box[1] + d[1]), min(width - 1.0, box[2] + d[2]),
               min(height - 1.0, box[3] + d[3])]
        if new[2] > new[0] and new[3] > new[1] and _iou(new, box) >= 0.5:
            return new
    return [float(v) for v in box]


def _scene(rng, args):
    """Objects of one image: 2-3 mentioned ones and distractors sharing their name or colour."""
    width, height = int(rng.integers(300, 501)), int(rng.integers(300, 501))
    names = list(NAMES)
    pairs = []
    for _ in range(int(rng.integers(2, 4))):
        while True:
            pair = (names[int(rng.integers(len(names)))], COLOURS[int(rng.integers(len(COLOURS)))])
            if pair not in pairs:
                break
        pairs.append(pair)
    mentioned = list(pairs)
    for name, colour in mentioned:  # a distractor for each mentioned object
        for _ in range(10):
            if rng.random() < 0.5:
                pair = (name, COLOURS[int(rng.integers(len(COLOURS)))])
            else:
                pair = (names[int(rng.integers(len(names)))], colour)
            if pair not in pairs:
                pairs.append(pair)
                break
    boxes = [_random_box(rng, width, height) for _ in pairs]
    return width, height, pairs, boxes, len(mentioned)


def _caption(rng, chains, mentioned, pairs, extra_chains):
    """One marked-up caption naming ``mentioned`` objects (indices into ``pairs``)."""
    order = list(rng.permutation(mentioned))
    parts = []
    for i, obj in enumerate(order):
        name, colour = pairs[obj]
        article = "an" if colour[0] in "aeiou" else "a"
        if i:
            parts.append(VERBS[int(rng.integers(len(VERBS)))])
        parts.append(f"[/EN#{chains[obj]}/{NAMES[name]} {article} {colour} {name}]")
    if "scene" in extra_chains:
        parts.append(f"in [/EN#{extra_chains['scene']}/scene {SCENES[int(rng.integers(len(SCENES)))]}]")
    if "nobox" in extra_chains and rng.random() < 0.5:
        parts.append(f"while [/EN#{extra_chains['nobox']}/people a crowd] watches")
    if rng.random() < 0.5:
        parts.append(f"during [/EN#0/notvisual {NOT_VISUAL[int(rng.integers(len(NOT_VISUAL)))]}]")
    return " ".join(parts) + " ."


def _xml(image_id, width, height, objects):
    lines = ["<annotation>", f"  <filename>{image_id}.jpg</filename>",
             f"  <size>\n    <width>{width}</width>\n    <height>{height}</height>\n    <depth>3</depth>\n  </size>"]
    for chains, box, flag in objects:
        lines.append("  <object>")
        lines += [f"    <name>{escape(str(c))}</name>" for c in chains]
        if box is not None:
            lines.append("    <bndbox>" + "".join(f"<{t}>{v}</{t}>" for t, v in zip(("xmin", "ymin", "xmax", "ymax"), box))
                         + "</bndbox>")
        else:
            lines.append(f"    <nobndbox>{int(flag == 'nobox')}</nobndbox>\n    <scene>{int(flag == 'scene')}</scene>")
        lines.append("  </object>")
    lines.append("</annotation>")
    return "\n".join(lines) + "\n"


def _write_text(path, text):
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)


def _write_split(out, split, image_ids, rng, args, maker, counts):
    base = os.path.join(out, "Flickr30kEntities")
    all_features, all_boxes, all_spatial, pos_boxes = [], [], [], []
    for image_id in image_ids:
        width, height, pairs, boxes, n_mentioned = _scene(rng, args)
        chains = list(range(1, len(pairs) + 1))
        extra, objects = {}, [([c], b, None) for c, b in zip(chains, boxes)]
        if rng.random() < 0.5:
            extra["scene"] = len(pairs) + 1
            objects.append(([extra["scene"]], None, "scene"))
        if rng.random() < 0.3:
            extra["nobox"] = len(pairs) + 2
            objects.append(([extra["nobox"]], None, "nobox"))
        captions = [_caption(rng, chains, list(range(n_mentioned)), pairs, extra) for _ in range(5)]
        write_text(os.path.join(base, "Sentences", f"{image_id}.txt"), "".join(f"{c}\n" for c in captions))
        _write_text(os.path.join(base, "Annotations", f"{image_id}.xml"), _xml(image_id, width, height, objects))

        num_regions = int(rng.integers(args["min_regions"], args["max_regions"] + 1))
        proposals, kinds = [], []
        for obj, box in enumerate(boxes):
            if rng.random() < args["miss_prob"]:
                counts["objects_without_proposal"] += 1
                continue
            for _ in range(int(rng.integers(1, 4))):
                proposals.append(_jitter(rng, box, width, height))
                kinds.append(pairs[obj])
        proposals, kinds = proposals[:num_regions], kinds[:num_regions]
        tries = 0
        while len(proposals) < num_regions and tries < 1000:
            tries += 1
            cand = _random_box(rng, width, height, min_side=20)
            if all(_iou(cand, b) < 0.5 for b in boxes):
                proposals.append([float(v) for v in cand])
                kinds.append(None)
        perm = rng.permutation(len(proposals))
        bb = np.asarray(proposals, dtype=np.float32)[perm]
        feats = maker([kinds[i] for i in perm], rng)
        pos_boxes.append([sum(len(f) for f in all_features), sum(len(f) for f in all_features) + len(bb)])
        all_features.append(feats)
        all_boxes.append(bb)
        all_spatial.append(spatial_features(bb, width, height))
        if args["write_npy"]:
            save_npy(os.path.join(out, "regions", split, "features", f"{image_id}.npy"), feats)
            save_npy(os.path.join(out, "regions", split, "boxes", f"{image_id}.npy"), bb)
    _write_hdf5(os.path.join(out, f"{split}.hdf5"), np.concatenate(all_features), np.concatenate(all_boxes),
                np.concatenate(all_spatial), np.asarray(pos_boxes, dtype=np.int32))
    with atomic_path(os.path.join(out, f"{split}_imgid2idx.pkl")) as tmp:
        with open(tmp, "wb") as f:
            pickle.dump({int(i): n for n, i in enumerate(image_ids)}, f)
    write_text(os.path.join(base, f"{split}.txt"), "".join(f"{i}\n" for i in image_ids))
    counts[f"{split}_images"] = len(image_ids)
    counts[f"{split}_regions"] = int(sum(len(b) for b in all_boxes))


def _write_hdf5(path, features, boxes, spatial, pos_boxes):
    import h5py

    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as h:
            h.create_dataset("image_features", data=features, dtype="f")
            h.create_dataset("image_bb", data=boxes, dtype="f")
            h.create_dataset("spatial_features", data=spatial, dtype="f")
            h.create_dataset("pos_boxes", data=pos_boxes, dtype="int32")


def generate_flickr30k(out, **kwargs):
    """Writes synthetic Flickr30K Entities under ``out`` (deterministic for the same arguments).

    Args:
        out (str): output directory.
        **kwargs: any key of :data:`DEFAULTS`: ``images`` (split -> image count), ``feature_dim`` (region
            feature width before the 6 spatial features), ``seed``, ``min_regions`` / ``max_regions``
            (proposals an image), ``miss_prob`` (an object without proposal), ``noise``, ``write_npy``.

    Returns:
        dict: the manifest (settings and counts), also written to ``out/manifest.json``.
    """
    unknown = set(kwargs) - set(DEFAULTS)
    if unknown:
        raise TypeError(f"unknown synthetic Flickr30K settings: {sorted(unknown)}")
    args = dict(DEFAULTS, **kwargs)
    if not 1 <= args["min_regions"] <= args["max_regions"]:
        raise ValueError("need 1 <= min_regions <= max_regions")
    rng = np.random.default_rng([args["seed"], 30])
    maker = ObjectFeatures(args["feature_dim"], args["seed"], args["noise"])
    total = sum(args["images"].values())
    ids = []
    while len(ids) < total:  # distinct 9-digit ids, like the real ones
        ids = list(dict.fromkeys(ids + [str(v) for v in rng.integers(10**8, 10**9, size=total - len(ids))]))
    counts = {"objects_without_proposal": 0}
    start = 0
    for split, n in args["images"].items():
        _write_split(out, split, ids[start : start + n], np.random.default_rng([args["seed"], 31, start]), args,
                     maker, counts)
        start += n
    manifest = {"settings": args, "counts": counts}
    write_json(os.path.join(out, "manifest.json"), manifest, indent=1, sort_keys=True)
    return manifest


__all__ = ["DEFAULTS", "generate_flickr30k"]
