"""The contest port's flags and directory layout (visualbert/contest_compat.py), on synthetic files laid out as the
contest port keeps them, and its VQA2 / NLVR2 commands run end to end through our scripts."""

import json
import os
import shutil

import numpy as np
import paddle
import pytest
from conftest import load_script

from visualbert.contest_compat import (
    CONTEST_FLAGS,
    ContestArgsError,
    paddlenlp_data_home,
    resolve_contest_layout,
    translate_contest_argv,
)
from visualbert.data.synthetic import generate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DIM = 32
TINY = ["--hidden_size", "32", "--num_hidden_layers", "2", "--num_attention_heads", "2", "--intermediate_size", "64",
        "--disable_tqdm", "--max_seq_length", "40"]


@pytest.fixture(scope="module")
def contest(tmp_path_factory):
    """Synthetic files moved into the contest port's layout: X_COCO/data/detectron_fix_100, X_NLVR/data/
    detectron_fix_144, and PaddleNLP's datasets/{VQA2,NLVR2,COCOCaptions}."""
    base = tmp_path_factory.mktemp("contest")
    synth = str(base / "synth")
    generate(synth, num_images=16, vqa_dim=DIM, nlvr2_dim=DIM, nlvr2_sets=8, regions=4, nlvr2_regions=4,
             tasks=("vqa", "nlvr2"))
    x_coco, x_nlvr, home = base / "X_COCO", base / "X_NLVR", base / "ppnlp" / "datasets"
    shutil.move(f"{synth}/detectron_fix_100", x_coco / "data" / "detectron_fix_100")
    shutil.move(f"{synth}/detectron_fix_144", x_nlvr / "data" / "detectron_fix_144")
    shutil.move(f"{synth}/vqa2/imdb", home / "VQA2" / "imdb")
    os.makedirs(home / "VQA2" / "extras" / "vocabs")
    shutil.move(f"{synth}/vqa2/answers_vqa.txt", home / "VQA2" / "extras" / "vocabs" / "answers_vqa.txt")
    shutil.move(f"{synth}/nlvr2", home / "NLVR2" / "annotations")
    shutil.move(f"{synth}/coco/annotations", home / "COCOCaptions" / "annotations")
    # coco_detectron_fix_144: the NLVR2 line's COCO regions, X_COCO/data/detectron_fix_144/nlvr2/{train,val}/...
    for image_set, folder in (("train2014", "train"), ("val2014", "val")):
        shutil.copytree(x_coco / "data" / "detectron_fix_100" / "fc6" / "vqa" / image_set,
                        x_coco / "data" / "detectron_fix_144" / "nlvr2" / folder / "feature_1024dim")
    return {"x_coco": str(x_coco) + "/", "x_nlvr": str(x_nlvr) + "/", "home": str(home), "base": base,
            "ppnlp_home": str(base / "ppnlp")}


def _translate(argv, script, home):
    notices = []
    return translate_contest_argv(argv, script, notify=notices.append, data_home=home), notices


def _value(argv, flag):
    assert argv.count(flag) == 1, (flag, argv)
    return argv[argv.index(flag) + 1]


# ------------------------------------------------------------------------------------------ layout
def test_vqa2_layout_resolves_to_our_paths(contest):
    got = resolve_contest_layout("vqa2", input_dir=contest["x_coco"], data_home=contest["home"])
    assert got == {"--imdb_dir": os.path.join(contest["home"], "VQA2", "imdb"),
                   "--answers_file": os.path.join(contest["home"], "VQA2", "extras", "vocabs", "answers_vqa.txt"),
                   "--features": os.path.join(contest["x_coco"], "data", "detectron_fix_100")}


def test_nlvr2_and_pretrain_layouts(contest, tmp_path):
    got = resolve_contest_layout("nlvr2", input_dir=contest["x_nlvr"], data_home=contest["home"])
    assert got["--data_dir"] == os.path.join(contest["home"], "NLVR2", "annotations")
    assert got["--features"] == os.path.join(contest["x_nlvr"], "data", "detectron_fix_144")
    got = resolve_contest_layout("pretrain", input_dir=contest["x_coco"], dataset="coco_captions",
                                 image_feature_type="coco_detectron_fix_100", data_home=contest["home"])
    assert got["--data_dir"] == os.path.join(contest["home"], "COCOCaptions", "annotations")
    assert got["--max_regions"] == "100"
    got = resolve_contest_layout("pretrain", input_dir=contest["x_coco"], dataset="vqa2", data_home=contest["home"])
    assert got == {"--data_dir": os.path.join(contest["home"], "VQA2", "imdb"), "--max_regions": "100",
                   "--features": os.path.join(contest["x_coco"], "data", "detectron_fix_100")}  # run_pretrain's flags
    # The NLVR2-line COCO features: one root for both sets (our nlvr2 feature layout reads nlvr2/{train,val}).
    got = resolve_contest_layout("pretrain", input_dir=contest["x_coco"], dataset="coco_captions",
                                 image_feature_type="coco_detectron_fix_144", data_home=contest["home"])
    assert got["--features"] == os.path.join(contest["x_coco"], "data", "detectron_fix_144")
    assert "--eval_split" not in got and got["--max_regions"] == "144"
    os.makedirs(tmp_path / "data" / "detectron_fix_144")
    with pytest.raises(ContestArgsError, match=r"coco_detectron_fix_144 features \(nlvr2/train/feature_1024dim"):
        resolve_contest_layout("pretrain", input_dir=str(tmp_path), dataset="coco_captions",
                               image_feature_type="coco_detectron_fix_144", data_home=contest["home"])


def test_coco_detectron_fix_144_feature_layout(contest):
    """The contest's COCO files for the NLVR2 line: key COCO_<set>_<id> -> nlvr2/<train|val>/feature_1024dim/."""
    from visualbert.data.features import NpyFeatureStore

    root = os.path.join(contest["x_coco"], "data", "detectron_fix_144")
    source = os.path.join(contest["x_coco"], "data", "detectron_fix_100", "fc6", "vqa")
    for store_root in (root, os.path.join(root, "nlvr2")):
        store = NpyFeatureStore(store_root)
        assert store.layout == "nlvr2"
        for image_set, folder in (("train2014", "train"), ("val2014", "val")):
            name = sorted(os.listdir(os.path.join(source, image_set)))[0]
            key = name[: -len(".npy")]
            assert store.path(key) == os.path.join(root, "nlvr2", folder, "feature_1024dim", name)
            np.testing.assert_array_equal(store[key], np.load(os.path.join(source, image_set, name)))
        assert "COCO_test2015_000000000001" not in store  # the contest port has no test set there


def test_nested_nlvr2_annotations_are_found(tmp_path):
    nested = tmp_path / "NLVR2" / "annotations" / "annotations"
    os.makedirs(nested)
    (nested / "train.json").write_text("")
    got = resolve_contest_layout("nlvr2", data_home=str(tmp_path))
    assert got["--data_dir"] == str(nested)


def test_missing_directory_is_named_with_what_it_holds(contest, tmp_path):
    with pytest.raises(ContestArgsError, match=r"VQA2 imdb directory.*imdb_\*\.npy.*" + str(tmp_path)):
        resolve_contest_layout("vqa2", input_dir=contest["x_coco"], data_home=str(tmp_path))
    with pytest.raises(ContestArgsError, match=r"--input_dir .*nowhere.*coco_detectron_fix_100 features"):
        resolve_contest_layout("vqa2", input_dir=str(tmp_path / "nowhere"), data_home=contest["home"])
    with pytest.raises(ContestArgsError, match=r"nlvr2 reads nlvr2_detectron_fix_144"):
        resolve_contest_layout("nlvr2", input_dir=contest["x_nlvr"], image_feature_type="coco_detectron_fix_100",
                               data_home=contest["home"])


def test_our_flags_win_over_the_layout(contest, tmp_path):
    got = resolve_contest_layout("vqa2", input_dir=str(tmp_path / "nowhere"), data_home=str(tmp_path),
                                 given=["--imdb_dir", "--features", "--answers_file"])
    assert got == {}


def test_data_home_follows_ppnlp_home(monkeypatch, tmp_path):
    monkeypatch.setenv("PPNLP_HOME", str(tmp_path))
    assert paddlenlp_data_home() == os.path.join(str(tmp_path), "datasets")
    monkeypatch.delenv("PPNLP_HOME")
    assert paddlenlp_data_home() == os.path.join(os.path.expanduser("~"), ".paddlenlp", "datasets")


# ------------------------------------------------------------------------------------------ flags
def test_our_command_is_left_alone(contest):
    argv = ["--imdb_dir", "a", "--features", "b", "--save_steps", "3", "--gradient_accumulation_steps", "2"]
    out, notices = _translate(argv, "vqa2", contest["home"])
    assert out == argv and notices == []
    # --use_amp and --scale_loss are ours too: our bfloat16 default stays (no --amp_dtype float16 added)
    argv = ["--data_dir", "a", "--features", "b", "--use_amp", "--scale_loss", "128"]
    for script in ("vqa2", "nlvr2", "pretrain"):
        assert _translate(argv, script, contest["home"]) == (argv, [])


def test_pretrain_flags_translate_with_one_notice_each(contest):
    argv = ["--input_dir", contest["x_coco"], "--output_dir", "o", "--dataset", "coco_captions", "--model_type",
            "visualbert", "--image_feature_type", "coco_detectron_fix_100", "--train_batch_size", "16",
            "--learning_rate", "1e-5", "--num_train_epochs", "1", "--use_amp", "--scale_loss", "1024",
            "--eager_run", "False", "--device", "gpu", "--warmup_steps", "0", "--init_from_ckpt"]
    out, notices = _translate(argv, "pretrain", contest["home"])
    assert "--input_dir" not in out and "--device" not in out and "--eager_run" not in out and "False" not in out
    assert "--train_batch_size" not in out and _value(out, "--batch_size") == "16"
    assert _value(out, "--learning_rate") == "1e-5" and _value(out, "--scale_loss") == "1024"
    assert "--use_amp" in out and _value(out, "--amp_dtype") == "float16"
    assert "--warmup" not in out  # 0 steps means "use the proportion", and none was given: our default
    assert _value(out, "--data_dir").endswith(os.path.join("COCOCaptions", "annotations"))
    assert _value(out, "--features").endswith(os.path.join("data", "detectron_fix_100"))
    for flag in ("--train_batch_size", "--device", "--eager_run", "--model_type", "--init_from_ckpt", "--use_amp"):
        assert sum(n.startswith(f"contest flag {flag}") for n in notices) == 1, (flag, notices)
    assert any("use --batch_size" in n for n in notices)
    assert any(n.startswith("contest default --train_split") for n in notices)


def test_finetune_flags(contest):
    argv = ["--input_dir=" + contest["x_coco"], "--task_name", "vqa2", "--use_amp", "False", "--warmup_proportion",
            "0.2", "--warmup_steps", "30", "--gradient_accumulation_steps", "4", "--save_steps", "100",
            "--bert_model_name", "bert-base-uncased"]
    out, notices = _translate(argv, "vqa2", contest["home"])
    assert out[out.index("--warmup") + 1] == "30" and out.count("--warmup") == 1
    assert "--use_amp" not in out and "False" not in out and "--bert_model_name" not in out
    assert out[out.index("--gradient_accumulation_steps") + 1] == "4"
    joined = "\n".join(notices)
    assert "--eval_steps" in joined and "optimizer steps" in joined and "--weight_decay 0" in joined


def test_untranslatable_values_fail_with_one_line(contest, tmp_path):
    with pytest.raises(ContestArgsError, match="trains vqa2"):
        _translate(["--task_name", "nlvr2"], "vqa2", contest["home"])
    with pytest.raises(ContestArgsError, match="only 'visualbert'"):
        _translate(["--model_type", "bert"], "vqa2", contest["home"])
    with pytest.raises(ContestArgsError, match=r"expected true or false"):
        _translate(["--task_name", "vqa2", "--use_amp=maybe"], "vqa2", contest["home"])
    ckpt = tmp_path / "visualbert-vqa-pre"
    os.makedirs(ckpt)
    paddle.save({"w": paddle.ones([1])}, str(ckpt / "model_state.pdparams"))
    with pytest.raises(ContestArgsError, match=r"contest-port checkpoint.*checkpoint/convert.py --src"):
        _translate(["--task_name", "vqa2", "--model_name_or_path", str(ckpt)], "vqa2", contest["home"])
    with pytest.raises(ContestArgsError, match="shortcut name"):
        _translate(["--task_name", "vqa2", "--model_name_or_path", "visualbert-vqa-pre"], "vqa2", contest["home"])


def test_predict_flags(contest, tmp_path):
    argv = ["--visual_feature_root", os.path.join(contest["x_coco"], "data", "detectron_fix_100"), "--mode", "test",
            "--model_name_or_path", str(tmp_path), "--num_classes", "3129", "--return_dict", "False"]
    out, _ = _translate(argv, "vqa2_predict", contest["home"])
    assert _value(out, "--split") == "test2015" and _value(out, "--model_dir") == str(tmp_path)
    assert _value(out, "--features").endswith("detectron_fix_100")
    assert _value(out, "--imdb_dir").endswith(os.path.join("VQA2", "imdb"))
    assert "--num_classes" not in out and "--return_dict" not in out


def test_every_flag_entry_explains_itself():
    for name, flag in CONTEST_FLAGS.items():
        assert name.startswith("--") and flag.takes_value in ("yes", "bool", "no")
        assert flag.ours or flag.note, name  # a dropped flag says why


# ------------------------------------------------------------------------------------------ end to end
# The contest commands go to the scripts' main() as they are: the scripts' parser translates them.
def _contest_checkpoint(directory, head, seed=7):
    """A tiny model of the contest port's structure, saved as the contest port saves one (DataParallel prefix,
    model_config.json); returns the reference model."""
    import contest_port_reference as ref

    from visualbert.data.answers import load_answer_vocab

    sizes = dict(vocab=30522, hidden=32, visual_dim=DIM, layers=2, heads=2, intermediate=64, max_positions=64)
    model = (ref.ContestForQuestionAnswering(len(load_answer_vocab()), **sizes) if head == "vqa"
             else ref.ContestForVisualReasoning(2, **sizes))
    ref.randomise(model, seed=seed)
    model.eval()
    os.makedirs(directory)
    paddle.save({"_layers." + k: v for k, v in model.state_dict().items()}, os.path.join(directory, "model_state.pdparams"))
    with open(os.path.join(directory, "model_config.json"), "w") as f:
        json.dump({"init_args": [{"num_attention_heads": 2, "hidden_act": "gelu"}],
                   "init_class": "VisualBertForQuestionAnswering" if head == "vqa" else "VisualBertForVisualReasoning"}, f)
    return model


def _reference_logits(model, dataset):
    """The contest-structure model's logits on the batches our collate builds from ``dataset``."""
    from visualbert.build import build_collator
    from visualbert.tokenizer import load_tokenizer

    collate = build_collator(load_tokenizer())
    keys = ("input_ids", "attention_mask", "token_type_ids", "visual_embeds", "visual_attention_mask",
            "visual_token_type_ids")
    out = []
    with paddle.no_grad():
        for start in range(0, len(dataset), 4):
            batch = collate([dataset[i] for i in range(start, min(start + 4, len(dataset)))])
            out.append(model(**{k: batch[k] for k in keys}).numpy())
    return np.concatenate(out)


def _eval_records(out):
    return [m for m in map(json.loads, open(os.path.join(out, "metrics.jsonl"))) if m["type"] == "eval"]


def test_contest_vqa2_command_runs_end_to_end(contest, tmp_path, monkeypatch, capsys):
    from visualbert.conversion import convert_checkpoint

    monkeypatch.setenv("PPNLP_HOME", contest["ppnlp_home"])
    theirs = str(tmp_path / "vqa2_ft_model_2.pdparams")
    _contest_checkpoint(theirs, "vqa")
    convert_checkpoint(theirs, str(tmp_path / "converted"))
    out = str(tmp_path / "logs" / "vqa")
    command = ["--input_dir", contest["x_coco"], "--output_dir", out, "--task_name", "vqa2", "--model_type",
               "visualbert", "--model_name_or_path", str(tmp_path / "converted"), "--batch_size", "8",
               "--learning_rate", "2e-5", "--save_steps", "2", "--num_train_epochs", "1", "--logging_steps", "1",
               "--device", "cpu", "--disable_tqdm", "--max_seq_length", "40"]
    assert load_script("VQA2/run_vqa2.py")(command) == 0
    notices = capsys.readouterr().err
    assert "contest flag --device: dropped" in notices and "contest layout: --imdb_dir" in notices
    run_args = json.load(open(os.path.join(out, "args.json")))["args"]
    home = contest["home"]
    assert run_args["imdb_dir"] == os.path.join(home, "VQA2", "imdb")
    assert run_args["features"] == os.path.join(contest["x_coco"], "data", "detectron_fix_100")
    assert run_args["model_name_or_path"] == str(tmp_path / "converted")
    assert (run_args["train_split"], run_args["eval_split"]) == ("trainval", "minival")  # the contest port's splits
    minival = np.load(os.path.join(home, "VQA2", "imdb", "imdb_minival2014.npy"), allow_pickle=True)
    evals = _eval_records(out)
    assert evals and evals[-1]["num_questions"] == len(minival) - 1 and np.isfinite(evals[-1]["loss"])
    assert os.path.isfile(os.path.join(out, "final", "model_state.pdparams"))


def test_contest_nlvr2_command_runs_end_to_end(contest, tmp_path, monkeypatch):
    monkeypatch.setenv("PPNLP_HOME", contest["ppnlp_home"])
    out = str(tmp_path / "logs" / "nlvr2")
    command = ["--input_dir", contest["x_nlvr"], "--output_dir", out, "--task_name", "nlvr2", "--model_type",
               "visualbert", "--batch_size", "8", "--gradient_accumulation_steps", "2", "--learning_rate", "2e-5",
               "--save_steps", "2", "--num_train_epochs", "1", "--use_amp", "False", "--logging_steps", "1"] + TINY
    assert load_script("NLVR2/run_nlvr2.py")(command) == 0
    run_args = json.load(open(os.path.join(out, "args.json")))["args"]
    assert run_args["data_dir"] == os.path.join(contest["home"], "NLVR2", "annotations")
    assert run_args["features"] == os.path.join(contest["x_nlvr"], "data", "detectron_fix_144")
    assert run_args["gradient_accumulation_steps"] == 2 and run_args["use_amp"] is False
    evals = _eval_records(out)
    assert evals and 0.0 <= evals[-1]["accuracy"] <= 1.0 and np.isfinite(evals[-1]["loss"])
    assert os.path.isfile(os.path.join(out, "final", "model_state.pdparams"))


def test_contest_predict_commands_match_the_contest_model(contest, tmp_path, monkeypatch):
    """A contest checkpoint, converted once, answers through the contest predict commands as the contest-structure
    model does on the same inputs."""
    from visualbert.conversion import convert_checkpoint
    from visualbert.data import NLVR2Dataset, VQA2Dataset
    from visualbert.tokenizer import load_tokenizer

    monkeypatch.setenv("PPNLP_HOME", contest["ppnlp_home"])
    home, tokenizer = contest["home"], load_tokenizer()
    # VQA2, the contest's README command (cd VQA2; python run_predict.py --model_name_or_path M): features from
    # ../X_COCO/data/detectron_fix_100, --mode test (test2015, no answers), result.json in the working directory.
    reference = _contest_checkpoint(str(tmp_path / "vqa_theirs"), "vqa", seed=3)
    convert_checkpoint(str(tmp_path / "vqa_theirs"), str(tmp_path / "vqa_ours"))
    features = os.path.join(contest["x_coco"], "data", "detectron_fix_100")
    out = str(contest["base"] / "VQA2")
    os.makedirs(out, exist_ok=True)
    monkeypatch.chdir(out)
    assert load_script("VQA2/run_predict.py")(
        ["--model_name_or_path", str(tmp_path / "vqa_ours"), "--num_classes", "3129", "--batch_size", "4",
         "--max_seq_length", "40"]) == 0
    got = json.load(open(os.path.join(out, "result.json")))
    dataset = VQA2Dataset([os.path.join(home, "VQA2", "imdb", "imdb_test2015.npy")], features, tokenizer,
                          answers_file=os.path.join(home, "VQA2", "extras", "vocabs", "answers_vqa.txt"),
                          max_seq_length=40, feature_dim=None)
    vocab = open(os.path.join(home, "VQA2", "extras", "vocabs", "answers_vqa.txt")).read().splitlines()
    expected = [vocab[i] for i in _reference_logits(reference, dataset).argmax(1)]
    assert len(set(expected)) > 1  # the inputs reach the answers: not one constant prediction
    assert len(got) == len(dataset) > 0 and [r["answer"] for r in got] == expected
    # NLVR2: the contest's run_predict.py reads dev.
    reference = _contest_checkpoint(str(tmp_path / "nlvr2_theirs"), "nlvr2", seed=5)
    convert_checkpoint(str(tmp_path / "nlvr2_theirs"), str(tmp_path / "nlvr2_ours"))
    features = os.path.join(contest["x_nlvr"], "data", "detectron_fix_144")
    out = str(tmp_path / "nlvr2_pred")
    assert load_script("NLVR2/run_predict.py")(
        ["--visual_feature_root", features, "--model_name_or_path", str(tmp_path / "nlvr2_ours"), "--mode", "dev",
         "--output_dir", out, "--batch_size", "4", "--max_seq_length", "40"]) == 0
    rows = [line.strip().split(",") for line in open(os.path.join(out, "predictions.csv")) if line.strip()]
    dataset = NLVR2Dataset(os.path.join(home, "NLVR2", "annotations", "dev.json"), features, tokenizer,
                           max_seq_length=40, max_regions=144, feature_dim=None)
    expected = ["True" if p == 1 else "False" for p in _reference_logits(reference, dataset).argmax(1)]
    assert len(rows) == len(dataset) > 0 and [r[1] for r in rows] == expected


@pytest.mark.parametrize("dataset, feature_type, input_dir, features", [
    ("coco_captions", "coco_detectron_fix_144", "x_coco", "detectron_fix_144"),  # nlvr2-coco-pretrain.sh
    ("vqa2", "coco_detectron_fix_100", "x_coco", "detectron_fix_100"),  # vqa-pretrain.sh
    ("nlvr2", "nlvr2_detectron_fix_144", "x_nlvr", "detectron_fix_144"),  # nlvr2-pretrain.sh
])
def test_contest_pretraining_commands(contest, tmp_path, monkeypatch, dataset, feature_type, input_dir, features):
    """The pre-training scripts as they are (their flags and folders); coco_detectron_fix_144 trains on train2014
    and evaluates on val2014, both read from X_COCO/data/detectron_fix_144/nlvr2/{train,val}/feature_1024dim."""
    monkeypatch.setenv("PPNLP_HOME", contest["ppnlp_home"])
    out = str(tmp_path / "logs" / "pre")
    command = ["--input_dir", contest[input_dir], "--output_dir", out, "--dataset", dataset, "--model_type",
               "visualbert", "--image_feature_type", feature_type, "--train_batch_size", "8",
               "--learning_rate", "1e-5", "--num_train_epochs", "1", "--logging_steps", "1", "--save_steps", "100"] + TINY
    assert load_script("run_pretrain.py")(command) == 0
    run_args = json.load(open(os.path.join(out, "args.json")))["args"]
    assert run_args["features"] == os.path.join(contest[input_dir], "data", features)
    assert run_args["batch_size"] == 8 and run_args["max_regions"] == int(feature_type[-3:])
    evals = _eval_records(out)
    assert evals and np.isfinite(evals[-1]["loss"])  # evaluated on val2014 / minival / dev
    assert os.path.isfile(os.path.join(out, "final", "model_state.pdparams"))


def test_untranslatable_contest_command_is_one_line_and_exit_2(contest, monkeypatch, capsys):
    from visualbert.cli import main_wrapper

    monkeypatch.setenv("PPNLP_HOME", contest["ppnlp_home"])
    main = load_script("VQA2/run_vqa2.py")
    with pytest.raises(SystemExit) as exit_info:
        main_wrapper(lambda: main(["--input_dir", contest["x_coco"], "--task_name", "nlvr2", "--output_dir", "o"]))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: --task_name 'nlvr2' does not fit this script") and "Traceback" not in "".join(err)


def test_only_the_contest_ports_scripts_translate():
    from visualbert.contest_compat import contest_script

    assert contest_script("train", "vcr") is None and contest_script("train", None) is None
    assert contest_script("predict", "nlvr2") == "nlvr2_predict"
    vcr = load_script("VCR/run_vcr.py")
    with pytest.raises(SystemExit):  # argparse: --task_name is not a flag of ours, and VCR had no contest script
        vcr(["--task_name", "vcr", "--data_dir", "d", "--features", "f", "--output_dir", "o"])
