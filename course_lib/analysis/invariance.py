r"""How invariant is each layer of a CNN to translation, scaling and rotation? Measured, not assumed.

A layer's representation of an image is the flattened output of that layer, a vector
:math:`f(x) \in \mathbb{R}^D`. It is **invariant** to a transformation :math:`T` when
:math:`f(T x) = f(x)`. :func:`invariance_by_layer` measures how close a layer comes, as the
cosine similarity between the two vectors after subtracting the mean representation
:math:`\mu` of the (untransformed) batch:

.. math::

    \text{similarity}(x, T) = \frac{(f(x) - \mu) \cdot (f(T x) - \mu)}
                                   {\lVert f(x) - \mu \rVert\, \lVert f(T x) - \mu \rVert},

averaged over the images. 1 means invariant; 0 means that :math:`f(Tx)` is no closer to
:math:`f(x)` than the representation of an unrelated image would typically be. Centring matters
for ReLU features: they are all non-negative, so the raw cosine of *any* two images is already
well above 0. A convolution's map flattened this way keeps the positions, so a shift moves the
features to other coordinates: convolution is *equivariant*, and the similarity of an early map
drops as soon as the shift is a sizeable fraction of the features' width. Pooling, and global
average pooling most of all, throws positions away and so buys invariance to translation; no
layer of a plain CNN is built to be invariant to rotation or scale, and what it has of it is learned.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from .._checks import check_choice, check_flag, check_module, check_number, check_rank
from .interpret import feature_maps

__all__ = ["TRANSFORMS", "transform_images", "feature_similarity", "invariance_by_layer"]

TRANSFORMS = ("translation", "circular_shift", "rotation", "scale")


def transform_images(x: torch.Tensor, kind: str, magnitude: float, *, fill: float = 0.0) -> torch.Tensor:
    """``x`` (N, C, H, W) moved, rotated or scaled by ``magnitude``; same shape.

    * ``"translation"``: shifted right by ``magnitude`` pixels (negative: left; fractional
      shifts interpolate bilinearly); the uncovered columns get ``fill``.
    * ``"circular_shift"``: rolled right by ``magnitude`` pixels (an int), what leaves on the
      right coming back on the left: no pixel is lost, the exact symmetry of a circular convolution.
    * ``"rotation"``: rotated by ``magnitude`` degrees counter-clockwise about the image centre
      (bilinear, corners filled with ``fill``).
    * ``"scale"``: zoomed by the factor ``magnitude`` (> 0) about the image centre (bilinear;
      below 1 shrinks and fills the border with ``fill``).
    """
    check_rank("x", x, 4, "(N, C, H, W)")
    check_choice("kind", kind, TRANSFORMS)
    check_number("magnitude", magnitude, positive=kind == "scale")
    check_number("fill", fill)
    bilinear = InterpolationMode.BILINEAR
    if kind == "circular_shift":
        if int(magnitude) != magnitude:
            raise ValueError(f"magnitude must be a whole number of pixels for 'circular_shift', got {magnitude!r}")
        return torch.roll(x, int(magnitude), dims=-1)
    if kind == "translation":
        if int(magnitude) == magnitude:  # a whole-pixel shift is exact: copy, do not interpolate
            shift, out = int(magnitude), torch.full_like(x, fill)
            width = x.shape[-1]
            if abs(shift) < width:
                if shift >= 0:
                    out[..., shift:] = x[..., :width - shift]
                else:
                    out[..., :shift] = x[..., -shift:]
            return out
        return TF.affine(x, angle=0.0, translate=[float(magnitude), 0.0], scale=1.0, shear=[0.0, 0.0],
                         interpolation=bilinear, fill=fill)
    if kind == "rotation":
        return TF.rotate(x, float(magnitude), interpolation=bilinear, fill=fill)
    return TF.affine(x, angle=0.0, translate=[0.0, 0.0], scale=float(magnitude), shear=[0.0, 0.0],
                     interpolation=bilinear, fill=fill)


def feature_similarity(a: torch.Tensor, b: torch.Tensor, *, centre: torch.Tensor | None = None) -> torch.Tensor:
    """(N,) cosine similarity of row ``n`` of ``a`` and of ``b``, both (N, D), after subtracting ``centre`` (D,).

    A zero row (after centring) has similarity 0 with anything, instead of 0/0.
    """
    check_rank("a", a, 2, "(N, D)")
    check_rank("b", b, 2, "(N, D)")
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same shape (N, D), got {tuple(a.shape)} and {tuple(b.shape)}")
    if centre is not None:
        if not isinstance(centre, torch.Tensor) or centre.shape != a.shape[1:]:
            raise ValueError(f"centre must be a ({a.shape[1]},) tensor, got {centre!r}")
        a, b = a - centre, b - centre
    a, b = a.double(), b.double()
    norms = a.norm(dim=1) * b.norm(dim=1)
    return torch.where(norms > 0, (a * b).sum(dim=1) / norms.clamp_min(torch.finfo(torch.float64).tiny), 0.0)


def invariance_by_layer(
    model: nn.Module,
    x: torch.Tensor,
    layers: Sequence[str],
    transform: str | Callable[[torch.Tensor, float], torch.Tensor],
    magnitudes: Sequence[float],
    *,
    centre: bool = True,
    fill: float = 0.0,
) -> list[dict]:
    """How similar each layer's representation of ``x`` stays when ``x`` is transformed.

    Args:
        model: any nn.Module; run in eval mode without autograd.
        x: (N, C, H, W) images, at least 2 when ``centre`` (the mean needs a batch).
        layers: module names, as for :func:`~course_lib.analysis.interpret.feature_maps`.
        transform: a name from :data:`TRANSFORMS` (applied by :func:`transform_images` with ``fill``)
            or a function ``(x, magnitude) -> transformed x`` of the same shape.
        magnitudes: the sizes of the transformation to try (pixels, degrees, factors).
        centre: subtract the mean representation of the untransformed ``x`` first (see the
            module docstring); ``False`` gives the raw cosine.
        fill: the value of uncovered pixels for the named transforms.

    Returns:
        rows ``{"layer", "magnitude", "similarity", "std"}``, layer by layer and magnitude by
        magnitude: the mean and the standard deviation over the images of
        :func:`feature_similarity` of the flattened outputs, ready for ``pandas.DataFrame``.
    """
    check_module("model", model)
    check_rank("x", x, 4, "(N, C, H, W)")
    check_flag("centre", centre)
    if centre and x.shape[0] < 2:
        raise ValueError(f"x must hold at least 2 images when centre=True (their mean is subtracted), "
                         f"got shape {tuple(x.shape)}")
    if isinstance(transform, str):
        check_choice("transform", transform, TRANSFORMS)
        kind = transform

        def apply(images, magnitude):
            return transform_images(images, kind, magnitude, fill=fill)
    elif callable(transform):
        apply = transform
    else:
        raise ValueError(f"transform must be one of {list(TRANSFORMS)} or a callable (x, magnitude) -> x, "
                         f"got {transform!r}")
    if isinstance(magnitudes, (str, bytes)) or not isinstance(magnitudes, Sequence) or not magnitudes:
        raise ValueError(f"magnitudes must be a non-empty sequence of numbers, got {magnitudes!r}")
    for magnitude in magnitudes:
        check_number("magnitudes[i]", magnitude)

    reference = {name: out.flatten(1) for name, out in feature_maps(model, x, layers).items()}
    centres = {name: out.mean(dim=0) if centre else None for name, out in reference.items()}
    rows = {name: [] for name in reference}
    for magnitude in magnitudes:
        moved = apply(x, magnitude)
        if not isinstance(moved, torch.Tensor) or moved.shape != x.shape:
            raise ValueError(f"transform must return a tensor of x's shape {tuple(x.shape)}, got "
                             f"{tuple(moved.shape) if isinstance(moved, torch.Tensor) else type(moved).__name__}")
        for name, out in feature_maps(model, moved, layers).items():
            similarity = feature_similarity(reference[name], out.flatten(1), centre=centres[name])
            rows[name].append({"layer": name, "magnitude": magnitude, "similarity": similarity.mean().item(),
                               "std": similarity.std(correction=0).item()})
    return [row for name in reference for row in rows[name]]
