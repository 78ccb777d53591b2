"""The training engine, in-process on a tiny VisualBERT and hand-made numpy examples.

Expected values come from the definitions (linear warmup/decay formula, the global norm of gradients
computed separately, the mean of micro-batch gradients), not from the engine's own output.
"""

import argparse
import json
import os

import numpy as np
import paddle
import pytest

from visualbert.cli import training_parser
from visualbert.configuration import VisualBertConfig
from visualbert.data import Collator
from visualbert.engine import (ShardedShuffleBatchSampler, Trainer, UsageError, build_optimizer, list_checkpoints,
                               no_decay, read_jsonl, set_seed)
from visualbert.modeling import VisualBertForVisualReasoning
from visualbert.tasks import MODEL_INPUTS

DIM = 8


class ToyNLVR2:
    """Numpy examples in the NLVR2 sample format: the label is the sign of the first feature of region 0."""

    def __init__(self, n, seed=0):
        rng = np.random.default_rng(seed)
        self.items = []
        for i in range(n):
            t = int(rng.integers(3, 7))
            feats = rng.standard_normal((3, DIM)).astype(np.float32)
            self.items.append({
                "input_ids": rng.integers(1000, 1100, t).astype(np.int64),
                "token_type_ids": np.zeros(t, np.int64),
                "visual_embeds": feats,
                "visual_token_type_ids": np.zeros(3, np.int64),
                "labels": np.array(int(feats[0, 0] > 0), np.int64),
            })

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def tiny_model(dropout=0.0, seed=0):
    set_seed(seed)
    config = VisualBertConfig(vocab_size=1200, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                              intermediate_size=32, visual_embedding_dim=DIM, num_labels=2, max_position_embeddings=32,
                              hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout)
    return VisualBertForVisualReasoning(config)


def make_args(output_dir, **overrides):
    parser = training_parser("test")
    argv = ["--output_dir", str(output_dir), "--disable_tqdm", "--batch_size", "4", "--num_train_epochs", "1",
            "--logging_steps", "1", "--save_steps", "1000", "--learning_rate", "1e-3", "--no_eval"]
    args = parser.parse_args(argv)
    args.metric_for_best, args.greater_is_better, args.eval_batch_size = None, True, 8
    for k, v in overrides.items():
        setattr(args, k, v)
    os.makedirs(output_dir, exist_ok=True)
    return args


def weights(model):
    return {k: v.numpy().copy() for k, v in model.state_dict().items()}


def test_schedule_steps_once_per_optimizer_step_with_accumulation(tmp_path):
    # 10 examples, batch 1 -> 10 micro-batches per epoch; accumulation 3 -> groups of 3, 3, 3, 1 = 4 updates/epoch.
    args = make_args(tmp_path, batch_size=1, gradient_accumulation_steps=3, num_train_epochs=2, warmup=2,
                     learning_rate=0.01)
    trainer = Trainer(args, tiny_model(), ToyNLVR2(10), Collator(), model_kwargs=MODEL_INPUTS)
    assert trainer.total_steps == 8
    assert [trainer.group_size(i) for i in range(10)] == [3, 3, 3, 3, 3, 3, 3, 3, 3, 1]
    state = trainer.train()
    assert state["global_step"] == 8 and state["epoch"] == 2
    lrs = [r["learning_rate"] for r in read_jsonl(tmp_path / "metrics.jsonl") if r["type"] == "train"]
    # Linear warmup over 2 steps then linear decay to 0 at step 8: lr_t = base*t/2 (t<2), base*(8-t)/(8-2).
    expected = [0.01 * t / 2 if t < 2 else 0.01 * (8 - t) / 6 for t in range(8)]
    np.testing.assert_allclose(lrs, expected, rtol=1e-6)
    assert trainer.scheduler.last_epoch == 8


def test_warmup_proportion(tmp_path):
    args = make_args(tmp_path, batch_size=2, num_train_epochs=1, warmup=0.5, learning_rate=0.1)
    trainer = Trainer(args, tiny_model(), ToyNLVR2(8), Collator(), model_kwargs=MODEL_INPUTS)
    trainer.train()
    lrs = [r["learning_rate"] for r in read_jsonl(tmp_path / "metrics.jsonl") if r["type"] == "train"]
    np.testing.assert_allclose(lrs, [0.0, 0.05, 0.1, 0.05], rtol=1e-6)  # 4 steps, warmup floor(0.5*4)=2


def test_accumulation_equals_large_batch(tmp_path):
    # One update from 2 micro-batches of 4 equals one update from a batch of 8 (same 8 examples, means of equal
    # size): the engine must divide each micro-batch loss by the group size.
    data = ToyNLVR2(8)
    a = make_args(tmp_path / "a", batch_size=4, gradient_accumulation_steps=2, max_steps=1)
    ta = Trainer(a, tiny_model(), data, Collator(), model_kwargs=MODEL_INPUTS)
    ta.train()
    b = make_args(tmp_path / "b", batch_size=8, gradient_accumulation_steps=1, max_steps=1)
    tb = Trainer(b, tiny_model(), data, Collator(), model_kwargs=MODEL_INPUTS)
    tb.train()
    wa, wb = weights(ta.model), weights(tb.model)
    assert any(not np.allclose(wa[k], weights(tiny_model())[k]) for k in wa)  # something was trained
    for k in wa:
        np.testing.assert_allclose(wa[k], wb[k], rtol=1e-5, atol=1e-6, err_msg=k)


def test_global_norm_clipping(tmp_path):
    # With a huge Adam epsilon (= lr) and no weight decay, the first AdamW update is -lr * g / (|g| + eps) ~ -g (bias-corrected
    # moments are g and g^2). So the update's global norm reveals the clipped gradient's global norm.
    lr, eps, max_norm = 1e4, 1e4, 0.01
    data = ToyNLVR2(4)
    model = tiny_model()
    batch = Collator()([data[i] for i in range(4)])
    ref = tiny_model()
    ref(**{k: v for k, v in batch.items() if k in MODEL_INPUTS})["loss"].backward()
    grads = {n: p.grad.numpy() for n, p in ref.named_parameters() if p.grad is not None}
    raw_norm = np.sqrt(sum((g.astype(np.float64) ** 2).sum() for g in grads.values()))
    assert raw_norm > 10 * max_norm
    opt, sched, _ = build_optimizer(model, 10, lr, warmup=0, weight_decay=0.0, adam_epsilon=eps, max_grad_norm=max_norm)
    before = weights(model)
    model(**{k: v for k, v in batch.items() if k in MODEL_INPUTS})["loss"].backward()
    opt.step()
    after = weights(model)
    names = dict(model.named_parameters())
    update = {k: after[k] - before[k] for k in grads if k in names}
    upd_norm = np.sqrt(sum((u.astype(np.float64) ** 2).sum() for u in update.values()))
    np.testing.assert_allclose(upd_norm * eps / lr, max_norm, rtol=1e-3)
    # The direction is the raw gradient's (checked on biases, which start at 0 and so keep full float32 precision).
    for k in ("cls.bias", "visual_bert.encoder.layer.0.output.dense.bias"):
        np.testing.assert_allclose(-update[k] * eps / lr, grads[k] * max_norm / raw_norm, rtol=2e-3, atol=1e-8)


def test_weight_decay_excludes_bias_and_layernorm():
    model = tiny_model()
    opt, _, names = build_optimizer(model, 10, 1e-3)
    decayed = {names[p.name] for p in model.parameters() if opt._apply_decay_param_fun(p.name)}
    all_names = {n for n, _ in model.named_parameters()}
    assert "visual_bert.encoder.layer.0.attention.self.query.weight" in decayed
    assert "visual_bert.embeddings.word_embeddings.weight" in decayed
    assert not any(n.endswith("bias") or "LayerNorm" in n for n in decayed)
    assert all_names - decayed == {n for n in all_names if n.endswith("bias") or "LayerNorm" in n}
    assert no_decay("cls.predictions.bias") and no_decay("x.LayerNorm.weight") and not no_decay("cls.weight")


def test_freeze_pooler_leaves_it_untouched(tmp_path):
    args = make_args(tmp_path, freeze_pooler=True, max_steps=2)
    model = tiny_model()
    before = weights(model)
    Trainer(args, model, ToyNLVR2(8), Collator(), model_kwargs=MODEL_INPUTS).train()
    after = weights(model)
    np.testing.assert_array_equal(before["visual_bert.pooler.dense.weight"], after["visual_bert.pooler.dense.weight"])
    assert not np.allclose(before["cls.weight"], after["cls.weight"])


def test_sampler_shards_one_global_order():
    one = ShardedShuffleBatchSampler(10, 4, seed=3, world_size=1, rank=0)
    two = [ShardedShuffleBatchSampler(10, 2, seed=3, world_size=2, rank=r) for r in range(2)]
    for s in [one] + two:
        s.set_epoch(5)
    b1 = one.all_batches()
    b2 = [s.all_batches() for s in two]
    assert len(b1) == len(b2[0]) == len(b2[1]) == 3
    for g, (r0, r1) in zip(b1, zip(*b2)):
        assert r0 + r1 == g  # rank shards of a global batch = the single-process batch
    assert sorted(sum(b1, [])) == list(range(10))
    one.set_epoch(6)
    assert one.all_batches() != b1  # reshuffled every epoch
    one.set_epoch(5, skip_batches=2)
    assert list(one) == b1[2:]


def test_in_process_resume_matches_uninterrupted(tmp_path):
    # Dropout on: the RNG state must be restored too. Run 1 trains 2 epochs (3 updates each); run 2 stops after
    # step 2 (mid-epoch: 4 of 6 micro-batches) and a fresh trainer resumes from that checkpoint.
    data = ToyNLVR2(12)

    def run(out, **kw):
        args = make_args(out, batch_size=2, num_train_epochs=2, save_steps=3, gradient_accumulation_steps=2, **kw)
        t = Trainer(args, tiny_model(dropout=0.2), data, Collator(), model_kwargs=MODEL_INPUTS)
        return t, args

    full, _ = run(tmp_path / "full")
    full.train()
    part, args = run(tmp_path / "part", max_steps=-1)
    part.total_steps = full.total_steps
    # stop after step 3 by training a copy limited to 3 steps but with the same schedule length
    orig = part.state
    part_total = part.total_steps
    part.total_steps = 2
    part.train()
    assert part.state["global_step"] == 2 and orig is part.state
    part.total_steps = part_total
    ckpt = tmp_path / "part" / "step_2"
    with open(ckpt / "trainer_state.json") as f:
        saved = json.load(f)
    assert saved["global_step"] == 2 and saved["batch_in_epoch"] == 4 and saved["epoch"] == 0
    saved["total_steps"] = part_total
    with open(ckpt / "trainer_state.json", "w") as f:
        json.dump(saved, f)
    set_seed(1234)  # a different RNG state: resume must restore the saved one
    resumed, args = run(tmp_path / "part", resume_from=str(ckpt))
    resumed.train()
    wf, wr = weights(full.model), weights(resumed.model)
    for k in wf:
        np.testing.assert_allclose(wr[k], wf[k], rtol=1e-6, atol=1e-7, err_msg=k)


def test_batch_larger_than_dataset_fails(tmp_path):
    args = make_args(tmp_path, batch_size=32)
    with pytest.raises(UsageError, match="larger than the training set"):
        Trainer(args, tiny_model(), ToyNLVR2(10), Collator(), model_kwargs=MODEL_INPUTS)


def test_checkpoint_contents_and_rotation(tmp_path):
    args = make_args(tmp_path, batch_size=2, save_steps=1, save_total_limit=2, max_steps=4)
    Trainer(args, tiny_model(), ToyNLVR2(8), Collator(), model_kwargs=MODEL_INPUTS).train()
    found = list_checkpoints(str(tmp_path))
    assert [s for s, _ in found] == [3, 4]
    names = set(os.listdir(found[-1][1]))
    assert {"config.json", "model_state.pdparams", "optimizer.pdopt", "scheduler.json", "rng.pkl",
            "trainer_state.json"} <= names
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".tmp")]
    saved = paddle.load(os.path.join(found[-1][1], "model_state.pdparams"))
    assert not any(k.startswith("_layers.") for k in saved)
