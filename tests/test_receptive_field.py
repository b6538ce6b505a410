"""course_lib.analysis.receptive_field: the recursion, reading it from models, and measuring it.

Three independent routes must agree: the recursion (:func:`receptive_field`), a brute-force
reference here that follows every layer's window down to the input pixels, and the
gradient-based measurement (:func:`empirical_receptive_field`) on real nn.Modules.
"""

from __future__ import annotations

import random

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from course_lib.analysis.receptive_field import (
    ReceptiveField,
    _MeanPool2d,
    empirical_receptive_field,
    receptive_field,
    receptive_field_of,
)

# PyTorch warns that padding='same' with an even kernel copies the input; the asymmetric padding is the point here.
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel:UserWarning")

# --- the recursion ---------------------------------------------------------------------------------


def test_quiz_two_3x3_convs_stride_2_give_7():
    assert receptive_field([(3, 2), (3, 2)])[-1].size == 7
    assert receptive_field([(3, 2, 1, 1), (3, 1, 1, 1)])[-1] == ReceptiveField(size=7, jump=2, start=0.0)
    assert receptive_field([(3, 1), (3, 2)])[-1].size == 5  # the stride only widens the *next* layer's field


def test_vgg_stacks_of_3x3():
    """Two 3x3 convs see as much as one 5x5, three as one 7x7."""
    assert [f.size for f in receptive_field([(3, 1)] * 3)] == [3, 5, 7]
    assert receptive_field([(5, 1)])[-1].size == 5 and receptive_field([(7, 1)])[-1].size == 7


def test_dilation_and_start_by_hand():
    fields = receptive_field([(3, 1, 1), (3, 1, 2), (3, 1, 4)])
    assert [f.size for f in fields] == [3, 7, 15]  # dilations 1, 2, 4: exponential growth
    # AlexNet's first layer: 11x11, stride 4, pad 2 -> unit 0 centred on pixel 5 - 2 = 3
    assert receptive_field([(11, 4, 1, 2)]) == [ReceptiveField(11, 4, 3.0)]
    assert receptive_field([(2, 2)]) == [ReceptiveField(2, 2, 0.5)]  # a 2x2 pool: between pixels 0 and 1
    assert receptive_field([]) == []


def _brute_force(layers, unit: int) -> tuple[int, int]:
    """First and last input pixel that output ``unit`` depends on, ignoring image borders.

    Unit i of a layer reads inputs i*s - p + t*d, t = 0..k-1, of the layer before.
    """
    indices = {unit}
    for k, s, d, p in reversed(layers):
        indices = {i * s - p + t * d for i in indices for t in range(k)}
    return min(indices), max(indices)


def _random_stacks(count: int, seed: int = 0):
    rng = random.Random(seed)
    return [
        [(rng.choice([1, 2, 3, 5]), rng.choice([1, 2, 3]), rng.choice([1, 2, 3]), rng.choice([0, 1, 2]))
         for _ in range(rng.randint(1, 5))]
        for _ in range(count)
    ]


@pytest.mark.parametrize("layers", _random_stacks(40), ids=str)
def test_recursion_equals_brute_force(layers):
    for depth, field in enumerate(receptive_field(layers), start=1):
        for unit in (0, 1, 3):
            first, last = _brute_force(layers[:depth], unit)
            assert field.size == last - first + 1
            assert field.start + unit * field.jump == (first + last) / 2


@pytest.mark.parametrize(
    ("layers", "match"),
    [
        ([(3,)], r"layers\[0\]"),
        ([(3, 1), (3, 0)], r"layers\[1\]"),
        ([(3, 1, 0)], r"layers\[0\]"),
        ([(3, 1, 1, -1)], r"layers\[0\]"),
        ([(3, 1, 1, 0, 5)], r"layers\[0\]"),
        ([(3.0, 1)], r"layers\[0\]"),
        ("33", "layers"),
        (3, "layers"),
    ],
    ids=["short", "stride0", "dilation0", "negative-pad", "long", "float", "string", "int"],
)
def test_receptive_field_bad_layers(layers, match):
    with pytest.raises(ValueError, match=match):
        receptive_field(layers)


# --- models ----------------------------------------------------------------------------------------


class DuckConv(nn.Module):
    """A from-scratch conv layer (like course_lib's Conv2d): a 4-D weight and the hyper-parameters."""

    def __init__(self, c_in, c_out, kernel_size, stride=1, padding=0, dilation=1):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(c_out, c_in, kernel_size, kernel_size))
        self.kernel_size, self.stride, self.padding, self.dilation = kernel_size, stride, padding, dilation

    def forward(self, x):
        return F.conv2d(x, self.weight, None, self.stride, self.padding, self.dilation)


def _conv(c_in, c_out, k, **kw):
    return nn.Conv2d(c_in, c_out, k, **kw)


def _models():
    """(id, model, input shape, expected (height, width) field size)."""
    torch.manual_seed(0)
    vgg = [_conv(1, 2, 3, padding=1), nn.ReLU(), _conv(2, 2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
           _conv(2, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(), _conv(3, 3, 3, padding=1), nn.MaxPool2d(2)]
    alexnet = nn.Sequential(
        nn.Sequential(_conv(3, 2, 11, stride=4, padding=2), nn.ReLU(), nn.LocalResponseNorm(2), nn.MaxPool2d(3, 2)),
        nn.Sequential(_conv(2, 2, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2)),
        nn.Sequential(*[m for _ in range(3) for m in (_conv(2, 2, 3, padding=1), nn.ReLU())], nn.MaxPool2d(3, 2)),
    )
    cases = [
        ("quiz", nn.Sequential(_conv(1, 2, 3, stride=2, padding=1), nn.ReLU(), _conv(2, 2, 3, padding=1)),
         (1, 1, 33, 33), (7, 7)),
        ("vgg", nn.Sequential(*vgg), (1, 1, 40, 40), (16, 16)),
        ("dilated", nn.Sequential(_conv(1, 2, 3), nn.ELU(), _conv(2, 2, 3, dilation=2, padding=2), nn.GELU(),
                                  _conv(2, 1, 3, dilation=4)), (2, 1, 31, 29), (15, 15)),
        ("lenet", nn.Sequential(_conv(1, 6, 5), nn.Tanh(), nn.AvgPool2d(2), _conv(6, 4, 5), nn.Tanh(),
                                nn.AvgPool2d(2)), (1, 1, 32, 32), (16, 16)),
        ("alexnet", alexnet, (1, 3, 227, 227), (195, 195)),
        ("non-square", nn.Sequential(
            _conv(2, 2, (3, 5), stride=(2, 1), dilation=(1, 2), padding=(1, 0)), nn.LeakyReLU(),
            nn.AvgPool2d((2, 3), stride=(2, 1), padding=(1, 0)), nn.MaxPool2d(3, 2, ceil_mode=True),
            _conv(2, 1, (1, 3), stride=(1, 2))), (1, 2, 50, 41), (13, 17)),
        ("same-lp-ceil", nn.Sequential(
            _conv(1, 2, 4, padding="same"), nn.Sigmoid(), nn.LPPool2d(2, 3, stride=2),
            _conv(2, 2, 3, dilation=2, padding="same"), nn.MaxPool2d(3, stride=2, padding=1, dilation=2, ceil_mode=True),
            nn.Dropout2d(0.3)), (1, 1, 36, 38), (22, 22)),
        ("duck-conv", nn.Sequential(DuckConv(1, 2, 3, stride=2), nn.ReLU(), DuckConv(2, 2, 3, padding=1, dilation=3)),
         (1, 1, 30, 30), (15, 15)),
    ]
    return [pytest.param(model, shape, size, id=name) for name, model, shape, size in cases]


@pytest.mark.parametrize(("model", "shape", "size"), _models())
def test_receptive_field_of_matches_hand_values_output_size_and_gradients(model, shape, size):
    field = receptive_field_of(model, shape)
    assert field.size == size
    with torch.no_grad():
        assert field.output_size == tuple(model.eval()(torch.zeros(shape)).shape[2:])
    assert empirical_receptive_field(model, shape) == size


def test_receptive_field_of_reads_all_hyper_parameters():
    """The same numbers as the recursion on the tuples written by hand, per axis."""
    model = nn.Sequential(_conv(1, 1, (3, 5), stride=(2, 1), dilation=(1, 2), padding=(1, 0)),
                          nn.MaxPool2d(3, 2, padding=1, dilation=2))
    field = receptive_field_of(model, (1, 12, 20))
    height = receptive_field([(3, 2, 1, 1), (3, 2, 2, 1)])[-1]
    width = receptive_field([(5, 1, 2, 0), (3, 2, 2, 1)])[-1]
    assert field.size == (height.size, width.size) and field.jump == (height.jump, width.jump)
    assert field.start == (height.start, width.start)


def _support_box(model, shape, unit):
    """Input rows/cols that output ``unit`` depends on, by a gradient on a copy with all-ones weights."""
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(1.0)
    x = torch.ones(shape, dtype=torch.float64, requires_grad=True)
    model.double()(x)[0, :, unit[0], unit[1]].sum().backward()
    support = x.grad[0].ne(0).any(0)
    rows, cols = support.any(1).nonzero().flatten(), support.any(0).nonzero().flatten()
    return (rows[0].item(), rows[-1].item()), (cols[0].item(), cols[-1].item())


@pytest.mark.parametrize(
    "model",
    [
        nn.Sequential(_conv(1, 1, 3, stride=2, padding=1), _conv(1, 1, 3, padding=1)),
        nn.Sequential(_conv(1, 1, 4, padding="same"), nn.AvgPool2d(2), _conv(1, 1, (3, 2), stride=(1, 3), dilation=2)),
        nn.Sequential(_conv(1, 1, 5, stride=3, padding=2), nn.AvgPool2d(3, 2, padding=1), _conv(1, 1, 3)),
    ],
    ids=["quiz", "same", "pad"],
)
def test_start_locates_the_field(model):
    """Unit i is centred on input pixel start + i * jump."""
    shape = (1, 1, 41, 43)
    field = receptive_field_of(model, shape)
    unit = (field.output_size[0] // 2, field.output_size[1] // 2)
    for axis, (first, last) in enumerate(_support_box(model, shape, unit)):
        assert last - first + 1 == field.size[axis]
        assert (first + last) / 2 == field.start[axis] + unit[axis] * field.jump[axis]


@pytest.mark.parametrize(
    "pool",
    [nn.MaxPool2d(2), nn.MaxPool2d(3, 2, ceil_mode=True), nn.MaxPool2d((3, 2), (2, 3), (1, 1), dilation=(2, 1)),
     nn.MaxPool2d(3, 2, padding=1, dilation=2, ceil_mode=True), nn.MaxPool2d(2, 3, ceil_mode=True)],
    ids=str,
)
@pytest.mark.parametrize("size", [(7, 7), (8, 11), (12, 9)], ids=str)
def test_mean_pool_replacement_keeps_the_output_shape(pool, size):
    x = torch.rand(2, 3, *size, dtype=torch.float64)
    assert _MeanPool2d(pool)(x).shape == pool(x).shape


def test_empirical_on_a_residual_model_and_leaves_the_model_alone():
    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(_conv(2, 2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 1, 1), nn.BatchNorm2d(2))

        def forward(self, x):
            return x + self.body(x)

    model = nn.Sequential(_conv(1, 2, 3, padding=1), Residual()).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    # 3x3 conv (3), then the body's 3x3 conv and 3x3 max pool (3 + 2 + 2); the skip path sees less
    assert empirical_receptive_field(model, (1, 1, 21, 21)) == (7, 7)
    assert model.training and isinstance(model[1].body[2], nn.MaxPool2d)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, before[key], atol=0, rtol=0)
    with pytest.raises(ValueError, match="'1'.*Residual"):
        receptive_field_of(model, (1, 1, 21, 21))


def test_empirical_is_clipped_by_a_small_input():
    model = nn.Sequential(*[_conv(1, 1, 3, padding=1) for _ in range(5)])  # field 11
    assert receptive_field_of(model, (1, 1, 7, 7)).size == (11, 11)
    assert empirical_receptive_field(model, (1, 1, 7, 7)) == (7, 7)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: receptive_field_of(nn.Sequential(_conv(1, 1, 3), nn.Flatten(), nn.Linear(9, 2)), (1, 1, 5, 5)),
         "'1'.*Flatten"),
        (lambda: receptive_field_of(nn.Sequential(nn.Sequential(_conv(1, 1, 3)), nn.AdaptiveAvgPool2d(1)),
                                    (1, 5, 5)), "'1'.*AdaptiveAvgPool2d"),
        (lambda: receptive_field_of(_conv(1, 1, 3), (1, 1, 5, 5)), "model must be an nn.Sequential"),
        (lambda: receptive_field_of(nn.Sequential(_conv(1, 1, 3), _conv(1, 1, 3), _conv(1, 1, 3)), (1, 1, 5, 5)),
         "'2' does not fit input_shape.*H"),
        (lambda: receptive_field_of(nn.Sequential(_conv(1, 1, (1, 3))), (1, 1, 5, 2)), "'0' does not fit.*W"),
        (lambda: receptive_field_of(nn.Sequential(_conv(1, 1, 3)), (5, 5)), "input_shape"),
        (lambda: receptive_field_of(nn.Sequential(_conv(1, 1, 3)), (1, 1, 0, 5)), "input_shape"),
        (lambda: empirical_receptive_field(nn.Sequential(nn.Flatten(), nn.Linear(25, 2)), (1, 1, 5, 5)),
         "model must output"),
        (lambda: empirical_receptive_field("model", (1, 1, 5, 5)), "model"),
    ],
    ids=["flatten", "adaptive", "not-sequential", "too-small-H", "too-small-W", "shape-rank", "shape-zero",
         "not-4d-output", "not-module"],
)
def test_bad_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.cuda
def test_cuda_empirical_receptive_field():
    torch.manual_seed(0)
    model = nn.Sequential(_conv(1, 2, 3, stride=2, padding=1), nn.ReLU(), nn.MaxPool2d(2), _conv(2, 2, 3, dilation=2))
    expected = receptive_field_of(model, (1, 1, 40, 40)).size
    assert empirical_receptive_field(model.cuda(), (1, 1, 40, 40)) == expected == (15, 15)
    assert next(model.parameters()).is_cuda


# --- graph_receptive_field: models with branches ----------------------------------------------------

from course_lib.analysis.receptive_field import (  # noqa: E402
    UnsupportedReceptiveField,
    graph_receptive_field,
)


@pytest.mark.parametrize(("model", "shape", "size"), _models())
def test_graph_field_equals_the_chain_calculator_on_chains(model, shape, size):
    chain = receptive_field_of(model, shape)
    graph = graph_receptive_field(model, shape)
    assert (graph.size, graph.jump, graph.start, graph.output_size) == (
        chain.size, chain.jump, chain.start, chain.output_size)
    assert not graph.global_context


class InceptionLike(nn.Module):
    """1x1, 1x1-3x3, 1x1-5x5 and 3x3 max-pool-1x1 branches, concatenated along channels, after a stem."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(_conv(1, 4, 3, stride=2, padding=1), nn.ReLU())
        self.b1 = _conv(4, 2, 1)
        self.b3 = nn.Sequential(_conv(4, 2, 1), nn.ReLU(), _conv(2, 2, 3, padding=1))
        self.b5 = nn.Sequential(_conv(4, 2, 1), nn.ReLU(), _conv(2, 2, 5, padding=2))
        self.bp = nn.Sequential(nn.MaxPool2d(3, 1, padding=1), _conv(4, 2, 1))

    def forward(self, x):
        x = self.stem(x)
        return torch.cat([self.b1(x), self.b3(x), self.b5(x), self.bp(x)], dim=1)


class ResidualProjection(nn.Module):
    """conv3x3/2 - BN - ReLU - conv3x3 plus a 1x1/2 projection shortcut, then ReLU; twice."""

    def __init__(self, c_in=1, c_out=3):
        super().__init__()
        self.body = nn.Sequential(_conv(c_in, c_out, 3, stride=2, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(),
                                  _conv(c_out, c_out, 3, padding=1), nn.BatchNorm2d(c_out))
        self.shortcut = nn.Sequential(_conv(c_in, c_out, 1, stride=2), nn.BatchNorm2d(c_out))

    def forward(self, x):
        return F.relu(self.body(x) + self.shortcut(x))


class DenseBlock(nn.Module):
    """Each layer (BN-ReLU-conv3x3) reads the concatenation of all earlier maps."""

    def __init__(self, c_in=1, growth=2, layers=3):
        super().__init__()
        self.layers = nn.ModuleList(
            nn.Sequential(nn.BatchNorm2d(c_in + i * growth), nn.ReLU(), _conv(c_in + i * growth, growth, 3, padding=1))
            for i in range(layers))

    def forward(self, x):
        features = [x]
        for layer in self.layers:
            features.append(layer(torch.cat(features, 1)))
        return torch.cat(features, 1)


class ShiftedBranches(nn.Module):
    """Two branches whose fields are centred differently: a 5x5 conv and a 3x3 conv padded on one side only."""

    def __init__(self):
        super().__init__()
        self.wide = _conv(1, 1, 5, padding=2)
        self.narrow = _conv(1, 1, 3, padding=0)

    def forward(self, x):
        return self.wide(x)[:, :, 1:-1, 1:-1] + self.narrow(x)


def _branched():
    torch.manual_seed(0)
    return [
        pytest.param(InceptionLike(), (1, 1, 33, 33), (11, 11), id="inception"),  # 3 + 4 * 2: the 5x5 branch
        pytest.param(nn.Sequential(ResidualProjection(), ResidualProjection(3, 3)), (1, 1, 64, 64), (19, 19),
                     id="residual-projection"),
        pytest.param(DenseBlock(), (1, 1, 21, 21), (7, 7), id="dense-block"),
        pytest.param(nn.Sequential(_conv(1, 2, 3, stride=2), DenseBlock(2), nn.AvgPool2d(2)), (1, 1, 41, 41),
                     (17, 17), id="dense-after-stride"),
        pytest.param(ShiftedBranches(), (1, 1, 25, 25), (5, 5), id="shifted-branches"),
    ]


@pytest.mark.parametrize(("model", "shape", "size"), _branched())
def test_graph_field_of_branched_models_matches_the_gradients(model, shape, size):
    field = graph_receptive_field(model, shape)
    assert field.size == size
    assert empirical_receptive_field(model, shape) == size
    with torch.no_grad():
        assert field.output_size == tuple(model.eval()(torch.zeros(shape)).shape[2:])
    assert not field.global_context


def test_graph_field_start_locates_a_branched_field():
    """Unit i is centred on start + i * jump, also where two branches are centred differently."""
    torch.manual_seed(0)
    model = nn.Sequential(_conv(1, 1, 3, stride=2, padding=1), ShiftedBranches(), nn.AvgPool2d(2))
    shape = (1, 1, 45, 45)
    field = graph_receptive_field(model, shape)
    unit = (field.output_size[0] // 2, field.output_size[1] // 2)
    for axis, (first, last) in enumerate(_support_box(model, shape, unit)):
        assert last - first + 1 == field.size[axis]
        assert (first + last) / 2 == field.start[axis] + unit[axis] * field.jump[axis]


def test_graph_field_of_course_lib_resnet20_matches_the_gradients():
    from course_lib.models import create_model

    torch.manual_seed(0)
    model = create_model("resnet20", num_classes=10)  # option-A shortcuts: x[:, :, ::2, ::2] and zero channels
    field = graph_receptive_field(model, (1, 3, 32, 32))
    # stem 3x3 (3), then 9 blocks of two 3x3 convs at jumps 1, 2, 4 (the strided conv at the old jump):
    # 3 + 2 * (3 * 2 * 1) + ... = 81, larger than the 32x32 input
    assert field.size == (81, 81) and field.jump == (4, 4) and field.output_size == (8, 8)
    assert not field.global_context
    # on an input large enough to hold it, the gradients see the same field
    class Features(nn.Module):  # the last map before global pooling, for the gradient measurement
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, x):
            return self.net.forward_features(x)

    big = (1, 3, 96, 96)
    assert graph_receptive_field(model, big).size == empirical_receptive_field(Features(model), big) == (81, 81)


class SqueezeExcite(nn.Module):
    def __init__(self, c=2):
        super().__init__()
        self.conv = _conv(1, c, 3, padding=1)
        self.gate = nn.Sequential(nn.AdaptiveAvgPool2d(1), _conv(c, c, 1), nn.Sigmoid())

    def forward(self, x):
        x = self.conv(x)
        return x * self.gate(x)


def test_a_global_gate_sets_global_context_and_keeps_the_local_size():
    model = nn.Sequential(SqueezeExcite(), _conv(2, 1, 3, padding=1))
    field = graph_receptive_field(model, (1, 1, 15, 15))
    assert field.size == (5, 5) and field.global_context
    assert empirical_receptive_field(model, (1, 1, 15, 15)) == (15, 15)  # the gate reaches every pixel


def test_the_field_is_the_map_before_global_pooling_and_the_model_is_left_alone():
    torch.manual_seed(0)
    model = nn.Sequential(_conv(1, 2, 5, stride=2), nn.ReLU(), _conv(2, 4, 3), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), nn.Linear(4, 3)).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    field = graph_receptive_field(model, (1, 1, 31, 31))
    assert field.size == (9, 9) and field.output_size == (12, 12)
    assert model.training and next(model.parameters()).device.type == "cpu"
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, before[key], atol=0, rtol=0)
    # the field of the last spatial map can exceed the input
    deep = nn.Sequential(*[_conv(1, 1, 3, padding=1) for _ in range(20)], nn.AdaptiveAvgPool2d(1), nn.Flatten())
    assert graph_receptive_field(deep, (1, 1, 16, 16)).size == (41, 41)


@pytest.mark.parametrize(
    ("model", "match"),
    [
        (nn.Sequential(_conv(1, 2, 3), nn.ConvTranspose2d(2, 1, 2, stride=2)), "transposed"),
        (nn.Sequential(_conv(1, 2, 3), nn.Upsample(scale_factor=2, mode="bilinear")), "upsample"),
        (nn.Sequential(nn.Flatten(), nn.Linear(64, 2)), "flattens its input"),
        (nn.Sequential(_conv(1, 2, 3), nn.AdaptiveAvgPool2d(4)), "resamples"),
    ],
    ids=["transposed", "upsample", "mlp", "adaptive-unequal"],
)
def test_graph_field_refuses_what_it_cannot_compute(model, match):
    with pytest.raises(UnsupportedReceptiveField, match=match):
        graph_receptive_field(model, (1, 1, 8, 8))


def test_graph_field_refuses_merging_different_grids_and_spatial_concatenation():
    class TwoGrids(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = _conv(1, 1, 3, stride=2, padding=1), nn.Sequential(nn.MaxPool2d(2), _conv(1, 1, 1))

        def forward(self, x):  # both 8x8 from 16x16, jumps 2 and 2: fine; then a jump-1 map upsampled: not
            return self.a(x) + self.b(x)

    assert graph_receptive_field(TwoGrids(), (1, 1, 16, 16)).jump == (2, 2)

    class Mixed(nn.Module):
        """Two 4x4 maps of an 8x8 input: a 2x2 pool (jump 2) and a 5x5 valid conv (jump 1). Not one grid."""

        def __init__(self):
            super().__init__()
            self.conv = _conv(1, 1, 5)

        def forward(self, x):
            return F.avg_pool2d(x, 2) + self.conv(x)

    with pytest.raises(UnsupportedReceptiveField, match="different jumps"):
        graph_receptive_field(Mixed(), (1, 1, 8, 8))

    class SpatialCat(nn.Module):
        def forward(self, x):
            return torch.cat([x, x], dim=3)

    with pytest.raises(UnsupportedReceptiveField, match="spatial axis"):
        graph_receptive_field(SpatialCat(), (1, 1, 8, 8))
    with pytest.raises(ValueError, match="model must be an nn.Module"):
        graph_receptive_field("resnet", (1, 1, 8, 8))
    with pytest.raises(ValueError, match="input_shape"):
        graph_receptive_field(nn.Sequential(_conv(1, 1, 3)), (8, 8))
