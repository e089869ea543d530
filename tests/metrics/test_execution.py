"""How metric passes run: channels-last where the model allows it, explanations in budgeted chunks."""

from __future__ import annotations

import torch
from torch import nn

from tests.metrics.toolkit import CLASSES, SIZE, batch, gradient_x_input, tiny_cnn
from xaisearch.metrics import ModelExplainer, evaluate
from xaisearch.metrics.execution import (
    MIN_IMAGES_PER_EXPLANATION,
    channels_last_ok,
    explain_in_chunks,
    fast_layout,
    forward,
    images_per_explanation,
)


class ViewsItsInput(nn.Module):
    """A classic MLP-on-images that calls ``view`` on its input: fails on a channels-last tensor."""

    def __init__(self) -> None:
        super().__init__()
        self.dense = nn.Linear(3 * SIZE * SIZE, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dense(x.view(len(x), -1))


class IgnoresStrides(nn.Module):
    """Reads raw storage order (as a kernel that ignores strides would): wrong, silently, on NHWC."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raw = torch.as_strided(x, (len(x), x[0].numel()), (x[0].numel(), 1))
        return raw[:, :CLASSES] * 1.0


def test_a_cnn_runs_channels_last_on_cpu_with_the_same_outputs():
    model, x, *_ = batch(4)
    assert channels_last_ok(model, x)
    assert fast_layout(model, x).is_contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        torch.testing.assert_close(forward(model, x), model(x), rtol=1e-5, atol=1e-6)


def test_models_that_cannot_take_channels_last_keep_the_contiguous_layout():
    x = torch.randn(2, 3, SIZE, SIZE)
    for model in (ViewsItsInput(), IgnoresStrides()):
        assert not channels_last_ok(model, x), type(model).__name__
        assert fast_layout(model, x) is x
        with torch.no_grad():
            assert torch.equal(forward(model, x), model(x))


def test_the_probe_runs_again_when_a_module_is_swapped_in_place():
    model, x, *_ = batch(2)
    assert channels_last_ok(model, x)
    model.flatten = ViewsItsInput()  # now views a channels-last conv output
    model.classifier = nn.Identity()
    assert not channels_last_ok(model, x)


def test_only_4d_inputs_on_a_channels_last_device_are_converted():
    model = tiny_cnn()
    assert not channels_last_ok(model, torch.randn(3, SIZE, SIZE))  # no batch dimension
    assert not channels_last_ok(model, torch.randn(0, 3, SIZE, SIZE))


def test_a_model_in_train_mode_is_not_probed():
    model = tiny_cnn().train()
    statistics = {name: b.clone() for name, b in model.named_buffers()}
    assert not channels_last_ok(model, torch.randn(2, 3, SIZE, SIZE))
    assert all(torch.equal(b, statistics[name]) for name, b in model.named_buffers())


def test_explanations_run_in_chunks_of_the_budget_and_equal_one_call():
    model, x, y, *_ = batch(10)
    sizes: list[int] = []
    spy = ModelExplainer(model, lambda m, xs, ys: (sizes.append(len(xs)), gradient_x_input(m, xs, ys))[1])
    per_image = x[0].numel() * x.element_size() * 4
    a = explain_in_chunks(spy, model, x, y, memory_budget=3 * per_image)
    assert sizes == [3, 3, 3, 1]
    assert a.is_contiguous() and not a.requires_grad
    torch.testing.assert_close(a, gradient_x_input(model, x, y), rtol=1e-5, atol=1e-6)
    assert images_per_explanation(x, 3 * per_image) == 3
    assert images_per_explanation(x, 1) == 1  # an explicit budget is followed exactly
    large = torch.zeros(2, 3, 224, 224)
    assert images_per_explanation(large, None) == MIN_IMAGES_PER_EXPLANATION  # the default has a floor


def test_scores_do_not_depend_on_the_chunks(monkeypatch):
    from xaisearch.metrics import execution

    model, x, y, a, s = batch(4)
    explainer = ModelExplainer(model, gradient_x_input)
    names = ("avg_sensitivity", "random_logit", "pixel_flipping")
    whole = {name: evaluate(name, model, x, y, a, s, explainer=explainer) for name in names}
    monkeypatch.setattr(execution, "CPU_MEMORY_BUDGET", 1)  # one image per explanation, one copy per forward
    for name in names:
        torch.testing.assert_close(evaluate(name, model, x, y, a, s, explainer=explainer), whole[name])


def test_canonized_explanations_are_the_same_on_channels_last_inputs():
    """The probe sees the plain model; the composite canonizes it: our surgery must take NHWC too."""
    import torchvision
    from torchvision.models.densenet import DenseNet
    from zennit.composites import EpsilonPlusFlat

    from xaisearch.canonize import canonizer_name_for, get_canonizer
    from xaisearch.canonize.verify import randomize_batchnorm
    from xaisearch.explain.methods import attribute

    torch.manual_seed(0)
    models = [
        DenseNet(growth_rate=8, block_config=(2, 2), num_init_features=16, bn_size=2, num_classes=4),
        torchvision.models.resnet18(num_classes=4),
        torchvision.models.efficientnet_b0(num_classes=4),
    ]
    x = torch.randn(2, 3, 32, 32)
    y = torch.tensor([0, 3])
    for model in models:
        randomize_batchnorm(model.eval(), torch.Generator().manual_seed(1))
        composite = EpsilonPlusFlat(canonizers=[get_canonizer(canonizer_name_for(model), model)])
        assert channels_last_ok(model, x), type(model).__name__
        plain = attribute(model, composite, x, y)
        explainer = ModelExplainer(model, lambda net, xs, ys, composite=composite: attribute(net, composite, xs, ys))
        fast = explain_in_chunks(explainer, model, x, y)
        torch.testing.assert_close(fast, plain, rtol=1e-4, atol=1e-6 * float(plain.abs().max()))
