"""course_lib.data: the two shipped image datasets, faces (lfw_subset) and textures (brick/grass/gravel)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch

from course_lib.data import (
    FACE_CLASSES,
    TEXTURE_CLASSES,
    load_faces,
    load_textures,
    texture_patch_origins,
    texture_region,
)
from course_lib.data import faces as faces_module
from course_lib.data import textures as textures_module

SPLITS = ("train", "test")


# --- the sources, read independently of course_lib ------------------------------------------------


def _lfw_source() -> tuple[np.ndarray, np.ndarray]:
    """lfw_subset as ((200, 25, 25) float32, labels): scikit-image documents faces first (1), non-faces next (0)."""
    import skimage.data

    images = skimage.data.lfw_subset().astype(np.float32)
    return images, np.array([1] * 100 + [0] * 100)


def _texture_source() -> np.ndarray:
    """brick, grass, gravel as one (3, 512, 512) uint8 array, in the order of TEXTURE_CLASSES."""
    import skimage.data

    photos = np.stack([getattr(skimage.data, name)() for name in ("brick", "grass", "gravel")])
    assert photos.dtype == np.uint8, "the texture photos are not 8-bit: the /255 scaling would be wrong"
    return photos


def _keys(x: torch.Tensor) -> list[bytes]:
    """Each image's exact float32 bytes: equal keys mean identical images."""
    return [row.tobytes() for row in x.reshape(len(x), -1).numpy()]


@pytest.fixture(scope="module")
def faces():
    """split -> (x, y) of load_faces with the defaults, loaded once."""
    return {split: load_faces(split) for split in SPLITS}


@pytest.fixture(scope="module")
def textures():
    """split -> (x, y, origins, origin labels) with the defaults, loaded once."""
    return {split: (*load_textures(split), *texture_patch_origins(split)) for split in SPLITS}


# --- faces ----------------------------------------------------------------------------------------


def test_face_classes_name_the_labels():
    assert FACE_CLASSES == ("non-face", "face")


@pytest.mark.parametrize("split, size", [("train", 150), ("test", 50)])
def test_faces_shapes_types_and_ranges(faces, split, size):
    x, y = faces[split]
    assert x.shape == (size, 1, 25, 25) and x.dtype == torch.float32 and x.is_contiguous()
    assert 0.0 <= x.min() and x.max() <= 1.0
    assert y.shape == (size,) and y.dtype == torch.int64


def test_faces_split_is_stratified_with_a_quarter_of_each_class_in_test(faces):
    assert torch.bincount(faces["train"][1], minlength=2).tolist() == [75, 75]
    assert torch.bincount(faces["test"][1], minlength=2).tolist() == [25, 25]


def test_faces_are_the_lfw_subset_images_with_their_labels(faces):
    """Every image equals one lfw_subset image exactly, labelled 1 iff it is one of the first 100,
    and train + test hold each of the 200 images exactly once (train and test are disjoint)."""
    images, labels = _lfw_source()
    index_of = {key: i for i, key in enumerate(_keys(torch.from_numpy(images)))}
    assert len(index_of) == 200, "lfw_subset holds duplicate images: the disjointness test below is unsound"
    seen = Counter()
    for split in SPLITS:
        x, y = faces[split]
        for key, image, label in zip(_keys(x), x, y.tolist()):
            i = index_of[key]  # KeyError: an image that is not in lfw_subset
            assert torch.equal(image[0], torch.from_numpy(images[i]))
            assert label == labels[i], f"image {i} of lfw_subset labelled {label}"
            seen[i] += 1
    assert seen == Counter(range(200))
    assert not set(_keys(faces["train"][0])) & set(_keys(faces["test"][0]))


def test_faces_split_is_shuffled(faces):
    """Neither part keeps lfw_subset's order (all faces first), so x[:16] shows both classes."""
    for split in SPLITS:
        y = faces[split][1]
        assert not torch.equal(y, y.sort(descending=True).values), split


def test_faces_split_depends_only_on_the_seed(faces):
    for split in SPLITS:
        x, y = load_faces(split, seed=0)
        assert torch.equal(x, faces[split][0]) and torch.equal(y, faces[split][1])
    other = load_faces("test", seed=1)[0]
    assert set(_keys(other)) != set(_keys(faces["test"][0])), "another seed must pick other test images"


@pytest.mark.parametrize("test_fraction, n_test", [(0.1, 10), (0.5, 50), (0.333, 33)])
def test_faces_test_fraction_sets_the_test_images_per_class(test_fraction, n_test):
    x_test, y_test = load_faces("test", test_fraction=test_fraction, seed=3)
    x_train, y_train = load_faces("train", test_fraction=test_fraction, seed=3)
    assert torch.bincount(y_test, minlength=2).tolist() == [n_test, n_test]
    assert torch.bincount(y_train, minlength=2).tolist() == [100 - n_test, 100 - n_test]
    assert not set(_keys(x_train)) & set(_keys(x_test))


def test_faces_callers_cannot_corrupt_the_cache():
    x, _ = load_faces("train")
    x.fill_(7.0)
    assert load_faces("train")[0].max() <= 1.0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"split": "val"}, r"split must be one of \['test', 'train'\], got 'val'"),
        ({"split": "trian"}, r"did you mean 'train'\?"),
        ({"split": None}, "split must be one of"),
        ({"test_fraction": 0.0}, r"test_fraction must lie in \(0, 1\)"),
        ({"test_fraction": 1.0}, r"test_fraction must lie in \(0, 1\)"),
        ({"test_fraction": -0.25}, r"test_fraction must lie in \(0, 1\)"),
        ({"test_fraction": 0.001}, "test_fraction must leave each class at least one image"),
        ({"test_fraction": 0.999}, "test_fraction must leave each class at least one image"),
        ({"test_fraction": float("nan")}, "test_fraction must be a finite number"),
        ({"test_fraction": "0.25"}, "test_fraction must be a finite number"),
        ({"test_fraction": True}, "test_fraction must be a finite number"),
        ({"seed": -1}, "seed must be an int >= 0"),
        ({"seed": 1.0}, "seed must be an int >= 0"),
        ({"seed": True}, "seed must be an int >= 0"),
    ],
)
def test_faces_bad_arguments_raise_naming_them(kwargs, message):
    with pytest.raises(ValueError, match=message):
        load_faces(**kwargs)


# --- textures -------------------------------------------------------------------------------------


def test_texture_classes_are_the_three_photos():
    assert TEXTURE_CLASSES == ("brick", "grass", "gravel")


@pytest.mark.parametrize("split, per_class", [("train", 200), ("test", 50)])
def test_textures_shapes_types_ranges_and_counts(textures, split, per_class):
    x, y, origins, origin_labels = textures[split]
    assert x.shape == (3 * per_class, 1, 32, 32) and x.dtype == torch.float32 and x.is_contiguous()
    assert 0.0 <= x.min() and x.max() <= 1.0
    assert y.shape == (3 * per_class,) and y.dtype == torch.int64
    assert torch.bincount(y, minlength=3).tolist() == [per_class] * 3
    assert origins.shape == (3 * per_class, 2) and origins.dtype == torch.int64
    assert torch.equal(origin_labels, y)


def test_texture_regions_split_the_columns_3_to_1():
    assert texture_region("train") == (0, 384)
    assert texture_region("test") == (384, 512)


@pytest.mark.parametrize("patch_size", [32, 7, 128])
def test_texture_train_and_test_patches_come_from_disjoint_regions(patch_size):
    """Every patch lies wholly inside its split's region (any row), so no pixel is in both parts."""
    covered = {}
    for split in SPLITS:
        start, stop = texture_region(split)
        origins, _ = texture_patch_origins(split, patch_size=patch_size, patches_per_class=8, seed=5)
        rows, cols = origins[:, 0], origins[:, 1]
        assert (rows >= 0).all() and (rows + patch_size <= 512).all()
        assert (cols >= start).all() and (cols + patch_size <= stop).all(), split
        covered[split] = (int(cols.min()), int(cols.max()) + patch_size)  # columns [first, last) touched
    assert covered["train"][1] <= covered["test"][0]


def test_texture_patches_are_the_photo_crops_at_their_origins(textures):
    photos = torch.from_numpy(_texture_source())
    for split in SPLITS:
        x, y, origins, _ = textures[split]
        crops = [photos[label, r : r + 32, c : c + 32] for label, (r, c) in zip(y.tolist(), origins.tolist())]
        expected = (torch.stack(crops).double() / 255.0).float().unsqueeze(1)
        assert torch.equal(x, expected), f"{split}: a patch differs from the crop of its photo at its origin"


def test_texture_positions_are_distinct_within_a_class_and_classes_are_mixed(textures):
    for split in SPLITS:
        _, y, origins, _ = textures[split]
        pairs = [(label, row, col) for label, (row, col) in zip(y.tolist(), origins.tolist())]
        assert len(set(pairs)) == len(pairs), split
        assert not torch.equal(y, y.sort().values), f"{split}: the classes come in blocks"


def test_texture_test_part_has_a_quarter_of_patches_per_class_rounded_down():
    for per_class, n_test in ((4, 1), (7, 1), (10, 2), (13, 3)):
        _, y = load_textures("test", patch_size=8, patches_per_class=per_class)
        assert torch.bincount(y, minlength=3).tolist() == [n_test] * 3
        _, y = load_textures("train", patch_size=8, patches_per_class=per_class)
        assert torch.bincount(y, minlength=3).tolist() == [per_class] * 3


@pytest.mark.parametrize("patch_size", [1, 16, 128])
def test_textures_patch_size_sets_the_shape(patch_size):
    x, y = load_textures("test", patch_size=patch_size, patches_per_class=8)
    assert x.shape == (6, 1, patch_size, patch_size) and y.shape == (6,)


def test_textures_depend_only_on_the_seed(textures):
    for split in SPLITS:
        x, y = load_textures(split, seed=0)
        assert torch.equal(x, textures[split][0]) and torch.equal(y, textures[split][1])
        origins, _ = texture_patch_origins(split, seed=1)
        assert not torch.equal(origins, textures[split][2]), "another seed must pick other positions"
        assert not torch.equal(load_textures(split, seed=1)[0], textures[split][0])


def test_textures_callers_cannot_corrupt_the_cache():
    x, _ = load_textures("test", patches_per_class=8)
    x.fill_(7.0)
    assert load_textures("test", patches_per_class=8)[0].max() <= 1.0
    assert all(not photo.flags.writeable for photo in textures_module._texture_photos())
    assert all(not array.flags.writeable for array in faces_module._lfw_arrays())


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"split": "validation"}, r"split must be one of \['test', 'train'\], got 'validation'"),
        ({"split": "tset"}, r"did you mean 'test'\?"),
        ({"patch_size": 0}, "patch_size must be an int >= 1"),
        ({"patch_size": 32.0}, "patch_size must be an int >= 1"),
        ({"patch_size": True}, "patch_size must be an int >= 1"),
        ({"patch_size": 129}, r"patch_size must be at most 128 \(the width of the test region\), got 129"),
        ({"patches_per_class": 3}, "patches_per_class must be an int >= 4"),
        ({"patches_per_class": "200"}, "patches_per_class must be an int >= 4"),
        (
            {"split": "test", "patch_size": 128, "patches_per_class": 2000},
            "patches_per_class asks for 500 distinct test patches",
        ),
        ({"seed": -3}, "seed must be an int >= 0"),
        ({"seed": None}, "seed must be an int >= 0"),
    ],
)
def test_textures_bad_arguments_raise_naming_them(kwargs, message):
    for function in (load_textures, texture_patch_origins):
        with pytest.raises(ValueError, match=message):
            function(**kwargs)


def test_texture_region_rejects_an_unknown_split():
    with pytest.raises(ValueError, match="split must be one of"):
        texture_region("all")
