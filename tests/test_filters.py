"""course_lib.filters: classic kernels and normalised cross-correlation.

Each kernel is checked against an independent implementation (SciPy,
scikit-image, or the formula written out in NumPy) and against the behaviour
the chapter relies on: blurs sum to 1, the Gaussian is separable, the Sobel
signs follow the documented convention, a Gabor filter prefers its own
orientation, and NCC is 1 where the template was cut.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.ndimage
import scipy.signal
import torch
import torch.nn.functional as F
from skimage.feature import match_template
from skimage.filters import gabor_kernel as skimage_gabor_kernel

from course_lib.filters import (
    box_kernel,
    gabor_bank,
    gabor_kernel,
    gaussian_kernel1d,
    gaussian_kernel2d,
    normalized_cross_correlation,
    sobel_kernels,
)

F64 = {"dtype": torch.float64}


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --- box ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("ndim", [1, 2])
@pytest.mark.parametrize("size", [1, 2, 3, 4, 11])
def test_box_kernel_is_a_uniform_average(size, ndim):
    kernel = box_kernel(size, ndim, **F64)
    assert kernel.shape == (size,) * ndim and kernel.dtype == torch.float64
    assert torch.all(kernel == 1 / size**ndim)
    assert kernel.sum().item() == pytest.approx(1.0, abs=1e-12)


def test_box_kernel_averages_a_window():
    x = torch.rand(1, 1, 6, 7, generator=_generator(), **F64)
    out = F.conv2d(x, box_kernel(3, **F64)[None, None])
    torch.testing.assert_close(out[0, 0, 2, 3], x[0, 0, 2:5, 3:6].mean(), rtol=0, atol=1e-12)


# --- Gaussian -----------------------------------------------------------------------------------

GAUSSIANS = [(1, 0.5), (3, 1.0), (9, 2.0), (15, 2.5), (21, 7.0)]


@pytest.mark.parametrize(("size", "sigma"), GAUSSIANS)
def test_gaussian_kernel1d_sums_to_one_is_symmetric_and_peaks_in_the_centre(size, sigma):
    g = gaussian_kernel1d(size, sigma, **F64)
    assert g.shape == (size,)
    assert g.sum().item() == pytest.approx(1.0, abs=1e-12)
    torch.testing.assert_close(g, g.flip(0), rtol=0, atol=0)
    assert g.argmax().item() == size // 2
    assert torch.all(g > 0)


@pytest.mark.parametrize(("size", "sigma"), GAUSSIANS)
def test_gaussian_kernel1d_matches_scipy(size, sigma):
    # scipy.signal.windows.gaussian: exp(-n^2 / (2 std^2)) with n centred, not normalised.
    window = scipy.signal.windows.gaussian(size, std=sigma)
    np.testing.assert_allclose(gaussian_kernel1d(size, sigma, **F64).numpy(), window / window.sum(), rtol=0, atol=1e-14)
    # scipy.ndimage.gaussian_filter1d of a unit impulse is its (normalised) kernel, truncated at radius size // 2.
    impulse = np.zeros(2 * size + 1)
    impulse[size] = 1.0
    radius = size // 2
    filtered = scipy.ndimage.gaussian_filter1d(impulse, sigma, mode="constant", truncate=radius / sigma)
    np.testing.assert_allclose(filtered[size - radius : size + radius + 1], gaussian_kernel1d(size, sigma, **F64).numpy(), rtol=0, atol=1e-14)


@pytest.mark.parametrize(("size", "sigma"), GAUSSIANS)
def test_gaussian_kernel2d_is_the_outer_product_of_the_1d_kernel(size, sigma):
    g1, g2 = gaussian_kernel1d(size, sigma, **F64), gaussian_kernel2d(size, sigma, **F64)
    assert g2.shape == (size, size)
    torch.testing.assert_close(g2, torch.outer(g1, g1), rtol=0, atol=0)
    assert g2.sum().item() == pytest.approx(1.0, abs=1e-12)
    for symmetric in (g2.flip(0), g2.flip(1), g2.T):
        torch.testing.assert_close(g2, symmetric, rtol=0, atol=1e-15)


def test_gaussian_kernel2d_matches_the_formula_and_scipy():
    size, sigma = 9, 1.7
    u = np.arange(size) - size // 2
    formula = np.exp(-(u[:, None] ** 2 + u[None, :] ** 2) / (2 * sigma**2))
    np.testing.assert_allclose(gaussian_kernel2d(size, sigma, **F64).numpy(), formula / formula.sum(), rtol=0, atol=1e-15)
    impulse = np.zeros((2 * size + 1, 2 * size + 1))
    impulse[size, size] = 1.0
    r = size // 2
    filtered = scipy.ndimage.gaussian_filter(impulse, sigma, mode="constant", truncate=r / sigma)
    np.testing.assert_allclose(filtered[size - r : size + r + 1, size - r : size + r + 1], formula / formula.sum(), rtol=0, atol=1e-15)


def test_separable_gaussian_blur_equals_two_1d_passes():
    size, sigma = 7, 1.5
    x = torch.rand(2, 1, 20, 17, generator=_generator(1), **F64)
    g1 = gaussian_kernel1d(size, sigma, **F64)
    one_pass = F.conv2d(x, gaussian_kernel2d(size, sigma, **F64)[None, None])
    two_passes = F.conv2d(F.conv2d(x, g1.view(1, 1, size, 1)), g1.view(1, 1, 1, size))
    torch.testing.assert_close(one_pass, two_passes, rtol=0, atol=1e-13)


@pytest.mark.parametrize(
    "make",
    [lambda **kw: box_kernel(3, **kw), lambda **kw: gaussian_kernel1d(5, 1.0, **kw), lambda **kw: gaussian_kernel2d(5, 1.0, **kw),
     lambda **kw: sobel_kernels(**kw), lambda **kw: gabor_kernel(7, 0.3, 4.0, 2.0, **kw), lambda **kw: gabor_bank(7, [0.0, 1.0], 4.0, 2.0, **kw)],
    ids=["box", "gaussian1d", "gaussian2d", "sobel", "gabor", "gabor_bank"],
)
def test_kernels_honour_dtype_and_device(make):
    assert make().dtype == torch.float32
    kernel = make(dtype=torch.float64, device="cpu")
    assert kernel.dtype == torch.float64 and kernel.device.type == "cpu"
    torch.testing.assert_close(kernel.float(), make(), rtol=1e-6, atol=1e-7)


BAD_SIZES = [0, -3, 4, 3.0, True, "5", None]


@pytest.mark.parametrize("size", BAD_SIZES, ids=repr)
@pytest.mark.parametrize(
    "make",
    [lambda s: gaussian_kernel1d(s, 1.0), lambda s: gaussian_kernel2d(s, 1.0), lambda s: gabor_kernel(s, 0.0, 4.0, 2.0),
     lambda s: gabor_bank(s, [0.0], 4.0, 2.0)],
    ids=["gaussian1d", "gaussian2d", "gabor", "gabor_bank"],
)
def test_centred_kernels_reject_sizes_that_are_not_odd_positive_ints(make, size):
    with pytest.raises(ValueError, match=r"^size must be an odd int >= 1 .*got"):
        make(size)


@pytest.mark.parametrize("size", [0, -1, 2.0, False, None], ids=repr)
def test_box_kernel_rejects_bad_sizes(size):
    with pytest.raises(ValueError, match=r"^size must be an int >= 1, got"):
        box_kernel(size)


@pytest.mark.parametrize("ndim", [0, 3, True])
def test_box_kernel_rejects_bad_ndim(ndim):
    with pytest.raises(ValueError, match=r"^ndim must be 1 or 2"):
        box_kernel(3, ndim)


@pytest.mark.parametrize("sigma", [0, -1.0, math.inf, math.nan, "2", None, True], ids=repr)
@pytest.mark.parametrize("make", [gaussian_kernel1d, gaussian_kernel2d], ids=["1d", "2d"])
def test_gaussians_reject_bad_sigma(make, sigma):
    with pytest.raises(ValueError, match=r"^sigma must be a finite number > 0, got"):
        make(5, sigma)


# --- Sobel --------------------------------------------------------------------------------------

SOBEL_X = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])


def test_sobel_kernels_are_the_documented_outer_products():
    sobel = sobel_kernels()
    assert sobel.shape == (2, 1, 3, 3)
    torch.testing.assert_close(sobel[0, 0], SOBEL_X, rtol=0, atol=0)
    torch.testing.assert_close(sobel[0, 0], torch.outer(torch.tensor([1.0, 2.0, 1.0]), torch.tensor([-1.0, 0.0, 1.0])), rtol=0, atol=0)
    torch.testing.assert_close(sobel[1, 0], SOBEL_X.T, rtol=0, atol=0)
    assert torch.all(sobel.sum(dim=(1, 2, 3)) == 0)  # no response to a flat image


def _step(dark_first: bool, axis: int) -> torch.Tensor:
    """(1, 1, 8, 8): a step edge, dark (0) then bright (1) along ``axis`` (3: left to right, 2: top to bottom)."""
    ramp = (torch.arange(8) >= 4).double()
    ramp = ramp if dark_first else 1 - ramp
    image = ramp.view(1, 8) if axis == 3 else ramp.view(8, 1)
    return image.expand(8, 8).reshape(1, 1, 8, 8)


@pytest.mark.parametrize(("dark_first", "sign"), [(True, 1.0), (False, -1.0)], ids=["dark-to-bright", "bright-to-dark"])
@pytest.mark.parametrize(("axis", "channel"), [(3, 0), (2, 1)], ids=["vertical-edge", "horizontal-edge"])
def test_sobel_responds_to_an_edge_with_the_documented_sign(dark_first, sign, axis, channel):
    """S_x fires on a vertical edge, positive when brightness rises to the right; S_y on a horizontal one, positive downwards."""
    response = F.conv2d(_step(dark_first, axis), sobel_kernels(**F64))[0]  # (2, 6, 6)
    along = response[channel].mean(dim=0 if axis == 3 else 1)  # profile across the edge
    # The 3-pixel window sees the edge at two positions; the brightness jump of 1 gives 1 * (1 + 2 + 1) = 4.
    expected = torch.tensor([0.0, 0.0, 4.0, 4.0, 0.0, 0.0], **F64) * sign
    torch.testing.assert_close(along, expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(response[1 - channel], torch.zeros(6, 6, **F64), rtol=0, atol=0)


def test_sobel_matches_scipy_ndimage_sobel():
    x = torch.rand(12, 15, generator=_generator(2), **F64)
    response = F.conv2d(x[None, None], sobel_kernels(**F64))[0]  # valid: the interior
    for channel, axis in ((0, 1), (1, 0)):  # x = columns = axis 1, y = rows = axis 0
        expected = scipy.ndimage.sobel(x.numpy(), axis=axis)[1:-1, 1:-1]
        np.testing.assert_allclose(response[channel].numpy(), expected, rtol=0, atol=1e-12)


# --- Gabor --------------------------------------------------------------------------------------


def _gabor_formula(size, theta, wavelength, sigma, gamma, psi) -> np.ndarray:
    """The formula of the docstring, written out in NumPy: x = column offset, y = row offset (down)."""
    y, x = np.mgrid[: size, : size] - size // 2
    xr = x * np.cos(theta) + y * np.sin(theta)
    yr = -x * np.sin(theta) + y * np.cos(theta)
    return np.exp(-(xr**2 + gamma**2 * yr**2) / (2 * sigma**2)) * np.cos(2 * np.pi * xr / wavelength + psi)


@pytest.mark.parametrize("theta", [0.0, 0.4, math.pi / 2, 2.0, -1.0])
@pytest.mark.parametrize(("gamma", "psi"), [(1.0, 0.0), (0.5, 0.3), (0.6, math.pi / 2)])
def test_gabor_kernel_without_normalisation_is_the_documented_formula(theta, gamma, psi):
    size, wavelength, sigma = 21, 7.0, 3.0
    kernel = gabor_kernel(size, theta, wavelength, sigma, gamma, psi, normalize=False, **F64)
    assert kernel.shape == (size, size)
    np.testing.assert_allclose(kernel.numpy(), _gabor_formula(size, theta, wavelength, sigma, gamma, psi), rtol=0, atol=1e-14)
    # scikit-image's complex Gabor kernel: sigma_x = sigma, sigma_y = sigma / gamma, frequency 1 / wavelength,
    # scaled by 1 / (2 pi sigma_x sigma_y); its real part, cropped to our size, is the same filter.
    reference = skimage_gabor_kernel(1 / wavelength, theta=theta, sigma_x=sigma, sigma_y=sigma / gamma, offset=psi, n_stds=12)
    cy, cx, r = reference.shape[0] // 2, reference.shape[1] // 2, size // 2
    reference = reference.real[cy - r : cy + r + 1, cx - r : cx + r + 1] * 2 * np.pi * sigma * (sigma / gamma)
    np.testing.assert_allclose(kernel.numpy(), reference, rtol=0, atol=1e-12)


def test_gabor_normalisation_gives_zero_mean_and_unit_l1_norm():
    bank = gabor_bank(15, torch.linspace(0, math.pi, 7), 6.0, 3.0, 0.5, 0.7, **F64)
    assert bank.shape == (7, 1, 15, 15)
    torch.testing.assert_close(bank.mean(dim=(1, 2, 3)), torch.zeros(7, **F64), rtol=0, atol=1e-15)
    torch.testing.assert_close(bank.abs().sum(dim=(1, 2, 3)), torch.ones(7, **F64), rtol=0, atol=1e-12)
    raw = gabor_bank(15, torch.linspace(0, math.pi, 7), 6.0, 3.0, 0.5, 0.7, normalize=False, **F64)
    centred = raw - raw.mean(dim=(2, 3), keepdim=True)
    torch.testing.assert_close(bank, centred / centred.abs().sum(dim=(2, 3), keepdim=True), rtol=0, atol=1e-15)


def test_gabor_kernel_is_one_filter_of_the_bank():
    thetas = [0.0, 0.5, 1.5]
    bank = gabor_bank(11, thetas, 5.0, 2.5, 0.7, 0.2, **F64)
    for k, theta in enumerate(thetas):
        torch.testing.assert_close(gabor_kernel(11, theta, 5.0, 2.5, 0.7, 0.2, **F64), bank[k, 0], rtol=0, atol=0)


def test_gabor_symmetries():
    even = gabor_kernel(15, 0.7, 6.0, 3.0, 0.5, 0.0, normalize=False, **F64)
    odd = gabor_kernel(15, 0.7, 6.0, 3.0, 0.5, math.pi / 2, normalize=False, **F64)
    torch.testing.assert_close(even, even.flip(0, 1), rtol=0, atol=1e-14)  # psi = 0: point-symmetric
    torch.testing.assert_close(odd, -odd.flip(0, 1), rtol=0, atol=1e-14)  # psi = pi/2: antisymmetric
    # psi = 0: theta and theta + pi are the same filter; theta = 0 and pi/2 are transposes of each other.
    torch.testing.assert_close(gabor_kernel(15, 0.7 + math.pi, 6.0, 3.0, 0.5, **F64), gabor_kernel(15, 0.7, 6.0, 3.0, 0.5, **F64), rtol=0, atol=1e-14)
    torch.testing.assert_close(gabor_kernel(15, math.pi / 2, 6.0, 3.0, 0.5, **F64), gabor_kernel(15, 0.0, 6.0, 3.0, 0.5, **F64).T, rtol=0, atol=1e-14)


def test_gabor_theta_zero_has_vertical_stripes():
    kernel = gabor_kernel(21, 0.0, 8.0, 4.0, 0.3, normalize=False, **F64)
    centre = 10
    # Along the centre column (moving in y) the sign never changes; along the centre row it alternates.
    assert torch.all(kernel[:, centre] > 0)
    row = kernel[centre]
    assert (row[:-1] * row[1:] < 0).sum() >= 4


def _grating(theta: float, wavelength: float, size: int = 64, phase: float = 0.0) -> torch.Tensor:
    """(1, 1, size, size): cos(2 pi (x cos theta + y sin theta) / wavelength + phase), x = column, y = row."""
    y, x = torch.meshgrid(torch.arange(size, **F64), torch.arange(size, **F64), indexing="ij")
    return torch.cos(2 * torch.pi * (x * math.cos(theta) + y * math.sin(theta)) / wavelength + phase)[None, None]


@pytest.mark.parametrize("psi", [0.0, math.pi / 2], ids=["even", "odd"])
def test_gabor_bank_responds_most_to_its_own_orientation(psi):
    thetas = [k * math.pi / 8 for k in range(8)]
    bank = gabor_bank(21, thetas, 8.0, 4.0, 0.5, psi, **F64)
    for k, theta in enumerate(thetas):
        image = _grating(theta, 8.0, phase=0.37 * k)
        energy = F.conv2d(image, bank)[0].abs().mean(dim=(1, 2))  # (8,): mean |response| per filter
        assert energy.argmax().item() == k, (k, energy)
        assert energy[k] > 2 * energy[(k + 4) % 8]  # the perpendicular filter is far weaker


BAD_GABOR_ARGS = [
    ("wavelength-0", {"wavelength": 0.0}, "wavelength must be a finite number > 0"),
    ("sigma-negative", {"sigma": -1.0}, "sigma must be a finite number > 0"),
    ("gamma-0", {"gamma": 0}, "gamma must be a finite number > 0"),
    ("gamma-nan", {"gamma": math.nan}, "gamma must be a finite number > 0"),
    ("psi-inf", {"psi": math.inf}, "psi must be a finite number"),
    ("theta-nan", {"theta": math.nan}, "theta must be a finite number, got nan"),
    ("theta-str", {"theta": "0"}, "theta must be a finite number, got '0'"),
]


@pytest.mark.parametrize(("changes", "match"), [pytest.param(c, m, id=i) for i, c, m in BAD_GABOR_ARGS])
def test_gabor_kernel_bad_arguments_raise_naming_the_argument(changes, match):
    args = {"size": 11, "theta": 0.0, "wavelength": 5.0, "sigma": 2.0, **changes}
    with pytest.raises(ValueError, match=f"^{match}"):
        gabor_kernel(**args)


@pytest.mark.parametrize("thetas", [[], [[0.0, 1.0]], [0.0, math.inf], ["0"], None], ids=["empty", "nested", "inf", "str", "None"])
def test_gabor_bank_rejects_bad_thetas(thetas):
    with pytest.raises(ValueError, match=r"^thetas must be a non-empty sequence of finite angles"):
        gabor_bank(11, thetas, 5.0, 2.0)


# --- normalised cross-correlation ---------------------------------------------------------------


def _ncc_by_loops(image: np.ndarray, template: np.ndarray) -> np.ndarray:
    """(N, C, H, W) and (C, kH, kW) -> (N, 1, H', W'): the cosine between zero-mean patch and template, one window at a time."""
    n_img, _, h, w = image.shape
    _, kh, kw = template.shape
    t = template - template.mean()
    out = np.empty((n_img, 1, h - kh + 1, w - kw + 1))
    for n in range(n_img):
        for i in range(h - kh + 1):
            for j in range(w - kw + 1):
                p = image[n, :, i : i + kh, j : j + kw]
                p = p - p.mean()
                out[n, 0, i, j] = (p * t).sum() / (np.linalg.norm(p) * np.linalg.norm(t))
    return out


@pytest.mark.parametrize(("n", "c"), [(1, 1), (2, 3)], ids=["gray", "batch-of-rgb"])
def test_ncc_equals_the_direct_loop_computation(n, c):
    image = torch.rand(n, c, 9, 11, generator=_generator(3), **F64)
    template = image[0, :, 2:5, 4:8].clone()  # (C, 3, 4)
    ncc = normalized_cross_correlation(image, template)
    assert ncc.shape == (n, 1, 7, 8)
    np.testing.assert_allclose(ncc.numpy(), _ncc_by_loops(image.numpy(), template.numpy()), rtol=0, atol=1e-10)
    # A (1, C, kH, kW) template, like a one-filter conv2d weight, gives the same result.
    torch.testing.assert_close(normalized_cross_correlation(image, template[None]), ncc, rtol=0, atol=0)


def test_ncc_matches_scikit_image_match_template():
    image = torch.rand(1, 1, 30, 25, generator=_generator(4), **F64)
    template = image[0, 0, 10:17, 5:14].clone()
    expected = match_template(image[0, 0].numpy(), template.numpy())
    np.testing.assert_allclose(normalized_cross_correlation(image, template[None])[0, 0].numpy(), expected, rtol=0, atol=1e-9)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_ncc_is_one_where_the_template_was_cut_and_within_minus_one_one(dtype):
    tolerance = 1e-9 if dtype == torch.float64 else 1e-4
    image = torch.rand(1, 1, 40, 50, generator=_generator(5), dtype=dtype)
    top, left = 17, 23
    template = image[0, :, top : top + 8, left : left + 6].clone()
    ncc = normalized_cross_correlation(image, template)[0, 0]
    assert ncc[top, left].item() == pytest.approx(1.0, abs=tolerance)
    assert divmod(ncc.argmax().item(), ncc.shape[1]) == (top, left)
    assert ncc.min().item() >= -1 - tolerance and ncc.max().item() <= 1 + tolerance


def test_ncc_ignores_brightness_and_contrast():
    image = torch.rand(1, 1, 20, 20, generator=_generator(6), **F64)
    template = torch.rand(1, 5, 5, generator=_generator(7), **F64)
    ncc = normalized_cross_correlation(image, template)
    torch.testing.assert_close(normalized_cross_correlation(3.0 * image + 0.5, template), ncc, rtol=0, atol=1e-10)
    torch.testing.assert_close(normalized_cross_correlation(image, 0.2 * template - 4.0), ncc, rtol=0, atol=1e-10)
    torch.testing.assert_close(normalized_cross_correlation(-image, template), -ncc, rtol=0, atol=1e-10)


def test_ncc_of_a_flat_patch_is_finite_and_near_zero():
    image = torch.rand(1, 1, 12, 12, generator=_generator(8), **F64)
    image[..., :6, :6] = 0.5  # a flat region
    ncc = normalized_cross_correlation(image, torch.rand(1, 4, 4, generator=_generator(9), **F64))
    assert torch.isfinite(ncc).all()
    assert ncc[0, 0, :3, :3].abs().max().item() < 1e-6


BAD_NCC_ARGS = [
    ("image-3d", (1, 8, 8), (1, 3, 3), {}, r"image must have shape \(N, C, H, W\) \(4 dims\), got shape \(1, 8, 8\)"),
    ("template-2d", (1, 1, 8, 8), (3, 3), {}, r"template must have shape \(C, kH, kW\) or \(1, C, kH, kW\), got shape \(3, 3\)"),
    ("template-two-filters", (1, 1, 8, 8), (2, 1, 3, 3), {}, "template must have shape"),
    ("channels", (1, 3, 8, 8), (1, 3, 3), {}, "template must have the image's 3 channels, got 1"),
    ("too-large", (1, 1, 8, 8), (1, 9, 3), {}, r"template \(\(9, 3\)\) must not be larger than the image"),
    ("eps-0", (1, 1, 8, 8), (1, 3, 3), {"eps": 0.0}, "eps must be a finite number > 0"),
]


@pytest.mark.parametrize(
    ("image_shape", "template_shape", "kwargs", "match"), [pytest.param(s, t, k, m, id=i) for i, s, t, k, m in BAD_NCC_ARGS]
)
def test_ncc_bad_arguments_raise_naming_the_argument(image_shape, template_shape, kwargs, match):
    with pytest.raises(ValueError, match=f"^{match}"):
        normalized_cross_correlation(torch.rand(image_shape), torch.rand(template_shape), **kwargs)


@pytest.mark.parametrize("which", ["image", "template"])
def test_ncc_rejects_what_is_not_a_tensor(which):
    args = {"image": torch.rand(1, 1, 8, 8), "template": torch.rand(1, 3, 3), which: [[0.0, 1.0]]}
    with pytest.raises(ValueError, match=f"^{which} must be a torch.Tensor.*, got list"):
        normalized_cross_correlation(**args)


def test_ncc_rejects_a_constant_template():
    with pytest.raises(ValueError, match="^template must not be constant"):
        normalized_cross_correlation(torch.rand(1, 1, 8, 8), torch.full((1, 3, 3), 0.5))
