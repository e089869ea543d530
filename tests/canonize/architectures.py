"""Models for the canonizer tests that the shipped suite (``xaisearch.testing.canonizers``) does not hold.

``UnseenNet``, ``mini_resnet``, ``mini_efficientnet`` and ``zoo_model`` live in
``xaisearch.testing.canonizers``.
"""

from __future__ import annotations

from contextlib import AbstractContextManager

import torch
from torch import nn


class PartlyFoldable(nn.Module):
    """A BN after a ReLU whose output feeds an addition: nothing can absorb it, ``auto`` must say so."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.norm = nn.BatchNorm2d(4)
        self.grouped = nn.Conv2d(4, 4, 3, padding=1, groups=2)
        self.grouped_norm = nn.BatchNorm2d(4)
        self.head = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x).relu()
        y = self.norm(x)
        z = self.grouped(self.grouped_norm(y + x))
        return self.head(z.mean(dim=(2, 3)))


def zennit_guard(model: nn.Module) -> AbstractContextManager[object]:
    """``preserved_state`` under zennit ≥ 1.0 (which swaps parameter objects, upstream #237), a
    no-op under 0.5.1 — so with 0.5.1 a restore test checks the canonizer without any help."""
    from contextlib import nullcontext
    from importlib import metadata

    from xaisearch.integrity import preserved_state

    return preserved_state(model) if int(metadata.version("zennit").split(".")[0]) >= 1 else nullcontext()
