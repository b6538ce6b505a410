"""Highway layer (Srivastava et al. 2015), the gated ancestor of the residual block (T58)."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["HighwayLayer"]


class HighwayLayer(nn.Module):
    """y = H(x) T(x) + x (1 - T(x)), with H = ReLU(W_H x + b_H) and the transform gate T = sigmoid(W_T x + b_T).

    The carry gate is 1 - T. ``gate_bias`` (negative, -1 by default, the paper
    suggests -1 to -3) starts the layer close to the identity, so a deep
    stack of highway layers trains like a shallow one at first.
    Shapes: (N, F) -> (N, F).
    """

    def __init__(self, features: int, gate_bias: float = -1.0):
        super().__init__()
        self.transform = nn.Linear(features, features)
        self.gate = nn.Linear(features, features)
        with torch.no_grad():
            self.gate.bias.fill_(gate_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 2 or x.shape[1] != self.transform.in_features:
            raise ValueError(f"x must have shape (N, {self.transform.in_features}), got {tuple(x.shape)}")
        t = torch.sigmoid(self.gate(x))
        return torch.relu(self.transform(x)) * t + x * (1 - t)
