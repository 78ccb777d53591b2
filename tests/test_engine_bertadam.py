"""Training as the original through the engine and the scripts: BertAdam (the default optimizer), the frozen pooler,
the original's step count, early stopping (``--patience``), exact resume, and every flag of every launcher accepted
by its script.

References are the original's definitions (``pytorch_pretrained_bert/optimization.py``, ``models/train.py``,
``models/model_wrapper.py``), transcribed here, never the engine's own output.
"""

import argparse
import os
import runpy
import shlex
import subprocess

import numpy as np
import pytest
from test_engine import ToyNLVR2, make_args, tiny_model, weights

from visualbert.cli import UsageError
from visualbert.data import Collator
from visualbert.distributed import set_seed
from visualbert.fileio import read_jsonl
from visualbert.optim import BertAdam

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
POOLER = ("visual_bert.pooler.dense.weight", "visual_bert.pooler.dense.bias")


def bertadam_args(out, **overrides):
    return make_args(out, ["--optimizer", "bertadam"], train_pooler=False, **overrides)


def test_t_total_and_learning_rates_are_the_originals(tmp_path):
    # 10 examples, batch 3, accumulation 1, 2 epochs: the original's t_total = int(10 / 3 / 1) * 2 = 6, while the
    # loop runs every batch: ceil(10 / 3) = 4 updates per epoch, 8 in all; warmup 0.5 of t_total.
    from visualbert.engine import Trainer

    args = bertadam_args(tmp_path, batch_size=3, num_train_epochs=2, warmup=0.5, learning_rate=0.1)
    trainer = Trainer(args, tiny_model(), ToyNLVR2(10), Collator())
    assert isinstance(trainer.optimizer, BertAdam) and trainer.scheduler is None
    assert trainer.schedule_steps == 6 and trainer.total_steps == 8
    trainer.train()
    lrs = [r["learning_rate"] for r in read_jsonl(tmp_path / "metrics.jsonl") if r["type"] == "train"]

    def warmup_linear(x, warmup):  # the original's WarmupLinearSchedule at progress x = step / t_total
        return x / warmup if x < warmup else max((x - 1.0) / (warmup - 1.0), 0.0)

    expected = [0.1 * warmup_linear(step / 6, 0.5) for step in range(8)]  # evaluated BEFORE the step's increment
    np.testing.assert_allclose(lrs, expected, rtol=1e-9, atol=1e-12)
    assert lrs[0] == 0.0 and lrs[-2:] == [0.0, 0.0]
    assert os.path.isfile(tmp_path / "step_8" / "scheduler.json")


def test_first_update_changes_nothing_and_pooler_stays_frozen(tmp_path):
    from visualbert.engine import Trainer

    args = bertadam_args(tmp_path, batch_size=2, max_steps=4, warmup=0.25, save_steps=1)
    model = tiny_model()
    before = weights(model)
    Trainer(args, model, ToyNLVR2(8), Collator()).train()
    import paddle

    step1 = {k: v.numpy() for k, v in paddle.load(str(tmp_path / "step_1" / "model_state.pdparams")).items()}
    for k in before:  # learning rate 0 at the first update (schedule at step 0)
        np.testing.assert_array_equal(step1[k], before[k], err_msg=k)
    after = weights(model)
    for k in POOLER:
        np.testing.assert_array_equal(after[k], before[k], err_msg=k)
    moved = [k for k in before if k not in POOLER and not np.array_equal(after[k], before[k])]
    assert set(moved) == set(before) - set(POOLER), set(before) - set(POOLER) - set(moved)


def test_train_pooler_trains_it(tmp_path):
    from visualbert.engine import Trainer

    args = make_args(tmp_path, ["--optimizer", "bertadam", "--warmup", "0"], max_steps=2, train_pooler=True)
    model = tiny_model()
    before = weights(model)
    trainer = Trainer(args, model, ToyNLVR2(8), Collator())
    assert {n for n, _ in trainer.optimizer.named_parameters} >= set(POOLER)
    trainer.train()
    assert not np.array_equal(weights(model)[POOLER[0]], before[POOLER[0]])


def test_resume_mid_run_is_bit_identical(tmp_path):
    # Dropout on (RNG restored), accumulation 2, a run of 2 epochs x 3 updates interrupted after step 2 (mid-epoch)
    # and resumed by a fresh trainer equals the uninterrupted run bit for bit.
    from visualbert.engine import Trainer

    data = ToyNLVR2(12)

    def trainer(out, **kw):
        args = bertadam_args(out, batch_size=2, num_train_epochs=2, save_steps=2, gradient_accumulation_steps=2,
                             warmup=0.2, **kw)
        return Trainer(args, tiny_model(dropout=0.2), data, Collator())

    full = trainer(tmp_path / "full")
    full.train()

    class Interrupt(Exception):
        pass

    from visualbert.engine import TrainerCallback

    class StopAfterSave(TrainerCallback):
        def on_save(self, t, step, path):
            if step == 2:
                raise Interrupt

    part = trainer(tmp_path / "part")
    part.callbacks = part.log.callbacks = (StopAfterSave(),)
    with pytest.raises(Interrupt):
        part.train()
    set_seed(1234)  # a different RNG state: resume must restore the saved one
    resumed = trainer(tmp_path / "part", resume_from=str(tmp_path / "part" / "step_2"))
    assert resumed.state["global_step"] == 0
    resumed.train()
    assert resumed.state["global_step"] == full.state["global_step"] == 6
    wf, wr = weights(full.model), weights(resumed.model)
    for k in wf:
        np.testing.assert_array_equal(wr[k], wf[k], err_msg=k)
    sf, sr = full.optimizer.state_dict(), resumed.optimizer.state_dict()
    for name, entry in sf["state"].items():
        assert sr["state"][name]["step"] == entry["step"] == 6
        np.testing.assert_array_equal(sr["state"][name]["next_v"], entry["next_v"], err_msg=name)


def test_resume_with_another_optimizer_is_refused(tmp_path):
    from visualbert.engine import Trainer

    data = ToyNLVR2(8)
    Trainer(bertadam_args(tmp_path / "a", batch_size=2, max_steps=2, save_steps=2), tiny_model(), data,
            Collator()).train()
    args = make_args(tmp_path / "b", max_steps=2, batch_size=2, resume_from=str(tmp_path / "a" / "step_2"))
    with pytest.raises(UsageError, match="--optimizer bertadam"):
        Trainer(args, tiny_model(), data, Collator()).train()
    args = make_args(tmp_path / "c", ["--optimizer", "bertadam"], batch_size=2, max_steps=2, train_pooler=True,
                     resume_from=str(tmp_path / "a" / "step_2"))
    with pytest.raises(UsageError, match="other settings|does not train"):
        Trainer(args, tiny_model(), data, Collator()).train()


def original_stop_epoch(metrics, patience):
    """The epoch after which the original's loop (models/train.py) breaks, or None: it appends the validation
    metric, then stops if int(np.argmax(history)) < len(history) - 1 - patience."""
    history = []
    for epoch, value in enumerate(metrics):
        history.append(value)
        if int(np.argmax(history)) < len(history) - 1 - patience:
            return epoch
    return None


@pytest.mark.parametrize("metrics,greater", [([0.5, 0.6, 0.55, 0.6, 0.54, 0.9, 0.1, 0.2], True),
                                             ([3.0, 2.0, 2.5, 2.0, 2.2, 1.0, 0.5, 0.4], False)])
def test_patience_stops_as_the_original(tmp_path, metrics, greater):
    from visualbert.engine import Trainer

    patience = 2
    sequence = iter(metrics)
    args = bertadam_args(tmp_path, batch_size=4, num_train_epochs=len(metrics), patience=patience,
                         metric_for_best="score", greater_is_better=greater)
    trainer = Trainer(args, tiny_model(), ToyNLVR2(8), Collator(), evaluate_fn=lambda m: {"score": next(sequence)})
    state = trainer.train()
    signed = [v if greater else -v for v in metrics]
    stop = original_stop_epoch(signed, patience)
    assert stop is not None and stop < len(metrics) - 1
    assert state["epoch"] == stop + 1 and state["global_step"] == 2 * (stop + 1)
    evals = [r for r in read_jsonl(tmp_path / "metrics.jsonl") if r["type"] == "eval"]
    assert [r["score"] for r in evals] == metrics[:stop + 1]
    assert os.path.isdir(tmp_path / f"step_{state['global_step']}")  # the stopping step is saved
    # resuming the stopped run does not train on
    args = bertadam_args(tmp_path, batch_size=4, num_train_epochs=len(metrics), patience=patience,
                         metric_for_best="score", greater_is_better=greater, resume_from="latest")
    again = Trainer(args, tiny_model(), ToyNLVR2(8), Collator(), evaluate_fn=lambda m: {"score": 0.0})
    assert again.train()["global_step"] == state["global_step"]


# ------------------------------------------------------------------------------------------ launchers
def launched_commands(script):
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"), "DRY_RUN": "1", "DATA": "/data",
           "BERT": "/bert", "INIT": "/init", "COCO_FEATURES": "/coco1024", "TRAIN_POOLER": "1"}
    r = subprocess.run(["bash", os.path.join(ROOT, "scripts", script)], env=env, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    out = []
    for line in r.stdout.splitlines():
        argv = shlex.split(line)
        index = next(i for i, a in enumerate(argv) if a.endswith(".py"))
        out.append((argv[index], argv[index + 1:]))
    return out


class _Parsed(Exception):
    pass


LAUNCHERS = sorted(f for f in os.listdir(os.path.join(ROOT, "scripts")) if f.endswith(".sh") and f != "_common.sh")


@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_every_flag_a_launcher_passes_is_accepted(launcher, monkeypatch):
    # The script's own parser (built by its main) parses the exact argv the launcher would run; nothing may be
    # left unknown and every value must pass its type / choices (argparse exits otherwise).
    commands = launched_commands(launcher)
    assert commands
    seen = []

    def parse_args(self, args=None, namespace=None):
        namespace, unknown = self.parse_known_args(args, namespace)
        seen.append((namespace, unknown))
        raise _Parsed

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse_args)
    for script, argv in commands:
        assert os.path.isfile(script), script
        with pytest.raises(_Parsed):
            runpy.run_path(script)["main"](argv)
        namespace, unknown = seen[-1]
        assert unknown == [], f"{launcher}: {os.path.relpath(script, ROOT)} does not accept {unknown}"
        if hasattr(namespace, "optimizer"):  # a training command
            assert namespace.optimizer == "bertadam" and namespace.patience == 3 and namespace.train_pooler


def test_o2_bertadam_masters_are_the_weights_before_the_cast(tmp_path, monkeypatch):
    # AMP is a no-op on CPU, so O2 is forced here: paddle.amp.decorate casts the weights (it needs no GPU); the forward
    # pass is not run. BertAdam's fp32 master weights must be the exact fp32 weights of before the cast (not the
    # bf16-rounded ones), the frozen pooler must stay fp32 (it has no master), and what a checkpoint saves is fp32.
    import paddle

    from visualbert import accel
    from visualbert.engine import Trainer

    monkeypatch.setattr(accel.AmpConfig, "from_args",
                        classmethod(lambda cls, args: cls(enabled=True, level="O2", dtype="bfloat16")))
    calls = []

    def decorate(models, level, dtype, excluded_layers=None, optimizers=None, **kw):
        # paddle.amp.decorate is a no-op without a GPU; cast as it does on one (every layer but the excluded ones)
        calls.append(dict(kw, level=level, dtype=dtype, optimizers=optimizers))
        keep = {id(sub) for layer in (excluded_layers or []) for sub in layer.sublayers(include_self=True)}
        for layer in models.sublayers(include_self=True):
            if id(layer) not in keep:
                layer._to_impl(dtype=dtype, include_sublayers=False, floating_only=True)  # in place, as decorate
        return models

    monkeypatch.setattr(paddle.amp, "decorate", decorate)
    model = tiny_model()
    before = weights(model)
    trainer = Trainer(bertadam_args(tmp_path, batch_size=2, max_steps=2), model, ToyNLVR2(8), Collator())
    assert calls == [{"level": "O2", "dtype": "bfloat16", "optimizers": None, "master_grad": True}]

    params = dict(trainer.model.named_parameters())
    assert params["visual_bert.encoder.layer.0.attention.self.query.weight"].dtype == paddle.bfloat16
    assert all(params[k].dtype == paddle.float32 for k in POOLER)
    masters = trainer.optimizer._masters
    low = {n for n, p in params.items() if p.dtype == paddle.bfloat16}
    assert low and set(masters) == low
    for name in low:
        np.testing.assert_array_equal(masters[name].numpy(), before[name], err_msg=name)
    saved = accel.fp32_state_dict(trainer.model, trainer.optimizer)
    for name, value in saved.items():
        assert value.dtype == paddle.float32, name
        np.testing.assert_array_equal(value.numpy(), before[name], err_msg=name)
