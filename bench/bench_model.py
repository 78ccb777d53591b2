"""Benchmark: the Paddle VisualBERT port against HF ``VisualBertForQuestionAnswering`` in ONE process.

    python bench/bench_model.py                 # full size: batch 8, 128 text tokens + 100 regions
    python bench/bench_model.py --quick         # fewer steps, smaller batch: a smoke run
    python bench/bench_model.py --json bench/results.json

What it does, in order:

1. builds a full-size HF VQA model (BERT-base, 3129 answers, visual dim 2048) with random weights, saves it
   as an HF directory and converts it with ``checkpoint/convert.py``; the Paddle model loads the result;
2. checks the two frameworks agree on the logits (max |Δ| ≤ ``--tolerance``) before timing anything;
3. measures this machine's fp32 GEMM rate (torch and Paddle on a 2048³ product and on the model's FFN
   shape; the best of all is "the machine's rate");
4. measures peak memory of a training step and of inference for each framework: phases run one after
   the other in this process (torch, then Paddle), a thread samples the resident set size every 2 ms
   and the report is the high-water increase over the RSS at the start of the phase (glibc is told to
   return freed memory between phases, so one framework's freed heap cannot hide the other's);
5. times inference (eval mode, no grad) and a training step (train mode with dropout, forward with the
   VQA KL-div loss, backward, AdamW), interleaving the frameworks step by step so that load from other
   processes hits both alike; also the static-graph Paddle model (``paddle.jit.to_static``) and the
   exported ``paddle.inference`` predictor when ``tools/export_model.py`` is available.

Thread count: ``--threads N`` sets both frameworks (default: the package default, all available cores;
an ``OMP_NUM_THREADS`` already in the environment wins). ``visualbert`` is imported before ``paddle``
so that its runtime defaults (``visualbert/runtime.py``) are in place when the math library loads.
"""

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--text-len", type=int, default=128)
    p.add_argument("--regions", type=int, default=100)
    p.add_argument("--visual-dim", type=int, default=2048)
    p.add_argument("--layers", type=int, default=12)
    p.add_argument("--threads", type=int, default=None, help="threads for both frameworks (default: all available cores)")
    p.add_argument("--steps", type=int, default=7, help="timed steps per measurement (>= 5 for the report)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--quick", action="store_true", help="batch 2, 3 timed steps, 1 warm-up: a smoke run")
    p.add_argument("--skip-train", action="store_true")
    p.add_argument("--skip-export", action="store_true", help="do not time the exported predictor")
    p.add_argument("--skip-static", action="store_true", help="do not time paddle.jit.to_static")
    p.add_argument("--tolerance", type=float, default=1e-4, help="max |Δ| allowed between the logits")
    p.add_argument("--json", default=None, help="write all numbers to this file")
    args = p.parse_args(argv)
    if args.quick:
        args.batch, args.steps, args.warmup = min(args.batch, 2), min(args.steps, 3), 1
    return args


ARGS = parse_args()
if ARGS.threads is not None:
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(ARGS.threads)

USER_OMP = os.environ.get("OMP_NUM_THREADS")
import numpy as np  # noqa: E402

import visualbert  # noqa: E402,F401  (runtime defaults before paddle)
import paddle  # noqa: E402
import torch  # noqa: E402

from visualbert.configuration import VisualBertConfig  # noqa: E402
from visualbert.modeling import VisualBertForQuestionAnswering  # noqa: E402
from visualbert.inputs import make_inputs  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "compare"))
from parity import make_hf_model  # noqa: E402  (compare/parity.py: the HF reference side)

ARCH = "VisualBertForQuestionAnswering"

try:
    import psutil
except ImportError:  # pragma: no cover
    psutil = None


# ------------------------------------------------------------------------------------------------ memory
def _rss():
    if psutil is not None:
        return psutil.Process().memory_info().rss
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _malloc_trim():
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except Exception:
        pass


def _fix_mmap_threshold():
    """Large blocks always come from mmap (glibc otherwise raises the threshold after the first free, and
    freed heap memory of one framework could be reused by the other without showing in RSS)."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 1 << 20)  # M_MMAP_THRESHOLD = 1 MiB, fixed
    except Exception:
        pass


class PeakRSS:
    """Samples RSS every ``interval`` s; ``.increase`` is the peak minus the RSS at entry."""

    def __init__(self, interval=0.002):
        self.interval = interval

    def __enter__(self):
        gc.collect()
        _malloc_trim()
        self.start = _rss()
        self.peak = self.start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss())
            time.sleep(self.interval)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss())
        self.increase = self.peak - self.start
        gc.collect()
        _malloc_trim()


# ------------------------------------------------------------------------------------------------ models
def full_config(args):
    return VisualBertConfig(visual_embedding_dim=args.visual_dim, num_labels=3129, num_hidden_layers=args.layers,
                            architectures=[ARCH])


def build_models(args, workdir):
    """HF model (random weights) → HF directory → checkpoint/convert.py → Paddle model."""
    import importlib.util

    config = full_config(args)
    hf = make_hf_model(config, ARCH, seed=0)
    hf_dir = os.path.join(workdir, "hf")
    hf.save_pretrained(hf_dir, safe_serialization=True)
    spec = importlib.util.spec_from_file_location("convert", os.path.join(ROOT, "checkpoint", "convert.py"))
    convert = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(convert)
    pd_dir = os.path.join(workdir, "paddle")
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        rc = convert.main(["--src", hf_dir, "--dst", pd_dir])
    if rc != 0:
        raise SystemExit(f"checkpoint/convert.py failed with exit code {rc}")
    model = VisualBertForQuestionAnswering.from_pretrained(pd_dir)
    model.eval()
    return hf, model, config, pd_dir


# ------------------------------------------------------------------------------------------------ FLOPs / GEMM
def model_flops(config, batch, text_len, regions):
    """Multiply-add FLOPs (2 per MAC) of the forward pass, and of a training step (forward + backward)."""
    H, I, Dv = config.hidden_size, config.intermediate_size, config.visual_embedding_dim
    L = text_len + regions
    tokens = batch * L
    projection = 2 * batch * regions * Dv * H
    per_layer = 2 * tokens * H * (4 * H + 2 * I) + 2 * 2 * batch * L * L * H  # qkv+out, ffn; QK^T and PV
    heads = 2 * batch * H * H + 2 * batch * H * config.num_labels  # pooler, classifier
    forward = projection + config.num_hidden_layers * per_layer + heads
    # backward = weight grads + input grads (2x forward), but no input grad for the region features
    train = 3 * forward - projection
    return forward, train


def _best_rate(fn, flops, repeats=5):
    fn()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return flops / best / 1e9


def gemm_rates(tokens, config):
    """GFLOP/s of fp32 GEMMs: 2048³ and the model's FFN product [tokens, H] x [H, I], both frameworks."""
    rates = {}
    shapes = {"2048^3": (2048, 2048, 2048), "ffn": (tokens, config.hidden_size, config.intermediate_size)}
    for name, (m, k, n) in shapes.items():
        a = np.random.RandomState(0).randn(m, k).astype(np.float32)
        b = np.random.RandomState(1).randn(k, n).astype(np.float32)
        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
        pa, pb = paddle.to_tensor(a), paddle.to_tensor(b)
        flops = 2 * m * k * n
        rates[f"torch_{name}"] = _best_rate(lambda: torch.matmul(ta, tb), flops)
        time.sleep(0.3)
        rates[f"paddle_{name}"] = _best_rate(lambda: paddle.matmul(pa, pb)._is_initialized(), flops)
        time.sleep(0.3)
    rates["upfront_best"] = max(rates.values())
    return rates


# ------------------------------------------------------------------------------------------------ steps
def torch_feed(inputs):
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in inputs.items()}


def paddle_feed(inputs):
    return {k: paddle.to_tensor(v) for k, v in inputs.items()}


def _sync_paddle(t):
    # CPU kernels are synchronous; touching the result makes sure nothing is deferred.
    return float(t.reshape([-1])[0])


def make_steps(hf, model, inputs, labels, lr=1e-5):
    t_in = torch_feed(inputs)
    p_in = paddle_feed(inputs)
    t_lab = torch.from_numpy(labels)
    p_lab = paddle.to_tensor(labels)
    t_opt = torch.optim.AdamW(hf.parameters(), lr=lr, weight_decay=0.01)
    p_opt = paddle.optimizer.AdamW(learning_rate=lr, parameters=model.parameters(), weight_decay=0.01)

    def torch_infer():
        hf.eval()
        with torch.no_grad():
            return float(hf(**t_in).logits[0, 0])

    def paddle_infer():
        model.eval()
        with paddle.no_grad():
            return _sync_paddle(model(**p_in)["logits"])

    def torch_train():
        hf.train()
        out = hf(**t_in, labels=t_lab)
        out.loss.backward()
        t_opt.step()
        t_opt.zero_grad(set_to_none=True)
        return float(out.loss)

    def paddle_train():
        model.train()
        out = model(**p_in, labels=p_lab)
        out["loss"].backward()
        p_opt.step()
        p_opt.clear_grad(set_to_zero=False)
        return float(out["loss"])

    return torch_infer, paddle_infer, torch_train, paddle_train


def interleaved(fns, warmup, steps, pause=0.25, probe=None):
    """Runs every function once per round (warm-up rounds untimed); returns the list of times per name.
    ``pause`` lets one runtime's spinning OpenMP threads go idle before the other starts. ``probe`` (a
    function returning GFLOP/s) runs in every timed round too, so the GEMM rate is measured under the same
    machine load as the steps: its results are under the name ``"gemm_probe"``."""
    times = {name: [] for name in fns}
    if probe is not None:
        times["gemm_probe"] = []
    for r in range(warmup + steps):
        for name, fn in fns.items():
            time.sleep(pause)
            t = time.perf_counter()
            fn()
            dt = time.perf_counter() - t
            if r >= warmup:
                times[name].append(dt)
        if probe is not None and r >= warmup:
            time.sleep(pause)
            times["gemm_probe"].append(probe())
    return times


def make_gemm_probe(tokens, config, repeats=3):
    """GFLOP/s of the model's FFN GEMM [tokens, H] x [H, I], best of ``repeats`` in each framework, the
    better framework counted (the machine's rate at that moment)."""
    m, k, n = tokens, config.hidden_size, config.intermediate_size
    a = np.random.RandomState(0).randn(m, k).astype(np.float32)
    b = np.random.RandomState(1).randn(k, n).astype(np.float32)
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    pa, pb = paddle.to_tensor(a), paddle.to_tensor(b)
    flops = 2 * m * k * n

    def probe():
        rates = [_best_rate(lambda: torch.matmul(ta, tb), flops, repeats)]
        time.sleep(0.1)
        rates.append(_best_rate(lambda: paddle.matmul(pa, pb)._is_initialized(), flops, repeats))
        return max(rates)

    return probe


def summary(ts):
    med = statistics.median(ts)
    return {"median": med, "min": min(ts), "max": max(ts),
            "spread": (max(ts) - min(ts)) / med if med else 0.0,
            "stdev": statistics.stdev(ts) if len(ts) > 1 else 0.0, "times": ts}


def machine_info(threads):
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"cpu": cpu, "cores_available": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "threads": threads, "paddle_threads": int(os.environ.get("OMP_NUM_THREADS") or 1), "python": platform.python_version(), "paddle": paddle.__version__,
            "torch": torch.__version__, "mkl_debug_cpu_type": os.environ.get("MKL_DEBUG_CPU_TYPE"),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS")}


# ------------------------------------------------------------------------------------------------ main
def main(args):
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    # torch: --threads, else the environment's OMP_NUM_THREADS as the user set it, else all cores.
    threads = args.threads or int(USER_OMP or cores)
    torch.set_num_threads(threads)
    paddle_threads = int(os.environ.get("OMP_NUM_THREADS") or 1)  # what paddle's math library runs with
    if paddle_threads != threads:
        print(f"# WARNING: paddle runs with OMP_NUM_THREADS={paddle_threads}, torch with {threads} threads", flush=True)
    paddle.set_device("cpu")
    info = machine_info(threads)
    print(f"# machine: {info['cpu']}, {info['cores_available']} cores; threads={threads} "
          f"MKL_DEBUG_CPU_TYPE={info['mkl_debug_cpu_type']}; paddle {info['paddle']}, torch {info['torch']}", flush=True)
    print(f"# model: BERT-base VQA head, visual dim {args.visual_dim}, {args.layers} layers; batch {args.batch}, "
          f"{args.text_len} text tokens + {args.regions} regions, float32", flush=True)

    workdir = tempfile.mkdtemp(prefix="bench-visualbert-")
    hf, model, config, pd_dir = build_models(args, workdir)
    inputs = make_inputs(config, ARCH, batch_size=args.batch, text_len=args.text_len, num_regions=args.regions,
                         seed=0, with_labels=True)
    labels = inputs.pop("labels")

    # 1. agreement
    with torch.no_grad():
        ref = hf(**torch_feed(inputs)).logits.double().numpy()
    with paddle.no_grad():
        ours = model(**paddle_feed(inputs))["logits"].astype("float64").numpy()
    logits_diff = float(np.abs(ref - ours).max())
    print(f"logits max|Δ| torch vs paddle: {logits_diff:.2e} (tolerance {args.tolerance:.0e})", flush=True)
    if not logits_diff <= args.tolerance:
        raise SystemExit("the frameworks disagree on the logits: refusing to time them")

    forward_flops, train_flops = model_flops(config, args.batch, args.text_len, args.regions)
    results = {"machine": info, "config": {k: getattr(args, k) for k in ("batch", "text_len", "regions", "visual_dim",
                                                                           "layers", "steps", "warmup", "quick")},
               "logits_max_abs_diff": logits_diff, "forward_gflop": forward_flops / 1e9, "train_gflop": train_flops / 1e9}

    # 2. GEMM rate
    rates = gemm_rates(args.batch * (args.text_len + args.regions), config)
    results["gemm_gflops"] = rates
    print("GEMM fp32 GFLOP/s (up front): " + ", ".join(f"{k} {v:.0f}" for k, v in rates.items()), flush=True)

    torch_infer, paddle_infer, torch_train, paddle_train = make_steps(hf, model, inputs, labels)

    # 3. memory (sequential phases, RSS high-water increase)
    mem = {}
    for name, fn in (("torch_inference", torch_infer), ("paddle_inference", paddle_infer)) + (
            () if args.skip_train else (("torch_train", torch_train), ("paddle_train", paddle_train))):
        with PeakRSS() as peak:
            fn()
            fn()
        mem[name] = peak.increase
        time.sleep(0.3)
    results["peak_mem_bytes"] = mem

    # 4. timing
    infer_fns = {"torch": torch_infer, "paddle": paddle_infer}
    extra = {}
    if not args.skip_static:
        try:
            extra["paddle_static"] = make_static_runner(model, inputs)
        except Exception as err:  # measured when possible, reported otherwise
            print(f"paddle.jit.to_static: skipped ({type(err).__name__}: {err})", flush=True)
    if not args.skip_export:
        try:
            runners, diffs = make_predictor_runners(model, config, inputs, workdir)
            extra.update(runners)
            results["predictor_vs_dygraph_max_abs_diff"] = diffs
        except Exception as err:
            print(f"exported predictor: skipped ({type(err).__name__}: {err})", flush=True)
    infer_fns.update(extra)
    probe = make_gemm_probe(args.batch * (args.text_len + args.regions), config)
    infer_times = interleaved(infer_fns, args.warmup, args.steps, probe=probe)
    probe_rates = infer_times.pop("gemm_probe")
    results["inference"] = {k: summary(v) for k, v in infer_times.items()}
    if not args.skip_train:
        train_times = interleaved({"torch": torch_train, "paddle": paddle_train}, args.warmup, args.steps, probe=probe)
        probe_rates += train_times.pop("gemm_probe")
        results["train"] = {k: summary(v) for k, v in train_times.items()}
    # The machine's GEMM rate: the median of the probes run between the timed steps (same load as the steps).
    rates["probe_median"] = statistics.median(probe_rates)
    rates["probes"] = probe_rates
    rates["machine"] = rates["probe_median"]

    # 5. report
    inf = results["inference"]
    results["inference_ratio"] = inf["torch"]["median"] / inf["paddle"]["median"]
    # Ratio of the fastest steps: the least disturbed by other processes on a shared machine.
    results["inference_ratio_best"] = inf["torch"]["min"] / inf["paddle"]["min"]
    for k in extra:
        results[f"inference_ratio_{k}"] = inf["torch"]["median"] / inf[k]["median"]
    results["gemm_share_inference"] = forward_flops / inf["paddle"]["median"] / 1e9 / rates["machine"]
    results["gemm_share_inference_torch"] = forward_flops / inf["torch"]["median"] / 1e9 / rates["machine"]
    for k in extra:
        results[f"gemm_share_inference_{k}"] = forward_flops / inf[k]["median"] / 1e9 / rates["machine"]
    if not args.skip_train:
        tr = results["train"]
        results["train_ratio"] = tr["torch"]["median"] / tr["paddle"]["median"]
        results["train_ratio_best"] = tr["torch"]["min"] / tr["paddle"]["min"]
        results["gemm_share_train"] = train_flops / tr["paddle"]["median"] / 1e9 / rates["machine"]
        results["gemm_share_train_torch"] = train_flops / tr["torch"]["median"] / 1e9 / rates["machine"]
        results["peak_mem_ratio"] = mem["paddle_train"] / max(mem["torch_train"], 1)
    results["peak_mem_ratio_inference"] = mem["paddle_inference"] / max(mem["torch_inference"], 1)
    print_table(results, args)
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
        print(f"wrote {args.json}")
    return results


def make_static_runner(model, inputs):
    """``paddle.jit.to_static`` of the same layer (dygraph-to-static, full graph)."""
    from visualbert.inference import to_static_model

    static = to_static_model(model, ARCH, inputs)
    feed = paddle_feed(inputs)

    def run():
        with paddle.no_grad():
            return _sync_paddle(static(**feed))

    # warm-up call compiles the program
    run()
    return run


def make_predictor_runners(model, config, inputs, workdir):
    """Export with ``visualbert.inference.export_model`` (what ``tools/export_model.py`` runs), load with
    ``paddle.inference``, with and without oneDNN; checks each against dygraph."""
    from visualbert.inference import Predictor, export_model

    out = os.path.join(workdir, "exported")
    export_model(model, out, ARCH)
    with paddle.no_grad():
        ref = model(**paddle_feed(inputs))["logits"].numpy()
    runners, diffs = {}, {}
    for name, mkldnn in (("paddle_predictor", False), ("paddle_predictor_onednn", True)):
        predictor = Predictor(out, use_mkldnn=mkldnn)
        diffs[name] = float(np.abs(predictor.run(inputs)["logits"] - ref).max())
        print(f"{name} vs dygraph logits max|Δ|: {diffs[name]:.2e}", flush=True)
        runners[name] = (lambda p: lambda: float(p.run(inputs)["logits"].reshape(-1)[0]))(predictor)
    return runners, diffs


def _fmt_mem(b):
    return f"{b / 2**20:.0f} MiB"


def print_table(r, args):
    inf = r["inference"]
    rate = r["gemm_gflops"]["machine"]
    lines = [
        "",
        f"| measurement | torch median (spread, min) | paddle median (spread, min) | torch/paddle (medians; minimums) |",
        f"|---|---|---|---|",
    ]

    def row(label, t, p, extra=""):
        lines.append(f"| {label} | {t['median']:.3f} s (±{t['spread'] * 50:.0f}%, min {t['min']:.3f}) | {p['median']:.3f} s "
                     f"(±{p['spread'] * 50:.0f}%, min {p['min']:.3f}) | **{t['median'] / p['median']:.2f}** "
                     f"(min/min {t['min'] / p['min']:.2f}) {extra}|")

    row(f"inference, batch {args.batch} (median of {args.steps})", inf["torch"], inf["paddle"])
    for k in ("paddle_static", "paddle_predictor", "paddle_predictor_onednn"):
        if k in inf:
            row(f"inference, {k.replace('paddle_', 'paddle ')}", inf["torch"], inf[k])
    if "train" in r:
        row("training step fwd+bwd+AdamW", r["train"]["torch"], r["train"]["paddle"])
    fwd = r["forward_gflop"]
    lines.append(f"| inference GFLOP/s (share of machine GEMM {rate:.0f}) | {fwd / inf['torch']['median']:.0f} "
                 f"({r['gemm_share_inference_torch'] * 100:.0f}%) | {fwd / inf['paddle']['median']:.0f} "
                 f"({r['gemm_share_inference'] * 100:.0f}%) | |")
    if "train" in r:
        tr = r["train"]
        lines.append(f"| training GFLOP/s (share) | {r['train_gflop'] / tr['torch']['median']:.0f} "
                     f"({r['gemm_share_train_torch'] * 100:.0f}%) | {r['train_gflop'] / tr['paddle']['median']:.0f} "
                     f"({r['gemm_share_train'] * 100:.0f}%) | |")
    mem = r["peak_mem_bytes"]
    lines.append(f"| peak RSS increase, inference | {_fmt_mem(mem['torch_inference'])} | {_fmt_mem(mem['paddle_inference'])} "
                 f"| paddle/torch {r['peak_mem_ratio_inference']:.2f} |")
    if "train" in r:
        lines.append(f"| peak RSS increase, training step | {_fmt_mem(mem['torch_train'])} | {_fmt_mem(mem['paddle_train'])} "
                     f"| paddle/torch {r['peak_mem_ratio']:.2f} |")
    g = r["gemm_gflops"]
    lines.append("")
    lines.append(f"fp32 GEMM GFLOP/s (best of 5): torch 2048³ {g['torch_2048^3']:.0f}, paddle 2048³ {g['paddle_2048^3']:.0f}, "
                 f"torch FFN-shape {g['torch_ffn']:.0f}, paddle FFN-shape {g['paddle_ffn']:.0f} (measured up front); machine rate = "
                 f"median of {len(g['probes'])} FFN-shape GEMM probes (better framework of each, interleaved with the timed "
                 f"steps) = {rate:.0f}")
    lines.append(f"forward {fwd:.0f} GFLOP, training step {r['train_gflop']:.0f} GFLOP (2 FLOPs per multiply-add); "
                 f"logits max|Δ| {r['logits_max_abs_diff']:.1e}")
    lines.append("spread = ±half of (max-min)/median over the timed steps; memory = RSS high-water increase over the "
                 "phase start, phases run sequentially in this process (2 steps each)")
    print("\n".join(lines), flush=True)


if __name__ == "__main__":
    main(ARGS)
