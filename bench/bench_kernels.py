#!/usr/bin/env python
"""Per-op timing of the CPU kernels of visualbert/kernels.py against Paddle's own ops and torch's, at the BERT-base
training shapes of batch 8 x 228 tokens, one fresh process per (op, implementation), alternated within each round
(paddle, ours, torch, then reversed) so that machine load hits all alike.

    python bench/bench_kernels.py                                   # every op, 3 processes each
    python bench/bench_kernels.py --ops gelu,layer_norm --repeat 5 --json bench/results_kernels.json
    python bench/bench_kernels.py --repeat 1 --steps 3              # a quick check that everything runs

Ops (``--ops``, default all):

    gelu            exact GELU on the FFN activations [1824, 3072]
    dropout_probs   dropout p=0.1 on the attention probabilities [8, 12, 228, 228]
    dropout_hidden  dropout p=0.1 on the hidden states [8, 228, 768]
    layer_norm      LayerNorm over 768 on [8, 228, 768], trainable weight and bias
    masked_softmax  softmax(scores + mask) on [8, 12, 228, 228], additive mask [8, 1, 1, 228]; Paddle's forward is
                    what the model did before: an in-place add_ of the mask pre-expanded to the scores' shape under
                    no_grad, its forward + backward ``F.softmax(scores + mask, -1)`` with the mask broadcast
    bert_adam       one optimizer step over every parameter of VisualBertForQuestionAnswering (visual 2048, 3129
                    labels, ~114M parameters, random gradients): visualbert.optim.BertAdam with its C++ update
                    (ours) and with ``kernels.bert_adam_`` replaced by ``lambda *a: False`` (paddle: the tensor-op
                    path); torch: the transcription of the original BertAdam in tests/test_optim.py on tensors of
                    the same shapes; paddle.optimizer.AdamW and torch.optim.AdamW for reference

Each process warms up (one call), then times ``--steps`` calls of each phase (forward, forward + backward with a
fixed random upstream gradient; or the optimizer step), wall and CPU time. The table gives the medians over all
processes and the ratios of every other implementation's wall (and CPU) median to ours.
"""

import argparse
import ast
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OURS = "visualbert"
IMPLS = ("paddle", OURS, "torch")
BATCH, LENGTH, HEADS, HIDDEN, FFN = 8, 228, 12, 768, 3072
DROPOUT, LN_EPS = 0.1, 1e-12
LEARNING_RATE = 1e-4
FORWARD_PHASES = ("forward", "forward_backward")

# Input roles: DATA is differentiated only in forward + backward (activations), PARAM always (trainable weights),
# CONST never (masks).
DATA, PARAM, CONST = "data", "param", "const"


# ------------------------------------------------------------------ the two frameworks
class Framework:
    """What differs between paddle and torch in a measurement: making tensors, backward, releasing gradients."""

    def __init__(self, impl, threads):
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = str(threads)
        self.is_torch = impl.startswith("torch")
        if self.is_torch:
            import torch

            torch.set_num_threads(threads)
            self.lib, self.F = torch, torch.nn.functional
        else:
            sys.path.insert(0, ROOT)
            import paddle
            import paddle.nn.functional as F

            from visualbert import kernels

            if impl == OURS and kernels.load_cpu_kernels() is None:
                raise SystemExit(f"extension unavailable: {kernels.status()['error']}")
            self.lib, self.F, self.kernels = paddle, F, kernels

    def tensor(self, array, trainable=False):
        if self.is_torch:
            return self.lib.from_numpy(array).requires_grad_(trainable)
        return self.lib.to_tensor(array, stop_gradient=not trainable)

    def forward_backward(self, forward, leaves, grad_out):
        """A phase: ``forward()``, backward of its output with ``grad_out``, the leaves' gradients released (so
        that no call pays for accumulating into the previous one's)."""

        def run():
            forward().backward(grad_out)
            for leaf in leaves:
                if self.is_torch:
                    leaf.grad = None
                else:
                    leaf.clear_gradient(False)

        return run


def normal(shape, seed=0, scale=1.0, shift=0.0):
    import numpy as np

    return lambda: (np.random.RandomState(seed).randn(*shape) * scale + shift).astype(np.float32)


def padding_mask(expand_to=None):
    """The model's additive mask [B, 1, 1, L]: 0 on the first n_b tokens, -10000 on the padding after them
    (optionally materialised to ``expand_to``)."""

    def make():
        import numpy as np

        lengths = np.random.RandomState(1).randint(LENGTH // 2, LENGTH + 1, BATCH)
        mask = np.where(np.arange(LENGTH)[None, :] < lengths[:, None], 0.0, -10000.0).astype(np.float32)
        mask = mask.reshape(BATCH, 1, 1, LENGTH)
        return np.ascontiguousarray(np.broadcast_to(mask, expand_to)) if expand_to else mask

    return make


# ------------------------------------------------------------------ ops
class TensorOp:
    """A differentiable op: its inputs (array factory, role) and one function ``(framework, *inputs) -> output``
    per implementation, or a ``{phase: function}`` where the phases differ. The output has the first input's
    shape (the upstream gradient's)."""

    phases = FORWARD_PHASES

    def __init__(self, title, inputs, impls):
        self.title, self.inputs, self.functions = title, inputs, impls
        self.impls = tuple(impls)

    def build(self, fw, impl, _shapes_file):
        fn = self.functions[impl]
        fns = fn if isinstance(fn, dict) else {phase: fn for phase in self.phases}
        arrays = [(make(), role) for make, role in self.inputs]
        plain = [fw.tensor(a, trainable=role == PARAM) for a, role in arrays]
        graded = [fw.tensor(a, trainable=role != CONST) for a, role in arrays]
        grad_out = fw.tensor(normal(arrays[0][0].shape, seed=2)())
        leaves = [t for t, (_, role) in zip(graded, arrays) if role != CONST]
        return {"forward": lambda: fns["forward"](fw, *plain),
                "forward_backward": fw.forward_backward(lambda: fns["forward_backward"](fw, *graded), leaves,
                                                        grad_out)}


def _paddle_softmax_forward(fw, scores, mask, mask_expanded):
    # the scores drift by -10000 per call on padded keys only: their row maxima, and the result, are unchanged
    with fw.lib.no_grad():
        return fw.F.softmax(scores.add_(mask_expanded), axis=-1)


class OptimizerOp:
    """One optimizer step over the VisualBERT-VQA parameter set (random gradients)."""

    phases = ("step",)
    impls = IMPLS + ("paddle_adamw", "torch_adamw")
    title = ("optimizer step, VisualBertForQuestionAnswering (visual 2048, 3129 labels) parameters, "
             "BertAdam (lr 1e-4, decay 0.01, per-tensor clip 1.0) / AdamW")

    @staticmethod
    def paddle_parameters(fw):
        """[(name, parameter)] of the model, each with a random gradient."""
        from visualbert import VisualBertConfig, VisualBertForQuestionAnswering

        fw.lib.seed(0)
        model = VisualBertForQuestionAnswering(VisualBertConfig(visual_embedding_dim=2048, num_labels=3129))
        named = [(n, p) for n, p in model.named_parameters() if not p.stop_gradient]
        for _, param in named:  # grad = d/dp sum(p * g) = g
            (param * fw.lib.randn(param.shape) * 1e-3).sum().backward()
        return named

    def build(self, fw, impl, shapes_file):
        if fw.is_torch:
            return {"step": self._torch_optimizer(fw, impl, shapes_file).step}
        named = self.paddle_parameters(fw)
        if impl == "paddle_adamw":
            optimizer = fw.lib.optimizer.AdamW(LEARNING_RATE, parameters=[p for _, p in named], weight_decay=0.01)
        else:
            from visualbert.optim import BertAdam

            if impl == "paddle":
                fw.kernels.bert_adam_ = lambda *a: False  # BertAdam.step's tensor-op path
            optimizer = BertAdam(named, LEARNING_RATE)
        return {"step": optimizer.step}

    @staticmethod
    def _torch_optimizer(fw, impl, shapes_file):
        torch = fw.lib
        with open(shapes_file) as f:
            shapes = json.load(f)
        torch.manual_seed(0)
        params = []
        for _, shape, _ in shapes:
            param = torch.nn.Parameter(torch.randn(shape) * 0.02)
            param.grad = torch.randn(shape) * 1e-3
            params.append(param)
        if impl == "torch_adamw":
            return torch.optim.AdamW(params, lr=LEARNING_RATE, weight_decay=0.01)
        decay = [p for p, (_, _, no_decay) in zip(params, shapes) if not no_decay]
        no_decay = [p for p, (_, _, no_decay) in zip(params, shapes) if no_decay]
        return reference_bert_adam(torch)([{"params": decay, "weight_decay": 0.01},
                                           {"params": no_decay, "weight_decay": 0.0}], lr=LEARNING_RATE)


def reference_bert_adam(torch):
    """The original's BertAdam as transcribed in tests/test_optim.py (its two classes only: the test module
    imports paddle, whose OpenMP runtime would then share this torch process)."""
    path = os.path.join(ROOT, "tests", "test_optim.py")
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    classes = [n for n in tree.body if isinstance(n, ast.ClassDef)
               and n.name in ("RefWarmupLinearSchedule", "RefBertAdam")]
    namespace = {"torch": torch}
    exec(compile(ast.Module(body=classes, type_ignores=[]), path, "exec"), namespace)
    return namespace["RefBertAdam"]


PROBS = (BATCH, HEADS, LENGTH, LENGTH)
OPS = {
    "gelu": TensorOp(f"GELU (exact) on [{BATCH * LENGTH}, {FFN}]", [(normal((BATCH * LENGTH, FFN)), DATA)], {
        "paddle": lambda fw, x: fw.F.gelu(x, approximate=False),
        OURS: lambda fw, x: fw.kernels.gelu(x),
        "torch": lambda fw, x: fw.F.gelu(x)}),
    "dropout_probs": TensorOp(f"dropout p={DROPOUT} on the attention probabilities {list(PROBS)}",
                              [(normal(PROBS), DATA)], {
        "paddle": lambda fw, x: fw.F.dropout(x, DROPOUT, training=True),
        OURS: lambda fw, x: fw.kernels.dropout(x, DROPOUT),
        "torch": lambda fw, x: fw.F.dropout(x, DROPOUT, training=True)}),
    "dropout_hidden": TensorOp(f"dropout p={DROPOUT} on the hidden states [{BATCH}, {LENGTH}, {HIDDEN}]",
                               [(normal((BATCH, LENGTH, HIDDEN)), DATA)], {
        "paddle": lambda fw, x: fw.F.dropout(x, DROPOUT, training=True),
        OURS: lambda fw, x: fw.kernels.dropout(x, DROPOUT),
        "torch": lambda fw, x: fw.F.dropout(x, DROPOUT, training=True)}),
    "layer_norm": TensorOp(f"LayerNorm on [{BATCH}, {LENGTH}, {HIDDEN}] (trainable weight and bias)", [
        (normal((BATCH, LENGTH, HIDDEN)), DATA), (normal((HIDDEN,), 3, 0.1, 1.0), PARAM),
        (normal((HIDDEN,), 4, 0.1), PARAM)], {
        "paddle": lambda fw, x, w, b: fw.F.layer_norm(x, [HIDDEN], weight=w, bias=b, epsilon=LN_EPS),
        OURS: lambda fw, x, w, b: fw.kernels.layer_norm(x, w, b, LN_EPS),
        "torch": lambda fw, x, w, b: fw.F.layer_norm(x, (HIDDEN,), w, b, LN_EPS)}),
    "masked_softmax": TensorOp(f"masked softmax on scores {list(PROBS)}, mask [{BATCH}, 1, 1, {LENGTH}]", [
        (normal(PROBS, scale=3.0), DATA), (padding_mask(), CONST), (padding_mask(PROBS), CONST)], {
        "paddle": {"forward": _paddle_softmax_forward,
                   "forward_backward": lambda fw, s, m, _: fw.F.softmax(s + m, axis=-1)},
        OURS: lambda fw, s, m, _: fw.kernels.masked_softmax(s, m),
        "torch": lambda fw, s, m, _: fw.lib.softmax(s + m, -1)}),
    "bert_adam": OptimizerOp(),
}


# ------------------------------------------------------------------ one measurement (child process)
def child(op_name, impl, steps, threads, shapes_file):
    fw = Framework(impl, threads)
    out = {}
    for phase, fn in OPS[op_name].build(fw, impl, shapes_file).items():
        fn()
        wall, cpu = [], []
        for _ in range(steps):
            a, c = time.perf_counter(), time.process_time()
            fn()
            wall.append(time.perf_counter() - a)
            cpu.append(time.process_time() - c)
        out[phase] = {"wall": wall, "cpu": cpu}
    print("RESULT " + json.dumps(out))


def parameter_shapes():
    """[[name, shape, no_decay]] of the model's trainable parameters (for the torch optimizers)."""
    sys.path.insert(0, ROOT)
    from visualbert import VisualBertConfig, VisualBertForQuestionAnswering
    from visualbert.optim import original_no_decay

    model = VisualBertForQuestionAnswering(VisualBertConfig(visual_embedding_dim=2048, num_labels=3129))
    print("RESULT " + json.dumps([[n, list(p.shape), original_no_decay(n)]
                                  for n, p in model.named_parameters() if not p.stop_gradient]))


def run_child(args):
    cmd = [sys.executable, os.path.abspath(__file__)] + [str(a) for a in args]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    lines = [x for x in res.stdout.splitlines() if x.startswith("RESULT ")]
    if res.returncode != 0 or not lines:
        raise SystemExit(f"{' '.join(map(str, args))} failed:\n{res.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


# ------------------------------------------------------------------ driver
def ms(seconds):
    return f"{seconds * 1e3:.1f}"


def print_table(name, op, summary, args):
    print(f"\n{name}: {op.title}\nfloat32, {args.threads} threads, {args.repeat} process(es) x {args.steps} calls each;"
          " median wall ms (CPU ms)")
    others = [impl for impl in op.impls if impl != OURS]
    print(f"{'':<17}" + "".join(f"{impl:>22}" for impl in op.impls)
          + "".join(f"{impl + '/ours':>24}" for impl in others))
    for phase in op.phases:
        ours = summary[OURS][phase]
        cells = [f"{ms(summary[impl][phase]['wall_median'])} ({ms(summary[impl][phase]['cpu_median'])})"
                 for impl in op.impls]
        ratios = [f"{summary[impl][phase]['wall_median'] / ours['wall_median']:.2f}"
                  f" (CPU {summary[impl][phase]['cpu_median'] / ours['cpu_median']:.2f})" for impl in others]
        print(f"{phase:<17}" + "".join(f"{c:>22}" for c in cells) + "".join(f"{r:>24}" for r in ratios))


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--_child":
        op_name, impl, steps, threads, shapes_file = sys.argv[2:7]
        child(op_name, impl, int(steps), int(threads), shapes_file)
        return 0
    if len(sys.argv) > 1 and sys.argv[1] == "--_shapes":
        parameter_shapes()
        return 0
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ops", default=",".join(OPS), help=f"comma-separated subset of {', '.join(OPS)}")
    p.add_argument("--steps", type=int, default=10, help="timed calls per phase and process")
    p.add_argument("--repeat", type=int, default=3, help="processes per (op, implementation)")
    p.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    p.add_argument("--json", default=None, help="write config, medians and every timing here")
    args = p.parse_args()
    names = [n.strip() for n in args.ops.split(",") if n.strip()]
    unknown = [n for n in names if n not in OPS]
    if unknown or not names:
        print(f"bench_kernels: --ops {args.ops!r}: expected a comma-separated subset of {', '.join(OPS)}",
              file=sys.stderr)
        return 2
    if args.steps < 1 or args.repeat < 1:
        print("bench_kernels: --steps and --repeat must be >= 1", file=sys.stderr)
        return 2
    workdir = tempfile.mkdtemp(prefix="bench_kernels_")
    shapes_file = os.path.join(workdir, "parameter_shapes.json")
    try:
        if any(isinstance(OPS[n], OptimizerOp) for n in names):
            shapes = run_child(["--_shapes"])
            with open(shapes_file, "w") as f:
                json.dump(shapes, f)
            print(f"optimizer: {len(shapes)} parameter tensors, "
                  f"{sum(math.prod(s) for _, s, _ in shapes) / 1e6:.1f}M parameters", flush=True)
        raw, summary = {}, {}
        for name in names:
            op = OPS[name]
            raw[name] = {impl: [] for impl in op.impls}
            for r in range(args.repeat):
                for impl in op.impls if r % 2 == 0 else tuple(reversed(op.impls)):
                    run = run_child(["--_child", name, impl, args.steps, args.threads, shapes_file])
                    raw[name][impl].append(run)
                    print(f"{name} round {r} {impl:<12} " + "  ".join(
                        f"{k} {ms(statistics.median(v['wall']))} ms (CPU {ms(statistics.median(v['cpu']))})"
                        for k, v in run.items()) + f"  load {os.getloadavg()[0]:.2f}", flush=True)
            summary[name] = {impl: {phase: {
                "wall_median": statistics.median([t for run in runs for t in run[phase]["wall"]]),
                "cpu_median": statistics.median([t for run in runs for t in run[phase]["cpu"]])}
                for phase in op.phases} for impl, runs in raw[name].items()}
        for name in names:
            print_table(name, OPS[name], summary[name], args)
    finally:
        if os.path.exists(shapes_file):
            os.remove(shapes_file)
        os.rmdir(workdir)
    if args.json:
        tmp = f"{args.json}.tmp{os.getpid()}"
        with open(tmp, "w") as f:
            json.dump({"config": vars(args), "summary": summary, "raw": raw}, f, indent=2)
        os.replace(tmp, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
