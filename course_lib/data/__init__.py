"""Data of the course: small real datasets that ship inside packages (digits, faces, textures), photos,
procedural `shapes` with exact masks and boxes, full datasets at full scale."""

from .datasets import (
    FULL_DATASETS,
    SMALL_DATASETS,
    TensorSplit,
    data_root,
    in_mnist_frame,
    load_dataset,
    load_digits,
    load_mnist5k,
)
from .faces import FACE_CLASSES, load_faces
from .photos import PHOTOS, load_photo, to_grayscale
from .shapes import SHAPE_CLASSES, Shapes, make_shapes
from .textures import TEXTURE_CLASSES, load_textures, texture_patch_origins, texture_region

__all__ = [
    "FACE_CLASSES",
    "FULL_DATASETS",
    "PHOTOS",
    "SHAPE_CLASSES",
    "SMALL_DATASETS",
    "Shapes",
    "TEXTURE_CLASSES",
    "TensorSplit",
    "data_root",
    "in_mnist_frame",
    "load_dataset",
    "load_digits",
    "load_faces",
    "load_mnist5k",
    "load_photo",
    "load_textures",
    "make_shapes",
    "texture_patch_origins",
    "texture_region",
    "to_grayscale",
]
