"""What the training tests share."""

from __future__ import annotations

import torch.nn.functional as F


class NaNAt:
    """Cross-entropy that returns NaN at one call (1-based), to make a run diverge at a known step."""

    def __init__(self, call: int):
        self.call, self.calls = call, 0

    def __call__(self, logits, y):
        self.calls += 1
        loss = F.cross_entropy(logits, y)
        return loss * float("nan") if self.calls == self.call else loss
