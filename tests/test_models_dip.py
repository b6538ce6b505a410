"""course_lib.models.dip: the Deep Image Prior generator, PSNR, and the fitting loop."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from course_lib.models.dip import DeepImagePrior, fit_deep_image_prior, psnr


def _image(c: int = 3, side: int = 16, seed: int = 0) -> torch.Tensor:
    """A smooth test image (1, C, side, side) in [0, 1]: a few low-frequency waves."""
    y, x = torch.meshgrid(torch.linspace(0, 1, side), torch.linspace(0, 1, side), indexing="ij")
    g = torch.Generator().manual_seed(seed)
    phases = torch.rand(c, 2, generator=g) * 6
    channels = [0.5 + 0.25 * torch.sin(3 * x + p[0]) + 0.2 * torch.cos(2 * y + p[1]) for p in phases]
    return torch.stack(channels)[None]


def test_psnr_matches_its_formula():
    a = torch.zeros(1, 3, 4, 4, dtype=torch.float64)
    assert math.isclose(psnr(a + 0.1, a), 20.0, rel_tol=1e-9)  # MSE 0.01 -> 10 log10(1 / 0.01)
    assert math.isclose(psnr(a + 0.05, a), 20 + 20 * math.log10(2), rel_tol=1e-9)  # half the error: + 6.02 dB
    assert math.isclose(psnr(a + 25.5, a, data_range=255.0), 20.0, rel_tol=1e-9)
    assert psnr(a, a) == math.inf
    with pytest.raises(ValueError, match="same shape"):
        psnr(a, a[0])
    with pytest.raises(ValueError, match="data_range must be a finite number > 0"):
        psnr(a, a, data_range=0)


@pytest.mark.parametrize("channels, skip", [((8, 8), 2), ((4, 6, 8), 0), ((5,), 3)])
def test_generator_keeps_the_size_and_gives_pixels_in_0_1(channels, skip):
    torch.manual_seed(0)
    net = DeepImagePrior(in_channels=6, out_channels=2, channels=channels, skip_channels=skip)
    z = torch.rand(2, 6, 16, 16)
    out = net(z)
    assert out.shape == (2, 2, 16, 16)
    assert (out > 0).all() and (out < 1).all()
    has_skips = any(isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1) and m.out_channels == skip
                    for m in net.skips.modules())
    assert has_skips == (skip > 0)


def test_generator_refuses_sizes_it_cannot_halve_and_bad_settings():
    net = DeepImagePrior(in_channels=4, channels=(4, 4, 4))
    with pytest.raises(ValueError, match=r"divisible by 2\*\*3 = 8"):
        net(torch.rand(1, 4, 12, 16))
    with pytest.raises(ValueError, match=r"z must have shape \(N, C, H, W\)"):
        net(torch.rand(4, 16, 16))
    with pytest.raises(ValueError, match="channels must be a non-empty sequence"):
        DeepImagePrior(channels=())
    with pytest.raises(ValueError, match="channels must be a non-empty sequence"):
        DeepImagePrior(channels=(8, 0))
    with pytest.raises(ValueError, match="skip_channels must be an int >= 0"):
        DeepImagePrior(skip_channels=-1)


def test_fitting_a_clean_image_lowers_the_loss_and_records_psnr():
    clean = _image()
    torch.manual_seed(0)
    net = DeepImagePrior(in_channels=8, channels=(8, 8), skip_channels=2)
    result = fit_deep_image_prior(net, clean, iterations=60, reference=clean, lr=0.02, input_channels=8,
                                  record_every=20)
    assert result.iterations == [20, 40, 60]
    assert len(result.loss) == len(result.psnr) == 3
    assert result.loss[-1] < result.loss[0]
    assert result.psnr[-1] > result.psnr[0]
    assert result.best_iteration in result.iterations
    assert math.isclose(psnr(result.best, clean), max(result.psnr), rel_tol=1e-9)
    assert math.isclose(psnr(result.final, clean), result.psnr[-1], rel_tol=1e-9)


def test_masked_pixels_do_not_influence_the_fit():
    clean = _image(c=1, side=8)
    mask = torch.ones(1, 1, 8, 8)
    mask[..., 2:5, 3:6] = 0
    corrupted = clean.clone()
    corrupted[..., 2:5, 3:6] = torch.rand(1, 1, 3, 3, generator=torch.Generator().manual_seed(1))
    outputs = []
    for target in (clean, corrupted):
        torch.manual_seed(0)
        net = DeepImagePrior(in_channels=4, out_channels=1, channels=(4, 4), skip_channels=1)
        outputs.append(fit_deep_image_prior(net, target, mask=mask, iterations=5, input_channels=4).final)
    torch.testing.assert_close(outputs[0], outputs[1], rtol=0, atol=0)


def test_averaging_and_input_noise_are_seeded_and_averaging_smooths():
    clean = _image(side=8)
    results = []
    for _ in range(2):
        torch.manual_seed(0)
        net = DeepImagePrior(in_channels=4, channels=(4, 4), skip_channels=1)
        results.append(fit_deep_image_prior(net, clean, iterations=10, input_channels=4, input_noise=0.05,
                                            average=0.9, reference=clean, record_every=1, seed=3))
    assert results[0].psnr == results[1].psnr
    torch.testing.assert_close(results[0].final, results[1].final, rtol=0, atol=0)
    assert results[0].best is not None and results[0].best_iteration in range(1, 11)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"target": torch.rand(2, 3, 8, 8)}, "target must hold one image"),
        ({"target": torch.rand(8, 8)}, r"target must have shape \(1, C, H, W\)"),
        ({"iterations": 0}, "iterations must be an int >= 1"),
        ({"mask": torch.ones(1, 2, 8, 8)}, r"mask must have shape \(1, 1 or 3, 8, 8\)"),
        ({"reference": torch.rand(1, 3, 4, 4)}, "reference must have target's shape"),
        ({"average": 1.0}, r"average must lie in \[0, 1\)"),
        ({"lr": -1.0}, "lr must be a finite number > 0"),
        ({"input_channels": 0}, "input_channels must be an int >= 1"),
        ({"net": "unet"}, "net must be a torch.nn.Module"),
    ],
)
def test_fit_refuses_bad_arguments(kwargs, message):
    torch.manual_seed(0)
    arguments = {"net": DeepImagePrior(in_channels=4, channels=(4,), skip_channels=1), "target": torch.rand(1, 3, 8, 8),
                 "iterations": 2, "input_channels": 4}
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=message):
        fit_deep_image_prior(**arguments)
