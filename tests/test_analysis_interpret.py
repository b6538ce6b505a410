"""course_lib.analysis.interpret: feature maps by hooks, occlusion sensitivity, saliency maps.

Occlusion and saliency are checked on models whose answer is known in closed form: for a
linear model s_c(x) = w_c . x + b_c, occluding a patch P with the value v lowers s_c by
sum_{p in P} w_{c,p} (x_p - v), and the input gradient is w_c. On a small CNN the gradient is
compared with torch.autograd.functional.jacobian, one image at a time, and the occlusion map
with a loop that occludes and evaluates one position at a time.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from course_lib.analysis.interpret import feature_maps, input_gradient, occlusion_sensitivity, saliency_map

F64 = torch.float64


def _linear(channels: int, height: int, width: int, classes: int = 4, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(channels * height * width, classes)).double()


def _cnn(seed: int = 0, channels: int = 2, classes: int = 3) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(channels, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(4, 6, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, classes),
    ).double()


def _images(n: int, c: int, h: int, w: int, seed: int = 1) -> torch.Tensor:
    return torch.rand(n, c, h, w, generator=torch.Generator().manual_seed(seed), dtype=F64)


# --- feature maps ---------------------------------------------------------------------------------


def test_feature_maps_have_the_shapes_of_each_layer_and_match_a_manual_forward():
    model = _cnn().eval()
    x = _images(3, 2, 8, 8)
    maps = feature_maps(model, x, ["2", "5", "6", ""])
    assert list(maps) == ["2", "5", "6", ""]
    assert maps["2"].shape == (3, 4, 8, 8)
    assert maps["5"].shape == (3, 6, 4, 4)
    assert maps["6"].shape == (3, 6, 1, 1)
    assert maps[""].shape == (3, 3)
    with torch.no_grad():
        torch.testing.assert_close(maps["2"], model[:3](x), rtol=0, atol=0)
        torch.testing.assert_close(maps[""], model(x), rtol=0, atol=0)
    assert not any(t.requires_grad for t in maps.values())


def test_feature_maps_use_eval_mode_remove_hooks_and_restore_the_mode():
    model = _cnn().train()
    x = _images(4, 2, 8, 8)
    maps = feature_maps(model, x, ["1"])
    with torch.no_grad():
        expected = model.eval()[:2](x)  # batch norm with running statistics
    model.train()
    torch.testing.assert_close(maps["1"], expected)
    assert model.training and model[1].training
    assert all(not m._forward_hooks for m in model.modules())


def test_feature_maps_refuse_unknown_duplicate_and_uncalled_layers():
    model = _cnn()
    x = _images(1, 2, 8, 8)
    with pytest.raises(ValueError, match="no module named '99'"):
        feature_maps(model, x, ["99"])
    with pytest.raises(ValueError, match="named twice"):
        feature_maps(model, x, ["0", "0"])
    with pytest.raises(ValueError, match="non-empty sequence"):
        feature_maps(model, x, "0")
    with pytest.raises(ValueError, match="non-empty sequence"):
        feature_maps(model, x, [])

    class Skips(nn.Module):
        def __init__(self):
            super().__init__()
            self.used, self.unused = nn.Identity(), nn.Identity()

        def forward(self, x):
            return self.used(x)

    with pytest.raises(ValueError, match="were not called"):
        feature_maps(Skips(), x, ["used", "unused"])
    assert all(not m._forward_hooks for m in model.modules())


# --- occlusion --------------------------------------------------------------------------------------


@pytest.mark.parametrize("patch, stride, fill", [(3, 1, 0.0), (4, 2, 0.5), ((2, 5), (3, 1), -1.0), (9, 4, 0.25)])
def test_occlusion_of_a_linear_model_drops_the_score_by_the_patch_sum_of_w_times_x_minus_fill(patch, stride, fill):
    c, h, w = 2, 9, 10
    model = _linear(c, h, w)
    x = _images(3, c, h, w)
    target = torch.tensor([0, 3, 1])
    drops = occlusion_sensitivity(model, x, target, patch=patch, stride=stride, fill=fill, score="logit")
    ph, pw = (patch, patch) if isinstance(patch, int) else patch
    sh, sw = (stride, stride) if isinstance(stride, int) else stride
    weights = model[1].weight.view(-1, c, h, w)[target]  # (3, C, H, W)
    contribution = (weights * (x - fill)).sum(dim=1, keepdim=True)  # (3, 1, H, W)
    expected = F.avg_pool2d(contribution, (ph, pw), stride=(sh, sw))[:, 0] * ph * pw
    assert drops.shape == ((3, (h - ph) // sh + 1, (w - pw) // sw + 1))
    torch.testing.assert_close(drops, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("score", ["probability", "logit"])
def test_occlusion_of_a_cnn_matches_occluding_one_position_at_a_time(score):
    model = _cnn().eval()
    x = _images(2, 2, 8, 8)
    target = torch.tensor([2, 0])
    drops = occlusion_sensitivity(model, x, target, patch=3, stride=2, fill=0.3, score=score, batch_size=4)
    with torch.no_grad():
        for n in range(2):
            base = model(x[n:n + 1])
            base = (base.softmax(1) if score == "probability" else base)[0, target[n]]
            for i, r in enumerate(range(0, 6, 2)):
                for j, c in enumerate(range(0, 6, 2)):
                    occluded = x[n:n + 1].clone()
                    occluded[..., r:r + 3, c:c + 3] = 0.3
                    out = model(occluded)
                    out = (out.softmax(1) if score == "probability" else out)[0, target[n]]
                    torch.testing.assert_close(drops[n, i, j], base - out)


def test_occlusion_with_an_int_target_and_a_patch_as_large_as_the_image():
    model = _linear(1, 5, 5)
    x = _images(2, 1, 5, 5)
    drops = occlusion_sensitivity(model, x, 1, patch=5, stride=1, fill=0.0, score="logit")
    assert drops.shape == (2, 1, 1)
    expected = (model[1].weight[1].view(1, 5, 5) * x[:, 0]).sum(dim=(1, 2))
    torch.testing.assert_close(drops[:, 0, 0], expected)


def test_occlusion_leaves_the_model_mode_and_the_input_unchanged():
    model = _cnn().train()
    x = _images(1, 2, 8, 8)
    before = x.clone()
    occlusion_sensitivity(model, x, torch.tensor([1]), patch=4, stride=4)
    assert model.training
    torch.testing.assert_close(x, before, rtol=0, atol=0)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"x": torch.zeros(2, 8, 8, dtype=F64)}, r"x must have shape \(N, C, H, W\)"),
        ({"target": torch.tensor([0])}, "one class per image"),
        ({"target": torch.tensor([0.0, 1.0])}, "integer tensor of class indices"),
        ({"target": torch.tensor([0, 3])}, r"class indices in \[0, 2\]"),
        ({"patch": 9}, "must fit in the image"),
        ({"patch": 0}, "patch must be an int or a pair"),
        ({"stride": (1, 0)}, "stride must be an int or a pair"),
        ({"score": "softmax"}, "score must be one of"),
        ({"fill": float("nan")}, "fill must be a finite number"),
        ({"batch_size": 0}, "batch_size must be an int >= 1"),
    ],
)
def test_occlusion_refuses_bad_arguments_naming_them(kwargs, message):
    arguments = {"model": _cnn(), "x": _images(2, 2, 8, 8), "target": torch.tensor([0, 1])}
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=message):
        occlusion_sensitivity(**arguments)


# --- saliency -----------------------------------------------------------------------------------------


def test_input_gradient_of_a_linear_model_is_the_class_weight():
    model = _linear(3, 4, 5, classes=6)
    x = _images(4, 3, 4, 5)
    target = torch.tensor([5, 0, 2, 2])
    gradient = input_gradient(model, x, target)
    expected = model[1].weight.view(6, 3, 4, 5)[target]
    torch.testing.assert_close(gradient, expected, rtol=0, atol=1e-15)
    torch.testing.assert_close(saliency_map(model, x, target), expected.abs().amax(dim=1), rtol=0, atol=1e-15)


@pytest.mark.parametrize("score", ["logit", "probability"])
def test_input_gradient_of_a_cnn_matches_autograd_image_by_image(score):
    model = _cnn(seed=3).eval()
    x = _images(3, 2, 6, 6, seed=4)
    target = torch.tensor([1, 2, 0])
    gradient = input_gradient(model, x, target, score=score)
    for n in range(3):
        def class_score(image, n=n):
            out = model(image[None])
            return (out.softmax(1) if score == "probability" else out)[0, target[n]]

        expected = torch.autograd.functional.jacobian(class_score, x[n])
        torch.testing.assert_close(gradient[n], expected, rtol=1e-10, atol=1e-12)
    assert saliency_map(model, x, target, score=score).shape == (3, 6, 6)
    assert (saliency_map(model, x, target, score=score) >= 0).all()


def test_saliency_leaves_parameter_gradients_and_the_input_alone():
    model = _cnn().train()
    x = _images(2, 2, 8, 8)
    saliency_map(model, x, torch.tensor([0, 1]))
    assert all(p.grad is None for p in model.parameters())
    assert not x.requires_grad and x.grad is None
    assert model.training


def test_saliency_refuses_a_model_that_does_not_return_logits_and_bad_targets():
    x = _images(2, 2, 8, 8)
    with pytest.raises(ValueError, match=r"model must return \(N, K\) logits"):
        saliency_map(nn.Identity(), x, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="score must be one of"):
        saliency_map(_cnn(), x, torch.tensor([0, 1]), score="loss")
    with pytest.raises(ValueError, match="model must be a torch.nn.Module"):
        saliency_map(lambda t: t, x, torch.tensor([0, 1]))
