"""Real photographs shipped with scikit-image, as float tensors.

Used by the chapters to show what filters, pooling and learned features do to
real images rather than to random noise.
"""

from __future__ import annotations

import numpy as np
import torch

from .._checks import check_choice

__all__ = ["PHOTOS", "load_photo", "to_grayscale"]

# name -> the scikit-image loader of that name; all ship inside the wheel.
PHOTOS = ("astronaut", "camera", "coffee", "chelsea", "rocket", "coins", "moon", "brick", "grass", "gravel")


def to_grayscale(image: torch.Tensor) -> torch.Tensor:
    """(3, H, W) RGB -> (1, H, W) luminance by torchvision's ``rgb_to_grayscale``: the ITU-R BT.601 weights
    as MATLAB's rgb2gray rounds them, 0.2989 R + 0.587 G + 0.114 B. A (1, H, W) image comes back as a copy."""
    from torchvision.transforms.v2.functional import rgb_to_grayscale

    if image.ndim != 3 or image.shape[0] not in (1, 3):
        raise ValueError(f"image must have shape (1, H, W) or (3, H, W), got {tuple(image.shape)}")
    return rgb_to_grayscale(image)


def load_photo(name: str, *, gray: bool = False, size: int | tuple[int, int] | None = None) -> torch.Tensor:
    """A scikit-image photo as a (C, H, W) float32 tensor with values in [0, 1].

    Args:
        name: one of ``PHOTOS``.
        gray: return one luminance channel, shape (1, H, W).
        size: resize (antialiased) to ``size``: an int sets the shorter side,
            a pair sets (H, W). ``None`` keeps the original size.
    """
    import skimage.data

    check_choice("name", name, PHOTOS)
    array = getattr(skimage.data, name)()
    image = torch.from_numpy(np.ascontiguousarray(array)).float() / 255.0
    image = image.unsqueeze(0) if image.ndim == 2 else image.permute(2, 0, 1).contiguous()
    if gray:
        image = to_grayscale(image)
    if size is not None:
        from torchvision.transforms.v2.functional import resize

        image = resize(image, list(size) if isinstance(size, tuple) else [size], antialias=True).clamp_(0.0, 1.0)
    return image
