#!/usr/bin/env python
"""Why a Paddle dygraph model slows down when other Paddle runtimes live in the same process.

Times dygraph inference of one model alone, then again after each other runtime was created and run in the
SAME process (``paddle.jit.to_static``, the ``paddle.inference`` predictor without and with oneDNN), and prints
the global state each step changed (Paddle flags, math-library threads). Run each ``--order`` in a fresh process:

    python bench/coresident.py --order static predictor onednn
    python bench/coresident.py --order onednn
    python bench/coresident.py --order onednn --restore   # the fix: restore the flags the predictor changed

Small model by default (BERT-base width, 4 layers, batch 2, 64 + 36 tokens): the effect is per-op, not per-size.
"""

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--order", nargs="+", default=["static", "predictor", "onednn"],
                   choices=["static", "predictor", "onednn"])
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--text-len", type=int, default=64)
    p.add_argument("--regions", type=int, default=36)
    p.add_argument("--steps", type=int, default=9)
    p.add_argument("--restore", action="store_true", help="restore the global flags after each predictor is built")
    p.add_argument("--restore-threads", action="store_true",
                   help="re-apply the thread count (visualbert.runtime.configure_paddle_threads) after each step")
    p.add_argument("--malloc-threshold", type=int, default=None,
                   help="glibc M_MMAP_THRESHOLD / M_TRIM_THRESHOLD (bytes) set before paddle loads")
    return p.parse_args(argv)


def main(args):
    if args.malloc_threshold:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, args.malloc_threshold)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, args.malloc_threshold)  # M_TRIM_THRESHOLD

    import paddle

    import visualbert  # noqa: F401  (runtime defaults before paddle)
    from visualbert.configuration import VisualBertConfig
    from visualbert.inference import Predictor, export_model, to_static_model
    from visualbert.inputs import make_inputs
    from visualbert.modeling import VisualBertForQuestionAnswering

    arch = "VisualBertForQuestionAnswering"
    paddle.seed(0)
    config = VisualBertConfig(visual_embedding_dim=2048, num_labels=3129, num_hidden_layers=args.layers,
                              architectures=[arch])
    model = VisualBertForQuestionAnswering(config)
    model.eval()
    inputs = make_inputs(config, arch, batch_size=args.batch, text_len=args.text_len, num_regions=args.regions,
                         seed=0, with_labels=False)
    feed = {k: paddle.to_tensor(v) for k, v in inputs.items()}
    watched = ["FLAGS_use_mkldnn", "FLAGS_use_stride_kernel"]
    libs = os.path.join(os.path.dirname(paddle.__file__), "libs")

    def math_threads():
        """The main thread's thread counts as the math libraries see them (deterministic, unlike timings)."""
        import ctypes

        out = {}
        for label, lib, fn in (("iomp5", "libiomp5.so", "omp_get_max_threads"),
                               ("mklml", "libmklml_intel.so", "MKL_Get_Max_Threads"),
                               ("gomp", "libgomp.so.1", "omp_get_max_threads")):
            try:
                handle = ctypes.CDLL(os.path.join(libs, lib) if label != "gomp" else lib)
                out[label] = getattr(handle, fn)()
            except (OSError, AttributeError):
                out[label] = "?"
        return out

    def state():
        flags = {}
        for name in watched:
            try:
                flags[name] = paddle.get_flags([name])[name]
            except Exception:
                flags[name] = "?"
        return {**flags, **math_threads()}

    busy = {}

    def dygraph():
        times = []
        with paddle.no_grad():
            float(model(**feed)["logits"].reshape([-1])[0])
            cpu, wall = time.process_time(), time.perf_counter()
            faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            for _ in range(args.steps):
                t = time.perf_counter()
                float(model(**feed)["logits"].reshape([-1])[0])
                times.append(time.perf_counter() - t)
            busy["cores"] = (time.process_time() - cpu) / (time.perf_counter() - wall)
            busy["cpu_ms"] = (time.process_time() - cpu) / args.steps * 1000
            busy["faults"] = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / args.steps
        return statistics.median(times)

    def idle_cpu():
        """CPU seconds this process burns per second while the main thread sleeps (spinning pools > 0)."""
        start, t = time.process_time(), time.perf_counter()
        time.sleep(1.0)
        return (time.process_time() - start) / (time.perf_counter() - t)

    def report(label, value):
        threads = len(os.listdir("/proc/self/task")) if os.path.isdir("/proc/self/task") else "?"
        print(f"{label:<34} dygraph inference {value * 1000:8.1f} ms (CPU {busy['cpu_ms']:7.1f} ms/step, {busy['faults']:7.0f} page faults/step, busy {busy['cores']:.2f} cores)   OS threads {threads}, idle CPU "
              f"{idle_cpu():.2f} core   {state()}", flush=True)

    report("alone", dygraph())
    work = tempfile.mkdtemp(prefix="coresident-")
    export_model(model, work, arch)
    report("after export_model (jit.save)", dygraph())
    for step in args.order:
        before = {n: paddle.get_flags([n])[n] for n in watched}
        if step == "static":
            static = to_static_model(model, arch, inputs)
            for _ in range(3):
                with paddle.no_grad():
                    static(**feed)
        else:
            predictor = Predictor(work, use_mkldnn=step == "onednn")
            for _ in range(3):
                predictor.run(inputs)
        if args.restore:
            paddle.set_flags(before)
        if args.restore_threads:
            from visualbert.runtime import configure_paddle_threads

            configure_paddle_threads()
        report(f"after {step}" + (" (flags restored)" if args.restore else "")
               + (" (threads re-set)" if args.restore_threads else ""), dygraph())
    return 0


if __name__ == "__main__":
    sys.exit(main(parse_args()))
