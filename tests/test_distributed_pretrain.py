"""MLM-only task pretraining (VQA2) with two gloo CPU processes: several steps with and without gradient
accumulation, both ranks end identical and equal to one process that sees the same examples.

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

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = ["--hidden_size", "32", "--num_hidden_layers", "1", "--num_attention_heads", "2", "--intermediate_size", "64",
         "--disable_tqdm", "--dropout", "0", "--learning_rate", "1e-3", "--warmup", "0", "--logging_steps", "1",
         "--save_steps", "1", "--max_seq_length", "24", "--seed", "3"]


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("synth_pre"))
    generate(out, tasks=("vqa",), num_images=6, questions_per_image=3, regions=3, vqa_dim=32)
    return out


def run(synth, out, nproc, batch, steps, accum, tmp_path):
    dump, log_dir = str(tmp_path / f"dump_{nproc}_{accum}"), str(tmp_path / f"log_{nproc}_{accum}")
    script = ["run_pretrain.py", "--dataset", "vqa2", "--data_dir", f"{synth}/vqa2/imdb", "--features",
              f"{synth}/detectron_fix_100", "--train_split", "train", "--eval_split", "val", "--output_dir", out,
              "--batch_size", str(batch), "--max_steps", str(steps), "--eval_steps", "1000",
              "--gradient_accumulation_steps", str(accum)] + MODEL
    if nproc == 1:
        cmd = [sys.executable] + script
    else:
        cmd = [sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", str(nproc), "--log_dir",
               log_dir] + script
    env = {k: v for k, v in os.environ.items() if not k.startswith("PADDLE_")}
    env["VISUALBERT_TEST_DUMP_RANK_WEIGHTS"] = dump
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
