"""The command line: the arguments shared by every training / prediction script, :class:`UsageError` and
:func:`main_wrapper`, which turns it into one ``error: ...`` line and exit status 2.

The parsed namespace goes to :meth:`visualbert.config.TrainConfig.from_args` (the typed, validated training
configuration) and to :func:`visualbert.build.build_dataset` / :func:`visualbert.build.build_model`; nothing else
reads it.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from typing import Callable

from . import accel


class UsageError(ValueError):
    """A bad argument or input found before training; scripts print it and exit with status 2."""

# Recipes of the paper (REFERENCE §4); scripts override what differs.
PAPER_DEFAULTS = dict(learning_rate=2e-5, batch_size=64, num_train_epochs=10, warmup="0.1", weight_decay=0.01,
                      adam_epsilon=1e-6, max_grad_norm=1.0, max_seq_length=128)


NUM_WORKERS_HELP = ("DataLoader worker processes; 0 (the default, and recommended) loads in the main process. With "
                    "N > 0 every epoch and every evaluation creates a new loader with N workers, and paddle's "
                    "DataLoader has been seen to hang when several loaders with workers are created in one process")
CHECK_FEATURES_HELP = ("before training (or predicting), check that every image of every split the run reads has its "
                       "feature file, and exit with an error listing the missing ones (one stat per image)")


def parse_warmup(value: str) -> float | int:
    """``"0.1"`` → 0.1 (a proportion of the training steps); ``"500"`` → 500 (steps)."""
    text = str(value).strip()
    try:
        if text.isdigit():
            return int(text)
        number = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--warmup must be a proportion in [0, 1] or a whole number of steps, got {value!r}")
    if not 0.0 <= number <= 1.0:
        raise argparse.ArgumentTypeError(f"--warmup {value!r}: a fraction must lie in [0, 1] (use an integer for steps)")
    return number


def str2bool(value: str | bool) -> bool:
    if isinstance(value, bool):
        return value
    if value.lower() in ("1", "true", "yes", "y"):
        return True
    if value.lower() in ("0", "false", "no", "n"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {value!r}")


# The argument groups of every script's --help, in this order.
GROUPS = ("model", "data", "training", "evaluation/prediction", "runtime")


def new_parser(description: str) -> argparse.ArgumentParser:
    """An argument parser with the :data:`GROUPS` (empty ones are not shown in ``--help``)."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    for title in GROUPS:
        parser.add_argument_group(title)
    return parser


def argument_group(parser: argparse.ArgumentParser, title: str) -> argparse._ArgumentGroup:
    """The group ``title`` (one of :data:`GROUPS`) of ``parser``, created if the parser has none of that title."""
    if title not in GROUPS:
        raise ValueError(f"argument group {title!r} is not one of {GROUPS}")
    for group in parser._action_groups:
        if group.title == title:
            return group
    return parser.add_argument_group(title)


def add_model_args(parser: argparse.ArgumentParser, include_scratch: bool = True) -> argparse._ArgumentGroup:
    g = argument_group(parser, "model")
    g.add_argument("--model_name_or_path", default=None,
                   help="a Paddle VisualBERT directory (config.json + model_state.pdparams), e.g. a converted "
                        "checkpoint (checkpoint/convert.py) or a previous run's best/ or final/")
    g.add_argument("--bert_model", default=None,
                   help="an HF bert-base-uncased directory (config.json + model.safetensors or pytorch_model.bin): "
                        "initialise the text side from BERT and copy its tables to the visual ones")
    g.add_argument("--ignore_mismatched_sizes", action="store_true",
                   help="re-initialise a classifier head whose size does not fit the task instead of failing")
    g.add_argument("--vocab_file", default=None, help="bert-base-uncased vocab.txt (default: the packaged copy)")
    if include_scratch:
        g.add_argument("--config", default=None, help="config.json for a model trained from scratch")
        g.add_argument("--hidden_size", type=int, default=None, help="from scratch: width (default 768)")
        g.add_argument("--num_hidden_layers", type=int, default=None, help="from scratch: layers (default 12)")
        g.add_argument("--num_attention_heads", type=int, default=None, help="from scratch: heads (default 12)")
        g.add_argument("--intermediate_size", type=int, default=None, help="from scratch: FFN width (default 3072)")
        g.add_argument("--dropout", type=float, default=None,
                       help="override hidden and attention dropout (e.g. 0 for deterministic tests)")
        g.add_argument("--freeze_pooler", action="store_true",
                       help="do not train the pooler (the original release never did); default: train everything")
    return g


def training_parser(description: str, **defaults) -> argparse.ArgumentParser:
    """The common training arguments; ``defaults`` override the paper's recipe values."""
    parser = new_parser(description)
    add_model_args(parser)
    g = argument_group(parser, "training")
    g.add_argument("--learning_rate", type=float, default=PAPER_DEFAULTS["learning_rate"])
    g.add_argument("--batch_size", type=int, default=PAPER_DEFAULTS["batch_size"], help="per process")
    g.add_argument("--gradient_accumulation_steps", type=int, default=1)
    g.add_argument("--num_train_epochs", type=int, default=PAPER_DEFAULTS["num_train_epochs"])
    g.add_argument("--max_steps", type=int, default=-1, help="if > 0: total optimizer steps (overrides epochs)")
    g.add_argument("--warmup", type=parse_warmup, default=parse_warmup(PAPER_DEFAULTS["warmup"]),
                   help="linear warmup: a proportion of the steps (0.1) or a number of steps (500)")
    g.add_argument("--weight_decay", type=float, default=PAPER_DEFAULTS["weight_decay"])
    g.add_argument("--adam_epsilon", type=float, default=PAPER_DEFAULTS["adam_epsilon"])
    g.add_argument("--adam_beta1", type=float, default=0.9)
    g.add_argument("--adam_beta2", type=float, default=0.999)
    g.add_argument("--max_grad_norm", type=float, default=PAPER_DEFAULTS["max_grad_norm"], help="global norm; 0 = off")
    g.add_argument("--seed", type=int, default=42)
    # --use_amp, --amp_level, --amp_dtype, --scale_loss, --fused_attention (GPU options; AMP is a warning and a
    # no-op on CPU)
    accel.add_accel_arguments(argument_group(parser, "runtime"))
    g = argument_group(parser, "runtime")
    g.add_argument("--output_dir", required=True)
    g.add_argument("--overwrite_output_dir", action="store_true", help="clear an output directory holding another run")
    g.add_argument("--resume_from", default=None,
                   help="a step_<N> checkpoint directory, a run directory (its newest checkpoint), or 'latest' "
                        "(the newest checkpoint of --output_dir; starts fresh if there is none)")
    g.add_argument("--logging_steps", type=int, default=50)
    g.add_argument("--save_steps", type=int, default=1000, help="checkpoint every N optimizer steps (and at the end)")
    g.add_argument("--save_total_limit", type=int, default=0, help="keep only the newest N step_<N> checkpoints")
    g.add_argument("--num_workers", type=int, default=0, help=NUM_WORKERS_HELP)
    g.add_argument("--disable_tqdm", action="store_true")
    g.add_argument("--visualdl", type=str2bool, nargs="?", const=True, default=True,
                   help="write the logged scalars for VisualDL under <output_dir>/visualdl (--visualdl false: off)")
    g = argument_group(parser, "evaluation/prediction")
    g.add_argument("--eval_batch_size", type=int, default=None, help="default: 2 × batch_size")
    g.add_argument("--eval_steps", type=int, default=0, help="evaluate every N steps; 0 = after each epoch")
    g.add_argument("--no_eval", action="store_true", help="no evaluation during training")
    g.add_argument("--metric_for_best", default=None, help="evaluation metric that picks best/ (task default)")
    g.add_argument("--greater_is_better", type=str2bool, default=None, help="task default")
    g = argument_group(parser, "data")
    g.add_argument("--check_features", action="store_true", help=CHECK_FEATURES_HELP)
    g.add_argument("--max_seq_length", type=int, default=PAPER_DEFAULTS["max_seq_length"])
    g.add_argument("--text_only", action="store_true",
                   help="mask every region out (visual_attention_mask = 0): a text-only baseline")
    for key, value in defaults.items():
        parser.set_defaults(**{key: value})
    return parser


def prediction_parser(description: str) -> argparse.ArgumentParser:
    """Arguments of the predict scripts; the model is ``--model_dir``, ``--inference_model`` or ``--onnx_model``
    (exactly one, checked by :func:`visualbert.build.load_prediction_model`)."""
    parser = new_parser(description)
    g = argument_group(parser, "model")
    g.add_argument("--model_dir", default=None,
                   help="a trained model directory (a run's best/ or final/, or step_<N>/); or --inference_model / "
                        "--onnx_model")
    g.add_argument("--inference_model", default=None,
                   help="instead of --model_dir: a model exported by tools/export_model.py (a paddle.inference "
                        "predictor on CPU; VQA2 and NLVR2 heads)")
    g.add_argument("--onnx_model", default=None,
                   help="instead of --model_dir: a directory written by tools/export_model.py --format onnx (run "
                        "with onnxruntime; VQA2 and NLVR2 heads)")
    g.add_argument("--vocab_file", default=None)
    g = argument_group(parser, "data")
    g.add_argument("--max_seq_length", type=int, default=PAPER_DEFAULTS["max_seq_length"])
    g.add_argument("--check_features", action="store_true", help=CHECK_FEATURES_HELP)
    g.add_argument("--text_only", action="store_true", help="mask every region out (as the model was trained)")
    g = argument_group(parser, "evaluation/prediction")
    g.add_argument("--batch_size", type=int, default=64)
    g = argument_group(parser, "runtime")
    g.add_argument("--output_dir", default=None,
                   help="where predictions and metrics.json are written (required unless one example is predicted)")
    g.add_argument("--num_workers", type=int, default=0, help=NUM_WORKERS_HELP)
    return parser


def require_path(path: str | None, what: str, kind: str = "any") -> None:
    """Raises :class:`UsageError` unless ``path`` exists (``kind``: "dir", "file" or "any")."""
    if path is None:
        raise UsageError(f"{what} is required")
    if kind == "dir" and not os.path.isdir(path):
        raise UsageError(f"{what} {path!r} is not a directory")
    if kind == "file" and not os.path.isfile(path):
        raise UsageError(f"{what} {path!r} does not exist")
    if not os.path.exists(path):
        raise UsageError(f"{what} {path!r} does not exist")


def check_model_args(args: argparse.Namespace) -> None:
    """Checks the model arguments of :func:`add_model_args` (paths exist, one source); raises :class:`UsageError`."""
    if args.model_name_or_path and args.bert_model:
        raise UsageError("give either --model_name_or_path or --bert_model, not both")
    if args.model_name_or_path:
        require_path(args.model_name_or_path, "--model_name_or_path", "dir")
        for name in ("config.json", "model_state.pdparams"):
            if not os.path.isfile(os.path.join(args.model_name_or_path, name)):
                raise UsageError(f"--model_name_or_path {args.model_name_or_path!r} has no {name} (convert torch "
                                 "checkpoints with checkpoint/convert.py)")
    if args.bert_model:
        require_path(args.bert_model, "--bert_model", "dir")
    if getattr(args, "config", None):
        require_path(args.config, "--config", "file")
    if args.vocab_file:
        require_path(args.vocab_file, "--vocab_file", "file")


def main_wrapper(main: Callable[[], int | None]) -> None:
    """Runs ``main()``; a :class:`UsageError` (or missing file) becomes ``error: ...`` on stderr and exit 2."""
    try:
        code = main()
    except (UsageError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except Exception:
        traceback.print_exc()
        sys.exit(1)
    sys.exit(code or 0)
