"""VisualBERT in PaddlePaddle."""

# CPU runtime defaults (threads, MKL code path) must be in the environment before paddle loads: keep first.
from . import runtime  # noqa: F401  isort: skip

from .configuration import PRETRAINED_CHECKPOINTS, VisualBertConfig, checkpoint_info, config_for_checkpoint
from .modeling import (
    MODEL_CLASSES,
    ModelOutput,
    VisualBertForMultipleChoice,
    VisualBertForPreTraining,
    VisualBertForQuestionAnswering,
    VisualBertForRegionToPhraseAlignment,
    VisualBertForVisualReasoning,
    VisualBertModel,
    VisualBertPreTrainedModel,
    load_pretrained,
    model_class_for,
)

__version__ = "0.1.0"
