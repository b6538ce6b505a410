"""Checks for the modern-blocks lab (lab 6) that recognise the usual mistakes and name them.

Lab 6 asks for five ``nn.Module`` classes with a prescribed interface: an inception module with 1x1 reductions,
a basic and a bottleneck residual block with projection shortcuts, a depthwise separable convolution and a
squeeze-and-excitation block. A module cannot cross from the answer sandbox (see :mod:`course_lib.grading.wire`),
so the lab's preamble builds the student's module there, fills every parameter and buffer with values drawn from
a seed and the parameter's *name* (:func:`grader_value`, the same code in the sandbox and here), and sends back
the names and shapes of its parameters and buffers and its outputs, in evaluation and in training mode.

This module holds the trusted side:

* the parameters each block must have (``*_parameters``: name -> shape) and buffers (``*_buffers``);
* the right forward passes in float64 (``*_forward``), computed from the weights the grader draws itself from the
  prescribed names, with keywords that make them wrong in the known ways;
* ``explain_*_structure``: what a wrong set of parameters reveals (a shortcut missing its projection, a depthwise
  convolution without groups, a naive inception module without reductions, ...), read from the shapes and from
  how far the parameter count is off;
* ``explain_*_output``: the known wrong forward pass whose output a student's output matches (BN after the
  addition, SE without the sigmoid, branches concatenated in another order, stride on the wrong convolution...).

Shapes: inputs ``x`` (N, C, H, W); every block keeps the grid except the residual blocks and the separable
convolution with ``stride`` s, which give ``floor((H - 1) / s) + 1`` rows (a 3x3 convolution with padding 1).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F

from .checks import matches

__all__ = [
    "FILL_SOURCE",
    "BN_EPS",
    "grader_value",
    "grader_weights",
    "strided",
    "inception_parameters",
    "inception_forward",
    "explain_inception_structure",
    "explain_inception_output",
    "residual_needs_projection",
    "basic_parameters",
    "basic_forward",
    "bottleneck_parameters",
    "bottleneck_forward",
    "explain_residual_structure",
    "explain_basic_output",
    "explain_bottleneck_output",
    "separable_parameters",
    "separable_forward",
    "explain_separable_structure",
    "explain_separable_output",
    "se_parameters",
    "se_forward",
    "explain_se_structure",
    "explain_se_output",
    "batchnorm_buffers",
]

BN_EPS = 1e-5  # nn.BatchNorm2d's default

# How the grader fills a module: each value drawn from the seed and the parameter's name, so that the sandbox (which
# fills the student's module) and the grader (which computes the right output) draw the same numbers. Run as the
# lab's preamble and here; it needs torch only. BN's gamma near 1, its running variance positive; convolution and
# linear weights scaled by 1/sqrt(fan-in), so that outputs stay of order 1 through a block.
FILL_SOURCE = '''\
def grader_value(name, shape, seed):
    """The value the grader gives the parameter or buffer called name (float64, of the given shape)."""
    import zlib

    generator = torch.Generator().manual_seed((int(seed) * 1_000_003 + zlib.crc32(name.encode())) % 2**62)
    shape = tuple(int(s) for s in shape)
    leaf = name.rsplit(".", 1)[-1]
    if leaf == "running_var":
        return 0.5 + torch.rand(shape, generator=generator, dtype=torch.float64)
    if leaf == "running_mean":
        return 0.3 * torch.randn(shape, generator=generator, dtype=torch.float64)
    if leaf == "weight" and len(shape) == 1:  # a BatchNorm's gamma
        return 0.5 + torch.rand(shape, generator=generator, dtype=torch.float64)
    if leaf == "bias" or len(shape) < 2:
        return 0.2 * torch.randn(shape, generator=generator, dtype=torch.float64)
    fan_in = 1
    for size in shape[1:]:
        fan_in *= size
    return torch.randn(shape, generator=generator, dtype=torch.float64) * (2.0 / max(fan_in, 1)) ** 0.5
'''

_namespace: dict = {"torch": torch}
exec(FILL_SOURCE, _namespace)  # noqa: S102 - our own constant: the same function the preamble defines
grader_value = _namespace["grader_value"]


def grader_weights(shapes: dict[str, tuple[int, ...]], seed: int) -> dict[str, torch.Tensor]:
    """The weights the grader gives a module with these parameter and buffer ``shapes``: each drawn by
    :func:`grader_value`, rounded to float32 as the student's float32 module holds it, then float64."""
    return {name: grader_value(name, shape, seed).float().double() for name, shape in shapes.items()}


def strided(size: int, stride: int) -> int:
    """A side after a 3x3 (or kxk, padding k // 2, odd k) convolution of that stride: floor((size - 1) / s) + 1."""
    return (size - 1) // stride + 1


def batchnorm_buffers(parameters: dict[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
    """The running statistics of every BatchNorm2d among ``parameters`` (a 1-d ``<prefix>.weight`` whose prefix
    names a BN: ``bn1``, ``shortcut.1``)."""
    buffers = {}
    for name, shape in parameters.items():
        prefix, leaf = name.rsplit(".", 1)
        if leaf == "weight" and len(shape) == 1:
            buffers[f"{prefix}.running_mean"] = shape
            buffers[f"{prefix}.running_var"] = shape
    return buffers


def _bn(h: torch.Tensor, w: dict, prefix: str, train: bool) -> torch.Tensor:
    """BatchNorm2d ``prefix`` of the weights ``w``: batch statistics (biased variance) in training, running ones in
    evaluation."""
    if train:
        return F.batch_norm(h, None, None, w[f"{prefix}.weight"], w[f"{prefix}.bias"], training=True, eps=BN_EPS)
    return F.batch_norm(h, w[f"{prefix}.running_mean"], w[f"{prefix}.running_var"], w[f"{prefix}.weight"],
                        w[f"{prefix}.bias"], training=False, eps=BN_EPS)


def _first(wrong: Iterator[tuple[str, torch.Tensor | None]], actual, right: torch.Tensor) -> str | None:
    """The description of the first wrong output that ``actual`` matches and the right one does not."""
    for description, output in wrong:
        try:
            if output is not None and matches(actual, output) and not matches(output, right):
                return description
        except RuntimeError:  # a wrong variant that cannot run on this case (a shape that does not fit)
            continue
    return None


def _shape_text(shape) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ")"


def _count(shapes: dict[str, tuple[int, ...]]) -> int:
    return sum(math.prod(s) for s in shapes.values())


# --- inception -----------------------------------------------------------------------------------------------

INCEPTION_BRANCHES = ("1x1", "3x3", "5x5", "pool")


def inception_parameters(in_channels, c1, c3_reduce, c3, c5_reduce, c5, pool_proj) -> dict[str, tuple[int, ...]]:
    """The parameters of the lab's InceptionBlock: name -> shape (every convolution with a bias, no BN)."""
    convs = {
        "branch1": (c1, in_channels, 1, 1),
        "branch3_reduce": (c3_reduce, in_channels, 1, 1),
        "branch3": (c3, c3_reduce, 3, 3),
        "branch5_reduce": (c5_reduce, in_channels, 1, 1),
        "branch5": (c5, c5_reduce, 5, 5),
        "branch_pool": (pool_proj, in_channels, 1, 1),
    }
    shapes = {}
    for name, shape in convs.items():
        shapes[f"{name}.weight"] = shape
        shapes[f"{name}.bias"] = (shape[0],)
    return shapes


def inception_forward(x, w, order=(0, 1, 2, 3), relu_reduce=True, relu_out=True, pool="max", pool_first=True,
                      relu_pool=True) -> torch.Tensor:
    """The lab's inception module in float64 with weights ``w`` (name -> tensor); the keywords make it wrong.

    Right: four branches of the input x (N, C, H, W), each conv followed by a ReLU, concatenated along the channels
    in the order 1x1, 3x3, 5x5, pool: (N, c1 + c3 + c5 + pool_proj, H, W).
    """
    x = x.double()

    def conv(name, h, relu):
        out = F.conv2d(h, w[f"{name}.weight"], w[f"{name}.bias"], padding=w[f"{name}.weight"].shape[-1] // 2)
        return F.relu(out) if relu else out

    def pooled(h):
        if pool == "max":
            return F.max_pool2d(h, 3, stride=1, padding=1)
        if pool == "max_zero_pad":
            return F.max_pool2d(F.pad(h, (1, 1, 1, 1)), 3, stride=1)
        return F.avg_pool2d(h, 3, stride=1, padding=1)

    b1 = conv("branch1", x, relu_out)
    b3 = conv("branch3", conv("branch3_reduce", x, relu_reduce), relu_out)
    b5 = conv("branch5", conv("branch5_reduce", x, relu_reduce), relu_out)
    if pool_first:
        bp = conv("branch_pool", pooled(x), relu_out and relu_pool)
    else:
        bp = pooled(conv("branch_pool", x, relu_out and relu_pool))
    branches = (b1, b3, b5, bp)
    return torch.cat([branches[i] for i in order], dim=1)


def _inception_slips(x, w) -> Iterator[tuple[str, torch.Tensor]]:
    yield ("no ReLU after the 1x1 reductions: each reduction is a convolution of its own, followed by a ReLU "
           "(it is what makes the reduction more than a linear map folded into the next convolution)"), \
        inception_forward(x, w, relu_reduce=False)
    yield "no ReLU at the end of the branches: every branch ends with a ReLU", inception_forward(x, w, relu_out=False)
    yield "no ReLU at all: every convolution of the module is followed by a ReLU", \
        inception_forward(x, w, relu_reduce=False, relu_out=False)
    yield "no ReLU after the pool branch's 1x1 projection", inception_forward(x, w, relu_pool=False)
    yield ("average pooling in the pool branch: it is a 3x3 max-pool, stride 1, padding 1"), \
        inception_forward(x, w, pool="avg")
    yield ("the max-pool is padded with zeros (F.pad, then pooling): nn.MaxPool2d(3, stride=1, padding=1) pads with "
           "-inf, so a border pixel is the maximum of its real neighbours only"), inception_forward(x, w, pool="max_zero_pad")
    yield ("the pool branch projects before it pools: it is max-pool first, then the 1x1 convolution "
           "(pool, then project: the projection sets the branch's channels)"), inception_forward(x, w, pool_first=False)
    for order in itertools.permutations(range(4)):
        if order != (0, 1, 2, 3):
            names = ", ".join(INCEPTION_BRANCHES[i] for i in order)
            yield (f"the branches are concatenated in the order {names}; the lab's order is 1x1, 3x3, 5x5, pool "
                   "(torch.cat([b1, b3, b5, b_pool], dim=1), as GoogLeNet's filter concatenation)"), \
                inception_forward(x, w, order=order)


def explain_inception_output(actual, x, w) -> str | None:
    """The known wrong inception forward pass that ``actual`` matches, or None."""
    return _first(_inception_slips(x, w), actual, inception_forward(x, w))


def explain_inception_structure(args, shapes: dict[str, tuple[int, ...]]) -> list[str]:
    """What the parameter ``shapes`` (name -> shape) of an InceptionBlock(*args) reveal: known mistakes, in words."""
    in_channels, c1, c3_reduce, c3, c5_reduce, c5, pool_proj = args
    expected = inception_parameters(*args)
    slips = []
    if not any(n.startswith("branch_pool.") for n in shapes):
        slips.append(f"the pool branch has no 1x1 projection (branch_pool): pooled, the input keeps its {in_channels} "
                     f"channels, and the module's output would grow to c1 + c3 + c5 + {in_channels} channels; the "
                     f"projection brings them down to pool_proj = {pool_proj} (expected {pool_proj * (in_channels + 1):,} "
                     "parameters there)")
    for branch, reduce, k, c, r in (("branch3", "branch3_reduce", 3, c3, c3_reduce), ("branch5", "branch5_reduce", 5, c5, c5_reduce)):
        got = shapes.get(f"{branch}.weight")
        if got is not None and len(got) == 4 and got[1] == in_channels and not any(n.startswith(reduce + ".") for n in shapes):
            saved = math.prod(got) - (r * in_channels + c * r * k * k)
            slips.append(f"no 1x1 reduction before the {k}x{k} convolution ({branch} reads the {in_channels} input channels "
                         f"directly: the naive module, {saved:+,} weights against the reduced one); {reduce} is a 1x1 "
                         f"convolution {in_channels} -> {r}, and {branch} reads its {r} channels")
        if got is not None and len(got) == 4 and tuple(got[2:]) != (k, k):
            extra = " (torchvision's GoogLeNet has that slip; the paper's is 5x5)" if k == 5 and got[2] == 3 else ""
            slips.append(f"{branch} has {got[2]}x{got[3]} kernels; the lab's is {k}x{k}{extra}")
    missing_bias = [n[:-5] for n in expected if n.endswith(".bias") and n not in shapes and n[:-5] + ".weight" in shapes]
    if missing_bias:
        slips.append(f"no bias in {', '.join(missing_bias)} (bias=False?): this lab's inception module has no BN, so "
                     "each convolution keeps its bias")
    extra = [n for n in shapes if n not in expected and not n.startswith(tuple(f"{b}." for b in ("branch3", "branch5")))]
    if any(len(shapes[n]) == 1 for n in extra):
        slips.append("vectors that are no convolution's bias (batch norm? this lab's inception module has none: "
                     "convolution with a bias, then ReLU)")
    return slips


# --- residual blocks -----------------------------------------------------------------------------------------


def residual_needs_projection(in_channels: int, out_channels: int, stride: int) -> bool:
    """A residual block's shortcut projects (1x1 convolution + BN) exactly when the shape changes."""
    return stride != 1 or in_channels != out_channels


def _with_bn(convs: dict[str, tuple[int, ...]], bns: dict[str, int]) -> dict[str, tuple[int, ...]]:
    shapes = {f"{name}.weight": shape for name, shape in convs.items()}
    for name, channels in bns.items():
        shapes[f"{name}.weight"] = (channels,)
        shapes[f"{name}.bias"] = (channels,)
    return shapes


def _projection(in_channels, out_channels, stride) -> dict[str, tuple[int, ...]]:
    if not residual_needs_projection(in_channels, out_channels, stride):
        return {}
    return {"shortcut.0.weight": (out_channels, in_channels, 1, 1), "shortcut.1.weight": (out_channels,),
            "shortcut.1.bias": (out_channels,)}


def basic_parameters(in_channels, out_channels, stride) -> dict[str, tuple[int, ...]]:
    """The parameters of the lab's BasicBlock (convolutions without bias, each followed by a BN), in order."""
    shapes = {
        "conv1.weight": (out_channels, in_channels, 3, 3), "bn1.weight": (out_channels,), "bn1.bias": (out_channels,),
        "conv2.weight": (out_channels, out_channels, 3, 3), "bn2.weight": (out_channels,), "bn2.bias": (out_channels,),
    }
    return {**shapes, **_projection(in_channels, out_channels, stride)}


def bottleneck_parameters(in_channels, mid_channels, out_channels, stride) -> dict[str, tuple[int, ...]]:
    """The parameters of the lab's BottleneckBlock: 1x1 in -> mid, 3x3 mid -> mid (stride), 1x1 mid -> out."""
    shapes = {
        "conv1.weight": (mid_channels, in_channels, 1, 1), "bn1.weight": (mid_channels,), "bn1.bias": (mid_channels,),
        "conv2.weight": (mid_channels, mid_channels, 3, 3), "bn2.weight": (mid_channels,), "bn2.bias": (mid_channels,),
        "conv3.weight": (out_channels, mid_channels, 1, 1), "bn3.weight": (out_channels,), "bn3.bias": (out_channels,),
    }
    return {**shapes, **_projection(in_channels, out_channels, stride)}


def _shortcut(x, w, stride, train, use_bn=True):
    if "shortcut.0.weight" not in w:
        return x
    out = F.conv2d(x, w["shortcut.0.weight"], stride=stride)
    return _bn(out, w, "shortcut.1", train) if use_bn else out


def _finish(residual, x, w, stride, train, bn_last, add="after_bn", final_relu=True, shortcut=True,
            shortcut_bn=True) -> torch.Tensor:
    """The end of a post-activation block: BN ``bn_last`` of ``residual``, plus the shortcut, then ReLU.

    ``add``: "after_bn" (right), "before_bn" (BN after the addition), "after_relu" (ReLU before the addition, none
    after it), "after_relu_twice" (a ReLU before the addition and another after it)."""
    skip = _shortcut(x, w, stride, train, shortcut_bn) if shortcut else 0.0
    if add == "before_bn":
        out = _bn(residual + skip, w, bn_last, train)
        return F.relu(out) if final_relu else out
    out = _bn(residual, w, bn_last, train)
    if add == "after_relu":
        return F.relu(out) + skip
    if add == "after_relu_twice":
        return F.relu(F.relu(out) + skip)
    out = out + skip
    return F.relu(out) if final_relu else out


def basic_forward(x, w, stride, train, stride_on="conv1", relu_inside=True, **finish) -> torch.Tensor:
    """The lab's BasicBlock in float64: ReLU(BN2(conv2(ReLU(BN1(conv1_stride(x))))) + shortcut(x)); BN in training
    (batch statistics) or evaluation (running statistics) mode. The keywords make it wrong (see :func:`_finish`)."""
    x = x.double()
    h = F.conv2d(x, w["conv1.weight"], stride=stride if stride_on == "conv1" else 1, padding=1)
    h = _bn(h, w, "bn1", train)
    h = F.relu(h) if relu_inside else h
    h = F.conv2d(h, w["conv2.weight"], stride=stride if stride_on == "conv2" else 1, padding=1)
    return _finish(h, x, w, stride, train, "bn2", **finish)


def bottleneck_forward(x, w, stride, train, stride_on="conv2", relus=(True, True), **finish) -> torch.Tensor:
    """The lab's BottleneckBlock in float64, the stride on the 3x3 convolution (torchvision's "ResNet v1.5"):
    ReLU(BN3(conv3(ReLU(BN2(conv2_stride(ReLU(BN1(conv1(x))))))) + shortcut(x)). ``stride_on`` "conv1" is the
    paper's v1 (stride on the first 1x1), "conv3" a stride on the last 1x1."""
    x = x.double()
    h = F.conv2d(x, w["conv1.weight"], stride=stride if stride_on == "conv1" else 1)
    h = _bn(h, w, "bn1", train)
    h = F.relu(h) if relus[0] else h
    h = F.conv2d(h, w["conv2.weight"], stride=stride if stride_on == "conv2" else 1, padding=1)
    h = _bn(h, w, "bn2", train)
    h = F.relu(h) if relus[1] else h
    h = F.conv2d(h, w["conv3.weight"], stride=stride if stride_on == "conv3" else 1)
    return _finish(h, x, w, stride, train, "bn3", **finish)


_ADD_SLIPS = (
    ("BN after the addition: the block's last BN normalizes F(x) alone, before the shortcut is added "
     "(out = bn2(conv2(h)); out = out + shortcut(x); ReLU): normalizing the sum rescales the identity path too, "
     "so the block can no longer pass x through unchanged", dict(add="before_bn")),
    ("ReLU before the addition, none after it: the ReLU comes after the addition, ReLU(F(x) + shortcut(x)); a ReLU "
     "on F(x) alone keeps the residual from ever being negative", dict(add="after_relu")),
    ("a ReLU before the addition as well as after it: only ReLU(F(x) + shortcut(x)); F(x) itself ends with BN, so "
     "that the residual can be negative", dict(add="after_relu_twice")),
    ("no ReLU after the addition: the block ends with ReLU(F(x) + shortcut(x))", dict(final_relu=False)),
    ("nothing is added: the shortcut is missing from forward (out = out + shortcut(x), or + x when shortcut is None)",
     dict(shortcut=False)),
    ("the projection shortcut skips its BN in forward: shortcut(x) is the 1x1 convolution followed by its BN",
     dict(shortcut_bn=False)),
)


def _residual_slips(forward, x, w, stride, train, stride_slips) -> Iterator[tuple[str, torch.Tensor]]:
    for description, keywords in _ADD_SLIPS:
        if keywords.get("shortcut_bn") is False and "shortcut.0.weight" not in w:
            continue
        yield description, forward(x, w, stride, train, **keywords)
    for description, keywords in stride_slips:
        if stride != 1:
            yield description, forward(x, w, stride, train, **keywords)


def explain_basic_output(actual, x, w, stride, train) -> str | None:
    """The known wrong BasicBlock forward pass that ``actual`` matches, or None."""
    slips = [("the stride is on the second 3x3 convolution: it belongs on the first (conv1), as the projection's",
              dict(stride_on="conv2"))]

    def wrong():
        yield from _residual_slips(basic_forward, x, w, stride, train, slips)
        yield "no ReLU between the two convolutions (after bn1)", basic_forward(x, w, stride, train, relu_inside=False)

    return _first(wrong(), actual, basic_forward(x, w, stride, train))


def explain_bottleneck_output(actual, x, w, stride, train) -> str | None:
    """The known wrong BottleneckBlock forward pass that ``actual`` matches, or None."""
    slips = [("the stride is on the first 1x1 convolution (the 2015 paper's ResNet v1); this lab, like torchvision "
              "(ResNet v1.5), puts it on the 3x3 convolution, conv2", dict(stride_on="conv1")),
             ("the stride is on the last 1x1 convolution: it belongs on the 3x3 convolution, conv2", dict(stride_on="conv3"))]

    def wrong():
        yield from _residual_slips(bottleneck_forward, x, w, stride, train, slips)
        yield "no ReLU after bn1", bottleneck_forward(x, w, stride, train, relus=(False, True))
        yield "no ReLU after bn2", bottleneck_forward(x, w, stride, train, relus=(True, False))

    return _first(wrong(), actual, bottleneck_forward(x, w, stride, train))


def explain_residual_structure(kind: str, args, shapes: dict[str, tuple[int, ...]]) -> list[str]:
    """What the parameter ``shapes`` of a BasicBlock(*args) (``kind`` "basic") or BottleneckBlock(*args)
    ("bottleneck") reveal: known mistakes, in words."""
    if kind == "basic":
        in_channels, out_channels, stride = args
        expected = basic_parameters(*args)
    else:
        in_channels, _, out_channels, stride = args
        expected = bottleneck_parameters(*args)
    projects = residual_needs_projection(in_channels, out_channels, stride)
    has_conv = "shortcut.0.weight" in shapes
    has_shortcut = any(n.startswith("shortcut.") for n in shapes)
    slips = []
    why = []
    if stride != 1:
        why.append(f"stride {stride} shrinks the grid")
    if in_channels != out_channels:
        why.append(f"the channels change from {in_channels} to {out_channels}")
    if projects and not has_shortcut:
        params = in_channels * out_channels + 2 * out_channels
        slips.append(f"the shortcut is missing its projection: {' and '.join(why)}, so x no longer has F(x)'s shape "
                     f"and cannot be added to it; the shortcut must be a 1x1 convolution {in_channels} -> {out_channels} "
                     f"with stride {stride} and no bias, followed by a BN: nn.Sequential(nn.Conv2d(...), "
                     f"nn.BatchNorm2d({out_channels})), {params:,} parameters")
    elif not projects and has_shortcut:
        slips.append(f"a projection where the shape does not change (stride 1, {in_channels} channels in and out): the "
                     "shortcut is then the identity, self.shortcut = None, and forward adds x itself")
    elif projects and has_conv and "shortcut.1.weight" not in shapes:
        slips.append(f"the projection has no BN: it is a 1x1 convolution followed by nn.BatchNorm2d({out_channels}) "
                     "(2 x out_channels parameters)")
    if has_conv and shapes["shortcut.0.weight"][2:] != (1, 1):
        k = shapes["shortcut.0.weight"]
        slips.append(f"the projection has {k[2]}x{k[3]} kernels: it is a 1x1 convolution (only the stride and the channels change)")
    if projects and "shortcut.0.bias" in shapes:
        slips.append("the projection's convolution has a bias: its BN's beta replaces it (bias=False)")
    biased = [n[:-5] for n in shapes if n.startswith("conv") and n.endswith(".bias")]
    if biased:
        slips.append(f"{', '.join(biased)} {'has a bias' if len(biased) == 1 else 'have biases'}: a BN follows every "
                     "convolution of the block and its beta replaces the bias (bias=False)")
    missing_bn = sorted({n.split(".")[0] for n in expected if n.startswith("bn")} - {n.split(".")[0] for n in shapes})
    if missing_bn:
        slips.append(f"no {', '.join(missing_bn)}: every convolution of the block is followed by its BatchNorm2d")
    if kind == "bottleneck":
        _, mid, _, _ = args
        conv3 = shapes.get("conv3.weight")
        if conv3 is not None and conv3[0] == mid * 4 != out_channels:
            slips.append(f"conv3 has {conv3[0]} = 4 x mid_channels filters: this lab gives out_channels explicitly "
                         f"({out_channels}); do not multiply by an expansion yourself")
        conv2 = shapes.get("conv2.weight")
        if conv2 is not None and tuple(conv2[2:]) != (3, 3):
            slips.append(f"conv2 has {conv2[2]}x{conv2[3]} kernels: the bottleneck is 1x1, 3x3, 1x1")
    total, right = _count(shapes), _count(expected)
    if projects and not has_shortcut and total - right == -(in_channels * out_channels + 2 * out_channels):
        slips[0] += " (your count is short by exactly that)"
    return slips


# --- depthwise separable convolution --------------------------------------------------------------------------


def separable_parameters(in_channels, out_channels, kernel_size, stride) -> dict[str, tuple[int, ...]]:
    """The parameters of the lab's DepthwiseSeparableConv (MobileNet v1's block): a kxk depthwise convolution (one
    filter per channel), BN, ReLU, a 1x1 pointwise convolution, BN, ReLU; no bias."""
    return {
        "depthwise.weight": (in_channels, 1, kernel_size, kernel_size), "bn1.weight": (in_channels,),
        "bn1.bias": (in_channels,), "pointwise.weight": (out_channels, in_channels, 1, 1),
        "bn2.weight": (out_channels,), "bn2.bias": (out_channels,),
    }


def separable_forward(x, w, stride, train, stride_on="depthwise", relus=(True, True), order="bn_relu") -> torch.Tensor:
    """The lab's DepthwiseSeparableConv in float64: ReLU(BN2(pointwise(ReLU(BN1(depthwise_stride(x))))))."""
    x = x.double()
    dw = w["depthwise.weight"]
    k = dw.shape[-1]
    h = F.conv2d(x, dw, stride=stride if stride_on == "depthwise" else 1, padding=k // 2, groups=dw.shape[0])
    if order == "relu_bn":
        h = _bn(F.relu(h), w, "bn1", train)
    else:
        h = _bn(h, w, "bn1", train)
        h = F.relu(h) if relus[0] else h
    h = F.conv2d(h, w["pointwise.weight"], stride=stride if stride_on == "pointwise" else 1)
    if order == "relu_bn":
        return _bn(F.relu(h), w, "bn2", train)
    h = _bn(h, w, "bn2", train)
    return F.relu(h) if relus[1] else h


def explain_separable_output(actual, x, w, stride, train) -> str | None:
    """The known wrong DepthwiseSeparableConv forward pass that ``actual`` matches, or None."""

    def wrong():
        yield ("no ReLU between the depthwise and the pointwise convolutions: MobileNet follows each of the two with "
               "BN and ReLU"), separable_forward(x, w, stride, train, relus=(False, True))
        yield "no ReLU at the end (after bn2)", separable_forward(x, w, stride, train, relus=(True, False))
        yield "no ReLU at all: BN and ReLU follow each convolution", separable_forward(x, w, stride, train, relus=(False, False))
        yield "ReLU before BN: each convolution is followed by BN, then ReLU", separable_forward(x, w, stride, train, order="relu_bn")
        if stride != 1:
            yield ("the stride is on the pointwise (1x1) convolution: it belongs on the depthwise one, which looks "
                   "at the neighbourhood; a strided 1x1 convolution simply skips pixels"), \
                separable_forward(x, w, stride, train, stride_on="pointwise")

    return _first(wrong(), actual, separable_forward(x, w, stride, train))


def explain_separable_structure(args, shapes: dict[str, tuple[int, ...]]) -> list[str]:
    """What the parameter ``shapes`` of a DepthwiseSeparableConv(*args) reveal: known mistakes, in words."""
    in_channels, out_channels, k, _ = args
    slips = []
    dw = shapes.get("depthwise.weight")
    if dw is not None and len(dw) == 4 and dw[0] == in_channels and dw[1] == in_channels and in_channels > 1:
        slips.append(f"the depthwise convolution has no groups: its weight is {_shape_text(dw)}, one {k}x{k} filter over "
                     f"all {in_channels} channels per output channel ({math.prod(dw):,} weights, a full convolution), "
                     f"instead of {_shape_text((in_channels, 1, k, k))}, one filter per channel ({in_channels * k * k:,} "
                     f"weights): nn.Conv2d(in_channels, in_channels, kernel_size, stride, padding, "
                     f"groups=in_channels, bias=False)")
    elif dw is not None and len(dw) == 4 and dw[1] == 1 and dw[0] == out_channels != in_channels:
        slips.append(f"the depthwise convolution outputs out_channels ({out_channels}): it keeps the {in_channels} "
                     "channels (one filter per input channel); the pointwise 1x1 convolution changes their number")
    pw = shapes.get("pointwise.weight")
    if pw is not None and len(pw) == 4 and tuple(pw[2:]) != (1, 1):
        slips.append(f"the pointwise convolution has {pw[2]}x{pw[3]} kernels: it is 1x1 (it mixes the channels, the "
                     "depthwise one looked at the neighbourhood)")
    biased = [n[:-5] for n in shapes if n in ("depthwise.bias", "pointwise.bias")]
    if biased:
        slips.append(f"{' and '.join(biased)} with a bias: a BN follows each convolution and its beta replaces the "
                     "bias (bias=False)")
    missing_bn = [b for b in ("bn1", "bn2") if f"{b}.weight" not in shapes]
    if missing_bn:
        slips.append(f"no {' and '.join(missing_bn)}: BN (then ReLU) follows each of the two convolutions")
    return slips


# --- squeeze-and-excitation -----------------------------------------------------------------------------------


def se_parameters(channels, reduction) -> dict[str, tuple[int, ...]]:
    """The parameters of the lab's SqueezeExcitation: two nn.Linear, C -> C // r -> C, with biases."""
    hidden = channels // reduction
    return {"fc1.weight": (hidden, channels), "fc1.bias": (hidden,), "fc2.weight": (channels, hidden),
            "fc2.bias": (channels,)}


def se_forward(x, w, squeeze="mean", relu=True, gate="sigmoid") -> torch.Tensor:
    """The lab's squeeze-and-excitation in float64: s = sigmoid(fc2(ReLU(fc1(mean over H, W of x)))), y = x * s."""
    x = x.double()
    if squeeze == "mean":
        z = x.mean(dim=(2, 3))
    elif squeeze == "max":
        z = x.amax(dim=(2, 3))
    else:
        z = x.sum(dim=(2, 3))
    h = F.linear(z, w["fc1.weight"], w["fc1.bias"])
    h = F.relu(h) if relu else h
    s = F.linear(h, w["fc2.weight"], w["fc2.bias"])
    if gate == "sigmoid":
        s = torch.sigmoid(s)
    elif gate == "softmax":
        s = torch.softmax(s, dim=1)
    elif gate == "tanh":
        s = torch.tanh(s)
    elif gate == "relu":
        s = F.relu(s)
    return x * s[:, :, None, None]


def explain_se_output(actual, x, w) -> str | None:
    """The known wrong squeeze-and-excitation forward pass that ``actual`` matches, or None."""

    def wrong():
        yield ("the excitation has no sigmoid: the gate s = sigmoid(fc2(ReLU(fc1(z)))) lies in (0, 1) and rescales each "
               "channel; without the sigmoid a channel can be multiplied by any number, negative ones too"), \
            se_forward(x, w, gate=None)
        yield ("softmax instead of the sigmoid: softmax makes the channels compete for a total of 1 (each gate about "
               "1 / C); the sigmoid gates each channel on its own, in (0, 1)"), se_forward(x, w, gate="softmax")
        yield "tanh instead of the sigmoid: the gate lies in (0, 1)", se_forward(x, w, gate="tanh")
        yield "ReLU instead of the sigmoid for the gate: the gate lies in (0, 1)", se_forward(x, w, gate="relu")
        yield "no ReLU between fc1 and fc2", se_forward(x, w, relu=False)
        yield ("the squeeze takes the maximum over H and W: it is global average pooling, the mean over H and W"), \
            se_forward(x, w, squeeze="max")
        yield ("the squeeze sums over H and W: it is the mean (global average pooling), x.mean(dim=(2, 3))"), \
            se_forward(x, w, squeeze="sum")

    return _first(wrong(), actual, se_forward(x, w))


def explain_se_structure(args, shapes: dict[str, tuple[int, ...]]) -> list[str]:
    """What the parameter ``shapes`` of a SqueezeExcitation(*args) reveal: known mistakes, in words."""
    channels, reduction = args
    hidden = channels // reduction
    slips = []
    fc1 = shapes.get("fc1.weight")
    if fc1 is not None and len(fc1) == 4:
        slips.append("fc1 and fc2 are 1x1 convolutions (as in torchvision): this lab asks for nn.Linear layers "
                     "applied to the squeezed vector z of shape (N, C)")
    elif fc1 is not None and len(fc1) == 2 and fc1[0] == channels * reduction:
        slips.append(f"fc1 widens to C x r = {channels * reduction} units: the reduction divides, C // r = {hidden}")
    elif fc1 is not None and len(fc1) == 2 and fc1[0] == reduction != hidden:
        slips.append(f"fc1 has r = {reduction} units: the bottleneck has C // r = {hidden}")
    missing_bias = [n[:-5] for n in ("fc1.bias", "fc2.bias") if n not in shapes and n[:-5] + ".weight" in shapes]
    if missing_bias:
        slips.append(f"no bias in {' and '.join(missing_bias)}: the two fully connected layers have biases")
    return slips
