"""zennit 1.0.0 swaps a model's parameter objects during attributions (upstream #237); ours never do.

CI runs this file with zennit 0.5.1 (what Python 3.11.7 resolves) and again with 1.0.0, so both
branches below are exercised.
"""

from importlib import metadata

import torch
from zennit.attribution import Gradient
from zennit.composites import EpsilonPlusFlat

from xaisearch.canonize import get_canonizer
from xaisearch.canonize.verify import restore_problems, state_snapshot
from xaisearch.explain.methods import attribute

ZENNIT_1 = int(metadata.version("zennit").split(".")[0]) >= 1


def test_bare_zennit_changes_state_only_in_1_0(random_bn_vgg):
    identities, state = state_snapshot(random_bn_vgg)
    with Gradient(random_bn_vgg, EpsilonPlusFlat(canonizers=[get_canonizer("vgg")])) as attributor:
        attributor(torch.rand(2, 3, 48, 48), torch.eye(4)[[0, 1]])
    problems = restore_problems(random_bn_vgg, identities, state)
    assert bool(problems) == ZENNIT_1, problems[:3]


def test_our_attributions_leave_parameters_state_dict_and_optimizers_intact(random_bn_vgg):
    optimizer = torch.optim.SGD(random_bn_vgg.parameters(), lr=0.1)
    identities, state = state_snapshot(random_bn_vgg)
    composite = EpsilonPlusFlat(canonizers=[get_canonizer("vgg")])
    first = attribute(random_bn_vgg, composite, torch.ones(2, 3, 48, 48), torch.tensor([0, 1]))
    for _ in range(3):
        again = attribute(random_bn_vgg, composite, torch.ones(2, 3, 48, 48), torch.tensor([0, 1]))
    assert torch.equal(first, again)
    assert restore_problems(random_bn_vgg, identities, state) == []
    # the optimizer still trains the model's own parameters
    random_bn_vgg(torch.rand(2, 3, 48, 48)).sum().backward()
    before = [p.detach().clone() for p in random_bn_vgg.parameters()]
    optimizer.step()
    assert any(not torch.equal(b, p) for b, p in zip(before, random_bn_vgg.parameters()))
