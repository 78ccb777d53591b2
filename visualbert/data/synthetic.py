"""A small synthetic dataset in exactly the real file formats, learnable from the regions only.

Every image is a scene of objects. One region = one object; its feature is
``scale * (onehot(class) + onehot(colour) + noise) @ W`` where ``W`` [L, D] has orthonormal rows (a fixed
random rotation into the requested width D); unused regions are "background" (their own one-hot).
Questions and sentences only name classes, colours and numbers, and answers are balanced per template,
so the text alone does not determine the answer; the regions do. Every NLVR2 sentence comes with two image
pairs, one True and one False. By default (``nlvr2_templates="simple"``) the sentences are presence statements
tied to one image or both ("The left image contains a red dog.", "Both images contain a cat."), learnable by a
tiny model; ``"hard"`` gives compositional ones (exact counts, comparisons, "exactly one image"), ``"mixed"`` both.

Layout written under ``out`` (see ``datasets/README.md`` for the real counterparts)::

    vqa2/imdb/imdb_{train2014,val2014,minival2014,trainval2014,test2015}.npy   Pythia imdb (header first)
    vqa2/answers_vqa.txt                                                         the real 3129-answer vocab
    detectron_fix_100/fc6/vqa/{train2014,val2014,test2015}/COCO_<set>_<id:012d>.npy   float32 [R, D_vqa]
    coco/annotations/captions_{train2014,val2014}.json                         COCO captions (pycocotools)
    nlvr2/{train,dev,test1}.json                                                 NLVR2 JSON lines
    detectron_fix_144/{train,dev,test1}/feature_1024dim/<id>-img{0,1}.png.npy   float32 [<=R, D_nlvr2]
    vcr/{train,val}.jsonl, vcr/features/<img_fn stem>.npy                        VCR lines, float32 [boxes, D_vcr]
    manifest.json                                                                the generation settings
"""

import os
import shutil

import numpy as np

from ..fileio import save_npy, write_json, write_jsonl
from .answers import DEFAULT_ANSWERS_FILE, load_answer_vocab

CLASSES = ["dog", "cat", "car", "horse", "bird", "bus", "truck", "sheep", "cow", "elephant", "boat", "train"]
PLURALS = {"bus": "buses", "sheep": "sheep"}
COLORS = ["red", "blue", "green", "yellow", "white", "black", "brown", "orange", "pink", "purple", "gray"]
NUMBER_WORDS = {0: "zero", 1: "one", 2: "two", 3: "three", 4: "four", 5: "five"}
VQA_SETS = ("train2014", "val2014", "test2015")
NLVR2_SPLITS = ("train", "dev", "test1")
HEADER = {"create_time": "synthetic", "dataset_name": "vqa", "version": 1, "has_gt_layout": False}


def plural(name):
    return PLURALS.get(name, name + "s")


class FeatureMaker:
    """Maps (class, colour) objects to feature vectors of width ``dim`` (deterministic per seed and dim)."""

    def __init__(self, dim, seed, noise=0.1, scale=1.0):
        self.latent = len(CLASSES) + len(COLORS) + 1
        if dim < self.latent:
            raise ValueError(f"feature width {dim} is below the {self.latent} latent dimensions")
        rng = np.random.default_rng([seed, dim, 7])
        q, _ = np.linalg.qr(rng.standard_normal((dim, self.latent)))
        self.W = q.T * np.sqrt(dim / self.latent) * scale  # [L, D], orthogonal rows
        self.noise = noise
        self.dim = dim

    def regions(self, objects, num_regions, rng):
        """float32 [num_regions, dim]: one row per (class, colour) object, then background rows, shuffled."""
        z = np.zeros((num_regions, self.latent))
        z[:, -1] = 1.0  # background
        for r, (cls, col) in enumerate(objects):
            z[r] = 0.0
            z[r, CLASSES.index(cls)] = 1.0
            z[r, len(CLASSES) + COLORS.index(col)] = 1.0
        z = z[rng.permutation(num_regions)]
        z += self.noise * rng.standard_normal(z.shape)
        return (z @ self.W).astype(np.float32)


def make_scene(rng, num_regions, max_classes=2, max_count=3):
    """dict class -> (count, colour): 1..max_classes classes with distinct colours, total count <= num_regions."""
    k = max(1, min(max_classes, num_regions // 2 if num_regions >= 2 else 1))
    max_count = max(1, min(max_count, num_regions // k))
    classes = rng.choice(len(CLASSES), size=k, replace=False)
    colors = rng.choice(len(COLORS), size=k, replace=False)
    return {CLASSES[c]: (int(rng.integers(1, max_count + 1)), COLORS[o]) for c, o in zip(classes, colors)}


def scene_objects(scene):
    return [(cls, col) for cls, (n, col) in scene.items() for _ in range(n)]


def _split_counts(n, fractions):
    sizes = [int(round(n * f)) for f in fractions[:-1]]
    sizes.append(max(1, n - sum(sizes)))
    return [max(1, s) for s in sizes]


# --------------------------------------------------------------------------------------------- VQA2
def vqa_question(rng, scene, template, max_count):
    """(question_str, tokens, answer, answer pool for noise) for one template, with balanced answers."""
    present = list(scene)
    if template == 0:
        cls = present[rng.integers(len(present))]
        return f"What color is the {cls}?", scene[cls][1], COLORS
    if template == 1:
        cls = present[rng.integers(len(present))]
        return f"How many {plural(cls)} are there?", str(scene[cls][0]), [str(i) for i in range(1, max_count + 1)]
    if rng.random() < 0.5:
        cls = present[rng.integers(len(present))]
        answer = "yes"
    else:
        absent = [c for c in CLASSES if c not in scene]
        cls = absent[rng.integers(len(absent))]
        answer = "no"
    return f"Is there a {cls}?", answer, ["yes", "no"]


def question_tokens(question):
    return question.lower().replace("?", "").replace(",", "").replace("'s", " 's").split()


def human_answers(rng, answer, pool, noise):
    """Ten answers: the right one, with Binomial(10, ``noise``) of them (at most 3) replaced by others from
    ``pool`` (so the right answer always keeps a soft score of 1 and stays the majority)."""
    out = [answer] * 10
    others = [a for a in pool if a != answer]
    wrong = min(3, int(rng.binomial(10, noise))) if others else 0
    for i in rng.choice(10, size=wrong, replace=False):
        out[i] = others[rng.integers(len(others))]
    return out


def caption_variants(scene, rng, n):
    """n captions describing every object of the scene."""
    parts = []
    for cls, (count, col) in scene.items():
        noun = cls if count == 1 else plural(cls)
        parts.append((f"{'a' if count == 1 else NUMBER_WORDS[count]} {col} {noun}", cls, count, col))
    out = []
    templates = [
        "a photo of {}.",
        "there is {} in this picture.",
        "an image showing {}.",
        "{} in a field.",
        "a picture with {}.",
        "this scene contains {}.",
    ]
    for i in range(n):
        order = rng.permutation(len(parts))
        phrase = " and ".join(parts[j][0] for j in order)
        out.append(templates[(i + int(rng.integers(len(templates)))) % len(templates)].format(phrase))
    return out


def write_vqa_and_coco(out, rng, args, vocab, progress):
    from tqdm import tqdm

    fm = FeatureMaker(args["vqa_dim"], args["seed"], args["noise"], args["feature_scale"])
    max_count = max(1, min(3, args["regions"] // 2))
    sizes = _split_counts(args["num_images"], [0.6, 0.2, 0.2])
    imdb = {}
    coco = {}
    feat_root = os.path.join(out, "detectron_fix_100", "fc6", "vqa")
    image_id = 0
    template_cycle = 0
    for image_set, n in zip(VQA_SETS, sizes):
        entries = []
        images, anns = [], []
        for _ in tqdm(range(n), desc=f"vqa {image_set}", disable=not progress):
            image_id += 1
            name = f"COCO_{image_set}_{image_id:012d}"
            scene = make_scene(rng, args["regions"], max_count=max_count)
            save_npy(os.path.join(feat_root, image_set, name + ".npy"), fm.regions(scene_objects(scene), args["regions"], rng))
            for q in range(args["questions_per_image"]):
                question, answer, pool = vqa_question(rng, scene, template_cycle % 3, max_count)
                template_cycle += 1
                entry = {
                    "image_name": name,
                    "image_id": image_id,
                    "question_id": image_id * 100 + q,
                    "feature_path": name + ".npy",
                    "question_str": question,
                    "question_tokens": question_tokens(question),
                }
                if image_set != "test2015":
                    answers = human_answers(rng, answer, pool, args["answer_noise"])
                    assert answer in vocab, answer
                    entry["all_answers"] = answers
                    entry["answers"] = list(answers)
                    entry["valid_answers"] = [a for a in answers if a in vocab]
                entries.append(entry)
            images.append({"id": image_id, "file_name": name + ".jpg", "width": 640, "height": 480, "license": 0})
            for c in caption_variants(scene, rng, args["captions_per_image"]):
                anns.append({"id": len(anns) + 1 + image_id * 100, "image_id": image_id, "caption": c})
        imdb[image_set] = entries
        coco[image_set] = (images, anns)

    imdb_dir = os.path.join(out, "vqa2", "imdb")

    def write_imdb(name, entries, has_answer):
        header = dict(HEADER, has_answer=has_answer)
        array = np.empty(len(entries) + 1, dtype=object)
        array[0] = header
        for i, e in enumerate(entries):
            array[i + 1] = e
        save_npy(os.path.join(imdb_dir, name), array, allow_pickle=True)

    val_images = sorted({e["image_id"] for e in imdb["val2014"]})
    minival_ids = set(val_images[: max(1, len(val_images) // 2)])
    write_imdb("imdb_train2014.npy", imdb["train2014"], True)
    write_imdb("imdb_val2014.npy", imdb["val2014"], True)
    write_imdb("imdb_minival2014.npy", [e for e in imdb["val2014"] if e["image_id"] in minival_ids], True)
    write_imdb("imdb_trainval2014.npy", imdb["train2014"] + imdb["val2014"], True)
    write_imdb("imdb_test2015.npy", imdb["test2015"], False)
    shutil.copyfile(DEFAULT_ANSWERS_FILE, os.path.join(out, "vqa2", "answers_vqa.txt"))
    for image_set in ("train2014", "val2014"):
        images, anns = coco[image_set]
        write_json(
            os.path.join(out, "coco", "annotations", f"captions_{image_set}.json"),
            {
                "info": {"description": "synthetic COCO-format captions", "year": 2014, "version": "1.0"},
                "licenses": [{"id": 0, "name": "synthetic", "url": ""}],
                "images": images,
                "annotations": anns,
            },
            indent=None, sort_keys=True,
        )
    return {s: len(e) for s, e in imdb.items()}


# --------------------------------------------------------------------------------------------- NLVR2
NLVR2_TEMPLATES = ("simple", "mixed", "hard")
# simple templates: (side, what) with side in left/right/both and what = "class" ("a dog") or "color" ("a red dog")
SIMPLE_TEMPLATES = (("left", "class"), ("right", "class"), ("left", "color"), ("right", "color"),
                    ("both", "class"), ("both", "color"))
SIMPLE_WEIGHTS = (0.2, 0.2, 0.2, 0.2, 0.1, 0.1)


def article(word):
    return "an" if word[0] in "aeiou" else "a"


def nlvr2_sentence(rng, max_count):
    """A hard (compositional) sentence: (sentence, truth function of (left scene, right scene), (cls, col, n))."""
    cls = CLASSES[rng.integers(len(CLASSES))]
    col = COLORS[rng.integers(len(COLORS))]
    n = int(rng.integers(1, max_count + 1))
    count = lambda s: s.get(cls, (0, None))[0]  # noqa: E731
    has_col = lambda s: cls in s and s[cls][1] == col  # noqa: E731
    t = int(rng.integers(5))
    if t == 0:
        return f"The left image contains exactly {NUMBER_WORDS[n]} {cls if n == 1 else plural(cls)}.", lambda l, r: count(l) == n, (cls, col, n)
    if t == 1:
        return f"There are more {plural(cls)} in the left image than in the right image.", lambda l, r: count(l) > count(r), (cls, col, n)
    if t == 2:
        return f"Both images contain a {col} {cls}.", lambda l, r: has_col(l) and has_col(r), (cls, col, n)
    if t == 3:
        return f"The right image contains a {col} {cls}.", lambda l, r: has_col(r), (cls, col, n)
    return f"Exactly one image contains {plural(cls)}.", lambda l, r: (count(l) > 0) != (count(r) > 0), (cls, col, n)


def simple_sentence(rng):
    """A presence statement tied to one side (or both): (sentence, side, cls, col or None)."""
    side, what = SIMPLE_TEMPLATES[rng.choice(len(SIMPLE_TEMPLATES), p=SIMPLE_WEIGHTS)]
    cls = CLASSES[rng.integers(len(CLASSES))]
    col = COLORS[rng.integers(len(COLORS))] if what == "color" else None
    noun = f"{col} {cls}" if col else cls
    subject = "Both images contain" if side == "both" else f"The {side} image contains"
    return f"{subject} {article(noun)} {noun}.", side, cls, col


def simple_truth(scene, cls, col):
    """Whether a scene holds the sentence's object (any colour when ``col`` is None)."""
    return cls in scene and (col is None or scene[cls][1] == col)


def _scene_with(rng, regions, max_count, include=None, exclude=()):
    """A scene of 1..2 classes (distinct colours, total count <= regions) that holds ``include`` = (class, colour)
    and none of the classes in ``exclude``."""
    k = max(1, min(2, regions // 2 if regions >= 2 else 1))
    n_classes = int(rng.integers(1, k + 1))
    classes = [include[0]] if include else []
    colours = [include[1]] if include else []
    pool = [c for c in CLASSES if c not in exclude and c not in classes]
    while len(classes) < n_classes:
        classes.append(pool.pop(int(rng.integers(len(pool)))))
    free = [c for c in COLORS if c not in colours]
    while len(colours) < len(classes):
        colours.append(free.pop(int(rng.integers(len(free)))))
    per = max(1, min(max_count, regions // len(classes)))
    order = rng.permutation(len(classes))
    return {classes[i]: (int(rng.integers(1, per + 1)), colours[i]) for i in order}


SIMPLE_EMPTY = 0.6  # fraction of simple-template negatives that show no object at all (background regions only)


def _simple_side(rng, regions, max_count, cls, col, holds):
    """One image that holds (or not) the sentence's object; a negative is, with probability :data:`SIMPLE_EMPTY`,
    an image without objects, else the class in another colour (colour sentences, half the time) or a scene of
    other classes."""
    if holds:
        return _scene_with(rng, regions, max_count, (cls, col or COLORS[rng.integers(len(COLORS))]))
    if rng.random() < SIMPLE_EMPTY:
        return {}
    if col is not None and rng.random() < 0.5:
        other = [c for c in COLORS if c != col]
        return _scene_with(rng, regions, max_count, (cls, other[rng.integers(len(other))]))
    return _scene_with(rng, regions, max_count, exclude=(cls,))


def simple_pair(rng, regions, max_count, side, cls, col, target):
    """(left, right) scenes for which the simple sentence has truth value ``target``; the image the sentence does
    not talk about holds the object half the time (so only the named side decides)."""
    if side == "both":
        if target:
            holds = (True, True)
        else:
            holds = [(True, False), (False, True), (False, False)][rng.choice(3, p=(0.4, 0.4, 0.2))]
    else:
        named = bool(target)
        other = bool(rng.random() < 0.5)
        holds = (named, other) if side == "left" else (other, named)
    return tuple(_simple_side(rng, regions, max_count, cls, col, h) for h in holds)


def _biased_scene(rng, regions, max_count, cls, col, n):
    """A scene that mentions the sentence's class half the time (so both truth values are reachable fast)."""
    scene = make_scene(rng, regions, max_count=max_count)
    if rng.random() < 0.6:
        others = [c for c in scene if c != cls]
        used = {v[1] for k, v in scene.items() if k != cls}
        keep = others[: max(0, len(scene) - 1)]
        scene = {k: scene[k] for k in keep}
        colour = col if (rng.random() < 0.6 and col not in used) else [c for c in COLORS if c not in used][rng.integers(len(COLORS) - len(used))]
        count = n if rng.random() < 0.5 else int(rng.integers(1, max_count + 1))
        if sum(v[0] for v in scene.values()) + count <= regions:
            scene[cls] = (count, colour)
    return scene


def write_nlvr2(out, rng, args, progress):
    from tqdm import tqdm

    fm = FeatureMaker(args["nlvr2_dim"], args["seed"], args["noise"], args["feature_scale"])
    R = args["nlvr2_regions"]
    max_count = max(1, min(3, R // 2))
    templates = args["nlvr2_templates"]
    sizes = _split_counts(args["nlvr2_sets"], [0.6, 0.2, 0.2])
    counts = {}
    for split, n_sets in zip(NLVR2_SPLITS, sizes):
        rows = []
        for s in tqdm(range(n_sets), desc=f"nlvr2 {split}", disable=not progress):
            simple = templates == "simple" or (templates == "mixed" and rng.random() < 0.5)
            if simple:
                sentence, named, cls, col = simple_sentence(rng)
                truth = {"left": lambda l, r: simple_truth(l, cls, col), "right": lambda l, r: simple_truth(r, cls, col),
                         "both": lambda l, r: simple_truth(l, cls, col) and simple_truth(r, cls, col)}[named]
            else:
                sentence, truth, (cls, col, n) = nlvr2_sentence(rng, max_count)
            for pair in range(2):
                target = (pair + s) % 2 == 0
                if simple:
                    left, right = simple_pair(rng, R, max_count, named, cls, col, target)
                else:
                    for _ in range(1000):
                        left = _biased_scene(rng, R, max_count, cls, col, n)
                        right = _biased_scene(rng, R, max_count, cls, col, n)
                        if truth(left, right) == target:
                            break
                label = truth(left, right)
                prefix = f"{split}-{s}-{pair}"
                for side, scene in enumerate((left, right)):
                    objects = scene_objects(scene)
                    num = int(rng.integers(len(objects), R + 1)) if len(objects) < R else R
                    path = os.path.join(out, "detectron_fix_144", split, "feature_1024dim", f"{prefix}-img{side}.png.npy")
                    save_npy(path, fm.regions(objects, max(num, 1), rng))
                row = {
                    "identifier": f"{prefix}-0",
                    "sentence": sentence,
                    "label": "True" if label else "False",
                    "left_url": f"https://example.invalid/{prefix}-img0.jpg",
                    "right_url": f"https://example.invalid/{prefix}-img1.jpg",
                    "writer": str(int(rng.integers(200))),
                    "synset": cls,
                    "query": f"{col} {cls}" if col else cls,
                    "validation": {str(int(rng.integers(200))): "True" if label else "False"},
                    "extra_validations": {},
                }
                if split == "train":
                    row["directory"] = str(s % 100)
                rows.append(row)
        write_jsonl(os.path.join(out, "nlvr2", f"{split}.json"), rows)
        counts[split] = len(rows)
    return counts


# --------------------------------------------------------------------------------------------- VCR
def write_vcr(out, rng, args, progress):
    fm = FeatureMaker(args["vcr_dim"], args["seed"], args["noise"], args["feature_scale"])
    sizes = _split_counts(args["vcr_examples"], [0.67, 0.33])
    counts = {}
    for split, n in zip(("train", "val"), sizes):
        rows = []
        for i in range(n):
            k = int(rng.integers(2, 5))
            cls = ["person"] * (k - 1) + [CLASSES[rng.integers(len(CLASSES))]]
            colors = [COLORS[c] for c in rng.choice(len(COLORS), size=k, replace=False)]
            order = rng.permutation(k)
            objects = [cls[j] for j in order]
            colors = [colors[j] for j in order]
            target = int(rng.integers(k))
            z = np.zeros((k, fm.latent))
            for r in range(k):
                z[r, CLASSES.index(objects[r]) if objects[r] in CLASSES else -1] = 1.0
                z[r, len(CLASSES) + COLORS.index(colors[r])] = 1.0
            z += fm.noise * rng.standard_normal(z.shape)
            img_fn = f"synthetic_movie_{split}/clip_{i:04d}@0.jpg"
            save_npy(os.path.join(out, "vcr", "features", os.path.splitext(img_fn)[0] + ".npy"), (z @ fm.W).astype(np.float32))
            # distractors: the other boxes' colours first (so only the referenced box decides), then random ones
            others = [colors[j] for j in range(k) if j != target]
            rest = [c for c in COLORS if c not in colors]
            others += [rest[j] for j in rng.permutation(len(rest))[: 3 - len(others)]]
            choices = [colors[target]] + others[:3]
            perm = rng.permutation(4)
            options = [choices[p] for p in perm]
            answer_label = int(np.where(perm == 0)[0][0])
            rperm = rng.permutation(4)
            roptions = [choices[p] for p in rperm]
            rationale_label = int(np.where(rperm == 0)[0][0])
            rows.append({
                "annot_id": f"{split}-{i}",
                "movie": f"synthetic_movie_{split}",
                "img_fn": img_fn,
                "metadata_fn": os.path.splitext(img_fn)[0] + ".json",
                "objects": objects,
                "question": ["What", "color", "is", [target], "wearing", "?"],
                "answer_choices": [[[target], "is", "wearing", c, "."] for c in options],
                "rationale_choices": [["The", "clothes", "of", [target], "are", c, "."] for c in roptions],
                "answer_label": answer_label,
                "rationale_label": rationale_label,
                "question_number": 0,
            })
        write_jsonl(os.path.join(out, "vcr", f"{split}.jsonl"), rows)
        counts[split] = len(rows)
    return counts


DEFAULTS = {
    "seed": 0,
    "num_images": 40,
    "questions_per_image": 3,
    "regions": 6,
    "vqa_dim": 2048,
    "captions_per_image": 5,
    "nlvr2_sets": 20,
    "nlvr2_regions": 6,
    "nlvr2_dim": 1024,
    "nlvr2_templates": "simple",
    "vcr_examples": 24,
    "vcr_dim": 512,
    "noise": 0.1,
    "answer_noise": 0.1,
    "feature_scale": 1.0,
    "tasks": ("vqa", "nlvr2", "vcr"),
}


def generate(out, progress=False, **kwargs):
    """Writes the synthetic dataset under ``out`` (deterministic for the same arguments).

    Args:
        out (str): output directory.
        progress (bool): tqdm bars.
        **kwargs: any key of :data:`DEFAULTS` (``tasks`` a subset of vqa (incl. COCO captions), nlvr2, vcr;
            ``nlvr2_templates`` one of :data:`NLVR2_TEMPLATES`: ``simple`` presence statements tied to one image or
            both, learnable by a tiny model; ``hard`` the compositional ones (exact counts, comparisons, "exactly
            one image"); ``mixed`` half and half).

    Returns:
        dict: the manifest (settings and example counts), also written to ``out/manifest.json``.
    """
    unknown = set(kwargs) - set(DEFAULTS)
    if unknown:
        raise TypeError(f"unknown synthetic-data settings: {sorted(unknown)}")
    args = dict(DEFAULTS, **kwargs)
    if args["regions"] < 1 or args["nlvr2_regions"] < 1:
        raise ValueError("regions per image must be >= 1")
    if args["nlvr2_templates"] not in NLVR2_TEMPLATES:
        raise ValueError(f"nlvr2_templates must be one of {NLVR2_TEMPLATES}, got {args['nlvr2_templates']!r}")
    vocab = load_answer_vocab()
    os.makedirs(out, exist_ok=True)
    manifest = {"settings": {k: (list(v) if isinstance(v, tuple) else v) for k, v in args.items()}, "counts": {}}
    seed = args["seed"]
    if "vqa" in args["tasks"]:
        manifest["counts"]["vqa"] = write_vqa_and_coco(out, np.random.default_rng([seed, 1]), args, vocab, progress)
    if "nlvr2" in args["tasks"]:
        manifest["counts"]["nlvr2"] = write_nlvr2(out, np.random.default_rng([seed, 2]), args, progress)
    if "vcr" in args["tasks"]:
        manifest["counts"]["vcr"] = write_vcr(out, np.random.default_rng([seed, 3]), args, progress)
    write_json(os.path.join(out, "manifest.json"), manifest, indent=1, sort_keys=True)
    return manifest
