"""VisualBERT in PaddlePaddle."""

# CPU runtime defaults (threads, MKL code path) must be in the environment before paddle loads: keep first.
from . import runtime  # noqa: F401  isort: skip
# Third-party start-up warnings filtered where they are raised (visualbert.console), then paddle loaded once.
from . import console  # isort: skip

console.install_filters()
console.import_paddle()

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

__all__ = [
    "MODEL_CLASSES",
    "PRETRAINED_CHECKPOINTS",
    "ModelOutput",
    "VisualBertConfig",
    "VisualBertForMultipleChoice",
    "VisualBertForPreTraining",
    "VisualBertForQuestionAnswering",
    "VisualBertForRegionToPhraseAlignment",
    "VisualBertForVisualReasoning",
    "VisualBertModel",
    "VisualBertPreTrainedModel",
    "checkpoint_info",
    "config_for_checkpoint",
    "load_pretrained",
    "model_class_for",
]
