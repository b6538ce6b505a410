"""Dense prediction: fully convolutional networks that output one score map per class (T72-T75).

Both models map (N, in_channels, H, W) images to (N, num_classes, H, W) score
maps, one class distribution per pixel: train them with
``nn.CrossEntropyLoss`` against (N, H, W) label maps.

- :func:`fcn` (Long, Shelhamer & Darrell, "Fully Convolutional Networks for
  Semantic Segmentation", CVPR 2015): a classification backbone whose fully
  connected layers are convolutions, a 1x1 conv scoring every class at stride
  32 (or 16), learned 2x upsamplings fused with the scores of earlier pooling
  stages (FCN-8s skips), and a fixed bilinear upsampling to the input size.
- :func:`unet` (Ronneberger, Fischer & Brox, "U-Net: Convolutional Networks for
  Biomedical Image Segmentation", MICCAI 2015): a contracting path of double
  3x3 convs and max-pools, an expanding path of 2x2 up-convolutions, each
  followed by the *concatenation* of the contracting path's map at the same
  resolution (the skip connection) and a double 3x3 conv; a 1x1 conv gives
  the class maps.

Both use padded ("same") 3x3 convolutions, so the score maps have exactly the
input's resolution when H and W are divisible by the total downsampling
(``2**depth`` for U-Net, ``2**stages`` for FCN); other sizes raise a ValueError.
The papers instead used unpadded convolutions: U-Net maps a 572x572 tile to
388x388 scores and crops the skip maps to fit; FCN pads its input by 100 pixels
and crops the upsampled scores. Padding changes no parameter count.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import check_choice, check_flag, check_int, check_rank
from ..layers import ConvNormAct
from .registry import published, register_model

__all__ = [
    "UNet",
    "FCN",
    "FCN_BACKBONES",
    "FixedBilinearUpsample",
    "bilinear_kernel",
    "unet",
    "fcn",
]


def _check_divisible(x: torch.Tensor, factor: int, why: str) -> None:
    """The score maps come back at the input's resolution only when every downsampling halves H and W exactly."""
    check_rank("x", x, 4, "(N, C, H, W)")
    h, w = x.shape[-2:]
    if h % factor or w % factor:
        raise ValueError(f"input size {h}x{w} must be divisible by {factor} ({why}), got shape {tuple(x.shape)}")


# ----------------------------------------------------------------------------------------------- U-Net


NormLayer = Callable[[int], nn.Module] | None


def _double_conv(in_channels: int, out_channels: int, norm_layer: NormLayer, mid_channels: int | None = None):
    """The U-Net unit, two padded 3x3 conv (+ norm) + ReLU: (N, C_in, H, W) -> (N, C_out, H, W)."""
    mid_channels = mid_channels or out_channels
    return nn.Sequential(
        ConvNormAct(in_channels, mid_channels, norm_layer=norm_layer),
        ConvNormAct(mid_channels, out_channels, norm_layer=norm_layer),
    )


def _down(in_channels: int, out_channels: int, norm_layer: NormLayer) -> nn.Sequential:
    """A contracting step, 2x2 max-pool then double conv: (N, C_in, H, W) -> (N, C_out, H/2, W/2)."""
    return nn.Sequential(nn.MaxPool2d(2), _double_conv(in_channels, out_channels, norm_layer))


class _Up(nn.Module):
    """Upsample 2x, concatenate the skip map, double conv.

    Shapes: x (N, C_in, h, w) and skip (N, C_skip, 2h, 2w) -> (N, C_out, 2h, 2w).

    ``"transpose"``: a 2x2 stride-2 up-convolution halving the channels (the
    paper); ``"bilinear"``: parameter-free bilinear upsampling, the double conv
    then reducing the channels (``mid_channels = in_channels // 2``).
    """

    def __init__(self, in_channels: int, out_channels: int, upsample: str, norm_layer: NormLayer):
        super().__init__()
        if upsample == "transpose":
            self.up = nn.ConvTranspose2d(in_channels, in_channels // 2, kernel_size=2, stride=2)
            self.conv = _double_conv(in_channels, out_channels, norm_layer)
        else:
            self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)
            self.conv = _double_conv(in_channels, out_channels, norm_layer, mid_channels=in_channels // 2)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([skip, self.up(x)], dim=1))  # the skip connection: concatenation


class UNet(nn.Module):
    """U-Net with padded convolutions: output maps at the input's resolution.

    Args:
        num_classes: output maps (classes per pixel).
        in_channels: channels of the input images.
        base_channels: channels of the first double conv (64 in the paper); level ``i``
            has ``base_channels * 2**i``.
        depth: down-sampling steps (4 in the paper: 5 levels, 1024 channels at the bottom).
        upsample: ``"transpose"`` (2x2 up-convolutions, the paper) or ``"bilinear"``.
        batch_norm: BatchNorm after every 3x3 conv (not in the paper, which predates its
            wide use; it makes small-data training on CPU much easier). False: convs with bias.

    The layers come in the order of milesial/Pytorch-UNet's ``UNet`` (``inc``,
    ``down1-4``, ``up1-4``, ``outc``; here ``inc``, ``downs``, ``ups``, ``outc``), so
    :func:`course_lib.models.transfer_state_dict` copies its weights; with
    ``upsample="bilinear"`` the channels are halved at the bottom as there. The
    paper's dropout at the end of the contracting path is left out.

    Shapes: (N, in_channels, H, W) -> (N, num_classes, H, W), H and W divisible by ``2**depth``.
    With the defaults at 64x64: 64x64x64 -> 32x32x128 -> 16x16x256 -> 8x8x512 ->
    4x4x1024 (bottleneck) -> 8x8x512 -> 16x16x256 -> 32x32x128 -> 64x64x64 -> 64x64xnum_classes.
    """

    def __init__(
        self,
        num_classes: int = 2,
        in_channels: int = 3,
        *,
        base_channels: int = 64,
        depth: int = 4,
        upsample: str = "transpose",
        batch_norm: bool = True,
    ):
        super().__init__()
        check_int("base_channels", base_channels, 1)
        check_int("depth", depth, 1)
        check_choice("upsample", upsample, ("transpose", "bilinear"))
        check_flag("batch_norm", batch_norm)
        norm_layer = nn.BatchNorm2d if batch_norm else None
        self.depth = depth
        factor = 2 if upsample == "bilinear" else 1  # bilinear upsampling cannot halve the channels itself
        channels = [base_channels * 2**i for i in range(depth + 1)]

        self.inc = _double_conv(in_channels, channels[0], norm_layer)
        self.downs = nn.ModuleList(
            _down(channels[i - 1], channels[i] // (factor if i == depth else 1), norm_layer)
            for i in range(1, depth + 1)
        )
        self.ups = nn.ModuleList(
            _Up(channels[i], channels[i - 1] // (factor if i > 1 else 1), upsample, norm_layer)
            for i in range(depth, 0, -1)
        )
        self.outc = nn.Conv2d(channels[0], num_classes, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_divisible(x, 2**self.depth, f"depth={self.depth} halves it {self.depth} times")
        skips = [self.inc(x)]  # contracting path; the deepest map is the bottleneck
        for down in self.downs:
            skips.append(down(skips[-1]))
        x = skips.pop()
        for up in self.ups:  # expanding path, each step fed the contracting map of its resolution
            x = up(x, skips.pop())
        return self.outc(x)


# ------------------------------------------------------------------------------------------------- FCN


def bilinear_kernel(size: int) -> torch.Tensor:
    """(size, size) bilinear interpolation kernel, FCN's ``upsample_filt``: a transposed convolution with
    it, stride ``f``, kernel ``2f`` and padding ``f/2``, upsamples by ``f``."""
    factor = (size + 1) // 2
    center = factor - 1 if size % 2 == 1 else factor - 0.5
    og = torch.arange(size, dtype=torch.float32, device="cpu")  # a constant: on the CPU even under a meta device
    filt = 1 - (og - center).abs() / factor
    return filt[:, None] * filt[None, :]


def _init_bilinear_(deconv: nn.ConvTranspose2d) -> None:
    """Make a (C -> C) transposed conv upsample each channel bilinearly (FCN's initialisation)."""
    with torch.no_grad():
        eye = torch.eye(deconv.in_channels, device="cpu")
        deconv.weight.copy_(eye[:, :, None, None] * bilinear_kernel(deconv.kernel_size[0]))  # channel c -> c only


class FixedBilinearUpsample(nn.Module):
    """Bilinear upsampling by an integer ``factor`` as a transposed conv with a fixed (unlearned) kernel.

    FCN's last upsampling ("the final layer deconvolutional filters are fixed to
    bilinear interpolation", Sec. 4.3). Kernel ``2 * factor``, stride ``factor``,
    padding ``factor // 2``, one channel at a time. Shapes: (N, C, h, w) -> (N, C, factor h, factor w).
    """

    def __init__(self, channels: int, factor: int):
        super().__init__()
        if factor < 2 or factor % 2:
            raise ValueError(f"factor must be an even int >= 2, got {factor!r}")
        self.channels, self.factor = channels, factor
        kernel = bilinear_kernel(2 * factor).expand(channels, 1, 2 * factor, 2 * factor)
        kernel = kernel.to(torch.get_default_device(), copy=True)
        self.register_buffer("weight", kernel, persistent=False)  # a constant: not in the state_dict

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv_transpose2d(x, self.weight, stride=self.factor, padding=self.factor // 2, groups=self.channels)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, factor={self.factor}"


# Backbones: 3x3-conv stages (output channels of each conv, each conv followed by ``norm_layer`` if any,
# and a ReLU), each ending with a 2x2 max-pool, then the classifier's fully connected layers as
# convolutions (channels, kernel) or none.
FCN_BACKBONES: dict[str, dict] = {
    # A VGG-style net small enough for 32x32 / 64x64 images on a CPU: stride 16, 1.2M parameters.
    "small": {"stages": ((32, 32), (64, 64), (128, 128), (256, 256)), "norm_layer": nn.BatchNorm2d, "fc": ()},
    # VGG-16 (configuration D), fc6 as a 7x7 conv and fc7 as a 1x1 conv: the paper's FCN-VGG16.
    "vgg16": {
        "stages": ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512)),
        "norm_layer": None,
        "fc": ((4096, 7), (4096, 1)),
    },
}


def _fc_as_conv(in_channels: int, fc: tuple[tuple[int, int], ...]) -> tuple[nn.Sequential, int]:
    """The classifier's hidden layers as convs (conv-ReLU-dropout each, "same" padding) and their width."""
    layers: list[nn.Module] = []
    for channels, kernel in fc:
        layers += [ConvNormAct(in_channels, channels, kernel, norm_layer=None), nn.Dropout(0.5)]
        in_channels = channels
    return nn.Sequential(*layers), in_channels


class FCN(nn.Module):
    """Fully convolutional network: backbone, 1x1 class scores, FCN-8s skip fusion, upsampling to the input.

    Args:
        num_classes: score maps (classes per pixel).
        in_channels: channels of the input images.
        backbone: a key of :data:`FCN_BACKBONES`: ``"small"`` (4 stages, stride 16, for
            32x32 / 64x64 images) or ``"vgg16"`` (the paper's FCN-VGG16, stride 32).
        skips: True fuses the scores of the two pooling stages before the last, FCN-8s
            style (for VGG-16: pool4 at stride 16 and pool3 at stride 8, then 8x
            upsampling); False upsamples the last stage's scores alone (FCN-32s).

    Each fusion step upsamples the coarse scores 2x by a learned transposed conv
    (initialised to bilinear interpolation) and adds the 1x1-conv scores of the
    finer pooling stage (initialised to zero, so training starts from the coarse
    net's predictions, as in the paper). The last upsampling is fixed bilinear.

    Shapes: (N, in_channels, H, W) -> (N, num_classes, H, W), H and W divisible by
    ``2**stages`` (16 for "small", 32 for "vgg16"). "small" with skips at 64x64:
    stages 32x32x32, 16x16x64, 8x8x128, 4x4x256 -> scores 4x4 -> +stage 3 at 8x8 ->
    +stage 2 at 16x16 -> 4x bilinear -> 64x64xnum_classes.
    """

    def __init__(self, num_classes: int = 21, in_channels: int = 3, *, backbone: str = "small", skips: bool = True):
        super().__init__()
        check_choice("backbone", backbone, FCN_BACKBONES)
        check_flag("skips", skips)
        config = FCN_BACKBONES[backbone]
        stages = config["stages"]

        self.features = nn.ModuleList()
        stage_channels = []
        for widths in stages:
            layers: list[nn.Module] = []
            for width in widths:
                layers.append(ConvNormAct(in_channels, width, norm_layer=config["norm_layer"]))
                in_channels = width
            layers.append(nn.MaxPool2d(2))
            self.features.append(nn.Sequential(*layers))
            stage_channels.append(in_channels)
        self.fc, head_channels = _fc_as_conv(in_channels, config["fc"])
        self.score = nn.Conv2d(head_channels, num_classes, kernel_size=1)

        self.stride = 2 ** len(stages)
        if skips and len(stages) < 3:
            raise ValueError(f"skips need a backbone of at least 3 stages, {backbone!r} has {len(stages)}")
        fused = (len(stages) - 2, len(stages) - 3) if skips else ()  # indices of the stages fused, coarse first
        self.fused_stages = fused
        self.score_skips = nn.ModuleList(nn.Conv2d(stage_channels[i], num_classes, kernel_size=1) for i in fused)
        self.upsample2x = nn.ModuleList(
            nn.ConvTranspose2d(num_classes, num_classes, kernel_size=4, stride=2, padding=1, bias=False) for _ in fused
        )
        self.upsample = FixedBilinearUpsample(num_classes, self.stride // 2 ** len(fused))
        for conv in self.score_skips:
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)
        for deconv in self.upsample2x:
            _init_bilinear_(deconv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_divisible(x, self.stride, f"the backbone downsamples by {self.stride}")
        maps = []
        for stage in self.features:
            x = stage(x)
            maps.append(x)
        scores = self.score(self.fc(x))  # (N, num_classes, H / stride, W / stride)
        for i, score_skip, up in zip(self.fused_stages, self.score_skips, self.upsample2x):
            scores = up(scores) + score_skip(maps[i])  # 2x finer at each step
        return self.upsample(scores)


@register_model(
    input_size=256,
    paper="Ronneberger, Fischer & Brox 2015, U-Net: convolutional networks for biomedical image segmentation",
    params=[
        published(31_102_568, "computed for the defaults (1000 maps)"),
        published(31_037_698, "milesial/Pytorch-UNet, UNet(n_channels=3, n_classes=2, bilinear=False)", num_classes=2),
        published(
            17_263_042,
            "milesial/Pytorch-UNet, UNet(n_channels=3, n_classes=2, bilinear=True)",
            num_classes=2,
            upsample="bilinear",
        ),
        published(7_763_074, "computed: base 32, about a quarter of base 64", num_classes=2, base_channels=32),
    ],
)
def unet(
    num_classes: int = 1000,
    in_channels: int = 3,
    *,
    base_channels: int = 64,
    depth: int = 4,
    upsample: str = "transpose",
    batch_norm: bool = True,
) -> UNet:
    """U-Net (base 64, depth 4, 2x2 up-convolutions, padded 3x3 convs with BatchNorm); the options are :class:`UNet`'s.

    Any size divisible by ``2**depth`` (e.g. 32x32, 64x64).
    Shapes: (N, in_channels, H, W) -> (N, num_classes, H, W).
    """
    return UNet(num_classes, in_channels, base_channels=base_channels, depth=depth, upsample=upsample,
                batch_norm=batch_norm)


@register_model(
    paper="Long, Shelhamer & Darrell 2015, Fully convolutional networks for semantic segmentation",
    params=[
        published(33_624_216, "computed for the defaults (small backbone, FCN-8s skips, 1000 maps)"),
        published(
            134_346_581,
            "FCN-32s on VGG-16 for PASCAL VOC; Long et al. 2015, Table 1: FCN-VGG16, 134M parameters",
            num_classes=21,
            backbone="vgg16",
            skips=False,
        ),
    ],
)
def fcn(
    num_classes: int = 1000,
    in_channels: int = 3,
    *,
    backbone: str = "small",
    skips: bool = True,
) -> FCN:
    """FCN on a small VGG-style backbone, FCN-8s-style skips; the options are :class:`FCN`'s.

    ``backbone="vgg16", skips=False`` is the paper's FCN-32s (FCN-VGG16). Inputs divisible
    by 16 ("small") or 32 ("vgg16"). Shapes: (N, in_channels, H, W) -> (N, num_classes, H, W).
    """
    return FCN(num_classes, in_channels, backbone=backbone, skips=skips)
