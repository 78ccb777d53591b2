#!/usr/bin/env python
"""Writes a small synthetic VQA2 / COCO captions / NLVR2 / VCR / Flickr30K Entities dataset in exactly the real formats.

Answers are learnable from the region features and not from the text alone (see
``visualbert/data/synthetic.py``). Seeded and deterministic; a few MB at the default size.

    python tools/make_synthetic_data.py --out /tmp/synth
    python tools/make_synthetic_data.py --out /tmp/synth_small --vqa_dim 64 --nlvr2_dim 64 --num_images 600
    python tools/make_synthetic_data.py --out /tmp/synth_hard --tasks nlvr2 --nlvr2_templates hard
    python tools/make_synthetic_data.py --out /tmp/synth_flickr --tasks flickr30k --flickr_images 800

Flickr30K Entities (``visualbert/data/synthetic_flickr.py``) goes to ``OUT/flickr30k``: ``Flickr30kEntities/``
(Sentences, Annotations, split lists) and BAN's ``{train,val,test}.hdf5`` + ``*_imgid2idx.pkl``.
"""

import argparse
import json
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from visualbert.data.synthetic import DEFAULTS, NLVR2_TEMPLATES, generate  # noqa: E402
from visualbert.data.synthetic_flickr import DEFAULTS as FLICKR_DEFAULTS  # noqa: E402
from visualbert.data.synthetic_flickr import generate_flickr30k  # noqa: E402
from visualbert.fileio import write_json  # noqa: E402

# what generate() writes at the top of --out; --overwrite removes these and nothing else
GENERATED = ("manifest.json", "vqa2", "coco", "detectron_fix_100", "nlvr2", "detectron_fix_144", "vcr", "flickr30k")


def clear_output(out, overwrite):
    """Makes ``out`` ready for a new dataset: None if it is absent or empty, or (with ``overwrite``) holds a synthetic
    dataset, whose generated entries are then removed (stale feature files of a larger run would otherwise stay);
    else the reason to refuse."""
    if not os.path.isdir(out):
        return f"{out} exists and is not a directory" if os.path.exists(out) else None
    entries = os.listdir(out)
    if not entries:
        return None
    if not os.path.isfile(os.path.join(out, "manifest.json")):
        return (f"{out} is not empty and holds no synthetic dataset (no manifest.json); choose an empty or new "
                "directory")
    if not overwrite:
        return f"{out} already holds a synthetic dataset; pass --overwrite to replace it"
    for name in GENERATED:
        path = os.path.join(out, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        elif os.path.lexists(path):
            os.remove(path)
    return None


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--seed", type=int, default=DEFAULTS["seed"])
    p.add_argument("--tasks", default=",".join(DEFAULTS["tasks"]),
                   help="comma-separated subset of vqa (VQA2 + COCO captions), nlvr2, vcr, flickr30k")
    p.add_argument("--num_images", type=int, default=DEFAULTS["num_images"],
                   help="VQA/COCO images, split 60/20/20 into train2014/val2014/test2015")
    p.add_argument("--questions_per_image", type=int, default=DEFAULTS["questions_per_image"])
    p.add_argument("--regions", type=int, default=DEFAULTS["regions"], help="regions per VQA/COCO image (real: 100)")
    p.add_argument("--vqa_dim", type=int, default=DEFAULTS["vqa_dim"], help="VQA/COCO feature width (real: 2048)")
    p.add_argument("--captions_per_image", type=int, default=DEFAULTS["captions_per_image"])
    p.add_argument("--nlvr2_sets", type=int, default=DEFAULTS["nlvr2_sets"],
                   help="NLVR2 sentences (each paired with 2 image pairs), split 60/20/20 into train/dev/test1")
    p.add_argument("--nlvr2_regions", type=int, default=DEFAULTS["nlvr2_regions"],
                   help="maximum regions per NLVR2 image (counts vary per image; real cap: 144)")
    p.add_argument("--nlvr2_dim", type=int, default=DEFAULTS["nlvr2_dim"], help="NLVR2 feature width (real: 1024)")
    p.add_argument("--nlvr2_templates", choices=NLVR2_TEMPLATES, default=DEFAULTS["nlvr2_templates"],
                   help="NLVR2 sentences: simple = presence statements tied to one image or both ('The left image "
                        "contains a red dog.'), learnable by a tiny model; hard = compositional ones (exact counts, "
                        "comparisons, 'exactly one image'); mixed = half and half (default: %(default)s)")
    p.add_argument("--vcr_examples", type=int, default=DEFAULTS["vcr_examples"], help="VCR questions (train/val 2:1)")
    p.add_argument("--vcr_dim", type=int, default=DEFAULTS["vcr_dim"], help="VCR box feature width (real: 512)")
    p.add_argument("--flickr_images", type=int, default=sum(FLICKR_DEFAULTS["images"].values()),
                   help="Flickr30K Entities images (5 captions each), split 75/12.5/12.5 into train/val/test")
    p.add_argument("--flickr_dim", type=int, default=FLICKR_DEFAULTS["feature_dim"],
                   help="Flickr30K proposal feature width before the 6 spatial features (real: 2048)")
    p.add_argument("--noise", type=float, default=DEFAULTS["noise"], help="feature noise std (latent space)")
    p.add_argument("--answer_noise", type=float, default=DEFAULTS["answer_noise"],
                   help="probability that one of the ten human answers is wrong")
    p.add_argument("--feature_scale", type=float, default=DEFAULTS["feature_scale"])
    p.add_argument("--overwrite", action="store_true",
                   help="replace a synthetic dataset already in --out (recognised by its manifest.json)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    args = vars(p.parse_args(argv))
    out = args.pop("out")
    quiet = args.pop("quiet")
    overwrite = args.pop("overwrite")
    tasks = tuple(t.strip() for t in args.pop("tasks").split(",") if t.strip())
    bad = set(tasks) - {"vqa", "nlvr2", "vcr", "flickr30k"}
    if bad:
        p.error(f"unknown tasks {sorted(bad)}")
    flickr_images, flickr_dim = args.pop("flickr_images"), args.pop("flickr_dim")
    if "flickr30k" in tasks and flickr_images < 8:
        p.error(f"--flickr_images {flickr_images}: need at least 8 (train, val and test images)")
    problem = clear_output(out, overwrite)
    if problem:
        print(f"make_synthetic_data.py: error: {problem}", file=sys.stderr)
        return 2
    others = tuple(t for t in tasks if t != "flickr30k")
    manifest = generate(out, progress=not quiet, tasks=others, **args) if others else {"settings": {}, "counts": {}}
    if "flickr30k" in tasks:
        train = int(flickr_images * 0.75)
        images = {"train": train, "val": (flickr_images - train) // 2,
                  "test": flickr_images - train - (flickr_images - train) // 2}
        flickr = generate_flickr30k(os.path.join(out, "flickr30k"), images=images, feature_dim=flickr_dim,
                                    seed=args["seed"])
        manifest["settings"]["flickr30k"] = flickr["settings"]
        manifest["counts"]["flickr30k"] = flickr["counts"]
        write_json(os.path.join(out, "manifest.json"), manifest, indent=1, sort_keys=True)
    print(json.dumps(manifest["counts"], sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
