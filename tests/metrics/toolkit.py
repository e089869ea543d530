"""Small real parts for metric tests: those of the shipped conformance suite, and a linear model.

The tiny CNN, the gradient × input explainer, the masks and the batch are defined once, in
``xaisearch.testing.metrics``; ``batch`` and ``context`` are its ``small_batch`` and
``make_context`` under the short names the tests use.
"""

from __future__ import annotations

import torch
from torch import nn

from xaisearch.testing.metrics import CLASSES, SIZE, explainer, gradient_x_input, masks, tiny_cnn
from xaisearch.testing.metrics import make_context as context
from xaisearch.testing.metrics import small_batch as batch

__all__ = ["CLASSES", "SIZE", "LinearModel", "batch", "context", "explainer", "gradient_x_input", "masks", "tiny_cnn"]


class LinearModel(nn.Module):
    """f(x) = Σ w·x + b per class: every metric that perturbs inputs has a closed form on it.
    ``calls`` counts forwards (tests of caching)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        super().__init__()
        self.weight, self.bias = weight, bias
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return torch.einsum("bchw,kchw->bk", x, self.weight) + self.bias
