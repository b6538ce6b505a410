"""course_lib.analysis.gabor_fit: Gabor functions fitted to filters, and the explained variance R^2."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from course_lib.analysis.gabor_fit import GABOR_PARAMETERS, fit_gabor, gabor_function
from course_lib.filters import gabor_kernel

F64 = torch.float64


def _params(**values):
    defaults = {"theta": 0.0, "wavelength": 4.0, "sigma": 1.5, "gamma": 1.0, "psi": 0.0, "x0": 0.0, "y0": 0.0}
    defaults.update(values)
    return {name: torch.tensor(float(v), dtype=F64) for name, v in defaults.items()}


@pytest.mark.parametrize("theta, wavelength, sigma, gamma, psi", [(0.0, 4.0, 1.5, 1.0, 0.0), (1.1, 3.0, 2.0, 0.6, 1.2),
                                                                  (2.5, 6.0, 1.0, 1.7, -0.7)])
def test_centred_gabor_function_is_the_unnormalised_gabor_kernel(theta, wavelength, sigma, gamma, psi):
    ours = gabor_function(7, 7, **_params(theta=theta, wavelength=wavelength, sigma=sigma, gamma=gamma, psi=psi))
    theirs = gabor_kernel(7, theta, wavelength, sigma, gamma, psi, normalize=False, dtype=F64)
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)


def test_gabor_function_centre_shifts_the_pattern_and_parameters_broadcast():
    centred = gabor_function(9, 9, **_params(theta=0.4))
    shifted = gabor_function(9, 9, **_params(theta=0.4, x0=2.0, y0=-1.0))
    # shifted[r, c] = centred[r - y0, c - x0]: y0 = -1 moves the pattern one row up, x0 = 2 two columns right
    torch.testing.assert_close(shifted[:8, 2:], centred[1:, :7])
    thetas = torch.linspace(0, 3, 5, dtype=F64)
    bank = gabor_function(5, 7, thetas, *(p for name, p in _params().items() if name != "theta"))
    assert bank.shape == (5, 5, 7)
    torch.testing.assert_close(bank[3], gabor_function(5, 7, **_params(theta=thetas[3].item())))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_scaled_and_shifted_gabor_is_recovered_with_r2_one(seed):
    rng = np.random.default_rng(seed)
    truth = _params(theta=rng.uniform(0, math.pi), wavelength=rng.uniform(3, 7), sigma=rng.uniform(1.2, 2.2),
                    gamma=rng.uniform(0.6, 1.5), psi=rng.uniform(0, 2 * math.pi), x0=rng.uniform(-1, 1),
                    y0=rng.uniform(-1, 1))
    g = gabor_function(9, 9, **truth)
    amplitude, offset = rng.uniform(0.5, 3) * rng.choice([-1, 1]), rng.uniform(-1, 1)
    fit = fit_gabor((amplitude * g + offset)[None], steps=400)
    assert fit.r2.item() > 0.9999
    torch.testing.assert_close(fit.fitted[0], amplitude * g + offset, rtol=0, atol=2e-3)
    assert 0 <= fit.params["theta"].item() < math.pi
    assert 0 <= fit.params["psi"].item() < 2 * math.pi
    # The fit is the same function, whatever parameters describe it (theta, psi and amplitude sign trade off).
    refit = gabor_function(9, 9, **{name: fit.params[name][0] for name in GABOR_PARAMETERS})
    torch.testing.assert_close(fit.amplitude[0] * refit + fit.offset[0], fit.fitted[0])


def test_r2_is_the_explained_variance_and_random_filters_fit_much_worse_than_gabors():
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(12, 1, 7, 7, generator=g, dtype=F64)
    fit = fit_gabor(noise)
    residual = ((noise[:, 0] - fit.fitted) ** 2).sum(dim=(1, 2))
    total = ((noise[:, 0] - noise[:, 0].mean(dim=(1, 2), keepdim=True)) ** 2).sum(dim=(1, 2))
    torch.testing.assert_close(fit.r2, 1 - residual / total)
    assert fit.r2.max() < 0.7 and fit.r2.mean() < 0.5
    # A Gabor plus a little noise still fits far better than noise.
    clean = gabor_kernel(7, 0.3, 4.0, 1.5, normalize=False, dtype=F64)
    noisy = clean + 0.05 * clean.std() * torch.randn(7, 7, generator=g, dtype=F64)
    assert fit_gabor(noisy[None]).r2.item() > 0.95
    rows = fit.rows()
    assert len(rows) == 12 and set(rows[0]) == {*GABOR_PARAMETERS, "r2"}


def test_fit_gabor_refuses_bad_filters():
    with pytest.raises(ValueError, match=r"filters must have shape \(K, kH, kW\)"):
        fit_gabor(torch.zeros(7, 7))
    with pytest.raises(ValueError, match=r"\(K, kH, kW\) or \(K, 1, kH, kW\)"):
        fit_gabor(torch.rand(4, 3, 7, 7))
    with pytest.raises(ValueError, match="must not be constant"):
        fit_gabor(torch.ones(2, 5, 5))
    with pytest.raises(ValueError, match="at least 2x2"):
        fit_gabor(torch.rand(2, 1, 5))
    with pytest.raises(ValueError, match="steps must be an int"):
        fit_gabor(torch.rand(2, 5, 5), steps=-1)
    with pytest.raises(ValueError, match="lr must be a finite number > 0"):
        fit_gabor(torch.rand(2, 5, 5), lr=0)
