"""Checks for the initialization lab (lab 4) that recognise the usual mistakes and name them.

Lab 4 asks for the fans of a weight shape, Xavier (uniform and normal), He
(normal) and orthogonal initialisers that return a new tensor for a shape and a
``torch.Generator``, LSUV on a list of layers, and a function that measures the
activation and gradient statistics of a deep stack.

The initialisers are random, so they are judged by statistics of one large
sample (at least 16,384 values): its mean, its standard deviation and its
kurtosis (1.8 for a uniform, 3 for a normal), each allowed :data:`Z` standard
errors of the sample size (:func:`std_tolerance`, :func:`mean_tolerance`), so
that a right answer fails about once in 10^8 cases. A wrong standard deviation
is compared with the ones the known mistakes give - fans swapped, the ReLU gain
forgotten, a uniform's bound used as a normal's standard deviation, the
receptive field of a conv weight ignored... - and each that matches is named
(:func:`explain_std`). The orthogonal initialiser, LSUV and the statistics of
a stack are judged exactly (Gram matrices, variances recomputed here in
float64 from the student's weights, PyTorch's autograd).

Shapes: a weight is (out, in) for a linear layer and (out, in, kH, kW) for a
conv (any number of trailing kernel dims); its fans are ``fan_in = in * r`` and
``fan_out = out * r`` with the receptive field ``r = kH * kW``
(:func:`course_lib.init.fan_in_and_fan_out`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..init import calculate_gain, fan_in_and_fan_out

__all__ = [
    "Z",
    "Sample",
    "Candidate",
    "fans",
    "receptive_field",
    "xavier_std",
    "he_std",
    "std_tolerance",
    "mean_tolerance",
    "family_of",
    "explain_fans",
    "explain_std",
    "xavier_candidates",
    "he_candidates",
    "orthogonal_problem",
    "lsuv_variances",
    "explain_lsuv",
    "stack_stats",
    "explain_forward_stats",
    "explain_backward_stats",
    "ACTIVATIONS",
]

# How many standard errors a sample's statistic may stray from what the right initialiser gives. A normal
# deviate beyond 6 has probability 2e-9: a right answer is never failed, and every mistake the lab names is
# off by far more (the smallest, a leaky ReLU's slope ignored at slope 0.5, by 12%; at 16,384 values the
# tolerance on the standard deviation is 3.3%).
Z = 6.0
# Kurtosis E[(x - mean)^4] / std^4 of the two families, and the line between them.
KURTOSIS = {"uniform": 1.8, "normal": 3.0}
_KURTOSIS_LINE = 2.4

ACTIVATIONS = ("tanh", "relu", "linear")


# --- the right answers -------------------------------------------------------------------------------


def fans(shape: Sequence[int]) -> tuple[int, int]:
    """``(fan_in, fan_out)`` of a weight of shape (out, in, *kernel), as course_lib.init computes them."""
    return fan_in_and_fan_out(torch.empty(tuple(shape), device="meta"))


def receptive_field(shape: Sequence[int]) -> int:
    """``kH * kW`` (the product of the trailing dims) of a weight shape; 1 for a linear weight."""
    return math.prod(tuple(shape)[2:])


def xavier_std(shape: Sequence[int], gain: float) -> float:
    """Glorot & Bengio's ``gain * sqrt(2 / (fan_in + fan_out))``, the std of both Xavier initialisers."""
    fan_in, fan_out = fans(shape)
    return gain * math.sqrt(2.0 / (fan_in + fan_out))


def _leaky_gain(negative_slope: float) -> float:
    return calculate_gain("leaky_relu", negative_slope)


def he_std(shape: Sequence[int], mode: str = "fan_in", negative_slope: float = 0.0) -> float:
    """He et al.'s ``gain / sqrt(fan)``, with ``gain = sqrt(2 / (1 + negative_slope^2))`` and the fan of ``mode``."""
    fan_in, fan_out = fans(shape)
    return _leaky_gain(negative_slope) / math.sqrt(fan_in if mode == "fan_in" else fan_out)


# --- statistics of a sample --------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    """What the judges look at in a sample of weights (computed in float64)."""

    n: int
    mean: float
    std: float
    kurtosis: float
    max_abs: float

    @classmethod
    def of(cls, values: torch.Tensor) -> Sample:
        x = values.detach().double().flatten().cpu()
        mean = x.mean().item()
        centred = x - mean
        var = centred.pow(2).mean().item()
        kurtosis = centred.pow(4).mean().item() / var**2 if var > 0 else float("nan")
        return cls(x.numel(), mean, math.sqrt(var), kurtosis, x.abs().max().item())


def std_tolerance(n: int) -> float:
    """Relative tolerance on a sample std of ``n`` values: ``Z`` standard errors, ``sqrt((kurtosis - 1) / (4n))``,
    taken for a normal (kurtosis 3; a uniform's std varies less)."""
    return Z * math.sqrt((KURTOSIS["normal"] - 1) / (4 * n))


def mean_tolerance(n: int, std: float) -> float:
    """Absolute tolerance on a sample mean of ``n`` values of standard deviation ``std``: ``Z std / sqrt(n)``."""
    return Z * std / math.sqrt(n)


def family_of(sample: Sample) -> str:
    """"uniform" or "normal", whichever kurtosis the sample's is nearer to."""
    return "uniform" if sample.kurtosis < _KURTOSIS_LINE else "normal"


def std_matches(sample: Sample, std: float) -> bool:
    return abs(sample.std / std - 1) <= std_tolerance(sample.n) if std > 0 else sample.std == 0


@dataclass(frozen=True)
class Candidate:
    """A known mistake: its description, the std it gives, and the family it draws from (None: either)."""

    description: str
    std: float
    family: str | None = None


def explain_std(sample: Sample, candidates: Sequence[Candidate]) -> str | None:
    """The mistakes whose std (and family, if it has one) the sample matches, joined with " or "; None if none."""
    family = family_of(sample)
    found = [c.description for c in candidates
             if std_matches(sample, c.std) and (c.family is None or c.family == family)]
    return " or ".join(dict.fromkeys(found)) or None


def _fan_words(shape) -> str:
    fan_in, fan_out = fans(shape)
    r = receptive_field(shape)
    if r == 1:
        return f"fan_in = {fan_in}, fan_out = {fan_out}"
    return f"fan_in = {shape[1]}*{r} = {fan_in}, fan_out = {shape[0]}*{r} = {fan_out}"


def xavier_candidates(shape, gain: float, family: str) -> list[Candidate]:
    """The mistakes of a Xavier initialiser (``family`` "uniform" or "normal") for a weight of ``shape``."""
    fan_in, fan_out = fans(shape)
    s = xavier_std(shape, gain)
    r = receptive_field(shape)
    other = "normal" if family == "uniform" else "uniform"
    found = []
    if family == "normal":
        found.append(Candidate("the uniform's bound used as the standard deviation: gain*sqrt(6/(fan_in + fan_out)) "
                               "is the bound b of Xavier's uniform, whose std is b/sqrt(3); a normal with std b is "
                               "sqrt(3) times too wide", math.sqrt(3) * s))
    else:
        found.append(Candidate("the standard deviation used as the bound: U(-b, b) has std b/sqrt(3), so the bound is "
                               "b = sqrt(3)*std = gain*sqrt(6/(fan_in + fan_out)); yours is sqrt(3) times too narrow",
                               s / math.sqrt(3)))
    if gain != 1:
        found.append(Candidate(f"gain forgotten: the std is gain*sqrt(2/(fan_in + fan_out)) with gain = {gain:.4g}",
                               s / gain))
        found.append(Candidate(f"gain applied twice (or squared): the std is proportional to gain = {gain:.4g}",
                               s * gain))
    found.append(Candidate("the 2 is missing: Var(W) = 2/(fan_in + fan_out), the average of 1/fan_in and 1/fan_out",
                           s / math.sqrt(2)))
    if fan_in != fan_out:
        found.append(Candidate("fan_in only (Var(W) = 1/fan_in is LeCun's forward condition; Xavier averages the "
                               "forward and the backward ones: 2/(fan_in + fan_out))", gain / math.sqrt(fan_in)))
        found.append(Candidate("fan_out only (Var(W) = 1/fan_out is the backward condition alone; Xavier averages "
                               "both: 2/(fan_in + fan_out))", gain / math.sqrt(fan_out)))
    found.append(Candidate("the variance used as the standard deviation: take the square root of "
                           "gain^2 * 2/(fan_in + fan_out)", s * s))
    if family == "uniform":
        found.append(Candidate("the bound not square-rooted: b = gain*sqrt(6/(fan_in + fan_out)), not "
                               "gain^2 * 6/(fan_in + fan_out)", math.sqrt(3) * s * s))
    if r > 1:
        found.append(Candidate(f"the receptive field ignored: for a conv weight of shape {tuple(shape)} each output "
                               f"sums over in*kH*kW inputs ({_fan_words(shape)}), not in = {shape[1]}",
                               s * math.sqrt(r)))
    found.append(Candidate(f"{other} instead of {family}: " + (
        "torch.randn draws from a normal; a uniform U(-b, b) is (2*torch.rand(...) - 1)*b" if family == "uniform"
        else "torch.rand draws from a uniform; a normal is torch.randn(...)*std"), s, other))
    return found


def he_candidates(shape, mode: str, negative_slope: float) -> list[Candidate]:
    """The mistakes of He's normal initialiser for a weight of ``shape``, ``mode`` and ``negative_slope``."""
    fan_in, fan_out = fans(shape)
    fan, other_fan = (fan_in, fan_out) if mode == "fan_in" else (fan_out, fan_in)
    other_mode = "fan_out" if mode == "fan_in" else "fan_in"
    gain = _leaky_gain(negative_slope)
    s = gain / math.sqrt(fan)
    r = receptive_field(shape)
    a = negative_slope
    found = []
    if fan_in != fan_out:
        found.append(Candidate(f"fan_in and fan_out swapped (or mode ignored): mode={mode!r} divides by {mode} = "
                               f"{fan}, you divided by {other_mode} = {other_fan} ({_fan_words(shape)}; a weight is "
                               "(out, in, ...) in PyTorch)", gain / math.sqrt(other_fan)))
    if a == 0:
        found.append(Candidate("ReLU gain forgotten: a ReLU zeroes half of its inputs and halves their second moment, "
                               "so He's Var(W) is 2/fan, not 1/fan (gain sqrt(2))", 1 / math.sqrt(fan)))
    else:
        found.append(Candidate(f"gain forgotten: the gain is sqrt(2/(1 + negative_slope^2)) = {gain:.4g}",
                               1 / math.sqrt(fan)))
        found.append(Candidate(f"negative_slope ignored: with slope {a:g} the gain is sqrt(2/(1 + {a:g}^2)) = "
                               f"{gain:.4g}, not ReLU's sqrt(2)", math.sqrt(2) / math.sqrt(fan)))
        if a != 1:
            found.append(Candidate("the slope not squared: the gain is sqrt(2/(1 + negative_slope^2)): a leaky ReLU "
                                   "keeps slope^2 of the negative half's second moment",
                                   math.sqrt(2 / (1 + a)) / math.sqrt(fan)))
    found.append(Candidate("the uniform's bound used as the standard deviation: sqrt(3)*gain/sqrt(fan) is the bound of "
                           "He's uniform initialiser (std = bound/sqrt(3)); a normal with that std is sqrt(3) times "
                           "too wide", math.sqrt(3) * s))
    found.append(Candidate("the variance used as the standard deviation: take the square root of gain^2/fan", s * s))
    if r > 1:
        found.append(Candidate(f"the receptive field ignored: for a conv weight of shape {tuple(shape)} the fans count "
                               f"kH*kW = {r} taps per channel ({_fan_words(shape)})", s * math.sqrt(r)))
    found.append(Candidate("Xavier's std sqrt(2/(fan_in + fan_out)) instead of He's gain/sqrt(fan)",
                           math.sqrt(2 / (fan_in + fan_out))))
    found.append(Candidate("uniform instead of normal: torch.rand draws from a uniform; a normal is "
                           "torch.randn(...)*std", s, "uniform"))
    return found


# --- fans --------------------------------------------------------------------------------------------


def explain_fans(value, shape) -> str | None:
    """The mistake a wrong ``(fan_in, fan_out)`` for ``shape`` matches, or None."""
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        return None
    fan_in, fan_out = fans(shape)
    out, inp, r = shape[0], shape[1], receptive_field(shape)
    known = [
        ((fan_out, fan_in), "fan_in and fan_out swapped: a PyTorch weight is (out, in, ...), so shape[1] (times the "
         "receptive field) is fan_in, the number of inputs each output unit sums over; (in, out) is TensorFlow's "
         "order"),
        ((inp, out), "the receptive field ignored: a conv output unit sums over in*kH*kW inputs, so both fans are "
         f"multiplied by kH*kW = {r}"),
        ((out, inp), "fan_in and fan_out swapped, and the receptive field ignored"),
        ((inp * r, out), f"the receptive field counted in fan_in only: fan_out = out*kH*kW = {fan_out} too (each input "
         "reaches out*kH*kW outputs)"),
        ((inp, out * r), f"the receptive field counted in fan_out only: fan_in = in*kH*kW = {fan_in} too"),
        ((math.prod(shape), math.prod(shape)),
         "the product of every dim: fan_in leaves out `out`, fan_out leaves out `in`"),
    ]
    if len(shape) > 3:
        for dim, which in ((shape[2], "the first"), (shape[-1], "the last")):
            which = "one" if shape[2] == shape[-1] else which
            known.append(((inp * dim, out * dim),
                          f"only {which} kernel dim counted: the receptive field is the product of all the kernel "
                          f"dims, {r}"))
    try:
        got = (int(value[0]), int(value[1]))
    except (TypeError, ValueError):
        return None
    for (wrong_in, wrong_out), description in known:
        if got == (wrong_in, wrong_out) and got != (fan_in, fan_out):
            return description
    return None


# --- orthogonal --------------------------------------------------------------------------------------


def _gram(matrix: torch.Tensor) -> torch.Tensor:
    """The smaller Gram matrix of a (rows, cols) matrix: W W^T when rows <= cols, else W^T W."""
    rows, cols = matrix.shape
    return matrix @ matrix.T if rows <= cols else matrix.T @ matrix


ORTHOGONAL_ATOL = 2e-4  # on the Gram matrix, relative to gain^2: float32 QR of a 512-column matrix is off by ~1e-6


def _is_scaled_identity(gram: torch.Tensor, atol: float = ORTHOGONAL_ATOL) -> tuple[bool, float]:
    """Whether ``gram`` is c I for some c > 0 (within ``atol`` relative to c), and c (the mean of its diagonal)."""
    c = gram.diagonal().mean().item()
    if not c > 0:
        return False, c
    eye = torch.eye(len(gram), dtype=gram.dtype)
    return (gram / c - eye).abs().max().item() <= atol, c


def orthogonal_problem(value: torch.Tensor, shape, gain: float) -> str | None:
    """None when ``value`` (of ``shape``) viewed as (shape[0], rest) is gain times a (semi-)orthogonal matrix,
    else what is wrong, with the likely cause when a known mistake matches."""
    rows = shape[0]
    cols = math.prod(shape) // rows
    m = value.detach().double().cpu().reshape(rows, cols)
    gram = _gram(m)
    side = "rows" if rows <= cols else "columns"
    k = min(rows, cols)
    eye = torch.eye(k, dtype=torch.float64)
    error = (gram - gain**2 * eye).abs().max().item()
    if error <= ORTHOGONAL_ATOL * gain**2:
        return None
    kind = "wide" if rows < cols else "tall" if rows > cols else "square"
    gram_name = "W W^T" if rows <= cols else "W^T W"
    head = (f"viewed as a {kind} {rows}x{cols} matrix W (one row per output channel), its {k} {side} should be "
            f"orthogonal with norm gain = {gain:.4g}: {gram_name} = gain^2 I = {gain**2:.4g} I; the largest entry of "
            f"{gram_name} - gain^2 I is {error:.3g}")
    cause = _orthogonal_cause(m, value, shape, gain, gram)
    return head + (f"\nLikely cause: {cause}" if cause else "")


def _orthogonal_cause(m, value, shape, gain, gram) -> str | None:
    rows, cols = m.shape
    scaled, c = _is_scaled_identity(gram)
    if scaled:
        if abs(c - 1) <= 1e-3 and gain != 1:
            return f"gain forgotten: multiply the orthogonal matrix by gain = {gain:.4g}"
        if abs(c - gain**4) <= 1e-3 * gain**4:
            return "gain applied twice"
        return (f"orthogonal, but every singular value is {math.sqrt(c):.4g} instead of gain = {gain:.4g}: "
                "scale the orthonormal matrix by gain, nothing else")
    flat = value.detach().double().cpu()
    if len(shape) > 2:
        wrong = flat.reshape(shape[0] * shape[1], -1)
        if _is_scaled_identity(_gram(wrong))[0]:
            return (f"the conv weight flattened the wrong way: as ({shape[0] * shape[1]}, {wrong.shape[1]}), one row "
                    f"per (out, in) pair; view it as (out, in*kH*kW) = ({rows}, {cols}), one row per output channel")
    if rows != cols:
        swapped = flat.reshape(cols, rows)
        if _is_scaled_identity(_gram(swapped))[0]:
            return (f"Q reshaped instead of transposed: you made a ({cols}, {rows}) matrix orthogonal and reshaped it "
                    f"to ({rows}, {cols}), which scrambles it; transpose it (Q.T) instead")
    diagonal = gram.diagonal()
    off = (gram - torch.diag(diagonal)).abs().max().item()
    if torch.allclose(diagonal, torch.full_like(diagonal, gain**2), rtol=1e-3):
        return (f"the {'rows' if rows <= cols else 'columns'} have norm gain but are not orthogonal (their dot "
                f"products reach {off:.3g}): normalising a random matrix is not orthogonalising it; use a QR "
                "decomposition")
    spread = diagonal.std().item() / max(diagonal.mean().item(), 1e-300)
    if spread > 1e-3:
        return ("this looks like a random (Gaussian or uniform) matrix, not an orthogonal one: draw A ~ N(0, 1), "
                "factor A = QR (torch.linalg.qr) and use Q")
    return None


# --- LSUV --------------------------------------------------------------------------------------------


def _act(name: str):
    return {"tanh": torch.tanh, "relu": torch.relu, "linear": lambda t: t}[name]


def _layer(kind: str, h, weight, bias):
    bias = None if bias is None else bias.double()
    if kind == "linear":
        return F.linear(h, weight.double(), bias)
    return F.conv2d(h, weight.double(), bias, padding=weight.shape[-1] // 2)


def lsuv_variances(kind: str, x, weights, biases, activation: str, scales=None):
    """Per layer, the variances (over every entry, float64) of the layer's output z and of activation(z), running
    ``x`` through the layers in turn; ``scales[k]`` (optional) multiplies layer k's weight first."""
    act = _act(activation)
    h = x.double()
    out, after = [], []
    for k, (weight, bias) in enumerate(zip(weights, biases)):
        w = weight.double() * (1.0 if scales is None else scales[k])
        z = _layer(kind, h, w, bias)
        h = act(z)
        out.append(z.var(correction=0).item())
        after.append(h.var(correction=0).item())
    return out, after


def _unit_scale(weight) -> tuple[torch.Tensor, float] | None:
    """(weight / sqrt(c), c) when the weight, viewed as (out, rest), is sqrt(c) times a (semi-)orthogonal matrix."""
    m = weight.double().reshape(weight.shape[0], -1)
    scaled, c = _is_scaled_identity(_gram(m), 1e-3)
    return (weight.double() / math.sqrt(c), c) if scaled else None


def explain_lsuv(kind: str, x, weights, biases, activation: str, tol: float) -> str | None:
    """None when every layer's output has variance 1 (within ``tol``), its weight is a multiple of an orthogonal
    matrix and its bias is zero; else the first thing wrong, with the likely cause."""
    variances, after = lsuv_variances(kind, x, weights, biases, activation)
    for k, (weight, bias) in enumerate(zip(weights, biases)):
        if bias is not None and bias.abs().max().item() > 0:
            return (f"layer {k + 1}'s bias is not zero (largest |b| {bias.abs().max().item():.3g}): LSUV zeroes the "
                    "biases")
        if _unit_scale(weight) is None:
            return (f"layer {k + 1}'s weight, viewed as ({weight.shape[0]}, {weight[0].numel()}), is not a multiple of "
                    "an orthogonal matrix: LSUV starts from an orthogonal initialisation (your orthogonal) and then "
                    "only rescales each weight")
    wrong = [k for k, v in enumerate(variances) if abs(v - 1) > tol + 1e-3]
    if not wrong:
        return None
    k = wrong[0]
    listed = ", ".join(f"{v:.3g}" for v in variances)
    head = (f"layer {k + 1}'s output has variance {variances[k]:.4g} on x (every layer's: {listed}); LSUV makes each "
            f"within tol = {tol:g} of 1")
    cause = _lsuv_cause(kind, x, weights, biases, activation, tol, variances, after, k)
    return head + (f"\nLikely cause: {cause}" if cause else "")


def _lsuv_cause(kind, x, weights, biases, activation, tol, variances, after, k) -> str | None:
    units = [_unit_scale(w) for w in weights]
    zeros = [None if b is None else torch.zeros_like(b) for b in biases]
    if all(abs(v - 1) <= tol + 1e-3 for v in after) and activation != "linear":
        return (f"the variance measured after the activation ({activation}(z)), not on the layer's output z: LSUV "
                "scales each layer's own output, before its activation")
    # All at once: every layer scaled by the variance its output had before any layer was rescaled.
    plain = [q for q, _ in units]
    before, _ = lsuv_variances(kind, x, plain, zeros, activation)
    if all(abs(c * v - 1) <= 1e-2 for (_, c), v in zip(units, before)):
        return ("every layer scaled by the variance measured before any layer was rescaled (all at once): LSUV goes "
                "layer by layer, and measures layer k's output only once the layers before it are fixed")
    # Layer by layer, on the student's own earlier layers: what the k-th layer's orthonormal weight gives.
    act = _act(activation)
    h = x.double()
    for j in range(k):
        h = act(_layer(kind, h, weights[j], biases[j]))
    q, c = units[k]
    u = _layer(kind, h, q, zeros[k]).var(correction=0).item()
    if k == len(weights) - 1 and all(abs(v - 1) <= tol + 1e-3 for v in variances[:-1]) and abs(c - 1) <= 1e-3:
        return "the last layer was not rescaled (a loop that stops one layer early?)"
    if abs(c - 1) <= 1e-3 and abs(u - 1) > tol:
        return (f"layer {k + 1}'s weight ends orthonormal (gain 1), as it started: it was never rescaled, or rescaled "
                "back and forth - dividing W by the variance instead of its square root flips the output's variance "
                "between v and 1/v at each step (scaling W by s scales the variance by s^2)")
    if abs(variances[k] * u - 1) <= 1e-2 or abs(c * u * u - 1) <= 1e-2:
        return ("the weight divided by the variance instead of the standard deviation: scaling W by s scales the "
                "output's variance by s^2, so divide W by sqrt(variance)")
    return None


# --- statistics of a deep stack ----------------------------------------------------------------------


def stack_stats(x, weights, activation: str, dout):
    """The right answer of ``activation_stats``, by PyTorch's autograd on float64 copies.

    h_0 = x; for l = 1..L: z_l = h_{l-1} W_l^T, h_l = activation(z_l). Returns (act_std, grad_std), each (L,):
    ``act_std[l-1]`` = std(h_l) and ``grad_std[l-1]`` = std(dLoss/dz_l) for Loss = sum(h_L * dout); the std over
    every entry, unbiased (``Tensor.std()``).
    """
    act = _act(activation)
    with torch.enable_grad():
        h = x.detach().double().requires_grad_()
        zs, hs = [], []
        for w in weights:
            z = h @ w.detach().double().T
            z.retain_grad()
            h = act(z)
            zs.append(z)
            hs.append(h)
        (h * dout.detach().double()).sum().backward()
    act_std = torch.stack([t.detach().std() for t in hs])
    grad_std = torch.stack([z.grad.std() for z in zs])
    return act_std, grad_std


def _derivative(activation: str, z, h):
    if activation == "tanh":
        return 1 - h * h
    if activation == "relu":
        return (z > 0).double()
    return torch.ones_like(z)


def _stats_by_hand(x, weights, activation, dout, *, pre=False, untransposed=False, last_linear=False,
                   no_derivative=False, derivative_of_h=False, backward_untransposed=False, grad_of_h=False,
                   ones=False, biased=False):
    """The two lists ``activation_stats`` returns, computed by hand in float64, with the mistakes the keywords make."""
    act = _act(activation)
    h = x.double()
    zs, hs = [], []
    for i, w in enumerate(weights):
        w = w.double()
        z = h @ (w if untransposed else w.T)
        h = z if (last_linear and i == len(weights) - 1) else act(z)
        zs.append(z)
        hs.append(h)
    correction = 0 if biased else 1
    act_std = torch.stack([(z if pre else t).std(correction=correction) for z, t in zip(zs, hs)])
    delta_h = torch.ones_like(hs[-1]) if ones else dout.double()
    grads = [None] * len(weights)
    for i in reversed(range(len(weights))):
        if no_derivative:
            factor = torch.ones_like(zs[i])
        elif derivative_of_h and activation == "tanh":
            factor = 1 - torch.tanh(hs[i]) ** 2
        else:
            factor = _derivative(activation, zs[i], hs[i])
        delta_z = delta_h * factor
        grads[i] = delta_h if grad_of_h else delta_z
        w = weights[i].double()
        delta_h = delta_z @ (w.T if backward_untransposed else w)
    grad_std = torch.stack([g.std(correction=correction) for g in grads])
    return act_std, grad_std


_FORWARD_SLIPS = (
    ("the std of the pre-activations z_l, not of the activations h_l = activation(z_l)", {"pre": True}),
    ("the weights applied untransposed: z = h @ W, but a weight is (out, in): z = h @ W.T", {"untransposed": True}),
    ("no activation after the last layer", {"last_linear": True}),
)
_BACKWARD_SLIPS = (
    ("the activation's derivative forgotten: dLoss/dz_l = dLoss/dh_l * activation'(z_l)", {"no_derivative": True}),
    ("tanh's derivative taken at h instead of z: tanh'(z) = 1 - tanh(z)^2 = 1 - h^2, not 1 - tanh(h)^2",
     {"derivative_of_h": True}),
    ("the weight transposed on the way back: dLoss/dh_{l-1} = dLoss/dz_l @ W_l (z = h @ W.T, so the gradient "
     "goes back through W, not W.T)", {"backward_untransposed": True}),
    ("the std of dLoss/dh_l (after the activation), not of dLoss/dz_l (before it)", {"grad_of_h": True}),
    ("the backward pass started from ones instead of dout (dLoss/dh_L = dout)", {"ones": True}),
)


def _close(actual, expected, rtol: float) -> bool:
    return (isinstance(actual, torch.Tensor) and tuple(actual.shape) == tuple(expected.shape)
            and bool(((actual.double() - expected).abs() <= rtol * expected.abs()).all()))


STATS_RTOL = 1e-3  # relative, per layer: Tensor.std() with either correction passes (they differ by 1/(2n))


def _explain_stats(actual, x, weights, activation, dout, which: int, slips) -> str | None:
    descriptions = []
    for description, mistake in slips:
        if _close(actual, _stats_by_hand(x, weights, activation, dout, **mistake)[which], STATS_RTOL):
            descriptions.append(description)
    if not descriptions and isinstance(actual, torch.Tensor) and actual.ndim == 1:
        right = stack_stats(x, weights, activation, dout)[which]
        if len(actual) == len(right) and _close(actual.flip(0), right, STATS_RTOL):
            descriptions.append("the list is in reverse order: entry l-1 belongs to layer l, the first layer first")
    return " or ".join(descriptions) or None


def explain_forward_stats(actual, x, weights, activation, dout) -> str | None:
    """The known mistake a wrong ``act_std`` matches, or None."""
    found = _explain_stats(actual, x, weights, activation, dout, 0, _FORWARD_SLIPS)
    if found is None and isinstance(actual, torch.Tensor) and actual.ndim == 1 and len(actual) == len(weights):
        right = stack_stats(x, weights, activation, dout)[0]
        shifted = torch.cat([x.double().std().reshape(1), right[:-1]])
        if _close(actual, shifted, STATS_RTOL):
            found = ("off by one layer: the first entry is the input's std; entry l-1 is the std of h_l, layer l's "
                     "output")
    return found


def explain_backward_stats(actual, x, weights, activation, dout) -> str | None:
    """The known mistake a wrong ``grad_std`` matches, or None."""
    return _explain_stats(actual, x, weights, activation, dout, 1, _BACKWARD_SLIPS)
