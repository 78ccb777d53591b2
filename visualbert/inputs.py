"""Random but realistic model inputs for a config and a head (numpy, no framework): the example inputs of the
export check (``tools/export_model.py``), the benchmarks, the parity comparison (``compare/``) and the tests."""

from __future__ import annotations

import numpy as np

from .constants import ALIGNMENT_PAD, IGNORE_INDEX

CLS_ID, SEP_ID, MASK_ID, PAD_ID = 101, 102, 103, 0


def make_inputs(config, architecture, batch_size=3, text_len=16, num_regions=10, num_choices=4, alignment_slots=3,
                num_phrases=4, seed=0, with_labels=True):
    """Random but realistic inputs as numpy arrays, named like the model arguments.

    Texts have different lengths (right-padded, ``[CLS] ... [SEP]``, VQA ``... [MASK] [SEP]``), examples have
    different numbers of valid regions (visual mask with zeros), NLVR2 (2 labels, pairs of images) uses visual
    token types 0/1, multiple choice has ``num_choices`` sequences and ``image_text_alignment``.
    """
    rng = np.random.RandomState(seed)
    multiple_choice = architecture == "VisualBertForMultipleChoice"
    rows = batch_size * num_choices if multiple_choice else batch_size

    lengths = rng.randint(max(4, text_len // 2), text_len + 1, size=rows)
    lengths[0] = text_len  # at least one unpadded row
    input_ids = np.full((rows, text_len), PAD_ID, dtype=np.int64)
    token_type_ids = np.zeros((rows, text_len), dtype=np.int64)
    attention_mask = np.zeros((rows, text_len), dtype=np.int64)
    for r, n in enumerate(lengths):
        input_ids[r, :n] = rng.randint(1000, config.vocab_size, size=n)
        input_ids[r, 0], input_ids[r, n - 1] = CLS_ID, SEP_ID
        if architecture == "VisualBertForQuestionAnswering":
            input_ids[r, n - 2] = MASK_ID
        attention_mask[r, :n] = 1
        if architecture in ("VisualBertForPreTraining", "VisualBertForMultipleChoice"):
            second = rng.randint(2, n - 1)
            token_type_ids[r, second:n] = 1  # "[CLS] A [SEP] B [SEP]" pairs

    visual_embeds = rng.randn(rows, num_regions, config.visual_embedding_dim).astype(np.float32)
    valid_regions = rng.randint(max(1, num_regions // 2), num_regions + 1, size=rows)
    valid_regions[-1] = num_regions
    visual_attention_mask = (np.arange(num_regions)[None, :] < valid_regions[:, None]).astype(np.int64)
    visual_embeds *= visual_attention_mask[:, :, None]  # padded regions are zero vectors, as a collator makes them
    visual_token_type_ids = np.zeros((rows, num_regions), dtype=np.int64)
    if architecture == "VisualBertForVisualReasoning" or (config.visual_embedding_dim == 1024 and architecture == "VisualBertForPreTraining"):
        visual_token_type_ids[:, num_regions // 2:] = 1  # left image 0, right image 1

    inputs = dict(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                  visual_embeds=visual_embeds, visual_attention_mask=visual_attention_mask,
                  visual_token_type_ids=visual_token_type_ids)

    if multiple_choice:
        alignment = rng.randint(1, text_len - 1, size=(rows, num_regions, alignment_slots)).astype(np.int64)
        alignment[rng.rand(*alignment.shape) < 0.4] = ALIGNMENT_PAD
        alignment[:, 0, :] = ALIGNMENT_PAD  # a region with no alignment at all
        inputs["image_text_alignment"] = alignment
        inputs = {k: v.reshape((batch_size, num_choices) + v.shape[1:]) for k, v in inputs.items()}

    if architecture == "VisualBertForRegionToPhraseAlignment":
        positions = rng.randint(1, text_len - 1, size=(batch_size, num_phrases)).astype(np.int64)
        positions[:, -1] = ALIGNMENT_PAD
        inputs["region_to_phrase_position"] = positions

    if not with_labels:
        return inputs
    if architecture == "VisualBertForPreTraining":
        labels = np.full((batch_size, text_len + num_regions), IGNORE_INDEX, dtype=np.int64)
        chosen = (rng.rand(batch_size, text_len) < 0.3) & (attention_mask == 1)
        chosen[:, 1] = True
        labels[:, :text_len][chosen] = rng.randint(0, config.vocab_size, size=int(chosen.sum()))
        inputs["labels"] = labels
        inputs["sentence_image_labels"] = rng.randint(0, 2, size=batch_size).astype(np.int64)
    elif architecture == "VisualBertForQuestionAnswering":
        scores = np.zeros((batch_size, config.num_labels), dtype=np.float32)
        for b in range(batch_size):
            picks = rng.choice(config.num_labels, size=3, replace=False)
            scores[b, picks] = [1.0, 0.6, 0.3]  # min(0.3 * count, 1) for counts 4, 2, 1
        inputs["labels"] = scores
    elif architecture in ("VisualBertForVisualReasoning",):
        inputs["labels"] = rng.randint(0, config.num_labels, size=batch_size).astype(np.int64)
    elif architecture == "VisualBertForMultipleChoice":
        inputs["labels"] = rng.randint(0, num_choices, size=batch_size).astype(np.int64)
    elif architecture == "VisualBertForRegionToPhraseAlignment":
        target = rng.rand(batch_size, num_phrases, num_regions).astype(np.float32)
        target *= visual_attention_mask[:, None, :]  # no mass on padded regions
        inputs["labels"] = target / target.sum(-1, keepdims=True)
    return inputs
