r"""Classic hand-designed filters, and template matching built from convolutions.

Single kernels come as plain tensors, ``(size,)`` in 1D and ``(size, size)``
in 2D; banks of filters come as a ``conv2d`` weight ``(C_out, 1, kH, kW)``.
To use a single 2D kernel as a one-filter layer, add the two leading axes::

    blurred = F.conv2d(images, gaussian_kernel2d(9, 2.0)[None, None])  # images: (N, 1, H, W)

Every kernel is meant for ``conv2d``, which computes a *cross-correlation*,
:math:`y_{i,j} = \sum_{u,v} x_{i+u,\,j+v}\, w_{u,v}` (no kernel flip); the sign
conventions below are those of that operation. Image coordinates: ``x`` is the
column index (pointing right), ``y`` the row index (pointing **down**), both
measured from the kernel's centre, which is why most sizes must be odd.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ._checks import check_int, check_number, check_rank, check_tensor

__all__ = [
    "box_kernel",
    "gaussian_kernel1d",
    "gaussian_kernel2d",
    "sobel_kernels",
    "gabor_kernel",
    "gabor_bank",
    "normalized_cross_correlation",
]


# --- centred kernels ----------------------------------------------------------------------------


def _check_odd_size(size) -> None:
    """A centred kernel needs a centre pixel: ``size`` = 2r + 1."""
    if not isinstance(size, int) or isinstance(size, bool) or size < 1 or size % 2 == 0:
        raise ValueError(f"size must be an odd int >= 1 (the kernel needs a centre pixel), got {size!r}")


def _centred_coords(size: int, dtype: torch.dtype, device) -> torch.Tensor:
    """``[-r, ..., 0, ..., r]`` for ``size = 2r + 1``: the offsets of the taps from the centre."""
    return torch.arange(size, dtype=dtype, device=device) - size // 2


# --- blurs --------------------------------------------------------------------------------------


def box_kernel(size: int, ndim: int = 2, *, dtype: torch.dtype = torch.float32, device=None) -> torch.Tensor:
    r"""The box (moving-average) kernel: every one of its ``size**ndim`` taps is :math:`1/\text{size}^\text{ndim}`.

    Shape ``(size,)`` for ``ndim=1``, ``(size, size)`` for ``ndim=2``; it sums
    to 1, so it averages. An even ``size`` is allowed (the kernel then has no
    centre, and "same" padding is asymmetric).
    """
    check_int("size", size, 1)
    if ndim not in (1, 2) or isinstance(ndim, bool):
        raise ValueError(f"ndim must be 1 or 2, got {ndim!r}")
    return torch.full((size,) * ndim, 1 / size**ndim, dtype=dtype, device=device)


def gaussian_kernel1d(size: int, sigma: float, *, dtype: torch.dtype = torch.float32, device=None) -> torch.Tensor:
    r"""A sampled 1D Gaussian of shape ``(size,)``, normalised to sum to 1.

    .. math::

        w_i = \frac{1}{Z} \exp\!\left(-\frac{i^2}{2\sigma^2}\right),
        \qquad i = -r, \dots, r, \quad \text{size} = 2r + 1,
        \qquad Z = \sum_{i=-r}^{r} \exp\!\left(-\frac{i^2}{2\sigma^2}\right).

    ``size`` must be odd, so that the kernel is centred. A common choice is
    ``size`` of about :math:`6\sigma`: the tails beyond :math:`3\sigma` are
    negligible.
    """
    _check_odd_size(size)
    check_number("sigma", sigma, positive=True)
    offsets = _centred_coords(size, dtype, device)
    weights = torch.exp(-(offsets**2) / (2 * sigma**2))
    return weights / weights.sum()


def gaussian_kernel2d(size: int, sigma: float, *, dtype: torch.dtype = torch.float32, device=None) -> torch.Tensor:
    r"""A sampled isotropic 2D Gaussian of shape ``(size, size)``, summing to 1.

    .. math::

        w_{u,v} = \frac{1}{Z} \exp\!\left(-\frac{u^2 + v^2}{2\sigma^2}\right)
        = g_u\, g_v ,

    the outer product of :func:`gaussian_kernel1d` with itself, since
    :math:`e^{-(u^2 + v^2)/2\sigma^2} = e^{-u^2/2\sigma^2} e^{-v^2/2\sigma^2}`.
    This is **separability**: a ``size x size`` Gaussian blur equals a
    ``size x 1`` pass followed by a ``1 x size`` pass with ``g``, ``2 size``
    instead of ``size**2`` multiplications per pixel.
    """
    g = gaussian_kernel1d(size, sigma, dtype=dtype, device=device)
    return torch.outer(g, g)


# --- edges --------------------------------------------------------------------------------------


def sobel_kernels(*, dtype: torch.dtype = torch.float32, device=None) -> torch.Tensor:
    r"""The two Sobel kernels as one ``conv2d`` weight of shape ``(2, 1, 3, 3)``: ``[S_x, S_y]``.

    Each is a central difference :math:`[-1, 0, 1]` along one axis, smoothed by
    :math:`[1, 2, 1]` along the other (an outer product):

    .. math::

        S_x = \begin{bmatrix} 1 \\ 2 \\ 1 \end{bmatrix}
              \begin{bmatrix} -1 & 0 & 1 \end{bmatrix}
            = \begin{bmatrix} -1 & 0 & 1 \\ -2 & 0 & 2 \\ -1 & 0 & 1 \end{bmatrix},
        \qquad
        S_y = S_x^\top = \begin{bmatrix} -1 & -2 & -1 \\ 0 & 0 & 0 \\ 1 & 2 & 1 \end{bmatrix}.

    **Sign convention** (for ``conv2d``, a cross-correlation): channel 0,
    :math:`S_x \star I`, is **positive where brightness increases to the
    right** (dark-to-bright vertical edge) and negative for bright-to-dark;
    channel 1, :math:`S_y \star I`, is positive where brightness increases
    **downwards** (rows grow down). A true convolution (``scipy.signal.convolve2d``)
    flips the kernel and so flips both signs. The edge strength is
    :math:`G = \sqrt{(S_x \star I)^2 + (S_y \star I)^2}`.
    """
    smooth = torch.tensor([1.0, 2.0, 1.0], dtype=dtype, device=device)
    derivative = torch.tensor([-1.0, 0.0, 1.0], dtype=dtype, device=device)
    return torch.stack([torch.outer(smooth, derivative), torch.outer(derivative, smooth)]).unsqueeze(1)


# --- oriented patterns --------------------------------------------------------------------------


def gabor_bank(
    size: int,
    thetas: Sequence[float] | torch.Tensor,
    wavelength: float,
    sigma: float,
    gamma: float = 1.0,
    psi: float = 0.0,
    *,
    normalize: bool = True,
    dtype: torch.dtype = torch.float32,
    device=None,
) -> torch.Tensor:
    r"""A bank of Gabor filters, one per angle, as a ``conv2d`` weight ``(len(thetas), 1, size, size)``.

    Filter ``k`` is :func:`gabor_kernel` with ``theta = thetas[k]`` (radians;
    ``torch.deg2rad`` converts degrees); see there for the formula and the
    orientation convention. With ``normalize=True`` (the default) each filter
    is shifted to zero mean and scaled to :math:`\sum |w| = 1`, so a flat
    region gives no response and the responses of the filters are comparable.
    """
    _check_odd_size(size)
    for name, value in (("wavelength", wavelength), ("sigma", sigma), ("gamma", gamma)):
        check_number(name, value, positive=True)
    check_number("psi", psi)
    message = "thetas must be a non-empty sequence of finite angles (radians), got {!r}"
    try:
        angles = torch.as_tensor(thetas, dtype=dtype, device=device)
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(message.format(thetas)) from None
    if angles.ndim > 1 or angles.numel() == 0 or not torch.isfinite(angles).all():
        raise ValueError(message.format(thetas))
    coords = _centred_coords(size, dtype, device)
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")  # y points down, x to the right
    cos_t = torch.cos(angles).view(-1, 1, 1)
    sin_t = torch.sin(angles).view(-1, 1, 1)
    x_rot = xx * cos_t + yy * sin_t
    y_rot = -xx * sin_t + yy * cos_t
    envelope = torch.exp(-(x_rot**2 + gamma**2 * y_rot**2) / (2 * sigma**2))
    bank = envelope * torch.cos(2 * torch.pi * x_rot / wavelength + psi)  # (len(angles), size, size)
    if normalize:
        bank = bank - bank.mean(dim=(1, 2), keepdim=True)
        bank = bank / bank.abs().sum(dim=(1, 2), keepdim=True).clamp_min(torch.finfo(dtype).tiny)
    return bank.unsqueeze(1)


def gabor_kernel(
    size: int,
    theta: float,
    wavelength: float,
    sigma: float,
    gamma: float = 1.0,
    psi: float = 0.0,
    *,
    normalize: bool = True,
    dtype: torch.dtype = torch.float32,
    device=None,
) -> torch.Tensor:
    r"""One Gabor filter, shape ``(size, size)``: a cosine grating seen through a Gaussian window.

    With the coordinates :math:`(x, y)` of a tap relative to the centre
    (``x`` = column offset, ``y`` = row offset, pointing down), rotated by
    :math:`\theta`,

    .. math::

        x' = x \cos\theta + y \sin\theta, \qquad y' = -x \sin\theta + y \cos\theta,

        g_\theta(x, y) = \exp\!\left(-\frac{x'^2 + \gamma^2 y'^2}{2\sigma^2}\right)
        \cos\!\left(\frac{2\pi x'}{\lambda} + \psi\right),

    where ``wavelength`` :math:`\lambda` is the period of the stripes in
    pixels, ``sigma`` :math:`\sigma` the size of the window, ``gamma``
    :math:`\gamma` its aspect ratio (below 1: elongated along the stripes) and
    ``psi`` :math:`\psi` the phase (0: symmetric, a bright centre line;
    :math:`\pi/2`: antisymmetric, an edge detector).

    **Orientation.** ``theta`` (radians) is the direction across the stripes:
    ``theta = 0`` gives vertical stripes (it fires on vertical lines and
    edges), ``theta = pi/2`` horizontal ones. Because ``y`` points down,
    increasing ``theta`` turns the stripes clockwise on screen.

    With ``normalize=True`` (the default) the kernel is shifted to zero mean
    and scaled to :math:`\sum |w| = 1`; ``normalize=False`` returns
    :math:`g_\theta` as written. ``size`` must be odd.
    """
    check_number("theta", theta)
    return gabor_bank(
        size, [theta], wavelength, sigma, gamma, psi, normalize=normalize, dtype=dtype, device=device
    )[0, 0]


# --- template matching --------------------------------------------------------------------------


def normalized_cross_correlation(image: torch.Tensor, template: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    r"""Normalised cross-correlation of ``image`` with ``template`` at every valid position.

    Args:
        image: ``(N, C, H, W)``.
        template: ``(C, kH, kW)``, or ``(1, C, kH, kW)`` like a one-filter
            ``conv2d`` weight; not constant, and not larger than the image.
        eps: lower bound on a patch's squared norm :math:`\lVert P - \bar P \rVert^2`,
            so that a flat patch gives a response near 0 instead of 0/0.

    Returns:
        ``(N, 1, H - kH + 1, W - kW + 1)``: entry ``[n, 0, i, j]`` compares the
        template with the patch :math:`P` of image ``n`` whose top-left corner
        is ``(i, j)`` (all ``C`` channels):

        .. math::

            \text{NCC}_{i,j} = \frac{\sum (P - \bar P)(T - \bar T)}
                                    {\lVert P - \bar P \rVert\, \lVert T - \bar T \rVert}
                             = \frac{\sum P\, (T - \bar T)}
                                    {\sqrt{\sum P^2 - (\sum P)^2 / n}\; \lVert T - \bar T \rVert},

        with :math:`n = C\, k_H k_W` and sums over the patch. It is the cosine
        of the angle between the zero-mean patch and template: in
        :math:`[-1, 1]` (up to rounding), 1 exactly where the patch is
        :math:`a T + b` with :math:`a > 0`, and blind to the patch's brightness
        and contrast. Everything is a convolution (``F.conv2d``): the numerator
        with the zero-mean template, :math:`\sum P` and :math:`\sum P^2` with a
        kernel of ones. The second form loses precision in ``float32`` on
        nearly flat patches; use ``float64`` when that matters.
    """
    check_rank("image", image, 4, "(N, C, H, W)")
    check_tensor("template", template)
    if not (template.ndim == 3 or (template.ndim == 4 and template.shape[0] == 1)):
        raise ValueError(f"template must have shape (C, kH, kW) or (1, C, kH, kW), got shape {tuple(template.shape)}")
    template = template.reshape(1, *template.shape[-3:])
    if template.shape[1] != image.shape[1]:
        raise ValueError(f"template must have the image's {image.shape[1]} channels, got {template.shape[1]}")
    if template.shape[2] > image.shape[2] or template.shape[3] > image.shape[3]:
        raise ValueError(f"template ({tuple(template.shape[2:])}) must not be larger than the image ({tuple(image.shape[2:])})")
    check_number("eps", eps, positive=True)
    t0 = template - template.mean()
    t_norm = t0.norm()
    if t_norm == 0:
        raise ValueError("template must not be constant: a flat template matches every patch equally")
    n = template.numel()
    ones = torch.ones_like(template)
    local_sum = F.conv2d(image, ones)  # sum of P over every window
    local_sq = F.conv2d(image**2, ones)  # sum of P^2 over every window
    patch_norm = (local_sq - local_sum**2 / n).clamp_min(eps).sqrt()
    return F.conv2d(image, t0) / (patch_norm * t_norm)
