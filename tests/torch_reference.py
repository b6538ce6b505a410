"""Comparing a from-scratch op with PyTorch's: values, and gradients through both (one helper for all tests)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch


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
    upstream = torch.randn(expected.shape, generator=torch.Generator().manual_seed(1), dtype=expected.dtype)
    upstream = upstream.to(expected.device)
    grads = torch.autograd.grad(out, leaves, upstream)
    expected_grads = torch.autograd.grad(expected, leaves, upstream)
    for name, grad, expected_grad in zip(names, grads, expected_grads):
        torch.testing.assert_close(grad, expected_grad, **tol, msg=lambda m, name=name: f"grad of {name}: {m}")
