r"""Fit a Gabor function to each filter of a bank, and say how well it fits.

The first-layer filters of a CNN trained on natural images often look like the receptive
fields of simple cells in the primary visual cortex, V1: an oriented grating seen through a
Gaussian window, a **Gabor function**. "Look like" can be measured. :func:`fit_gabor` finds,
for each filter :math:`w`, the Gabor function :math:`g` of :func:`gabor_function` (orientation,
wavelength, window size and shape, phase, *and* centre, which a learned filter need not have in
the middle) plus an amplitude :math:`a` and an offset :math:`b` that minimise
:math:`\lVert w - (a g + b) \rVert^2`, and reports the explained variance

.. math::

    R^2 = 1 - \frac{\lVert w - (a g + b) \rVert^2}{\lVert w - \bar w \rVert^2}
        = \operatorname{corr}(w, g)^2 ,

the second form because :math:`a` and :math:`b` are the least-squares solution for the given
:math:`g`. :math:`R^2 = 1` is a perfect Gabor; a filter of independent random taps gets a
much lower value, which is the baseline to compare a trained filter's :math:`R^2` with (the
Gabor family has 8 free shape parameters, so even noise is fitted a little).

The search: a grid of starting points (orientations, wavelengths, window sizes, two phases)
for every filter, each refined by Adam on :math:`-\operatorname{corr}(w, g)^2`, in float64;
the best per filter is kept.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .._checks import check_int, check_number, check_tensor

__all__ = ["GABOR_PARAMETERS", "GaborFit", "gabor_function", "fit_gabor"]

GABOR_PARAMETERS = ("theta", "wavelength", "sigma", "gamma", "psi", "x0", "y0")


def gabor_function(
    height: int,
    width: int,
    theta: torch.Tensor,
    wavelength: torch.Tensor,
    sigma: torch.Tensor,
    gamma: torch.Tensor,
    psi: torch.Tensor,
    x0: torch.Tensor,
    y0: torch.Tensor,
) -> torch.Tensor:
    r"""Gabor functions on a ``height x width`` grid, one per entry of the (equally shaped) parameter tensors.

    With :math:`x` the column and :math:`y` the row offset of a tap from the grid's centre
    (``y`` pointing down), shifted by the centre :math:`(x_0, y_0)` and rotated by :math:`\theta`,

    .. math::

        x' = (x - x_0)\cos\theta + (y - y_0)\sin\theta, \quad
        y' = -(x - x_0)\sin\theta + (y - y_0)\cos\theta,

        g = \exp\!\left(-\frac{x'^2 + \gamma^2 y'^2}{2\sigma^2}\right)\cos\!\left(\frac{2\pi x'}{\lambda} + \psi\right):

    :func:`course_lib.filters.gabor_kernel` with ``normalize=False`` when :math:`x_0 = y_0 = 0`
    (same conventions), differentiable in every parameter. Returns shape
    ``(*theta.shape, height, width)``.
    """
    params = torch.broadcast_tensors(theta, wavelength, sigma, gamma, psi, x0, y0)
    theta, wavelength, sigma, gamma, psi, x0, y0 = (p[..., None, None] for p in params)
    dtype, device = theta.dtype, theta.device
    rows = torch.arange(height, dtype=dtype, device=device) - (height - 1) / 2
    cols = torch.arange(width, dtype=dtype, device=device) - (width - 1) / 2
    yy, xx = torch.meshgrid(rows, cols, indexing="ij")
    dx, dy = xx - x0, yy - y0
    x_rot = dx * torch.cos(theta) + dy * torch.sin(theta)
    y_rot = -dx * torch.sin(theta) + dy * torch.cos(theta)
    envelope = torch.exp(-(x_rot**2 + gamma**2 * y_rot**2) / (2 * sigma**2))
    return envelope * torch.cos(2 * math.pi * x_rot / wavelength + psi)


@dataclass
class GaborFit:
    """The result of :func:`fit_gabor` for K filters of shape (kH, kW).

    Attributes:
        params: ``{name: (K,) tensor}`` for the names in :data:`GABOR_PARAMETERS` (theta and
            psi in radians, theta reduced to [0, pi) with psi adjusted so that g is unchanged).
        amplitude, offset: (K,) the least-squares :math:`a` and :math:`b`.
        fitted: (K, kH, kW) :math:`a g + b`, the best Gabor approximation of each filter.
        r2: (K,) explained variance :math:`R^2` of each filter by its fit, in [0, 1].
    """

    params: dict[str, torch.Tensor]
    amplitude: torch.Tensor
    offset: torch.Tensor
    fitted: torch.Tensor
    r2: torch.Tensor

    def rows(self) -> list[dict]:
        """One dict per filter (its parameters, R^2), ready for ``pandas.DataFrame``."""
        return [{**{name: value[k].item() for name, value in self.params.items()}, "r2": self.r2[k].item()}
                for k in range(len(self.r2))]


def _bounded(lo: float, hi: float, u: torch.Tensor) -> torch.Tensor:
    """Map an unconstrained ``u`` into (lo, hi): Adam can then roam freely and never leave the range."""
    return lo + (hi - lo) * torch.sigmoid(u)


def _unbounded(lo: float, hi: float, value: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`_bounded`."""
    p = ((value - lo) / (hi - lo)).clamp(1e-6, 1 - 1e-6)
    return torch.log(p) - torch.log1p(-p)


def _correlation(w: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """corr(w, g) over the last two axes; 0 where g is (numerically) constant."""
    wc = w - w.mean(dim=(-2, -1), keepdim=True)
    gc = g - g.mean(dim=(-2, -1), keepdim=True)
    norms = wc.norm(dim=(-2, -1)) * gc.norm(dim=(-2, -1))
    return (wc * gc).sum(dim=(-2, -1)) / norms.clamp_min(1e-30)


def fit_gabor(filters: torch.Tensor, *, steps: int = 200, lr: float = 0.05) -> GaborFit:
    """Fit a Gabor function (plus amplitude and offset) to each of K filters.

    Args:
        filters: (K, kH, kW), or a one-input-channel ``conv2d`` weight (K, 1, kH, kW); each
            filter must not be constant. For a colour filter (K, 3, kH, kW), fit each channel
            (or their mean) separately.
        steps: Adam steps from each starting point.
        lr: Adam's learning rate on the unconstrained parameters.

    The parameters are kept in ranges that make sense on the grid: wavelength in
    [2, 3 max(kH, kW)] (2 pixels is the shortest period a grid can show), sigma in
    [0.5, max(kH, kW)], gamma in [0.2, 5], the centre inside the grid.

    Returns:
        a :class:`GaborFit` (float64).
    """
    check_tensor("filters", filters, 3, "(K, kH, kW)")
    if filters.ndim == 4 and filters.shape[1] == 1:
        filters = filters[:, 0]
    if filters.ndim != 3:
        raise ValueError(f"filters must have shape (K, kH, kW) or (K, 1, kH, kW), got {tuple(filters.shape)}")
    k, height, width = filters.shape
    if k == 0 or height < 2 or width < 2:
        raise ValueError(f"filters must hold at least one filter of at least 2x2 taps, got {tuple(filters.shape)}")
    w = filters.detach().to(torch.float64).cpu()
    if (w.flatten(1).std(dim=1) == 0).any():
        raise ValueError("filters must not be constant: a flat filter has no shape to fit")
    check_int("steps", steps, 0)
    check_number("lr", lr, positive=True)

    side = max(height, width)
    ranges = {"wavelength": (2.0, 3.0 * side), "sigma": (0.5, float(side)), "gamma": (0.2, 5.0),
              "x0": (-(width - 1) / 2, (width - 1) / 2), "y0": (-(height - 1) / 2, (height - 1) / 2)}
    # Starting grid: 8 orientations x 3 wavelengths x 2 window sizes x 2 phases (even and odd), centred, round.
    grid = torch.cartesian_prod(
        torch.arange(8, dtype=torch.float64) * math.pi / 8,
        torch.tensor([2.5, side / 2, side], dtype=torch.float64),
        torch.tensor([side / 6, side / 3], dtype=torch.float64),
        torch.tensor([0.0, math.pi / 2], dtype=torch.float64),
    )  # (S, 4)
    starts = grid.shape[0]
    shape = (k, starts)
    theta = grid[:, 0].expand(shape).clone().requires_grad_(True)
    psi = grid[:, 3].expand(shape).clone().requires_grad_(True)
    raw = {
        "wavelength": _unbounded(*ranges["wavelength"], grid[:, 1]).expand(shape).clone(),
        "sigma": _unbounded(*ranges["sigma"], grid[:, 2]).expand(shape).clone(),
        "gamma": torch.zeros(shape, dtype=torch.float64) + _unbounded(*ranges["gamma"], torch.tensor(1.0)),
        "x0": torch.zeros(shape, dtype=torch.float64),
        "y0": torch.zeros(shape, dtype=torch.float64),
    }
    for value in raw.values():
        value.requires_grad_(True)
    target = w[:, None]  # (K, 1, kH, kW) against (K, S, kH, kW)

    def candidates():
        values = {name: _bounded(*ranges[name], u) for name, u in raw.items()}
        return values, gabor_function(height, width, theta, values["wavelength"], values["sigma"], values["gamma"],
                                      psi, values["x0"], values["y0"])

    optimizer = torch.optim.Adam([theta, psi, *raw.values()], lr=lr)
    for _ in range(steps):
        _, g = candidates()
        loss = -(_correlation(target, g) ** 2).sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    with torch.no_grad():
        values, g = candidates()
        r2_all = _correlation(target, g) ** 2  # (K, S)
        best = r2_all.argmax(dim=1)
        pick = torch.arange(k)
        g = g[pick, best]  # (K, kH, kW)
        params = {"theta": theta[pick, best], "psi": psi[pick, best]}
        params.update({name: values[name][pick, best] for name in ("wavelength", "sigma", "gamma", "x0", "y0")})
        # theta and theta + pi describe the same grating with x' negated: cos(-u + psi) = cos(u - psi).
        turns = torch.floor(params["theta"] / math.pi)
        odd = turns.remainder(2) == 1
        params["theta"] = params["theta"] - turns * math.pi
        params["psi"] = torch.where(odd, -params["psi"], params["psi"]).remainder(2 * math.pi)
        gc = g - g.mean(dim=(1, 2), keepdim=True)
        wc = w - w.mean(dim=(1, 2), keepdim=True)
        amplitude = (gc * wc).sum(dim=(1, 2)) / (gc * gc).sum(dim=(1, 2)).clamp_min(1e-30)
        offset = w.mean(dim=(1, 2)) - amplitude * g.mean(dim=(1, 2))
        fitted = amplitude[:, None, None] * g + offset[:, None, None]
        residual = ((w - fitted) ** 2).sum(dim=(1, 2))
        r2 = (1 - residual / (wc * wc).sum(dim=(1, 2))).clamp(0.0, 1.0)
    ordered = {name: params[name] for name in GABOR_PARAMETERS}
    return GaborFit(ordered, amplitude, offset, fitted, r2)
