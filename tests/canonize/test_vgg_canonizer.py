import copy

import pytest
import torch
import torchvision

from xaisearch.canonize import get_canonizer, verify_canonizer
from xaisearch.canonize.base import CanonizationPlan, Canonizer, SurgeryStep
from xaisearch.canonize.fold_left import FoldBatchNormLeft
from xaisearch.canonize.verify import restore_problems, state_snapshot
from xaisearch.models.mini import mini_vgg


@pytest.mark.parametrize("dtype, tolerance", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
def test_mini_vgg_keeps_its_function_and_restores_exactly(dtype, tolerance):
    model = mini_vgg().eval()
    report = verify_canonizer(model, get_canonizer(None, model), (3, 48, 48), dtype=dtype)
    assert report.canonizer == "vgg"
    assert report.bn_total == report.bn_folded == 4 and report.unfolded == {}
    assert report.max_rel_diff <= tolerance
    assert report.restored_exactly, report.restore_problems


def test_torchvision_vgg_bn_is_fully_folded():
    model = torchvision.models.vgg11_bn(num_classes=10).eval()
    report = verify_canonizer(model, get_canonizer("vgg"), (3, 32, 32), dtype=torch.float64, batch_size=2)
    assert report.bn_folded == report.bn_total == 8
    assert report.max_rel_diff <= 1e-10 and report.restored_exactly


def test_folding_actually_changes_the_model_while_applied(random_bn_vgg):
    canonizer = get_canonizer("vgg")
    conv = random_bn_vgg.features[0]
    original_weight = conv.weight
    handles = canonizer.apply(random_bn_vgg)
    assert conv.weight is not original_weight and not torch.equal(conv.weight, original_weight)
    norm = random_bn_vgg.features[1]
    assert norm.eps == 0 and torch.equal(norm.running_var, torch.ones_like(norm.running_var))
    for handle in reversed(handles):
        handle.remove()
    assert conv.weight is original_weight


def test_an_uncanonized_bn_changes_outputs_so_the_check_has_teeth(random_bn_vgg):
    """Folding only the weights but not the BN would double-apply BN; verify must see that."""

    class HalfFold(Canonizer):
        name = "half"

        def plan(self, model):
            step = FoldBatchNormLeft(model.features[0], model.features[1], "features.0", "features.1")
            step._identity.register = lambda: None  # forget to neutralise the BN
            step._identity.remove = lambda: None
            return CanonizationPlan(steps=[step], batchnorms=["features.1"], folded=["features.1"])

    report = verify_canonizer(random_bn_vgg, HalfFold(), (3, 48, 48))
    assert report.max_rel_diff > 1e-3


def test_failed_apply_leaves_the_model_unchanged(random_bn_vgg):
    class Boom(SurgeryStep):
        def register(self):
            raise RuntimeError("boom")

        def remove(self):
            raise AssertionError("a step that never registered is never removed")

    class FailsHalfway(Canonizer):
        name = "fails"

        def plan(self, model):
            plan = get_canonizer("vgg").plan(model)
            plan.steps.insert(2, Boom())
            return plan

    identities, state = state_snapshot(random_bn_vgg)
    x = torch.rand(2, 3, 48, 48)
    before = random_bn_vgg(x)
    with pytest.raises(RuntimeError, match="boom"):
        FailsHalfway().apply(random_bn_vgg)
    assert restore_problems(random_bn_vgg, identities, state) == []
    assert torch.equal(random_bn_vgg(x), before)


def test_train_mode_is_refused():
    model = mini_vgg().train()
    with pytest.raises(ValueError, match="eval"):
        get_canonizer("vgg").apply(model)


def test_none_canonizer_reports_every_bn_as_unfolded():
    report = verify_canonizer(mini_vgg().eval(), get_canonizer("none"), (3, 48, 48))
    assert report.bn_folded == 0 and len(report.unfolded) == 4 and report.max_abs_diff == 0


def test_model_state_survives_many_attributions(random_bn_vgg):
    """Parameters, state_dict and an optimizer built before attributions stay intact."""
    from zennit.composites import EpsilonGammaBox

    from xaisearch.explain.methods import attribute

    optimizer = torch.optim.SGD(random_bn_vgg.parameters(), lr=0.1)
    identities, state = state_snapshot(random_bn_vgg)
    composite = EpsilonGammaBox(low=0.0, high=1.0, canonizers=[get_canonizer("vgg")])
    for _ in range(3):
        attribute(random_bn_vgg, composite, torch.rand(2, 3, 48, 48), torch.tensor([0, 1]))
    assert restore_problems(random_bn_vgg, identities, state) == []
    assert [id(p) for group in optimizer.param_groups for p in group["params"]] == [
        id(p) for p in random_bn_vgg.parameters()
    ]
    copy.deepcopy(random_bn_vgg)  # still a plain, copyable module


def _sync_batchnorm_vgg() -> torch.nn.Module:
    """torchvision's VGG ``make_layers`` with every BatchNorm2d a SyncBatchNorm (eval mode runs on CPU)."""
    from torchvision.models.vgg import make_layers

    torch.manual_seed(0)
    features = torch.nn.SyncBatchNorm.convert_sync_batchnorm(make_layers([8, "M", 16, 16, "M"], batch_norm=True))
    head = torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(16 * 8 * 8, 10), torch.nn.SyncBatchNorm(10), torch.nn.Linear(10, 4)
    )
    return torch.nn.Sequential(features, head).eval()


def test_sync_batchnorm_in_a_vgg_is_folded_or_reported():
    """One definition of "a BatchNorm" for every canonizer: the VGG canonizer once counted only
    BatchNorm1d/2d/3d, so a SyncBatchNorm was neither folded nor reported."""
    model = _sync_batchnorm_vgg()
    names = [n for n, m in model.named_modules() if isinstance(m, torch.nn.SyncBatchNorm)]
    assert len(names) == 4
    plan = get_canonizer("vgg").plan(model)
    assert sorted(plan.batchnorms) == sorted(names)
    assert all(name in plan.folded or plan.unfolded.get(name) for name in names)
    assert plan.folded == names  # each follows a Conv/Linear in an nn.Sequential
    report = verify_canonizer(model, get_canonizer("vgg"), (3, 32, 32), dtype=torch.float64, batch_size=2)
    assert report.bn_total == report.bn_folded == 4 and report.unfolded == {}
    assert report.passed(), report
