"""Batch augmentation: random affine maps (rotate, scale, shift) and AlexNet's "fancy PCA" colour shift.

The colour shift (Krizhevsky et al. 2012, section 4.1) is at the end of this
module: :func:`pca_colour_basis` finds the principal axes of the RGB values of
a set of images, and :func:`fancy_pca` moves every image along them by a
random amount.

Handwritten digits vary in slant, size and position, and a network that sees
each training digit only as it was scanned learns those few versions. Drawing a
small random rotation, scaling and shift for every image of every batch shows
it a new version each epoch; the label stays the same. This is the classic
augmentation of MNIST (the "distortions" of LeCun et al. 1998).

:class:`RandomAffine` has the interface of
:class:`~course_lib.train.gpu_loader.RandomCropFlip`, so it plugs into
:class:`~course_lib.train.gpu_loader.GPULoader` as ``augment=``::

    loader = GPULoader.from_split(split, batch_size=64, augment=RandomAffine(degrees=10, scale=(0.9, 1.1), translate=2))

How: for image ``i`` with angle ``a``, scale ``s`` and shift ``t`` (pixels), the
output pixel at ``p`` (pixel coordinates about the image centre, x to the
right, y down) takes the input value at

.. math::

    p_\\text{in} = \\frac{1}{s} R(-a) \\, (p - t),

read by bilinear interpolation (zero outside the image). One
``F.affine_grid`` and one ``F.grid_sample`` call do this for the whole batch.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .._checks import check_number, check_rank

__all__ = ["RandomAffine", "pca_colour_basis", "fancy_pca"]


class RandomAffine:
    """Random rotation, scaling and translation of a batch, drawn independently per image.

    Args:
        degrees: angles are uniform in ``[-degrees, degrees]``. Positive angles turn the
            image content clockwise on the screen (rows running down, as ``imshow`` shows them).
        scale: ``(low, high)``, factors uniform in that range (> 1 enlarges the content).
        translate: shifts along x and y are uniform in ``[-translate, translate]`` pixels, each
            axis on its own (positive: right and down).

    Calling ``aug(x, generator)`` with ``x`` of shape (B, C, H, W) returns a new
    floating-point (B, C, H, W) tensor on ``x``'s device. Random numbers come from
    ``generator`` (on ``x``'s device) in a fixed order: angles, scales, then the
    (x, y) shifts -- :meth:`sample`, which :meth:`apply` turns into images;
    ``aug(x, g) == aug.apply(x, *aug.sample(len(x), g, x.device))``. The defaults
    (10 degrees, 0.9 to 1.1, 2 pixels) suit 28x28 digits.
    """

    def __init__(self, degrees: float = 10.0, scale: tuple[float, float] = (0.9, 1.1), translate: float = 2.0):
        check_number("degrees", degrees, non_negative=True)
        self.degrees = float(degrees)
        if (
            not isinstance(scale, (tuple, list))
            or len(scale) != 2
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in scale)
            or not 0 < scale[0] <= scale[1]
        ):
            raise ValueError(f"scale must be a pair (low, high) with 0 < low <= high, got {scale!r}")
        self.scale = (float(scale[0]), float(scale[1]))
        check_number("translate", translate, non_negative=True)
        self.translate = float(translate)

    def __repr__(self) -> str:
        return f"RandomAffine(degrees={self.degrees:g}, scale={self.scale}, translate={self.translate:g})"

    def sample(
        self, batch_size: int, generator: torch.Generator | None = None, device: torch.device | str | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Draw the per-image parameters: ``(angle, scale, shift)``.

        ``angle``: (B,) radians; ``scale``: (B,) factors; ``shift``: (B, 2) pixels, (x, y).
        All float32, uniform in the ranges of the constructor.
        """
        device = torch.device(device) if device is not None else (generator.device if generator is not None else None)

        def uniform(low: float, high: float, *shape: int) -> torch.Tensor:
            return low + (high - low) * torch.rand(*shape, generator=generator, device=device)

        angle = uniform(-math.radians(self.degrees), math.radians(self.degrees), batch_size)
        scale = uniform(*self.scale, batch_size)
        shift = uniform(-self.translate, self.translate, batch_size, 2)
        return angle, scale, shift

    @staticmethod
    def apply(x: torch.Tensor, angle: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
        """Rotate by ``angle`` (radians), scale by ``scale`` and shift by ``shift`` (pixels, (x, y)) each image.

        ``x``: (B, C, H, W); ``angle``, ``scale``: (B,); ``shift``: (B, 2). Returns (B, C, H, W)
        by bilinear interpolation, zeros where the source lies outside the image.
        """
        if x.ndim != 4:
            raise ValueError(f"x must have shape (B, C, H, W), got {tuple(x.shape)}")
        b, _, h, w = x.shape
        if not x.is_floating_point():
            x = x.float()
        angle, scale, shift = (t.to(device=x.device, dtype=x.dtype) for t in (angle, scale, shift))
        if angle.shape != (b,) or scale.shape != (b,) or shift.shape != (b, 2):
            raise ValueError(
                f"angle and scale must have shape ({b},) and shift ({b}, 2), "
                f"got {tuple(angle.shape)}, {tuple(scale.shape)} and {tuple(shift.shape)}"
            )
        cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
        # M = R(-a) / s maps output pixel coordinates (about the centre) to input ones. affine_grid
        # works in normalised coordinates, u = x / (W/2), v = y / (H/2): theta = D^-1 M D and the
        # offset -D^-1 M t, with D = diag(W/2, H/2).
        half_w, half_h = w / 2, h / 2
        m00, m01, m10, m11 = cos, sin * half_h / half_w, -sin * half_w / half_h, cos
        tx, ty = shift[:, 0], shift[:, 1]
        off_x = -(cos * tx + sin * ty) / half_w
        off_y = -(-sin * tx + cos * ty) / half_h
        theta = torch.stack([torch.stack([m00, m01, off_x], 1), torch.stack([m10, m11, off_y], 1)], 1)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Augment the batch ``x`` (B, C, H, W) with random numbers from ``generator``."""
        if x.ndim != 4:
            raise ValueError(f"x must have shape (B, C, H, W), got {tuple(x.shape)}")
        return self.apply(x, *self.sample(x.shape[0], generator, x.device))


def _check_rgb_batch(name: str, images) -> None:
    """``images`` is a floating-point tensor of shape (N, 3, H, W)."""
    check_rank(name, images, 4, "(N, 3, H, W)")
    if images.shape[1] != 3:
        raise ValueError(f"{name} must have 3 colour channels, shape (N, 3, H, W), got shape {tuple(images.shape)}")
    if not images.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor (convert with .float()), got {images.dtype}")


def pca_colour_basis(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The principal axes of the RGB values of ``images``: AlexNet's colour basis.

    Every pixel of every image is one sample of three numbers (R, G, B). Their
    3x3 covariance (the unbiased one of ``numpy.cov``) is decomposed as
    ``cov = V diag(lambda) V^T``.

    Args:
        images: (N, 3, H, W) floating point, in the range :func:`fancy_pca` will see. The
            eigenvalues are variances, so they scale with the square of the pixel range: with
            values in [0, 1] and ``alpha_std=0.1`` the shifts are a few hundredths.

    Returns:
        ``(eigenvalues, eigenvectors)``: eigenvalues (3,) in descending order (clipped at 0), and
        eigenvectors (3, 3) whose *columns* are the unit axes, ``eigenvectors[:, k]`` for
        ``eigenvalues[k]``. Each column's sign is fixed so that its largest component (in absolute
        value) is positive, so the result does not depend on the solver. Same dtype and device as
        ``images``; computed in float64.
    """
    _check_rgb_batch("images", images)
    n, _, h, w = images.shape
    if n * h * w < 2:
        raise ValueError(f"images must hold at least 2 pixels to estimate a covariance, got shape {tuple(images.shape)}")
    pixels = images.detach().to(torch.float64).transpose(0, 1).reshape(3, -1)  # (3, N*H*W)
    eigenvalues, eigenvectors = torch.linalg.eigh(torch.cov(pixels))  # ascending
    eigenvalues, eigenvectors = eigenvalues.flip(0).clamp(min=0), eigenvectors.flip(1)
    largest = eigenvectors.gather(0, eigenvectors.abs().argmax(0, keepdim=True))  # (1, 3)
    eigenvectors = eigenvectors * torch.where(largest < 0, -1.0, 1.0)
    return eigenvalues.to(images.dtype), eigenvectors.to(images.dtype)


def fancy_pca(
    images: torch.Tensor,
    eigenvalues: torch.Tensor,
    eigenvectors: torch.Tensor,
    alpha_std: float = 0.1,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """AlexNet's colour augmentation: shift every image along the principal colour axes.

    For image ``i`` three numbers ``alpha_i ~ N(0, alpha_std^2)`` are drawn once, and the same
    RGB vector ``eigenvectors @ (alpha_i * eigenvalues)`` is added to each of its pixels: the
    lighting and colour of the whole image change, its content does not.

    Args:
        images: (N, 3, H, W) floating point.
        eigenvalues: (3,) and eigenvectors: (3, 3) with the axes as columns, as returned by
            :func:`pca_colour_basis` (usually of the whole training set).
        alpha_std: the standard deviation of the alphas (AlexNet: 0.1).
        generator: the source of the (N, 3) alphas, drawn with one ``torch.randn`` call on the
            generator's device (``images``' device without one).

    Returns:
        A new (N, 3, H, W) tensor; it is not clipped to the range of the input. The shift is
        ``alpha * lambda`` along each axis, a variance times a number: its size depends on the
        range of the pixel values (see :func:`pca_colour_basis`).
    """
    _check_rgb_batch("images", images)
    check_rank("eigenvalues", eigenvalues, 1, "(3,)")
    check_rank("eigenvectors", eigenvectors, 2, "(3, 3)")
    if eigenvalues.shape != (3,) or eigenvectors.shape != (3, 3):
        raise ValueError(
            f"eigenvalues must have shape (3,) and eigenvectors (3, 3), "
            f"got {tuple(eigenvalues.shape)} and {tuple(eigenvectors.shape)}"
        )
    check_number("alpha_std", alpha_std, non_negative=True)
    device = generator.device if generator is not None else images.device
    alpha = torch.randn(images.shape[0], 3, generator=generator, device=device).to(images) * alpha_std
    shift = (alpha * eigenvalues.to(images)) @ eigenvectors.to(images).T  # (N, 3): row i = V (alpha_i * lambda)
    return images + shift[:, :, None, None]
