"""The VCR region encoder of the original release (``SimpleDetector``): an ImageNet ResNet-50 whose layer4
runs on 7x7 RoIAlign crops of the VCR boxes, plus the box's segmentation mask and class embedding.

Structure and parameter names follow ``visualbert/utils/detector.py`` of the original (R2C's detector, the
``detector.*`` keys of the released ``vcr_*.th`` files), so conversion is a plain renaming:

* ``backbone``: ``Sequential(conv1, bn1, relu, maxpool, layer1, layer2, layer3)`` of torchvision's ResNet-50
  with the original's stride changes (layer2/layer3 block 0: stride 2 on the 1x1 ``conv1``, stride 1 on the
  3x3 ``conv2``), so the feature map is at 1/16 of the image;
* ``roi_align``: 7x7, spatial scale 1/16, adaptive sampling (``sampling_ratio=0``), the pre-``aligned`` torchvision
  convention (no half-pixel shift, RoI sides clamped to at least 1 feature cell);
* ``mask_upsample``: Conv2d 1->32, k3 s2 p1 on the 14x14 box mask minus 0.5, added to the first 32 RoI channels;
* ``after_roi_align``: ``Sequential(layer4)`` with every stride 1, then a 7x7 average pool;
* ``regularizing_predictor``: Linear 2048->81 (the ``cnn_regularization_loss``: cross-entropy to the box class);
* ``object_embed`` (81 x 128) and ``obj_downsample``: Dropout(0.1) -> Linear(2048+128 -> 512) -> ReLU.

BatchNorm follows the torch (<= 1.1) ``BatchNorm2d`` the release trained with: batch statistics and a running
average (momentum 0.1, unbiased variance) in training, running statistics in evaluation. The original's
``freeze_detector()`` (the default of its train.py, used by both VCR pre-training configs) stops the gradient of
the backbone and sets ``track_running_stats=False`` on its BatchNorms, which in those torch versions means: batch
statistics in training AND evaluation, running statistics never updated. :meth:`SimpleDetector.freeze_backbone`
reproduces exactly that.

The module reads no files; weights come from ``checkpoint/convert.py`` (``detector.*`` of an original ``.th``).
"""

from dataclasses import asdict, dataclass, field
from typing import Dict, Optional, Sequence

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

NUM_DETECTOR_CLASSES = 81  # COCO's 80 classes + __background__ (index 0, the whole-image box)
MASK_SIZE = 14


@dataclass
class DetectorConfig:
    """Shape of :class:`SimpleDetector` (defaults: the released VCR models).

    Args:
        final_dim: width of the region features handed to VisualBERT (``visual_embedding_dim``, 512).
        semantic: add the mask branch and the class embedding (the original's ``class_embs``, True).
        base_width: ResNet stem width (64 for ResNet-50; smaller only for tests). Layer widths scale with it.
        blocks: Bottleneck blocks per ResNet stage (3, 4, 6, 3 for ResNet-50).
        num_classes: object classes (81).
        class_embed_dim: width of ``object_embed`` (128).
        mask_dims: RoI channels the mask branch adds to (32).
        pooled_size: RoIAlign output side (7).
        spatial_scale: feature-map scale of the backbone output (1/16).
        dropout: ``obj_downsample`` dropout (0.1).
    """

    final_dim: int = 512
    semantic: bool = True
    base_width: int = 64
    blocks: Sequence[int] = field(default_factory=lambda: (3, 4, 6, 3))
    num_classes: int = NUM_DETECTOR_CLASSES
    class_embed_dim: int = 128
    mask_dims: int = 32
    pooled_size: int = 7
    spatial_scale: float = 1.0 / 16
    dropout: float = 0.1

    @property
    def output_channels(self) -> int:
        """Channels after layer4 (2048 for ResNet-50)."""
        return self.base_width * 8 * 4

    def to_dict(self) -> dict:
        out = asdict(self)
        out["blocks"] = list(self.blocks)
        return out

    @classmethod
    def from_dict(cls, values: Optional[dict]) -> "DetectorConfig":
        values = dict(values or {})
        unknown = sorted(set(values) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"unknown detector config fields {unknown}")
        if "blocks" in values:
            values["blocks"] = tuple(values["blocks"])
        return cls(**values)


class DetectorBatchNorm2D(nn.Layer):
    """BatchNorm2d with torch's semantics, parameter names as Paddle's ``BatchNorm2D`` (weight, bias, _mean, _variance).

    Written out (not ``nn.BatchNorm2D``) because the running variance must be torch's unbiased one and the frozen
    mode (batch statistics in evaluation too, no update) has no Paddle switch.
    """

    def __init__(self, num_features: int, epsilon: float = 1e-5, momentum: float = 0.1):
        super().__init__()
        self.epsilon = epsilon
        self.momentum = momentum
        self.weight = self.create_parameter([num_features], default_initializer=nn.initializer.Constant(1.0))
        self.bias = self.create_parameter([num_features], is_bias=True, default_initializer=nn.initializer.Constant(0.0))
        self.register_buffer("_mean", paddle.zeros([num_features], dtype=paddle.get_default_dtype()))
        self.register_buffer("_variance", paddle.ones([num_features], dtype=paddle.get_default_dtype()))
        self.track_running_stats = True

    def forward(self, x):
        if self.training or not self.track_running_stats:
            mean = x.mean(axis=[0, 2, 3])
            centred = x - mean.reshape([1, -1, 1, 1])
            var = (centred * centred).mean(axis=[0, 2, 3])
            if self.training and self.track_running_stats:
                n = x.shape[0] * x.shape[2] * x.shape[3]
                with paddle.no_grad():
                    unbiased = var.detach() * (n / max(n - 1, 1))
                    self._mean.set_value((1 - self.momentum) * self._mean + self.momentum * mean.detach())
                    self._variance.set_value((1 - self.momentum) * self._variance + self.momentum * unbiased)
            normed = centred / paddle.sqrt(var + self.epsilon).reshape([1, -1, 1, 1])
        else:
            normed = (x - self._mean.reshape([1, -1, 1, 1])) / paddle.sqrt(self._variance + self.epsilon).reshape([1, -1, 1, 1])
        return normed * self.weight.reshape([1, -1, 1, 1]) + self.bias.reshape([1, -1, 1, 1])


def _conv(in_channels, out_channels, kernel, stride=1, padding=0):
    return nn.Conv2D(in_channels, out_channels, kernel, stride=stride, padding=padding, bias_attr=False)


class Bottleneck(nn.Layer):
    """torchvision's ResNet Bottleneck (names conv1/bn1/conv2/bn2/conv3/bn3/downsample) with both strides explicit."""

    expansion = 4

    def __init__(self, in_channels: int, planes: int, conv1_stride: int = 1, conv2_stride: int = 1,
                 downsample_stride: Optional[int] = None):
        super().__init__()
        self.conv1 = _conv(in_channels, planes, 1, stride=conv1_stride)
        self.bn1 = DetectorBatchNorm2D(planes)
        self.conv2 = _conv(planes, planes, 3, stride=conv2_stride, padding=1)
        self.bn2 = DetectorBatchNorm2D(planes)
        self.conv3 = _conv(planes, planes * self.expansion, 1)
        self.bn3 = DetectorBatchNorm2D(planes * self.expansion)
        self.relu = nn.ReLU()
        self.downsample = None
        if downsample_stride is not None:
            self.downsample = nn.Sequential(_conv(in_channels, planes * self.expansion, 1, stride=downsample_stride),
                                            DetectorBatchNorm2D(planes * self.expansion))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


def _stage(in_channels, planes, blocks, stride, final_stage):
    """One ResNet stage with the original's strides: stage stride on block 0's ``conv1`` (not torchvision's
    ``conv2``), and no stride at all in layer4 (``_load_resnet_imagenet``)."""
    stride = 1 if final_stage else stride
    needs_downsample = stride != 1 or in_channels != planes * Bottleneck.expansion
    layers = [Bottleneck(in_channels, planes, conv1_stride=stride, conv2_stride=1,
                         downsample_stride=stride if needs_downsample else None)]
    for _ in range(1, blocks):
        layers.append(Bottleneck(planes * Bottleneck.expansion, planes))
    return nn.Sequential(*layers)


def roi_align_v0(features, rois, rois_per_image, output_size=7, spatial_scale=1.0 / 16):
    """RoIAlign as the torchvision op of 2018 the original used (``aligned=False``, ``sampling_ratio=0``).

    Box corners are scaled without a half-pixel offset, RoI sides are clamped to >= 1 cell, every bin averages a
    ``ceil(bin side)`` x ``ceil(bin side)`` grid of bilinear samples; samples beyond one cell outside the map
    count 0 and those near the border are clamped. Paddle's ``roi_align(aligned=False, sampling_ratio=0)`` is the
    same algorithm (checked against a numpy transcription in tests/test_detector.py).

    Args:
        features: float32 [B, C, H, W].
        rois: float32 [M, 4] (x1, y1, x2, y2) in image pixels, grouped by image in batch order.
        rois_per_image: int32 [B], how many of ``rois`` belong to each image.

    Returns:
        float32 [M, C, output_size, output_size].
    """
    return paddle.vision.ops.roi_align(features, rois, rois_per_image, output_size=output_size,
                                       spatial_scale=spatial_scale, sampling_ratio=0, aligned=False)


class SimpleDetector(nn.Layer):
    """The original VCR detector (see the module docstring).

    Args:
        config: :class:`DetectorConfig` (default: the released models' detector).
    """

    def __init__(self, config: Optional[DetectorConfig] = None):
        super().__init__()
        self.config = config = config or DetectorConfig()
        w = config.base_width
        b = config.blocks
        layer1 = _stage(w, w, b[0], 1, False)
        layer2 = _stage(w * 4, w * 2, b[1], 2, False)
        layer3 = _stage(w * 8, w * 4, b[2], 2, False)
        layer4 = _stage(w * 16, w * 8, b[3], 2, True)
        self.backbone = nn.Sequential(
            _conv(3, w, 7, stride=2, padding=3),
            DetectorBatchNorm2D(w),
            nn.ReLU(),
            nn.MaxPool2D(kernel_size=3, stride=2, padding=1),
            layer1,
            layer2,
            layer3,
        )
        self.after_roi_align = nn.Sequential(layer4)
        out = config.output_channels
        if config.semantic:
            self.object_embed = nn.Embedding(config.num_classes, config.class_embed_dim)
            self.mask_upsample = nn.Conv2D(1, config.mask_dims, 3, stride=2, padding=1)
        else:
            self.object_embed = None
            self.mask_upsample = None
        self.obj_downsample = nn.Sequential(
            nn.Dropout(config.dropout),
            nn.Linear(out + (config.class_embed_dim if config.semantic else 0), config.final_dim),
            nn.ReLU(),
        )
        self.regularizing_predictor = nn.Linear(out, config.num_classes)
        self.backbone_frozen = False

    def freeze_backbone(self):
        """The original's ``freeze_detector()``: no gradient for stem..layer3, and their BatchNorms use batch
        statistics in training and evaluation without updating the running ones (torch <= 1.1
        ``track_running_stats=False``). layer4 and the heads stay trainable."""
        for param in self.backbone.parameters():
            param.stop_gradient = True
        for layer in self.backbone.sublayers():
            if isinstance(layer, DetectorBatchNorm2D):
                layer.track_running_stats = False
        self.backbone_frozen = True

    def forward(self, images, boxes, box_mask, classes, segms=None) -> Dict[str, paddle.Tensor]:
        """
        Args:
            images: float32 [B, 3, H, W], normalised (ImageNet mean/std), padded.
            boxes: float32 [B, N, 4] (x1, y1, x2, y2) in the pixels of ``images``; padding rows anything.
            box_mask: int/bool [B, N], 1 for real boxes (a prefix of each row, as the collate builds it).
            classes: int64 [B, N] class index per box (0 = background / whole image).
            segms: float32 [B, N, 14, 14] box masks in [0, 1] (needed when ``config.semantic``).

        Returns:
            dict: ``obj_reps`` float32 [B, N, final_dim] (zeros on padding), ``obj_reps_raw`` [M, 2048],
            ``obj_logits`` [M, 81], ``obj_labels`` int64 [M], ``cnn_regularization_loss`` float32 scalar (mean
            cross-entropy of ``obj_logits`` to ``obj_labels``), where M = number of real boxes.
        """
        mask = box_mask.astype("bool")
        box_index = paddle.nonzero(mask)  # [M, 2], row-major: grouped by image, as roi_align wants
        if box_index.shape[0] == 0:
            raise ValueError("SimpleDetector: the batch has no boxes (every row of box_mask is 0)")
        rois = paddle.gather_nd(boxes.astype(images.dtype), box_index)
        rois_per_image = mask.astype("int32").sum(axis=1)
        img_feats = self.backbone(images)
        roi_feats = roi_align_v0(img_feats, rois, rois_per_image, self.config.pooled_size, self.config.spatial_scale)
        if self.mask_upsample is not None:
            if segms is None:
                raise ValueError("SimpleDetector with semantic=True needs segms")
            box_segms = paddle.gather_nd(segms.astype(images.dtype), box_index).unsqueeze(1) - 0.5
            k = self.config.mask_dims
            roi_feats = paddle.concat([roi_feats[:, :k] + self.mask_upsample(box_segms), roi_feats[:, k:]], axis=1)
        post_roialign = self.after_roi_align(roi_feats).mean(axis=[2, 3])  # AvgPool2d(7, stride=1) on 7x7 + flatten

        obj_logits = self.regularizing_predictor(post_roialign)
        obj_labels = paddle.gather_nd(classes.astype("int64"), box_index)
        cnn_regularization_loss = F.cross_entropy(obj_logits, obj_labels, reduction="mean")
        if self.object_embed is not None:
            post_with_class = paddle.concat([post_roialign, self.object_embed(obj_labels)], axis=-1)
        else:
            post_with_class = post_roialign
        region_feats = self.obj_downsample(post_with_class)
        obj_reps = paddle.scatter_nd(box_index, region_feats, [mask.shape[0], mask.shape[1], region_feats.shape[-1]])
        return {
            "obj_reps": obj_reps,
            "obj_reps_raw": post_roialign,
            "obj_logits": obj_logits,
            "obj_labels": obj_labels,
            "cnn_regularization_loss": cnn_regularization_loss,
        }


__all__ = ["DetectorConfig", "SimpleDetector", "DetectorBatchNorm2D", "Bottleneck", "roi_align_v0",
           "NUM_DETECTOR_CLASSES", "MASK_SIZE"]
