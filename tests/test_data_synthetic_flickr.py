"""Synthetic Flickr30K Entities: written in the real formats, read back by the real readers."""

import numpy as np
import pytest

from visualbert.data.flickr30k import Flickr30KDataset
from visualbert.data.regions import BoxedFeatureStore, Hdf5RegionStore
from visualbert.data.synthetic_flickr import generate_flickr30k
from visualbert.metrics import GroundingEvaluator, largest_box_scores


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic_flickr")
    manifest = generate_flickr30k(str(out), images={"train": 2, "val": 12, "test": 2}, feature_dim=24)
    return str(out), manifest


@pytest.fixture(scope="module")
def tok():
    from visualbert.tokenizer import load_tokenizer

    return load_tokenizer()


def test_both_region_layouts_give_the_same_examples(synthetic, tok):
    out, manifest = synthetic
    ban = Flickr30KDataset(out, "val", out, tok)
    ours = Flickr30KDataset(out, "val", out + "/regions", tok)
    assert isinstance(ban.store, Hdf5RegionStore) and isinstance(ours.store, BoxedFeatureStore)
    assert len(ban) == len(ours) > 0
    for i in range(0, len(ban), 7):
        a, b = ban[i], ours[i]
        # BAN's stored spatial features equal the ones computed from the boxes and the XML image size
        np.testing.assert_allclose(a["visual_embeds"], b["visual_embeds"], rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(a["labels"], b["labels"])
        assert 10 <= a["visual_embeds"].shape[0] <= 16 and a["visual_embeds"].shape[1] == 24 + 6
    counts = ban.counts
    assert counts["no_box"] > 0 and counts["not_visual"] > 0 and counts["grounded_phrases"] > len(ban)
    assert manifest["counts"]["val_images"] == 12


def test_largest_box_is_a_weak_baseline_below_the_upper_bound(synthetic, tok):
    out, _ = synthetic
    ds = Flickr30KDataset(out, "val", out, tok)
    ev = GroundingEvaluator()
    for i in range(len(ds)):
        s = ds[i]
        ev.add(largest_box_scores(s["region_boxes"], len(s["labels"])), s["labels"])
    result = ev.result()
    assert 0.6 < result["upper_bound"] < 1.0
    assert result["R@1"] < 0.5 * result["upper_bound"]
