"""The in-process GPU checks of ``tools/gpu_check.sh`` (run that script; this file is its Python half).

    python tools/gpu_check.py attention      # fused vs unfused attention, fp32/fp16/bf16, L % 8 == 0 and != 0
    python tools/gpu_check.py bf16_eval      # the prediction loop under bf16 / fp16 autocast vs fp32
    python tools/gpu_check.py weights DIR...  # saved weights float32, the pooler never rounded to fp16/bf16
    python tools/gpu_check.py same DIR_A DIR_B [--atol X]   # two model dirs hold the same weights

Each prints one ``OK ...`` / ``FAIL ...`` line per case and exits 1 if any case failed. ``attention`` and
``bf16_eval`` also run on CPU (fp32 only, every kernel Paddle's "math" one), which is how they are tested.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import paddle  # noqa: E402

import visualbert  # noqa: E402,F401  (runtime defaults before paddle)
from visualbert import accel  # noqa: E402
from visualbert.configuration import VisualBertConfig  # noqa: E402
from visualbert.inputs import make_inputs  # noqa: E402

# Max |fused - unfused| relative to max |unfused| (outputs are LayerNorm-ed, |x| ~ 1-4).
TOLERANCE = {"float32": 1e-4, "float16": 2e-2, "bfloat16": 6e-2}
LENGTHS = ((24, 40), (23, 40))  # text + regions = 64 (a multiple of 8: the memory-efficient kernel) and 63


def _print(ok, text):
    print(("OK   " if ok else "FAIL ") + text, flush=True)
    return ok


def low_precision_dtypes():
    """The autocast dtypes this device runs: none on CPU, float16 everywhere on GPU, bfloat16 from compute
    capability 8.0."""
    if not accel.on_gpu():
        return []
    major = paddle.device.cuda.get_device_capability()[0]
    return ["float16"] + (["bfloat16"] if major >= 8 else [])


def sdpa_kernel(dtype, batch, length, heads, head_size, mask_shape):
    """The kernel ``F.scaled_dot_product_attention`` picks for these inputs (Paddle's own dispatcher)."""
    from paddle.nn.functional import sdpa

    shape = [batch, length, heads, head_size]
    place = paddle.framework._current_expected_place_()
    params = sdpa.SDPParams(query_shape=shape, key_shape=shape, value_shape=shape, attn_mask_shape=mask_shape,
                            dropout=0.0, is_causal=False, scale=None, query_stop_gradient=True,
                            dtype=(getattr(paddle, dtype),) * 3, place=(place,) * 3)
    if len(sdpa._config) == 0:
        sdpa.init_config()
    return sdpa.select_sdp_for_sdpa(params)


def check_attention():
    from visualbert.modeling import VisualBertForVisualReasoning

    config = VisualBertConfig(vocab_size=2000, hidden_size=256, num_hidden_layers=2, num_attention_heads=4,
                              intermediate_size=512, visual_embedding_dim=64, max_position_embeddings=64,
                              hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, num_labels=2)
    paddle.seed(0)
    model = VisualBertForVisualReasoning(config)
    ok = True
    for dtype in ["float32"] + low_precision_dtypes():
        amp = accel.AmpConfig(enabled=dtype != "float32", level="O1", dtype=dtype if dtype != "float32" else "bfloat16")
        for text_len, regions in LENGTHS:
            length = text_len + regions
            inputs = {k: paddle.to_tensor(v) for k, v in make_inputs(config, "VisualBertForVisualReasoning",
                                                                     batch_size=3, text_len=text_len,
                                                                     num_regions=regions).items()}
            results = {}
            for fused in (False, True):
                accel.set_fused_attention(model, fused)
                model.train()
                model.clear_gradients()
                with accel.autocast(amp):
                    out = model(**inputs)
                out["loss"].backward()
                grad = model.visual_bert.encoder.layer[0].attention.self.query.weight.grad
                results[fused] = (accel.to_float32_numpy(out["logits"]), accel.to_float32_numpy(grad))
            kernel = sdpa_kernel(dtype, 3, length, 4, 64, [3, 4, length, length])
            for i, what in enumerate(("logits", "query-weight gradient")):
                ref, got = results[False][i], results[True][i]
                err = float(np.abs(got - ref).max()) / max(float(np.abs(ref).max()), 1e-12)
                finite = bool(np.isfinite(got).all())
                ok &= _print(finite and err <= TOLERANCE[dtype],
                             f"attention {dtype:8s} L={length} ({'multiple of 8' if length % 8 == 0 else 'not a multiple of 8'}) "
                             f"kernel={kernel}: fused vs unfused {what} rel. max|diff| {err:.1e} (<= {TOLERANCE[dtype]:g})")
    accel.set_fused_attention(model, False)
    return ok


def check_bf16_eval():
    """The one prediction loop (visualbert.engine.predict) under low-precision autocast gives the float32
    predictions: argmax agreement and logits close."""
    from visualbert.data.collate import Collator
    from visualbert.engine import predict as run_inference
    from visualbert.modeling import VisualBertForQuestionAnswering

    config = VisualBertConfig(vocab_size=2000, hidden_size=128, num_hidden_layers=2, num_attention_heads=2,
                              intermediate_size=256, visual_embedding_dim=32, max_position_embeddings=64, num_labels=50)
    paddle.seed(0)
    model = VisualBertForQuestionAnswering(config)
    r = np.random.RandomState(0)
    dataset = []
    for _ in range(40):
        n, v = int(r.randint(6, 14)), int(r.randint(3, 8))
        ids = r.randint(1000, 2000, size=n).astype("int64")
        ids[0], ids[-2], ids[-1] = 101, 103, 102  # [CLS] ... [MASK] [SEP]
        dataset.append({"input_ids": ids, "token_type_ids": np.zeros(n, "int64"),
                        "visual_embeds": r.randn(v, 32).astype("float32"), "visual_token_type_ids": np.zeros(v, "int64")})
    reference, _, _ = run_inference(model, dataset, 8, collate_fn=Collator())
    ok = True
    for dtype in low_precision_dtypes() or ["bfloat16"]:
        amp = accel.AmpConfig(enabled=accel.on_gpu(), level="O1", dtype=dtype)
        with accel.autocast(amp):
            got, _, _ = run_inference(model, dataset, 8, collate_fn=Collator())
        ref, low = reference["logits"], got["logits"]
        agree = float((ref.argmax(-1) == low.argmax(-1)).mean())
        err = float(np.abs(low.astype(np.float32) - ref).max())
        scale = float(np.abs(ref).max())
        ok &= _print(low.dtype == np.float32 and agree >= 0.9 and err <= 0.1 * max(scale, 1.0),
                     f"evaluation under {dtype if accel.on_gpu() else 'float32 (CPU: no autocast)'}: logits dtype "
                     f"{low.dtype}, argmax agreement with float32 {agree:.0%}, max|diff| {err:.2e} (logit scale {scale:.2f})")
    return ok


def _state(path):
    return paddle.load(os.path.join(path, "model_state.pdparams"))


def rounded_fraction(values):
    """Share of the non-zero float32 ``values`` whose low 13 mantissa bits are all zero, i.e. that went through
    a float16 (13 bits dropped) or bfloat16 (16 bits) cast: ~1e-4 for fp32 values, 1.0 for rounded ones."""
    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32)
    nonzero = bits & 0x7FFFFFFF != 0
    return float(((bits & 0x1FFF) == 0)[nonzero].mean()) if nonzero.any() else 0.0


def check_weights(dirs):
    """Every saved weight is float32 and the pooler's matrix was never rounded to fp16/bf16 (a frozen pooler has
    no master weight: under O2 it must stay float32, ``accel.float32_layers``)."""
    ok = True
    for d in dirs:
        state = _state(d)
        low = sorted(k for k, v in state.items() if v.dtype != paddle.float32 and paddle.is_floating_point(v))
        ok &= _print(not low, f"{d}: every saved weight is float32" + (f" (not: {low[:3]})" if low else ""))
        for key in (k for k in state if k.endswith("pooler.dense.weight")):
            frac = rounded_fraction(state[key].numpy())
            ok &= _print(frac < 0.01, f"{d}: {key} is not rounded to low precision ({frac:.1%} of values look rounded)")
    return ok


def check_same(dir_a, dir_b, atol):
    a, b = _state(dir_a), _state(dir_b)
    worst = max(float(np.abs(a[k].astype("float32").numpy() - b[k].astype("float32").numpy()).max()) for k in a)
    return _print(sorted(a) == sorted(b) and worst <= atol, f"{dir_a} == {dir_b}: max|diff| {worst:.2e} (<= {atol:g})")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("check", choices=("attention", "bf16_eval", "weights", "same"))
    parser.add_argument("dirs", nargs="*")
    parser.add_argument("--atol", type=float, default=0.0)
    args = parser.parse_args(argv)
    if args.check == "attention":
        ok = check_attention()
    elif args.check == "bf16_eval":
        ok = check_bf16_eval()
    elif args.check == "weights":
        ok = check_weights(args.dirs)
    else:
        if len(args.dirs) != 2:
            parser.error("same needs two model directories")
        ok = check_same(args.dirs[0], args.dirs[1], args.atol)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
