"""Independent references for the VCR detector tests (torchvision cannot be imported here).

* :func:`numpy_roi_align`: the RoIAlign of the torchvision op the original used (maskrcnn-benchmark's kernel,
  ``aligned=False``, adaptive sampling), transcribed loop by loop from the published algorithm;
* :class:`TorchResNet50`: torch.nn modules in torchvision's ResNet layout and parameter names (Bottleneck with
  the stride on the 3x3 conv), to which :func:`apply_original_strides` applies ``_load_resnet_imagenet``'s changes;
* :class:`TorchSimpleDetector`: ``visualbert/utils/detector.py``'s forward, with :func:`torch_roi_align` (the
  same algorithm as the numpy one, vectorised per RoI so that autograd gives the gradient).
"""

import math

import numpy as np
import torch
import torch.nn as tnn
import torch.nn.functional as TF


# ------------------------------------------------------------------------------------------------ RoIAlign
def _bilinear_numpy(fmap, y, x):
    channels, height, width = fmap.shape
    if y < -1.0 or y > height or x < -1.0 or x > width:
        return np.zeros(channels)
    y = max(y, 0.0)
    x = max(x, 0.0)
    y_low, x_low = int(y), int(x)
    if y_low >= height - 1:
        y_high = y_low = height - 1
        y = float(y_low)
    else:
        y_high = y_low + 1
    if x_low >= width - 1:
        x_high = x_low = width - 1
        x = float(x_low)
    else:
        x_high = x_low + 1
    ly, lx = y - y_low, x - x_low
    hy, hx = 1.0 - ly, 1.0 - lx
    return (hy * hx * fmap[:, y_low, x_low] + hy * lx * fmap[:, y_low, x_high]
            + ly * hx * fmap[:, y_high, x_low] + ly * lx * fmap[:, y_high, x_high])


def numpy_roi_align(features, rois, batch_index, pooled=7, spatial_scale=1.0 / 16):
    """features [B, C, H, W]; rois [M, 4] (x1, y1, x2, y2); batch_index [M] -> [M, C, pooled, pooled] (float64)."""
    features = np.asarray(features, dtype=np.float64)
    out = np.zeros((len(rois), features.shape[1], pooled, pooled))
    for m, (roi, b) in enumerate(zip(np.asarray(rois, dtype=np.float64), batch_index)):
        x1, y1, x2, y2 = roi * spatial_scale
        roi_w, roi_h = max(x2 - x1, 1.0), max(y2 - y1, 1.0)
        bin_w, bin_h = roi_w / pooled, roi_h / pooled
        grid_w, grid_h = int(math.ceil(roi_w / pooled)), int(math.ceil(roi_h / pooled))
        for ph in range(pooled):
            for pw in range(pooled):
                acc = np.zeros(features.shape[1])
                for iy in range(grid_h):
                    y = y1 + ph * bin_h + (iy + 0.5) * bin_h / grid_h
                    for ix in range(grid_w):
                        x = x1 + pw * bin_w + (ix + 0.5) * bin_w / grid_w
                        acc += _bilinear_numpy(features[b], y, x)
                out[m, :, ph, pw] = acc / (grid_h * grid_w)
    return out


def _axis_samples(start, extent, pooled, size):
    """Sample coordinates along one axis of one RoI -> (low index, high index, low weight, high weight, valid),
    each [pooled * grid] (bins major), plus the grid size."""
    length = max(extent, 1.0)
    bin_size = length / pooled
    grid = int(math.ceil(length / pooled))
    coords = np.array([start + p * bin_size + (i + 0.5) * bin_size / grid for p in range(pooled) for i in range(grid)])
    valid = (coords >= -1.0) & (coords <= size)
    coords = np.maximum(coords, 0.0)
    low = coords.astype(np.int64)
    at_edge = low >= size - 1
    low = np.where(at_edge, size - 1, low)
    high = np.where(at_edge, size - 1, low + 1)
    coords = np.where(at_edge, low.astype(np.float64), coords)
    frac = coords - low
    return low, high, 1.0 - frac, frac, valid, grid


def torch_roi_align(features, rois, batch_index, pooled=7, spatial_scale=1.0 / 16):
    """Differentiable (in ``features``) torch version of :func:`numpy_roi_align`."""
    _, _, height, width = features.shape
    outs = []
    for roi, b in zip(np.asarray(rois, dtype=np.float64), batch_index):
        x1, y1, x2, y2 = roi * spatial_scale
        yl, yh, wyl, wyh, vy, gy = _axis_samples(y1, y2 - y1, pooled, height)
        xl, xh, wxl, wxh, vx, gx = _axis_samples(x1, x2 - x1, pooled, width)
        fmap = features[int(b)]
        wy = [torch.tensor(w * vy, dtype=features.dtype) for w in (wyl, wyh)]
        wx = [torch.tensor(w * vx, dtype=features.dtype) for w in (wxl, wxh)]
        sampled = 0
        for iy, w_y in zip((yl, yh), wy):
            rows = fmap[:, torch.from_numpy(iy)]  # [C, Sy, W]
            for ix, w_x in zip((xl, xh), wx):
                sampled = sampled + rows[:, :, torch.from_numpy(ix)] * w_y[None, :, None] * w_x[None, None, :]
        channels = fmap.shape[0]
        sampled = sampled.reshape(channels, pooled, gy, pooled, gx).mean(dim=(2, 4))
        outs.append(sampled)
    return torch.stack(outs, 0)


# ------------------------------------------------------------------------------------------------ ResNet-50
class TorchBottleneck(tnn.Module):
    """torchvision's Bottleneck (v1.5: the stride is on conv2)."""

    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = tnn.Conv2d(inplanes, planes, kernel_size=1, bias=False)
        self.bn1 = tnn.BatchNorm2d(planes)
        self.conv2 = tnn.Conv2d(planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = tnn.BatchNorm2d(planes)
        self.conv3 = tnn.Conv2d(planes, planes * 4, kernel_size=1, bias=False)
        self.bn3 = tnn.BatchNorm2d(planes * 4)
        self.relu = tnn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class TorchResNet50(tnn.Module):
    """torchvision.models.resnet50's module tree (``base_width`` < 64 only to keep tests fast)."""

    def __init__(self, base_width=64, blocks=(3, 4, 6, 3), num_classes=1000):
        super().__init__()
        self.inplanes = base_width
        self.conv1 = tnn.Conv2d(3, base_width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = tnn.BatchNorm2d(base_width)
        self.relu = tnn.ReLU(inplace=True)
        self.maxpool = tnn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(base_width, blocks[0])
        self.layer2 = self._make_layer(base_width * 2, blocks[1], stride=2)
        self.layer3 = self._make_layer(base_width * 4, blocks[2], stride=2)
        self.layer4 = self._make_layer(base_width * 8, blocks[3], stride=2)
        self.avgpool = tnn.AdaptiveAvgPool2d((1, 1))
        self.fc = tnn.Linear(base_width * 32, num_classes)

    def _make_layer(self, planes, blocks, stride=1):
        downsample = None
        if stride != 1 or self.inplanes != planes * 4:
            downsample = tnn.Sequential(tnn.Conv2d(self.inplanes, planes * 4, kernel_size=1, stride=stride, bias=False),
                                        tnn.BatchNorm2d(planes * 4))
        layers = [TorchBottleneck(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * 4
        layers += [TorchBottleneck(self.inplanes, planes) for _ in range(1, blocks)]
        return tnn.Sequential(*layers)


def apply_original_strides(backbone):
    """``_load_resnet_imagenet`` of the original detector.py."""
    for i in range(2, 4):
        getattr(backbone, "layer%d" % i)[0].conv1.stride = (2, 2)
        getattr(backbone, "layer%d" % i)[0].conv2.stride = (1, 1)
    backbone.layer4[0].conv2.stride = (1, 1)
    backbone.layer4[0].downsample[0].stride = (1, 1)
    return backbone


class TorchSimpleDetector(tnn.Module):
    """``SimpleDetector(average_pool=True, semantic=True, final_dim=512)`` of the original, on a given backbone."""

    def __init__(self, base_width=64, blocks=(3, 4, 6, 3), final_dim=512):
        super().__init__()
        backbone = apply_original_strides(TorchResNet50(base_width, blocks))
        self.backbone = tnn.Sequential(backbone.conv1, backbone.bn1, backbone.relu, backbone.maxpool,
                                       backbone.layer1, backbone.layer2, backbone.layer3)
        self.mask_dims = 32
        self.object_embed = tnn.Embedding(num_embeddings=81, embedding_dim=128)
        self.mask_upsample = tnn.Conv2d(1, self.mask_dims, kernel_size=3, stride=2, padding=1, bias=True)
        self.after_roi_align = tnn.Sequential(backbone.layer4, tnn.AvgPool2d(7, stride=1), tnn.Flatten())
        out = base_width * 32
        self.obj_downsample = tnn.Sequential(tnn.Dropout(p=0.1), tnn.Linear(out + 128, final_dim), tnn.ReLU(inplace=True))
        self.regularizing_predictor = tnn.Linear(out, 81)

    def forward(self, images, boxes, box_mask, classes, segms):
        img_feats = self.backbone(images)
        box_inds = box_mask.nonzero()
        rois = boxes[box_inds[:, 0], box_inds[:, 1]]
        roi_align_res = torch_roi_align(img_feats, rois.detach().numpy(), box_inds[:, 0].numpy())
        segms_indexed = segms[box_inds[:, 0], None, box_inds[:, 1]] - 0.5
        roi_align_res = torch.cat([roi_align_res[:, :self.mask_dims] + self.mask_upsample(segms_indexed),
                                   roi_align_res[:, self.mask_dims:]], 1)
        post_roialign = self.after_roi_align(roi_align_res)
        obj_logits = self.regularizing_predictor(post_roialign)
        obj_labels = classes[box_inds[:, 0], box_inds[:, 1]]
        cnn_regularization = TF.cross_entropy(obj_logits, obj_labels)
        feats = torch.cat((post_roialign, self.object_embed(obj_labels)), -1)
        roi_aligned_feats = self.obj_downsample(feats)
        lengths = box_mask.sum(1).tolist()
        obj_reps = roi_aligned_feats.new_zeros(len(lengths), max(lengths), roi_aligned_feats.shape[1])
        start = 0
        for i, n in enumerate(lengths):
            obj_reps[i, :n] = roi_aligned_feats[start:start + n]
            start += n
        return {"obj_reps": obj_reps, "obj_reps_raw": post_roialign, "obj_logits": obj_logits,
                "cnn_regularization_loss": cnn_regularization}


def randomize_batchnorm(module, generator):
    """Non-trivial affine parameters and running statistics for every BatchNorm2d (eval mode uses them)."""
    with torch.no_grad():
        for sub in module.modules():
            if isinstance(sub, tnn.BatchNorm2d):
                n = sub.num_features
                sub.weight.copy_(1.0 + 0.2 * torch.randn(n, generator=generator))
                sub.bias.copy_(0.1 * torch.randn(n, generator=generator))
                sub.running_mean.copy_(0.1 * torch.randn(n, generator=generator))
                sub.running_var.copy_(1.0 + 0.5 * torch.rand(n, generator=generator))
    return module
