"""An independent Paddle transcription of the contest port's VisualBERT (chenkangyang's PaddleNLP fork,
``paddlenlp/transformers/visualbert/modeling.py``), written from its public description, for conversion tests.

Only what decides the saved names and the forward numbers is kept: ``paddle.nn.TransformerEncoder`` with post-norm
``TransformerEncoderLayer`` (``act_dropout=0``), embeddings with ``layer_norm`` and a persistent ``position_ids``
buffer, the word table built with ``padding_idx=pad_token_id`` (1), every LayerNorm epsilon set to 1e-12 after
construction (as the port's ``init_weights`` does), the MLM head with a ``transform`` Linear, ``layer_norm`` and
the decoder weight *shared* with the word table ([vocab, hidden], used transposed in a matmul) plus
``decoder_bias``; the additive mask ``(1 - m) * -10000``; the VQA head on ``attention_mask.sum(1) - 2``.
"""

import paddle
import paddle.nn as nn
import paddle.nn.functional as F


class ContestEmbeddings(nn.Layer):
    def __init__(self, vocab, hidden, visual_dim, max_positions, type_vocab, pad_token_id=1):
        super().__init__()
        self.word_embeddings = nn.Embedding(vocab, hidden, padding_idx=pad_token_id)
        self.position_embeddings = nn.Embedding(max_positions, hidden)
        self.token_type_embeddings = nn.Embedding(type_vocab, hidden)
        self.layer_norm = nn.LayerNorm(hidden, epsilon=1e-12)
        self.dropout = nn.Dropout(0.0)
        self.register_buffer("position_ids", paddle.arange(max_positions).expand((1, -1)))
        self.visual_token_type_embeddings = nn.Embedding(type_vocab, hidden)
        self.visual_position_embeddings = nn.Embedding(max_positions, hidden)
        self.visual_projection = nn.Linear(visual_dim, hidden)

    def forward(self, input_ids, token_type_ids, visual_embeds, visual_token_type_ids, image_text_alignment=None):
        seq_length = input_ids.shape[1]
        embeddings = (self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids)
                      + self.position_embeddings(self.position_ids[:, :seq_length]))
        visual = self.visual_projection(visual_embeds)
        visual_types = self.visual_token_type_embeddings(visual_token_type_ids)
        zeros = paddle.zeros(visual_embeds.shape[:-1], dtype="int64")
        if image_text_alignment is not None:
            valid = (image_text_alignment != -1).astype("int64")
            positions = self.position_embeddings(valid * image_text_alignment)
            positions = (positions * valid.astype("float32").unsqueeze(-1)).sum(2)
            count = valid.astype("float32").sum(2)
            count = paddle.where(count == 0, paddle.ones_like(count), count)
            visual_positions = positions / count.unsqueeze(-1) + self.visual_position_embeddings(zeros)
        else:
            visual_positions = self.visual_position_embeddings(zeros)
        embeddings = paddle.concat([embeddings, visual + visual_positions + visual_types], axis=1)
        return self.dropout(self.layer_norm(embeddings))


class ContestEncoder(nn.Layer):
    def __init__(self, hidden, layers, heads, intermediate):
        super().__init__()
        layer = nn.TransformerEncoderLayer(hidden, heads, intermediate, dropout=0.0, activation="gelu",
                                           attn_dropout=0.0, act_dropout=0)
        self.layer = nn.TransformerEncoder(layer, layers)

    def forward(self, hidden_states, attention_mask):
        for layer_module in self.layer.layers:
            hidden_states = layer_module(hidden_states, attention_mask)
        return hidden_states


class ContestPooler(nn.Layer):
    def __init__(self, hidden):
        super().__init__()
        self.dense = nn.Linear(hidden, hidden)

    def forward(self, hidden_states):
        return paddle.tanh(self.dense(hidden_states[:, 0]))


class ContestVisualBertModel(nn.Layer):
    def __init__(self, vocab=40, hidden=32, visual_dim=12, layers=2, heads=2, intermediate=48, max_positions=64,
                 type_vocab=2):
        super().__init__()
        self.hidden = hidden
        self.vocab = vocab
        self.embeddings = ContestEmbeddings(vocab, hidden, visual_dim, max_positions, type_vocab)
        self.encoder = ContestEncoder(hidden, layers, heads, intermediate)
        self.pooler = ContestPooler(hidden)
        for sub in self.sublayers():
            if isinstance(sub, nn.LayerNorm):
                sub._epsilon = 1e-12  # the port's init_weights does this to every LayerNorm

    def forward(self, input_ids, attention_mask, token_type_ids, visual_embeds, visual_attention_mask,
                visual_token_type_ids, image_text_alignment=None):
        combined = paddle.concat([attention_mask.astype("float32"), visual_attention_mask.astype("float32")], axis=-1)
        length = combined.shape[1]
        extended = paddle.concat([combined[b].broadcast_to([length, length]).unsqueeze(0).unsqueeze(0)
                                  for b in range(combined.shape[0])], axis=0)
        extended = (1.0 - extended) * -10000.0
        hidden = self.embeddings(input_ids, token_type_ids, visual_embeds, visual_token_type_ids, image_text_alignment)
        sequence = self.encoder(hidden, extended)
        return sequence, self.pooler(sequence)


class ContestLMPredictionHead(nn.Layer):
    def __init__(self, hidden, vocab, embedding_weights):
        super().__init__()
        self.transform = nn.Linear(hidden, hidden)
        self.layer_norm = nn.LayerNorm(hidden, epsilon=1e-12)
        self.decoder_weight = embedding_weights
        self.decoder_bias = self.create_parameter(shape=[vocab], dtype="float32", is_bias=True)

    def forward(self, hidden_states):
        hidden_states = self.layer_norm(F.gelu(self.transform(hidden_states)))
        return paddle.matmul(hidden_states, self.decoder_weight, transpose_y=True) + self.decoder_bias


class ContestPreTrainingHeads(nn.Layer):
    def __init__(self, hidden, vocab, embedding_weights):
        super().__init__()
        self.predictions = ContestLMPredictionHead(hidden, vocab, embedding_weights)
        self.seq_relationship = nn.Linear(hidden, 2)


class ContestForPreTraining(nn.Layer):
    def __init__(self, **sizes):
        super().__init__()
        self.visual_bert = ContestVisualBertModel(**sizes)
        self.cls = ContestPreTrainingHeads(self.visual_bert.hidden, self.visual_bert.vocab,
                                           self.visual_bert.embeddings.word_embeddings.weight)

    def forward(self, **inputs):
        sequence, pooled = self.visual_bert(**inputs)
        return self.cls.predictions(sequence), self.cls.seq_relationship(pooled)


class ContestForQuestionAnswering(nn.Layer):
    def __init__(self, num_classes, **sizes):
        super().__init__()
        self.visual_bert = ContestVisualBertModel(**sizes)
        self.cls = nn.Linear(self.visual_bert.hidden, num_classes)

    def forward(self, **inputs):
        index = inputs["attention_mask"].sum(1) - 2
        sequence, _ = self.visual_bert(**inputs)
        gathered = paddle.concat([paddle.gather(sequence[b], index[b:b + 1], axis=0) for b in range(sequence.shape[0])],
                                 axis=0)
        return self.cls(gathered)


class ContestForVisualReasoning(nn.Layer):
    def __init__(self, num_classes=2, **sizes):
        super().__init__()
        self.visual_bert = ContestVisualBertModel(**sizes)
        self.cls = nn.Linear(self.visual_bert.hidden, num_classes)

    def forward(self, **inputs):
        _, pooled = self.visual_bert(**inputs)
        return self.cls(pooled)


class ContestForMultipleChoice(nn.Layer):
    def __init__(self, num_classes=1, **sizes):
        super().__init__()
        self.visual_bert = ContestVisualBertModel(**sizes)
        self.cls = nn.Linear(self.visual_bert.hidden, num_classes)

    def forward(self, **inputs):
        num_choices = inputs["input_ids"].shape[1]
        flat = {k: (v.reshape([-1] + list(v.shape[2:])) if v is not None else None) for k, v in inputs.items()}
        _, pooled = self.visual_bert(**flat)
        return self.cls(pooled).reshape([-1, num_choices])


def randomise(model, seed):
    """Every parameter drawn at random (LayerNorm weights around 1), so a swapped or missed key shows."""
    paddle.seed(seed)
    for name, param in model.named_parameters():
        values = paddle.randn(param.shape, dtype="float32") * 0.2
        if name.endswith("norm1.weight") or name.endswith("norm2.weight") or name.endswith("layer_norm.weight"):
            values = values * 0.5 + 1.0
        param.set_value(values)
    return model
