r"""Deep Image Prior (Ulyanov, Vedaldi and Lempitsky 2018): an *untrained* network as an image prior.

A generator network :math:`f_\theta` maps a fixed random input :math:`z` to an image. Its
weights are fitted to **one** degraded image :math:`x_0` and nothing else,

.. math::

    \theta^\ast = \arg\min_\theta \lVert m \odot (f_\theta(z) - x_0) \rVert^2,
    \qquad \hat x = f_{\theta^\ast}(z),

with :math:`m = 1` everywhere for denoising and :math:`m = 0` on the missing pixels for
inpainting. No clean image is ever seen. What makes this work is the order in which a
convolutional generator learns: it reproduces smooth regions and edges after few steps and
the noise only after many, so stopping early gives a denoised image, and the masked
pixels get filled with whatever the convolutions extrapolate from their surroundings.

:class:`DeepImagePrior` is a small version of the paper's "hourglass with skip connections":
strided convolutions down, bilinear upsampling up, batch norm and leaky ReLU, and *thin*
skip connections (a few channels each). :func:`fit_deep_image_prior` runs the optimisation
and records the PSNR against a reference image (which only a demonstration has), so that the
rise and later fall of the quality can be plotted.

Shapes follow the (N, C, H, W) convention; DIP fits one image, so N = 1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from .._checks import check_int, check_module, check_number, check_rank

__all__ = ["DeepImagePrior", "DipResult", "psnr", "fit_deep_image_prior"]


def _conv_bn_act(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1) -> list[nn.Module]:
    # Reflection padding as in the paper: zero padding would pull the image's border towards black.
    pad = (kernel_size - 1) // 2
    return [
        nn.ReflectionPad2d(pad) if pad else nn.Identity(),
        nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.LeakyReLU(0.2),
    ]


class DeepImagePrior(nn.Module):
    """The hourglass generator of Deep Image Prior, shrunk for a CPU.

    Args:
        in_channels: channels of the fixed random input ``z`` (32 in the paper).
        out_channels: channels of the image (3 for RGB, 1 for grey).
        channels: channels at each level of the hourglass, one entry per down-sampling step
            (``(128,) * 5`` in the paper's denoising network).
        skip_channels: channels of each skip connection (4 in the paper); 0 removes them,
            which makes a plain encoder-decoder.

    Each level ``i`` halves the resolution with a strided 3x3 convolution, then a 3x3 convolution;
    on the way up the map is upsampled bilinearly, concatenated with the level's skip branch (a
    1x1 convolution of the level's *input*), and mixed by a 3x3 and a 1x1 convolution. Every
    convolution is followed by batch norm and leaky ReLU (slope 0.2); a final 1x1 convolution and
    a sigmoid give pixels in (0, 1).

    Shapes: (N, in_channels, H, W) -> (N, out_channels, H, W), H and W divisible by
    ``2 ** len(channels)``.
    """

    def __init__(
        self,
        in_channels: int = 32,
        out_channels: int = 3,
        channels: Sequence[int] = (32, 32, 32, 32),
        skip_channels: int = 4,
    ):
        super().__init__()
        check_int("in_channels", in_channels, 1)
        check_int("out_channels", out_channels, 1)
        check_int("skip_channels", skip_channels, 0)
        widths = tuple(channels) if isinstance(channels, (tuple, list)) else None
        if not widths or not all(isinstance(c, int) and not isinstance(c, bool) and c >= 1 for c in widths):
            raise ValueError(f"channels must be a non-empty sequence of ints >= 1, got {channels!r}")
        self.levels = len(widths)
        inputs = (in_channels, *widths[:-1])  # what each level receives
        self.downs = nn.ModuleList(
            nn.Sequential(*_conv_bn_act(c_in, c, 3, stride=2), *_conv_bn_act(c, c, 3)) for c_in, c in zip(inputs, widths)
        )
        self.skips = nn.ModuleList(
            nn.Sequential(*_conv_bn_act(c_in, skip_channels, 1)) if skip_channels else nn.Identity() for c_in in inputs
        )
        # Level i's up branch receives the (upsampled) output of the level below it, or of its own down branch
        # for the deepest level, and returns the level's width for the level above to consume.
        deeper = (*widths[1:], widths[-1])
        self.ups = nn.ModuleList(
            nn.Sequential(
                nn.BatchNorm2d(d + skip_channels),
                *_conv_bn_act(d + skip_channels, c, 3),
                *_conv_bn_act(c, c, 1),
            )
            for c, d in zip(widths, deeper)
        )
        self.upsample = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
        self.skip_channels = skip_channels
        self.out = nn.Conv2d(widths[0], out_channels, 1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        check_rank("z", z, 4, "(N, C, H, W)")
        factor = 2**self.levels
        if z.shape[-2] % factor or z.shape[-1] % factor:
            raise ValueError(f"z's height and width must be divisible by 2**{self.levels} = {factor} "
                             f"(one halving per level), got {tuple(z.shape[-2:])}")
        skips, h = [], z
        for down, skip in zip(self.downs, self.skips):
            skips.append(skip(h) if self.skip_channels else None)
            h = down(h)
        for up, s in zip(reversed(self.ups), reversed(skips)):
            h = self.upsample(h)
            h = up(h if s is None else torch.cat([s, h], dim=1))
        return torch.sigmoid(self.out(h))

    def extra_repr(self) -> str:
        return f"levels={self.levels}, skip_channels={self.skip_channels}"


def psnr(image: torch.Tensor, reference: torch.Tensor, data_range: float = 1.0) -> float:
    r"""Peak signal-to-noise ratio in dB: :math:`10 \log_{10}(R^2 / \text{MSE})`, R = ``data_range``.

    ``image`` and ``reference`` must have the same shape (any); the MSE is over all entries.
    Each halving of the RMS error adds 6.02 dB; identical images give ``inf``.
    """
    if not isinstance(image, torch.Tensor) or not isinstance(reference, torch.Tensor):
        raise ValueError("image and reference must be torch.Tensors")
    if image.shape != reference.shape:
        raise ValueError(f"image and reference must have the same shape, got {tuple(image.shape)} "
                         f"and {tuple(reference.shape)}")
    check_number("data_range", data_range, positive=True)
    mse = (image.detach().double() - reference.detach().double()).pow(2).mean().item()
    return math.inf if mse == 0 else 10 * math.log10(data_range**2 / mse)


@dataclass
class DipResult:
    """What :func:`fit_deep_image_prior` returns.

    At step ``iterations[k]`` (counted from 1) the output was recorded before that step's update:
    ``loss[k]`` is its masked MSE to the target and, when a reference was given, ``psnr[k]`` its
    PSNR against the reference (dB; of the running average when ``average > 0``).
    ``final``: the output (or average) of the last step, (1, C, H, W); ``best`` and
    ``best_iteration``: the recorded one with the highest PSNR against the reference (the oracle
    early stop; ``None`` without a reference).
    """

    iterations: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    psnr: list[float] = field(default_factory=list)
    final: torch.Tensor | None = None
    best: torch.Tensor | None = None
    best_iteration: int | None = None


def fit_deep_image_prior(
    net: nn.Module,
    target: torch.Tensor,
    *,
    iterations: int,
    mask: torch.Tensor | None = None,
    reference: torch.Tensor | None = None,
    lr: float = 0.01,
    input_channels: int = 32,
    input_scale: float = 0.1,
    input_noise: float = 0.0,
    average: float = 0.0,
    record_every: int = 10,
    seed: int = 0,
) -> DipResult:
    r"""Fit ``net`` to one degraded image from a fixed random input; the Deep Image Prior loop.

    Args:
        net: maps (1, input_channels, H, W) to (1, C, H, W), e.g. :class:`DeepImagePrior`. Its
            weights are changed in place; it is left in training mode (batch norm uses the
            statistics of the one image, as in the paper).
        target: (1, C, H, W) or (C, H, W) degraded image :math:`x_0`.
        iterations: Adam steps.
        mask: ``None`` (denoising) or a (1, 1 or C, H, W) / (1 or C, H, W) tensor of 0/1, 1 where
            ``target`` is known; the loss only looks at those pixels (inpainting).
        reference: the clean image, same shape as ``target``, to record the PSNR; never used to
            fit.
        lr: Adam's learning rate.
        input_channels: channels of :math:`z`.
        input_scale: :math:`z` is uniform on [0, ``input_scale``] (the paper's 1/10).
        input_noise: std of fresh Gaussian noise added to :math:`z` at every step (the paper's
            regularising perturbation, 1/30 for denoising); 0 keeps :math:`z` fixed.
        average: in [0, 1). With ``average > 0`` the *result* is the exponential moving average
            of the outputs, :math:`\bar x \leftarrow a \bar x + (1 - a) f_\theta(z)` (the paper's
            0.99): the outputs of successive steps differ in their noise more than in the image,
            so averaging them removes noise the fit has already picked up. ``psnr``, ``best``
            and ``final`` then describe the average; the loss is always the current output's.
        record_every: record the loss (and PSNR) after every this many steps.
        seed: seeds :math:`z` and its perturbations (not the network's initial weights).

    Returns:
        a :class:`DipResult`.
    """
    check_module("net", net)
    if isinstance(target, torch.Tensor) and target.ndim == 3:
        target = target.unsqueeze(0)
    check_rank("target", target, 4, "(1, C, H, W)")
    if target.shape[0] != 1:
        raise ValueError(f"target must hold one image, shape (1, C, H, W), got {tuple(target.shape)}")
    check_int("iterations", iterations, 1)
    check_int("record_every", record_every, 1)
    check_int("input_channels", input_channels, 1)
    check_int("seed", seed, 0)
    check_number("lr", lr, positive=True)
    check_number("input_scale", input_scale, positive=True)
    check_number("input_noise", input_noise, non_negative=True)
    check_number("average", average, non_negative=True)
    if average >= 1:
        raise ValueError(f"average must lie in [0, 1), got {average!r}")
    if reference is not None:
        reference = reference.unsqueeze(0) if reference.ndim == 3 else reference
        if reference.shape != target.shape:
            raise ValueError(f"reference must have target's shape {tuple(target.shape)}, got {tuple(reference.shape)}")
    if mask is not None:
        mask = mask.unsqueeze(0) if isinstance(mask, torch.Tensor) and mask.ndim == 3 else mask
        check_rank("mask", mask, 4, "(1, 1 or C, H, W)")
        if mask.shape[0] != 1 or mask.shape[1] not in (1, target.shape[1]) or mask.shape[2:] != target.shape[2:]:
            raise ValueError(f"mask must have shape (1, 1 or {target.shape[1]}, {target.shape[2]}, {target.shape[3]}), "
                             f"got {tuple(mask.shape)}")
        mask = mask.to(target.dtype)

    generator = torch.Generator().manual_seed(seed)
    z = input_scale * torch.rand(1, input_channels, *target.shape[2:], generator=generator, dtype=target.dtype)
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    weights = torch.ones_like(target) if mask is None else mask.expand_as(target)
    known = weights.sum()
    result = DipResult()
    best_psnr = -math.inf
    smoothed = None
    net.train()
    for step in range(1, iterations + 1):
        noisy_z = z if input_noise == 0 else z + input_noise * torch.randn(z.shape, generator=generator, dtype=z.dtype)
        output = net(noisy_z)
        if output.shape != target.shape:
            raise ValueError(f"net must map z {tuple(z.shape)} to target's shape {tuple(target.shape)}, "
                             f"got {tuple(output.shape)}")
        loss = ((output - target) ** 2 * weights).sum() / known
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        current = output.detach()
        smoothed = current if smoothed is None or average == 0 else average * smoothed + (1 - average) * current
        if step % record_every == 0 or step == iterations:
            result.iterations.append(step)
            result.loss.append(loss.item())
            if reference is not None:
                quality = psnr(smoothed, reference)
                result.psnr.append(quality)
                if quality > best_psnr:
                    best_psnr, result.best, result.best_iteration = quality, smoothed.clone(), step
    result.final = smoothed.clone()
    return result
