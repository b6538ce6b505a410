"""Helpers for comparing a from-scratch op with PyTorch's: seeded random tensors, and one comparison of
values and gradients through both (one place for all the tests and for benchmarks/reference_errors.py)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch


def random_tensors(*shapes, seed: int = 0, dtype=torch.float64, device="cpu", requires_grad=False) -> list:
    """Standard normal tensors of the given shapes, drawn one after another from one generator seeded ``seed``.

    The generator is on the CPU, so a seed gives the same numbers on every device (they are moved there).
    Each tensor is a leaf that requires grad if ``requires_grad``.
    """
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=generator, dtype=dtype).to(device).requires_grad_(requires_grad)
            for shape in shapes]


def random_tensor(*shape: int, seed: int = 0, dtype=torch.float64, device="cpu", requires_grad=False) -> torch.Tensor:
    """One standard normal tensor of ``shape``, as :func:`random_tensors` draws it."""
    return random_tensors(shape, seed=seed, dtype=dtype, device=device, requires_grad=requires_grad)[0]


def assert_same_values_and_grads(ours: Callable, reference: Callable, tensors: Sequence, tol: dict,
                                 names: Sequence[str] | None = None) -> None:
    """``ours(*tensors)`` equals ``reference(*tensors)`` within ``tol`` (torch.testing.assert_close's
    atol/rtol), and so do the gradients with respect to every tensor that requires grad, for one seeded
    random upstream gradient. ``names`` names those tensors in a failure ("grad of weight: ...")."""
    out, expected = ours(*tensors), reference(*tensors)
    assert out.shape == expected.shape, f"shape {tuple(out.shape)}, PyTorch's {tuple(expected.shape)}"
    torch.testing.assert_close(out, expected, **tol)
    leaves = [t for t in tensors if isinstance(t, torch.Tensor) and t.requires_grad]
    names = list(names) if names is not None else [f"tensor {i}" for i in range(len(leaves))]
    upstream = random_tensor(*expected.shape, seed=1, dtype=expected.dtype, device=expected.device)
    grads = torch.autograd.grad(out, leaves, upstream)
    expected_grads = torch.autograd.grad(expected, leaves, upstream)
    for name, grad, expected_grad in zip(names, grads, expected_grads):
        torch.testing.assert_close(grad, expected_grad, **tol, msg=lambda m, name=name: f"grad of {name}: {m}")
