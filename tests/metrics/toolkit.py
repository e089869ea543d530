"""Small real parts for metric tests: a tiny CNN, a gradient×input explainer, masks."""

from __future__ import annotations

import torch
from torch import nn

from xaisearch.metrics import ModelExplainer
from xaisearch.metrics.base import MetricContext

SIZE = 16
CLASSES = 3


def tiny_cnn(seed: int = 0, num_classes: int = CLASSES) -> nn.Module:
    """Two Conv-BN-ReLU-MaxPool blocks and a dense head (VGG's layout and names), eval mode,
    random BN statistics. Built directly: torchvision's VGG constructor initialises a 120 M
    parameter default head first (2 s)."""
    from xaisearch.canonize.verify import randomize_batchnorm

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        features = nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(4, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
        )  # fmt: skip
        classifier = nn.Sequential(nn.Linear(8 * 4 * 4, 8), nn.ReLU(), nn.Linear(8, num_classes))
        model = nn.Sequential()
        model.add_module("features", features)
        model.add_module("flatten", nn.Flatten())
        model.add_module("classifier", classifier)
    randomize_batchnorm(model.eval(), torch.Generator().manual_seed(seed + 1))
    return model


def gradient_x_input(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Gradient × input of the target logit, by autograd (no zennit): a cheap, exact explainer."""
    with torch.enable_grad():
        leaf = x.detach().clone().requires_grad_(True)
        logits = model(leaf)
        (grad,) = torch.autograd.grad(logits.gather(1, y.view(-1, 1)).sum(), leaf)
    return (grad * leaf).detach()


def explainer(model: nn.Module) -> ModelExplainer:
    return ModelExplainer(model, gradient_x_input)


def masks(batch: int, size: int = SIZE, seed: int = 0) -> torch.Tensor:
    """B×1×H×W boxes of different sizes and places."""
    g = torch.Generator().manual_seed(seed)
    s = torch.zeros(batch, 1, size, size)
    for i in range(batch):
        top, left = torch.randint(0, size // 2, (2,), generator=g).tolist()
        s[i, 0, top : top + 3 + i, left : left + 5] = 1
    return s


def batch(batch_size: int = 3, seed: int = 0, model: nn.Module | None = None, classes: int = CLASSES):
    """(model, x, y, a, s) with a = gradient × input of the model."""
    model = model or tiny_cnn(seed)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch_size, 3, SIZE, SIZE, generator=g)
    y = torch.arange(batch_size) % classes
    return model, x, y, gradient_x_input(model, x, y), masks(batch_size, seed=seed)


def context(model, x, y, a, s, **caches) -> MetricContext:
    return MetricContext(x=x, y=y, a=a, s=s, model=model, explainer=explainer(model), **caches)


class LinearModel(nn.Module):
    """f(x) = Σ w·x + b per class: every metric that perturbs inputs has a closed form on it.
    ``calls`` counts forwards (tests of caching)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor):
        super().__init__()
        self.weight, self.bias = weight, bias
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return torch.einsum("bchw,kchw->bk", x, self.weight) + self.bias
