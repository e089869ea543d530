"""``auto`` traces a model once: later applications reuse the plan with fresh steps and today's weights."""

from __future__ import annotations

import torch
from torch import nn

from xaisearch.canonize import auto as auto_module
from xaisearch.canonize import get_canonizer
from xaisearch.canonize.verify import randomize_batchnorm
from xaisearch.testing.canonizers import UnseenNet


def counting_traces(monkeypatch) -> list[int]:
    traces: list[int] = []
    original = auto_module._StructureTracer.trace

    def trace(self, root, *args, **kwargs):
        traces.append(id(root))
        return original(self, root, *args, **kwargs)

    monkeypatch.setattr(auto_module._StructureTracer, "trace", trace)
    return traces


def canonized_output(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    handles = get_canonizer("auto", model).apply(model)  # a new canonizer each time, as composites build them
    try:
        with torch.no_grad():
            return model(x)
    finally:
        for handle in handles:
            handle.remove()


def model_and_input(seed: int = 0) -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(seed)
    model = UnseenNet().eval()
    randomize_batchnorm(model, torch.Generator().manual_seed(seed + 1))
    return model, torch.randn(2, 3, 16, 16)


def test_the_trace_runs_once_and_every_plan_has_its_own_steps(monkeypatch):
    traces = counting_traces(monkeypatch)
    model, x = model_and_input()
    first, second = (get_canonizer("auto").plan(model) for _ in range(2))
    assert len(traces) == 1
    assert len(first.steps) == len(second.steps) > 0
    assert all(a is not b for a, b in zip(first.steps, second.steps))
    assert first.folded == second.folded and first.unfolded == second.unfolded
    objects = dict(model.named_parameters()) | dict(model.named_buffers())
    with torch.no_grad():
        reference = model(x)
    for _ in range(3):
        torch.testing.assert_close(canonized_output(model, x), reference, rtol=1e-5, atol=1e-5)
    assert len(traces) == 1
    restored = dict(model.named_parameters()) | dict(model.named_buffers())
    assert restored.keys() == objects.keys() and all(restored[k] is objects[k] for k in objects)


def test_a_cached_plan_folds_the_weights_of_the_moment(monkeypatch):
    traces = counting_traces(monkeypatch)
    model, x = model_and_input()
    canonized_output(model, x)
    with torch.no_grad():
        model.conv.weight.mul_(-2.0)
        model.post_norm.running_var.mul_(3.0)
        reference = model(x)
    torch.testing.assert_close(canonized_output(model, x), reference, rtol=1e-5, atol=1e-5)
    assert len(traces) == 1


def test_a_swapped_module_or_another_model_is_traced_again(monkeypatch):
    traces = counting_traces(monkeypatch)
    model, x = model_and_input()
    canonized_output(model, x)
    model.skip = nn.Conv2d(8, 12, 1, stride=2, bias=False)
    with torch.no_grad():
        reference = model(x)
    torch.testing.assert_close(canonized_output(model, x), reference, rtol=1e-5, atol=1e-5)
    other, _ = model_and_input(seed=3)
    canonized_output(other, x)
    assert len(traces) == 3


def test_the_cache_keeps_no_model_alive():
    import gc
    import weakref

    model, x = model_and_input()  # its own forward has an addition: a step holds the root module
    canonized_output(model, x)
    assert len(auto_module._PLANS) >= 1
    gone = weakref.ref(model)
    del model
    gc.collect()
    assert gone() is None


class Switchable(nn.Module):
    """A forward that branches on a plain flag: the trace keeps the branch taken."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.norm = nn.BatchNorm2d(4)
        self.residual = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm(self.conv(x))
        return (y + x.mean(1, keepdim=True) if self.residual else y).flatten(1)


def test_changed_settings_classes_or_forwards_are_traced_again(monkeypatch):
    traces = counting_traces(monkeypatch)
    x = torch.randn(2, 3, 8, 8)
    model = Switchable().eval()
    randomize_batchnorm(model, torch.Generator().manual_seed(0))
    for change in (
        lambda m: setattr(m, "residual", False),
        lambda m: setattr(m.norm, "__class__", type("OtherNorm", (nn.BatchNorm2d,), {})),
        lambda m: setattr(m, "forward", lambda inputs: m.norm(m.conv(inputs)).flatten(1) * 2),
    ):
        canonized_output(model, x)
        before = len(traces)
        change(model)
        with torch.no_grad():
            reference = model(x)
        torch.testing.assert_close(canonized_output(model, x), reference, rtol=1e-5, atol=1e-5)
        assert len(traces) == before + 1
