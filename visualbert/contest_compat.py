"""Commands and data folders of the Paddle contest port (chenkangyang/paddle_visual_bert), accepted as they are.

Two things, both pure functions of the command line and the file system, used before argparse runs:

* :func:`translate_contest_argv` rewrites the contest port's flags into ours (``--train_batch_size`` →
  ``--batch_size``, ``--use_amp True`` → ``--use_amp --amp_dtype float16`` ...), printing one notice per flag
  that names our flag, and for the flags whose meaning we changed, how. The table is :data:`CONTEST_FLAGS`.
* :func:`resolve_contest_layout` maps the contest port's on-disk layout (``--input_dir X_COCO/`` with
  ``data/detectron_fix_100``, ``--image_feature_type``, and the annotations PaddleNLP keeps under
  ``$PPNLP_HOME/datasets/{VQA2,NLVR2,COCOCaptions}``) to our data flags (``--imdb_dir``, ``--features`` ...),
  checking up front that each resolved directory exists.

No script calls them: :class:`visualbert.cli.ScriptParser` (the parser of every training and predict script)
translates before it parses, for the scripts the contest port had (:func:`contest_script`). Flags of ours pass
through untouched and win over anything derived from the contest layout.
"""

import os
import sys
from dataclasses import dataclass

from .cli import UsageError

SCRIPTS = ("vqa2", "nlvr2", "pretrain", "vqa2_predict", "nlvr2_predict")
# (parser kind, title of the task's data argument group in visualbert/tasks.py) -> the contest port's script.
CONTEST_SCRIPTS = {("train", "vqa2"): "vqa2", ("train", "nlvr2"): "nlvr2", ("train", "pretrain"): "pretrain",
                   ("predict", "vqa2"): "vqa2_predict", ("predict", "nlvr2"): "nlvr2_predict"}
TRUE_WORDS = ("1", "true", "t", "yes", "y", "on")
FALSE_WORDS = ("0", "false", "f", "no", "n", "off")


class ContestArgsError(UsageError):
    """A contest-port flag or layout that cannot be translated; the message is one line for the user (``error: ...``,
    exit status 2, as every :class:`~visualbert.cli.UsageError`)."""


def contest_script(kind, task):
    """The contest port's script a parser stands for, or None (VCR, Flickr30K and tools had no contest counterpart).

    Args:
        kind (str): ``"train"`` or ``"predict"`` (:class:`visualbert.cli.ScriptParser`).
        task (str or None): the name of the task whose data arguments the parser has (``Task.name``).

    Returns:
        str or None: one of :data:`SCRIPTS`.
    """
    return CONTEST_SCRIPTS.get((kind, task))


@dataclass(frozen=True)
class ContestFlag:
    """How one contest-port flag maps to ours.

    Attributes:
        ours (str or None): our flag, or None when the flag is consumed (dropped, or folded into the layout).
        takes_value (str): ``"yes"`` (one value), ``"bool"`` (an optional true/false word), ``"no"``.
        note (str): the notice printed when the flag is used: what ours does, if it differs.
        scripts (tuple[str, ...]): scripts where the contest port had the flag (others: not translated).
    """

    ours: str = None
    takes_value: str = "yes"
    note: str = ""
    scripts: tuple = SCRIPTS


_TRAIN = ("vqa2", "nlvr2", "pretrain")
_FINETUNE = ("vqa2", "nlvr2")
_PREDICT = ("vqa2_predict", "nlvr2_predict")

# The contest port's flags (VQA2/run_vqa2.py, NLVR2/run_nlvr2.py, run_pretrain.py, */run_predict.py) that are not
# ours verbatim, or whose meaning differs. Flags both have with the same meaning (--learning_rate, --output_dir,
# --num_train_epochs, --max_steps, --max_seq_length, --logging_steps, --adam_epsilon, --seed, --eval_batch_size,
# --dataset, --mask_prob, --batch_size) pass through with no notice.
CONTEST_FLAGS = {
    "--input_dir": ContestFlag(None, "yes", "resolved to --imdb_dir/--data_dir/--features (see the README section "
                                            "'Coming from the contest port')", _TRAIN),
    "--image_feature_type": ContestFlag(None, "yes", "resolved to --features (and --max_regions) under --input_dir",
                                        _TRAIN),
    "--visual_feature_root": ContestFlag("--features", "yes", "", _PREDICT),
    "--task_name": ContestFlag(None, "yes", "dropped: the script is the task", _FINETUNE),
    "--model_type": ContestFlag(None, "yes", "dropped: VisualBERT is the only model", _TRAIN),
    "--bert_model_name": ContestFlag(None, "yes", "dropped: the bert-base-uncased vocabulary is packaged "
                                                  "(--vocab_file for another one)", _TRAIN),
    "--train_batch_size": ContestFlag("--batch_size", "yes", "", ("pretrain",)),
    "--warmup_steps": ContestFlag("--warmup", "yes", "our --warmup takes a number of steps or a proportion; "
                                                     "0 means 'use the proportion', as in the contest port", _TRAIN),
    "--warmup_proportion": ContestFlag("--warmup", "yes", "", _FINETUNE),
    "--use_amp": ContestFlag("--use_amp", "bool", "the contest port's AMP is float16 with loss scaling, so it "
                                                  "becomes --use_amp --amp_dtype float16 (ours defaults to bfloat16)",
                             _TRAIN),
    "--scale_loss": ContestFlag("--scale_loss", "yes", "used by float16 AMP only (our bfloat16 default needs none)",
                                _TRAIN),
    "--device": ContestFlag(None, "yes", "dropped: the GPU is used whenever Paddle is built with CUDA; "
                                         "CUDA_VISIBLE_DEVICES='' forces the CPU", _TRAIN),
    "--eager_run": ContestFlag(None, "bool", "dropped: always dygraph", ("pretrain",)),
    "--init_from_ckpt": ContestFlag(None, "no", "dropped: a contest run's optimizer state and step cannot be "
                                                "resumed; its weights load after checkpoint/convert.py, and our own "
                                                "runs resume with --resume_from", ("pretrain",)),
    "--mode": ContestFlag("--split", "yes", "names the split to predict (test → test2015 for VQA2, test1 for "
                                            "NLVR2); the contest's NLVR2 run_predict.py read dev whatever --mode said",
                          _PREDICT),
    "--num_classes": ContestFlag(None, "yes", "dropped: the head size comes from the model's config.json", _PREDICT),
    "--model_name_or_path": ContestFlag("--model_dir", "yes", "a directory of this project (config.json + "
                                                              "model_state.pdparams)", _PREDICT),
    "--return_dict": ContestFlag(None, "bool", "dropped", _PREDICT),
}
# Flags with the same name whose meaning (or default) differs: noticed only in a contest-port command, i.e. one
# that uses at least one flag of CONTEST_FLAGS.
CHANGED_MEANING = {
    "--model_name_or_path": "ours takes a directory of this project (config.json + model_state.pdparams); a contest "
                            "checkpoint converts with checkpoint/convert.py, a shortcut name is not downloaded",
    "--save_steps": "checkpoints only; evaluation runs after each epoch (--eval_steps N to evaluate every N steps, "
                    "as the contest port did at each save)",
    "--gradient_accumulation_steps": "the learning-rate schedule counts optimizer steps (the contest port's counted "
                                     "micro-batches, so its rate never decayed to 0 with accumulation)",
}
# Defaults that differ and that contest commands rely on without passing the flag.
CHANGED_DEFAULTS = {
    "--weight_decay": ("vqa2", "nlvr2", "0.01 (the paper) where the contest port's fine-tuning used 0.0; pass "
                                        "--weight_decay 0 to match it"),
    "--train_split": ("pretrain", "trainval for --dataset vqa2 (train2014 for coco_captions, train for nlvr2), "
                                  "evaluated on minival / val2014 / dev; the contest port pre-trained on train and "
                                  "never evaluated: --train_split train --eval_split '' to match it"),
}
# What the contest's run_predict.py (run from its task folder) did without the flag: it read these feature roots
# and wrote result.json / its printout into the working directory.
CONTEST_PREDICT_DEFAULTS = {"vqa2_predict": os.path.join("..", "X_COCO", "data", "detectron_fix_100"),
                            "nlvr2_predict": os.path.join("..", "X_NLVR", "data", "detectron_fix_144")}
_VQA_PREDICT_SPLITS = {"test": "test2015", "val": "val2014", "minival": "minival", "train": "train2014"}
_NLVR2_PREDICT_SPLITS = {"test": "test1", "test1": "test1", "dev": "dev", "val": "dev", "train": "train"}


def _notify_stderr(message):
    print(message, file=sys.stderr)


def _split_flag(token):
    """``--a=b`` → (``--a``, ``b``); ``--a`` → (``--a``, None)."""
    if token.startswith("--") and "=" in token:
        name, value = token.split("=", 1)
        return name, value
    return token, None


def _given(argv, flag):
    return any(_split_flag(token)[0] == flag for token in argv)


def _parse_bool(flag, value):
    word = value.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ContestArgsError(f"{flag} {value!r}: expected true or false")


def is_contest_command(argv, script):
    """bool: ``argv`` uses at least one flag that only the contest port has (for this script). Flags both have under
    one name (``--use_amp``, ``--scale_loss``) do not count: every command of ours goes through here."""
    def contest_only(token):
        name = _split_flag(token)[0]
        flag = CONTEST_FLAGS.get(name)
        return flag is not None and script in flag.scripts and flag.ours != name

    return any(contest_only(t) for t in argv)


def translate_contest_argv(argv, script, notify=_notify_stderr, data_home=None):
    """Rewrites a contest-port command line into ours.

    Args:
        argv (list[str]): the arguments (without the program name).
        script (str): one of ``vqa2``, ``nlvr2``, ``pretrain``, ``vqa2_predict``, ``nlvr2_predict``.
        notify (callable): receives one line per translated flag (default: stderr).
        data_home (str, optional): PaddleNLP's dataset directory (default ``$PPNLP_HOME/datasets`` or
            ``~/.paddlenlp/datasets``).

    Returns:
        list[str]: the arguments for our parser. A command without contest-only flags comes back unchanged.

    Raises:
        ContestArgsError: a value that cannot be translated (wrong --task_name, a --model_name_or_path that is a
            contest checkpoint or a shortcut name, a missing directory of the contest layout ...).
    """
    if script not in SCRIPTS:
        raise ValueError(f"unknown script {script!r}; one of {', '.join(SCRIPTS)}")
    argv = list(argv)
    if not is_contest_command(argv, script):
        return argv
    out, layout = [], {}
    warmup_steps = warmup_proportion = None
    use_amp = None
    i = 0
    while i < len(argv):
        name, inline = _split_flag(argv[i])
        i += 1
        flag = CONTEST_FLAGS.get(name)
        if flag is None or script not in flag.scripts:
            out.append(argv[i - 1])
            if name in CHANGED_MEANING:
                notify(f"contest flag {name}: kept; {CHANGED_MEANING[name]}")
            if name == "--model_name_or_path":
                value = inline if inline is not None else (argv[i] if i < len(argv) else None)
                _check_model_path(value)
            continue
        value = inline
        if flag.takes_value == "yes" and value is None:
            if i >= len(argv):
                raise ContestArgsError(f"{name} needs a value")
            value = argv[i]
            i += 1
        elif flag.takes_value == "bool" and value is None:
            if i < len(argv) and argv[i].strip().lower() in TRUE_WORDS + FALSE_WORDS:
                value = argv[i]
                i += 1
            else:
                value = "true"
        if name in ("--input_dir", "--image_feature_type"):
            layout[name[2:]] = value
            continue
        if name == "--task_name":
            _check_task(script, value)
        elif name == "--model_type" and value.lower() != "visualbert":
            raise ContestArgsError(f"--model_type {value!r}: only 'visualbert' exists")
        elif name == "--bert_model_name":
            _bert_model_name(value, out, notify)
            continue
        elif name == "--warmup_steps":
            warmup_steps = value
            continue
        elif name == "--warmup_proportion":
            warmup_proportion = value
            continue
        elif name == "--use_amp":
            use_amp = _parse_bool(name, value)
            continue
        elif name == "--mode":
            value = _predict_split(script, value)
        elif name == "--visual_feature_root":
            layout["visual_feature_root"] = value
            continue
        elif name == "--model_name_or_path":
            _check_model_path(value)
        if flag.ours is None:
            notify(f"contest flag {name}: {flag.note}")
        else:
            out += [flag.ours, value]
            notify(f"contest flag {name}: use {flag.ours}" + (f"; {flag.note}" if flag.note else ""))

    _fold_warmup(out, warmup_steps, warmup_proportion, notify)
    if script in CONTEST_PREDICT_DEFAULTS:
        if "visual_feature_root" not in layout and not _given(argv, "--features"):
            layout["visual_feature_root"] = CONTEST_PREDICT_DEFAULTS[script]
            notify(f"contest default --visual_feature_root: {CONTEST_PREDICT_DEFAULTS[script]} (as the contest port, "
                   "relative to the working directory); ours is --features")
        if not _given(argv, "--output_dir"):
            out += ["--output_dir", "."]
            notify("contest default: predictions are written to the working directory (--output_dir .), as the "
                   "contest port did")
    if use_amp is not None:
        if use_amp:
            out.append("--use_amp")
            if not _given(argv, "--amp_dtype"):
                out += ["--amp_dtype", "float16"]
        notify(f"contest flag --use_amp: use --use_amp (a switch, no value); {CONTEST_FLAGS['--use_amp'].note}"
               if use_amp else "contest flag --use_amp false: dropped (AMP is off unless --use_amp is given)")
    for default_flag, (*scripts, note) in CHANGED_DEFAULTS.items():
        if script in scripts and not _given(argv, default_flag):
            notify(f"contest default {default_flag}: ours is {note}")

    resolved = resolve_contest_layout(script, input_dir=layout.get("input_dir"),
                                      image_feature_type=layout.get("image_feature_type"),
                                      dataset=_value_of(argv, "--dataset"),
                                      visual_feature_root=layout.get("visual_feature_root"), data_home=data_home,
                                      given=[_split_flag(t)[0] for t in out])
    for our_flag, value in resolved.items():
        out += [our_flag, value]
        notify(f"contest layout: {our_flag} {value!r}")
    return out


def _value_of(argv, flag):
    for i, token in enumerate(argv):
        name, inline = _split_flag(token)
        if name == flag:
            return inline if inline is not None else (argv[i + 1] if i + 1 < len(argv) else None)
    return None


def _check_task(script, value):
    expected = script.split("_")[0]
    if value.lower() != expected:
        raise ContestArgsError(f"--task_name {value!r} does not fit this script, which trains {expected}")


def _bert_model_name(value, out, notify):
    if value == "bert-base-uncased":
        notify(f"contest flag --bert_model_name: {CONTEST_FLAGS['--bert_model_name'].note}")
        return
    vocab = os.path.join(value, "vocab.txt")
    if not os.path.isfile(vocab):
        raise ContestArgsError(f"--bert_model_name {value!r}: no vocab.txt there; ours reads the vocabulary from "
                               "--vocab_file (default: the packaged bert-base-uncased one)")
    out += ["--vocab_file", vocab]
    notify(f"contest flag --bert_model_name: use --vocab_file {vocab}")


def _check_model_path(value):
    from .configuration import PRETRAINED_CHECKPOINTS

    if value is None or os.path.isfile(os.path.join(value, "config.json")):
        return
    if os.path.isfile(os.path.join(value, "model_state.pdparams")):
        raise ContestArgsError(f"--model_name_or_path {value!r} is a contest-port checkpoint: convert it once with "
                               f"'python checkpoint/convert.py --src {value} --dst {value.rstrip('/')}-converted' and "
                               "pass the --dst directory")
    if value.split("/")[-1] in PRETRAINED_CHECKPOINTS:
        raise ContestArgsError(f"--model_name_or_path {value!r} is a shortcut name, and nothing is downloaded here: "
                               f"convert a local copy of uclanlp/{value.split('/')[-1]} (or the contest port's "
                               "model_state.pdparams) with checkpoint/convert.py and pass the output directory")


def _predict_split(script, value):
    table = _VQA_PREDICT_SPLITS if script == "vqa2_predict" else _NLVR2_PREDICT_SPLITS
    return table.get(value, value)


def _fold_warmup(out, steps, proportion, notify):
    """The contest port's warmup pair → our one --warmup: steps when > 0, else the proportion."""
    if steps is None and proportion is None:
        return
    if steps is not None:
        try:
            steps_number = int(steps)
        except ValueError:
            raise ContestArgsError(f"--warmup_steps {steps!r}: expected a whole number") from None
        if steps_number > 0:
            out += ["--warmup", str(steps_number)]
            notify(f"contest flag --warmup_steps: use --warmup {steps_number}; {CONTEST_FLAGS['--warmup_steps'].note}")
            return
    if proportion is not None:
        out += ["--warmup", proportion]
        notify(f"contest flag --warmup_proportion: use --warmup {proportion}")


# ------------------------------------------------------------------------------------------------ data layout
# image_feature_type → (feature directory under <input_dir>/data, region width, max regions)
IMAGE_FEATURE_TYPES = {
    "coco_detectron_fix_100": ("detectron_fix_100", 2048, 100),
    # COCO images for the NLVR2 line, under nlvr2/{train,val}/feature_1024dim: our nlvr2 feature layout reads them.
    "coco_detectron_fix_144": ("detectron_fix_144", 1024, 144),
    "nlvr2_detectron_fix_144": ("detectron_fix_144", 1024, 144),
}
# The feature type each contest dataset / task reads when the command does not say.
DEFAULT_FEATURE_TYPE = {"vqa2": "coco_detectron_fix_100", "nlvr2": "nlvr2_detectron_fix_144",
                        "coco_captions": "coco_detectron_fix_100"}
ALLOWED_FEATURE_TYPES = {"vqa2": ("coco_detectron_fix_100",), "nlvr2": ("nlvr2_detectron_fix_144",),
                         "coco_captions": ("coco_detectron_fix_100", "coco_detectron_fix_144")}


def paddlenlp_data_home():
    """PaddleNLP's dataset directory: ``$PPNLP_HOME/datasets``, by default ``~/.paddlenlp/datasets``."""
    home = os.environ.get("PPNLP_HOME") or os.path.join(os.path.expanduser("~"), ".paddlenlp")
    return os.path.join(home, "datasets")


def _existing_dir(path, what):
    if not os.path.isdir(path):
        raise ContestArgsError(f"contest layout: {what} {path} does not exist")
    return path


def _annotations(dataset, data_home):
    """Our annotation flag for a contest dataset, from PaddleNLP's dataset directory."""
    if dataset == "vqa2":
        return "--imdb_dir", _existing_dir(os.path.join(data_home, "VQA2", "imdb"),
                                           "the VQA2 imdb directory (PaddleNLP's VQA2/imdb, holding imdb_*.npy)")
    if dataset == "nlvr2":
        # PaddleNLP unpacks annotations.tar.gz into NLVR2/annotations; an archive with its own top folder nests it.
        base = os.path.join(data_home, "NLVR2", "annotations")
        nested = os.path.join(base, "annotations")
        if not os.path.isfile(os.path.join(base, "train.json")) and os.path.isfile(os.path.join(nested, "train.json")):
            base = nested
        return "--data_dir", _existing_dir(base, "the NLVR2 annotation directory (PaddleNLP's NLVR2/annotations, "
                                                 "holding train.json, dev.json, test1.json)")
    return "--data_dir", _existing_dir(os.path.join(data_home, "COCOCaptions", "annotations"),
                                       "the COCO captions directory (PaddleNLP's COCOCaptions/annotations, holding "
                                       "captions_train2014.json)")


def resolve_contest_layout(script, input_dir=None, image_feature_type=None, dataset=None, visual_feature_root=None,
                           data_home=None, given=()):
    """Our data flags for the contest port's on-disk layout.

    The contest port reads region features from ``<input_dir>/data/detectron_fix_100/fc6/vqa/{train2014,...}``
    (VQA2, COCO) and ``<input_dir>/data/detectron_fix_144/{train,dev,test1}/feature_1024dim`` (NLVR2), and
    annotations from PaddleNLP's dataset directory: ``VQA2/imdb/imdb_*.npy`` with ``VQA2/extras/vocabs/
    answers_vqa.txt``, ``NLVR2/annotations/{train,dev,test1}.json``, ``COCOCaptions/annotations/
    captions_{train,val}2014.json``.

    Args:
        script (str): ``vqa2``, ``nlvr2``, ``pretrain``, ``vqa2_predict`` or ``nlvr2_predict``.
        input_dir (str, optional): the contest ``--input_dir`` (``X_COCO/``, ``X_NLVR/``).
        image_feature_type (str, optional): ``coco_detectron_fix_100``, ``coco_detectron_fix_144`` or
            ``nlvr2_detectron_fix_144``; default: the one the task reads.
        dataset (str, optional): for ``pretrain``: ``coco_captions``, ``vqa2`` or ``nlvr2``.
        visual_feature_root (str, optional): the predict scripts' feature root (it replaces ``input_dir``).
        data_home (str, optional): PaddleNLP's dataset directory (default :func:`paddlenlp_data_home`).
        given (iterable[str]): our flags the command already sets; they are neither derived nor checked here.

    Returns:
        dict[str, str]: our flag → value (``--imdb_dir``, ``--answers_file``, ``--data_dir``, ``--features``,
        ``--max_regions``), every path checked to exist.

    Raises:
        ContestArgsError: a missing directory (named, with what it should hold), or a feature type the task
            cannot read.
    """
    data_home = data_home or paddlenlp_data_home()
    if script == "pretrain":
        dataset = dataset or "coco_captions"
        if dataset not in DEFAULT_FEATURE_TYPE:
            raise ContestArgsError(f"--dataset {dataset!r}: the contest port pre-trains on coco_captions, vqa2 or nlvr2")
    else:
        dataset = script.split("_")[0]
    given = set(given)
    out = {}
    # run_pretrain.py reads every dataset's annotations from --data_dir (and needs no answer vocabulary).
    annotation_flag = "--imdb_dir" if script == "vqa2" or script == "vqa2_predict" else "--data_dir"
    if annotation_flag not in given:
        out[annotation_flag] = _annotations(dataset, data_home)[1]
    if script != "pretrain" and dataset == "vqa2" and "--answers_file" not in given:
        answers = os.path.join(data_home, "VQA2", "extras", "vocabs", "answers_vqa.txt")
        if os.path.isfile(answers):
            out["--answers_file"] = answers

    if "--features" in given:
        return out
    if visual_feature_root is not None:
        out["--features"] = _existing_dir(visual_feature_root, "--visual_feature_root")
        return out
    if input_dir is None:
        return out
    feature_type = image_feature_type or DEFAULT_FEATURE_TYPE[dataset]
    if feature_type not in IMAGE_FEATURE_TYPES:
        raise ContestArgsError(f"--image_feature_type {feature_type!r}: the contest port has "
                               f"{', '.join(IMAGE_FEATURE_TYPES)}")
    if feature_type not in ALLOWED_FEATURE_TYPES[dataset]:
        raise ContestArgsError(f"--image_feature_type {feature_type}: {dataset} reads "
                               f"{' or '.join(ALLOWED_FEATURE_TYPES[dataset])}")
    sub, _width, max_regions = IMAGE_FEATURE_TYPES[feature_type]
    out["--features"] = _existing_dir(os.path.join(input_dir, "data", sub),
                                      f"--input_dir {input_dir}: the {feature_type} features")
    if feature_type == "coco_detectron_fix_144":
        _existing_dir(os.path.join(out["--features"], "nlvr2"), f"--input_dir {input_dir}: the {feature_type} "
                      "features (nlvr2/train/feature_1024dim and nlvr2/val/feature_1024dim, holding COCO_*.npy)")
    if script == "pretrain" and "--max_regions" not in given:
        out["--max_regions"] = str(max_regions)
    return out


__all__ = ["translate_contest_argv", "resolve_contest_layout", "is_contest_command", "contest_script", "paddlenlp_data_home",
           "ContestArgsError", "ContestFlag", "CONTEST_FLAGS", "CHANGED_MEANING", "CHANGED_DEFAULTS", "CONTEST_PREDICT_DEFAULTS",
           "IMAGE_FEATURE_TYPES"]
