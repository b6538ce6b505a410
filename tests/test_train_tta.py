"""course_lib.train.tta: test-time augmentation (flip, AlexNet's ten crops) and ensembles."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from course_lib.train.tta import Ensemble, ensemble_predict, tta_predict, tta_views

K = 5  # classes


def _convnet(seed: int, channels: int = 3) -> nn.Module:
    """Conv -> ReLU -> global average pooling -> linear: accepts any input size, not flip-invariant."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(channels, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 6, 3), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, K),
    )


class _FlipInvariant(nn.Module):
    """Logits of the symmetrised image x + mirror(x): the same for an image and its mirror image."""

    def __init__(self, shape=(3, 6, 6)):
        super().__init__()
        torch.manual_seed(0)
        self.linear = nn.Linear(shape[0] * shape[1] * shape[2], K)

    def forward(self, x):
        return self.linear((x + x.flip(-1)).flatten(1))


class _Fixed(nn.Module):
    """Returns the same logits for every input (one row per image)."""

    def __init__(self, logits):
        super().__init__()
        self.register_buffer("logits", torch.tensor(logits, dtype=torch.float32))

    def forward(self, x):
        return self.logits.expand(x.shape[0], -1)


def _images(n=4, c=3, h=6, w=6, seed=0):
    return torch.randn(n, c, h, w, generator=torch.Generator().manual_seed(seed))


def _probs(model, x):
    with torch.no_grad():
        return torch.softmax(model.eval()(x), dim=1)


TIGHT = dict(rtol=0, atol=1e-6)  # float32 sums of at most 10 probabilities


# --- views ----------------------------------------------------------------------------------


def test_flip_views():
    x = _images()
    views = tta_views(x, "flip")
    assert len(views) == 2 and torch.equal(views[0], x)
    assert torch.equal(views[1], x[..., torch.arange(5, -1, -1)])


@pytest.mark.parametrize("hw, crop", [((8, 8), 4), ((7, 9), (5, 5)), ((6, 10), (4, 6))])
def test_ten_crop_views_are_the_corner_centre_and_mirrored_regions(hw, crop):
    h_in, w_in = hw
    x = _images(2, 3, h_in, w_in)
    h, w = (crop, crop) if isinstance(crop, int) else crop
    top, left = (h_in - h) // 2, (w_in - w) // 2  # even differences: no rounding question
    assert (h_in - h) % 2 == 0 and (w_in - w) % 2 == 0

    def five(img):
        return [
            img[..., :h, :w], img[..., :h, w_in - w:], img[..., h_in - h:, :w], img[..., h_in - h:, w_in - w:],
            img[..., top:top + h, left:left + w],
        ]

    expected = five(x) + five(x.flip(-1))
    views = tta_views(x, "ten_crop", crop)
    assert len(views) == 10
    for i, (got, want) in enumerate(zip(views, expected)):
        assert got.shape == (2, 3, h, w), i
        assert torch.equal(got, want), f"view {i}"
    # the mirrored top-left crop is the mirror image of the original top-right crop
    assert torch.equal(views[5], views[1].flip(-1))


# --- tta_predict ----------------------------------------------------------------------------


@pytest.mark.parametrize("mode, crop", [("none", None), ("flip", None), ("ten_crop", 4)])
def test_tta_predict_shapes_and_rows_sum_to_one(mode, crop):
    probs = tta_predict(_convnet(0), _images(7), mode=mode, crop_size=crop)
    assert probs.shape == (7, K) and probs.dtype == torch.float32
    assert bool((probs >= 0).all())
    torch.testing.assert_close(probs.sum(1), torch.ones(7), **TIGHT)


def test_flip_invariant_model_gives_identical_tta_and_plain_predictions():
    model, x = _FlipInvariant(), _images()
    plain = tta_predict(model, x, mode="none")
    torch.testing.assert_close(tta_predict(model, x, mode="flip"), plain, rtol=0, atol=1e-7)
    torch.testing.assert_close(plain, _probs(model, x), rtol=0, atol=1e-7)


def test_flip_tta_is_the_mean_of_the_two_views_probabilities():
    model, x = _convnet(1), _images()
    expected = (_probs(model, x) + _probs(model, x.flip(-1))) / 2
    got = tta_predict(model, x, mode="flip")
    torch.testing.assert_close(got, expected, **TIGHT)
    assert not torch.allclose(got, _probs(model, x), atol=1e-4)  # this model is not flip-invariant


def test_ten_crop_is_the_mean_over_ten_manual_crops_and_not_of_logits():
    model, x = _convnet(2), _images(3, 3, 8, 8)
    def five(img):
        corners = [img[..., a:a + 5, b:b + 5] for a, b in [(0, 0), (0, 3), (3, 0), (3, 3)]]
        return corners + [img[..., 2:7, 2:7]]  # centre: round(1.5) = 2, as torchvision rounds

    # the five crops of the mirror image: with an odd margin (8 - 5) its centre crop is *not*
    # the mirror of the original centre crop (columns 1..5 of x, not 2..6)
    crops = five(x) + five(x.flip(-1))
    expected = sum(_probs(model, c) for c in crops) / 10
    got = tta_predict(model, x, mode="ten_crop", crop_size=5)
    torch.testing.assert_close(got, expected, **TIGHT)
    with torch.no_grad():
        softmax_of_mean_logits = torch.softmax(sum(model(c) for c in crops) / 10, dim=1)
    assert not torch.allclose(got, softmax_of_mean_logits, atol=1e-5)


def test_chunked_prediction_equals_one_batch_and_model_mode_is_restored():
    model = nn.Sequential(_convnet(3), nn.Dropout(0.5))  # dropout: eval mode makes it deterministic
    model.train()
    x = _images(10)
    whole = tta_predict(model, x, mode="flip")
    chunked = tta_predict(model, x, mode="flip", batch_size=3)
    torch.testing.assert_close(chunked, whole, rtol=0, atol=1e-6)
    assert model.training
    assert not whole.requires_grad


@pytest.mark.parametrize("kwargs, match", [
    (dict(mode="five_crop"), "mode"),
    (dict(mode="ten_crop"), "crop_size is required"),
    (dict(mode="ten_crop", crop_size=7), "larger than the input"),
    (dict(mode="ten_crop", crop_size=(3, 0)), "crop_size"),
    (dict(mode="flip", crop_size=4), "only used with mode='ten_crop'"),
    (dict(mode="flip", batch_size=0), "batch_size"),
])
def test_tta_argument_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        tta_predict(_convnet(0), _images(), **kwargs)


def test_tta_needs_a_batch_of_images():
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        tta_predict(_convnet(0), torch.zeros(3, 6, 6))


# --- ensembles ------------------------------------------------------------------------------


def test_ensemble_of_identical_models_equals_one_model():
    model, x = _convnet(4), _images()
    ensemble = Ensemble([model, copy.deepcopy(model), copy.deepcopy(model)]).eval()
    with torch.no_grad():
        got = ensemble(x)
    torch.testing.assert_close(got, _probs(model, x), **TIGHT)
    torch.testing.assert_close(ensemble_predict([model, copy.deepcopy(model)], x), _probs(model, x), **TIGHT)


def test_ensemble_of_two_models_is_the_mean_of_their_probabilities():
    a, b, x = _convnet(5), _convnet(6), _images(6)
    pa, pb = _probs(a, x), _probs(b, x)
    assert not torch.allclose(pa, pb, atol=1e-3)
    with torch.no_grad():
        got = Ensemble([a, b]).eval()(x)
    torch.testing.assert_close(got, (pa + pb) / 2, **TIGHT)
    torch.testing.assert_close(got.sum(1), torch.ones(6), **TIGHT)
    torch.testing.assert_close(ensemble_predict([a, b], x), got, **TIGHT)


def test_ensemble_predict_with_tta_averages_each_members_tta():
    a, b, x = _convnet(7), _convnet(8), _images(5, 3, 8, 8)
    expected = (tta_predict(a, x, mode="ten_crop", crop_size=6) + tta_predict(b, x, mode="ten_crop", crop_size=6)) / 2
    got = ensemble_predict([a, b], x, tta="ten_crop", crop_size=6, batch_size=2)
    torch.testing.assert_close(got, expected, **TIGHT)


def test_vote_counts_each_members_argmax():
    members = [_Fixed([3.0, 0.0, 0.0]), _Fixed([0.0, 1.0, 0.9]), _Fixed([2.0, 0.0, 1.0])]
    x = _images(2)
    votes = Ensemble(members, mode="vote")(x)
    torch.testing.assert_close(votes, torch.tensor([[2 / 3, 1 / 3, 0.0]] * 2), **TIGHT)
    # the mean of probabilities can disagree with the vote
    mean_prob = Ensemble([_Fixed([1.0, 0.0]), _Fixed([1.0, 0.0]), _Fixed([0.0, 9.0])])(x)
    vote = Ensemble([_Fixed([1.0, 0.0]), _Fixed([1.0, 0.0]), _Fixed([0.0, 9.0])], mode="vote")(x)
    assert mean_prob.argmax(1).tolist() == [1, 1] and vote.argmax(1).tolist() == [0, 0]
    torch.testing.assert_close(ensemble_predict(members, x, mode="vote"), votes, **TIGHT)


def test_ensemble_argument_errors():
    with pytest.raises(ValueError, match="models must be a non-empty sequence"):
        Ensemble([])
    with pytest.raises(ValueError, match=r"models\[1\] must be a torch.nn.Module, got str"):
        Ensemble([_convnet(0), "not a model"])
    with pytest.raises(ValueError, match=r"mode must be one of \['mean_prob', 'vote'\], got 'median'"):
        Ensemble([_convnet(0)], mode="median")
    with pytest.raises(ValueError, match="mode"):
        ensemble_predict([_convnet(0)], _images(), mode="max")
