"""GPU code paths checked on CPU (issue 15): which fused-attention kernel Paddle picks and whether it accepts our
mask, the portable mask path against the CPU path, bf16/fp16 logits read as float32, unused parameters per head,
RNG state across device counts, the O2 / master-grad arguments.

The kernel acceptance rules below are transcribed from Paddle 3.3.1's C++ sources (the independent reference):
``paddle/phi/kernels/fusion/cutlass/memory_efficient_attention_utils.h`` (GetMemoryEfficientBiasStrideB/H) and
``paddle/phi/kernels/gpu/flash_attn_utils.h`` (FlashAttnParamsBase: mask dtype = q dtype, rank >= 4). The kernel
CHOICE is Paddle's own ``select_sdp_for_sdpa`` with its device queries patched."""

import random
import types

import numpy as np
import paddle
import pytest
from paddle.base import core
from paddle.nn.attention.sdpa import SDPBackend
from paddle.nn.functional import sdpa as sdpa_module

import visualbert  # noqa: F401
from visualbert import accel, rng
from visualbert.configuration import VisualBertConfig
from visualbert.inputs import make_inputs
from visualbert.metrics import nlvr2_metrics, vcr_metrics, vqa_soft_accuracy
from visualbert.modeling import (
    VisualBertForMultipleChoice,
    VisualBertForPreTraining,
    VisualBertForQuestionAnswering,
    VisualBertForRegionToPhraseAlignment,
    VisualBertForVisualReasoning,
    VisualBertSelfAttention,
)

TINY = dict(vocab_size=1200, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
            visual_embedding_dim=16, max_position_embeddings=64, hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0)


class KernelRejected(AssertionError):
    pass


def _mem_efficient_accepts(q_shape, k_shape, bias_shape):
    """GetMemoryEfficientBiasStrideB / StrideH (q, k: [B, L, H, d])."""
    rank = len(bias_shape)
    if rank not in (2, 4):
        return "rank of attn_bias should be 2 or 4"
    if bias_shape[-1] != k_shape[1]:
        return "last dim of attn_bias should equal the key length"
    if bias_shape[-2] != q_shape[1]:
        return "The 2nd last dim of attn_bias should be equal to the sequence length of query"
    if rank == 4 and not (bias_shape[0] == q_shape[0] and bias_shape[1] == q_shape[2]):
        if bias_shape[0] != 1:
            return "first dim of attn_bias should be 1 or batch size"
        if bias_shape[1] != 1:
            return "second dim of attn_bias should be 1 or num_heads"
    return None


def _flash_accepts(q, mask):
    if mask is None:
        return None
    if mask.dtype != q.dtype:
        return "attn_mask is expected to have the same data type with q"
    if mask.ndim < 4:
        return "attn_mask rank < 4"
    b, lq, h, _ = q.shape
    s = mask.shape
    if s[-1] != lq or s[-2] not in (1, lq) or s[-3] not in (1, h) or s[0] not in (1, b):
        return f"attn_mask {s} does not fit q {q.shape}"
    return None


def _broadcastable(shape, target):
    return all(a in (1, b) for a, b in zip(shape[::-1], target[::-1])) and len(shape) <= len(target)


@pytest.fixture
def fake_device(monkeypatch):
    """``set(kind, capability)`` makes Paddle's SDPA dispatcher believe the tensors sit on that device; the three
    kernels are replaced by recorders that raise :class:`KernelRejected` where the real kernel would fail."""
    calls = []
    cached = (sdpa_module.check_sm_version, sdpa_module.check_flash_attention_hardware_support,
              sdpa_module.check_mem_efficient_hardware_support, sdpa_module.minimum_gemm_alignment,
              sdpa_module.use_tensor_cores, sdpa_module.get_device_capability, sdpa_module.check_cuda_is_available)

    def clear():
        for fn in cached:
            getattr(fn, "cache_clear", lambda: None)()
        sdpa_module._config.clear()

    def configure(kind, capability):
        clear()
        on_gpu = kind == "gpu"
        monkeypatch.setattr(sdpa_module, "check_all_tensors_on_device", lambda params: on_gpu)
        monkeypatch.setattr(sdpa_module, "check_cuda_is_available", lambda: on_gpu)
        monkeypatch.setattr(sdpa_module, "get_device_capability", lambda device_id: capability)
        monkeypatch.setattr(paddle.device, "is_bf16_supported", lambda including_emulation=True: capability >= (8, 0))
        monkeypatch.setattr(paddle.device, "get_all_device_type", lambda: ["gpu"] if on_gpu else ["cpu"])
        monkeypatch.setattr(sdpa_module, "_get_enabled_backends",
                            lambda: [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH])

    def flash_attn(query, key, value, seed, mask, *args):
        calls.append("flash_attn")
        problem = _flash_accepts(query, mask)
        if problem:
            raise KernelRejected(problem)
        return paddle.zeros(query.shape, query.dtype), None, None, None

    def mem_efficient(query, key, value, attn_bias=None, p=0.0, scale=None, training=True):
        calls.append("mem_efficient")
        if attn_bias is not None:
            problem = _mem_efficient_accepts(query.shape, key.shape, list(attn_bias.shape))
            if problem:
                raise KernelRejected(problem)
        return paddle.zeros(query.shape, query.dtype)

    def math(query, key, value, mask, *args):
        calls.append("math")
        b, lq, h, _ = query.shape
        if mask is not None and not _broadcastable(list(mask.shape), [b, h, lq, key.shape[1]]):
            raise KernelRejected(f"mask {mask.shape} not broadcastable")
        return (paddle.zeros(query.shape, query.dtype),)

    monkeypatch.setattr(sdpa_module, "_C_ops", types.SimpleNamespace(flash_attn=flash_attn))
    monkeypatch.setattr(sdpa_module, "_math_attention", math)
    import paddle.incubate.nn.memory_efficient_attention as mea
    monkeypatch.setattr(mea, "memory_efficient_attention", mem_efficient)
    yield types.SimpleNamespace(set=configure, calls=calls)
    monkeypatch.undo()
    clear()


def _fused_layer_call(dtype, batch, length, heads=2, head_size=16, padded_mask=True):
    """The production path: VisualBertSelfAttention._fused_forward on the [B, 1, 1, L] mask the backbone hands
    every layer on GPU (Q/K/V cast to ``dtype``; Paddle's CPU build has no fp16/bf16 GEMM)."""
    config = VisualBertConfig(hidden_size=heads * head_size, num_attention_heads=heads, attention_probs_dropout_prob=0.0)
    layer = VisualBertSelfAttention(config)
    layer.eval()
    for sub in layer.sublayers(include_self=True):  # the portable kernels, as a model built on a GPU chooses
        sub.cpu_kernels = False
    layer.fused_attention = True
    project = layer._project_qkv
    layer._project_qkv = lambda h, b, n, query_scale=None: project(h, b, n, query_scale).astype(dtype)
    hidden = paddle.randn([batch, length, heads * head_size])
    keep = np.ones((batch, length), dtype=np.float32)
    if padded_mask:
        keep[0, length // 2:] = 0
    mask = paddle.to_tensor(((1.0 - keep) * -10000.0)[:, None, None, :])
    return layer(hidden, mask)[0]


CAPABILITIES = [(6, 1), (7, 0), (7, 5), (8, 0), (8, 6), (9, 0), (12, 0)]


def test_every_sdpa_kernel_choice_accepts_the_mask(fake_device):
    chosen = set()
    for kind in ("cpu", "gpu"):
        for capability in CAPABILITIES:
            for dtype in ("float32", "float16", "bfloat16"):
                for length in (15, 16, 40, 41):
                    for batch in (1, 3):
                        fake_device.set(kind, capability)
                        before = len(fake_device.calls)
                        out = _fused_layer_call(dtype, batch, length)
                        assert out.shape == [batch, length, 32]
                        assert len(fake_device.calls) == before + 1
                        chosen.add((kind, capability, dtype, length % 8 == 0, fake_device.calls[-1]))
    kernels = {c[-1] for c in chosen}
    assert kernels == {"flash_attn", "mem_efficient", "math"}, kernels  # the grid reached every kernel
    # Paddle's choice as the issue describes it: fp32 on an A100 with L % 8 == 0 is the memory-efficient kernel.
    assert ("gpu", (8, 0), "float32", True, "mem_efficient") in chosen
    assert ("gpu", (7, 5), "float16", True, "mem_efficient") in chosen
    assert ("gpu", (8, 0), "bfloat16", True, "flash_attn") in chosen
    assert ("cpu", (8, 0), "float32", True, "math") in chosen


@pytest.mark.parametrize("dtype,capability", [("float32", (8, 0)), ("float16", (7, 0)), ("float16", (7, 5))])
def test_the_broadcast_mask_is_what_the_memory_efficient_kernel_rejects(fake_device, monkeypatch, dtype, capability):
    """The finding reproduced: without the portable mask, Paddle expands [B, 1, 1, L] only to [B, H, 1, L]."""
    monkeypatch.setattr("visualbert.modeling.sdpa_attention_mask", lambda mask, heads, length: mask)
    fake_device.set("gpu", capability)
    with pytest.raises(KernelRejected, match="2nd last dim of attn_bias"):
        _fused_layer_call(dtype, 3, 16)
    assert fake_device.calls[-1] == "mem_efficient"
    fake_device.set("gpu", capability)
    _fused_layer_call(dtype, 3, 15)  # a length that is not a multiple of 8 falls back to "math" and runs


@pytest.mark.parametrize("text_len,num_regions", [(6, 10), (7, 10)])  # L = 16 and 17
def test_portable_mask_path_equals_the_cpu_path(monkeypatch, text_len, num_regions):
    """The GPU path (broadcast [B, 1, 1, L] mask handed to every layer, expanded to [B, H, L, L] for SDPA, fused
    attention) equals the CPU path (mask expanded once, this port's own attention) numerically, on CPU."""
    paddle.seed(0)
    config = VisualBertConfig(**TINY, num_labels=3)
    model = VisualBertForVisualReasoning(config)
    model.eval()
    inputs = {k: paddle.to_tensor(v) for k, v in make_inputs(config, "VisualBertForVisualReasoning", batch_size=3,
                                                             text_len=text_len, num_regions=num_regions,
                                                             with_labels=False).items()}
    assert int(inputs["attention_mask"].sum()) < inputs["attention_mask"].size  # padding is exercised
    with paddle.no_grad():
        reference = model.visual_bert(**inputs).last_hidden_state.numpy()
        accel.set_fused_attention(model, True)
        model.set_cpu_kernels(False)  # the broadcast mask and F.linear: what a model built on a GPU runs
        portable = model.visual_bert(**inputs).last_hidden_state.numpy()
    np.testing.assert_allclose(portable, reference, rtol=1e-5, atol=1e-5)


def test_sdpa_attention_mask_shape_and_values():
    mask = paddle.to_tensor(np.array([0.0, 0.0, -10000.0], dtype=np.float32).reshape(1, 1, 1, 3).repeat(2, 0))
    full = accel.sdpa_attention_mask(mask, 4, 3)
    assert full.shape == [2, 4, 3, 3]
    np.testing.assert_array_equal(full.numpy(), np.broadcast_to(mask.numpy(), (2, 4, 3, 3)))
    assert accel.sdpa_attention_mask(full, 4, 3) is full and accel.sdpa_attention_mask(None, 4, 3) is None


# ------------------------------------------------------------------------------------------ bf16 / fp16 logits
def _logits(n=64, c=7, seed=0):
    """Scores exactly representable in bf16 and fp16 (multiples of 1/8 in [-8, 8]), negative ones included, with a
    unique maximum per row, so that the float32 argmax is the reference for every dtype."""
    r = np.random.RandomState(seed)
    logits = r.randint(-64, 64, size=(n, c)).astype(np.float32) / 8
    logits[np.arange(n), r.randint(0, c, size=n)] = 8.5
    return logits


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_low_precision_logits_give_the_float32_predictions_and_metrics(dtype):
    logits = _logits()
    low = paddle.to_tensor(logits).astype(dtype)
    read = accel.to_float32_numpy(low)
    assert read.dtype == np.float32
    np.testing.assert_array_equal(read, logits)
    r = np.random.RandomState(1)
    vqa_targets = np.zeros_like(logits)
    vqa_targets[np.arange(len(logits)), r.randint(0, logits.shape[1], len(logits))] = 1.0
    assert vqa_soft_accuracy(read, vqa_targets) == vqa_soft_accuracy(logits, vqa_targets)
    two = logits[:, :2]
    labels = r.randint(0, 2, len(two))
    ids = [f"dev-{i // 2}-0-{i % 2}" for i in range(len(two))]
    as_pred = lambda scores: dict(zip(ids, (scores.argmax(-1) == 1).tolist()))  # noqa: E731
    truth = dict(zip(ids, (labels == 1).tolist()))
    assert nlvr2_metrics(as_pred(accel.to_float32_numpy(paddle.to_tensor(two).astype(dtype))), truth) == \
        nlvr2_metrics(as_pred(two), truth)
    four = logits[:, :4]
    answers = r.randint(0, 4, len(four))
    assert vcr_metrics(accel.to_float32_numpy(paddle.to_tensor(four).astype(dtype)), answers) == \
        vcr_metrics(four, answers)


def test_raw_bfloat16_numpy_is_bit_patterns():
    """The Paddle behaviour that makes the helper necessary (if a Paddle release fixes it, this test says so)."""
    raw = paddle.to_tensor([-2.0, 0.5, 1.0]).astype("bfloat16").numpy()
    assert raw.tolist() == [49152, 16128, 16256]
    logits = _logits()
    assert (np.asarray(paddle.to_tensor(logits).astype("bfloat16").numpy()).argmax(-1) != logits.argmax(-1)).any()


def test_to_float32_numpy_keeps_other_dtypes():
    assert accel.to_float32_numpy(paddle.to_tensor([1, 2], dtype="int64")).dtype == np.int64
    assert accel.to_float32_numpy(paddle.to_tensor([1.5])).dtype == np.float32
    array = np.zeros(3, dtype=np.float64)
    assert accel.to_float32_numpy(array) is array


# ------------------------------------------------------------------------------------------ unused parameters
HEADS = [
    (VisualBertForPreTraining, ("labels",)),
    (VisualBertForPreTraining, ("labels", "sentence_image_labels")),
    (VisualBertForPreTraining, ("sentence_image_labels",)),
    (VisualBertForQuestionAnswering, ("labels",)),
    (VisualBertForVisualReasoning, ("labels",)),
    (VisualBertForMultipleChoice, ("labels",)),
    (VisualBertForRegionToPhraseAlignment, ("labels",)),
]


@pytest.mark.parametrize("cls,label_keys", HEADS, ids=lambda v: v.__name__ if isinstance(v, type) else "+".join(v))
@pytest.mark.parametrize("freeze_pooler", [False, True])
def test_find_unused_parameters_only_where_a_parameter_gets_no_gradient(cls, label_keys, freeze_pooler):
    """Reference: autograd. One training forward + backward; a trainable parameter without a gradient is what
    makes ``DataParallel(find_unused_parameters=False)`` hang."""
    paddle.seed(0)
    model = cls(VisualBertConfig(**TINY, num_labels=5 if cls is VisualBertForQuestionAnswering else 2))
    if freeze_pooler:
        for p in model.visual_bert.pooler.parameters():
            p.stop_gradient = True
    model.train()
    arrays = make_inputs(model.config, cls.__name__, batch_size=2, text_len=8, num_regions=4)
    drop = {"labels", "sentence_image_labels"} - set(label_keys)
    batch = {k: paddle.to_tensor(v) for k, v in arrays.items() if k not in drop}
    model(**batch)["loss"].backward()
    without_grad = [n for n, p in model.named_parameters() if not p.stop_gradient and p.grad is None]
    assert accel.needs_find_unused_parameters(model, batch.keys()) == bool(without_grad), without_grad


# ------------------------------------------------------------------------------------------ RNG state
class FakeDevices:
    """``n`` GPU generators (real Paddle generators, created on the CPU) and a current device index."""

    def __init__(self, n, current=0):
        self.generators = [core.Generator() for _ in range(n)]
        for i, g in enumerate(self.generators):
            g.manual_seed(100 + i)
        self.current = current

    def install(self, monkeypatch):
        monkeypatch.setattr(rng, "_device", lambda: ("gpu", self.current))
        monkeypatch.setattr(rng, "_device_generator", lambda kind, index: self.generators[index])


def _draws():
    return (random.random(), float(np.random.rand()), core.default_cpu_generator().random())


def test_rng_state_saved_with_two_devices_restores_with_one(monkeypatch):
    two = FakeDevices(2, current=1)
    two.install(monkeypatch)
    state = rng.get_state()
    expected_host, expected_device = _draws(), two.generators[1].random()
    _draws()
    one = FakeDevices(1, current=0)
    one.install(monkeypatch)
    assert rng.set_state(state) == ["python", "numpy", "paddle_cpu", "paddle_gpu"]
    assert _draws() == expected_host
    assert one.generators[0].random() == expected_device  # rank 1's dropout stream continues on the one device


def test_rng_state_saved_on_gpu_restores_on_cpu_and_back(monkeypatch):
    gpu = FakeDevices(4, current=2)
    gpu.install(monkeypatch)
    state = rng.get_state()
    expected = _draws()
    monkeypatch.setattr(rng, "_device", lambda: ("cpu", None))
    monkeypatch.setattr(rng, "_device_generator", lambda kind, index: None)
    assert rng.set_state(state) == ["python", "numpy", "paddle_cpu"]
    assert _draws() == expected
    cpu_state = rng.get_state()
    assert cpu_state["paddle_device"] is None
    expected = _draws()
    FakeDevices(2).install(monkeypatch)
    assert rng.set_state(cpu_state) == ["python", "numpy", "paddle_cpu"]
    assert _draws() == expected


def test_legacy_rng_state_list_restores_on_another_device_count(monkeypatch):
    saved = FakeDevices(4, current=0)
    legacy = {"python": random.getstate(), "numpy": np.random.get_state(),
              "paddle": [g.get_state() for g in saved.generators]}
    expected = saved.generators[0].random()
    one = FakeDevices(1)
    one.install(monkeypatch)
    assert rng.set_state(legacy) == ["python", "numpy", "paddle_gpu"]
    assert one.generators[0].random() == expected
    # and the real CPU round trip of a legacy checkpoint (paddle.get_rng_state() on CPU: one entry)
    monkeypatch.undo()
    legacy = {"python": random.getstate(), "numpy": np.random.get_state(), "paddle": paddle.get_rng_state()}
    expected = _draws()
    assert rng.set_state(legacy) == ["python", "numpy", "paddle_cpu"]
    assert _draws() == expected


# ------------------------------------------------------------------------------------------ O2 arguments
def test_prepare_keeps_the_frozen_pooler_fp32_and_uses_master_grad(monkeypatch):
    """Paddle's CPU build casts nothing under O2, so the arguments handed to ``paddle.amp.decorate`` are checked
    (tools/gpu_check.sh checks the dtypes on a GPU)."""
    seen = {}

    def decorate(**kwargs):
        seen.update(kwargs)
        return kwargs["models"], kwargs.get("optimizers")

    monkeypatch.setattr(paddle.amp, "decorate", decorate)
    model = VisualBertForVisualReasoning(VisualBertConfig(**TINY, num_labels=2))
    optimizer = paddle.optimizer.AdamW(parameters=model.parameters())
    amp = accel.AmpConfig(enabled=True, level="O2", dtype="bfloat16")
    accel.prepare(model, optimizer, amp, keep_float32=accel.float32_layers(model, freeze_pooler=True))
    assert seen["excluded_layers"] == [model.visual_bert.pooler] and seen["master_grad"] is True
    assert seen["master_weight"] is True and seen["dtype"] == "bfloat16"
    accel.prepare(model, optimizer, amp, keep_float32=accel.float32_layers(model, freeze_pooler=False))
    assert seen["excluded_layers"] is None
    seen.clear()
    assert accel.prepare(model, optimizer, accel.AmpConfig(enabled=True, level="O1")) == (model, optimizer)
    assert not seen  # O1 decorates nothing


# ------------------------------------------------------------------------------------------ predictor device
class RecordingConfig:
    def __init__(self):
        self.calls = []

    def __getattr__(self, name):
        return lambda *args: self.calls.append((name,) + args)


def test_predictor_takes_the_gpu_when_paddle_sees_one(monkeypatch):
    from visualbert import inference

    monkeypatch.setattr(paddle.device, "is_compiled_with_cuda", lambda: False)
    assert inference.resolve_device("auto") == "cpu"
    with pytest.raises(ValueError, match="sees no GPU"):
        inference.resolve_device("gpu")
    with pytest.raises(ValueError, match="must be one of"):
        inference.resolve_device("tpu")
    monkeypatch.setattr(paddle.device, "is_compiled_with_cuda", lambda: True)
    monkeypatch.setattr(paddle.device.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(paddle.device, "get_device", lambda: "gpu:1")
    assert inference.resolve_device("auto") == "gpu:1" and inference.resolve_device("cpu") == "cpu"
    gpu = inference.configure_device(RecordingConfig(), "gpu:1")
    assert gpu.calls == [("enable_use_gpu", inference.GPU_MEMORY_POOL_MB, 1)]
    cpu = inference.configure_device(RecordingConfig(), "cpu", threads=3)
    assert cpu.calls == [("disable_gpu",), ("set_cpu_math_library_num_threads", 3), ("disable_mkldnn",)]


def test_loss_window_reads_the_mean_once():
    window = accel.LossWindow()
    losses = [0.5, 1.25, 2.0]
    for value in losses:
        window.add(paddle.to_tensor(value, stop_gradient=False) * 1.0)
    mean, count = window.read()
    assert count == 3 and mean == pytest.approx(np.mean(losses))
    assert window.read() == (None, 0)
    window.add(paddle.to_tensor(4.0).astype("bfloat16"))
    assert window.read() == (4.0, 1)


# ------------------------------------------------------------------------------------------ pretraining outputs
@pytest.mark.parametrize("label_keys,expected", [
    (("labels",), {"loss", "prediction_logits"}),
    (("sentence_image_labels",), {"loss", "seq_relationship_logits"}),
    (("labels", "sentence_image_labels"), {"loss", "prediction_logits", "seq_relationship_logits"}),
])
def test_pretraining_returns_only_what_the_loss_uses_in_training(label_keys, expected):
    paddle.seed(0)
    model = VisualBertForPreTraining(VisualBertConfig(**TINY))
    arrays = make_inputs(model.config, "VisualBertForPreTraining", batch_size=2, text_len=8, num_regions=4)
    drop = {"labels", "sentence_image_labels"} - set(label_keys)
    batch = {k: paddle.to_tensor(v) for k, v in arrays.items() if k not in drop}
    model.train()
    train = model(**batch)
    assert set(train) == expected
    model.eval()
    with paddle.no_grad():
        evaluation = model(**batch)
    assert set(evaluation) == {"loss", "prediction_logits", "seq_relationship_logits"}  # evaluation reads both
    np.testing.assert_allclose(float(train["loss"]), float(evaluation["loss"]), rtol=1e-6)  # dropout 0: same loss
    no_labels = {k: v for k, v in batch.items() if k not in ("labels", "sentence_image_labels")}
    model.train()
    assert set(model(**no_labels)) == {"prediction_logits", "seq_relationship_logits"}


# ------------------------------------------------------------------------------------------ the prediction loop
class Bfloat16Logits(paddle.nn.Layer):
    """A model whose logits leave the forward pass in bfloat16, as the heads' do under bf16 autocast on a GPU."""

    def __init__(self, logits):
        super().__init__()
        self.logits, self.offset = logits, 0

    def forward(self, input_ids, **kwargs):
        n = input_ids.shape[0]
        out = self.logits[self.offset:self.offset + n]
        self.offset += n
        return {"logits": paddle.to_tensor(out).astype("bfloat16")}


def test_prediction_loop_reads_bfloat16_logits_as_float32():
    from visualbert.data.collate import Collator
    from visualbert.engine import predict as run_inference

    logits = _logits(n=10, c=5)
    r = np.random.RandomState(0)
    dataset = [{"input_ids": r.randint(5, 50, size=4).astype("int64"), "token_type_ids": np.zeros(4, "int64"),
                "visual_embeds": r.randn(2, 4).astype("float32"), "visual_token_type_ids": np.zeros(2, "int64")}
               for _ in range(10)]
    arrays, _, _ = run_inference(Bfloat16Logits(logits), dataset, 4, collate_fn=Collator())
    np.testing.assert_array_equal(arrays["logits"], logits)
