"""SimpleDetector (visualbert/detector.py) against the original's definitions: RoIAlign vs a numpy transcription of
the published algorithm and hand-computed cases; the whole detector vs a torch transcription (torchvision's
ResNet-50 layout and names + the original's detector.py) on random weights, features and gradients."""

import numpy as np
import paddle
import pytest
import torch
from vcr_torch_reference import TorchSimpleDetector, numpy_roi_align, randomize_batchnorm, torch_roi_align

from visualbert.conversion import convert_detector_state_dict, detector_conversion_table
from visualbert.detector import DetectorConfig, SimpleDetector, roi_align_v0

SMALL = dict(base_width=8, blocks=(3, 4, 6, 3))  # ResNet-50's depth and strides, 1/8 of its width


def _paddle_roi_align(features, rois, batch_index, pooled=7, scale=1.0 / 16):
    counts = np.bincount(batch_index, minlength=features.shape[0]).astype("int32")
    return roi_align_v0(paddle.to_tensor(features), paddle.to_tensor(rois.astype("float32")),
                        paddle.to_tensor(counts), pooled, scale).numpy()


# ------------------------------------------------------------------------------------------------ RoIAlign
def test_roi_align_hand_cases():
    # f(y, x) = 10 y + x: bilinear sampling reproduces a linear map exactly, so every bin is f(bin centre).
    H, W = 6, 8
    fmap = (10.0 * np.arange(H)[:, None] + np.arange(W)[None, :]).astype("float32")[None, None]
    # Box (1, 2)-(5, 4) at scale 1, 2x2 bins: bins of 2 x 1 cells, centres x in {2, 4}, y in {2.5, 3.5}.
    out = _paddle_roi_align(fmap, np.array([[1.0, 2.0, 5.0, 4.0]]), np.array([0]), pooled=2, scale=1.0)
    np.testing.assert_allclose(out[0, 0], [[27.0, 29.0], [37.0, 39.0]], rtol=1e-6)
    # No half-pixel shift (aligned=False) and sides clamped to 1 cell: a 0.2 x 0.2 box at (3, 2) covers
    # [3, 4] x [2, 3]; one sample per bin (ceil(0.5)) at x = 3.25 / 3.75, y = 2.25 / 2.75.
    out = _paddle_roi_align(fmap, np.array([[3.0, 2.0, 3.2, 2.2]]), np.array([0]), pooled=2, scale=1.0)
    np.testing.assert_allclose(out[0, 0], [[25.75, 26.25], [30.75, 31.25]], rtol=1e-6)
    # Samples past the last row/column are clamped to it: box (6.5, 4.5)-(7.5, 5.5), 1 bin, sample at (5.0, 7.0).
    out = _paddle_roi_align(fmap, np.array([[6.5, 4.5, 7.5, 5.5]]), np.array([0]), pooled=1, scale=1.0)
    np.testing.assert_allclose(out[0, 0], [[57.0]], rtol=1e-6)
    # Samples more than one cell outside the map count zero (but still in the average's denominator).
    out = _paddle_roi_align(fmap, np.array([[9.5, 0.0, 10.5, 1.0]]), np.array([0]), pooled=1, scale=1.0)
    np.testing.assert_allclose(out[0, 0], [[0.0]], atol=1e-7)


def test_roi_align_matches_numpy_transcription():
    rng = np.random.default_rng(0)
    features = rng.standard_normal((2, 5, 6, 9)).astype("float32")
    # In pixels at 1/16: large, tiny, touching the border, partly outside, a whole-image window.
    rois = np.array([[0, 0, 143, 95], [17.3, 20.1, 60.2, 70.9], [100.5, 3.3, 101.0, 4.0], [120, 60, 150, 100],
                     [-20, -10, 40, 30], [5.5, 7.25, 131.75, 88.5]], dtype="float64")
    batch_index = np.array([0, 0, 0, 1, 1, 1])
    expected = numpy_roi_align(features, rois, batch_index)
    np.testing.assert_allclose(_paddle_roi_align(features, rois, batch_index), expected, rtol=1e-5, atol=1e-6)
    # The torch reference used by the detector parity test implements the same algorithm.
    got = torch_roi_align(torch.from_numpy(features).double(), rois, batch_index).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)


# ------------------------------------------------------------------------------------------------ detector
def _torch_to_paddle(reference, config):
    state = {"detector." + k: v.detach().numpy() for k, v in reference.state_dict().items()}
    detector = SimpleDetector(config)
    expected = {"detector." + k: list(v.shape) for k, v in detector.state_dict().items()}
    converted = convert_detector_state_dict(state, config, expected)
    dtype = paddle.get_default_dtype()
    detector.set_state_dict({k[len("detector."):]: paddle.to_tensor(v.astype(dtype)) for k, v in converted.items()})
    return detector


def _batch(height, width, seed):
    rng = np.random.default_rng(seed)
    images = rng.standard_normal((2, 3, height, width)).astype("float32")
    boxes = np.full((2, 4, 4), -1.0, dtype="float32")
    boxes[0, :3] = [[0, 0, width, height], [3.5, 5.2, width * 0.6, height * 0.7], [width * 0.5, 1.0, width - 0.5, height - 2.0]]
    boxes[1, :4] = [[0, 0, width, height], [10.0, 12.0, 11.0, 13.5], [2.0, height * 0.3, width * 0.9, height * 0.95],
                    [width * 0.2, height * 0.1, width * 0.45, height * 0.6]]
    box_mask = (boxes >= 0).all(-1).astype("int64")
    classes = np.array([[0, 1, 17, 0], [0, 3, 1, 60]], dtype="int64")
    segms = (rng.random((2, 4, 14, 14)) > 0.5).astype("float32")
    segms[:, 0] = 1.0
    return images, boxes, box_mask, classes, segms


def _rel(a, b):
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))


@pytest.fixture
def float64_default():
    paddle.set_default_dtype("float64")
    yield
    paddle.set_default_dtype("float32")


def _parity(height, width, train, dtype):
    """Paddle vs torch detector outputs, input and parameter gradients, (train) running statistics."""
    torch.manual_seed(0)
    reference = randomize_batchnorm(TorchSimpleDetector(**SMALL), torch.Generator().manual_seed(1))
    reference.obj_downsample[0].p = 0.0
    config = DetectorConfig(dropout=0.0, **SMALL)
    detector = _torch_to_paddle(reference, config)
    reference = reference.to(getattr(torch, dtype))
    reference.train(train)
    detector.train() if train else detector.eval()

    images, boxes, box_mask, classes, segms = (a.astype(dtype) if a.dtype == np.float32 else a
                                               for a in _batch(height, width, seed=height))
    t_images = torch.from_numpy(images).requires_grad_(True)
    t_out = reference(t_images, torch.from_numpy(boxes), torch.from_numpy(box_mask), torch.from_numpy(classes),
                      torch.from_numpy(segms))
    p_images = paddle.to_tensor(images, stop_gradient=False)
    p_out = detector(p_images, paddle.to_tensor(boxes), paddle.to_tensor(box_mask), paddle.to_tensor(classes),
                     paddle.to_tensor(segms))
    worst = {}
    for key in ("obj_reps", "obj_reps_raw", "obj_logits"):
        worst[key] = _rel(p_out[key].numpy(), t_out[key].detach().numpy())
    worst["cnn_loss"] = abs(float(p_out["cnn_regularization_loss"]) - float(t_out["cnn_regularization_loss"].detach()))
    assert np.all(p_out["obj_reps"].numpy()[0, 3] == 0)  # the padding row

    # Gradient of one scalar through everything (images, conv, BatchNorm, RoIAlign, mask branch, heads).
    weights = np.random.default_rng(3).standard_normal(t_out["obj_reps"].shape).astype(dtype)
    (t_out["obj_reps"] * torch.from_numpy(weights)).sum().add(t_out["cnn_regularization_loss"]).backward()
    ((p_out["obj_reps"] * paddle.to_tensor(weights)).sum() + p_out["cnn_regularization_loss"]).backward()
    worst["image_grad"] = _rel(p_images.grad.numpy(), t_images.grad.numpy())
    t_params = dict(reference.named_parameters())
    p_params = dict(detector.named_parameters())
    # Per tensor, relative to its own largest entry, floored at 1e-3 of the largest gradient of all: in training
    # mode some gradients are exactly 0 in exact arithmetic (a BatchNorm bias whose output goes through a 1x1 conv
    # into a batch-statistics BatchNorm), i.e. pure rounding noise.
    pairs = []
    for src, dst, transpose in detector_conversion_table(config):
        if src in t_params:  # (not the BatchNorm running statistics)
            p_grad = p_params[dst].grad.numpy()
            pairs.append((p_grad.T if transpose else p_grad, t_params[src].grad.numpy()))
    scale = max(np.abs(t).max() for _, t in pairs)
    worst["param_grad"] = max(float(np.abs(p - t).max()) / max(float(np.abs(t).max()), 1e-3 * scale) for p, t in pairs)
    if train:  # torch's running-average update (momentum 0.1, unbiased variance)
        t_state, p_state = reference.state_dict(), detector.state_dict()
        worst["running_stats"] = max(_rel(p_state[d].numpy(), t_state[s].numpy())
                                     for s, d, _ in detector_conversion_table(config)
                                     if s.endswith(("running_mean", "running_var")))
    return worst


@pytest.mark.parametrize("height,width", [(64, 96), (96, 80)])
def test_detector_matches_torch_transcription_eval(height, width):
    worst = _parity(height, width, train=False, dtype="float32")
    assert max(worst.values()) < 1e-4, worst


@pytest.mark.parametrize("height,width", [(64, 96), (96, 80)])
def test_detector_matches_torch_transcription_train(height, width, float64_default):
    # Training mode (batch statistics): with random weights and 5x6 feature maps the gradient is so ill-conditioned
    # that torch float32 itself is ~1e-2 from torch float64; the algorithm is compared in float64.
    worst = _parity(height, width, train=True, dtype="float64")
    assert max(worst.values()) < 1e-8, worst


def test_frozen_backbone_uses_batch_statistics_and_no_gradient():
    # The original train.py's freeze_detector under torch <= 1.1: the backbone's BatchNorms compute batch
    # statistics in evaluation too, never update the running ones; the backbone gets no gradient.
    torch.manual_seed(0)
    reference = randomize_batchnorm(TorchSimpleDetector(**SMALL), torch.Generator().manual_seed(1))
    config = DetectorConfig(dropout=0.0, **SMALL)
    detector = _torch_to_paddle(reference, config)
    detector.freeze_backbone()
    detector.eval()
    reference.eval()
    reference.backbone.train()  # batch statistics in the backbone only
    for module in reference.backbone.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.track_running_stats = False
    images, boxes, box_mask, classes, segms = _batch(64, 96, seed=5)
    before = {k: v.numpy().copy() for k, v in detector.state_dict().items()}
    t_out = reference(*(torch.from_numpy(a) for a in (images, boxes, box_mask, classes, segms)))
    p_out = detector(*(paddle.to_tensor(a) for a in (images, boxes, box_mask, classes, segms)))
    assert _rel(p_out["obj_reps"].numpy(), t_out["obj_reps"].detach().numpy()) < 1e-4
    p_out["obj_reps"].sum().backward()
    assert all(p.grad is None for p in detector.backbone.parameters())
    assert detector.after_roi_align[0][0].conv1.weight.grad is not None
    for k, v in detector.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), before[k], err_msg=k)


def test_parameter_names_are_the_original_detector_keys():
    # The full-size detector: the table covers exactly its parameters (ResNet-50: 53 convs, 53 BatchNorms).
    detector = SimpleDetector()
    table = detector_conversion_table()
    assert sorted(d for _, d, _ in table) == sorted(detector.state_dict())
    torch_keys = set(TorchSimpleDetector().state_dict())
    assert {s for s, _, _ in table} == {k for k in torch_keys if not k.endswith("num_batches_tracked")}
    assert sum(1 for s, _, _ in table if s.endswith("running_var")) == 53
    assert list(detector.state_dict()["obj_downsample.1.weight"].shape) == [2048 + 128, 512]


def test_detector_key_errors_name_the_key():
    config = DetectorConfig(**SMALL)
    reference = TorchSimpleDetector(**SMALL)
    state = {"detector." + k: v.numpy() for k, v in reference.state_dict().items()}
    expected = {"detector." + k: list(v.shape) for k, v in SimpleDetector(config).state_dict().items()}
    missing = dict(state)
    del missing["detector.backbone.5.0.bn2.running_var"]
    with pytest.raises(KeyError, match="detector.backbone.5.0.bn2.running_var"):
        convert_detector_state_dict(missing, config, expected)
    bad = dict(state)
    bad["detector.mask_upsample.weight"] = np.zeros((16, 1, 3, 3), dtype="float32")
    with pytest.raises(ValueError, match="detector.mask_upsample.weight"):
        convert_detector_state_dict(bad, config, expected)
    extra = dict(state)
    extra["detector.backbone.9.weight"] = np.zeros(3, dtype="float32")
    with pytest.raises(KeyError, match="detector.backbone.9.weight"):
        convert_detector_state_dict(extra, config, expected)


def test_without_semantic_branch_and_without_boxes():
    # class_embs=False in the original: no mask branch, no class embedding, obj_downsample on the 2048-d features.
    detector = SimpleDetector(DetectorConfig(semantic=False, base_width=8, blocks=(1, 1, 1, 1), final_dim=16))
    assert detector.mask_upsample is None and detector.object_embed is None
    assert "obj_downsample.1.weight" in detector.state_dict()
    assert list(detector.state_dict()["obj_downsample.1.weight"].shape) == [256, 16]
    table = detector_conversion_table(DetectorConfig(semantic=False, blocks=(1, 1, 1, 1)))
    assert not any(s.startswith(("mask_upsample", "object_embed")) for s, _, _ in table)
    images, boxes, box_mask, classes, segms = _batch(64, 96, seed=0)
    detector.eval()
    out = detector(*(paddle.to_tensor(a) for a in (images, boxes, box_mask, classes)))
    assert list(out["obj_reps"].shape) == [2, 4, 16]
    with pytest.raises(ValueError, match="no boxes"):
        detector(*(paddle.to_tensor(a) for a in (images, boxes, np.zeros_like(box_mask), classes)))
