"""course_lib.train.gpu_loader: the on-device loader and its vectorised crop/flip augmentation."""

from __future__ import annotations

import io

import pytest
import torch
import torch.nn.functional as F

from course_lib.data.datasets import TensorSplit
from course_lib.train.gpu_loader import GPULoader, RandomCropFlip

CPU = torch.device("cpu")


def _indexed(n: int, size: int = 4, channels: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """n images whose every pixel holds the example's index (+1), and labels = index."""
    y = torch.arange(n)
    x = (y.float() + 1).view(n, 1, 1, 1).expand(n, channels, size, size).contiguous()
    return x, y


def _epoch(loader) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = zip(*list(loader))
    return torch.cat(xs), torch.cat(ys)


def _reference_crop_flip(x, dy, dx, flip, padding, mode):
    """Slow, obvious version: pad each image on its own, slice its window, flip it."""
    out = []
    h, w = x.shape[-2:]
    for i in range(x.shape[0]):
        img = x[i : i + 1]
        if padding:
            img = F.pad(img, (padding,) * 4, mode="constant" if mode == "zeros" else "reflect")
        win = img[0, :, int(dy[i]) : int(dy[i]) + h, int(dx[i]) : int(dx[i]) + w]
        if flip[i]:
            win = torch.flip(win, dims=[-1])
        out.append(win)
    return torch.stack(out)


# --- iteration: coverage, order, batches ------------------------------------------------------


def test_each_epoch_is_a_permutation_of_all_examples():
    x, y = _indexed(53)
    loader = GPULoader(x, y, batch_size=8, device=CPU, seed=3)
    assert len(loader) == 7  # ceil(53 / 8)
    for _ in range(3):
        xs, ys = _epoch(loader)
        assert torch.equal(torch.sort(ys).values, y)  # every example exactly once
        assert torch.equal(xs[:, 0, 0, 0], ys.float() + 1)  # inputs travel with their labels
    assert loader.epoch == 3


def test_order_changes_every_epoch_and_is_not_the_identity():
    x, y = _indexed(64)
    loader = GPULoader(x, y, batch_size=16, device=CPU, seed=0)
    orders = [_epoch(loader)[1] for _ in range(3)]
    assert not torch.equal(orders[0], y)
    assert not torch.equal(orders[0], orders[1])
    assert not torch.equal(orders[1], orders[2])


def test_no_shuffle_keeps_the_stored_order():
    x, y = _indexed(10)
    loader = GPULoader(x, y, batch_size=4, shuffle=False, device=CPU)
    for _ in range(2):
        xs, ys = _epoch(loader)
        assert torch.equal(ys, y) and torch.equal(xs, x)


def test_same_seed_same_batches_other_seed_other_batches():
    x = torch.randn(40, 3, 6, 6, generator=torch.Generator().manual_seed(1))
    y = torch.arange(40)
    make = lambda seed: GPULoader(x, y, 8, device=CPU, seed=seed, augment=RandomCropFlip(2))  # noqa: E731
    a, b, c = make(5), make(5), make(6)
    for _ in range(2):
        (xa, ya), (xb, yb), (xc, yc) = _epoch(a), _epoch(b), _epoch(c)
        assert torch.equal(ya, yb) and torch.equal(xa, xb)
        assert not torch.equal(ya, yc)


def test_loader_leaves_the_global_rng_alone():
    x, y = _indexed(20)
    before = torch.get_rng_state()
    _epoch(GPULoader(x, y, 4, device=CPU, augment=RandomCropFlip(1)))
    assert torch.equal(torch.get_rng_state(), before)


@pytest.mark.parametrize("n, bs, drop_last, sizes", [
    (10, 4, False, [4, 4, 2]),
    (10, 4, True, [4, 4]),
    (12, 4, True, [4, 4, 4]),
    (3, 8, False, [3]),
    (3, 8, True, []),
])
def test_drop_last_and_len(n, bs, drop_last, sizes):
    x, y = _indexed(n)
    loader = GPULoader(x, y, bs, drop_last=drop_last, device=CPU, seed=1)
    batches = list(loader)
    assert len(loader) == len(sizes)
    assert [len(b[1]) for b in batches] == sizes
    if sizes:
        seen = torch.cat([b[1] for b in batches])
        assert len(torch.unique(seen)) == sum(sizes)  # no example twice


def test_shapes_dtypes_device_and_channels_last():
    x = torch.rand(12, 3, 8, 8, dtype=torch.float64)
    y = torch.arange(12)
    xb, yb = next(iter(GPULoader(x, y, 5, device=CPU, augment=RandomCropFlip(2))))
    assert xb.shape == (5, 3, 8, 8) and xb.dtype == torch.float64 and xb.device == CPU
    assert yb.shape == (5,) and yb.dtype == torch.int64
    xb, _ = next(iter(GPULoader(x.float(), y, 5, device=CPU, channels_last=True)))
    assert xb.dtype == torch.float32 and xb.is_contiguous(memory_format=torch.channels_last)


def test_data_already_on_the_device_is_not_copied():
    x, y = _indexed(6)
    loader = GPULoader(x, y, 2, device="cpu")
    assert loader.x.data_ptr() == x.data_ptr() and loader.y.data_ptr() == y.data_ptr()


def test_normalisation_is_applied_after_augmentation():
    x = torch.rand(6, 2, 5, 5, generator=torch.Generator().manual_seed(0))
    y = torch.arange(6)
    mean, std = [0.5, 0.25], [0.2, 0.4]
    aug = RandomCropFlip(padding=1, flip=True)
    plain = GPULoader(x, y, 6, shuffle=False, device=CPU, seed=4, augment=aug)
    normed = GPULoader(x, y, 6, shuffle=False, device=CPU, seed=4, augment=aug, mean=mean, std=std)
    xa, _ = next(iter(plain))
    xb, _ = next(iter(normed))
    m, s = torch.tensor(mean).view(1, 2, 1, 1), torch.tensor(std).view(1, 2, 1, 1)
    torch.testing.assert_close(xb, (xa - m) / s, rtol=1e-6, atol=1e-6)
    # the zero-padded border is black *before* normalisation: it becomes -mean/std
    assert (xa == 0).any()


def test_from_split_uses_train_or_test_part():
    g = torch.Generator().manual_seed(0)
    split = TensorSplit(
        "toy", torch.rand(20, 1, 4, 4, generator=g), torch.arange(20), torch.rand(7, 1, 4, 4, generator=g),
        torch.arange(7), tuple("0123456789"),
    )
    train = GPULoader.from_split(split, train=True, batch_size=8, device=CPU)
    test = GPULoader.from_split(split, train=False, batch_size=8, device=CPU)
    assert train.shuffle and not test.shuffle and len(train) == 3 and len(test) == 1
    xs, ys = _epoch(test)
    assert torch.equal(xs, split.x_test) and torch.equal(ys, split.y_test)
    assert torch.equal(torch.sort(_epoch(train)[1]).values, split.y_train)


# --- augmentation ---------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["zeros", "reflect"])
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_vectorised_crop_flip_matches_per_image_reference(mode, seed):
    g = torch.Generator().manual_seed(100 + seed)
    x = torch.randn(16, 3, 7, 9, generator=g)
    aug = RandomCropFlip(padding=3, flip=True, padding_mode=mode)
    out = aug(x, torch.Generator().manual_seed(seed))
    dy, dx, flip = aug.sample(16, torch.Generator().manual_seed(seed))  # the same draws
    assert dy.min() >= 0 and dy.max() <= 6 and dx.min() >= 0 and dx.max() <= 6
    assert torch.equal(out, _reference_crop_flip(x, dy, dx, flip, 3, mode))
    assert out.shape == x.shape and out.dtype == x.dtype


def test_every_crop_is_a_window_of_the_padded_image():
    """Checked without the parameters: search all (2p+1)^2 windows, flipped or not."""
    p = 2
    x = torch.randn(32, 2, 6, 6, generator=torch.Generator().manual_seed(7))
    out = RandomCropFlip(padding=p)(x, torch.Generator().manual_seed(8))
    padded = F.pad(x, (p,) * 4)
    found = set()
    for i in range(len(x)):
        matches = [
            (dy, dx, fl)
            for dy in range(2 * p + 1)
            for dx in range(2 * p + 1)
            for fl in (False, True)
            if torch.equal(out[i], (lambda w: w.flip(-1) if fl else w)(padded[i, :, dy : dy + 6, dx : dx + 6]))
        ]
        assert len(matches) == 1, f"image {i}: {matches}"  # random values: exactly one window fits
        found.add(matches[0])
    assert len(found) > 10  # windows really differ between images


def test_offsets_and_flips_are_spread_over_their_range():
    aug = RandomCropFlip(padding=1, flip=True)
    dy, dx, flip = aug.sample(3000, torch.Generator().manual_seed(0))
    assert set(dy.tolist()) == {0, 1, 2} and set(dx.tolist()) == {0, 1, 2}
    for counts in (torch.bincount(dy), torch.bincount(dx)):
        assert (counts - 1000).abs().max() < 100  # 1000 +- ~26 (binomial sd) per value
    assert abs(flip.float().mean().item() - 0.5) < 0.05  # sd 0.009


def test_flips_flip_and_padding_zero_only_flips():
    x = torch.randn(64, 1, 3, 5, generator=torch.Generator().manual_seed(0))
    aug = RandomCropFlip(padding=0, flip=True)
    out = aug(x, torch.Generator().manual_seed(1))
    flipped = torch.tensor([torch.equal(o, xi.flip(-1)) for o, xi in zip(out, x)])
    same = torch.tensor([torch.equal(o, xi) for o, xi in zip(out, x)])
    assert bool((flipped ^ same).all())  # each image is either itself or its mirror image
    assert 10 < int(flipped.sum()) < 54
    all_flipped = aug.apply(x, torch.zeros(64, dtype=torch.long), torch.zeros(64, dtype=torch.long),
                            torch.ones(64, dtype=torch.bool))
    assert torch.equal(all_flipped, x.flip(-1))
    assert torch.equal(RandomCropFlip(padding=0, flip=False)(x, torch.Generator()), x)


def test_augmentation_preserves_labels():
    x, y = _indexed(40, size=6, channels=3)  # image i is filled with i + 1
    loader = GPULoader(x, y, 7, device=CPU, seed=2, augment=RandomCropFlip(padding=4, padding_mode="zeros"))
    xs, ys = _epoch(loader)
    assert torch.equal(xs.amax(dim=(1, 2, 3)), ys.float() + 1)  # only zeros and the image's own value
    assert bool(((xs == 0) | (xs == (ys.float() + 1).view(-1, 1, 1, 1))).all())
    assert (xs == 0).any()  # some crops did reach into the padding


# --- checkpointing the shuffle order --------------------------------------------------------


def test_state_dict_round_trip_reproduces_the_next_epochs():
    x = torch.randn(30, 1, 5, 5, generator=torch.Generator().manual_seed(0))
    y = torch.arange(30)
    make = lambda: GPULoader(x, y, 7, device=CPU, seed=11, augment=RandomCropFlip(1))  # noqa: E731
    run = make()
    _epoch(run)
    buffer = io.BytesIO()
    torch.save(run.state_dict(), buffer)
    expected = [_epoch(run) for _ in range(2)]

    resumed = make()
    buffer.seek(0)
    resumed.load_state_dict(torch.load(buffer))
    assert resumed.epoch == 1
    for xs, ys in expected:
        rx, ry = _epoch(resumed)
        assert torch.equal(ry, ys) and torch.equal(rx, xs)
    # without the state, a fresh loader replays epoch 1 instead
    assert not torch.equal(_epoch(make())[1], expected[0][1])


def test_load_state_dict_rejects_bad_states():
    x, y = _indexed(4)
    loader = GPULoader(x, y, 2, device=CPU)
    state = loader.state_dict()
    with pytest.raises(ValueError, match="missing"):
        loader.load_state_dict({"epoch": 0})
    with pytest.raises(ValueError, match="cuda"):
        loader.load_state_dict({**state, "device_type": "cuda"})


# --- argument checks ------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, match", [
    (dict(batch_size=0), "batch_size"),
    (dict(batch_size=2.0), "batch_size"),
    (dict(seed=-1), "seed"),
    (dict(mean=[0.5, 0.5]), "mean and std"),
    (dict(mean=[0.5, 0.5, 0.5], std=[1.0, 1.0, 1.0]), "mean"),
    (dict(mean=0.5, std=0.0), "std"),
    (dict(augment="crop"), "augment"),
])
def test_argument_errors_name_the_argument(kwargs, match):
    x, y = _indexed(4)
    kwargs = {"batch_size": 2, **kwargs}
    with pytest.raises(ValueError, match=match):
        GPULoader(x, y, device=CPU, **kwargs)


def test_shape_errors():
    with pytest.raises(ValueError, match="first dimension"):
        GPULoader(torch.zeros(4, 1, 2, 2), torch.zeros(3), 2, device=CPU)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        GPULoader(torch.zeros(4, 3), torch.zeros(4), 2, device=CPU, augment=RandomCropFlip())
    GPULoader(torch.zeros(4, 3), torch.zeros(4), 2, device=CPU)  # plain tabular data is fine
    with pytest.raises(ValueError, match="padding"):
        RandomCropFlip(padding=-1)
    with pytest.raises(ValueError, match="padding_mode"):
        RandomCropFlip(padding_mode="edge")
    with pytest.raises(ValueError, match="reflect"):
        RandomCropFlip(padding=4, padding_mode="reflect")(torch.zeros(2, 1, 4, 4), torch.Generator())


# --- on a GPU -------------------------------------------------------------------------------


@pytest.mark.cuda
def test_cuda_loader_keeps_everything_on_the_gpu():
    x = torch.randn(100, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    y = torch.arange(100)
    make = lambda: GPULoader(  # noqa: E731
        x, y, 16, device="cuda", seed=3, augment=RandomCropFlip(2, padding_mode="reflect"),
        mean=[0.1, 0.2, 0.3], std=[1.0, 2.0, 3.0], channels_last=True,
    )
    loader = make()
    assert loader.x.is_cuda and loader.generator.device.type == "cuda"
    xs, ys = _epoch(loader)
    assert xs.is_cuda and ys.is_cuda and xs.shape == (100, 3, 8, 8)
    assert torch.equal(torch.sort(ys).values.cpu(), y)
    state = loader.state_dict()
    expected = _epoch(loader)
    resumed = make()
    resumed.load_state_dict(state)
    got = _epoch(resumed)
    assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])
    # the device kernels agree with the per-image reference (the draws, made on the GPU, are replayed)
    aug = RandomCropFlip(3, padding_mode="zeros")
    xc = x[:16].cuda()
    out = aug(xc, torch.Generator(device="cuda").manual_seed(5))
    dy, dx, flip = aug.sample(16, torch.Generator(device="cuda").manual_seed(5))
    assert torch.equal(out.cpu(), _reference_crop_flip(x[:16], dy.cpu(), dx.cpu(), flip.cpu(), 3, "zeros"))
