"""BertAdam (visualbert.optim) against the original's definitions.

The reference below is a transcription, in torch, of ``BertAdam`` and ``WarmupLinearSchedule`` from
uclanlp/visualbert ``visualbert/pytorch_pretrained_bert/optimization.py`` (only the deprecated
``add_(scalar, tensor)`` / ``addcmul_(scalar, t1, t2)`` overloads are written with ``alpha=`` / ``value=``), with
the parameter groups of ``models/model_wrapper.py`` (``initialize_opimizer``: pooler dropped, decay 0.01 except
names containing bias / LayerNorm.bias / LayerNorm.weight, ``t_total = int(len / batch / accum) * epochs``).
"""

import numpy as np
import paddle
import pytest

from visualbert.optim import BertAdam, WarmupLinearSchedule, original_total_steps

torch = pytest.importorskip("torch")


# ------------------------------------------------------------------ the original, transcribed (torch)
class RefWarmupLinearSchedule:
    warn_t_total = True

    def __init__(self, warmup=0.002, t_total=-1):
        if not 0.0 <= warmup < 1.0 and not warmup == -1:
            raise ValueError("Invalid warmup")
        warmup = max(warmup, 0.)
        self.warmup, self.t_total = float(warmup), float(t_total)

    def get_lr(self, step):
        if self.t_total < 0:
            return 1.
        progress = float(step) / self.t_total
        return self.get_lr_(progress)

    def get_lr_(self, progress):
        if progress < self.warmup:
            return progress / self.warmup
        return max((progress - 1.) / (self.warmup - 1.), 0.)


class RefBertAdam(torch.optim.Optimizer):
    def __init__(self, params, lr, warmup=-1, t_total=-1, b1=0.9, b2=0.999, e=1e-6, weight_decay=0.01,
                 max_grad_norm=1.0):
        schedule = RefWarmupLinearSchedule(warmup=warmup, t_total=t_total)
        defaults = dict(lr=lr, schedule=schedule, b1=b1, b2=b2, e=e, weight_decay=weight_decay,
                        max_grad_norm=max_grad_norm)
        super().__init__(params, defaults)

    def step(self, closure=None):
        for group in self.param_groups:
            for p in group['params']:
                if p.grad is None:
                    continue
                grad = p.grad.data
                state = self.state[p]
                if len(state) == 0:
                    state['step'] = 0
                    state['next_m'] = torch.zeros_like(p.data)
                    state['next_v'] = torch.zeros_like(p.data)
                next_m, next_v = state['next_m'], state['next_v']
                beta1, beta2 = group['b1'], group['b2']
                if group['max_grad_norm'] > 0:
                    torch.nn.utils.clip_grad_norm_(p, group['max_grad_norm'])
                next_m.mul_(beta1).add_(grad, alpha=1 - beta1)
                next_v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                update = next_m / (next_v.sqrt() + group['e'])
                if group['weight_decay'] > 0.0:
                    update += group['weight_decay'] * p.data
                lr_scheduled = group['lr']
                lr_scheduled *= group['schedule'].get_lr(state['step'])
                update_with_lr = lr_scheduled * update
                p.data.add_(-update_with_lr)
                state['step'] += 1


# ------------------------------------------------------------------ one tiny model in both frameworks
# name -> shape. "huge.weight" gets a gradient of norm ~1e4 (clipped), the others stay far below 1.
SHAPES = {
    "dense.weight": (6, 8), "dense.bias": (8,), "LayerNorm.weight": (8,), "LayerNorm.bias": (8,),
    "out.weight": (8, 3), "out.bias": (3,), "huge.weight": (3,),
}


def initial_weights(seed=0):
    rng = np.random.default_rng(seed)
    out = {n: (rng.standard_normal(s) * 0.3).astype(np.float32) for n, s in SHAPES.items()}
    out["LayerNorm.weight"] = (1.0 + out["LayerNorm.weight"] * 0.1).astype(np.float32)
    return out


def data(n=40, seed=1):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 6)).astype(np.float32), rng.standard_normal((n, 3)).astype(np.float32)


def loss_fn(lib, w, x, y):
    h = lib.tanh(x @ w["dense.weight"] + w["dense.bias"])
    mu = h.mean(-1, keepdim=True)
    var = ((h - mu) ** 2).mean(-1, keepdim=True)
    h = (h - mu) / lib.sqrt(var + 1e-12) * w["LayerNorm.weight"] + w["LayerNorm.bias"]
    out = h @ w["out.weight"] + w["out.bias"]
    return ((out - y) ** 2).mean() * 0.01 + lib.tanh(w["huge.weight"] * x[:, :3]).sum() * 1000.0


BATCH, ACCUM, EPOCHS, LR, WARMUP = 4, 2, 5, 1e-2, 0.1


def torch_run(steps_out):
    w = {n: torch.nn.Parameter(torch.from_numpy(v.copy())) for n, v in initial_weights().items()}
    named = [(n, p) for n, p in w.items() if "pooler" not in n]
    no_decay = ['bias', 'LayerNorm.bias', 'LayerNorm.weight']
    groups = [{'params': [p for n, p in named if not any(nd in n for nd in no_decay)], 'weight_decay': 0.01},
              {'params': [p for n, p in named if any(nd in n for nd in no_decay)], 'weight_decay': 0.0}]
    x, y = data()
    t_total = int(len(x) / BATCH / ACCUM) * EPOCHS
    opt = RefBertAdam(groups, lr=LR, warmup=WARMUP, t_total=t_total)
    norms = []
    for epoch in range(EPOCHS):
        for start in range(0, len(x), BATCH * ACCUM):
            for mb in range(ACCUM):
                sl = slice(start + mb * BATCH, start + (mb + 1) * BATCH)
                (loss_fn(torch, w, torch.from_numpy(x[sl]), torch.from_numpy(y[sl])) / ACCUM).backward()
            norms.append({n: float(p.grad.norm()) for n, p in w.items()})
            opt.step()
            opt.zero_grad(set_to_none=False)
            steps_out.append({n: p.detach().numpy().copy() for n, p in w.items()})
    return norms, t_total


def paddle_model(weights=None):
    weights = initial_weights() if weights is None else weights
    return {n: paddle.create_parameter(list(v.shape), "float32",
                                       default_initializer=paddle.nn.initializer.Assign(v)) for n, v in weights.items()}


def paddle_train(w, opt, x, y, first_step=0, last_step=None, record=None):
    """Runs optimizer steps [first_step, last_step) of the same schedule of micro-batches as torch_run."""
    groups = [(e, s) for e in range(EPOCHS) for s in range(0, len(x), BATCH * ACCUM)]
    for step, (_, start) in enumerate(groups):
        if step < first_step:
            continue
        if last_step is not None and step >= last_step:
            break
        for mb in range(ACCUM):
            sl = slice(start + mb * BATCH, start + (mb + 1) * BATCH)
            (loss_fn(paddle, w, paddle.to_tensor(x[sl]), paddle.to_tensor(y[sl])) / ACCUM).backward()
        opt.step()
        opt.clear_grad()
        if record is not None:
            record.append({n: p.numpy().copy() for n, p in w.items()})


def test_schedule_is_the_originals():
    ref = RefWarmupLinearSchedule(warmup=0.1, t_total=25)
    ours = WarmupLinearSchedule(warmup=0.1, t_total=25)
    for step in range(0, 30):
        assert ours(step) == ref.get_lr(step)
    # hand values: 0 at step 0, peak 1 at progress 0.1 (step 2.5 -> 1 at step 3 is (0.12-1)/(0.1-1)), 0 at the end
    assert ours(0) == 0.0 and ours(1) == pytest.approx(0.4) and ours(3) == pytest.approx(0.88 / 0.9)
    assert ours(25) == 0.0 and ours(40) == 0.0
    assert WarmupLinearSchedule(-1, -1)(7) == 1.0
    with pytest.raises(ValueError):
        WarmupLinearSchedule(1.0, 10)


def test_total_steps_are_the_originals():
    # int(len(train) / batch / accumulation) * epochs, a float division truncated once
    assert original_total_steps(443757, 64, 10) == int(443757 / 64 / 1) * 10 == 69330
    assert original_total_steps(101, 8, 3, gradient_accumulation_steps=2) == 6 * 3
    assert original_total_steps(7, 8, 4) == 0


@pytest.mark.parametrize("update", ["cpp", "tensor_ops"])
def test_bertadam_matches_the_original_at_every_step(update, monkeypatch):
    """Both update paths: the one-pass C++ kernel (float32 on CPU) and the tensor ops (what a GPU runs)."""
    from visualbert import kernels

    if update == "tensor_ops":
        monkeypatch.setattr(kernels, "bert_adam_", lambda *args: False)
    elif kernels.load_cpu_kernels() is None:
        pytest.skip(f"C++ extension not built here: {kernels.status()['error']}")
    else:
        applied, fused = [], kernels.bert_adam_
        monkeypatch.setattr(kernels, "bert_adam_", lambda *args: applied.append(fused(*args)) or applied[-1])
    ref_steps = []
    norms, t_total = torch_run(ref_steps)
    assert len(ref_steps) >= 20 and t_total == len(ref_steps)
    # the test exercises per-tensor clipping: only huge.weight exceeds max_grad_norm
    assert all(n["huge.weight"] > 100 for n in norms)
    assert all(v < 1.0 for n in norms for k, v in n.items() if k != "huge.weight")

    w = paddle_model()
    opt = BertAdam(list(w.items()), learning_rate=LR, warmup=WARMUP, t_total=t_total)
    assert opt.weight_decay["dense.weight"] == 0.01 and opt.weight_decay["LayerNorm.weight"] == 0.0
    assert opt.weight_decay["dense.bias"] == 0.0 and opt.weight_decay["huge.weight"] == 0.01
    x, y = data()
    ours = []
    paddle_train(w, opt, x, y, record=ours)
    assert len(ours) == len(ref_steps)
    worst = max(float(np.abs(a[n] - b[n]).max()) for a, b in zip(ours, ref_steps) for n in SHAPES)
    print(f"BertAdam parity over {len(ours)} steps (accumulation {ACCUM}): max |dw| = {worst:.3e}")
    for step, (a, b) in enumerate(zip(ours, ref_steps)):
        for n in SHAPES:
            np.testing.assert_allclose(a[n], b[n], rtol=0, atol=1e-6, err_msg=f"{n} at step {step + 1}")
    if update == "cpp":
        assert applied and all(applied)  # every update went through the kernel
    # and the run did move every tensor well beyond the tolerance
    init = initial_weights()
    assert all(np.abs(ours[-1][n] - init[n]).max() > 1e-3 for n in SHAPES)


def test_per_tensor_clipping_shrinks_only_the_huge_gradient():
    """With the schedule at 1 and no decay, the first moment after one step is (1 - b1) * clipped gradient."""
    w = paddle_model()
    opt = BertAdam(list(w.items()), learning_rate=0.0, weight_decay=0.0)
    x, y = data()
    loss_fn(paddle, w, paddle.to_tensor(x[:4]), paddle.to_tensor(y[:4])).backward()
    grads = {n: p.grad.numpy().copy() for n, p in w.items()}
    opt.step()
    for n, g in grads.items():
        m = opt.state[n]["next_m"].numpy() / 0.1
        norm = np.linalg.norm(g)
        expected = g * (1.0 / (norm + 1e-6)) if norm > 1.0 else g
        np.testing.assert_allclose(m, expected, rtol=1e-5, atol=1e-8)
        if n == "huge.weight":
            assert np.linalg.norm(m) == pytest.approx(1.0, rel=1e-5)
        else:
            np.testing.assert_allclose(m, g, rtol=1e-5, atol=1e-8)


def test_first_step_changes_no_weight():
    w = paddle_model()
    opt = BertAdam(list(w.items()), learning_rate=1.0, warmup=0.1, t_total=10)
    assert opt.get_lr() == 0.0
    x, y = data()
    loss_fn(paddle, w, paddle.to_tensor(x[:4]), paddle.to_tensor(y[:4])).backward()
    opt.step()
    for n, v in initial_weights().items():
        assert np.array_equal(w[n].numpy(), v), n
        assert np.abs(opt.state[n]["next_m"].numpy()).max() > 0  # the moments did update
    assert opt.get_lr() == pytest.approx(1.0 * (0.1 / 0.1))  # step 1 of 10 with warmup 0.1: peak


def test_frozen_pooler_stays_bit_for_bit_and_the_rest_moves():
    from visualbert.configuration import VisualBertConfig
    from visualbert.modeling import VisualBertForVisualReasoning
    from visualbert.optim import ORIGINAL_EXCLUDED

    paddle.seed(0)
    cfg = VisualBertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                           intermediate_size=32, visual_embedding_dim=8, max_position_embeddings=32)
    model = VisualBertForVisualReasoning(cfg)
    named = [(n, p) for n, p in model.named_parameters() if ORIGINAL_EXCLUDED not in n]
    assert any("pooler" in n for n, _ in model.named_parameters()) and len(named) < len(model.parameters())
    before = {n: p.numpy().copy() for n, p in model.named_parameters()}
    opt = BertAdam(named, learning_rate=1e-2, warmup=0.1, t_total=6)
    rng = np.random.default_rng(0)
    for _ in range(4):
        out = model(input_ids=paddle.to_tensor(rng.integers(1, 50, (2, 5))),
                    visual_embeds=paddle.to_tensor(rng.standard_normal((2, 3, 8)).astype(np.float32)),
                    labels=paddle.to_tensor(np.array([0, 1])))
        out["loss"].backward()
        opt.step()
        model.clear_gradients()
    for n, p in model.named_parameters():
        if "pooler" in n:
            assert np.array_equal(p.numpy(), before[n]), n
        else:
            assert not np.array_equal(p.numpy(), before[n]), n


def test_resume_mid_run_equals_the_uninterrupted_run(tmp_path):
    x, y = data()
    t_total = int(len(x) / BATCH / ACCUM) * EPOCHS
    w = paddle_model()
    opt = BertAdam(list(w.items()), learning_rate=LR, warmup=WARMUP, t_total=t_total)
    paddle_train(w, opt, x, y)
    uninterrupted = {n: p.numpy() for n, p in w.items()}

    w = paddle_model()
    opt = BertAdam(list(w.items()), learning_rate=LR, warmup=WARMUP, t_total=t_total)
    paddle_train(w, opt, x, y, last_step=11)
    paddle.save({n: p for n, p in w.items()}, str(tmp_path / "w.pdparams"))
    paddle.save(opt.state_dict(), str(tmp_path / "opt.pdopt"))
    del w, opt
    saved = paddle.load(str(tmp_path / "w.pdparams"))
    # a new process would build parameters in another order / with other paddle names: state is by structured name
    w = paddle_model({n: saved[n].numpy() for n in reversed(list(SHAPES))})
    opt = BertAdam(list(reversed(list(w.items()))), learning_rate=LR, warmup=WARMUP, t_total=t_total)
    opt.set_state_dict(paddle.load(str(tmp_path / "opt.pdopt")))
    assert opt.step_count == 11
    paddle_train(w, opt, x, y, first_step=11)
    for n, v in uninterrupted.items():
        assert np.array_equal(w[n].numpy(), v), n


def test_set_state_dict_refuses_other_settings_and_parameters():
    w = paddle_model()
    opt = BertAdam(list(w.items()), learning_rate=LR, warmup=WARMUP, t_total=25)
    x, y = data()
    paddle_train(w, opt, x, y, last_step=2)
    state = opt.state_dict()
    other_lr = BertAdam(list(w.items()), learning_rate=2 * LR, warmup=WARMUP, t_total=25)
    with pytest.raises(ValueError, match="learning_rate"):
        other_lr.set_state_dict(state)
    fewer = BertAdam([(n, p) for n, p in w.items() if n != "out.bias"], learning_rate=LR, warmup=WARMUP, t_total=25,
                     no_decay=lambda n: "bias" in n or "LayerNorm" in n)
    with pytest.raises(ValueError, match="does not train"):
        fewer.set_state_dict(dict(state, hyperparameters=fewer._hyperparameters()))
    with pytest.raises(ValueError, match="not a BertAdam state"):
        opt.set_state_dict({"linear_0.w_0_moment1_0": 1})


def test_bfloat16_parameters_update_through_fp32_master_weights():
    """A bf16 parameter whose gradient is exactly representable follows the fp32 run exactly in its master weight;
    the parameter is the master rounded to bf16."""
    rng = np.random.default_rng(3)
    init = (rng.standard_normal(16) * 0.5).astype(np.float32)
    xs = [paddle.to_tensor(rng.standard_normal(16).astype(np.float32)).astype("bfloat16") for _ in range(6)]
    w32 = paddle.create_parameter([16], "float32", default_initializer=paddle.nn.initializer.Assign(init))
    w16 = paddle.create_parameter([16], "bfloat16", default_initializer=paddle.nn.initializer.Assign(init))
    opt32 = BertAdam([("w", w32)], learning_rate=0.05, warmup=0.2, t_total=6)
    opt16 = BertAdam([("w", w16)], learning_rate=0.05, warmup=0.2, t_total=6,
                     master_weights={"w": paddle.to_tensor(init)})
    for x in xs:
        (w32 * x.astype("float32")).sum().backward()
        (w16 * x).sum().backward()
        opt32.step(), opt16.step()
        opt32.clear_grad(), opt16.clear_grad()
        master = opt16._master_weights[w16.name]
        assert master.dtype == paddle.float32
        assert np.array_equal(master.numpy(), w32.numpy())
        assert np.array_equal(w16.astype("float32").numpy(), master.astype("bfloat16").astype("float32").numpy())
    assert not np.array_equal(w32.numpy(), init)
    assert set(opt16.state_dict()["master_weights"]) == {"w"}
