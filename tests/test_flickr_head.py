"""The region-to-phrase head on collated synthetic Flickr30K batches, against the original's definitions
(``FlickrAttention`` and the KL-divergence loss of ``pytorch_pretrained_bert/modeling.py``)."""

import math

import numpy as np
import pytest


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    from visualbert.data import Collator
    from visualbert.data.flickr30k import Flickr30KDataset
    from visualbert.data.synthetic_flickr import generate_flickr30k
    from visualbert.tokenizer import load_tokenizer

    out = tmp_path_factory.mktemp("flickr")
    generate_flickr30k(str(out), images={"train": 1, "val": 3, "test": 1}, feature_dim=32, write_npy=False)
    ds = Flickr30KDataset(str(out), "val", str(out), load_tokenizer())
    samples = [ds[i] for i in range(0, len(ds), 4)][:4]
    assert len({s["visual_embeds"].shape[0] for s in samples}) > 1 or len({len(s["labels"]) for s in samples}) > 1
    return Collator(return_tensors="np")(samples)


def test_head_logits_and_loss_follow_the_original(batch):
    import paddle
    import torch

    from visualbert.configuration import VisualBertConfig
    from visualbert.modeling import VisualBertForRegionToPhraseAlignment

    paddle.seed(0)
    config = VisualBertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                              visual_embedding_dim=batch["visual_embeds"].shape[-1])
    model = VisualBertForRegionToPhraseAlignment(config)
    model.eval()
    inputs = {k: paddle.to_tensor(batch[k]) for k in ("input_ids", "attention_mask", "token_type_ids", "visual_embeds",
                                                      "visual_attention_mask", "visual_token_type_ids",
                                                      "region_to_phrase_position", "labels")}
    out = model(**inputs)
    hidden = model.visual_bert(inputs["input_ids"], inputs["attention_mask"], inputs["token_type_ids"], None,
                               inputs["visual_embeds"], inputs["visual_attention_mask"],
                               inputs["visual_token_type_ids"]).last_hidden_state.numpy().astype(np.float64)

    # FlickrAttention: one head of size hidden / heads, query on the phrase token (padding position -1 -> 0),
    # key on the region states, scaled dot product, (1 - mask) * -10000 on padding regions.
    T = batch["input_ids"].shape[1]
    pos = np.maximum(batch["region_to_phrase_position"], 0)
    phrases = np.take_along_axis(hidden, pos[:, :, None], axis=1)
    regions = hidden[:, T:]
    att = model.attention
    q = phrases @ att.query.weight.numpy() + att.query.bias.numpy()  # paddle Linear weight is [in, out]
    k = regions @ att.key.weight.numpy() + att.key.bias.numpy()
    expected = q @ k.transpose(0, 2, 1) / math.sqrt(config.hidden_size // config.num_attention_heads)
    expected = expected + (1.0 - batch["visual_attention_mask"][:, None, :]) * -10000.0
    logits = out.logits.numpy()
    real = batch["visual_attention_mask"][:, None, :].astype(bool).repeat(logits.shape[1], 1)
    np.testing.assert_allclose(logits[real], expected[real], rtol=1e-4, atol=1e-5)

    # the original's loss: KLDivLoss(reduction="batchmean")(log_softmax(scores), label), label zero on padding
    reference = torch.nn.KLDivLoss(reduction="batchmean")(
        torch.log_softmax(torch.tensor(expected), dim=-1), torch.tensor(batch["labels"], dtype=torch.float64))
    assert float(out.loss) == pytest.approx(float(reference), rel=1e-4)
    assert batch["labels"].sum() > 0 and (batch["region_to_phrase_position"] == -1).any()
