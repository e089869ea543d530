"""The canonizer guard: a canonizer that changes the function, or does not restore the model, is refused
in one line naming the first module whose output differs, before a search or ``canonize`` uses it."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
import torchvision
import yaml
from torch import nn

from tests.search.conftest import TINY_STUDY
from xaisearch.canonize.base import CanonizationPlan, Canonizer, ReplaceForward, SurgeryStep, swap_tensor
from xaisearch.canonize.catalog import CANONIZERS
from xaisearch.canonize.guard import MODEL_OUTPUT, check_function_kept, guard_canonizer
from xaisearch.canonize.registry import get_canonizer
from xaisearch.canonize.verify import randomize_batchnorm, restore_problems, state_snapshot, structure_snapshot
from xaisearch.cli import main
from xaisearch.errors import InputError
from xaisearch.models.mini import mini_vgg


class ScaledWeight(SurgeryStep):
    """Multiplies a layer's weight by ``factor`` (reversibly): a fold with a wrong scale."""

    def __init__(self, layer: nn.Module, name: str, factor: float = 1.5) -> None:
        self.layer, self.factor, self.description = layer, factor, f"{name}: weight scaled by {factor}"
        self._original: torch.Tensor | None = None

    def register(self) -> None:
        self._original = swap_tensor(self.layer, "weight", self.layer.weight.detach() * self.factor)

    def remove(self) -> None:
        swap_tensor(self.layer, "weight", self._original)


class NewWeightObject(SurgeryStep):
    """Keeps the values but never puts the original ``Parameter`` object back: restore is not exact."""

    description = "weight replaced by an equal copy, never put back"

    def __init__(self, layer: nn.Module) -> None:
        self.layer = layer

    def register(self) -> None:
        swap_tensor(self.layer, "weight", self.layer.weight.detach().clone())

    def remove(self) -> None:
        pass


class BrokenFold(Canonizer):
    """The registered canonizer's plan plus one extra step that breaks it (``broken(model)``)."""

    def __init__(self, inner: str, broken: str = "", step: type[SurgeryStep] = ScaledWeight) -> None:
        self.inner, self.broken, self.step = inner, broken, step
        self.name = f"broken_{inner}"

    def plan(self, model: nn.Module) -> CanonizationPlan:
        plan = get_canonizer(self.inner).plan(model)
        layer = model.get_submodule(self.broken)
        plan.steps.append(ScaledWeight(layer, self.broken) if self.step is ScaledWeight else self.step(layer))
        return plan


def _scaled_output(self: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return type(self).forward(self, x) * 1.001


class ScaledOutput(Canonizer):
    """Scales the model's output in the root's own forward: no leaf module's output changes."""

    name = "scaled_output"

    def plan(self, model: nn.Module) -> CanonizationPlan:
        return CanonizationPlan(steps=[ReplaceForward(model, _scaled_output, description="output scaled")])


def random_bn(model: nn.Module) -> nn.Module:
    randomize_batchnorm(model.eval(), torch.Generator().manual_seed(1))
    return model


def resnet18() -> nn.Module:
    return random_bn(torchvision.models.resnet18(num_classes=10))


def vgg() -> nn.Module:
    return random_bn(mini_vgg(image_size=32))


def images(size: int = 32) -> torch.Tensor:
    return torch.randn(4, 3, size, size, generator=torch.Generator().manual_seed(2))


@pytest.mark.parametrize(
    "build, canonizer",
    [(vgg, "vgg"), (vgg, "auto"), (resnet18, "resnet"), (resnet18, "auto")],
    ids=["mini_vgg-vgg", "mini_vgg-auto", "resnet18-resnet", "resnet18-auto"],
)
def test_the_shipped_canonizers_pass_in_two_forwards_and_the_model_is_untouched(build, canonizer):
    model = build()
    identities, state = state_snapshot(model)
    structure = structure_snapshot(model)
    forwards = []
    counter = model.register_forward_hook(lambda *_: forwards.append(1))  # deep copies carry it
    result = guard_canonizer(model, get_canonizer(canonizer), images(), "net")
    counter.remove()
    assert result.passed() and result.dtype == "float64" and result.images == 2
    assert result.max_rel_diff < 1e-12 and result.fallback is None and result.diverging is None
    assert len(forwards) == 2  # original and canonized; restore is checked without a forward
    assert restore_problems(model, identities, state, structure) == []


@pytest.mark.parametrize(
    "build, inner, broken, named",
    [
        (vgg, "vgg", "features.8", "features.9 (BatchNorm2d, after features.8)"),
        (resnet18, "resnet", "layer3.1.conv1", "layer3.1.bn1 (BatchNorm2d, after layer3.1.conv1)"),
        (resnet18, "auto", "layer2.0.downsample.0", "layer2.0.downsample.1 (BatchNorm2d, after layer2.0.downsample.0)"),
        (vgg, "vgg", "classifier.2", "classifier.2 (Linear)"),  # a layer no BN follows is named itself
    ],
    ids=["mini_vgg-vgg", "resnet18-resnet", "resnet18-auto", "mini_vgg-head"],
)
def test_a_broken_fold_is_refused_naming_the_first_module_that_differs(build, inner, broken, named):
    model = build()
    state = copy.deepcopy(model.state_dict())
    with pytest.raises(InputError) as refused:
        guard_canonizer(model, BrokenFold(inner, broken), images(), "net", alternatives=(inner, "auto"))
    message = str(refused.value)
    assert "\n" not in message
    assert message.startswith(f"canonizer: 'broken_{inner}' changes what net computes: its output differs by ")
    assert f"(float64, 2 images, bound 1e-08), first at {named}, by " in message
    others = "canonizer: auto" if inner == "auto" else f"canonizer: {inner}, canonizer: auto"
    assert message.endswith(f"; use {others} or canonizer: none")
    assert all(torch.equal(value, state[key]) for key, value in model.state_dict().items())


def test_a_change_no_module_shows_is_put_on_the_model_output():
    result = check_function_kept(vgg(), ScaledOutput(), images())
    assert not result.passed() and result.diverging == MODEL_OUTPUT
    with pytest.raises(InputError, match="no module's output differs beyond the bound, only the model output"):
        guard_canonizer(vgg(), ScaledOutput(), images(), "net")


def test_a_canonizer_that_does_not_restore_exactly_is_refused():
    canonizer = BrokenFold("vgg", "classifier.2", step=NewWeightObject)
    with pytest.raises(InputError) as refused:
        guard_canonizer(vgg(), canonizer, images(), "mini_vgg", field="--canonizer")
    message = str(refused.value)
    assert message.startswith("--canonizer: 'broken_vgg' does not restore mini_vgg exactly after remove() (")
    assert "parameter classifier.2.weight is a new object" in message
    assert message.endswith("; use --canonizer auto or --canonizer none")


class Float32Only(nn.Module):
    """A model that refuses float64 (as one with a float32-only kernel or tensor attribute would)."""

    def __init__(self) -> None:
        super().__init__()
        self.net = mini_vgg(image_size=32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype != torch.float32:
            raise TypeError(f"Float32Only takes float32 images, not {x.dtype}")
        return self.net(x)


def test_a_model_that_refuses_float64_is_checked_in_float32_against_its_own_noise():
    model = random_bn(Float32Only())
    kept = check_function_kept(model, get_canonizer("vgg"), images())
    assert kept.passed() and kept.dtype == "float32" and "Float32Only takes float32 images" in (kept.fallback or "")
    assert 1e-5 <= kept.bound < 1e-3 and kept.max_rel_diff < kept.bound
    broken = check_function_kept(model, BrokenFold("vgg", "net.features.8"), images())
    assert not broken.passed() and broken.diverging == "net.features.9 (BatchNorm2d, after net.features.8)"


def test_none_is_not_checked():
    result = check_function_kept(vgg(), get_canonizer("none"), images())
    assert result.passed() and result.max_rel_diff == 0.0


@pytest.fixture
def broken_registered(monkeypatch):
    """``broken_vgg`` (the VGG folds, ``features.8`` scaled) in the canonizer registry, for this test only."""
    monkeypatch.setitem(CANONIZERS._entries, "broken_vgg", lambda: BrokenFold("vgg", "features.8"))


def study_file(tmp_path: Path, **model: object) -> Path:
    study = copy.deepcopy(TINY_STUDY)
    study["canonizer"] = "broken_vgg"
    study["model"].update(model)
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study))
    return path


def one_line_refusal(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[str, str]:
    """Exit code 2 and one line on stderr; returns that line and stdout."""
    assert main(argv) == 2
    printed = capsys.readouterr()
    err = printed.err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err, printed.out


def test_run_refuses_a_broken_canonizer_before_training(broken_registered, tmp_path, capsys):
    out = tmp_path / "run"
    err, _ = one_line_refusal(["run", str(study_file(tmp_path)), "--out", str(out)], capsys)
    assert err.startswith("error: canonizer: 'broken_vgg' changes what mini_vgg computes")
    assert "first at features.9 (BatchNorm2d, after features.8)" in err
    assert not out.exists()  # nothing trained, nothing written


def test_a_worker_refuses_a_broken_canonizer_on_the_study_images_before_any_trial(broken_registered, tmp_path):
    from xaisearch.search.workbench import Workbench
    from xaisearch.spec import load_spec

    weights = tmp_path / "mini_vgg.pt"
    torch.save(random_bn(mini_vgg(image_size=32)).state_dict(), weights)
    spec = load_spec(study_file(tmp_path, weights=str(weights)))
    with pytest.raises(InputError) as refused:
        Workbench.prepare(spec, tmp_path / "run", torch.device("cpu"), allow_training=False)
    assert "\n" not in str(refused.value)
    assert "first at features.9 (BatchNorm2d, after features.8)" in str(refused.value)
    assert "use canonizer: vgg, canonizer: auto or canonizer: none" in str(refused.value)


def test_canonize_keeps_its_report_and_exits_2_naming_the_module(broken_registered, capsys):
    argv = ["canonize", "mini_vgg", "--canonizer", "broken_vgg", "--input-size", "32"]
    err, out = one_line_refusal(argv, capsys)
    assert err.startswith("error: --canonizer: 'broken_vgg' changes what mini_vgg computes")
    assert "first at features.9 (BatchNorm2d, after features.8)" in err
    assert err.endswith("; use --canonizer vgg, --canonizer auto or --canonizer none")
    assert "BatchNorm: 4 total, 4 folded, 0 unfolded" in out and "  features.8: weight scaled by 1.5" in out
    assert "guard (float64, 2 images)" in out and out.strip().endswith("REFUSED")


def test_canonize_reports_the_guard(capsys):
    assert main(["canonize", "mini_vgg", "--input-size", "32", "--json"]) == 0
    guard = json.loads(capsys.readouterr().out)["guard"]
    assert guard["passed"] is True and guard["dtype"] == "float64" and guard["max_rel_diff"] < 1e-12
    assert main(["canonize", "mini_vgg", "--input-size", "32"]) == 0
    assert "guard (float64, 2 images): max rel " in capsys.readouterr().out


def test_a_canonizer_for_another_architecture_is_one_line():
    with pytest.raises(InputError) as refused:
        guard_canonizer(vgg(), get_canonizer("relation_network"), images(), "mini_vgg", alternatives=("vgg", "auto"))
    message = str(refused.value)
    assert "\n" not in message and message.startswith("canonizer: canonizer 'relation_network' needs a RelationNetwork")
    assert message.endswith("; use canonizer: vgg, canonizer: auto or canonizer: none")
