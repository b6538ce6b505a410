"""Lab 3, normalization and dropout: its graded tests as specifications (see course_lib.grading.spec).

The student writes six functions in the style of a layer's forward and backward
pass: ``batchnorm_forward`` returns ``(out, new_running_mean, new_running_var,
cache)`` and ``batchnorm_backward(dout, cache)`` returns ``(dx, dgamma, dbeta)``;
``layernorm_forward`` and ``groupnorm_forward`` return ``out``;
``dropout_forward(x, p, training, generator)`` returns ``(out, cache)`` and
``dropout_backward(dout, cache)`` returns ``dx``. A cache cannot cross the wire
(:mod:`course_lib.grading.wire`), so the tests of batch norm and dropout call
helpers of the lab's preamble (:data:`PREAMBLE`, trusted code run before the
answer cells, in the sandbox and in the student's notebook alike) that run the
forward pass (and the backward pass with its cache) on copies of the arguments
and send back plain tensors, plus the names of the arguments the student's code
changed in place.

The normalizations are judged against PyTorch in float64, their mistakes named
by :mod:`course_lib.grading.normalization`. Dropout is judged by statistics
(:func:`~course_lib.grading.normalization.dropout_problem`), whatever random
numbers the answer draws: the helper seeds PyTorch's default generator and
passes a ``torch.Generator`` seeded alike. Hidden tests draw shapes, settings and
modes from the submission's seed.
"""

from __future__ import annotations

import numpy as np
import torch

from ..checks import raised, tensor_message
from ..forbid import forbid_calls
from ..normalization import (
    LIBRARY_FUNCTIONS,
    NO_SHORTCUTS,
    NORMALIZATION_OPS,
    REFERENCE_FUNCTIONS,
    batchnorm_gradients,
    batchnorm_reference,
    dropout_gradient_problem,
    dropout_problem,
    explain_batchnorm_dbeta,
    explain_batchnorm_dgamma,
    explain_batchnorm_dx,
    explain_batchnorm_out,
    explain_changed_in_eval,
    explain_groupnorm,
    explain_layernorm,
    explain_running_mean,
    explain_running_var,
    groupnorm_reference,
    layernorm_reference,
)
from ..spec import Case, LabSpec, Test, fixed_cases

__all__ = ["SPEC", "PREAMBLE", "HELPERS"]

RULES = (
    "Lab 3 asks you to write batch norm (forward with running statistics, and backward), layer norm, group norm "
    "and inverted dropout yourself, with tensor maths. Not allowed in an answer: the library's normalizations and "
    "dropout (F.batch_norm, F.layer_norm, F.group_norm, F.instance_norm, F.dropout and their nn modules, "
    "torch.batch_norm, torch.dropout, ...), autograd (.backward(), torch.autograd, requires_grad, torch.func), "
    "torch.ops / torch._C, and course_lib (its batch_norm, batch_norm_backward, layer_norm, group_norm and dropout "
    "are the reference answers: not importable when graded, and an answer copied from them is shown to your "
    "instructor). Allowed: mean, var, sum, sqrt, rsqrt, reshape, view, indexing, torch.rand, torch.bernoulli, "
    "loops."
)

_AUTOGRAD = "autograd computes the gradients for you"
_LIBRARY = "the library's own normalization"
_HELPER = "the grader's helper, defined by the setup cell: an answer has no use for it (does it change what the " \
          "grader receives?)"
# The preamble's helpers, which the tests call; an answer that names one is flagged.
HELPERS = ("run_batchnorm", "run_batchnorm_backward", "run_dropout", "run_dropout_backward", "_plain", "_changed",
           "_returned", "_seeded")
_FILES = "reads a file: the answers come from the tensors received, nothing else"
# Static scan (course_lib.grading.scan): a name or attribute an answer may not mention, and why.
FORBIDDEN = {
    "backward": f"{_AUTOGRAD} (Tensor.backward)", "autograd": f"{_AUTOGRAD} (torch.autograd)",
    "requires_grad": f"{_AUTOGRAD} (a tensor that records its graph)",
    "requires_grad_": f"{_AUTOGRAD} (a tensor that records its graph)", "grad_fn": f"{_AUTOGRAD} (the recorded graph)",
    "torch.func": f"{_AUTOGRAD} (torch.func)", "functorch": f"{_AUTOGRAD} (functorch)",
    "vjp": f"{_AUTOGRAD} (a vector-Jacobian product)", "jacobian": f"{_AUTOGRAD} (a Jacobian)",
    "*batch_norm*": f"{_LIBRARY} (batch norm)", "*batchnorm*": f"{_LIBRARY} (nn.BatchNorm1d/2d/3d)",
    "*layer_norm*": f"{_LIBRARY} (layer norm)", "*layernorm*": f"{_LIBRARY} (nn.LayerNorm)",
    "*group_norm*": f"{_LIBRARY} (group norm)", "*groupnorm*": f"{_LIBRARY} (nn.GroupNorm)",
    "*instance_norm*": f"{_LIBRARY} (instance norm)", "*instancenorm*": f"{_LIBRARY} (nn.InstanceNorm2d)",
    "*dropout*": "the library's dropout (F.dropout, nn.Dropout, torch.dropout, ...)",
    "course_lib": "course_lib's own normalizations and dropout (the reference answers; not importable when graded)",
    **{name: _HELPER for name in HELPERS},
    "open": _FILES, "pathlib": _FILES, "glob": _FILES, "os.listdir": _FILES, "os.walk": _FILES, "os.scandir": _FILES,
    "torch.load": _FILES, "np.load": _FILES, "numpy.load": _FILES,
}

PREAMBLE = '''\
import torch
import torch.nn.functional as F


def _plain(value):
    """What can reach the grader: a tensor (detached) or None as it is, a tuple or list item by item,
    anything else as a short description such as "<a dict>"."""
    if value is None:
        return None
    if isinstance(value, torch.Tensor):
        return value.detach()
    if isinstance(value, (tuple, list)):
        return tuple(_plain(item) for item in value)
    return "<a " + type(value).__name__ + ">"


def _returned(value):
    """How many things a function returned, in words: "a tuple of 3", "a Tensor"."""
    if isinstance(value, (tuple, list)):
        return "a " + type(value).__name__ + " of " + str(len(value))
    return "a " + type(value).__name__


def _changed(originals, copies):
    """The names of the arguments whose copy the answer changed in place."""
    return [name for name, tensor in originals.items() if not torch.equal(tensor, copies[name])]


def run_batchnorm(x, gamma, beta, running_mean, running_var, training, momentum, eps):
    """batchnorm_forward on copies of the arguments: its out and new running statistics (the cache stays
    here), and which arguments it changed in place."""
    originals = {"x": x, "gamma": gamma, "beta": beta, "running_mean": running_mean, "running_var": running_var}
    copies = {name: tensor.clone() for name, tensor in originals.items()}
    result = batchnorm_forward(copies["x"], copies["gamma"], copies["beta"], copies["running_mean"],
                               copies["running_var"], training, momentum, eps)
    if not isinstance(result, (tuple, list)) or len(result) != 4:
        return {"error": "batchnorm_forward should return (out, running_mean, running_var, cache), got "
                         + _returned(result)}
    return {"out": _plain(result[0]), "running_mean": _plain(result[1]), "running_var": _plain(result[2]),
            "changed": _changed(originals, copies)}


def run_batchnorm_backward(x, gamma, beta, dout, eps):
    """batchnorm_forward in training mode (fresh running statistics), then batchnorm_backward with its cache:
    the forward's out and the gradients."""
    zeros, ones = torch.zeros_like(gamma), torch.ones_like(gamma)
    forward = batchnorm_forward(x.clone(), gamma.clone(), beta.clone(), zeros, ones, True, 0.1, eps)
    if not isinstance(forward, (tuple, list)) or len(forward) != 4:
        return {"error": "batchnorm_forward should return (out, running_mean, running_var, cache), got "
                         + _returned(forward)}
    gradients = batchnorm_backward(dout.clone(), forward[3])
    if not isinstance(gradients, (tuple, list)) or len(gradients) != 3:
        return {"out": _plain(forward[0]),
                "error": "batchnorm_backward should return (dx, dgamma, dbeta), got " + _returned(gradients)}
    return {"out": _plain(forward[0]), "dx": _plain(gradients[0]), "dgamma": _plain(gradients[1]),
            "dbeta": _plain(gradients[2])}


def _seeded(seed):
    """PyTorch's default generator seeded with seed, and a new torch.Generator seeded alike."""
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def run_dropout(x, p, training, seeds):
    """dropout_forward once per seed, each time on a copy of x: the outs, and whether x was changed in place."""
    outs, changed = [], []
    for seed in seeds:
        copy = x.clone()
        result = dropout_forward(copy, p, training, _seeded(seed))
        if not isinstance(result, (tuple, list)) or len(result) != 2:
            return {"error": "dropout_forward should return (out, cache), got " + _returned(result)}
        outs.append(_plain(result[0]))
        changed = changed or _changed({"x": x}, {"x": copy})
    return {"outs": outs, "changed": changed}


def run_dropout_backward(x, p, training, seed, dout):
    """dropout_forward on a copy of x, then dropout_backward with its cache: the forward's out and dx."""
    result = dropout_forward(x.clone(), p, training, _seeded(seed))
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        return {"error": "dropout_forward should return (out, cache), got " + _returned(result)}
    return {"out": _plain(result[0]), "dx": _plain(dropout_backward(dout.clone(), result[1]))}
'''


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _combine(parts: dict[str, str | None]) -> str | None:
    """One message for several checked outputs: which are wrong (and which right), then each message."""
    wrong = [name for name, message in parts.items() if message is not None]
    if not wrong:
        return None
    if len(parts) == 1:
        return parts[wrong[0]]
    right = [name for name in parts if name not in wrong]
    headline = f"{' and '.join(wrong)} {_verb(wrong)} wrong"
    if right:
        headline += f" ({' and '.join(right)} {_verb(right)} right)"
    return headline + ".\n" + "\n".join(parts[name] for name in wrong)


def _verb(names) -> str:
    return "are" if len(names) > 1 or names[0].endswith("statistics") else "is"


def _unpack(value, keys, function) -> dict | str:
    """The helper's dict, or what is wrong with it (an error the helper reported, or a malformed reply)."""
    if not isinstance(value, dict):
        return f"the grader's helper for {function} returned a {type(value).__name__}, not its description"
    if isinstance(value.get("error"), str):
        return value["error"]
    missing = [key for key in keys if key not in value]
    if missing:
        return f"the grader's helper for {function} did not describe {', '.join(missing)}"
    return value


_NEW_TENSORS = {
    "batchnorm_forward": "x - mean, not x -= mean; (1 - momentum) * running_mean, not running_mean.mul_(...)",
    "dropout_forward": "x * mask, not x *= mask or x.mul_(mask)",
}


def _changed_message(function: str, changed) -> str | None:
    if not changed:
        return None
    names = ", ".join(str(name) for name in changed)
    return (f"{function} changed its argument(s) {names} in place: compute with new tensors "
            f"({_NEW_TENSORS[function]}) and return them, so that the caller's tensors stay as they were")


def _broadcast_hint(error: str, ndim: int) -> str:
    """A hint for an error raised while broadcasting a per-channel statistic over (N, C, H, W)."""
    if ndim == 4 and ("must match the size of tensor" in error or "shape" in error and "broadcast" in error):
        return ("\nLikely cause: a per-channel tensor of shape (C,) (a mean, a variance, gamma or beta) combined with "
                "x of shape (N, C, H, W): view it as (1, C, 1, 1), or reduce with keepdim=True")
    return ""


# --- batch norm forward ------------------------------------------------------------------------------


def _bn_case(shape, *, training=True, momentum=0.1, eps=1e-5, seed=0) -> Case:
    """float64 x with a mean and a scale of its own per channel, random gamma, beta and running statistics."""
    gen = _generator(seed)
    channels = shape[1]
    view = (1, channels) + (1,) * (len(shape) - 2)
    loc = 3 * torch.randn(channels, generator=gen, dtype=torch.float64)
    scale = 0.5 + 2.5 * torch.rand(channels, generator=gen, dtype=torch.float64)
    x = loc.view(view) + scale.view(view) * torch.randn(*shape, generator=gen, dtype=torch.float64)
    gamma = 1 + 0.5 * torch.randn(channels, generator=gen, dtype=torch.float64)
    beta = torch.randn(channels, generator=gen, dtype=torch.float64)
    running_mean = torch.randn(channels, generator=gen, dtype=torch.float64)
    running_var = 0.5 + 2 * torch.rand(channels, generator=gen, dtype=torch.float64)
    mode = "training" if training else "eval"
    label = f"x of shape {tuple(shape)}, {mode} mode, momentum={momentum:g}, eps={eps:g}"
    return Case((x, gamma, beta, running_mean, running_var, training, momentum, eps), {}, label)


_ONE_EXAMPLE = ("\nLikely cause: batch statistics computed in eval mode, on a batch of one example (one image at a "
                "time, as a deployed network sees them): in eval use the running statistics only, and compute the "
                "batch's mean, variance and m / (m - 1) in training only")


def _one_example(x, training) -> bool:
    return not training and x.numel() // x.shape[1] == 1


def _judge_bn(parts=("out", "running_mean", "running_var")):
    """A judge of batchnorm_forward (through run_batchnorm) that checks the outputs named in ``parts``."""

    def judge(case: Case, value, error) -> str | None:
        x, gamma, beta, running_mean, running_var, training, momentum, eps = case.args
        if error is not None:
            return raised(error) + (_ONE_EXAMPLE if _one_example(x, training) else _broadcast_hint(error, x.ndim))
        got = _unpack(value, ("out", "running_mean", "running_var", "changed"), "batchnorm_forward")
        if isinstance(got, str):
            return got
        changed = _changed_message("batchnorm_forward", got["changed"])
        if changed is not None:
            return changed
        out, new_mean, new_var = batchnorm_reference(*case.args)
        messages = {}
        if "out" in parts:
            messages["out"] = tensor_message(got["out"], out, "out",
                                             explain=lambda actual: explain_batchnorm_out(actual, *case.args))
        if training:
            if "running_mean" in parts:
                messages["running_mean"] = tensor_message(
                    got["running_mean"], new_mean, "the new running_mean",
                    explain=lambda actual: explain_running_mean(actual, x, running_mean, momentum))
            if "running_var" in parts:
                messages["running_var"] = tensor_message(
                    got["running_var"], new_var, "the new running_var",
                    explain=lambda actual: explain_running_var(actual, x, running_var, momentum))
        elif "running_mean" in parts:
            same_mean = tensor_message(got["running_mean"], new_mean, "running_mean")
            same_var = tensor_message(got["running_var"], new_var, "running_var")
            if same_mean is not None or same_var is not None:
                messages["the running statistics"] = (
                    "the running statistics returned in eval mode differ from the ones received.\nLikely cause: "
                    + explain_changed_in_eval(got["running_mean"], got["running_var"], x, running_mean, running_var,
                                              momentum))
        return _combine(messages)

    return judge


def _hidden_bn(seed: int, count: int = 6) -> list[Case]:
    rng = np.random.default_rng(seed)
    cases = []
    for number in range(count):
        training = number % 3 != 2  # two cases in three train, every third evaluates (maybe one example)
        if rng.integers(0, 2):
            shape = (int(rng.integers(2 if training else 1, 17)), int(rng.integers(1, 9)))
        else:
            shape = (int(rng.integers(1, 6)), int(rng.integers(1, 7)), int(rng.integers(2, 7)), int(rng.integers(2, 7)))
        momentum = float(rng.choice([0.1, round(float(rng.uniform(0.02, 0.4)), 3)]))
        eps = float(rng.choice([1e-5, 1e-3, 0.1]))
        cases.append(_bn_case(shape, training=training, momentum=momentum, eps=eps, seed=int(rng.integers(2**31))))
    return cases


BN_FEATURES = [_bn_case((8, 5), seed=1), _bn_case((16, 3), eps=0.1, seed=2)]
BN_CHANNELS = [_bn_case((4, 3, 5, 6), seed=3), _bn_case((2, 4, 3, 5), eps=0.5, seed=4)]
BN_RUNNING = [_bn_case((8, 5), momentum=0.1, seed=5), _bn_case((4, 3, 5, 6), momentum=0.2, seed=6)]
BN_EVAL = [_bn_case((8, 5), training=False, seed=7), _bn_case((4, 3, 5, 6), training=False, eps=0.1, seed=8),
           _bn_case((1, 5), training=False, seed=9)]


# --- batch norm backward -----------------------------------------------------------------------------


def _bn_backward_case(shape, *, eps=1e-5, seed=0) -> Case:
    forward = _bn_case(shape, eps=eps, seed=seed)
    x, gamma, beta = forward.args[:3]
    dout = torch.randn(*shape, generator=_generator(seed + 1000), dtype=torch.float64)
    return Case((x, gamma, beta, dout, eps), {}, f"x and dout of shape {tuple(shape)}, training mode, eps={eps:g}")


GRADIENTS = ("dx", "dgamma", "dbeta")
_GRADIENT_WHAT = {"dx": "dx (the gradient with respect to x)", "dgamma": "dgamma (the gradient with respect to gamma)",
                  "dbeta": "dbeta (the gradient with respect to beta)"}


def _judge_bn_backward(parts=GRADIENTS):
    """A judge of batchnorm_backward (through run_batchnorm_backward) that checks the gradients in ``parts``
    (the others may be anything, e.g. None while they are not written yet)."""

    def judge(case: Case, value, error) -> str | None:
        x, gamma, beta, dout, eps = case.args
        if error is not None:
            return raised(error) + _broadcast_hint(error, x.ndim)
        got = _unpack(value, ("out", *GRADIENTS), "batchnorm_backward")
        if isinstance(got, str):
            return got
        out = batchnorm_reference(x, gamma, beta, torch.zeros_like(gamma), torch.ones_like(gamma), True, 0.1, eps)[0]
        if tensor_message(got["out"], out, "out") is not None:
            return ("batchnorm_forward's output in training mode is wrong, so its cache probably is too: make "
                    "test_bn_train_features and test_bn_train_channels pass first")
        expected = dict(zip(GRADIENTS, batchnorm_gradients(x, gamma, beta, dout, eps)))
        explain = {
            "dx": lambda actual: explain_batchnorm_dx(actual, x, gamma, dout, eps),
            "dgamma": lambda actual: explain_batchnorm_dgamma(actual, x, dout, eps),
            "dbeta": lambda actual: explain_batchnorm_dbeta(actual, x, dout),
        }
        return _combine({name: tensor_message(got[name], expected[name], _GRADIENT_WHAT[name], explain[name])
                         for name in parts})

    return judge


def _hidden_bn_backward(seed: int, count: int = 5) -> list[Case]:
    rng = np.random.default_rng(seed)
    cases = []
    for _ in range(count):
        if rng.integers(0, 2):
            shape = (int(rng.integers(2, 17)), int(rng.integers(1, 9)))
        else:
            shape = (int(rng.integers(1, 6)), int(rng.integers(1, 7)), int(rng.integers(2, 7)), int(rng.integers(2, 7)))
        eps = float(rng.choice([1e-5, 1e-3, 0.1]))
        cases.append(_bn_backward_case(shape, eps=eps, seed=int(rng.integers(2**31))))
    return cases


BN_BACKWARD = [_bn_backward_case((8, 5), seed=11), _bn_backward_case((4, 3, 5, 6), seed=12)]


# --- layer norm and group norm -------------------------------------------------------------------------


def _norm_inputs(shape, affine_shape, seed):
    gen = _generator(seed)
    x = 2 + 3 * torch.randn(*shape, generator=gen, dtype=torch.float64)
    x = x * (0.5 + torch.rand(shape[0], *(1,) * (len(shape) - 1), generator=gen, dtype=torch.float64))
    gamma = 1 + 0.5 * torch.randn(*affine_shape, generator=gen, dtype=torch.float64)
    beta = torch.randn(*affine_shape, generator=gen, dtype=torch.float64)
    return x, gamma, beta


def _ln_case(shape, *, eps=1e-5, seed=0) -> Case:
    x, gamma, beta = _norm_inputs(shape, shape[1:], seed)
    return Case((x, gamma, beta, eps), {}, f"x of shape {tuple(shape)}, gamma and beta of shape {tuple(shape[1:])}, "
                                           f"eps={eps:g}")


def _judge_layernorm(case: Case, value, error) -> str | None:
    x, gamma, beta, eps = case.args
    if error is not None:
        return raised(error)
    return tensor_message(value, layernorm_reference(x, gamma, beta, eps), "out",
                          explain=lambda actual: explain_layernorm(actual, x, gamma, beta, eps))


def _hidden_ln(seed: int, count: int = 4) -> list[Case]:
    rng = np.random.default_rng(seed)
    cases = []
    for _ in range(count):
        if rng.integers(0, 2):
            shape = (int(rng.integers(1, 9)), int(rng.integers(2, 17)))
        else:
            shape = (int(rng.integers(1, 5)), int(rng.integers(1, 6)), int(rng.integers(1, 6)), int(rng.integers(2, 6)))
        cases.append(_ln_case(shape, eps=float(rng.choice([1e-5, 0.1])), seed=int(rng.integers(2**31))))
    return cases


LAYERNORM = [_ln_case((6, 10), seed=21), _ln_case((3, 4, 5, 6), eps=0.1, seed=22)]


def _gn_case(shape, groups, *, eps=1e-5, seed=0) -> Case:
    x, gamma, beta = _norm_inputs(shape, (shape[1],), seed)
    return Case((x, gamma, beta, groups, eps), {},
                f"x of shape {tuple(shape)}, num_groups={groups}, gamma and beta of shape ({shape[1]},), eps={eps:g}")


def _judge_groupnorm(case: Case, value, error) -> str | None:
    x, gamma, beta, groups, eps = case.args
    if error is not None:
        return raised(error) + _broadcast_hint(error, x.ndim)
    return tensor_message(value, groupnorm_reference(x, gamma, beta, groups, eps), "out",
                          explain=lambda actual: explain_groupnorm(actual, x, gamma, beta, groups, eps))


def _hidden_gn(seed: int, count: int = 4) -> list[Case]:
    rng = np.random.default_rng(seed)
    cases = []
    for _ in range(count):
        groups, size = int(rng.integers(1, 5)), int(rng.integers(1, 5))
        shape = (int(rng.integers(1, 5)), groups * size, int(rng.integers(1, 6)), int(rng.integers(2, 6)))
        cases.append(_gn_case(shape, groups, eps=float(rng.choice([1e-5, 0.1])), seed=int(rng.integers(2**31))))
    return cases


GROUPNORM = [_gn_case((2, 6, 4, 5), 2, seed=31), _gn_case((3, 8, 3, 4), 4, eps=0.1, seed=32),
             _gn_case((2, 6, 3, 3), 3, seed=33)]


# --- dropout -------------------------------------------------------------------------------------------


def _nonzero(shape, gen) -> torch.Tensor:
    """float64 values of random sign, 0.5 to 2 in size: no zeros, so a dropped entry is recognised by its 0."""
    sign = torch.randint(0, 2, shape, generator=gen).double() * 2 - 1
    return sign * (0.5 + 1.5 * torch.rand(*shape, generator=gen, dtype=torch.float64))


def _mode(p, training) -> str:
    return f"p={p:g}, " + ("training mode" if training else "eval mode")


def _dropout_case(shape, p, training=True, *, seeds=(1, 2), seed=0) -> Case:
    x = _nonzero(shape, _generator(seed))
    label = f"x of shape {tuple(shape)}, {_mode(p, training)}" + \
        (f", called with {len(seeds)} different seeds" if len(seeds) > 1 else "")
    return Case((x, p, training, list(seeds)), {}, label)


def _dropout_raised(error: str, p: float) -> str:
    hint = ("\nLikely cause: 1 / (1 - p) with p = 1: every entry is dropped, so return zeros (the mask is all 0; do "
            "not divide by 1 - p = 0)") if p == 1 and "ZeroDivisionError" in error else ""
    return raised(error) + hint


def _judge_dropout(case: Case, value, error) -> str | None:
    x, p, training, seeds = case.args
    if error is not None:
        return _dropout_raised(error, p)
    got = _unpack(value, ("outs", "changed"), "dropout_forward")
    if isinstance(got, str):
        return got
    changed = _changed_message("dropout_forward", got["changed"])
    if changed is not None:
        return changed
    outs = got["outs"]
    if not isinstance(outs, (list, tuple)) or len(outs) != len(seeds):
        return "the grader's helper for dropout_forward did not return one output per call"
    for number, out in enumerate(outs):
        problem = dropout_problem(out, x, p, training)
        if problem is not None:
            return problem if len(outs) == 1 else f"call {number + 1} of {len(outs)}: {problem}"
    if training and 0 < p < 1 and len(outs) > 1:
        masks = [out == 0 for out in outs]
        if all(bool((mask == masks[0]).all()) for mask in masks[1:]):
            return ("every call dropped the same entries, though each was made with another seed.\nLikely cause: "
                    "the mask is not drawn anew on each call (a generator seeded inside dropout_forward, or a mask "
                    "made once and kept?): draw it with the generator you are given, or torch's default one")
    return None


DROPOUT_TRAIN = [_dropout_case((100, 300), 0.5, seed=41), _dropout_case((50, 4, 8, 10), 0.2, seed=42),
                 _dropout_case((200, 100), 0.75, seed=43)]
DROPOUT_EDGES = [_dropout_case((40, 50), 0.5, training=False, seeds=(1,), seed=44),
                 _dropout_case((4, 3, 5, 5), 0.3, training=False, seeds=(1,), seed=45),
                 _dropout_case((40, 50), 0.0, seeds=(1,), seed=46),
                 _dropout_case((40, 50), 1.0, seeds=(1,), seed=47)]


def _dropout_backward_case(shape, p, training=True, *, seed=0) -> Case:
    gen = _generator(seed)
    x, dout = _nonzero(shape, gen), _nonzero(shape, gen)
    return Case((x, p, training, seed + 1, dout), {}, f"x and dout of shape {tuple(shape)}, {_mode(p, training)}")


def _judge_dropout_backward(case: Case, value, error) -> str | None:
    x, p, training, _, dout = case.args
    if error is not None:
        return _dropout_raised(error, p)
    got = _unpack(value, ("out", "dx"), "dropout_backward")
    if isinstance(got, str):
        return got
    problem = dropout_problem(got["out"], x, p, training)
    if problem is not None:
        return (f"dropout_forward is wrong here ({problem.splitlines()[0]}), so its cache probably is too: make "
                "test_dropout_train and test_dropout_eval_and_edges pass first")
    return dropout_gradient_problem(got["dx"], got["out"], x, dout, p, training)


def _hidden_dropout(seed: int, count: int = 5) -> list[Case]:
    rng = np.random.default_rng(seed)
    cases = []
    for number in range(count):
        if rng.integers(0, 2):
            shape = (int(rng.integers(8, 65)), int(rng.integers(300, 1001)))
        else:
            shape = (int(rng.integers(16, 41)), int(rng.integers(2, 6)), int(rng.integers(8, 13)),
                     int(rng.integers(8, 13)))
        p = round(float(rng.uniform(0.1, 0.9)), 2)
        if number == count - 1:
            p = float(rng.choice([0.0, 1.0, p]))
        training = bool(rng.integers(0, 4))  # eval one time in four
        cases.append(_dropout_backward_case(shape, p, training, seed=int(rng.integers(2**31))))
    return cases


DROPOUT_BACKWARD = [_dropout_backward_case((100, 200), 0.4, seed=51),
                    _dropout_backward_case((20, 3, 8, 8), 0.6, seed=52),
                    _dropout_backward_case((40, 50), 0.4, training=False, seed=53)]


SPEC = LabSpec(
    name="lab03_normalization",
    preamble=PREAMBLE,
    rules=RULES,
    forbidden=FORBIDDEN,
    originals=REFERENCE_FUNCTIONS[:5],
    guard=lambda: forbid_calls(ops=NORMALIZATION_OPS, why=NO_SHORTCUTS,
                               functions=(*REFERENCE_FUNCTIONS, *LIBRARY_FUNCTIONS, torch.autograd.backward,
                                          torch.autograd.grad)),
    tests=[
        Test("test_bn_train_features", "run_batchnorm", "batchnorm_forward, training, (N, D) features",
             fixed_cases(BN_FEATURES), _judge_bn(("out",))),
        Test("test_bn_train_channels", "run_batchnorm", "batchnorm_forward, training, (N, C, H, W) channels",
             fixed_cases(BN_CHANNELS), _judge_bn(("out",))),
        Test("test_bn_running_stats", "run_batchnorm", "batchnorm_forward, running statistics",
             fixed_cases(BN_RUNNING), _judge_bn(("running_mean", "running_var"))),
        Test("test_bn_eval", "run_batchnorm", "batchnorm_forward, eval mode", fixed_cases(BN_EVAL), _judge_bn()),
        Test("test_bn_forward_hidden", "run_batchnorm", "batchnorm_forward, hidden cases", _hidden_bn, _judge_bn(),
             hidden=True),
        Test("test_bn_backward_dgamma_dbeta", "run_batchnorm_backward", "batchnorm_backward, dgamma and dbeta",
             fixed_cases(BN_BACKWARD), _judge_bn_backward(("dgamma", "dbeta"))),
        Test("test_bn_backward_dx", "run_batchnorm_backward", "batchnorm_backward, dx", fixed_cases(BN_BACKWARD),
             _judge_bn_backward()),
        Test("test_bn_backward_hidden", "run_batchnorm_backward", "batchnorm_backward, hidden cases",
             _hidden_bn_backward, _judge_bn_backward(), hidden=True),
        Test("test_layernorm", "layernorm_forward", "layernorm_forward", fixed_cases(LAYERNORM), _judge_layernorm),
        Test("test_layernorm_hidden", "layernorm_forward", "layernorm_forward, hidden cases", _hidden_ln,
             _judge_layernorm, hidden=True),
        Test("test_groupnorm", "groupnorm_forward", "groupnorm_forward", fixed_cases(GROUPNORM), _judge_groupnorm),
        Test("test_groupnorm_hidden", "groupnorm_forward", "groupnorm_forward, hidden cases", _hidden_gn,
             _judge_groupnorm, hidden=True),
        Test("test_dropout_train", "run_dropout", "dropout_forward, training", fixed_cases(DROPOUT_TRAIN),
             _judge_dropout),
        Test("test_dropout_eval_and_edges", "run_dropout", "dropout_forward, eval mode, p = 0 and p = 1",
             fixed_cases(DROPOUT_EDGES), _judge_dropout),
        Test("test_dropout_backward", "run_dropout_backward", "dropout_backward", fixed_cases(DROPOUT_BACKWARD),
             _judge_dropout_backward),
        Test("test_dropout_hidden", "run_dropout_backward", "dropout_forward and dropout_backward, hidden cases",
             _hidden_dropout, _judge_dropout_backward, hidden=True),
    ],
)
