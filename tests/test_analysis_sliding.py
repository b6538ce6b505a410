"""Sliding windows and the fully convolutional network give the same predictions (course_lib.analysis.sliding)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from course_lib.analysis.sliding import convolutionalize, sliding_window_predict, window_crops
from torch_reference import random_tensor

TOL = {"atol": 1e-10, "rtol": 1e-10}


def _window_classifier(channels=3, classes=4, seed=0) -> nn.Sequential:
    """(B, 3, 18, 18) -> (B, classes): unpadded convs, two 2x2 max-pools (stride 4), two linear layers."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(channels, 5, 3), nn.ReLU(), nn.MaxPool2d(2),  # 18 -> 16 -> 8
        nn.Conv2d(5, 6, 3), nn.ReLU(), nn.MaxPool2d(2),  # 8 -> 6 -> 3
        nn.Flatten(), nn.Linear(6 * 3 * 3, 7), nn.ReLU(), nn.Linear(7, classes),
    ).double()


def _fully_convolutional(classifier: nn.Sequential) -> nn.Sequential:
    features, fc1, fc2 = classifier[:6], classifier[7], classifier[9]
    return nn.Sequential(*features, convolutionalize(fc1, (6, 3, 3)), nn.ReLU(), convolutionalize(fc2, (7, 1, 1)))


@pytest.mark.parametrize(("shape", "window", "stride"), [
    ((2, 3, 7, 9), 3, 2), ((1, 2, 6, 6), (2, 4), (1, 2)), ((2, 1, 5, 5), 5, 1), ((1, 1, 8, 5), (3, 2), 3),
])
def test_window_crops_are_the_crops(shape, window, stride):
    images = random_tensor(*shape)
    crops = window_crops(images, window, stride)
    (wh, ww), (sh, sw) = [(v, v) if isinstance(v, int) else v for v in (window, stride)]
    rows, cols = (shape[2] - wh) // sh + 1, (shape[3] - ww) // sw + 1
    assert crops.shape == (shape[0], rows, cols, shape[1], wh, ww)
    for i in range(rows):
        for j in range(cols):
            assert torch.equal(crops[:, i, j], images[:, :, i * sh:i * sh + wh, j * sw:j * sw + ww])


def test_sliding_window_predict_runs_the_classifier_on_each_crop():
    classifier = _window_classifier()
    images = random_tensor(2, 3, 30, 26)
    with torch.no_grad():
        maps = sliding_window_predict(classifier, images, 18, (4, 2), batch_size=7)  # batches cut rows apart
        assert maps.shape == (2, 4, 4, 5)
        for i in range(4):
            for j in range(5):
                crop = images[:, :, 4 * i:4 * i + 18, 2 * j:2 * j + 18]
                torch.testing.assert_close(maps[:, :, i, j], classifier(crop), **TOL)


@pytest.mark.parametrize("size", [(18, 18), (30, 26), (42, 43)])
def test_fully_convolutional_net_equals_windows_at_its_stride(size):
    classifier = _window_classifier()
    fcn = _fully_convolutional(classifier)
    images = random_tensor(2, 3, *size, seed=1)
    with torch.no_grad():
        dense = fcn(images)
        windows = sliding_window_predict(classifier, images, 18, 4)
    assert dense.shape == windows.shape == (2, 4, (size[0] - 18) // 4 + 1, (size[1] - 18) // 4 + 1)
    torch.testing.assert_close(dense, windows, **TOL)


def test_windows_at_another_stride_differ_from_the_network():
    classifier = _window_classifier()
    images = random_tensor(1, 3, 30, 30, seed=2)
    with torch.no_grad():
        dense = _fully_convolutional(classifier)(images)  # stride 4: 4 x 4 positions
        windows = sliding_window_predict(classifier, images, 18, 2)  # stride 2: 7 x 7 positions
    assert windows.shape[-2:] == (7, 7) and dense.shape[-2:] == (4, 4)
    torch.testing.assert_close(windows[..., ::2, ::2], dense, **TOL)  # the even windows are the network's
    assert not torch.allclose(windows[..., 1::2, 1::2], dense[..., :3, :3])


def test_convolutionalize_keeps_weights_and_gradients_flow():
    torch.manual_seed(0)
    linear = nn.Linear(2 * 3 * 4, 5).double()
    conv = convolutionalize(linear, (2, 3, 4))
    x = random_tensor(6, 2, 3, 4, requires_grad=True)
    out = conv(x)
    assert out.shape == (6, 5, 1, 1)
    torch.testing.assert_close(out.flatten(1), linear(x.flatten(1)), **TOL)
    (grad,) = torch.autograd.grad(out.sum(), x)
    (expected,) = torch.autograd.grad(linear(x.flatten(1)).sum(), x)
    torch.testing.assert_close(grad, expected, **TOL)
    no_bias = convolutionalize(nn.Linear(3, 2, bias=False), (3, 1, 1))
    assert no_bias.bias is None


@pytest.mark.parametrize(("kwargs", "match"), [
    (dict(window=0, stride=1), "window"), (dict(window=3, stride=0), "stride"), (dict(window=9, stride=1), "window"),
    (dict(window=(2, 2, 2), stride=1), "window"),
])
def test_bad_window_or_stride_is_refused_naming_it(kwargs, match):
    with pytest.raises(ValueError, match=match):
        window_crops(random_tensor(1, 1, 8, 8), **kwargs)


def test_bad_images_batch_size_and_classifier_are_refused():
    with pytest.raises(ValueError, match=r"images must have shape \(N, C, H, W\)"):
        window_crops(random_tensor(1, 8, 8), 3, 1)
    with pytest.raises(ValueError, match="batch_size"):
        sliding_window_predict(nn.Flatten(), random_tensor(1, 1, 8, 8), 3, 1, batch_size=0)
    with pytest.raises(ValueError, match=r"classifier must map \(B, C, h, w\) crops to \(B, K\)"):
        sliding_window_predict(nn.Identity(), random_tensor(1, 1, 8, 8), 3, 1)


@pytest.mark.parametrize(("linear", "shape", "match"), [
    (nn.Conv2d(1, 1, 1), (1, 1, 1), "linear must be an nn.Linear"),
    (nn.Linear(12, 2), (3, 2, 3), "in_features=12"),
    (nn.Linear(12, 2), (3, 4), r"feature_shape must be \(C, h, w\)"),
    (nn.Linear(12, 2), (3, 0, 4), "feature_shape's h"),
])
def test_convolutionalize_refuses_a_mismatch(linear, shape, match):
    with pytest.raises(ValueError, match=match):
        convolutionalize(linear, shape)
