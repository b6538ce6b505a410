"""Test-time augmentation (TTA) and ensembles: average several predictions into one.

Two cheap ways to buy accuracy after training:

* **TTA** runs one model on several *views* of each test image and averages.
  ``"flip"`` uses the image and its mirror image (2 forward passes);
  ``"ten_crop"`` is AlexNet's scheme (Krizhevsky et al., 2012): the four corner
  crops and the centre crop of size ``crop_size``, and the same five of the
  mirrored image (10 passes). The model sees crops, as in training with random crops.
* **Ensembles** average several independently trained models (AlexNet averaged
  5-7 CNNs, ResNet's ILSVRC entry 6).

Why average *probabilities* and not logits: each view / model's softmax output
is a predictive distribution, and their mean is again a distribution (rows sum
to 1, so it can be read and scored as one -- accuracy, log-loss, calibration).
Logits are only defined up to an additive constant per view (softmax ignores a
shift) and their scale differs between views and models, so one over-confident
member with large logits would dominate a logit mean; a probability mean bounds
each member's influence at ``1 / n``. It is also what AlexNet did ("averaging
the predictions made by the network's softmax layer on the ten patches").

Every function here returns probabilities of shape (N, K), not logits: to score
them with a loss, use ``nn.NLLLoss()(probs.clamp_min(1e-12).log(), y)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torchvision.transforms.v2 import functional as TF

from .._checks import as_pair, check_choice, check_int, check_module, check_rank
from ..modes import evaluating

__all__ = ["TTA_MODES", "ENSEMBLE_MODES", "tta_views", "tta_predict", "Ensemble", "ensemble_predict"]

TTA_MODES = ("none", "flip", "ten_crop")
ENSEMBLE_MODES = ("mean_prob", "vote")


def _crop_size(crop_size, height: int, width: int) -> tuple[int, int]:
    if crop_size is None:
        raise ValueError("crop_size is required for mode='ten_crop' (an int or (height, width) smaller than the input)")
    size = as_pair("crop_size", crop_size, 1)
    if size[0] > height or size[1] > width:
        raise ValueError(f"crop_size {size} is larger than the input ({height}, {width})")
    return size


def tta_views(x: torch.Tensor, mode: str = "flip", crop_size: int | Sequence[int] | None = None) -> list[torch.Tensor]:
    """The views of a batch that :func:`tta_predict` feeds the model.

    ``x``: (N, C, H, W). Returns a list of tensors:

    * ``"none"``: ``[x]``;
    * ``"flip"``: ``[x, x.flip(-1)]`` (horizontal mirror);
    * ``"ten_crop"``: 10 tensors (N, C, h, w), ``(h, w) = crop_size``, in the order of
      ``torchvision.transforms.v2.functional.ten_crop``: top-left, top-right,
      bottom-left, bottom-right, centre of ``x``, then the same five crops of
      ``x.flip(-1)`` (each one the mirror image of the opposite corner of ``x``).
      The centre crop starts at ``round((H - h) / 2), round((W - w) / 2)`` (Python's
      ``round``); when ``W - w`` is odd, the centre crop of the mirror image is therefore
      shifted by one column against the mirror of the original centre crop.
    """
    check_rank("x", x, 4, "(N, C, H, W)")
    check_choice("mode", mode, TTA_MODES)
    if mode != "ten_crop" and crop_size is not None:
        raise ValueError(f"crop_size is only used with mode='ten_crop', got crop_size={crop_size!r} with mode={mode!r}")
    if mode == "none":
        return [x]
    if mode == "flip":
        return [x, x.flip(-1)]
    size = _crop_size(crop_size, x.shape[-2], x.shape[-1])
    return list(TF.ten_crop(x, list(size)))  # works on a whole batch: crops the last two dims


def _model_device(model: nn.Module, fallback: torch.device) -> torch.device:
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return fallback


def _softmax(logits: torch.Tensor) -> torch.Tensor:
    """(B, K) logits -> (B, K) probabilities, computed in float32 at least (half-precision models)."""
    if logits.ndim != 2:
        raise ValueError(f"the model must return (B, K) logits, got shape {tuple(logits.shape)}")
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()
    return torch.softmax(logits, dim=1)


def _chunks(x: torch.Tensor, batch_size: int | None):
    if batch_size is None:
        yield x
        return
    check_int("batch_size", batch_size, 1)
    yield from x.split(batch_size)


def tta_predict(
    model: nn.Module,
    x: torch.Tensor,
    *,
    mode: str = "flip",
    crop_size: int | Sequence[int] | None = None,
    batch_size: int | None = None,
) -> torch.Tensor:
    """Class probabilities of ``model`` averaged over test-time views of ``x``.

    Args:
        model: maps (B, C, h, w) images to (B, K) logits. With ``"ten_crop"`` it must
            accept ``crop_size`` inputs (e.g. end in global average pooling).
        x: (N, C, H, W) images, on any device (batches are moved to the model's).
        mode: ``"flip"`` (image + mirror image), ``"ten_crop"`` (AlexNet's 10 crops, see
            :func:`tta_views`) or ``"none"`` (plain softmax, for comparison).
        crop_size: ``int`` or ``(h, w)``, at most ``(H, W)``; only with ``"ten_crop"``.
        batch_size: run ``x`` through in chunks of this many images (memory); ``None``: all at once.

    Returns:
        (N, K) probabilities on ``x``'s device: ``mean_v softmax(model(view_v))``; every row
        sums to 1. The model runs in eval mode under ``torch.inference_mode()``; its
        train/eval mode is restored afterwards. Probabilities are averaged rather than
        logits for the reasons in this module's docstring.
    """
    tta_views(x[:0] if isinstance(x, torch.Tensor) and x.ndim == 4 else x, mode, crop_size)  # check arguments once
    device = _model_device(model, x.device)
    out = []
    with evaluating(model):
        for chunk in _chunks(x, batch_size):
            views = tta_views(chunk.to(device), mode, crop_size)
            probs = sum(_softmax(model(v)) for v in views) / len(views)
            out.append(probs.to(x.device))
    return torch.cat(out)


def _combine(probs: Sequence[torch.Tensor], mode: str) -> torch.Tensor:
    """(M members of (N, K) probabilities) -> (N, K): their mean, or the fraction of votes per class."""
    stacked = torch.stack(list(probs))  # (M, N, K)
    if mode == "mean_prob":
        return stacked.mean(dim=0)
    votes = nn.functional.one_hot(stacked.argmax(dim=2), stacked.shape[2]).to(stacked.dtype)  # (M, N, K)
    return votes.mean(dim=0)


def _members(models) -> list[nn.Module]:
    """``models`` as a non-empty list of modules (one model: an ensemble of one)."""
    members = [models] if isinstance(models, nn.Module) else list(models)
    if not members:
        raise ValueError("models must be a non-empty sequence of nn.Module, got an empty one")
    for i, member in enumerate(members):
        check_module(f"models[{i}]", member)
    return members


class Ensemble(nn.Module):
    """Several models behind one ``forward``, combined into class probabilities.

    Args:
        models: the members; each maps (B, ...) inputs to (B, K) logits, same K for all.
        mode: ``"mean_prob"``: the mean of the members' softmax probabilities;
            ``"vote"``: hard majority vote, returned as the fraction of members voting
            for each class (argmax of a row = the majority class; a tie goes to the
            lowest class index, as ``torch.argmax`` does).

    ``forward(x)`` returns (B, K) probabilities whose rows sum to 1, **not** logits: use it
    for prediction and evaluation (``.argmax(1)``), not with ``nn.CrossEntropyLoss``.
    The members follow the ensemble's ``train()/eval()`` mode like any submodules;
    put it in eval mode before predicting (or use :func:`ensemble_predict`).
    """

    def __init__(self, models: Sequence[nn.Module], mode: str = "mean_prob"):
        super().__init__()
        self.members = nn.ModuleList(_members(models))
        check_choice("mode", mode, ENSEMBLE_MODES)
        self.mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _combine([_softmax(m(x)) for m in self.members], self.mode)

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}"


def ensemble_predict(
    models: Sequence[nn.Module],
    x: torch.Tensor,
    *,
    mode: str = "mean_prob",
    tta: str = "none",
    crop_size: int | Sequence[int] | None = None,
    batch_size: int | None = None,
) -> torch.Tensor:
    """(N, K) class probabilities of an ensemble on ``x``, optionally with TTA per member.

    Each member's prediction is :func:`tta_predict` ``(member, x, mode=tta, crop_size=...)``
    (its probabilities averaged over the views; ``tta="none"``: a plain softmax). The members
    are then combined as in :class:`Ensemble` (``"mean_prob"`` or ``"vote"``). Members may live
    on different devices; the result is on ``x``'s device and every model's mode is restored.
    """
    models = _members(models)
    check_choice("mode", mode, ENSEMBLE_MODES)
    per_model = [tta_predict(m, x, mode=tta, crop_size=crop_size, batch_size=batch_size) for m in models]
    return _combine(per_model, mode)
