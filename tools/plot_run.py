#!/usr/bin/env python
"""Draw the training curves of one or several runs from their ``metrics.jsonl`` into a PNG.

    python tools/plot_run.py runs/vqa2 -o vqa2.png
    python tools/plot_run.py runs/nlvr2_image runs/nlvr2_text_only --labels image "text only" -o nlvr2.png

One panel per quantity: the train records' loss (and its parts), learning rate and grad norm, then every numeric
evaluation metric; x is the optimizer step. Each run is one line (its own colour and line style, named in the
legend by ``--labels`` or the run directory's name). Runs of different heads (e.g. VQA2 and NLVR2) get separate
panels, titled with the task. Throughput (``*_per_s``) and counts (``num_*``) are left out.
"""

import argparse
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

METRICS_FILE = "metrics.jsonl"
TASK_OF_HEAD = {"VisualBertForQuestionAnswering": "VQA2", "VisualBertForVisualReasoning": "NLVR2",
                "VisualBertForMultipleChoice": "VCR", "VisualBertForPreTraining": "pretraining"}
SKIPPED = ("type", "step", "epoch")
LINE_STYLES = ("-", "--", "-.", ":")


def plotted(key, value):
    """True for the record entries drawn: finite numbers other than step/epoch, throughput and counts."""
    if key in SKIPPED or key.endswith("_per_s") or key.startswith("num_"):
        return False
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def read_run(run_dir):
    """The curves of one run.

    Returns:
        tuple: (task name or None, {(kind, key): ([steps], [values])}), kind "train" or "eval".

    Raises:
        FileNotFoundError: ``run_dir`` has no metrics.jsonl.
    """
    from visualbert.fileio import read_json, read_jsonl

    path = os.path.join(run_dir, METRICS_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{run_dir} has no {METRICS_FILE} (not a training run directory?)")
    curves = {}
    for record in read_jsonl(path):
        kind = record.get("type", "train")
        for key, value in record.items():
            if plotted(key, value):
                steps, values = curves.setdefault((kind, key), ([], []))
                steps.append(int(record["step"]))
                values.append(float(value))
    task = None
    args_file = os.path.join(run_dir, "args.json")
    if os.path.isfile(args_file):
        task = TASK_OF_HEAD.get(read_json(args_file).get("model_class"))
    return task, curves


def panel_order(kind_key):
    kind, key = kind_key
    rank = {"loss": 0, "learning_rate": 2, "grad_norm": 3}.get(key, 1)
    return (kind != "train", rank if kind == "train" else 0, key)


def parse_size(text):
    """``"1200x800"`` → (1200, 800) pixels."""
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--size must be WIDTHxHEIGHT in pixels, e.g. 1200x800, got {text!r}")
    if width < 100 or height < 100:
        raise argparse.ArgumentTypeError(f"--size {text!r}: at least 100x100 pixels")
    return width, height


def plot_runs(run_dirs, out, labels=None, size=None, dpi=100, title=None):
    """Writes the PNG ``out`` of the runs' curves (one panel per quantity, one line per run).

    Args:
        run_dirs (list[str]): training output directories (each with metrics.jsonl).
        out (str): PNG path (written atomically).
        labels (list[str], optional): legend names, default the directories' names.
        size (tuple[int, int], optional): (width, height) in pixels; default 420 x 300 per panel.
        dpi (int): resolution.
        title (str, optional): figure title.

    Returns:
        list[str]: the panel titles, in order.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from visualbert.fileio import atomic_path

    labels = list(labels) if labels else [os.path.basename(os.path.normpath(d)) for d in run_dirs]
    if len(labels) != len(run_dirs):
        raise ValueError(f"{len(labels)} --labels for {len(run_dirs)} runs")
    runs = [read_run(d) for d in run_dirs]
    several_tasks = len({task for task, _ in runs}) > 1
    panels = {}
    for index, (task, curves) in enumerate(runs):
        for kind_key, (steps, values) in curves.items():
            group = (task if several_tasks else None,) + kind_key
            panels.setdefault(group, []).append((index, steps, values))
    if not panels:
        raise ValueError(f"no numeric records to plot in {', '.join(run_dirs)}")
    tasks = list(dict.fromkeys(g[0] for g in panels))  # in the order of the runs; each task starts a row
    by_task = [sorted((g for g in panels if g[0] == task), key=lambda g: panel_order(g[1:])) for task in tasks]
    cols = min(5 if several_tasks else 3, max(len(groups) for groups in by_task))
    layout = []  # (row, col, group)
    row = 0
    for groups in by_task:
        for i, group in enumerate(groups):
            layout.append((row + i // cols, i % cols, group))
        row += math.ceil(len(groups) / cols)
    rows = row
    width, height = size or (420 * cols, 300 * rows + (40 if title else 0))
    fig, axes = plt.subplots(rows, cols, figsize=(width / dpi, height / dpi), dpi=dpi, squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    names = []
    used = set()
    for r, c, group in layout:
        ax = axes[r][c]
        used.add((r, c))
        task, kind, key = group
        name = f"{task + ' ' if task else ''}{kind}: {key}"
        names.append(name)
        for index, steps, values in panels[group]:
            marker = "o" if len(steps) <= 20 else None
            ax.plot(steps, values, color=colors[index % len(colors)], linestyle=LINE_STYLES[index % len(LINE_STYLES)],
                    marker=marker, markersize=3, linewidth=1.5, label=labels[index])
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("optimizer step", fontsize=9)
        ax.set_ylabel(key.replace("_", " "), fontsize=9)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    for r in range(rows):
        for c in range(cols):
            if (r, c) not in used:
                axes[r][c].axis("off")
    if title:
        fig.suptitle(title, fontsize=12)
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    plt.close(fig)
    return names


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="training output directories")
    parser.add_argument("-o", "--out", required=True, help="PNG file to write")
    parser.add_argument("--labels", nargs="+", default=None, help="legend name of each run (default: its directory)")
    parser.add_argument("--size", type=parse_size, default=None,
                        help="WIDTHxHEIGHT in pixels (default: 420x300 per panel)")
    parser.add_argument("--dpi", type=int, default=100)
    parser.add_argument("--title", default=None)
    args = parser.parse_args(argv)
    try:
        names = plot_runs(args.run_dirs, args.out, args.labels, args.size, args.dpi, args.title)
    except (FileNotFoundError, ValueError) as err:
        print(f"plot_run.py: error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {args.out} ({len(names)} panels: {', '.join(names)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
