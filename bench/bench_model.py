"""Benchmark: the Paddle VisualBERT port against HF ``VisualBertForQuestionAnswering``, one FRESH process per
measurement.

    python bench/bench_model.py                      # full size: batch 8, 128 text tokens + 100 regions
    python bench/bench_model.py --repeat 5 --json bench/results_full.json
    python bench/bench_model.py --quick              # batch 2, 3 steps, 1 repeat: a smoke run

Before/after (issue 13: the tree before the performance work, f2bf889, against this one, on an idle machine):

    rm -rf /tmp/base_f2bf889 && mkdir -p /tmp/base_f2bf889 && git archive f2bf889 | tar -x -C /tmp/base_f2bf889
    python bench/bench_model.py --repeat 5 --baseline /tmp/base_f2bf889 --json bench/results_before_after.json

Why a process per measurement: timed in one process, the Paddle dygraph model ran up to 2x slower once the
static-graph model and the predictors had been built next to it (see bench/coresident.py), and torch's and
Paddle's thread pools share the cores; a fresh process per framework and mode measures each runtime as a user
runs it.

What it does:

1. ``prepare`` (one process): builds a full-size HF VQA model (BERT-base, 3129 answers, visual dim 2048) with
   random weights, saves it, converts it with ``checkpoint/convert.py``, loads it in Paddle, checks that the
   logits agree (max |Δ| ≤ ``--tolerance``) and exports the ``paddle.inference`` model; writes the inputs.
2. measurements, each in its own process with the same thread count (``--threads``, default: all cores):
   ``torch`` / ``paddle`` (dygraph) / ``paddle_static`` (``paddle.jit.to_static``) / ``paddle_predictor`` /
   ``paddle_predictor_onednn`` inference, ``torch`` / ``paddle`` training step (train mode with dropout, the
   VQA KL-div loss, backward, AdamW), and the machine's fp32 GEMM rate on the model's FFN shape (``gemm``, each
   framework). Every process warms up (``--warmup`` steps), then times ``--steps`` steps (wall and CPU time) and
   samples its resident set size every 2 ms (peak increase over the RSS after loading = the step's memory).
3. ``--repeat`` rounds; within a round the modes run one after the other, the order reversed every other round
   (A B C ... C B A) so that slow drifts in machine load hit every mode alike.

``--baseline DIR`` (another checkout of this repository, e.g. an older commit unpacked with ``git archive``): every
Paddle measurement (``infer:paddle``, ``infer:paddle_static``, ``infer:paddle_predictor``,
``infer:paddle_predictor_onednn``, ``train:paddle``) also runs in a process with ``PYTHONPATH=DIR`` first and DIR's
``visualbert/runtime.py`` as its CPU defaults; the process refuses to time any other copy of ``visualbert`` (and
records the one it timed in the raw JSON). Within a round a Paddle mode runs as baseline then current (current then
baseline in the reversed rounds), so machine drift hits both trees alike; the torch and GEMM processes run no code of
either tree and are shared. ``prepare`` stays with this tree (its ``checkpoint/convert.py`` output and reference
logits); a second preparation process, ``prepare_baseline``, run with DIR's package, loads that checkpoint with DIR's
``from_pretrained`` (refusing missing or unexpected weights), checks its logits against the HF ones (same
``--tolerance``), and exports the predictor model with DIR's own ``export_model`` (the exported program is the tree's
modeling code traced, so this tree's export would time this tree's code). f2bf889 has the same ``from_pretrained``,
``to_static_model(model, architecture, example_inputs)``, ``export_model(model, out_dir, architecture)`` and
``Predictor(model_dir, use_mkldnn=...)``, so the child needs no compatibility shim for it. Note that each tree runs
with its own runtime defaults: f2bf889's ``runtime.py`` does not set ``FLAGS_paddle_num_threads`` nor re-apply the
thread count after a predictor run; that is part of what is compared.

Report: per mode the median, spread and minimum over all timed steps of all its processes; ratios
``torch_time / paddle_time`` of the medians (and of the minimums). JSON keys: ``inference_ratio``,
``train_ratio``, ``predictor_ratio`` (plain predictor; ``predictor_ratio_onednn`` with oneDNN),
``static_ratio``, ``gemm_share_inference`` (forward FLOPs / dygraph inference time / the machine's GEMM
rate), ``peak_mem_ratio`` (Paddle / torch peak training memory), the summaries and every raw time. With
``--baseline``, a second table (baseline and current medians, torch/baseline, torch/current, and the current speedup
= baseline median / current median) and ``"baseline"``: the same keys for the baseline tree (against the same torch
and GEMM processes), its ``raw`` times, ``tree`` (DIR), and ``speedup`` per Paddle mode (``median``, ``min``,
``cpu_median``: baseline / current, > 1 = current faster; ``peak_rss_current_over_baseline``).
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARCH = "VisualBertForQuestionAnswering"
INFERENCE_MODES = ("torch", "paddle", "paddle_static", "paddle_predictor", "paddle_predictor_onednn")
TRAIN_MODES = ("torch", "paddle")
# the measurements that run this package's code: the ones --baseline repeats with the other tree
PADDLE_MODES = ("infer:paddle", "infer:paddle_static", "infer:paddle_predictor", "infer:paddle_predictor_onednn",
                "train:paddle")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--text-len", type=int, default=128)
    p.add_argument("--regions", type=int, default=100)
    p.add_argument("--visual-dim", type=int, default=2048)
    p.add_argument("--layers", type=int, default=12)
    p.add_argument("--threads", type=int, default=None, help="threads of every measurement (default: all cores)")
    p.add_argument("--steps", type=int, default=5, help="timed steps per process")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeat", type=int, default=3, help="processes per mode (rounds)")
    p.add_argument("--quick", action="store_true", help="batch 2, 3 timed steps, 1 warm-up, 1 round: a smoke run")
    p.add_argument("--modes", nargs="+", default=None,
                   help="subset of: infer:<mode> for mode in " + ", ".join(INFERENCE_MODES) +
                        "; train:torch train:paddle; gemm:torch gemm:paddle (default: all)")
    p.add_argument("--skip-train", action="store_true")
    p.add_argument("--skip-export", action="store_true", help="no predictor measurements")
    p.add_argument("--skip-static", action="store_true", help="no paddle.jit.to_static measurement")
    p.add_argument("--tolerance", type=float, default=1e-4, help="max |Δ| allowed between the logits")
    p.add_argument("--work-dir", default=None, help="keep the models here (default: a temp dir)")
    p.add_argument("--timeout", type=float, default=1800, help="seconds per measurement process")
    p.add_argument("--malloc-threshold", type=int, default=None,
                   help="glibc MALLOC_MMAP_THRESHOLD_ and MALLOC_TRIM_THRESHOLD_ (bytes) of every process, both "
                        "frameworks: freed activations stay mapped and are reused instead of page-faulting anew")
    p.add_argument("--baseline", default=None, metavar="DIR",
                   help="another checkout of this repository (e.g. git archive f2bf889 | tar -x -C DIR): every Paddle "
                        "measurement also runs with DIR's visualbert, alternated with this tree's")
    p.add_argument("--json", default=None, help="write all numbers to this file")
    args = p.parse_args(argv)
    if args.baseline is not None:
        args.baseline = os.path.abspath(args.baseline)
        for name in ("__init__.py", "runtime.py", "modeling.py", "inference.py"):
            if not os.path.isfile(os.path.join(args.baseline, "visualbert", name)):
                p.exit(2, f"{p.prog}: error: --baseline {args.baseline}: no visualbert/{name} there (expected a "
                          "checkout of this repository, e.g. git archive <commit> | tar -x -C DIR)\n")
    if args.quick:
        args.batch, args.steps, args.warmup, args.repeat = min(args.batch, 2), min(args.steps, 3), 1, 1
    return args


def default_modes(args):
    modes = ["infer:torch", "infer:paddle"]
    if not args.skip_static:
        modes.append("infer:paddle_static")
    if not args.skip_export:
        modes += ["infer:paddle_predictor", "infer:paddle_predictor_onednn"]
    if not args.skip_train:
        modes += ["train:torch", "train:paddle"]
    modes += ["gemm:torch", "gemm:paddle"]
    return modes


# ------------------------------------------------------------------------------------------------ memory
def _rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRSS:
    """Samples RSS every ``interval`` s; ``.increase`` is the peak minus the RSS at entry."""

    def __init__(self, interval=0.002):
        self.interval = interval

    def __enter__(self):
        self.start = self.peak = _rss()
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


# ------------------------------------------------------------------------------------------------ FLOPs
def model_flops(hidden, intermediate, visual_dim, layers, labels, batch, text_len, regions):
    """Multiply-add FLOPs (2 per MAC) of the forward pass, and of a training step (forward + backward)."""
    L = text_len + regions
    tokens = batch * L
    projection = 2 * batch * regions * visual_dim * hidden
    per_layer = 2 * tokens * hidden * (4 * hidden + 2 * intermediate) + 2 * 2 * batch * L * L * hidden
    heads = 2 * batch * hidden * hidden + 2 * batch * hidden * labels  # pooler, classifier
    forward = projection + layers * per_layer + heads
    # backward = weight grads + input grads (2x forward), but no input grad for the region features
    return forward, 3 * forward - projection


# ------------------------------------------------------------------------------------------------ child side
def _child_setup(spec):
    """Same environment for every framework: the thread count, and the measured tree's CPU defaults
    (``<tree>/visualbert/runtime.py``, standalone: loading it does not import paddle). A torch process never
    imports paddle: with paddle's math libraries loaded first, torch steps were measured up to 10x slower here.
    A Paddle process imports ``visualbert`` from its tree (``spec["root"]``: this checkout, or ``--baseline``) and
    refuses to run on any other copy."""
    import importlib.util

    threads = spec["threads"]
    root = spec.get("root", ROOT)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)
    sys.path.insert(0, root)
    runtime_spec = importlib.util.spec_from_file_location("_visualbert_runtime",
                                                          os.path.join(root, "visualbert", "runtime.py"))
    runtime_spec.loader.exec_module(importlib.util.module_from_spec(runtime_spec))
    if spec["mode"] != "prepare" and not spec["mode"].endswith(":torch"):
        import visualbert

        package = os.path.realpath(os.path.dirname(visualbert.__file__))
        if package != os.path.realpath(os.path.join(root, "visualbert")):
            raise SystemExit(f"{spec['mode']}: imported visualbert from {package}, expected the tree {root}")


def _prepare(spec):
    import contextlib
    import importlib.util
    import io

    import numpy as np
    import paddle
    import torch

    from visualbert.configuration import VisualBertConfig
    from visualbert.inference import Predictor, export_model
    from visualbert.modeling import VisualBertForQuestionAnswering
    sys.path.insert(0, os.path.join(ROOT, "compare"))
    from parity import make_hf_model  # compare/parity.py: the HF reference side (not installed)

    from visualbert.inputs import make_inputs

    torch.set_num_threads(spec["threads"])
    work = spec["work"]
    config = VisualBertConfig(visual_embedding_dim=spec["visual_dim"], num_labels=3129,
                              num_hidden_layers=spec["layers"], architectures=[ARCH])
    hf = make_hf_model(config, ARCH, seed=0)
    hf_dir = os.path.join(work, "hf")
    hf.save_pretrained(hf_dir, safe_serialization=True)
    convert_spec = importlib.util.spec_from_file_location("convert", os.path.join(ROOT, "checkpoint", "convert.py"))
    convert = importlib.util.module_from_spec(convert_spec)
    convert_spec.loader.exec_module(convert)
    pd_dir = os.path.join(work, "paddle")
    with contextlib.redirect_stdout(io.StringIO()):
        rc = convert.main(["--src", hf_dir, "--dst", pd_dir])
    if rc != 0:
        raise SystemExit(f"checkpoint/convert.py failed with exit code {rc}")
    model = VisualBertForQuestionAnswering.from_pretrained(pd_dir)
    model.eval()
    inputs = make_inputs(config, ARCH, batch_size=spec["batch"], text_len=spec["text_len"],
                         num_regions=spec["regions"], seed=0, with_labels=True)
    np.savez(os.path.join(work, "inputs.npz"), **inputs)
    feed = {k: v for k, v in inputs.items() if k != "labels"}
    with torch.no_grad():
        ref = hf(**{k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in feed.items()}).logits.double().numpy()
    np.save(os.path.join(work, "reference_logits.npy"), ref)
    with paddle.no_grad():
        ours = model(**{k: paddle.to_tensor(v) for k, v in feed.items()})["logits"].astype("float64").numpy()
    out = {"logits_max_abs_diff": float(np.abs(ref - ours).max()), "hf_dir": hf_dir, "paddle_dir": pd_dir,
           "hidden": config.hidden_size, "intermediate": config.intermediate_size}
    if spec["export"]:
        exported = os.path.join(work, "exported")
        export_model(model, exported, ARCH)
        out["exported"] = exported
        out["predictor_max_abs_diff"] = {}
        for name, mkldnn in (("paddle_predictor", False), ("paddle_predictor_onednn", True)):
            logits = Predictor(exported, use_mkldnn=mkldnn).run(feed)["logits"]
            out["predictor_max_abs_diff"][name] = float(np.abs(logits - ours).max())
    return out


def _prepare_baseline(spec):
    """The ``--baseline`` tree's side of the preparation, run with that tree's ``visualbert``: loads the checkpoint
    converted by :func:`_prepare`, checks its logits against the HF reference, and exports ITS OWN predictor model
    (the exported program is the tree's modeling code traced: the current tree's export would time current code)."""
    import numpy as np
    import paddle

    from visualbert.inference import Predictor, export_model
    from visualbert.modeling import VisualBertForQuestionAnswering

    prep, work = spec["prepared"], spec["work"]
    model, info = VisualBertForQuestionAnswering.from_pretrained(prep["paddle_dir"], output_loading_info=True)
    bad = {k: v for k, v in info.items() if v}
    if bad:
        raise SystemExit(f"baseline {spec['root']}: the converted checkpoint does not fit its model: {bad}")
    model.eval()
    inputs, _ = _load_inputs(work)
    ref = np.load(os.path.join(work, "reference_logits.npy"))
    with paddle.no_grad():
        ours = model(**{k: paddle.to_tensor(v) for k, v in inputs.items()})["logits"].astype("float64").numpy()
    out = {"logits_max_abs_diff": float(np.abs(ref - ours).max())}
    if spec["export"]:
        exported = os.path.join(work, "exported_baseline")
        export_model(model, exported, ARCH)
        out["exported"] = exported
        out["predictor_max_abs_diff"] = {}
        for name, mkldnn in (("paddle_predictor", False), ("paddle_predictor_onednn", True)):
            logits = Predictor(exported, use_mkldnn=mkldnn).run(inputs)["logits"]
            out["predictor_max_abs_diff"][name] = float(np.abs(logits - ours).max())
    return out


def _load_inputs(work):
    import numpy as np

    with np.load(os.path.join(work, "inputs.npz")) as data:
        inputs = {k: data[k] for k in data.files}
    labels = inputs.pop("labels")
    return inputs, labels


def _step_fn(spec):
    """Builds the model of one measurement; returns the function of one step (returns a float, synchronising)."""
    kind, mode = spec["mode"].split(":")
    work, prep = spec["work"], spec["prepared"]
    if kind == "gemm":
        return _gemm_fn(mode, spec)
    inputs, labels = _load_inputs(work)
    if mode == "torch":
        import numpy as np
        import torch
        import transformers

        torch.set_num_threads(spec["threads"])
        hf = transformers.VisualBertForQuestionAnswering.from_pretrained(prep["hf_dir"])
        feed = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in inputs.items()}
        if kind == "infer":
            hf.eval()

            def step():
                with torch.no_grad():
                    return float(hf(**feed).logits[0, 0])

            return step
        t_labels = torch.from_numpy(labels)
        opt = torch.optim.AdamW(hf.parameters(), lr=1e-5, weight_decay=0.01)
        hf.train()

        def step():
            out = hf(**feed, labels=t_labels)
            out.loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            return float(out.loss)

        return step

    import paddle

    from visualbert.modeling import VisualBertForQuestionAnswering

    paddle.set_device("cpu")
    if mode.startswith("paddle_predictor"):
        from visualbert.inference import Predictor

        predictor = Predictor(prep["exported"], use_mkldnn=mode.endswith("onednn"))
        return lambda: float(predictor.run(inputs)["logits"].reshape(-1)[0])
    model = VisualBertForQuestionAnswering.from_pretrained(prep["paddle_dir"])
    feed = {k: paddle.to_tensor(v) for k, v in inputs.items()}
    if mode == "paddle_static":
        from visualbert.inference import to_static_model

        static = to_static_model(model, ARCH, inputs)

        def step():
            with paddle.no_grad():
                return float(static(**feed).reshape([-1])[0])

        return step
    if kind == "infer":
        model.eval()

        def step():
            with paddle.no_grad():
                return float(model(**feed)["logits"].reshape([-1])[0])

        return step
    p_labels = paddle.to_tensor(labels)
    opt = paddle.optimizer.AdamW(learning_rate=1e-5, parameters=model.parameters(), weight_decay=0.01)
    model.train()

    def step():
        out = model(**feed, labels=p_labels)
        out["loss"].backward()
        opt.step()
        opt.clear_grad(set_to_zero=False)
        return float(out["loss"])

    return step


def _gemm_fn(framework, spec):
    """One FFN-shape GEMM [B*L, H] x [H, I] per step; the step's FLOPs are in the result."""
    import numpy as np

    m, k, n = spec["batch"] * (spec["text_len"] + spec["regions"]), spec["prepared"]["hidden"], spec["prepared"]["intermediate"]
    a = np.random.RandomState(0).randn(m, k).astype(np.float32)
    b = np.random.RandomState(1).randn(k, n).astype(np.float32)
    if framework == "torch":
        import torch

        torch.set_num_threads(spec["threads"])
        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
        return lambda: float(torch.matmul(ta, tb)[0, 0])
    import paddle

    pa, pb = paddle.to_tensor(a), paddle.to_tensor(b)
    return lambda: float(paddle.matmul(pa, pb)[0, 0])


def _measure(spec):
    step = _step_fn(spec)
    is_gemm = spec["mode"].startswith("gemm:")
    steps = spec["steps"] * (5 if is_gemm else 1)  # a GEMM step is short: more samples for the same cost
    times, cpu = [], []
    with PeakRSS() as peak:
        for _ in range(spec["warmup"]):
            step()
        for _ in range(steps):
            t, c = time.perf_counter(), time.process_time()
            step()
            times.append(time.perf_counter() - t)
            cpu.append(time.process_time() - c)
    return {"times": times, "cpu_times": cpu, "peak_rss_increase": peak.increase}


def child_main(spec_json):
    spec = json.loads(spec_json)
    _child_setup(spec)
    if spec["mode"] == "prepare":
        result = _prepare(spec)
    elif spec["mode"] == "prepare_baseline":
        result = _prepare_baseline(spec)
    else:
        result = _measure(spec)
    if "visualbert" in sys.modules:  # which copy was timed (a torch or GEMM process imports none)
        result["visualbert"] = os.path.dirname(sys.modules["visualbert"].__file__)
    print("RESULT " + json.dumps(result), flush=True)


# ------------------------------------------------------------------------------------------------ driver
def run_child(spec, timeout):
    cmd = [sys.executable, os.path.abspath(__file__), "--_child", json.dumps(spec)]
    env = dict(os.environ, PYTHONPATH=spec.get("root", ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    if spec.get("malloc_threshold"):
        env["MALLOC_MMAP_THRESHOLD_"] = env["MALLOC_TRIM_THRESHOLD_"] = str(spec["malloc_threshold"])
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    lines = [line for line in res.stdout.splitlines() if line.startswith("RESULT ")]
    if res.returncode != 0 or not lines:
        raise SystemExit(f"measurement {spec['mode']} failed (exit {res.returncode}):\n{res.stderr[-4000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def summary(ts):
    med = statistics.median(ts)
    return {"median": med, "min": min(ts), "max": max(ts), "spread": (max(ts) - min(ts)) / med if med else 0.0,
            "stdev": statistics.stdev(ts) if len(ts) > 1 else 0.0, "n": len(ts)}


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
    versions = {}
    for name in ("paddle", "torch"):
        try:
            out = subprocess.run([sys.executable, "-c", f"import {name}; print({name}.__version__)"],
                                 capture_output=True, text=True, timeout=300)
            versions[name] = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else "?"
        except Exception:
            versions[name] = "?"
    return {"cpu": cpu, "cores_available": len(os.sched_getaffinity(0)), "threads": threads,
            "python": platform.python_version(), **versions, "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}


def _load():
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def main(args):
    threads = args.threads or int(os.environ.get("OMP_NUM_THREADS") or len(os.sched_getaffinity(0)))
    modes = args.modes or default_modes(args)
    work = args.work_dir or tempfile.mkdtemp(prefix="bench-visualbert-")
    os.makedirs(work, exist_ok=True)
    base = {"threads": threads, "work": work, "batch": args.batch, "text_len": args.text_len,
            "regions": args.regions, "visual_dim": args.visual_dim, "layers": args.layers,
            "steps": args.steps, "warmup": args.warmup, "malloc_threshold": args.malloc_threshold}
    info = machine_info(threads)
    print(f"# machine: {info['cpu']}, {info['cores_available']} cores, {threads} threads per process; paddle "
          f"{info['paddle']}, torch {info['torch']}; load {_load():.2f}", flush=True)
    print(f"# model: BERT-base VQA head, visual dim {args.visual_dim}, {args.layers} layers; batch {args.batch}, "
          f"{args.text_len} text tokens + {args.regions} regions, float32; {args.repeat} round(s) of {len(modes)} "
          f"processes, {args.warmup} warm-up + {args.steps} timed steps each", flush=True)
    export = any(m.startswith("infer:paddle_predictor") for m in modes)
    prepared = run_child(dict(base, mode="prepare", export=export), args.timeout)
    diff = prepared["logits_max_abs_diff"]
    print(f"logits max|Δ| torch vs paddle: {diff:.2e} (tolerance {args.tolerance:.0e})", flush=True)
    if not diff <= args.tolerance:
        raise SystemExit("the frameworks disagree on the logits: refusing to time them")
    for name, d in prepared.get("predictor_max_abs_diff", {}).items():
        print(f"{name} vs dygraph logits max|Δ|: {d:.2e}", flush=True)
    prepared_by_tree = {"current": prepared}
    if args.baseline:
        side = run_child(dict(base, mode="prepare_baseline", export=export, prepared=prepared, root=args.baseline),
                         args.timeout)
        prepared_by_tree["baseline"] = dict(prepared, **side)
        diff = side["logits_max_abs_diff"]
        print(f"baseline {args.baseline}: logits max|Δ| torch vs paddle: {diff:.2e}", flush=True)
        if not diff <= args.tolerance:
            raise SystemExit("the baseline disagrees with torch on the logits: refusing to time it")
        for name, d in side.get("predictor_max_abs_diff", {}).items():
            print(f"baseline {name} (its own export) vs its dygraph logits max|Δ|: {d:.2e}", flush=True)

    # one round: every mode; a Paddle mode as baseline then current (reversed with the round: current, baseline)
    plan = [(mode, tree) for mode in modes
            for tree in (("baseline", "current") if args.baseline and mode in PADDLE_MODES else ("current",))]
    raw = []
    for r in range(args.repeat):
        order = plan if r % 2 == 0 else list(reversed(plan))
        for mode, tree in order:
            load = _load()
            spec = dict(base, mode=mode, prepared=prepared_by_tree[tree])
            if tree == "baseline":
                spec["root"] = args.baseline
            result = run_child(spec, args.timeout)
            raw.append({"mode": mode, "tree": tree, "round": r, "load": load, **result})
            print(f"round {r} {tree:<8} {mode:<30} median {statistics.median(result['times']):8.4f} s  "
                  f"(CPU {statistics.median(result['cpu_times']):8.4f} s)  peak +{result['peak_rss_increase'] / 2**20:.0f} MiB"
                  f"  load {load:.2f}", flush=True)

    results = report(raw, prepared_by_tree, args, info, modes)
    print_table(results, args)
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
        print(f"wrote {args.json}")
    return results


def report(raw, prepared_by_tree, args, info, modes):
    """All numbers of the run. With ``--baseline``, ``results["baseline"]`` holds the same keys for the baseline
    tree (ratios against the same torch and GEMM processes: those run no code of either tree), its raw times, and
    ``speedup`` = baseline median / current median per Paddle measurement (> 1: the current tree is faster)."""
    prepared = prepared_by_tree["current"]
    forward_flops, train_flops = model_flops(prepared["hidden"], prepared["intermediate"], args.visual_dim,
                                             args.layers, 3129, args.batch, args.text_len, args.regions)
    results = {"machine": info,
               "config": {k: getattr(args, k) for k in ("batch", "text_len", "regions", "visual_dim", "layers",
                                                        "steps", "warmup", "repeat", "quick",
                                                        "malloc_threshold", "baseline")},
               "forward_gflop": forward_flops / 1e9, "train_gflop": train_flops / 1e9,
               "load_median": statistics.median([x["load"] for x in raw if x["load"] is not None] or [0.0])}
    current = [x for x in raw if x["tree"] == "current"]
    results.update(_section(current, prepared, args, modes, forward_flops, train_flops))
    if "baseline" in prepared_by_tree:
        shared = [x for x in current if x["mode"] not in PADDLE_MODES]  # torch, gemm: no code of either tree
        own = [x for x in raw if x["tree"] == "baseline"]
        section = _section(shared + own, prepared_by_tree["baseline"], args, modes, forward_flops, train_flops)
        section["raw"] = own
        section["tree"] = args.baseline
        speedup = {}
        for mode in PADDLE_MODES:
            kind, name = mode.split(":")
            group = "inference" if kind == "infer" else "train"
            b, c = section[group].get(name), results[group].get(name)
            if b and c:
                speedup[mode] = {"median": b["median"] / c["median"], "min": b["min"] / c["min"],
                                 "cpu_median": b["cpu_median"] / c["cpu_median"],
                                 "peak_rss_current_over_baseline": c["peak_rss_increase"] / max(b["peak_rss_increase"], 1)}
        section["speedup"] = speedup
        results["baseline"] = section
    return results


def _section(raw, prepared, args, modes, forward_flops, train_flops):
    """Summaries and ratios of one tree's measurements (``raw``: its rows and the torch / GEMM rows)."""
    results = {"logits_max_abs_diff": prepared["logits_max_abs_diff"],
               "predictor_vs_dygraph_max_abs_diff": prepared.get("predictor_max_abs_diff")}
    by_mode = {}
    for mode in modes:
        rows = [x for x in raw if x["mode"] == mode]
        if not rows:
            continue
        times = [t for x in rows for t in x["times"]]
        cpu = [t for x in rows for t in x["cpu_times"]]
        by_mode[mode] = {**summary(times), "cpu_median": statistics.median(cpu),
                         "process_medians": [statistics.median(x["times"]) for x in rows],
                         "peak_rss_increase": max(x["peak_rss_increase"] for x in rows)}
    results["inference"] = {m.split(":")[1]: v for m, v in by_mode.items() if m.startswith("infer:")}
    results["train"] = {m.split(":")[1]: v for m, v in by_mode.items() if m.startswith("train:")}
    inf, tr = results["inference"], results["train"]

    def ratio(ref, other, key="median"):
        return ref[key] / other[key] if ref and other else None

    if "torch" in inf:
        for name, key in (("paddle", "inference_ratio"), ("paddle_static", "static_ratio"),
                          ("paddle_predictor", "predictor_ratio"), ("paddle_predictor_onednn", "predictor_ratio_onednn")):
            if name in inf:
                results[key] = ratio(inf["torch"], inf[name])
                results[key + "_min"] = ratio(inf["torch"], inf[name], "min")
                results[key + "_cpu"] = ratio(inf["torch"], inf[name], "cpu_median")
    if "torch" in tr and "paddle" in tr:
        results["train_ratio"] = ratio(tr["torch"], tr["paddle"])
        results["train_ratio_min"] = ratio(tr["torch"], tr["paddle"], "min")
        results["train_ratio_cpu"] = ratio(tr["torch"], tr["paddle"], "cpu_median")
        results["peak_mem_ratio"] = tr["paddle"]["peak_rss_increase"] / max(tr["torch"]["peak_rss_increase"], 1)
    if "torch" in inf and "paddle" in inf:
        results["peak_mem_ratio_inference"] = inf["paddle"]["peak_rss_increase"] / max(inf["torch"]["peak_rss_increase"], 1)
    gemm = {}
    m = args.batch * (args.text_len + args.regions)
    gemm_flops = 2 * m * prepared["hidden"] * prepared["intermediate"]
    for fw in ("torch", "paddle"):
        if f"gemm:{fw}" in by_mode:
            g = by_mode[f"gemm:{fw}"]
            gemm[fw] = {"gflops_median": gemm_flops / g["median"] / 1e9, "gflops_best": gemm_flops / g["min"] / 1e9}
    results["gemm"] = gemm
    if gemm:
        rate = max(g["gflops_median"] for g in gemm.values())
        results["machine_gemm_gflops"] = rate
        for name, v in inf.items():
            results["gemm_share_inference" + ("" if name == "paddle" else f"_{name}")] = forward_flops / v["median"] / 1e9 / rate
        for name, v in tr.items():
            results["gemm_share_train" + ("" if name == "paddle" else f"_{name}")] = train_flops / v["median"] / 1e9 / rate
    results["raw"] = raw
    return results


def print_table(r, args):
    inf, tr = r["inference"], r["train"]
    lines = ["", f"machine: {r['machine']['cpu']}, {r['machine']['threads']} threads per process, "
             f"{r['machine']['date']}, median load {r['load_median']:.1f}",
             "| measurement | torch median (spread, min) | paddle median (spread, min) | torch/paddle medians (minimums; CPU time) |",
             "|---|---|---|---|"]

    def row(label, t, p):
        lines.append(f"| {label} | {t['median']:.3f} s (±{t['spread'] * 50:.0f}%, min {t['min']:.3f}) | {p['median']:.3f} s "
                     f"(±{p['spread'] * 50:.0f}%, min {p['min']:.3f}) | **{t['median'] / p['median']:.2f}** "
                     f"({t['min'] / p['min']:.2f}; {t['cpu_median'] / p['cpu_median']:.2f}) |")

    if "torch" in inf:
        for name in ("paddle", "paddle_static", "paddle_predictor", "paddle_predictor_onednn"):
            if name in inf:
                row(f"inference, batch {args.batch}, {name.replace('_', ' ')}", inf["torch"], inf[name])
    if "torch" in tr and "paddle" in tr:
        row("training step fwd+bwd+AdamW", tr["torch"], tr["paddle"])
    if "machine_gemm_gflops" in r:
        rate = r["machine_gemm_gflops"]
        shares = ", ".join(f"{k.replace('gemm_share_', '')} {v * 100:.0f}%" for k, v in r.items()
                           if k.startswith("gemm_share_"))
        lines.append(f"| GEMM share (machine FFN-shape GEMM {rate:.0f} GFLOP/s) | {shares} | | |")
    for group, label in ((inf, "inference"), (tr, "training step")):
        if "torch" in group and "paddle" in group:
            t, p = group["torch"]["peak_rss_increase"], group["paddle"]["peak_rss_increase"]
            lines.append(f"| peak RSS increase, {label} | {t / 2**20:.0f} MiB | {p / 2**20:.0f} MiB | "
                         f"paddle/torch {p / max(t, 1):.2f} |")
    lines.append(f"forward {r['forward_gflop']:.0f} GFLOP, training step {r['train_gflop']:.0f} GFLOP; logits "
                 f"max|Δ| {r['logits_max_abs_diff']:.1e}; each mode in {args.repeat} fresh process(es), "
                 f"{args.steps} timed steps each; spread = ±half of (max-min)/median")
    if "baseline" in r:
        lines += _baseline_table(r, args)
    print("\n".join(lines), flush=True)


def _baseline_table(r, args):
    b = r["baseline"]
    lines = ["", f"before/after: baseline = {b['tree']}, current = {ROOT}; both timed in alternating fresh processes "
             "against the same torch processes",
             "| measurement | baseline median (spread, min) | current median (spread, min) | torch/baseline | "
             "torch/current | current speedup = baseline/current medians (minimums; CPU time) |",
             "|---|---|---|---|---|---|"]

    def cell(x):
        return f"{x['median']:.3f} s (±{x['spread'] * 50:.0f}%, min {x['min']:.3f})"

    def torch_ratio(group, x):
        t = r[group].get("torch")
        return f"{t['median'] / x['median']:.2f}" if t else "-"

    for mode in PADDLE_MODES:
        kind, name = mode.split(":")
        group = "inference" if kind == "infer" else "train"
        if mode not in b["speedup"]:
            continue
        old, new, sp = b[group][name], r[group][name], b["speedup"][mode]
        label = (f"inference, batch {args.batch}, {name.replace('_', ' ')}" if kind == "infer"
                 else "training step fwd+bwd+AdamW")
        lines.append(f"| {label} | {cell(old)} | {cell(new)} | {torch_ratio(group, old)} | {torch_ratio(group, new)} | "
                     f"**{sp['median']:.2f}x** ({sp['min']:.2f}; {sp['cpu_median']:.2f}) |")
    for mode, label in (("infer:paddle", "inference"), ("train:paddle", "training step")):
        if mode in b["speedup"]:
            group = "inference" if mode.startswith("infer") else "train"
            old, new = b[group]["paddle"]["peak_rss_increase"], r[group]["paddle"]["peak_rss_increase"]
            lines.append(f"| peak RSS increase, {label}, paddle | {old / 2**20:.0f} MiB | {new / 2**20:.0f} MiB | | | "
                         f"current/baseline {new / max(old, 1):.2f} |")
    shares = ", ".join(f"{k.replace('gemm_share_', '')} {v * 100:.0f}%" for k, v in b.items() if k.startswith("gemm_share_"))
    if shares:
        lines.append(f"baseline GEMM shares: {shares}; baseline logits max|Δ| {b['logits_max_abs_diff']:.1e}")
    return lines


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--_child":
        child_main(sys.argv[2])
    else:
        main(parse_args())
