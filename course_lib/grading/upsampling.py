"""Checks for the upsampling-and-segmentation lab (lab 8) that recognise the usual mistakes and name them.

Lab 8 asks for a transposed convolution, max pooling that remembers where each maximum came from, max unpooling,
a two-level encoder-decoder that unpools with those indices (``SegNetToy``), the centre crop of a U-Net's skip
connection, and a U-Net trained on ``shapes``. This module holds the trusted side:

* float64 references: :func:`transposed_reference` (PyTorch's ``conv_transpose2d``, the definition the lab uses),
  :func:`pool_reference` / :func:`unpool_reference` (2x2 max pooling of stride 2 and its partial inverse, indices
  flat in each (H, W) plane as PyTorch numbers them), :func:`segnet_reference` and :func:`crop_reference`;
* ``explain_*``: the known wrong computation whose output a student's output matches (output padding ignored, a
  kernel not flipped, indices ignored, a crop taken from the corner...).

Shapes: images and feature maps (N, C, H, W); a transposed convolution's weight (C_in, C_out, kH, kW), PyTorch's
layout, and its output side ``(H - 1) S - 2P + k + output_padding``.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F

from ..layers.functional.upsampling import bed_of_nails, upsample_nearest
from .checks import matches

__all__ = [
    "transposed_size",
    "transposed_reference",
    "explain_transposed",
    "pool_reference",
    "explain_pool_indices",
    "unpool_reference",
    "explain_unpool",
    "segnet_parameters",
    "segnet_reference",
    "explain_segnet",
    "explain_wiring",
    "crop_reference",
    "explain_crop",
]


def _first(wrong: Iterator[tuple[str, torch.Tensor | None]], actual, right: torch.Tensor) -> str | None:
    """The description of the first wrong output that ``actual`` matches and the right one does not."""
    for description, output in wrong:
        try:
            if output is not None and matches(actual, output) and not matches(output, right):
                return description
        except RuntimeError:  # a wrong variant that cannot run on this case
            continue
    return None


# --- transposed convolution -----------------------------------------------------------------------------------


def transposed_size(size: int, kernel: int, stride: int, padding: int, output_padding: int) -> int:
    """The side of a transposed convolution's output: (size - 1) * stride - 2 * padding + kernel + output_padding."""
    return (size - 1) * stride - 2 * padding + kernel + output_padding


def _scatter_full(x: torch.Tensor, weight: torch.Tensor, stride: int, flip: bool = False) -> torch.Tensor:
    """The "full" transposed convolution without bias, padding or output padding, in float64: every input pixel
    times the whole kernel, added into the output at ``stride``: (N, C_out, (H - 1) S + kH, (W - 1) S + kW)."""
    x, weight = x.double(), weight.double()
    if flip:
        weight = weight.flip(-2, -1)
    return F.conv_transpose2d(x, weight, None, stride)


def _cropped(full: torch.Tensor, bias, padding: int, output_padding: int, size: tuple[int, int],
             padding_first: bool = False) -> torch.Tensor:
    """The output of side ``size`` read from the full one: ``padding`` rows and columns cut on each side, the
    output padding's extra zero rows and columns at the bottom and right (at the top and left: ``padding_first``),
    then the bias."""
    op = output_padding
    grown = F.pad(full, (op, 0, op, 0) if padding_first else (0, op, 0, op))
    out = grown[..., padding:padding + size[0], padding:padding + size[1]]
    if tuple(out.shape[-2:]) != tuple(size):
        return None
    return out if bias is None else out + bias.double()[None, :, None, None]


def transposed_reference(x, weight, bias=None, stride=1, padding=0, output_padding=0) -> torch.Tensor:
    """The right transposed convolution in float64: ``F.conv_transpose2d`` (x (N, C_in, H, W), weight
    (C_in, C_out, kH, kW), bias (C_out,) or None, int stride / padding / output_padding)."""
    return F.conv_transpose2d(x.double(), weight.double(), None if bias is None else bias.double(), stride, padding,
                              output_padding)


def _transposed_slips(x, weight, bias, stride, padding, output_padding):
    """(description, output) of the wrong transposed convolutions a student's output is compared with."""
    k_h, k_w = weight.shape[-2:]
    size = (transposed_size(x.shape[-2], k_h, stride, padding, output_padding),
            transposed_size(x.shape[-1], k_w, stride, padding, output_padding))
    full = _scatter_full(x, weight, stride)
    if output_padding:
        yield ("output padding ignored: output_padding adds that many rows at the bottom and columns at the right "
               "of the output (a stride-s convolution maps s sizes to one, and output_padding says which to give "
               "back)", _cropped(full, bias, padding, 0, (size[0] - output_padding, size[1] - output_padding)))
        yield ("output padding added at the top and left: its extra rows and columns belong at the bottom and right "
               "(the first row and column of the output stay where padding put them)",
               _cropped(full, bias, padding, output_padding, size, padding_first=True))
    yield ("kernel not flipped: a transposed convolution written as a convolution over the zero-stuffed input must "
           "use the kernel rotated by 180 degrees (weight.flip(-2, -1)), with its two channel axes swapped",
           _cropped(_scatter_full(x, weight, stride, flip=True), bias, padding, output_padding, size))
    if padding:
        yield ("padding ignored: in a transposed convolution, padding P removes P rows and columns on each side of "
               "the full output (it undoes the padding of the matching convolution); the output is 2P too large",
               _cropped(full, bias, 0, output_padding, (size[0] + 2 * padding, size[1] + 2 * padding)))
        grow = (full.shape[-2] + 2 * padding + output_padding, full.shape[-1] + 2 * padding + output_padding)
        yield ("padding applied the convolution's way: it adds P zeros around the output instead of removing P rows "
               "and columns (written as a convolution of the zero-stuffed input, pad it by k - 1 - P, not by P)",
               _cropped(F.pad(full, (padding,) * 4), bias, 0, output_padding, grow))
        try:
            swapped = F.conv_transpose2d(x.double(), weight.double(), None if bias is None else bias.double(),
                                         padding, stride, output_padding)
        except RuntimeError:
            swapped = None
        if stride != padding:
            yield "stride and padding swapped", swapped
    if stride > 1:
        yield ("stride ignored: with stride s the input pixels land s apart in the output (zeros stuffed between "
               "them), so the output grows about s times",
               _cropped(_scatter_full(x, weight, 1), bias, padding, output_padding,
                        (transposed_size(x.shape[-2], k_h, 1, padding, output_padding),
                         transposed_size(x.shape[-1], k_w, 1, padding, output_padding))))
        yield ("s zeros stuffed between input pixels instead of s - 1: the pixels must land s apart",
               _cropped(_scatter_full(x, weight, stride + 1), bias, padding, output_padding,
                        (transposed_size(x.shape[-2], k_h, stride + 1, padding, output_padding),
                         transposed_size(x.shape[-1], k_w, stride + 1, padding, output_padding))))
    if weight.shape[0] == weight.shape[1]:
        yield ("the weight's channel axes read the wrong way round: a transposed convolution's weight is "
               "(C_in, C_out, kH, kW), input channel first (the transpose of a convolution's (C_out, C_in, kH, kW))",
               transposed_reference(x, weight.transpose(0, 1), bias, stride, padding, output_padding))
    if bias is not None:
        yield "bias not added", _cropped(full, None, padding, output_padding, size)


def explain_transposed(actual, x, weight, bias=None, stride=1, padding=0, output_padding=0) -> str | None:
    """The known wrong transposed convolution whose output ``actual`` matches, or None."""
    right = transposed_reference(x, weight, bias, stride, padding, output_padding)
    return _first(_transposed_slips(x, weight, bias, stride, padding, output_padding), actual, right)


# --- max pooling with indices, and max unpooling -----------------------------------------------------------------


def pool_reference(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """2x2 max pooling of stride 2 (odd sides floored) in float64: values (N, C, H // 2, W // 2) and int64 indices,
    each the flat position ``row * W + column`` of its maximum in the input's (H, W) plane."""
    return F.max_pool2d(x.double(), 2, return_indices=True)


def explain_pool_indices(actual, x: torch.Tensor) -> str | None:
    """The known wrong numbering of the maxima's positions that the indices ``actual`` follow, or None."""
    _, right = pool_reference(x)
    n, c, h, w = x.shape
    rows, cols = right // w, right % w
    window = (rows % 2) * 2 + cols % 2
    planes = (torch.arange(n)[:, None] * c + torch.arange(c)[None, :])[:, :, None, None]
    wrong = [
        ("indices counted inside each 2x2 window (0 to 3): they must be flat positions row * W + column in the "
         "input's (H, W) plane, so that unpooling can put each value back without knowing the windows", window),
        ("indices counted over the whole tensor (the plane's offset n * C * H * W + c * H * W included): they must "
         "start again at 0 in each (H, W) plane, as PyTorch numbers them", right + planes * h * w),
        ("row and column swapped in the flat index: it is row * W + column", cols * h + rows),
        ("indices of the pooled grid (row * (W // 2) + column of the output) instead of the input's",
         torch.arange((h // 2) * (w // 2)).reshape(h // 2, w // 2).expand_as(right)),
        ("indices of the minimum: the position of each window's largest value", F.max_pool2d(-x.double(), 2,
                                                                                            return_indices=True)[1]),
    ]
    for description, output in wrong:
        if isinstance(actual, torch.Tensor) and actual.shape == output.shape and torch.equal(actual.long(), output):
            return description
    return None


def unpool_reference(x: torch.Tensor, indices: torch.Tensor, output_size) -> torch.Tensor:
    """Max unpooling in float64: (N, C, H, W) zeros, each value of x (N, C, h, w) put at its flat position in its
    (H, W) plane (``output_size`` = (H, W))."""
    n, c = x.shape[:2]
    height, width = (int(s) for s in output_size)
    out = torch.zeros(n, c, height * width, dtype=torch.float64)
    out.scatter_(2, indices.reshape(n, c, -1), x.double().reshape(n, c, -1))
    return out.reshape(n, c, height, width)


def _fit(t: torch.Tensor, size) -> torch.Tensor:
    """``t`` cut or zero-padded at the bottom and right to (H, W) = ``size``."""
    t = t[..., :size[0], :size[1]]
    return F.pad(t, (0, size[1] - t.shape[-1], 0, size[0] - t.shape[-2]))


def _unpool_slips(x, indices, output_size):
    x = x.double()
    nearest, nails = upsample_nearest(x, 2), bed_of_nails(x, 2)
    yield ("indices ignored: each value copied to the four pixels of its window (nearest-neighbour upsampling); "
           "max unpooling puts it back at the one position its maximum came from, zeros elsewhere",
           _fit(nearest, output_size))
    yield ("indices ignored: each value put at the top-left pixel of its window (a bed of nails); max unpooling puts "
           "it where its maximum came from, which the indices say", _fit(nails, output_size))


def explain_unpool(actual, x, indices, output_size) -> str | None:
    """The known wrong unpooling whose output ``actual`` matches, or None."""
    size = tuple(int(s) for s in output_size)
    doubled = (2 * x.shape[-2], 2 * x.shape[-1])
    if isinstance(actual, torch.Tensor) and tuple(actual.shape[-2:]) == doubled != size:
        return (f"output_size ignored: the output has 2h x 2w = {doubled[0]} x {doubled[1]} pixels, but an input of "
                f"odd side was pooled, and it must come back as it was, {size[0]} x {size[1]}")
    return _first(_unpool_slips(x, indices, output_size), actual, unpool_reference(x, indices, output_size))


# --- SegNetToy: unpooling with the indices of the matching pooling -------------------------------------------------


def segnet_parameters(in_channels: int, mid_channels: int, classes: int) -> dict[str, tuple[int, ...]]:
    """The parameters of the lab's SegNetToy: four 3x3 convolutions with bias (name -> shape)."""
    convs = {"enc1": (mid_channels, in_channels), "enc2": (mid_channels, mid_channels),
             "dec2": (mid_channels, mid_channels), "dec1": (classes, mid_channels)}
    shapes = {}
    for name, (out_channels, in_ch) in convs.items():
        shapes[f"{name}.weight"] = (out_channels, in_ch, 3, 3)
        shapes[f"{name}.bias"] = (out_channels,)
    return shapes


def segnet_reference(x, w, unpool="indices", relu_decoder=True) -> torch.Tensor:
    """SegNetToy in float64 with weights ``w`` (name -> tensor); the keywords make it wrong.

    Right: h1 = relu(enc1(x)), pooled to p1 with indices i1; h2 = relu(enc2(p1)), pooled to p2 with indices i2;
    u2 = unpool(p2, i2) to h2's size; d2 = relu(dec2(u2)); u1 = unpool(d2, i1) to h1's size; logits dec1(u1).
    """

    def conv(name, h):
        return F.conv2d(h, w[f"{name}.weight"], w[f"{name}.bias"], padding=1)

    def up(h, indices, size):
        if unpool == "indices":
            return unpool_reference(h, indices, size)
        return _fit(upsample_nearest(h, 2), size)

    h1 = F.relu(conv("enc1", x.double()))
    p1, i1 = pool_reference(h1)
    h2 = F.relu(conv("enc2", p1))
    p2, i2 = pool_reference(h2)
    d2 = conv("dec2", up(p2, i2, h2.shape[-2:]))
    d2 = F.relu(d2) if relu_decoder else d2
    return conv("dec1", up(d2, i1, h1.shape[-2:]))


def explain_segnet(actual, x, w) -> str | None:
    """The known wrong SegNetToy whose output ``actual`` matches, or None."""
    wrong = (
        ("the decoder upsamples without the indices (nearest neighbour): unpool each level with max_unpool and the "
         "indices its pooling returned", segnet_reference(x, w, unpool="nearest")),
        ("no ReLU after dec2: every convolution but the last (dec1, which gives the logits) is followed by a ReLU",
         segnet_reference(x, w, relu_decoder=False)),
    )
    return _first(iter(wrong), actual, segnet_reference(x, w))


def explain_wiring(wiring, completed: bool = True) -> str | None:
    """Why the unpoolings' indices are wrong: ``wiring[k]`` is the pooling (0: the first, 1: the second; None: no
    pooling's) whose indices the k-th max_unpool call received. Right: [1, 0]. ``completed``: the forward pass ended
    (a pass that crashed may have made fewer calls than it meant to)."""
    if not isinstance(wiring, (list, tuple)):
        return None
    names = {0: "the first pooling's (level 1)", 1: "the second pooling's (level 2)", None: "no pooling's"}
    order = ("first", "second")
    for number, (got, right) in enumerate(zip(wiring, (1, 0))):
        if got != right:
            received = "; ".join(f"the {order[k]} max_unpool received {names.get(w)} indices"
                                 for k, w in enumerate(wiring[:2]))
            return (f"unpooling indices from the wrong layer: {received}. The decoder undoes the poolings in reverse "
                    "order, so the first unpooling uses the indices of the last pooling (level 2) and the second "
                    "those of the first (level 1)")
    if completed and len(wiring) != 2:
        return (f"SegNetToy called max_unpool {len(wiring)} times in its forward pass; it unpools twice, once per "
                "pooling, in the reverse order")
    return None


# --- U-Net: the centre crop of a skip connection -----------------------------------------------------------------


def crop_reference(skip: torch.Tensor, size) -> torch.Tensor:
    """The centre (h, w) = ``size`` of skip (N, C, H, W): top = (H - h) // 2, left = (W - w) // 2 (an odd difference
    leaves the extra row at the bottom and the extra column at the right)."""
    h, w = (int(s) for s in size)
    top, left = (skip.shape[-2] - h) // 2, (skip.shape[-1] - w) // 2
    return skip[..., top:top + h, left:left + w]


def explain_crop(actual, skip: torch.Tensor, size) -> str | None:
    """The known wrong crop that ``actual`` is, or None."""
    h, w = (int(s) for s in size)
    big_h, big_w = skip.shape[-2:]

    def at(top, left):
        return skip[..., top:top + h, left:left + w]

    wrong = (
        ("skip connection cropped from the top-left corner: crop its centre, (H - h) // 2 rows from the top and "
         "(W - w) // 2 columns from the left, so that it lines up with the upsampled map", at(0, 0)),
        ("skip connection cropped from the bottom-right corner: crop its centre", at(big_h - h, big_w - w)),
        ("skip connection cropped off by one on an odd difference: top = (H - h) // 2 rows, rounded down (the extra "
         "row goes at the bottom, the extra column at the right)", at((big_h - h + 1) // 2, (big_w - w + 1) // 2)),
        ("height and width swapped: size is (h, w), rows first", skip[..., (big_h - w) // 2:(big_h - w) // 2 + w,
                                                                 (big_w - h) // 2:(big_w - h) // 2 + h]),
    )
    return _first(iter(wrong), actual, crop_reference(skip, size))
