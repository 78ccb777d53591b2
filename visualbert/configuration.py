"""VisualBERT configuration and the table of the nine released checkpoints."""

import copy
import json
import os

from .fileio import atomic_path

CONFIG_NAME = "config.json"


class VisualBertConfig:
    """Hyper-parameters of a VisualBERT model (names and defaults as in HF ``VisualBertConfig``).

    Args:
        vocab_size (int): WordPiece vocabulary size.
        hidden_size (int): width of the transformer.
        visual_embedding_dim (int): width D of the detector region features fed as ``visual_embeds``
            (2048 VQA, 1024 NLVR2, 512 VCR).
        num_hidden_layers (int): number of encoder layers.
        num_attention_heads (int): attention heads per layer.
        intermediate_size (int): feed-forward width.
        hidden_act (str): feed-forward activation; ``"gelu"`` is the exact (erf) GELU.
        hidden_dropout_prob (float): dropout on embeddings and sub-layer outputs.
        attention_probs_dropout_prob (float): dropout on attention probabilities.
        max_position_embeddings (int): size of the (text and visual) position tables.
        type_vocab_size (int): size of the (text and visual) token-type tables.
        initializer_range (float): std of the normal initialisation.
        layer_norm_eps (float): LayerNorm epsilon (1e-12 as in BERT, not Paddle's 1e-5 default).
        bypass_transformer (bool): run only the text through the encoder, then text + regions through one
            extra layer.
        special_visual_initialize (bool): initialise the visual token-type / position tables from the text ones
            (see :meth:`VisualBertPreTrainedModel.init_visual_tables_from_text`).
        num_labels (int): output size of the classification heads (3129 for VQA, 2 for NLVR2).
        pad_token_id (int): kept for HF compatibility only; no embedding row is zeroed.
        architectures (list[str]): the head class the weights were saved from.
        detector (dict, optional): :class:`visualbert.detector.DetectorConfig` fields of the VCR models that
            compute their own region features (``VisualBertForVCR*``); None elsewhere.
        cnn_loss_ratio (float): weight of the detector's ``cnn_regularization_loss`` in the VCR loss (the
            original's ``cnn_loss_ratio``, 0.0 in every released config).
    """

    model_type = "visual_bert"

    def __init__(
        self,
        vocab_size=30522,
        hidden_size=768,
        visual_embedding_dim=512,
        num_hidden_layers=12,
        num_attention_heads=12,
        intermediate_size=3072,
        hidden_act="gelu",
        hidden_dropout_prob=0.1,
        attention_probs_dropout_prob=0.1,
        max_position_embeddings=512,
        type_vocab_size=2,
        initializer_range=0.02,
        layer_norm_eps=1e-12,
        bypass_transformer=False,
        special_visual_initialize=True,
        num_labels=2,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        architectures=None,
        detector=None,
        cnn_loss_ratio=0.0,
        **extra,
    ):
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.visual_embedding_dim = visual_embedding_dim
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.intermediate_size = intermediate_size
        self.hidden_act = hidden_act
        self.hidden_dropout_prob = hidden_dropout_prob
        self.attention_probs_dropout_prob = attention_probs_dropout_prob
        self.max_position_embeddings = max_position_embeddings
        self.type_vocab_size = type_vocab_size
        self.initializer_range = initializer_range
        self.layer_norm_eps = layer_norm_eps
        self.bypass_transformer = bypass_transformer
        self.special_visual_initialize = special_visual_initialize
        # HF stores the label count as id2label; accept either.
        if "id2label" in extra and extra["id2label"]:
            num_labels = len(extra.pop("id2label"))
            extra.pop("label2id", None)
        self.num_labels = num_labels
        self.pad_token_id = pad_token_id
        self.bos_token_id = bos_token_id
        self.eos_token_id = eos_token_id
        self.architectures = list(architectures) if architectures else None
        self.detector = dict(detector) if detector else None
        self.cnn_loss_ratio = float(cnn_loss_ratio)
        if hidden_size % num_attention_heads != 0:
            raise ValueError(f"hidden_size {hidden_size} is not a multiple of num_attention_heads {num_attention_heads}")

    def to_dict(self):
        out = copy.deepcopy(self.__dict__)
        out["model_type"] = self.model_type
        return out

    @classmethod
    def from_dict(cls, values):
        values = dict(values)
        values.pop("model_type", None)
        # Keys of HF configs that mean nothing here (torch_dtype, transformers_version, ...).
        known = set(cls().__dict__) | {"id2label", "label2id"}
        return cls(**{k: v for k, v in values.items() if k in known})

    def save_pretrained(self, save_directory):
        with atomic_path(os.path.join(save_directory, CONFIG_NAME)) as tmp:
            with open(tmp, "w") as f:
                json.dump(self.to_dict(), f, indent=2, sort_keys=True)

    @classmethod
    def from_pretrained(cls, path, **overrides):
        """Reads ``config.json`` from a directory (or the file itself); keyword arguments override fields."""
        file = os.path.join(path, CONFIG_NAME) if os.path.isdir(path) else path
        if not os.path.isfile(file):
            raise FileNotFoundError(f"no {CONFIG_NAME} in {path!r}")
        try:
            with open(file) as f:
                values = json.load(f)
        except json.JSONDecodeError as err:
            raise ValueError(f"{file} is not valid JSON: {err}") from None
        values.update(overrides)
        return cls.from_dict(values)

    def __eq__(self, other):
        return isinstance(other, VisualBertConfig) and self.to_dict() == other.to_dict()

    def __repr__(self):
        return f"VisualBertConfig({json.dumps(self.to_dict(), sort_keys=True)})"


# The nine released checkpoints (``uclanlp/<name>`` on the HF hub; original ``.th`` file names).
# All are BERT-base sized; they differ in head, visual feature width and label count.
PRETRAINED_CHECKPOINTS = {
    "visualbert-vqa-coco-pre": dict(architecture="VisualBertForPreTraining", visual_embedding_dim=2048, num_labels=2, original_file="vqa_coco_pre_trained.th"),
    "visualbert-vqa-pre": dict(architecture="VisualBertForPreTraining", visual_embedding_dim=2048, num_labels=2, original_file="vqa_pre_trained.th"),
    "visualbert-vqa": dict(architecture="VisualBertForQuestionAnswering", visual_embedding_dim=2048, num_labels=3129, original_file="vqa_fine_tuned.th"),
    "visualbert-nlvr2-coco-pre": dict(architecture="VisualBertForPreTraining", visual_embedding_dim=1024, num_labels=2, original_file="nlvr2_coco_pre_trained.th"),
    "visualbert-nlvr2-pre": dict(architecture="VisualBertForPreTraining", visual_embedding_dim=1024, num_labels=2, original_file="nlvr2_pre_trained.th"),
    "visualbert-nlvr2": dict(architecture="VisualBertForVisualReasoning", visual_embedding_dim=1024, num_labels=2, original_file="nlvr2_fine_tuned.th"),
    "visualbert-vcr-coco-pre": dict(architecture="VisualBertForPreTraining", visual_embedding_dim=512, num_labels=2, original_file="vcr_coco_pre_train.th"),
    "visualbert-vcr-pre": dict(architecture="VisualBertForPreTraining", visual_embedding_dim=512, num_labels=2, original_file="vcr_pre_train.th"),
    "visualbert-vcr": dict(architecture="VisualBertForMultipleChoice", visual_embedding_dim=512, num_labels=2, original_file="vcr_fine_tune.th"),
}


def checkpoint_info(name):
    """Returns the table entry of a released checkpoint name (``uclanlp/`` prefix allowed).

    Raises:
        KeyError: unknown name; the message lists the known ones.
    """
    key = name.split("/")[-1]
    if key not in PRETRAINED_CHECKPOINTS:
        raise KeyError(f"unknown checkpoint name {name!r}; known names: {', '.join(PRETRAINED_CHECKPOINTS)}")
    return dict(PRETRAINED_CHECKPOINTS[key])


def config_for_checkpoint(name, **overrides):
    """The full-size :class:`VisualBertConfig` of a released checkpoint."""
    info = checkpoint_info(name)
    values = dict(
        visual_embedding_dim=info["visual_embedding_dim"],
        num_labels=info["num_labels"],
        architectures=[info["architecture"]],
    )
    values.update(overrides)
    return VisualBertConfig(**values)
