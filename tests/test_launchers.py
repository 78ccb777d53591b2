"""The bash launchers (scripts/*.sh) in DRY_RUN mode: the command they would run, multi-node flags, the
per-process batch as the paper's global batch over every process on every node, and their refusals. Nothing is
launched and no Python script is imported, so these tests do not depend on the training scripts' flags."""

import os
import shlex
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# launcher -> (the original config's train_batch_size, learning_rate, num_train_epochs per training command)
PAPER = {
    "vqa2_1_coco_pretrain.sh": (48, [("5e-5", "10")]),
    "vqa2_2_task_pretrain.sh": (64, [("5e-5", "10")]),
    "vqa2_3_finetune.sh": (64, [("2e-5", "10")]),
    "nlvr2_1_coco_pretrain.sh": (64, [("5e-5", "10")]),
    "nlvr2_2_task_pretrain.sh": (64, [("5e-5", "10")]),
    "nlvr2_3_finetune.sh": (64, [("2e-5", "10")]),
    "vcr_finetune.sh": (32, [("2e-5", "8"), ("2e-5", "12")]),
    "vcr_2_task_pretrain.sh": (32, [("5e-5", "1")]),
    "vcr_3_finetune_qa.sh": (32, [("2e-5", "8")]),
    "vcr_3_finetune_qar.sh": (32, [("2e-5", "12")]),
    "flickr_1_coco_pretrain.sh": (32, [("5e-5", "10")]),
    "flickr_2_task_pretrain.sh": (32, [("5e-5", "10")]),
    "flickr_3_finetune.sh": (32, [("2e-5", "5")]),
}
WARMUP = {"vcr_2_task_pretrain.sh": "0.1879"}  # configs/vcr/pre-train.json ("chosen to match R2C's")


def dry_run(script, *args, **env):
    full = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"), "DRY_RUN": "1", "DATA": "/data",
            "BERT": "/bert", "INIT": "/init", "COCO_FEATURES": "/coco1024"}
    full.update({k: str(v) for k, v in env.items()})
    return subprocess.run(["bash", os.path.join(ROOT, "scripts", script), *args], env=full, capture_output=True,
                          text=True, timeout=60)


def flag(argv, name):
    return argv[argv.index(name) + 1]


def launches(stdout):
    cmds = [shlex.split(line) for line in stdout.splitlines() if line.strip()]
    return [c for c in cmds if c[1:3] == ["-m", "paddle.distributed.launch"]], cmds


@pytest.mark.parametrize("script", sorted(PAPER))
def test_two_nodes_of_four_gpus(script):
    r = dry_run(script, NNODES=2, MASTER="10.1.2.3:6170", NODE_RANK=0, GPUS="0,1,2,3")
    assert r.returncode == 0, r.stderr
    train, _ = launches(r.stdout)
    global_batch, runs = PAPER[script]
    assert len(train) == len(runs)
    for argv, (lr, epochs) in zip(train, runs):
        assert flag(argv, "--nnodes") == "2" and flag(argv, "--master") == "10.1.2.3:6170"
        assert flag(argv, "--rank") == "0" and flag(argv, "--devices") == "0,1,2,3"
        assert int(flag(argv, "--batch_size")) * 8 == global_batch  # 2 nodes x 4 GPUs
        assert flag(argv, "--learning_rate") == lr and flag(argv, "--num_train_epochs") == epochs
        assert flag(argv, "--warmup") == WARMUP.get(script, "0.1") and flag(argv, "--optimizer") == "bertadam"
        assert "--train_pooler" not in argv and "--max_grad_norm" not in argv
        assert flag(argv, "--patience") == "3"


def test_issue_example_batch_per_process():
    # NNODES=2 GPUS=0,1,2,3: the VQA fine-tuning global batch 64 -> 8 per process
    r = dry_run("vqa2_3_finetune.sh", NNODES=2, MASTER="host:8090", GPUS="0,1,2,3")
    train, cmds = launches(r.stdout)
    assert r.returncode == 0, r.stderr
    assert flag(train[0], "--batch_size") == "8" and "--rank" not in train[0]
    assert any("VQA2/run_predict.py" in " ".join(c) for c in cmds)  # node rank unset: predictions printed here


def test_single_machine_and_accumulation():
    r = dry_run("nlvr2_3_finetune.sh", GPUS="0,1")
    train, _ = launches(r.stdout)
    assert "--nnodes" not in train[0] and "--master" not in train[0] and flag(train[0], "--batch_size") == "32"
    r = dry_run("nlvr2_3_finetune.sh", NPROC=2, GRAD_ACCUM=4)
    train, _ = launches(r.stdout)
    assert flag(train[0], "--nproc_per_node") == "2"
    assert flag(train[0], "--batch_size") == "8" and flag(train[0], "--gradient_accumulation_steps") == "4"


def test_overrides_and_pooler_and_optimizer():
    r = dry_run("vqa2_2_task_pretrain.sh", "--learning_rate", "1e-5", TRAIN_POOLER=1, OPTIMIZER="adamw")
    train, _ = launches(r.stdout)
    argv = train[0]
    assert "--train_pooler" in argv and flag(argv, "--optimizer") == "adamw"
    assert argv[-2:] == ["--learning_rate", "1e-5"]  # appended last: argparse keeps the last value


def test_predictions_only_on_the_first_node():
    r = dry_run("nlvr2_3_finetune.sh", NNODES=2, MASTER="h:1", NODE_RANK=1, GPUS="0,1,2,3")
    train, cmds = launches(r.stdout)
    assert r.returncode == 0 and len(train) == 1 and len(cmds) == 1
    r = dry_run("nlvr2_3_finetune.sh", NNODES=2, MASTER="h:1", NODE_RANK=0, GPUS="0,1,2,3")
    assert sum("run_predict.py" in line for line in r.stdout.splitlines()) == 2


def test_coco_pretraining_splits_as_the_original():
    for script in ("vqa2_1_coco_pretrain.sh", "nlvr2_1_coco_pretrain.sh"):
        argv = launches(dry_run(script).stdout)[0][0]
        assert flag(argv, "--train_split") == "train2014+val2014"
        assert flag(argv, "--exclude_minival") == "/data/vqa2/imdb/imdb_minival2014.npy"
        assert flag(argv, "--eval_split") == "val2014"
    argv = launches(dry_run("nlvr2_1_coco_pretrain.sh", MINIVAL="/x/mv.npy").stdout)[0][0]
    assert flag(argv, "--exclude_minival") == "/x/mv.npy" and flag(argv, "--max_regions") == "144"


@pytest.mark.parametrize("env,message", [
    ({"NPROC": 5}, "global batch 64 does not divide into 5 process(es)"),
    ({"NNODES": 3, "MASTER": "h:1", "GPUS": "0,1,2,3,4,5,6,7"}, "does not divide into 24 process(es)"),
    ({"NPROC": 4, "GRAD_ACCUM": 32}, "does not divide"),
    ({"NNODES": 2}, "needs MASTER=host:port"),
    ({"NNODES": 2, "MASTER": "h:1", "NODE_RANK": 2}, "NODE_RANK=2: expected 0 .. 1"),
    ({"GPUS": "0;1"}, "GPUS=0;1"),
    ({"NNODES": 0}, "NNODES=0: expected a positive integer"),
])
def test_refusals(env, message):
    r = dry_run("vqa2_3_finetune.sh", **env)
    assert r.returncode == 2 and message in r.stderr and "paddle.distributed.launch" not in r.stdout
    assert len(r.stderr.strip().splitlines()) == 1


def test_coco_pretraining_refuses_without_minival(tmp_path):
    env = {"DATA": str(tmp_path), "DRY_RUN": "0", "PYTHON": "false"}
    r = dry_run("vqa2_1_coco_pretrain.sh", **env)
    assert r.returncode == 2 and "imdb_minival2014.npy not found" in r.stderr


def test_vcr_from_images_stages():
    pre = launches(dry_run("vcr_2_task_pretrain.sh").stdout)[0][0]
    assert flag(pre, "--stage") == "pretrain" and flag(pre, "--images") == "/data/vcr/vcr1images"
    assert flag(pre, "--data_dir") == "/data/vcr" and flag(pre, "--model_name_or_path") == "/init"
    assert "--freeze_detector" not in pre  # the script's default for --stage pretrain: frozen, as pre-train.json
    train, cmds = launches(dry_run("vcr_3_finetune_qa.sh", INIT="").stdout)
    assert flag(train[0], "--mode") == "qa" and flag(train[0], "--model_name_or_path").endswith("runs/vcr_pre/best")
    predict = [c for c in cmds if "VCR/run_predict.py" in " ".join(c)]
    assert len(predict) == 1 and flag(predict[0], "--images") == "/data/vcr/vcr1images"
    train, cmds = launches(dry_run("vcr_3_finetune_qar.sh", QA_MODEL="/qa").stdout)
    assert flag(train[0], "--mode") == "qar"
    predict = [c for c in cmds if "VCR/run_predict.py" in " ".join(c)]
    assert [flag(c, "--split") for c in predict] == ["val", "test"]
    assert all(flag(c, "--model_dir") == "/qa" and flag(c, "--qar_model_dir").endswith("runs/vcr_qar/best") for c in predict)
    r = dry_run("vcr_2_task_pretrain.sh", INIT="")
    assert r.returncode != 0 and "INIT" in r.stderr and "paddle.distributed.launch" not in r.stdout


def test_flickr_line_as_the_original():
    # configs/flickr/*.json: COCO captions on 2054-d features, MLM on the Flickr captions, grounding fine-tuning
    argv = launches(dry_run("flickr_1_coco_pretrain.sh", COCO_FEATURES="/coco2054").stdout)[0][0]
    assert argv[argv.index("--dataset") + 1] == "coco_captions" and flag(argv, "--features") == "/coco2054"
    assert flag(argv, "--bert_model") == "/bert" and flag(argv, "--train_split") == "train2014+val2014"
    argv = launches(dry_run("flickr_2_task_pretrain.sh").stdout)[0][0]
    assert any(a.endswith("/run_pretrain.py") for a in argv) and flag(argv, "--dataset") == "flickr30k"
    assert flag(argv, "--data_dir") == "/data/flickr30k/Flickr30kEntities" and flag(argv, "--features") == "/data/flickr30k"
    assert flag(argv, "--model_name_or_path") == "/init" and flag(argv, "--max_seq_length") == "128"
    r = dry_run("flickr_3_finetune.sh", OUT="/runs/f")
    train, cmds = launches(r.stdout)
    assert any(a.endswith("Flickr30K/run_flickr.py") for a in train[0]) and flag(train[0], "--eval_split") == "val"
    predicts = [c for c in cmds if c[1].endswith("Flickr30K/run_predict.py")]
    assert [flag(c, "--split") for c in predicts] == ["val", "test"]
    assert all(flag(c, "--model_dir") == "/runs/f/best" for c in predicts)


def test_flickr_coco_pretraining_needs_its_features():
    env = {"PATH": os.environ["PATH"], "HOME": "/tmp", "DRY_RUN": "1", "DATA": "/data", "BERT": "/bert"}
    r = subprocess.run(["bash", os.path.join(ROOT, "scripts", "flickr_1_coco_pretrain.sh")], env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "COCO_FEATURES" in r.stderr and "paddle.distributed.launch" not in r.stdout
