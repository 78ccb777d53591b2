"""The original VCR model (``VisualBERTDetector`` of ``visualbert/models/model.py``): the jointly trained
:class:`~visualbert.detector.SimpleDetector` computes the 512-d region features from the image and its boxes,
and VisualBERT reads them (visual token type 0, ``visual_attention_mask`` = the box mask, the VCR
``image_text_alignment``).

* :class:`VisualBertForVCR`: detector + :class:`~visualbert.modeling.VisualBertForMultipleChoice` (Q->A and QA->R,
  ``vcr_fine_tuned.th``);
* :class:`VisualBertForVCRPreTraining`: detector + :class:`~visualbert.modeling.VisualBertForPreTraining` (COCO
  and VCR task pre-training of the VCR line, ``vcr_pre_train.th``, ``vcr_coco_pre_train.th``).

The loss is the head's loss plus ``cnn_loss_ratio * cnn_regularization_loss`` when ``cnn_loss_ratio != 0`` (0.0 in
every released config, so the released models trained on the head loss alone). The original's ModelWrapper
multiplies by the ratio a second time (model.py already did); with the released ratio 0 the difference does not
show, and we apply it once. Parameter names: ``detector.*`` as the original's, the rest as the wrapped head's.
"""

from typing import Optional

import paddle

from .detector import DetectorConfig, SimpleDetector
from .modeling import ModelOutput, VisualBertForMultipleChoice, VisualBertForPreTraining


class _WithDetector:
    """Adds ``self.detector`` and the image-to-regions step to a VisualBERT head class."""

    def _build_detector(self, config):
        detector_config = DetectorConfig.from_dict(config.detector)
        if detector_config.final_dim != config.visual_embedding_dim:
            raise ValueError(f"detector final_dim {detector_config.final_dim} != visual_embedding_dim "
                             f"{config.visual_embedding_dim}")
        config.detector = detector_config.to_dict()
        self.detector = SimpleDetector(detector_config)

    def freeze_detector(self):
        """The original train.py's ``freeze_detector`` (its default; ``"freeze_detector": false`` in the
        fine-tuning configs): see :meth:`SimpleDetector.freeze_backbone`."""
        self.detector.freeze_backbone()

    def regions(self, images, boxes, box_mask, objects, segms):
        """Detector outputs (see :meth:`SimpleDetector.forward`); ``obj_reps`` float32 [B, N, 512]."""
        return self.detector(images, boxes, box_mask, objects, segms)

    def _add_cnn_loss(self, outputs: ModelOutput, detected) -> ModelOutput:
        ratio = self.config.cnn_loss_ratio
        cnn_loss = detected["cnn_regularization_loss"]
        outputs["cnn_regularization_loss"] = cnn_loss
        if ratio != 0.0 and outputs.get("loss") is not None:  # no labels (prediction): no loss
            outputs["loss"] = outputs.loss + ratio * cnn_loss
        return outputs


class VisualBertForVCR(_WithDetector, VisualBertForMultipleChoice):
    """VCR multiple choice from images: detector + VisualBERT + Linear(768 -> 1) per choice.

    Args:
        config (VisualBertConfig): ``visual_embedding_dim`` 512; ``detector`` (DetectorConfig fields, None = the
            released detector); ``cnn_loss_ratio``.
    """

    def __init__(self, config):
        super().__init__(config)
        self._build_detector(config)

    def forward(self, images, boxes, box_mask, objects, segms, input_ids, attention_mask=None, token_type_ids=None,
                image_text_alignment=None, labels=None, **kwargs):
        """
        Args:
            images: float32 [B, 3, H, W] normalised, padded images.
            boxes: float32 [B, N, 4] boxes in image pixels (row 0 = the whole image window), padding rows -1.
            box_mask: int64 [B, N], 1 for real boxes (a prefix of each row).
            objects: int64 [B, N] COCO class index per box (0 = __background__ for the whole-image box).
            segms: float32 [B, N, 14, 14] box masks.
            input_ids: int64 [B, C, T]; ``attention_mask`` / ``token_type_ids`` likewise.
            image_text_alignment: int64 [B, C, N, A] text positions per box, -1 padding.
            labels: int64 [B], the correct choice.

        Returns:
            ModelOutput: ``logits`` float32 [B, C]; ``loss`` (CE over choices + cnn_loss_ratio x
            ``cnn_regularization_loss``) when labels are given; ``cnn_regularization_loss`` always.
        """
        detected = self.regions(images, boxes, box_mask, objects, segms)
        visual_token_type_ids = paddle.zeros(box_mask.shape, dtype="int64")
        outputs = super().forward(input_ids, attention_mask, token_type_ids, None, detected["obj_reps"], box_mask,
                                  visual_token_type_ids, image_text_alignment, labels=labels, **kwargs)
        return self._add_cnn_loss(outputs, detected)


class VisualBertForVCRPreTraining(_WithDetector, VisualBertForPreTraining):
    """The VCR line's pre-training model: detector + masked language modelling (+ sentence-image matching).

    One text per example (``complete_shuffle``: [B, T]), regions from the detector.
    """

    def __init__(self, config):
        super().__init__(config)
        self._build_detector(config)

    def forward(self, images, boxes, box_mask, objects, segms, input_ids, attention_mask=None, token_type_ids=None,
                image_text_alignment=None, labels=None, sentence_image_labels=None, **kwargs):
        """
        Args:
            images, boxes, box_mask, objects, segms: as :meth:`VisualBertForVCR.forward`.
            input_ids: int64 [B, T]; ``attention_mask`` / ``token_type_ids`` likewise.
            image_text_alignment: int64 [B, N, A].
            labels: int64 [B, T + N] MLM targets (ignore index elsewhere).
            sentence_image_labels: int64 [B], optional.

        Returns:
            ModelOutput: as :meth:`VisualBertForPreTraining.forward` plus ``cnn_regularization_loss``.
        """
        detected = self.regions(images, boxes, box_mask, objects, segms)
        visual_token_type_ids = paddle.zeros(box_mask.shape, dtype="int64")
        outputs = super().forward(input_ids, attention_mask, token_type_ids, None, detected["obj_reps"], box_mask,
                                  visual_token_type_ids, image_text_alignment, labels=labels,
                                  sentence_image_labels=sentence_image_labels, **kwargs)
        return self._add_cnn_loss(outputs, detected)


VCR_MODEL_CLASSES = {cls.__name__: cls for cls in (VisualBertForVCR, VisualBertForVCRPreTraining)}

# Released checkpoint name -> the class its .th file (detector.* + VisualBERT) converts into.
VCR_CHECKPOINT_ARCHITECTURES = {
    "visualbert-vcr": "VisualBertForVCR",
    "visualbert-vcr-pre": "VisualBertForVCRPreTraining",
    "visualbert-vcr-coco-pre": "VisualBertForVCRPreTraining",
}


def vcr_model_class(architecture: str) -> Optional[type]:
    """The VCR-from-images class of that name, or None."""
    return VCR_MODEL_CLASSES.get(architecture)


__all__ = ["VisualBertForVCR", "VisualBertForVCRPreTraining", "VCR_MODEL_CLASSES", "VCR_CHECKPOINT_ARCHITECTURES",
           "vcr_model_class"]
