"""Data of the course: small real datasets that ship inside packages, photos, full datasets at full scale."""

from .datasets import (
    FULL_DATASETS,
    SMALL_DATASETS,
    TensorSplit,
    data_root,
    load_dataset,
    load_digits,
    load_mnist5k,
)
from .photos import PHOTOS, load_photo, to_grayscale

__all__ = [
    "FULL_DATASETS",
    "PHOTOS",
    "SMALL_DATASETS",
    "TensorSplit",
    "data_root",
    "load_dataset",
    "load_digits",
    "load_mnist5k",
    "load_photo",
    "to_grayscale",
]
