"""Two gloo CPU processes train every head for several steps and end identical to each other and to one process
that sees the same examples: MLM-only task pretraining (VQA2) with and without gradient accumulation, COCO
caption pretraining (MLM + sentence-image matching), VQA, VCR (NLVR2: tests/test_distributed.py).

The single-process reference is batch B with twice the accumulation, not batch 2B: the MLM loss is a mean over
each batch's masked tokens, and data parallelism averages the per-rank means (as the original release's
``DataParallel`` did, ``model_wrapper.py``: ``output_dict['loss'].mean()``), which is exactly what accumulating
two micro-batches of B computes; one batch of 2B would weight the tokens of both halves equally instead.

Before the fix, the pretraining head returned ``seq_relationship_logits`` without sentence-image labels:
DataParallel counted the pooler and ``cls.seq_relationship`` as used, their gradients never arrived, and step 2
failed (``groups_need_finalize_``; with accumulation ``has been ready before``)."""

import os
import subprocess
import sys

import numpy as np
import paddle
import pytest

from visualbert.data.synthetic import generate
from visualbert.fileio import read_jsonl

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DRIVER = os.path.join(ROOT, "tests", "rank_weights_driver.py")  # every rank writes its final weights
MODEL = ["--hidden_size", "32", "--num_hidden_layers", "1", "--num_attention_heads", "2", "--intermediate_size", "64",
         "--disable_tqdm", "--dropout", "0", "--learning_rate", "1e-3", "--warmup", "0", "--logging_steps", "1",
         "--save_steps", "1", "--max_seq_length", "24", "--seed", "3"]


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("synth_pre"))
    generate(out, tasks=("vqa", "vcr"), num_images=10, questions_per_image=2, regions=3, vqa_dim=32, vcr_dim=32,
             vcr_examples=12)
    return out


def task_args(synth, task):
    return {"vqa2_pretrain": ["run_pretrain.py", "--dataset", "vqa2", "--data_dir", f"{synth}/vqa2/imdb",
                              "--features", f"{synth}/detectron_fix_100", "--train_split", "train", "--eval_split",
                              "val"],
            "coco_pretrain": ["run_pretrain.py", "--dataset", "coco_captions", "--data_dir",
                              f"{synth}/coco/annotations", "--features", f"{synth}/detectron_fix_100"],
            "vqa2": ["VQA2/run_vqa2.py", "--imdb_dir", f"{synth}/vqa2/imdb", "--features", f"{synth}/detectron_fix_100",
                     "--train_split", "train", "--eval_split", "val"],
            "vcr": ["VCR/run_vcr.py", "--data_dir", f"{synth}/vcr", "--features", f"{synth}/vcr/features"]}[task]


def run(synth, out, nproc, batch, steps, accum, tmp_path, task="vqa2_pretrain"):
    dump, log_dir = str(tmp_path / f"dump_{nproc}_{accum}"), str(tmp_path / f"log_{nproc}_{accum}")
    script = [DRIVER, dump] + task_args(synth, task) + ["--output_dir", out, "--batch_size", str(batch), "--max_steps", str(steps),
                                       "--eval_steps", "1000", "--gradient_accumulation_steps", str(accum)] + MODEL
    if nproc == 1:
        cmd = [sys.executable] + script
    else:
        cmd = [sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", str(nproc), "--log_dir",
               log_dir] + script
    env = {k: v for k, v in os.environ.items() if not k.startswith("PADDLE_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")]))
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=400, env=env)
    logs = ""
    if os.path.isdir(log_dir):
        for name in sorted(os.listdir(log_dir)):
            with open(os.path.join(log_dir, name), errors="replace") as f:
                logs += f"--- {name}\n" + f.read()[-3000:]
    assert p.returncode == 0, p.stderr[-3000:] + logs
    return [{k: v.numpy() for k, v in paddle.load(os.path.join(dump, f"rank{r}.pdparams")).items()}
            for r in range(nproc)]


@pytest.mark.parametrize("accum", [1, 2])
def test_mlm_only_pretraining_two_processes_equal_one(synth, tmp_path, accum):
    steps = 3
    (one,) = run(synth, str(tmp_path / "one"), 1, 2, steps, 2 * accum, tmp_path)
    r0, r1 = run(synth, str(tmp_path / "two"), 2, 2, steps, accum, tmp_path)
    for k in r0:
        np.testing.assert_array_equal(r0[k], r1[k], err_msg=k)
    for k in one:
        np.testing.assert_allclose(r0[k], one[k], rtol=1e-4, atol=1e-5, err_msg=k)
    # Training moved the MLM weights after step 1 (the comparison is not vacuous).
    first = {k: v.numpy() for k, v in paddle.load(os.path.join(str(tmp_path / "one"), "step_1",
                                                                "model_state.pdparams")).items()}
    key = "cls.predictions.transform.dense.weight"
    assert not np.allclose(first[key], one[key])
    # The final evaluation is sharded over the 2 ranks (summed MLM statistics) and equals the 1-process one.
    ev1, ev2 = (next(r for r in read_jsonl(str(tmp_path / d / "metrics.jsonl")) if r["type"] == "eval")
                for d in ("one", "two"))
    assert ev2["mlm_loss"] == pytest.approx(ev1["mlm_loss"], rel=1e-4)
    assert ev2["mlm_accuracy"] == pytest.approx(ev1["mlm_accuracy"], abs=1e-9)


@pytest.mark.parametrize("task,reference", [
    ("coco_pretrain", "accumulation"),  # the MLM part is a per-batch token mean
    ("vqa2", "double_batch"),           # per-example means: 2 x B = 1 x 2B exactly
    ("vcr", "double_batch"),
])
def test_every_head_two_processes_equal_one(synth, tmp_path, task, reference):
    if reference == "double_batch":
        (one,) = run(synth, str(tmp_path / "one"), 1, 4, 2, 1, tmp_path, task)
    else:
        (one,) = run(synth, str(tmp_path / "one"), 1, 2, 2, 2, tmp_path, task)
    r0, r1 = run(synth, str(tmp_path / "two"), 2, 2, 2, 1, tmp_path, task)
    for k in r0:
        np.testing.assert_array_equal(r0[k], r1[k], err_msg=k)
    for k in one:
        np.testing.assert_allclose(r0[k], one[k], rtol=1e-4, atol=1e-5, err_msg=k)
    first = {k: v.numpy() for k, v in paddle.load(os.path.join(str(tmp_path / "one"), "step_1",
                                                                "model_state.pdparams")).items()}
    assert any(not np.allclose(first[k], one[k]) for k in one)
