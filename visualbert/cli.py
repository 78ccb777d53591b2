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
from typing import Callable, NoReturn

from . import accel
from .distributed import exit_process
from .safety import RefusedError, RunInterrupted, StopSignals, existing_outputs_problem, positive_int


class UsageError(ValueError):
    """A bad argument or input found before training; scripts print it and exit with status 2."""

OPTIMIZERS = ("bertadam", "adamw")
# Recipes of the paper (REFERENCE §4); scripts override what differs.
PAPER_DEFAULTS = dict(learning_rate=2e-5, batch_size=64, num_train_epochs=10, warmup="0.1", weight_decay=0.01,
                      adam_epsilon=1e-6, max_grad_norm=1.0, max_seq_length=128)


NUM_WORKERS_HELP = ("loader worker processes (visualbert.data.loader.BatchLoader); 0 loads in the main process. A data "
                    "error in a worker stops the run with the worker's message")
DEBUG_HELP = "print the full traceback of an error (default: one 'error: ...' line)"
MAX_NONFINITE_HELP = ("with float16 loss scaling: consecutive skipped (non-finite) steps tolerated before stopping; "
                      "without it every non-finite loss stops the run")
OVERWRITE_HELP = "replace existing prediction files (result.json, predictions.csv/.jsonl, metrics.json)"
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


def new_parser(description: str, kind: str | None = None) -> argparse.ArgumentParser:
    """An argument parser with the :data:`GROUPS` (empty ones are not shown in ``--help``); with ``kind``
    (``"train"`` / ``"predict"``) the scripts' :class:`ScriptParser`."""
    if kind is None:
        parser = argparse.ArgumentParser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    else:
        parser = ScriptParser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter, kind=kind)
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
        g.add_argument("--train_pooler", action="store_true",
                       help="train the pooler too; by default it is left out of the optimizer, as the original "
                            "release did (its checkpoints keep BERT's pooler)")
        g.add_argument("--freeze_pooler", action="store_true", help=argparse.SUPPRESS)  # deprecated: the default
    return g


class ScriptParser(argparse.ArgumentParser):
    """The parser of the training and predict scripts. Before parsing, a command of the Paddle contest port (its
    flags, its data folders) is rewritten into ours by :func:`visualbert.contest_compat.translate_contest_argv`,
    for the scripts the contest port had (which one follows from ``kind`` and the task's data arguments), so no
    script can forget it; a command of ours comes back unchanged.

    Args:
        kind (str): ``"train"`` or ``"predict"``.
    """

    def __init__(self, *args, kind: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.kind = kind
        self.task = None  # the task whose data arguments were added (Task.add_data_args sets it)

    def parse_known_args(self, args=None, namespace=None):
        from .contest_compat import contest_script, translate_contest_argv

        script = contest_script(self.kind, self.task)
        if script is not None:
            args = translate_contest_argv(sys.argv[1:] if args is None else list(args), script)
        return super().parse_known_args(args, namespace)


def training_parser(description: str, **defaults) -> argparse.ArgumentParser:
    """The common training arguments; ``defaults`` override the paper's recipe values."""
    parser = new_parser(description, kind="train")
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
    g.add_argument("--max_grad_norm", type=float, default=PAPER_DEFAULTS["max_grad_norm"],
                   help="gradient clip: per parameter tensor for bertadam (the original), global norm for adamw; 0 = off")
    g.add_argument("--optimizer", choices=OPTIMIZERS, default="bertadam",
                   help="bertadam: the original's BertAdam + WarmupLinearSchedule (visualbert.optim); adamw: AdamW + "
                        "linear warmup/decay + global-norm clipping")
    g.add_argument("--patience", type=int, default=0,
                   help="early stopping as the original: stop when the best evaluation is more than N evaluations "
                        "(epochs, by default) old; 0 = never stop early")
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
    g.add_argument("--max_nonfinite_steps", type=int, default=0, help=MAX_NONFINITE_HELP)
    g.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    for key, value in defaults.items():
        parser.set_defaults(**{key: value})
    return parser


def prediction_parser(description: str) -> argparse.ArgumentParser:
    """Arguments of the predict scripts; the model is ``--model_dir``, ``--inference_model`` or ``--onnx_model``
    (exactly one, checked by :func:`visualbert.build.load_prediction_model`)."""
    parser = new_parser(description, kind="predict")
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
    g.add_argument("--batch_size", type=positive_int, default=64)
    g.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    g = argument_group(parser, "runtime")
    g.add_argument("--output_dir", default=None,
                   help="where predictions and metrics.json are written (required unless one example is predicted)")
    g.add_argument("--num_workers", type=int, default=0, help=NUM_WORKERS_HELP)
    g.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    return parser


def check_prediction_outputs(output_dir: str, names, overwrite: bool) -> None:
    """Raises :class:`RefusedError` when one of the prediction files ``names`` exists in ``output_dir`` and
    ``--overwrite`` was not given (before the model runs)."""
    problem = None if overwrite else existing_outputs_problem([os.path.join(output_dir, n) for n in names])
    if problem:
        raise RefusedError(problem)


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


def project_error_types() -> tuple:
    """The exceptions that carry a message for the user (bad input, refused request, data error, a stopped run):
    :func:`main_wrapper` prints them as one line. Imported here, not at module level, to keep ``cli`` light."""
    from .contest_compat import ContestArgsError
    from .data.errors import DataFormatError
    from .data.loader import LoaderWorkerError
    from .safety import NonFiniteLossError

    return (UsageError, RefusedError, DataFormatError, ContestArgsError, FileNotFoundError, NonFiniteLossError,
            LoaderWorkerError)


# Exit statuses: 2 = bad input or a refused request (the user must change something before rerunning); 1 = the run
# stopped at run time (non-finite loss, a dead or stuck loader worker); 128 + N = stopped by signal N.
RUNTIME_ERRORS = ("NonFiniteLossError", "LoaderWorkerError")


def _raised_by_us(err: BaseException) -> bool:
    """bool: the innermost frame of ``err``'s traceback is in this package or a script of this repository (a
    ValueError we raised for bad input, not one from inside paddle or numpy)."""
    tb = err.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is None:
        return False
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path = os.path.abspath(tb.tb_frame.f_code.co_filename)
    return path.startswith(root + os.sep) and os.sep + "site-packages" + os.sep not in path[len(root):]


def error_status(err: BaseException) -> int | None:
    """The exit status :func:`main_wrapper` gives ``err`` (None: an unexpected error, shown with its traceback)."""
    if isinstance(err, RunInterrupted):
        return err.exit_status
    if isinstance(err, project_error_types()):
        return 1 if type(err).__name__ in RUNTIME_ERRORS else 2
    if isinstance(err, ValueError) and _raised_by_us(err):
        return 2
    return None


def main_wrapper(main: Callable[[], int | None]) -> NoReturn:
    """Runs ``main()`` with SIGINT/SIGTERM turned into a prompt stop (:class:`visualbert.safety.StopSignals`; the
    engine defers them while a checkpoint is written).

    Every error the project raises for the user (see :func:`error_status`) becomes ONE line ``error: ...`` on stderr
    and exit status 2 (bad input, refused request) or 1 (non-finite loss, loader worker died); a signal exits
    128 + its number. ``--debug`` prints the traceback first (and a loader worker's own traceback). Other
    exceptions are bugs: traceback, exit 1. The process ends through :func:`visualbert.distributed.exit_process`.
    """
    debug = "--debug" in sys.argv[1:]
    try:
        # Importing paddlenlp resets SIGTERM to SIG_DFL at the C level (paddlenlp 3.x; Python's signal.getsignal
        # still reports the previous handler), so that a SIGTERM would kill the run without a word and without
        # deferring to a checkpoint write: import it before StopSignals installs its handlers.
        import paddlenlp  # noqa: F401
    except ImportError:
        pass
    try:
        with StopSignals():
            code = main()
    except (Exception, KeyboardInterrupt) as err:
        status = error_status(err)
        if status is None:
            if isinstance(err, KeyboardInterrupt):
                print("error: interrupted", file=sys.stderr)
                exit_process(130)
            traceback.print_exc()
            exit_process(1)
        if debug:
            traceback.print_exc()
            worker_tb = getattr(err, "worker_traceback", None)
            if worker_tb:
                print(f"loader worker traceback:\n{worker_tb}", file=sys.stderr, end="")
        message = str(err).strip() or type(err).__name__
        if isinstance(err, RunInterrupted):
            message += " (the newest complete checkpoint is kept; continue with --resume_from latest)"
        print(f"error: {message}", file=sys.stderr)
        exit_process(status)
    exit_process(code or 0)
