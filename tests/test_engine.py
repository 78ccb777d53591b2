"""The training engine, in-process on a tiny VisualBERT and hand-made numpy examples.

Expected values come from the definitions (linear warmup/decay formula, the global norm of gradients
computed separately, the mean of micro-batch gradients), not from the engine's own output.
"""

import dataclasses
import json
import os

import numpy as np
import paddle
import pytest
from conftest import tiny_config

from visualbert import accel
from visualbert.checkpoints import list_checkpoints, optimizer_state_from_structured, optimizer_state_to_structured
from visualbert.cli import UsageError, training_parser
from visualbert.config import TrainConfig
from visualbert.data import Collator
from visualbert.distributed import set_seed
from visualbert.engine import ShardedShuffleBatchSampler, Trainer, build_optimizer, model_inputs, no_decay
from visualbert.fileio import read_jsonl
from visualbert.modeling import VisualBertForVisualReasoning

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
    config = tiny_config(hidden_size=16, num_attention_heads=2, intermediate_size=32, visual_embedding_dim=DIM,
                         num_labels=2, max_position_embeddings=32, hidden_dropout_prob=dropout,
                         attention_probs_dropout_prob=dropout)
    return VisualBertForVisualReasoning(config)


def make_args(output_dir, extra_argv=(), **overrides):
    """A :class:`TrainConfig` from the command line of the training scripts (plus ``overrides``)."""
    parser = training_parser("test")
    argv = ["--output_dir", str(output_dir), "--disable_tqdm", "--batch_size", "4", "--num_train_epochs", "1",
            "--logging_steps", "1", "--save_steps", "1000", "--learning_rate", "1e-3", "--no_eval",
            # these tests check the AdamW path (BertAdam: tests/test_engine_bertadam.py)
            "--optimizer", "adamw", "--train_pooler"] + list(extra_argv)
    args = vars(parser.parse_args(argv))
    values = {f.name: args[f.name] for f in dataclasses.fields(TrainConfig) if f.name in args}
    values.update(metric_for_best=None, greater_is_better=True, eval_batch_size=8)
    values.update(overrides)
    os.makedirs(output_dir, exist_ok=True)
    return TrainConfig(**values)


def weights(model):
    return {k: v.numpy().copy() for k, v in model.state_dict().items()}


def test_schedule_steps_once_per_optimizer_step_with_accumulation(tmp_path):
    # 10 examples, batch 1 -> 10 micro-batches per epoch; accumulation 3 -> groups of 3, 3, 3, 1 = 4 updates/epoch.
    args = make_args(tmp_path, batch_size=1, gradient_accumulation_steps=3, num_train_epochs=2, warmup=2,
                     learning_rate=0.01)
    trainer = Trainer(args, tiny_model(), ToyNLVR2(10), Collator())
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
    trainer = Trainer(args, tiny_model(), ToyNLVR2(8), Collator())
    trainer.train()
    lrs = [r["learning_rate"] for r in read_jsonl(tmp_path / "metrics.jsonl") if r["type"] == "train"]
    np.testing.assert_allclose(lrs, [0.0, 0.05, 0.1, 0.05], rtol=1e-6)  # 4 steps, warmup floor(0.5*4)=2


def test_accumulation_equals_large_batch(tmp_path):
    # One update from 2 micro-batches of 4 equals one update from a batch of 8 (same 8 examples, means of equal
    # size): the engine must divide each micro-batch loss by the group size.
    data = ToyNLVR2(8)
    a = make_args(tmp_path / "a", batch_size=4, gradient_accumulation_steps=2, max_steps=1)
    ta = Trainer(a, tiny_model(), data, Collator())
    ta.train()
    b = make_args(tmp_path / "b", batch_size=8, gradient_accumulation_steps=1, max_steps=1)
    tb = Trainer(b, tiny_model(), data, Collator())
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
    ref(**model_inputs(batch))["loss"].backward()
    grads = {n: p.grad.numpy() for n, p in ref.named_parameters() if p.grad is not None}
    raw_norm = np.sqrt(sum((g.astype(np.float64) ** 2).sum() for g in grads.values()))
    assert raw_norm > 10 * max_norm
    opt, sched, _ = build_optimizer(model, 10, lr, warmup=0, weight_decay=0.0, adam_epsilon=eps, max_grad_norm=max_norm)
    before = weights(model)
    model(**model_inputs(batch))["loss"].backward()
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
    args = make_args(tmp_path, train_pooler=False, max_steps=2)
    model = tiny_model()
    before = weights(model)
    Trainer(args, model, ToyNLVR2(8), Collator()).train()
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
        t = Trainer(args, tiny_model(dropout=0.2), data, Collator())
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
        Trainer(args, tiny_model(), ToyNLVR2(10), Collator())


def test_checkpoint_contents_and_rotation(tmp_path):
    args = make_args(tmp_path, batch_size=2, save_steps=1, save_total_limit=2, max_steps=4)
    Trainer(args, tiny_model(), ToyNLVR2(8), Collator()).train()
    found = list_checkpoints(str(tmp_path))
    assert [s for s, _ in found] == [3, 4]
    names = set(os.listdir(found[-1][1]))
    assert {"config.json", "model_state.pdparams", "optimizer.pdopt", "scheduler.json", "rng.pkl",
            "trainer_state.json"} <= names
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".tmp")]
    saved = paddle.load(os.path.join(found[-1][1], "model_state.pdparams"))
    assert not any(k.startswith("_layers.") for k in saved)


# ------------------------------------------------------------------------------------------ accel (AMP, fused attention)
def _train(out, data, extra_argv=(), model=None, **overrides):
    args = make_args(out, extra_argv, **overrides)
    trainer = Trainer(args, model or tiny_model(), data, Collator())
    trainer.train()
    return trainer


@pytest.mark.skipif(accel.on_gpu(), reason="CPU behaviour of --use_amp")
def test_amp_flags_on_cpu_warn_and_train_like_fp32(tmp_path, caplog):
    data = ToyNLVR2(12)
    common = dict(batch_size=2, gradient_accumulation_steps=2, max_steps=3, max_grad_norm=0.05)
    ref = _train(tmp_path / "fp32", data, **common)
    with caplog.at_level("WARNING"):
        amp = _train(tmp_path / "amp", data, ["--use_amp", "--amp_level", "O2", "--amp_dtype", "float16",
                                              "--scale_loss", "1024"], **common)
    assert any("--use_amp ignored" in r.getMessage() for r in caplog.records)
    assert not amp.amp.enabled and amp.scaler is None
    assert (amp.amp.level, amp.amp.dtype, amp.amp.init_loss_scaling) == ("O2", "float16", 1024.0)
    wr, wa = weights(ref.model), weights(amp.model)
    assert all(v.dtype == np.float32 for v in wa.values())
    for k in wr:
        np.testing.assert_array_equal(wa[k], wr[k], err_msg=k)


def test_fused_attention_on_trains_like_off(tmp_path):
    data = ToyNLVR2(12)
    runs = {}
    for choice in ("on", "off"):
        t = _train(tmp_path / choice, data, ["--fused_attention", choice], batch_size=2, max_steps=4)
        layers = [m for m in t.model.sublayers() if hasattr(m, "fused_attention")]
        assert layers and all(m.fused_attention == (choice == "on") for m in layers)
        runs[choice] = weights(t.model)
    assert any(not np.allclose(runs["off"][k], weights(tiny_model())[k]) for k in runs["off"])  # trained
    for k in runs["off"]:
        np.testing.assert_allclose(runs["on"][k], runs["off"][k], rtol=0, atol=1e-5, err_msg=k)


def _cpu_grad_scaler(init_loss_scaling):
    """A dynamic GradScaler that is enabled on CPU (paddle disables it off-GPU; its kernels run on CPU)."""
    import paddle.amp.grad_scaler as gs

    real = gs._dygraph_tracer

    class Place:
        def __init__(self, place):
            self.place = place

        def is_gpu_place(self):
            return True

        def __getattr__(self, name):
            return getattr(self.place, name)

    class Tracer:
        def __init__(self, tracer):
            self.tracer = tracer
            self._expected_place = Place(tracer._expected_place)

        def __getattr__(self, name):
            return getattr(self.tracer, name)

    gs._dygraph_tracer = lambda: Tracer(real())
    try:
        scaler = paddle.amp.GradScaler(init_loss_scaling=init_loss_scaling)
    finally:
        gs._dygraph_tracer = real
    assert scaler.is_enable()
    return scaler


@pytest.mark.parametrize("max_grad_norm", [0.0, 0.05])
def test_loss_scaling_with_accumulation_and_clipping_equals_unscaled(tmp_path, monkeypatch, max_grad_norm):
    # A power-of-two loss scale is exact in float32, so a correct engine (scale every micro-batch, unscale the
    # accumulated gradients once before the optimizer's global-norm clipping) reproduces the unscaled run. Adam's
    # epsilon is large so that the update is proportional to the gradient (a missing or extra unscale would show).
    data = ToyNLVR2(12)
    common = dict(batch_size=2, gradient_accumulation_steps=3, max_steps=3, max_grad_norm=max_grad_norm,
                  adam_epsilon=1.0, learning_rate=0.5, save_steps=1)
    ref = _train(tmp_path / "ref", data, **common)
    made = []

    def scaler_for(amp):
        made.append(_cpu_grad_scaler(amp.init_loss_scaling))
        return made[-1]

    monkeypatch.setattr(accel, "grad_scaler", scaler_for)
    # GradScaler.scale() turns itself off unless the last auto_cast was float16 (a sticky global on GPU runs).
    import importlib

    monkeypatch.setattr(importlib.import_module("paddle.amp.auto_cast").amp_global_state(), "amp_dtype", "float16")
    scaled = _train(tmp_path / "scaled", data, ["--scale_loss", "1024"], **common)
    assert made and scaled.scaler is made[0] and scaled.scaler.is_enable()
    assert float(scaled.scaler._scale) == 1024.0 and scaled.scaler.state_dict()["scale"] is not None
    assert os.path.isfile(tmp_path / "scaled" / "step_3" / "scaler.pdparams")
    wr, ws = weights(ref.model), weights(scaled.model)
    for k in wr:
        np.testing.assert_allclose(ws[k], wr[k], rtol=1e-6, atol=1e-7, err_msg=k)
    if max_grad_norm:  # clipping was active: the unclipped run ends elsewhere
        free = _train(tmp_path / "free", data, **dict(common, max_grad_norm=0.0))
        assert any(not np.allclose(weights(free.model)[k], wr[k], atol=1e-6) for k in wr)


def test_optimizer_state_names_cover_master_weights():
    name_map = {"linear_3.w_0": "cls.weight", "linear_3.b_0": "cls.bias"}
    state = {"linear_3.w_0_fp32_master_0_moment1_0": 1, "linear_3.b_0_moment2_0": 2, "LR_Scheduler": {"last_epoch": 3},
             "master_weights": {"linear_3.w_0": 4, "linear_3.b_0": 5}}
    structured = optimizer_state_to_structured(state, name_map)
    assert structured["master_weights"] == {"param::cls.weight": 4, "param::cls.bias": 5}
    assert "param::cls.weight::_fp32_master_0_moment1_0" in structured
    assert optimizer_state_from_structured(structured, name_map) == state


def test_o2_weights_save_as_fp32_master_weights_and_load_back():
    model = tiny_model()
    reference = weights(model)
    assert accel.fp32_state_dict(model) is not None and all(v.dtype == np.float32 for v in weights(model).values())
    masters = {p.name: p.detach().clone() for p in model.parameters()}
    model.visual_bert.encoder.to(dtype="float16")  # what O2 does to the linear layers
    low = [k for k, v in model.state_dict().items() if v.dtype == paddle.float16]
    assert low
    state = accel.fp32_state_dict(model, type("Opt", (), {"_master_weights": masters})())
    for k in reference:
        assert state[k].dtype == paddle.float32
        np.testing.assert_array_equal(state[k].numpy(), reference[k], err_msg=k)  # the masters, not fp16 values
    no_master = accel.fp32_state_dict(model)
    np.testing.assert_allclose(no_master[low[0]].numpy(), reference[low[0]], rtol=1e-3, atol=1e-3)
    cast = accel.match_dtypes(state, model)  # float32 file -> the O2 model's dtypes
    assert all(cast[k].dtype == model.state_dict()[k].dtype for k in cast)
    model.set_state_dict(cast)


def test_scale_loss_reaches_float16_scaler_and_is_flagged_for_bfloat16(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(accel, "on_gpu", lambda: True)  # resolve as on a GPU (nothing is run)
    amp = accel.AmpConfig.from_args(make_args(tmp_path, ["--use_amp", "--amp_dtype", "float16", "--scale_loss", "512"]))
    assert (amp.enabled, amp.dtype, amp.init_loss_scaling) == (True, "float16", 512.0)
    assert accel.AmpConfig.from_args(make_args(tmp_path, ["--use_amp"])).init_loss_scaling == accel.DEFAULT_LOSS_SCALE
    with caplog.at_level("WARNING"):
        accel.AmpConfig.from_args(make_args(tmp_path, ["--use_amp", "--amp_dtype", "bfloat16", "--scale_loss", "512"]))
    assert any("--scale_loss 512 unused" in r.getMessage() for r in caplog.records)
