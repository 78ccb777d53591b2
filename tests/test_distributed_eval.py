"""Sharded evaluation over two gloo CPU processes equals one process (outputs in dataset order, metadata, loss),
and ``python -m paddle.distributed.launch`` ranks get the machine's cores divided between them
(visualbert.runtime), plus the pure pieces of visualbert.distributed_eval."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from visualbert import distributed_eval, runtime

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

WORKER = r'''
import json, os, sys
import visualbert  # thread defaults before paddle
import numpy as np
import paddle
from visualbert import distributed_eval
from visualbert.configuration import VisualBertConfig
from visualbert.data.collate import Collator
from visualbert.modeling import VisualBertForVisualReasoning
from visualbert.distributed import exit_process, init_distributed
from visualbert.engine import predict as run_inference

out = sys.argv[1]
world, rank = int(os.environ.get("PADDLE_TRAINERS_NUM", "1")), int(os.environ.get("PADDLE_TRAINER_ID", "0"))
init_distributed()
with open(os.path.join(out, f"threads_{world}_{rank}.json"), "w") as f:
    json.dump({"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"), "cores": visualbert.runtime.available_cores()}, f)
paddle.seed(0)
model = VisualBertForVisualReasoning(VisualBertConfig(vocab_size=300, hidden_size=32, num_hidden_layers=1,
    num_attention_heads=2, intermediate_size=64, visual_embedding_dim=8, num_labels=2, max_position_embeddings=32))
r = np.random.RandomState(0)
dataset = []
for i in range(13):  # odd: the blocks differ in size
    n = int(r.randint(3, 9))
    v = int(r.randint(2, 5))
    dataset.append({"input_ids": r.randint(5, 300, size=n).astype("int64"), "token_type_ids": np.zeros(n, "int64"),
                    "visual_embeds": r.randn(v, 8).astype("float32"), "visual_token_type_ids": np.zeros(v, "int64"),
                    "labels": np.int64(r.randint(0, 2)), "identifier": f"dev-{i // 2}-{i % 2}-0"})
part = distributed_eval.shard(dataset, world, rank)
arrays, meta, loss = run_inference(model, part, 4, collate_fn=Collator())
arrays, meta = distributed_eval.gather_outputs(arrays, meta)
loss = distributed_eval.combine_mean(loss, len(part))
counts = distributed_eval.sum_counts({"examples": len(part)})
if rank == 0:
    np.savez(os.path.join(out, f"eval_{world}.npz"), logits=arrays["logits"], labels=meta["labels"])
    with open(os.path.join(out, f"eval_{world}.json"), "w") as f:
        json.dump({"identifier": meta["identifier"], "loss": loss, "counts": counts}, f)
exit_process(0)  # how a multi-process program ends (see distributed.exit_process)
'''


def _run(tmp_path, nproc):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PADDLE_") and k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    cmd = [sys.executable, str(script), str(tmp_path)]
    if nproc > 1:
        cmd = [sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", str(nproc), "--log_dir",
               str(tmp_path / "log")] + cmd[1:]
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    logs = ""
    if (tmp_path / "log").is_dir():
        for name in sorted(os.listdir(tmp_path / "log")):
            logs += f"--- {name}\n" + (tmp_path / "log" / name).read_text(errors="replace")[-2000:]
    assert p.returncode == 0, p.stderr[-3000:] + logs


def test_sharded_evaluation_over_two_processes_equals_one(tmp_path):
    _run(tmp_path, 1)
    _run(tmp_path, 2)
    one, two = np.load(tmp_path / "eval_1.npz"), np.load(tmp_path / "eval_2.npz")
    assert one["logits"].shape == two["logits"].shape == (13, 2)
    np.testing.assert_allclose(two["logits"], one["logits"], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(two["labels"], one["labels"])
    meta1, meta2 = (json.loads((tmp_path / f"eval_{n}.json").read_text()) for n in (1, 2))
    assert meta2["identifier"] == meta1["identifier"] == [f"dev-{i // 2}-{i % 2}-0" for i in range(13)]
    assert meta2["loss"] == pytest.approx(meta1["loss"], rel=1e-5)
    assert meta2["counts"]["examples"] == meta1["counts"]["examples"] == 13
    # Each launched rank divides the cores of the machine instead of taking all of them.
    cores = runtime.available_cores()
    single = json.loads((tmp_path / "threads_1_0.json").read_text())
    ranks = [json.loads((tmp_path / f"threads_2_{r}.json").read_text()) for r in range(2)]
    assert int(single["OMP_NUM_THREADS"]) == runtime.default_threads({})
    assert [int(r["OMP_NUM_THREADS"]) for r in ranks] == [max(1, runtime.default_threads({}) // 2)] * 2
    assert single["cores"] == cores


def test_local_process_count_and_thread_division(monkeypatch):
    monkeypatch.setattr(runtime, "available_cores", lambda: 16)
    monkeypatch.setattr(runtime, "_cgroup_cpu_limit", lambda: None)
    assert runtime.default_threads({}) == 16
    assert runtime.default_threads({"PADDLE_LOCAL_SIZE": "4", "PADDLE_TRAINERS_NUM": "8"}) == 4  # 2 nodes x 4
    assert runtime.default_threads({"PADDLE_TRAINERS_NUM": "2"}) == 8
    assert runtime.default_threads({"PADDLE_LOCAL_SIZE": "32"}) == 1
    assert runtime.default_threads({"PADDLE_LOCAL_SIZE": "junk"}) == 16
    env = {"PADDLE_LOCAL_SIZE": "2"}
    runtime.apply_cpu_defaults(env)
    assert env["OMP_NUM_THREADS"] == env["MKL_NUM_THREADS"] == "8"


@pytest.mark.parametrize("n,world", [(13, 2), (12, 3), (2, 4), (0, 2)])
def test_shards_cover_the_split_once_in_order(n, world):
    bounds = [distributed_eval.shard_bounds(n, world, r) for r in range(world)]
    covered = [i for start, stop in bounds for i in range(start, stop)]
    assert covered == list(range(n))
    sizes = [stop - start for start, stop in bounds]
    assert max(sizes) - min(sizes) <= 1
    data = list(range(100, 100 + n))
    views = [distributed_eval.shard(data, world, r) for r in range(world)]
    assert [x for v in views for x in (v[i] for i in range(len(v)))] == data


def test_single_process_is_the_identity():
    data = [1, 2, 3]
    assert distributed_eval.shard(data, 1, 0) is data
    arrays, meta = {"logits": np.zeros((3, 2))}, {"identifier": ["a", "b", "c"]}
    assert distributed_eval.gather_outputs(arrays, meta) == (arrays, meta)
    assert distributed_eval.combine_mean(0.5, 3) == 0.5 and distributed_eval.combine_mean(None, 0) is None
    assert distributed_eval.sum_counts({"n": 2}) == {"n": 2}
