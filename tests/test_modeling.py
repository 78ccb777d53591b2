"""The Paddle model against the HF reference (tiny random models), and its own contracts."""

import logging

import numpy as np
import paddle
import pytest
import torch
import transformers
from conftest import tiny_config
from parity import diff_outputs, hf_config, make_hf_model, paddle_from_hf, run_hf, run_paddle

from visualbert import (
    VisualBertForMultipleChoice,
    VisualBertForPreTraining,
    VisualBertForQuestionAnswering,
    VisualBertForVisualReasoning,
    VisualBertModel,
    load_pretrained,
)
from visualbert.inputs import make_inputs

ARCHITECTURES = [
    "VisualBertModel",
    "VisualBertForPreTraining",
    "VisualBertForQuestionAnswering",
    "VisualBertForVisualReasoning",
    "VisualBertForMultipleChoice",
    "VisualBertForRegionToPhraseAlignment",
]


# Every parity test runs on both kernel paths: "cpu" (bias fused into addmm, the mask expanded once per forward)
# and "portable" (F.linear and a broadcast mask: what a GPU runs), so the GPU mix is checked on this CPU too.
KERNELS = pytest.mark.parametrize("cpu_kernels", [True, False], ids=["cpu-kernels", "portable-kernels"])


def _labels_for(architecture):
    return architecture != "VisualBertModel"


@KERNELS
@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_forward_and_loss_match_hf(architecture, cpu_kernels):
    config = tiny_config(num_labels=11 if architecture == "VisualBertForQuestionAnswering" else 2)
    hf_model = make_hf_model(config, architecture, seed=3)
    model = paddle_from_hf(hf_model, config, architecture)
    model.set_cpu_kernels(cpu_kernels)
    inputs = make_inputs(config, architecture, seed=4, with_labels=_labels_for(architecture))
    report = diff_outputs(run_paddle(model, inputs, architecture), run_hf(hf_model, inputs, architecture))
    expected = {"VisualBertModel": {"last_hidden_state", "pooler_output"}}.get(architecture)
    if expected:
        assert set(report) == expected
    else:
        assert "loss" in report
    for name, entry in report.items():
        assert entry["max_abs_diff"] <= 1e-5, (name, entry)


def test_padding_is_ignored():
    """Changing what sits under padding (text or regions) must not change any output of the real tokens."""
    config = tiny_config()
    paddle.seed(0)
    model = VisualBertForVisualReasoning(config)
    model.eval()
    inputs = make_inputs(config, "VisualBertForVisualReasoning", seed=1, with_labels=False)
    noisy = {k: v.copy() for k, v in inputs.items()}
    noisy["input_ids"][noisy["attention_mask"] == 0] = 999
    noisy["visual_embeds"][noisy["visual_attention_mask"] == 0] = 5.0
    a = model(**{k: paddle.to_tensor(v) for k, v in inputs.items()})
    b = model(**{k: paddle.to_tensor(v) for k, v in noisy.items()})
    np.testing.assert_allclose(a.logits.numpy(), b.logits.numpy(), atol=1e-5)
    hidden_a, hidden_b = a.get("hidden_states"), b.get("hidden_states")
    assert hidden_a is None and hidden_b is None


@KERNELS
def test_hidden_states_and_attentions_match_hf(cpu_kernels):
    config = tiny_config()
    architecture = "VisualBertModel"
    hf_model = make_hf_model(config, architecture, seed=5)
    model = paddle_from_hf(hf_model, config, architecture)
    model.set_cpu_kernels(cpu_kernels)
    inputs = make_inputs(config, architecture, seed=6, with_labels=False)
    with torch.no_grad():
        ref = hf_model(**{k: torch.from_numpy(v) for k, v in inputs.items()}, output_hidden_states=True,
                       output_attentions=True)
    with paddle.no_grad():
        out = model(**{k: paddle.to_tensor(v) for k, v in inputs.items()}, output_hidden_states=True,
                    output_attentions=True)
    assert len(out.hidden_states) == len(ref.hidden_states) == config.num_hidden_layers + 1
    assert len(out.attentions) == len(ref.attentions) == config.num_hidden_layers
    for ours, theirs in zip(out.hidden_states + out.attentions, ref.hidden_states + ref.attentions):
        np.testing.assert_allclose(ours.numpy(), theirs.numpy(), atol=1e-5)


@KERNELS
@pytest.mark.parametrize("architecture", ["VisualBertForPreTraining", "VisualBertForQuestionAnswering"])
def test_gradients_match_hf(architecture, cpu_kernels):
    """One backward pass: every parameter's gradient equals HF's (Linear weights transposed)."""
    config = tiny_config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, num_labels=9)
    hf_model = make_hf_model(config, architecture, seed=7)
    model = paddle_from_hf(hf_model, config, architecture)
    model.set_cpu_kernels(cpu_kernels)
    hf_model.train()
    model.train()
    inputs = make_inputs(config, architecture, seed=8)
    hf_loss = hf_model(**{k: torch.from_numpy(v) for k, v in inputs.items()}).loss
    hf_loss.backward()
    loss = model(**{k: paddle.to_tensor(v) for k, v in inputs.items()}).loss
    loss.backward()
    np.testing.assert_allclose(loss.item(), hf_loss.item(), rtol=1e-6)
    hf_grads = {n: p.grad.numpy() for n, p in hf_model.named_parameters() if p.grad is not None}
    # torch Linear weights are [out, in]: transposed exactly where torch has an nn.Linear.
    linear_weights = {f"{n}.weight" for n, m in hf_model.named_modules() if isinstance(m, torch.nn.Linear)}
    checked = 0
    for name, param in model.named_parameters():
        if name == "visual_bert.embeddings.word_embeddings.weight" and architecture == "VisualBertForPreTraining":
            ref = hf_grads[name]  # HF accumulates the tied decoder's gradient into the same tensor
        else:
            ref = hf_grads.get(name)
        if ref is None:
            assert param.grad is None or not np.any(param.grad.numpy()), name
            continue
        grad = param.grad.numpy()
        if name in linear_weights:
            ref = ref.T
        np.testing.assert_allclose(grad, ref, atol=2e-6, rtol=1e-4, err_msg=name)
        checked += 1
    assert checked >= 30


def _bypass_reference(hf_model, inputs):
    """The original bypass algorithm assembled from HF's (correct) building blocks: the text alone through
    the encoder with the text part of the mask, then text output + visual embeddings through the
    additional layer with the full mask, then the pooler."""
    feed = {k: torch.from_numpy(v) for k, v in inputs.items()}
    vb = hf_model
    with torch.no_grad():
        emb = vb.embeddings(input_ids=feed["input_ids"], token_type_ids=feed["token_type_ids"],
                            visual_embeds=feed["visual_embeds"], visual_token_type_ids=feed["visual_token_type_ids"])
        text_len = feed["input_ids"].shape[1]
        mask = torch.cat([feed["attention_mask"], feed["visual_attention_mask"]], dim=1).float()
        ext = (1.0 - mask)[:, None, None, :] * torch.finfo(torch.float32).min
        text_out = vb.encoder(emb[:, :text_len], attention_mask=ext[:, :, :, :text_len])[0]
        seq = vb.additional_layer(torch.cat([text_out, emb[:, text_len:]], dim=1), ext)[0]
        return seq.numpy(), vb.pooler(seq).numpy()


def test_bypass_transformer_follows_the_original_algorithm():
    config = tiny_config(bypass_transformer=True)
    hf_model = make_hf_model(config, "VisualBertModel", seed=9)
    model = paddle_from_hf(hf_model, config, "VisualBertModel")
    inputs = make_inputs(config, "VisualBertModel", seed=10, with_labels=False)
    expected_seq, expected_pooled = _bypass_reference(hf_model, inputs)
    with paddle.no_grad():
        out = model(**{k: paddle.to_tensor(v) for k, v in inputs.items()})
    np.testing.assert_allclose(out.last_hidden_state.numpy(), expected_seq, atol=1e-5)
    np.testing.assert_allclose(out.pooler_output.numpy(), expected_pooled, atol=1e-5)
    # And HF's own bypass path is indeed broken (it indexes the mask with an int instead of a slice).
    with pytest.raises(Exception):
        hf_model(**{k: torch.from_numpy(v) for k, v in inputs.items()})


def test_bypass_text_states_ignore_the_regions_until_the_last_layer():
    config = tiny_config(bypass_transformer=True)
    paddle.seed(1)
    model = VisualBertModel(config)
    model.eval()
    inputs = make_inputs(config, "VisualBertModel", seed=2, with_labels=False)
    other = dict(inputs, visual_embeds=inputs["visual_embeds"] + 1.0)
    a = model(**{k: paddle.to_tensor(v) for k, v in inputs.items()}, output_hidden_states=True)
    b = model(**{k: paddle.to_tensor(v) for k, v in other.items()}, output_hidden_states=True)
    text_len = inputs["input_ids"].shape[1]
    # encoder outputs (all but the additional layer's) are text-only and unaffected by the regions
    for ha, hb in zip(a.hidden_states[1:-1], b.hidden_states[1:-1]):
        assert ha.shape[1] == text_len
        np.testing.assert_allclose(ha.numpy(), hb.numpy(), atol=1e-6)
    assert not np.allclose(a.last_hidden_state.numpy(), b.last_hidden_state.numpy())


def test_image_text_alignment_is_the_mean_of_text_positions():
    """Hand-computed embedding of aligned regions: mean of the TEXT position rows + visual position row 0."""
    config = tiny_config(hidden_dropout_prob=0.0)
    paddle.seed(2)
    model = VisualBertModel(config)
    model.eval()
    emb = model.embeddings
    rng = np.random.RandomState(0)
    visual = rng.randn(1, 3, config.visual_embedding_dim).astype(np.float32)
    alignment = np.array([[[2, 5, -1], [-1, -1, -1], [7, -1, -1]]], dtype=np.int64)
    ids = np.array([[101, 1000, 1001, 1002, 1003, 1004, 1005, 1006, 102]], dtype=np.int64)
    with paddle.no_grad():
        out = emb(paddle.to_tensor(ids), visual_embeds=paddle.to_tensor(visual),
                  image_text_alignment=paddle.to_tensor(alignment))
        ln_input_hook = []
        handle = emb.LayerNorm.register_forward_pre_hook(lambda layer, inp: ln_input_hook.append(inp[0].numpy()))
        emb(paddle.to_tensor(ids), visual_embeds=paddle.to_tensor(visual), image_text_alignment=paddle.to_tensor(alignment))
        handle.remove()
    pre_norm = ln_input_hook[0][0, ids.shape[1]:]
    pos = emb.position_embeddings.weight.numpy()
    vpos0 = emb.visual_position_embeddings.weight.numpy()[0]
    vtype0 = emb.visual_token_type_embeddings.weight.numpy()[0]
    proj = visual[0] @ emb.visual_projection.weight.numpy() + emb.visual_projection.bias.numpy()
    expected = proj + vtype0 + vpos0 + np.stack([(pos[2] + pos[5]) / 2, np.zeros_like(pos[0]), pos[7]])
    np.testing.assert_allclose(pre_norm, expected, atol=1e-5)
    assert out.shape == [1, ids.shape[1] + 3, config.hidden_size]


def test_multiple_choice_alignment_works_where_hf_breaks():
    config = tiny_config()
    architecture = "VisualBertForMultipleChoice"
    hf_model = make_hf_model(config, architecture, seed=11)
    model = paddle_from_hf(hf_model, config, architecture)
    inputs = make_inputs(config, architecture, seed=12)
    with pytest.raises(Exception):  # HF passes [B, C, V, A] unflattened into the embeddings
        with torch.no_grad():
            hf_model(**{k: torch.from_numpy(v) for k, v in inputs.items()})
    ours = run_paddle(model, inputs, architecture)
    reference = run_hf(hf_model, inputs, architecture)  # fed pre-flattened alignment
    np.testing.assert_allclose(ours["logits"], reference["logits"], atol=1e-5)


def test_multiple_choice_shared_regions_equal_repeated_regions():
    config = tiny_config()
    paddle.seed(3)
    model = VisualBertForMultipleChoice(config)
    model.eval()
    inputs = make_inputs(config, "VisualBertForMultipleChoice", seed=13, with_labels=False)
    for key in ("visual_embeds", "visual_attention_mask", "visual_token_type_ids"):
        inputs[key] = np.repeat(inputs[key][:, :1], inputs["input_ids"].shape[1], axis=1)
    shared = dict(inputs)
    for key in ("visual_embeds", "visual_attention_mask", "visual_token_type_ids"):
        shared[key] = inputs[key][:, 0]
    a = model(**{k: paddle.to_tensor(v) for k, v in inputs.items()}).logits.numpy()
    b = model(**{k: paddle.to_tensor(v) for k, v in shared.items()}).logits.numpy()
    np.testing.assert_allclose(a, b, atol=1e-6)
    assert a.shape == (inputs["input_ids"].shape[0], inputs["input_ids"].shape[1])


def test_vqa_reads_the_mask_token_before_the_last_sep():
    """The classifier reads the backbone's hidden state at sum(mask)-2, the [MASK] token of the right-padded
    "[CLS] q ? [MASK] [SEP]" (an index check; the values themselves are compared with HF elsewhere)."""
    config = tiny_config(num_labels=5)
    paddle.seed(4)
    model = VisualBertForQuestionAnswering(config)
    model.eval()
    inputs = make_inputs(config, "VisualBertForQuestionAnswering", seed=14, with_labels=False)
    feed = {k: paddle.to_tensor(v) for k, v in inputs.items()}
    with paddle.no_grad():
        logits = model(**feed).logits.numpy()
        hidden = model.visual_bert(**feed).last_hidden_state.numpy()
    index = inputs["attention_mask"].sum(1) - 2
    assert (inputs["input_ids"][np.arange(len(index)), index] == 103).all()  # [MASK]
    gathered = hidden[np.arange(len(index)), index]
    expected = gathered @ model.cls.weight.numpy() + model.cls.bias.numpy()
    np.testing.assert_allclose(logits, expected, atol=1e-5)


def test_visual_token_types_default_to_zero():
    """Unlike HF (which defaults to 1), missing visual token types mean type 0, the checkpoints' convention
    for VQA, COCO and VCR."""
    config = tiny_config()
    paddle.seed(5)
    model = VisualBertModel(config)
    model.eval()
    inputs = make_inputs(config, "VisualBertModel", seed=15, with_labels=False)
    zeros = dict(inputs, visual_token_type_ids=np.zeros_like(inputs["visual_token_type_ids"]))
    without = {k: v for k, v in inputs.items() if k != "visual_token_type_ids"}
    a = model(**{k: paddle.to_tensor(v) for k, v in zeros.items()}).last_hidden_state.numpy()
    b = model(**{k: paddle.to_tensor(v) for k, v in without.items()}).last_hidden_state.numpy()
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_kl_loss_on_hand_computed_case():
    """KL(batchmean) of soft scores against log_softmax, by hand: sum_t t*(log t - log p) / B."""
    from visualbert.modeling import _kl_div_batchmean

    logits = np.array([[1.0, 2.0, 0.5], [0.0, 0.0, 0.0]], dtype=np.float32)
    target = np.array([[1.0, 0.3, 0.0], [0.0, 0.6, 0.0]], dtype=np.float32)
    logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    expected = (1.0 * (0 - logp[0, 0]) + 0.3 * (np.log(0.3) - logp[0, 1]) + 0.6 * (np.log(0.6) - logp[1, 1])) / 2
    got = _kl_div_batchmean(paddle.nn.functional.log_softmax(paddle.to_tensor(logits), -1), paddle.to_tensor(target))
    np.testing.assert_allclose(got.item(), expected, rtol=1e-6)


def test_mlm_loss_ignores_minus_100_like_torch():
    config = tiny_config()
    paddle.seed(6)
    model = VisualBertForPreTraining(config)
    model.eval()
    inputs = make_inputs(config, "VisualBertForPreTraining", seed=16)
    inputs.pop("sentence_image_labels")
    with paddle.no_grad():
        out = model(**{k: paddle.to_tensor(v) for k, v in inputs.items()})
    logits = torch.from_numpy(out.prediction_logits.numpy()).reshape(-1, config.vocab_size)
    expected = torch.nn.functional.cross_entropy(logits, torch.from_numpy(inputs["labels"]).reshape(-1))
    np.testing.assert_allclose(out.loss.item(), expected.item(), rtol=1e-5)


# ------------------------------------------------------------------------------------------ bad input
def _vqa_model_and_inputs():
    config = tiny_config(num_labels=5)
    paddle.seed(7)
    model = VisualBertForQuestionAnswering(config)
    model.eval()
    return model, make_inputs(config, "VisualBertForQuestionAnswering", seed=17, with_labels=False)


def test_wrong_visual_width_is_a_clear_error():
    model, inputs = _vqa_model_and_inputs()
    inputs["visual_embeds"] = np.zeros(inputs["visual_embeds"].shape[:2] + (2048,), dtype=np.float32)
    with pytest.raises(ValueError, match=f"feature width 2048.*visual_embedding_dim={model.config.visual_embedding_dim}"):
        model(**{k: paddle.to_tensor(v) for k, v in inputs.items()})


def test_batch_mismatch_is_a_clear_error():
    model, inputs = _vqa_model_and_inputs()
    for key in ("visual_embeds", "visual_attention_mask", "visual_token_type_ids"):
        inputs[key] = inputs[key][:-1]
    with pytest.raises(ValueError, match="batch size mismatch"):
        model(**{k: paddle.to_tensor(v) for k, v in inputs.items()})


def test_vqa_without_attention_mask_is_a_clear_error():
    model, inputs = _vqa_model_and_inputs()
    inputs.pop("attention_mask")
    with pytest.raises(ValueError, match="needs attention_mask"):
        model(**{k: paddle.to_tensor(v) for k, v in inputs.items()})


def test_wrong_mlm_label_length_is_a_clear_error():
    config = tiny_config()
    model = VisualBertForPreTraining(config)
    inputs = make_inputs(config, "VisualBertForPreTraining", seed=18)
    inputs["labels"] = inputs["labels"][:, : inputs["input_ids"].shape[1]]
    with pytest.raises(ValueError, match="expected text \\+ visual length"):
        model(**{k: paddle.to_tensor(v) for k, v in inputs.items()})


def test_text_longer_than_positions_is_a_clear_error():
    config = tiny_config(max_position_embeddings=8)
    model = VisualBertModel(config)
    with pytest.raises(ValueError, match="max_position_embeddings=8"):
        model(paddle.ones([1, 9], dtype="int64"))


# ------------------------------------------------------------------------------------------ save / load
def test_save_and_load_round_trip(tmp_path):
    config = tiny_config(num_labels=5)
    paddle.seed(8)
    model = VisualBertForQuestionAnswering(config)
    model.eval()
    inputs = make_inputs(config, "VisualBertForQuestionAnswering", seed=19, with_labels=False)
    model.save_pretrained(str(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model_state.pdparams"]
    loaded = load_pretrained(str(tmp_path))
    assert type(loaded) is VisualBertForQuestionAnswering and loaded.config.num_labels == 5
    feed = {k: paddle.to_tensor(v) for k, v in inputs.items()}
    np.testing.assert_array_equal(model(**feed).logits.numpy(), loaded(**feed).logits.numpy())


def test_bare_model_from_head_checkpoint_and_back(tmp_path, caplog):
    config = tiny_config()
    paddle.seed(9)
    head = VisualBertForPreTraining(config)
    head.save_pretrained(str(tmp_path / "head"))
    with caplog.at_level(logging.WARNING):
        bare, info = VisualBertModel.from_pretrained(str(tmp_path / "head"), output_loading_info=True)
    assert info["missing_keys"] == []
    assert info["unexpected_keys"] and all(k.startswith("cls.") for k in info["unexpected_keys"])
    assert "not used" in caplog.text
    np.testing.assert_array_equal(bare.encoder.layer[0].output.dense.weight.numpy(),
                                  head.visual_bert.encoder.layer[0].output.dense.weight.numpy())
    bare.save_pretrained(str(tmp_path / "bare"))
    vqa, info = VisualBertForQuestionAnswering.from_pretrained(str(tmp_path / "bare"), output_loading_info=True,
                                                                num_labels=7)
    assert info["missing_keys"] == ["cls.bias", "cls.weight"] and info["unexpected_keys"] == []
    np.testing.assert_array_equal(vqa.visual_bert.embeddings.word_embeddings.weight.numpy(),
                                  head.visual_bert.embeddings.word_embeddings.weight.numpy())


def test_loading_a_mismatched_head_fails_unless_asked(tmp_path):
    config = tiny_config(num_labels=5)
    VisualBertForQuestionAnswering(config).save_pretrained(str(tmp_path))
    with pytest.raises(ValueError, match="cls.weight.*shape"):
        VisualBertForQuestionAnswering.from_pretrained(str(tmp_path), num_labels=9)
    model, info = VisualBertForQuestionAnswering.from_pretrained(str(tmp_path), num_labels=9,
                                                                 ignore_mismatched_sizes=True, output_loading_info=True)
    assert {k for k, _, _ in info["mismatched_keys"]} == {"cls.weight", "cls.bias"}


def test_from_pretrained_missing_directory_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        VisualBertModel.from_pretrained(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="model_state.pdparams"):
        VisualBertModel.from_pretrained(str(tmp_path / "empty"))


def test_special_visual_initialize_copies_text_tables():
    config = tiny_config(special_visual_initialize=True)
    paddle.seed(10)
    model = VisualBertModel(config)
    emb = model.embeddings
    np.testing.assert_array_equal(emb.visual_position_embeddings.weight.numpy(), emb.position_embeddings.weight.numpy())
    np.testing.assert_array_equal(emb.visual_token_type_embeddings.weight.numpy(), emb.token_type_embeddings.weight.numpy())


def test_hf_config_round_trip():
    """Our config translates to an HF config with the same architecture-defining fields."""
    config = tiny_config(bypass_transformer=True, num_labels=4)
    hf = hf_config(config)
    for field in ("hidden_size", "num_hidden_layers", "visual_embedding_dim", "layer_norm_eps", "bypass_transformer"):
        assert getattr(hf, field) == getattr(config, field)
    assert hf.num_labels == 4
    assert isinstance(hf, transformers.VisualBertConfig)


# ------------------------------------------------------------------------------------------ strict model API
def test_the_kernel_paths_really_differ_and_are_chosen_at_build():
    # The two paths must take different ops, or running the parity tests on both would check nothing twice.
    import visualbert.modeling as modeling

    model = VisualBertForVisualReasoning(tiny_config())
    assert all(layer.cpu_kernels for layer in model.sublayers(include_self=True))  # built on CPU
    x, w, b = paddle.rand([2, 3, 4]), paddle.rand([4, 5]), paddle.rand([5])
    calls = []
    original = paddle.addmm
    try:
        paddle.addmm = lambda *a, **k: calls.append(1) or original(*a, **k)
        with paddle.no_grad():
            fast = modeling._linear(x, w, b, True)
            portable = modeling._linear(x, w, b, False)
    finally:
        paddle.addmm = original
    assert len(calls) == 1
    np.testing.assert_allclose(fast.numpy(), portable.numpy(), rtol=1e-6)
    mask = paddle.zeros([2, 1, 1, 3])
    assert VisualBertModel.expand_attention_mask(mask, x, 2, False).shape == [2, 1, 1, 3]
    # the C++ softmax reads the mask broadcast; without the extension the CPU path expands it once
    expected = [2, 1, 1, 3] if modeling.kernels.applies(x) else [2, 2, 3, 3]
    assert VisualBertModel.expand_attention_mask(mask, x, 2, True).shape == expected


def test_cpu_path_runs_the_cpp_kernels_and_the_portable_path_does_not(monkeypatch):
    """Training step of a tiny model: which of dropout / LayerNorm / masked softmax went through the kernels."""
    import visualbert.kernels as kernels

    if kernels.load_cpu_kernels() is None:
        pytest.skip(f"C++ extension not built here: {kernels.status()['error']}")
    module = kernels._state["module"]
    used = []

    class Spy:
        def __getattr__(self, name):
            used.append(name)
            return getattr(module, name)

    monkeypatch.setitem(kernels._state, "module", Spy())
    inputs = make_inputs(tiny_config(), "VisualBertForVisualReasoning", seed=3, with_labels=True)
    for cpu_kernels in (True, False):
        used.clear()
        paddle.seed(0)
        model = VisualBertForVisualReasoning(tiny_config())
        model.set_cpu_kernels(cpu_kernels)
        model.train()
        model(**{k: paddle.to_tensor(v) for k, v in inputs.items()})["loss"].backward()
        ops = set(used) - {"visualbert_gelu"}  # GELU takes the kernel on both paths (exact to float32)
        expected = {"visualbert_dropout", "visualbert_layer_norm", "visualbert_masked_softmax", "visualbert_split_heads",
                    "visualbert_merge_heads"}
        assert ops == (expected if cpu_kernels else set()), cpu_kernels


def test_model_output_raises_attribute_error_for_a_missing_name():
    model = VisualBertForVisualReasoning(tiny_config())
    inputs = make_inputs(model.config, "VisualBertForVisualReasoning", seed=1, with_labels=False)
    with paddle.no_grad():
        out = model(**{k: paddle.to_tensor(v) for k, v in inputs.items()})
    assert out.logits.shape[-1] == 2 and "loss" not in out and out.get("loss") is None
    with pytest.raises(AttributeError, match="'loss'"):
        out.loss  # noqa: B018
    with pytest.raises(AttributeError, match="'logit'"):
        out.logit  # noqa: B018


def test_heads_reject_a_misspelt_argument():
    model = VisualBertForQuestionAnswering(tiny_config(num_labels=3))
    inputs = {k: paddle.to_tensor(v) for k, v in make_inputs(model.config, "VisualBertForQuestionAnswering", seed=2).items()}
    with pytest.raises(TypeError, match="output_hidden_state"):
        model(**inputs, output_hidden_state=True)


@pytest.mark.parametrize("cls", [VisualBertModel, VisualBertForPreTraining, VisualBertForQuestionAnswering,
                                 VisualBertForVisualReasoning, VisualBertForMultipleChoice])
def test_weights_are_initialised_once_per_model(cls, monkeypatch):
    from visualbert.modeling import VisualBertPreTrainedModel

    calls = []
    original = VisualBertPreTrainedModel.init_weights
    monkeypatch.setattr(VisualBertPreTrainedModel, "init_weights", lambda self: calls.append(type(self)) or original(self))
    cls(tiny_config())
    assert calls == [cls]
