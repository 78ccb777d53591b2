"""Contest-port (.pdparams) checkpoints → our layout, checked numerically against a transcription of the contest
model (tests/contest_port_reference.py), not against our own table."""

import json
import os

import contest_port_reference as ref
import numpy as np
import paddle
import pytest

from visualbert.conversion import convert_checkpoint
from visualbert.conversion_contest import contest_conversion_table, infer_contest_config, read_contest_source
from visualbert.modeling import load_pretrained

SIZES = dict(vocab=40, hidden=32, visual_dim=12, layers=2, heads=2, intermediate=48, max_positions=64)
TOLERANCE = 1e-5


def _save(model, path, dataparallel=False, model_config=None, extra=None):
    """Saves as the contest port did: paddle.save(model.state_dict()) (with the DataParallel prefix when asked),
    optionally its save_pretrained model_config.json beside it."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    state = dict(model.state_dict())
    state.update(extra or {})
    if dataparallel:
        state = {"_layers." + k: v for k, v in state.items()}
    paddle.save(state, path)
    if model_config is not None:
        with open(os.path.join(os.path.dirname(path), "model_config.json"), "w") as f:
            json.dump(model_config, f)
    return path


def _save_pretrained_config(sizes, init_class, num_classes=None):
    backbone = dict(vocab_size=sizes["vocab"], hidden_size=sizes["hidden"], visual_embedding_dim=sizes["visual_dim"],
                    num_hidden_layers=sizes["layers"], num_attention_heads=sizes["heads"],
                    intermediate_size=sizes["intermediate"], hidden_act="gelu", layer_norm_eps=1e-12,
                    max_position_embeddings=sizes["max_positions"], init_class="VisualBertModel")
    out = {"init_args": [backbone], "init_class": init_class}
    if num_classes is not None:
        out["num_classes"] = num_classes
    return out


def _inputs(rng, sizes, batch=3, text=7, regions=5, choices=None, alignment=False):
    """Right-padded text (pad id 0, lengths differ per row) and partly masked regions; ids avoid 1, the contest's
    padding_idx (its word table returns zeros there; BERT's tokenizer never emits id 1, [unused0])."""
    lead = (batch,) if choices is None else (batch, choices)
    n = int(np.prod(lead))
    lengths = rng.integers(3, text + 1, size=n)
    lengths[0] = text
    mask = (np.arange(text)[None, :] < lengths[:, None]).astype("int64")
    ids = rng.integers(2, sizes["vocab"], size=(n, text)) * mask
    types = rng.integers(0, 2, size=(n, text)) * mask
    region_counts = rng.integers(1, regions + 1, size=n)
    region_counts[0] = regions
    visual_mask = (np.arange(regions)[None, :] < region_counts[:, None]).astype("int64")
    out = dict(input_ids=ids, attention_mask=mask, token_type_ids=types,
               visual_embeds=rng.normal(size=(n, regions, sizes["visual_dim"])).astype("float32"),
               visual_attention_mask=visual_mask, visual_token_type_ids=rng.integers(0, 2, size=(n, regions)))
    if alignment:
        align = rng.integers(0, text, size=(n, regions, 3))
        align[rng.random(align.shape) < 0.4] = -1
        out["image_text_alignment"] = align.astype("int64")
    shaped = {k: v.reshape(lead + v.shape[1:]) for k, v in out.items()}
    return {k: paddle.to_tensor(v) for k, v in shaped.items()}


def _ours(dst, inputs):
    model = load_pretrained(dst)
    model.eval()
    with paddle.no_grad():
        return model(**inputs)


CASES = {
    # head: (builds the contest model from its sizes, the architecture the conversion must pick)
    "pretraining": (lambda s: ref.ContestForPreTraining(**s), "VisualBertForPreTraining"),
    "vqa": (lambda s: ref.ContestForQuestionAnswering(3129, **s), "VisualBertForQuestionAnswering"),
    "nlvr2": (lambda s: ref.ContestForVisualReasoning(2, **s), "VisualBertForVisualReasoning"),
    "vcr": (lambda s: ref.ContestForMultipleChoice(1, **s), "VisualBertForMultipleChoice"),
    "base": (lambda s: ref.ContestVisualBertModel(**s), "VisualBertModel"),
}


@pytest.mark.parametrize("head,dataparallel", [("pretraining", False), ("pretraining", True), ("vqa", True),
                                               ("nlvr2", False), ("vcr", True), ("base", False)])
def test_contest_checkpoint_converts_to_the_same_function(tmp_path, head, dataparallel):
    build, architecture = CASES[head]
    sizes = dict(SIZES)
    model_config = _save_pretrained_config(sizes, architecture)
    if head == "nlvr2":
        # No model_config.json: the head count comes from BERT's 64-wide heads.
        sizes.update(hidden=64, heads=1)
        model_config = None
    paddle.seed(0)
    contest = ref.randomise(build(sizes), seed=1)
    contest.eval()
    rng = np.random.default_rng(2)
    inputs = _inputs(rng, sizes, choices=4 if head == "vcr" else None, alignment=head == "vcr")
    with paddle.no_grad():
        expected = contest(**inputs)
    extra = None
    if head == "pretraining" and not dataparallel:
        # The contest's own HF converter leaves HF's decoder bias alias in its files.
        extra = {"cls.predictions.decoder.bias": contest.cls.predictions.decoder_bias}
    src = _save(contest, str(tmp_path / "run" / "model_state.pdparams"), dataparallel, model_config, extra)

    report = convert_checkpoint(src, str(tmp_path / "ours"))
    assert report["architecture"] == architecture and report["source_format"] == "contest"
    assert report["transposed"] == []
    got = _ours(str(tmp_path / "ours"), inputs)

    if head == "pretraining":
        pairs = [(got.prediction_logits, expected[0]), (got.seq_relationship_logits, expected[1])]
    elif head == "base":
        pairs = [(got.last_hidden_state, expected[0]), (got.pooler_output, expected[1])]
    else:
        pairs = [(got.logits, expected)]
    for ours, theirs in pairs:
        assert list(ours.shape) == list(theirs.shape)
        diff = float(np.abs(ours.numpy() - theirs.numpy()).max())
        assert diff <= TOLERANCE, f"{head}: max |Δ| {diff}"
        # Guard against a vacuous comparison: the outputs really vary over the batch.
        assert float(np.abs(theirs.numpy() - theirs.numpy()[:1]).max()) > 1e-3


def _contest_state(tmp_path, model, name="model_state.pdparams", **kwargs):
    return _save(model, str(tmp_path / "src" / name), model_config=_save_pretrained_config(SIZES, "x"), **kwargs)


@pytest.fixture(scope="module")
def vqa_model():
    paddle.seed(0)
    return ref.randomise(ref.ContestForQuestionAnswering(5, **SIZES), seed=3)


def _edited(tmp_path, model, edit):
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    edit(state)
    path = tmp_path / "src" / "model_state.pdparams"
    os.makedirs(path.parent, exist_ok=True)
    paddle.save({k: paddle.to_tensor(v) for k, v in state.items()}, str(path))
    with open(path.parent / "model_config.json", "w") as f:
        json.dump(_save_pretrained_config(SIZES, "VisualBertForQuestionAnswering"), f)
    return str(path)


def test_missing_key_is_named(tmp_path, vqa_model):
    src = _edited(tmp_path, vqa_model, lambda s: s.pop("visual_bert.encoder.layer.layers.1.linear2.bias"))
    with pytest.raises(KeyError, match=r"visual_bert\.encoder\.layer\.layers\.1\.linear2\.bias"):
        convert_checkpoint(src, str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_extra_key_is_named(tmp_path, vqa_model):
    src = _edited(tmp_path, vqa_model, lambda s: s.update({"visual_bert.encoder.extra_gate.weight": np.ones(3, "float32")}))
    with pytest.raises(KeyError, match=r"visual_bert\.encoder\.extra_gate\.weight"):
        convert_checkpoint(src, str(tmp_path / "out"))


def test_misshapen_key_is_named(tmp_path, vqa_model):
    src = _edited(tmp_path, vqa_model, lambda s: s.update({"visual_bert.pooler.dense.weight": np.ones((32, 31), "float32")}))
    with pytest.raises(ValueError, match=r"visual_bert\.pooler\.dense\.weight.*\[32, 31\].*\[32, 32\]"):
        convert_checkpoint(src, str(tmp_path / "out"))


def test_untied_decoder_is_refused(tmp_path):
    paddle.seed(0)
    model = ref.randomise(ref.ContestForPreTraining(**SIZES), seed=4)
    bad = model.cls.predictions.decoder_weight.numpy() + 1.0
    src = _contest_state(tmp_path, model, extra={"cls.predictions.decoder_weight": paddle.to_tensor(bad)})
    with pytest.raises(ValueError, match=r"cls\.predictions\.decoder_weight.*visual_bert\.embeddings\.word_embeddings"):
        convert_checkpoint(src, str(tmp_path / "out"))


def test_bad_position_ids_are_refused(tmp_path, vqa_model):
    src = _edited(tmp_path, vqa_model, lambda s: s.update({"visual_bert.embeddings.position_ids": np.zeros((1, 64), "int64")}))
    with pytest.raises(ValueError, match=r"visual_bert\.embeddings\.position_ids"):
        convert_checkpoint(src, str(tmp_path / "out"))


def test_neither_layout_says_what_it_looks_like(tmp_path):
    path = tmp_path / "resnet.pdparams"
    paddle.save({"backbone.conv1.weight": paddle.ones([2, 2]), "backbone.bn1.weight": paddle.ones([2]),
                 "head.fc.weight": paddle.ones([2, 2])}, str(path))
    with pytest.raises(ValueError) as err:
        convert_checkpoint(str(path), str(tmp_path / "out"))
    message = str(err.value)
    assert "neither a contest-port" in message and "3 keys" in message
    assert "backbone.conv1.* (1)" in message and "head.fc.* (1)" in message and "backbone.bn1.weight" in message


def test_our_own_layout_is_recognised(tmp_path):
    from visualbert.configuration import VisualBertConfig
    from visualbert.modeling import VisualBertForVisualReasoning

    model = VisualBertForVisualReasoning(VisualBertConfig(vocab_size=40, hidden_size=32, visual_embedding_dim=12,
                                                          num_hidden_layers=1, num_attention_heads=2,
                                                          intermediate_size=48, max_position_embeddings=64))
    path = tmp_path / "model_state.pdparams"
    paddle.save(model.state_dict(), str(path))
    with pytest.raises(ValueError, match="already in this project's layout"):
        convert_checkpoint(str(path), str(tmp_path / "out"))


def test_half_prefixed_state_is_refused(tmp_path, vqa_model):
    def half(state):
        key = "visual_bert.pooler.dense.bias"
        state["_layers." + key] = state.pop(key)
    src = _edited(tmp_path, vqa_model, half)
    with pytest.raises(KeyError, match=r"_layers\..*visual_bert\.embeddings"):
        convert_checkpoint(src, str(tmp_path / "out"))


def test_head_and_sizes_come_from_the_shapes(tmp_path, vqa_model):
    state, config, architecture = read_contest_source(_contest_state(tmp_path, vqa_model))
    # 5 answers is no released width: still the one multi-class head, the VQA one.
    assert architecture == "VisualBertForQuestionAnswering" and config.num_labels == 5
    assert (config.vocab_size, config.hidden_size, config.visual_embedding_dim, config.num_hidden_layers,
            config.num_attention_heads, config.intermediate_size, config.max_position_embeddings) == (40, 32, 12, 2, 2, 48, 64)
    table = contest_conversion_table(config, architecture)
    ignored = {"visual_bert.embeddings.position_ids"}
    # Every contest key is either mapped or an ignored buffer, and the table maps no key twice.
    assert set(state) == {s for s, _, _ in table} | ignored
    assert len({d for _, d, _ in table}) == len(table)


def test_name_overrides_the_head_and_must_fit(tmp_path):
    sizes = dict(SIZES, visual_dim=512)
    paddle.seed(0)
    vcr = ref.randomise(ref.ContestForMultipleChoice(1, **sizes), seed=5)
    state = {k: v.numpy() for k, v in vcr.state_dict().items()}
    config, architecture = infer_contest_config(state, model_config={"num_attention_heads": 2})
    assert architecture == "VisualBertForMultipleChoice"
    config, architecture = infer_contest_config(state, name="visualbert-vcr-pre", model_config={"num_attention_heads": 2})
    assert architecture == "VisualBertForPreTraining"
    src = _save(vcr, str(tmp_path / "src" / "model_state.pdparams"), model_config={"num_attention_heads": 2})
    # --name of a pre-training checkpoint on a VCR head: the head keys are named as unmapped.
    with pytest.raises(KeyError, match=r"cls\.weight"):
        convert_checkpoint(src, str(tmp_path / "out"), name="visualbert-vcr-pre")
    # --name whose region width disagrees with the checkpoint's.
    with pytest.raises(ValueError, match=r"2048-d.*512-d"):
        convert_checkpoint(src, str(tmp_path / "out"), name="visualbert-vqa")
    report = convert_checkpoint(src, str(tmp_path / "out"), name="visualbert-vcr")
    assert report["architecture"] == "VisualBertForMultipleChoice"


def test_convert_cli_reports_one_line(tmp_path, capsys, vqa_model):
    import importlib.util

    spec = importlib.util.spec_from_file_location("convert_cli", os.path.join(os.path.dirname(__file__), "..", "checkpoint", "convert.py"))
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    path = tmp_path / "other.pdparams"
    paddle.save({"fc.weight": paddle.ones([2, 2])}, str(path))
    assert cli.main(["--src", str(path), "--dst", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "neither a contest-port" in err[0] and "fc.weight" in err[0]
    # A contest save_pretrained directory (model_state.pdparams + model_config.json) converts from the CLI.
    src = os.path.dirname(_contest_state(tmp_path, vqa_model))
    assert cli.main(["--src", src, "--dst", str(tmp_path / "ours")]) == 0
    with open(tmp_path / "ours" / "conversion.json") as f:
        assert json.load(f)["source_format"] == "contest"
    assert load_pretrained(str(tmp_path / "ours")).config.num_labels == 5


def test_bypass_layer_maps_to_our_additional_layer(tmp_path):
    # The contest port's bypass forward is broken (it slices the mask at one row), so only the weights are compared.
    paddle.seed(0)
    model = ref.ContestVisualBertModel(**SIZES)
    model.additional_layer = paddle.nn.TransformerEncoderLayer(SIZES["hidden"], SIZES["heads"], SIZES["intermediate"],
                                                               dropout=0.0, act_dropout=0)
    ref.randomise(model, seed=6)
    src = _save(model, str(tmp_path / "src" / "model_state.pdparams"), model_config={"num_attention_heads": 2})
    convert_checkpoint(src, str(tmp_path / "ours"))
    ours = load_pretrained(str(tmp_path / "ours"))
    assert ours.config.bypass_transformer
    got = ours.state_dict()
    for theirs_key, our_key in [("additional_layer.self_attn.k_proj.weight", "additional_layer.attention.self.key.weight"),
                                ("additional_layer.norm2.bias", "additional_layer.output.LayerNorm.bias"),
                                ("additional_layer.linear1.weight", "additional_layer.intermediate.dense.weight")]:
        np.testing.assert_array_equal(got[our_key].numpy(), model.state_dict()[theirs_key].numpy())
