"""Relation Network canonizer: BN after ReLU folded right, last BN into g's object columns only."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from zennit.attribution import Gradient
from zennit.composites import LayerMapComposite
from zennit.layer import Sum
from zennit.rules import Epsilon, Norm, Pass
from zennit.types import Activation, AvgPool, BatchNorm
from zennit.types import Linear as AnyLinear

from tests.canonize.architectures import zennit_guard
from xaisearch.canonize import get_canonizer, verify_canonizer
from xaisearch.canonize.base import SurgeryStep
from xaisearch.canonize.relation_network import RelationNetworkCanonizer
from xaisearch.canonize.verify import randomize_batchnorm, restore_problems, state_snapshot, structure_snapshot
from xaisearch.models.relation_network import RelationNetwork, mini_relation_network


@pytest.fixture
def model() -> RelationNetwork:
    torch.manual_seed(0)
    model = mini_relation_network().eval()
    randomize_batchnorm(model, torch.Generator().manual_seed(1))
    model.set_question(torch.tensor([[5, 17, 3, 40, 0, 0]]), torch.tensor([4]))
    return model


@pytest.mark.parametrize("dtype, tolerance", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
def test_narrow_relation_network_keeps_its_function_and_restores_exactly(model, dtype, tolerance):
    report = verify_canonizer(model, get_canonizer(None, model), (3, 80, 80), dtype=dtype, batch_size=2)
    assert report.canonizer == "relation_network"
    assert report.bn_total == report.bn_folded == 4 and report.unfolded == {}
    assert report.max_rel_diff <= tolerance
    assert report.restored_exactly, report.restore_problems


def test_the_last_batchnorm_lands_in_the_object_columns_of_g_only(model):
    g1 = model.g[0]
    weight, bias = g1.weight.detach().clone(), g1.bias.detach().clone()
    handles = RelationNetworkCanonizer().apply(model)
    first, second = model.object_feature_columns
    assert (first, second) == (slice(0, 16), slice(18, 34))
    untouched = torch.ones(weight.shape[1], dtype=torch.bool)
    untouched[first] = untouched[second] = False  # coordinates 16:18 and 34:36, question 36:
    assert torch.equal(model.g[0].weight[:, untouched], weight[:, untouched])
    assert not torch.equal(model.g[0].weight[:, first], weight[:, first]) and not torch.equal(model.g[0].bias, bias)
    assert all(torch.equal(norm.running_var, torch.ones(16)) and norm.eps == 0 for norm in model.image_encoder[2::3])
    for handle in handles:
        handle.remove()
    assert model.g[0] is g1 and torch.equal(g1.weight, weight)


def test_relevance_is_conserved_on_a_bias_free_copy(model):
    """Σ R over g₁'s input equals the logit; Σ R over the image equals Σ R over the object-feature
    columns (coordinates and question are constant side inputs whose relevance leaves the image).

    The untrained narrow RN's logits are about 0.2, so the usual ε = 1e-6 alone costs 2e-4 here;
    the loss scales with ε (measured: 1e-4 → 1e-7 → 1e-10 for ε = 1e-6, 1e-9, 1e-12), so 1e-9
    tests the structure."""
    model = copy.deepcopy(model).double()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear, nn.BatchNorm2d)):
                module.bias.zero_()
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.zero_()
    captured = {}

    def capture(module, inputs, output):
        output.register_hook(lambda grad: captured.setdefault("pairs", grad))

    handle = model.append_question.register_forward_hook(capture)
    layer_map = [
        (Activation, Pass()),
        (BatchNorm, Pass()),
        (AvgPool, Norm(1e-9)),
        (Sum, Norm(1e-9)),
        (AnyLinear, Epsilon(1e-9)),
    ]
    x = torch.rand(2, 3, 80, 80, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    target = torch.tensor([1, 7])
    composite = LayerMapComposite(layer_map, canonizers=[RelationNetworkCanonizer()])
    with Gradient(model, composite) as attributor:
        output, relevance = attributor(x, lambda out: out * torch.eye(out.shape[-1], dtype=out.dtype)[target])
    handle.remove()
    logit = output.gather(1, target[:, None])[:, 0]
    pairs = captured["pairs"]
    first, second = model.object_feature_columns
    objects = pairs[..., first].sum((1, 2)) + pairs[..., second].sum((1, 2))
    torch.testing.assert_close(pairs.sum((1, 2)) / logit, torch.ones(2, dtype=torch.float64), rtol=0, atol=1e-4)
    torch.testing.assert_close(
        relevance.sum((1, 2, 3)) / objects, torch.ones(2, dtype=torch.float64), rtol=0, atol=1e-4
    )


def test_zennit_composite_restores_the_model_after_attribution(model):
    from zennit.composites import EpsilonPlusFlat

    identities, state = state_snapshot(model)
    structure = structure_snapshot(model)
    x = torch.rand(2, 3, 80, 80)
    before = model(x)
    with zennit_guard(model), Gradient(model, EpsilonPlusFlat(canonizers=[RelationNetworkCanonizer()])) as attributor:
        attributor(x.clone(), torch.eye(28)[[0, 1]])
    assert restore_problems(model, identities, state, structure) == []
    assert torch.equal(model(x), before)


def test_a_failing_step_leaves_the_model_unchanged(model):
    class Boom(SurgeryStep):
        def register(self):
            raise RuntimeError("boom")

        def remove(self):
            raise AssertionError("never registered, never removed")

    class FailsLast(RelationNetworkCanonizer):
        def plan(self, model):
            plan = super().plan(model)
            plan.steps.append(Boom())
            return plan

    identities, state = state_snapshot(model)
    structure = structure_snapshot(model)
    x = torch.rand(2, 3, 80, 80)
    before = model(x)
    with pytest.raises(RuntimeError, match="boom"):
        FailsLast().apply(model)
    assert restore_problems(model, identities, state, structure) == []
    assert torch.equal(model(x), before)


def test_other_models_are_refused_by_name():
    with pytest.raises(ValueError, match="needs a RelationNetwork"):
        RelationNetworkCanonizer().plan(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)))
