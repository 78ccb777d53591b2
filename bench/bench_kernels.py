#!/usr/bin/env python
"""Per-op timing of the CPU kernels of visualbert/kernels.py against Paddle's and torch's, one fresh process per
measurement, alternated (paddle, ours, torch, paddle, ours, torch, ...) so that machine load hits all alike.

    python bench/bench_kernels.py                         # GELU on the FFN shape of batch 8 (1824 x 3072)
    python bench/bench_kernels.py --repeat 5 --json bench/results_kernels.json

Each process warms up, then times ``--steps`` calls of the forward and of forward + backward (wall and CPU
time, medians). Ratios are Paddle's / ours and torch's / ours of the wall medians over all processes.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMPLS = ("paddle", "visualbert", "torch")


def child(impl, rows, cols, steps, threads):
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)
    import numpy as np

    x = np.random.RandomState(0).randn(rows, cols).astype(np.float32)
    if impl == "torch":
        import torch

        torch.set_num_threads(threads)
        t = torch.from_numpy(x)

        def fwd():
            torch.nn.functional.gelu(t)

        def fwd_bwd():
            v = t.clone().requires_grad_(True)
            torch.nn.functional.gelu(v).sum().backward()
    else:
        sys.path.insert(0, ROOT)
        import paddle
        import paddle.nn.functional as F

        from visualbert import kernels

        if impl == "visualbert" and kernels.load_cpu_kernels() is None:
            raise SystemExit(f"extension unavailable: {kernels.status()['error']}")
        op = kernels.gelu if impl == "visualbert" else (lambda v: F.gelu(v, approximate=False))
        p = paddle.to_tensor(x)

        def fwd():
            op(p)._is_initialized()

        def fwd_bwd():
            v = paddle.to_tensor(x, stop_gradient=False)
            op(v).sum().backward()

    out = {}
    for name, fn in (("forward", fwd), ("forward_backward", fwd_bwd)):
        fn()
        wall, cpu = [], []
        for _ in range(steps):
            a, c = time.perf_counter(), time.process_time()
            fn()
            wall.append(time.perf_counter() - a)
            cpu.append(time.process_time() - c)
        out[name] = {"wall": wall, "cpu": cpu}
    print("RESULT " + json.dumps(out))


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--_child":
        impl, rows, cols, steps, threads = sys.argv[2:7]
        child(impl, int(rows), int(cols), int(steps), int(threads))
        return 0
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=8 * 228)
    p.add_argument("--cols", type=int, default=3072)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    p.add_argument("--json", default=None)
    args = p.parse_args()
    raw = {impl: [] for impl in IMPLS}
    for r in range(args.repeat):
        for impl in IMPLS if r % 2 == 0 else tuple(reversed(IMPLS)):
            cmd = [sys.executable, os.path.abspath(__file__), "--_child", impl, str(args.rows), str(args.cols),
                   str(args.steps), str(args.threads)]
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
            lines = [x for x in res.stdout.splitlines() if x.startswith("RESULT ")]
            if res.returncode != 0 or not lines:
                raise SystemExit(f"{impl} failed:\n{res.stderr[-3000:]}")
            raw[impl].append(json.loads(lines[-1][7:]))
            print(f"round {r} {impl:<10} " + "  ".join(
                f"{k} {statistics.median(v['wall']) * 1e3:.1f} ms (CPU {statistics.median(v['cpu']) * 1e3:.1f})"
                for k, v in raw[impl][-1].items()) + f"  load {os.getloadavg()[0]:.2f}", flush=True)
    summary = {}
    for impl in IMPLS:
        summary[impl] = {k: {"wall_median": statistics.median([t for run in raw[impl] for t in run[k]["wall"]]),
                             "cpu_median": statistics.median([t for run in raw[impl] for t in run[k]["cpu"]])}
                         for k in ("forward", "forward_backward")}
    print(f"\nGELU (exact) on [{args.rows}, {args.cols}] float32, {args.threads} threads, {args.repeat} process(es) each")
    for k in ("forward", "forward_backward"):
        ours = summary["visualbert"][k]
        print(f"{k:<17} " + "  ".join(f"{impl} {summary[impl][k]['wall_median'] * 1e3:7.1f} ms" for impl in IMPLS)
              + f"   paddle/ours {summary['paddle'][k]['wall_median'] / ours['wall_median']:.2f}"
              f" (CPU {summary['paddle'][k]['cpu_median'] / ours['cpu_median']:.2f}),"
              f" torch/ours {summary['torch'][k]['wall_median'] / ours['wall_median']:.2f}"
              f" (CPU {summary['torch'][k]['cpu_median'] / ours['cpu_median']:.2f})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"config": vars(args), "summary": summary, "raw": raw}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
