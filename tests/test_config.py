"""course_lib.config: the device, the seeding and the scale every chapter and lab relies on."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from course_lib import SCALES, get_device, get_scale, is_full_scale, scaled, seed_everything

needs_no_cuda = pytest.mark.skipif(
    torch.cuda.is_available(), reason="checks the refusal of CUDA on a machine that has none"
)


# --- get_device ---------------------------------------------------------------------------------


def test_get_device_defaults_to_cuda_if_available_else_cpu(course_env):
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert get_device().type == expected


@pytest.mark.parametrize("empty", ["", None], ids=["COURSE_DEVICE-empty", "COURSE_DEVICE-unset"])
def test_get_device_ignores_an_empty_course_device(course_env, empty):
    """An exported but empty COURSE_DEVICE means "not set", not an invalid device name."""
    if empty is not None:
        course_env.setenv("COURSE_DEVICE", empty)
    assert get_device().type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_get_device_honours_course_device(course_env):
    course_env.setenv("COURSE_DEVICE", "cpu")
    assert get_device() == torch.device("cpu")


def test_get_device_argument_wins_over_course_device(course_env):
    """``prefer`` comes first: a notebook cell can pin the CPU even when the run asks for CUDA."""
    course_env.setenv("COURSE_DEVICE", "cuda")
    assert get_device("cpu") == torch.device("cpu")


@needs_no_cuda
@pytest.mark.parametrize("name", ["cuda", "cuda:1"])
def test_get_device_refuses_cuda_from_the_environment_without_cuda(course_env, name):
    """A misconfigured GPU run must fail loudly rather than train for hours on the CPU."""
    course_env.setenv("COURSE_DEVICE", name)
    with pytest.raises(RuntimeError, match="COURSE_DEVICE.*no CUDA device"):
        get_device()


@needs_no_cuda
def test_get_device_refuses_cuda_as_argument_without_cuda(course_env):
    with pytest.raises(RuntimeError, match="'cuda'"):
        get_device("cuda")


@pytest.mark.cuda
def test_get_device_gives_cuda_when_asked_on_a_gpu(course_env):
    course_env.setenv("COURSE_DEVICE", "cuda")
    assert get_device().type == "cuda"


# --- seed_everything ----------------------------------------------------------------------------


def _draw_from_every_generator() -> tuple:
    """One draw from each global generator seed_everything promises to seed."""
    return random.random(), np.random.rand(4).tolist(), torch.rand(4).tolist()


@pytest.mark.parametrize("seed", [0, 7, 2**40], ids=["seed-0", "seed-7", "seed-2**40"])
def test_seed_everything_makes_python_numpy_and_torch_reproducible(seed):
    seed_everything(seed)
    first = _draw_from_every_generator()
    seed_everything(seed)
    assert _draw_from_every_generator() == first


def test_seed_everything_different_seeds_give_different_draws():
    seed_everything(1)
    first = _draw_from_every_generator()
    seed_everything(2)
    second = _draw_from_every_generator()
    # Each of the three generators must have been reseeded, not only one of them.
    assert all(a != b for a, b in zip(first, second))


def test_seed_everything_returns_a_generator_seeded_with_seed():
    generator = seed_everything(5)
    expected = torch.rand(6, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(torch.rand(6, generator=generator), expected, atol=0, rtol=0)


def test_seed_everything_returned_generator_is_independent_of_the_global_stream():
    """Drawing from the global stream must not move the returned generator (shuffles stay fixed)."""
    generator = seed_everything(3)
    torch.rand(100)
    expected = torch.rand(6, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(torch.rand(6, generator=generator), expected, atol=0, rtol=0)


@pytest.mark.parametrize("seed", [-1, 1.5, "3", None], ids=["negative", "float", "str", "None"])
def test_seed_everything_rejects_a_seed_that_is_not_a_non_negative_int(seed):
    with pytest.raises(ValueError, match="seed must be a non-negative int"):
        seed_everything(seed)


def test_seed_everything_deterministic_turns_on_deterministic_algorithms():
    before = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    benchmark = torch.backends.cudnn.benchmark
    try:
        torch.use_deterministic_algorithms(False)
        seed_everything(0, deterministic=True)
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.backends.cudnn.benchmark is False
    finally:  # global switches: leave them as the next test expects them
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
        torch.backends.cudnn.benchmark = benchmark


# --- scale --------------------------------------------------------------------------------------


def test_scales_are_small_and_full():
    assert SCALES == ("small", "full")


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, "small"), ("", "small"), ("small", "small"), ("full", "full"), (" FULL\n", "full"), ("Small", "small")],
    ids=["unset", "empty", "small", "full", "full-padded-uppercase", "small-capitalised"],
)
def test_get_scale_reads_course_scale(course_env, value, expected):
    if value is not None:
        course_env.setenv("COURSE_SCALE", value)
    assert get_scale() == expected
    assert is_full_scale() is (expected == "full")
    assert scaled(small="s", full="f") == expected[0]


@pytest.mark.parametrize("value", ["medium", "fulll", "0"])
def test_an_invalid_course_scale_raises_naming_the_variable(course_env, value):
    """A typo in COURSE_SCALE must not silently run the small course."""
    course_env.setenv("COURSE_SCALE", value)
    for read_scale in (get_scale, is_full_scale, lambda: scaled(1, 2)):
        with pytest.raises(ValueError, match=f"COURSE_SCALE must be one of .*{value!r}"):
            read_scale()


@pytest.mark.parametrize("scale, expected", [("small", 1), ("full", 3)])
def test_use_book_threads_is_one_thread_at_small_scale_and_leaves_full_scale_alone(course_env, scale, expected):
    from course_lib import use_book_threads

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(3)
        course_env.setenv("COURSE_SCALE", scale)
        assert use_book_threads() == expected == torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
