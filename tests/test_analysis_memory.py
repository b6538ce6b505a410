"""Activation memory of a forward pass (course_lib/analysis/memory.py) and DenseNet's memory-efficient blocks.

References: closed forms for a conv-ReLU stack (what autograd is documented to keep: a
convolution its input, a ReLU its output), the bytes of a concatenation, and the plain
DenseBlock as the reference for the recomputing one (same outputs, same gradients).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from course_lib import seed_everything
from course_lib.analysis.memory import ActivationMemory, activation_memory
from course_lib.models.densenet import DENSENET_BLOCKS, DenseBlock, DenseNet

FLOAT = 4  # bytes of a float32


def test_conv_relu_keeps_the_relu_output_and_saves_the_input_too():
    seed_everything(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, bias=False), nn.ReLU())
    x = torch.randn(2, 3, 16, 16)
    memory = activation_memory(model, x)
    conv_out = 2 * 8 * 14 * 14 * FLOAT
    # The conv output dies once the ReLU has read it; the ReLU output lives (it is saved and returned).
    assert memory.kept_bytes == conv_out
    # Saved for backward: the conv's input x (its weight is excluded) and the ReLU's output.
    assert memory.saved_bytes == x.numel() * FLOAT + conv_out
    assert memory.allocated_by_op == {"convolution": conv_out, "relu": conv_out}
    assert memory.allocated_bytes == 2 * conv_out


def test_in_place_relu_allocates_nothing_and_keeps_the_shared_storage_once():
    seed_everything(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, bias=False), nn.ReLU(inplace=True))
    memory = activation_memory(model, torch.randn(2, 3, 16, 16))
    conv_out = 2 * 8 * 14 * 14 * FLOAT
    assert memory.allocated_by_op == {"convolution": conv_out}
    assert memory.kept_bytes == conv_out


class _Concat(nn.Module):
    def forward(self, x):
        return torch.cat([x, 2 * x], dim=1)


def test_concatenation_is_a_copy_of_both_inputs():
    memory = activation_memory(_Concat(), torch.randn(1, 2, 4, 4, requires_grad=True))
    assert memory.allocated_by_op["cat"] == 2 * (1 * 2 * 4 * 4) * FLOAT
    assert memory.allocated_by_op["mul"] == 1 * 2 * 4 * 4 * FLOAT


def test_without_autograd_needs_nothing_is_saved_but_eval_mode_still_keeps_the_output():
    seed_everything(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4), nn.ReLU())
    for p in model.parameters():
        p.requires_grad_(False)
    memory = activation_memory(model, torch.randn(1, 3, 5, 5), train=False)
    assert memory.saved_bytes == 0
    assert memory.kept_bytes == 1 * 4 * 5 * 5 * FLOAT  # only the output survives


def test_modes_are_restored_and_batch_norm_ran_on_batch_statistics():
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4))
    model[1].eval()  # frozen on purpose
    before = model[1].running_mean.clone()
    activation_memory(model, torch.randn(4, 3, 5, 5))
    assert model.training and not model[1].training
    assert not torch.equal(model[1].running_mean, before)  # it ran in training mode


@pytest.mark.parametrize("drop_rate", [0.0, 0.2])
def test_memory_efficient_block_gives_the_same_outputs_and_gradients(drop_rate):
    seed_everything(0)
    plain = DenseBlock(3, 6, 4, drop_rate=drop_rate).double()
    efficient = DenseBlock(3, 6, 4, drop_rate=drop_rate, memory_efficient=True).double()
    efficient.load_state_dict(plain.state_dict())
    x = torch.randn(2, 6, 5, 5, dtype=torch.float64, requires_grad=True)
    results = []
    for block in (plain, efficient):
        torch.manual_seed(1)  # the same dropout masks
        y = block(x)
        grads = torch.autograd.grad((y * torch.linspace(-1, 1, y.numel(), dtype=y.dtype).view_as(y)).sum(),
                                    [x, *block.parameters()])
        results.append((y, grads))
    (y0, g0), (y1, g1) = results
    assert y0.shape == (2, 6 + 3 * 4, 5, 5)
    torch.testing.assert_close(y1, y0, rtol=0, atol=1e-12)
    for a, b in zip(g0, g1):
        torch.testing.assert_close(b, a, rtol=0, atol=1e-12)


def test_plain_block_memory_grows_quadratically_and_the_efficient_one_linearly():
    seed_everything(0)
    x = torch.randn(1, 8, 8, 8)
    kept = {kind: [] for kind in ("plain", "efficient")}
    for layers in range(1, 7):
        kept["plain"].append(activation_memory(DenseBlock(layers, 8, 4), x).kept_bytes)
        kept["efficient"].append(activation_memory(DenseBlock(layers, 8, 4, memory_efficient=True), x).kept_bytes)
    increments = {kind: [b - a for a, b in zip(v, v[1:])] for kind, v in kept.items()}
    # Plain: each new layer keeps two maps 4 channels wider than the previous layer's (the concatenation
    # and its batch-normalised copy, 8x8 floats per channel), and its BN's mean and 1/std of 4 more channels.
    second = [b - a for a, b in zip(increments["plain"], increments["plain"][1:])]
    assert second == [2 * 4 * 8 * 8 * FLOAT + 2 * 4 * FLOAT] * len(second)
    # Efficient: every layer adds the same amount (its own maps, not the ones before it).
    assert len(set(increments["efficient"])) == 1
    assert kept["efficient"][-1] < kept["plain"][-1]


def test_memory_efficient_densenet_keeps_less_at_224():
    seed_everything(0)
    config = (2, 2)  # a short DenseNet: the memory pattern, cheaply
    x = torch.randn(1, 3, 64, 64)
    plain = activation_memory(DenseNet(config, num_classes=10), x)
    efficient = activation_memory(DenseNet(config, num_classes=10, memory_efficient=True), x)
    assert isinstance(plain, ActivationMemory)
    assert efficient.kept_bytes < plain.kept_bytes
    assert DenseNet(DENSENET_BLOCKS["densenet121"], memory_efficient=True).features.denseblock1.memory_efficient


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: activation_memory("model", torch.zeros(1)), "model must be a torch.nn.Module"),
        (lambda: activation_memory(nn.ReLU(), [1.0]), "x must be a torch.Tensor"),
        (lambda: activation_memory(nn.ReLU(), torch.zeros(1), train="yes"), "train must be a bool"),
        (lambda: DenseBlock(2, 4, 2, memory_efficient=1), "memory_efficient must be a bool"),
    ],
)
def test_bad_arguments_are_named(call, message):
    with pytest.raises(ValueError, match=message):
        call()
