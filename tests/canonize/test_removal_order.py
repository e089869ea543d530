"""Removal through zennit's Composite (which undoes handles first-to-last) restores exactly,
also where steps build on each other (a conv folded from both sides, swapped ReLUs)."""

import pytest
import torch
from torchvision.models import DenseNet
from zennit.composites import EpsilonPlus

from xaisearch.canonize import get_canonizer
from xaisearch.canonize.verify import randomize_batchnorm, restore_problems, state_snapshot
from xaisearch.models.mini import mini_vgg
from xaisearch.testing.canonizers import UnseenNet, mini_efficientnet, mini_resnet


@pytest.mark.parametrize(
    "name, build, size",
    [
        ("auto", UnseenNet, 16),
        ("vgg", mini_vgg, 48),
        ("resnet", mini_resnet, 32),
        ("efficientnet", mini_efficientnet, 32),
        ("densenet.thresh_seq", lambda: DenseNet(8, (2, 2, 2), 16, 2, num_classes=4), 32),
        ("densenet.untangled", lambda: DenseNet(8, (2, 2, 2), 16, 2, num_classes=4), 32),
    ],
)
def test_zennit_composite_removal_restores_the_model(name, build, size):
    torch.manual_seed(0)
    model = build().eval()
    randomize_batchnorm(model, torch.Generator().manual_seed(0))
    x = torch.rand(2, 3, size, size)
    before = model(x)
    identities, state = state_snapshot(model)
    composite = EpsilonPlus(canonizers=[get_canonizer(name)])
    for _ in range(2):  # register twice: a second apply must start from the restored model
        composite.register(model)
        composite.remove()
    assert restore_problems(model, identities, state) == []
    assert torch.equal(model(x), before)
