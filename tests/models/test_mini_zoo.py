"""The mini zoo: torchvision's ResNet, EfficientNet and DenseNet classes at shapes-benchmark size.

Each model is trained once per module by the package's own trainer (``train_mini_model``) on a
small recipe; the canonizers are then verified on the *trained* weights and BatchNorm statistics
(function kept, exact restore, every BN folded, relevance conserved on a bias-free copy). The
demo recipes' ≥ 90 % held-out accuracy is measured, not asserted here: it takes minutes.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn
from torchvision.models.densenet import DenseNet, _DenseLayer, _Transition
from torchvision.models.efficientnet import EfficientNet, MBConv
from torchvision.models.resnet import BasicBlock, ResNet
from torchvision.ops.misc import SqueezeExcitation

from xaisearch.canonize import canonizer_name_for, get_canonizer, verify_canonizer
from xaisearch.explain.groups import linear_layers, named_groups
from xaisearch.models.ref import ModelRef
from xaisearch.models.zoo import MINI_MODELS, build_architecture
from xaisearch.search.model_preparation import train_mini_model
from xaisearch.spec import ModelSpec, TrainingSpec, load_spec

STUDIES = Path(__file__).resolve().parents[2] / "studies"
SHAPE = (3, 48, 48)

# name: (zoo class, block types it must hold, its canonizer, its demo study)
MINI_ZOO: dict[str, tuple[type[nn.Module], tuple[type[nn.Module], ...], str, str]] = {
    "mini_resnet": (ResNet, (BasicBlock,), "resnet", "demo-resnet.yaml"),
    "mini_efficientnet": (EfficientNet, (MBConv, SqueezeExcitation), "efficientnet", "demo-efficientnet.yaml"),
    "mini_densenet": (DenseNet, (_DenseLayer, _Transition), "densenet.thresh_seq.paper", "demo-densenet.yaml"),
}
# about 150 steps: fewer leave the ResNet and DenseNet at chance on held-out scenes while they already
# memorise the training ones (measured: 2 epochs of 512 scenes, ResNet 96 % train, 25 % test)
Trained = dict[str, tuple[nn.Module, dict]]  # name: (model, training record)
SMALL_RECIPE = TrainingSpec(n_train=1536, n_test=256, epochs=3, learning_rate=3e-3, min_accuracy=0.0)


def build(name: str) -> nn.Module:
    torch.manual_seed(0)
    return build_architecture(ModelRef(name=name, num_classes=4, input_shape=SHAPE)).eval()


@pytest.fixture(scope="module")
def trained() -> Trained:
    """Each mini model after ``SMALL_RECIPE``, with its training record; trained once for the module."""
    models = {}
    for name in MINI_ZOO:
        spec = ModelSpec(name=name, num_classes=4, input_shape=SHAPE, training=SMALL_RECIPE)
        models[name] = train_mini_model(spec, torch.device("cpu"))
    return models


@pytest.mark.parametrize("name", MINI_ZOO)
def test_builds_from_the_zoo_classes_with_the_zoo_canonizer(name: str) -> None:
    zoo_class, blocks, canonizer, _ = MINI_ZOO[name]
    model = build(name)
    assert name in MINI_MODELS
    assert type(model) is zoo_class
    held = {type(module) for module in model.modules()}
    assert all(block in held for block in blocks), (blocks, held)
    assert canonizer_name_for(model) == canonizer
    assert model(torch.rand(2, *SHAPE)).shape == (2, 4)
    assert 10_000 <= sum(p.numel() for p in model.parameters()) <= 400_000


def test_the_resnet_keeps_the_zoo_module_names() -> None:
    model = build("mini_resnet")
    names = [name for name, _ in model.named_children()]
    assert names == ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4", "avgpool", "fc"]
    widths = [model.get_submodule(f"layer{i}.0.conv2").out_channels for i in range(1, 5)]
    assert widths == [16, 32, 64, 128]


@pytest.mark.parametrize("name", MINI_ZOO)
def test_the_small_recipe_beats_chance_and_leaves_the_model_in_eval_mode(name: str, trained: Trained) -> None:
    model, record = trained[name]
    assert not model.training
    assert record["test_accuracy"] >= 0.35, record  # chance: 0.25 ± 0.03 on 256 scenes; measured 0.45 to 0.79


@pytest.mark.parametrize("name", MINI_ZOO)
@pytest.mark.parametrize("dtype, tolerance", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
def test_the_canonizer_keeps_the_trained_function_folds_every_bn_and_conserves(
    name: str, dtype: torch.dtype, tolerance: float, trained: Trained
) -> None:
    """On the trained weights and BN statistics (not random ones); float64 also checks Σ R_in / logit
    on a bias-free copy under LRP-ε, batch = one by one, the state after attribution and atomicity."""
    model, _ = trained[name]
    canonizer = MINI_ZOO[name][2]
    checks = dtype == torch.float64
    report = verify_canonizer(
        model,
        get_canonizer(canonizer),
        SHAPE,
        dtype=dtype,
        batch_size=2,
        randomize_bn=False,
        relevance=checks,
        atomicity=checks,
    )
    assert report.max_rel_diff <= tolerance, report.max_rel_diff
    assert report.restored_exactly, report.restore_problems
    assert report.bn_total > 0 and report.bn_folded == report.bn_total and report.unfolded == {}
    if checks:
        assert report.conservation_error is not None and report.conservation_error <= 1e-4, report.conservation_ratios
        assert report.atomicity_problems == [] and report.attribution_problems == []
    assert report.passed(tolerance), report


@pytest.mark.parametrize("name", MINI_ZOO)
def test_the_demo_study_trains_this_model_and_groups_every_layer_once(name: str) -> None:
    _, _, canonizer, study = MINI_ZOO[name]
    spec = load_spec(STUDIES / study)
    assert (spec.model.name, spec.canonizer) == (name, canonizer)
    assert spec.model.weights is None  # trained by xaisearch
    model = build(name)
    patterns = spec.search_space.layer_groups
    assert isinstance(patterns, dict)  # named stages, not depth thirds
    groups = named_groups(model, SHAPE, patterns)
    grouped = [layer for layers in groups.values() for layer in layers]
    assert sorted(grouped) == sorted(layer for layer, _ in linear_layers(model, SHAPE))
    assert set(groups) == set(spec.search_space.groups)
