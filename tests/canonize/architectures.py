"""Small models for the canonizer tests, built from torchvision's own classes where one exists.

``UnseenNet`` is a model no architecture canonizer knows: BatchNorm on both sides of a padded
convolution, a right merge into a Linear head and a functional residual ``x + y`` in ``forward``.
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torchvision.models.efficientnet import EfficientNet, MBConvConfig
from torchvision.models.resnet import BasicBlock, ResNet


class UnseenNet(nn.Module):
    """stem Conv → BN (left) → ReLU; BN (right, through zero padding) → Conv(stride 2) → BN (left);
    a functional residual with a 1×1 skip conv; pooled features → BN1d (right) → Linear."""

    def __init__(self, num_classes: int = 5) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.stem_norm = nn.BatchNorm2d(8)
        self.pre_norm = nn.BatchNorm2d(8)
        self.conv = nn.Conv2d(8, 12, 3, stride=2, padding=1)
        self.post_norm = nn.BatchNorm2d(12)
        self.skip = nn.Conv2d(8, 12, 1, stride=2, bias=False)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head_norm = nn.BatchNorm1d(12)
        self.fc = nn.Linear(12, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.stem_norm(self.stem(x)))
        y = torch.relu(self.post_norm(self.conv(self.pre_norm(x))))
        z = y + self.skip(x)
        return self.fc(self.head_norm(self.pool(z).flatten(1)))


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


def mini_resnet(block: type[nn.Module] = BasicBlock) -> ResNet:
    """torchvision's ResNet with one block per stage (Bottleneck narrowed by ``width_per_group``)."""
    torch.manual_seed(0)
    width = 64 if block is BasicBlock else 16
    return ResNet(block, [1, 1, 1, 1], num_classes=5, width_per_group=width).eval()


def mini_efficientnet() -> EfficientNet:
    """torchvision's EfficientNet with three stages (two with a residual MBConv), SE in every block,
    and BN ε=1e-3 as in b5–b7."""
    torch.manual_seed(0)
    setting = [
        MBConvConfig(1, 3, 1, 16, 8, 1),
        MBConvConfig(6, 3, 2, 8, 16, 2),
        MBConvConfig(6, 5, 2, 16, 24, 2),
    ]
    norm = partial(nn.BatchNorm2d, eps=1e-3)
    return EfficientNet(setting, dropout=0.2, num_classes=5, norm_layer=norm).eval()


def zoo(name: str) -> nn.Module:
    """A torchvision builder with random weights and 10 classes. VGG gets a light head (global pool,
    512 → 64 → 10): its 25088 × 4096 Linear has no BN and would only slow the tests down."""
    torch.manual_seed(0)
    model = torchvision.models.get_model(name, weights=None, num_classes=10)
    if name.startswith("vgg"):
        model.avgpool = nn.AdaptiveAvgPool2d(1)
        model.classifier = nn.Sequential(nn.Linear(512, 64), nn.ReLU(), nn.Dropout(), nn.Linear(64, 10))
    return model.eval()


def zennit_guard(model: nn.Module):
    """``preserved_state`` under zennit ≥ 1.0 (which swaps parameter objects, upstream #237), a
    no-op under 0.5.1 — so with 0.5.1 a restore test checks the canonizer without any help."""
    from contextlib import nullcontext
    from importlib import metadata

    from xaisearch.integrity import preserved_state

    return preserved_state(model) if int(metadata.version("zennit").split(".")[0]) >= 1 else nullcontext()
