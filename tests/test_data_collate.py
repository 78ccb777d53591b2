"""The collator: padding, masks, MLM label layout, VCR shapes, DataLoader workers and distributed sampling."""

import numpy as np
import pytest

from visualbert.constants import ALIGNMENT_PAD, IGNORE_INDEX
from visualbert.data import TENSOR_KEYS, Collator


class ToyDataset:
    """Samples with text length 3 + i % 5 and 1 + (7 * i) % 9 regions of width 8; sample i's values encode i."""

    def __init__(self, n=23, mlm=False):
        self.n, self.mlm = n, mlm

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        T, R = 3 + i % 5, 1 + (7 * i) % 9
        s = {
            "input_ids": np.arange(1, T + 1, dtype=np.int64) + 1000 * i,
            "token_type_ids": np.ones(T, dtype=np.int64),
            "visual_embeds": np.full((R, 8), i + 1, dtype=np.float32),
            "visual_token_type_ids": np.ones(R, dtype=np.int64),
            "question_id": i,
            "answers": [str(i)] * 10,
        }
        if self.mlm:
            s["labels"] = np.where(np.arange(T) % 2 == 1, 7, IGNORE_INDEX).astype(np.int64)
            s["sentence_image_labels"] = np.array(i % 2, dtype=np.int64)
        else:
            s["labels"] = np.eye(5, dtype=np.float32)[i % 5]
        return s


def test_padding_and_masks():
    ds = ToyDataset()
    samples = [ds[i] for i in (0, 1, 2, 3)]
    b = Collator(return_tensors="np")(samples)
    T = max(len(s["input_ids"]) for s in samples)
    R = max(len(s["visual_embeds"]) for s in samples)
    assert b["input_ids"].shape == (4, T) and b["visual_embeds"].shape == (4, R, 8)
    for k, s in enumerate(samples):
        t, r = len(s["input_ids"]), len(s["visual_embeds"])
        assert b["attention_mask"][k].tolist() == [1] * t + [0] * (T - t)  # right padding
        assert (b["input_ids"][k, :t] == s["input_ids"]).all() and (b["input_ids"][k, t:] == 0).all()
        assert (b["token_type_ids"][k, t:] == 0).all()
        assert b["visual_attention_mask"][k].tolist() == [1] * r + [0] * (R - r)
        assert (b["visual_embeds"][k, :r] == k + 1).all() and (b["visual_embeds"][k, r:] == 0).all()
        assert b["visual_token_type_ids"][k].tolist() == [1] * r + [0] * (R - r)
    assert b["labels"].shape == (4, 5) and b["labels"].dtype == np.float32
    assert b["question_id"] == [0, 1, 2, 3] and b["answers"][2] == ["2"] * 10
    assert b["attention_mask"].dtype == np.int64 and b["visual_attention_mask"].dtype == np.int64
    # the VQA head reads position attention_mask.sum(1) - 2: the token before the last real one
    pos = b["attention_mask"].sum(1) - 2
    assert all(b["input_ids"][k, pos[k]] == samples[k]["input_ids"][-2] for k in range(4))


def test_mlm_labels_cover_text_and_regions():
    ds = ToyDataset(mlm=True)
    samples = [ds[i] for i in range(5)]
    b = Collator(return_tensors="np")(samples)
    T, R = b["input_ids"].shape[1], b["visual_embeds"].shape[1]
    assert b["labels"].shape == (5, T + R)
    for k, s in enumerate(samples):
        t = len(s["input_ids"])
        assert (b["labels"][k, :t] == s["labels"]).all()
        assert (b["labels"][k, t:] == IGNORE_INDEX).all()
    assert b["sentence_image_labels"].tolist() == [0, 1, 0, 1, 0]


def test_fixed_lengths():
    ds = ToyDataset()
    b = Collator(max_seq_length=16, max_regions=12, return_tensors="np")([ds[i] for i in range(3)])
    assert b["input_ids"].shape == (3, 16) and b["visual_attention_mask"].shape == (3, 12)
    with pytest.raises(ValueError, match="fixed padding length 4"):
        Collator(max_seq_length=4, return_tensors="np")([ds[4]])


def test_mismatched_keys():
    ds = ToyDataset()
    a, b = ds[0], ds[1]
    del b["labels"]
    with pytest.raises(ValueError, match="keys"):
        Collator(return_tensors="np")([a, b])


def test_multiple_choice_shapes():
    rng = np.random.default_rng(0)
    samples = []
    for i, (T, R, A) in enumerate([(5, 3, 1), (7, 4, 2)]):
        ids = rng.integers(1000, 2000, size=(4, T))
        mask = np.ones((4, T), dtype=np.int64)
        mask[0, T - 1] = 0
        ids[0, T - 1] = 0
        samples.append({
            "input_ids": ids, "token_type_ids": np.zeros((4, T), np.int64), "attention_mask": mask,
            "image_text_alignment": np.full((4, R, A), i, np.int64),
            "visual_embeds": np.ones((R, 6), np.float32), "visual_token_type_ids": np.zeros(R, np.int64),
            "labels": np.array(i, np.int64),
        })
    b = Collator(return_tensors="np")(samples)
    assert b["input_ids"].shape == (2, 4, 7) and b["attention_mask"].shape == (2, 4, 7)
    assert b["attention_mask"][0, 0].tolist() == [1, 1, 1, 1, 0, 0, 0]
    assert b["attention_mask"][0, 1].tolist() == [1] * 5 + [0, 0]
    assert b["visual_embeds"].shape == (2, 4, 6) and b["visual_attention_mask"][0].tolist() == [1, 1, 1, 0]
    assert b["image_text_alignment"].shape == (2, 4, 4, 2)
    assert (b["image_text_alignment"][0, :, :3, :1] == 0).all()
    assert (b["image_text_alignment"][0, :, 3] == ALIGNMENT_PAD).all()
    assert (b["image_text_alignment"][0, :, :, 1] == ALIGNMENT_PAD).all()
    assert b["labels"].tolist() == [0, 1]


def test_paddle_tensors_and_key_names():
    paddle = pytest.importorskip("paddle")
    ds = ToyDataset(mlm=True)
    b = Collator()([ds[i] for i in range(3)])
    for k in TENSOR_KEYS:
        if k in b:
            assert isinstance(b[k], paddle.Tensor), k
    assert set(b) - set(TENSOR_KEYS) == {"question_id", "answers"}
    assert b["visual_embeds"].dtype == paddle.float32 and b["input_ids"].dtype == paddle.int64


@pytest.mark.parametrize("num_workers", [0, 2])
def test_dataloader_workers_and_distributed_sampler(num_workers):
    paddle = pytest.importorskip("paddle")
    from paddle.io import DataLoader, DistributedBatchSampler

    ds = ToyDataset(n=23)
    seen = []
    for rank in (0, 1):
        sampler = DistributedBatchSampler(ds, batch_size=4, num_replicas=2, rank=rank, shuffle=True)
        sampler.set_epoch(3)
        loader = DataLoader(ds, batch_sampler=sampler, collate_fn=Collator(), num_workers=num_workers)
        for batch in loader:
            assert isinstance(batch["input_ids"], paddle.Tensor)
            qids = batch["question_id"]
            assert isinstance(qids, list)
            mask = batch["attention_mask"].numpy()
            for k, q in enumerate(qids):  # each row carries its own sample's data
                assert mask[k].sum() == 3 + q % 5
                assert batch["input_ids"].numpy()[k, 0] == 1 + 1000 * q
                assert batch["visual_attention_mask"].numpy()[k].sum() == 1 + (7 * q) % 9
            seen += qids
    assert sorted(set(seen)) == list(range(23))  # the two ranks together cover the dataset
