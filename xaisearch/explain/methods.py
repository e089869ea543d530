"""Build zennit composites and attributors from configs and compute attributions with them.

``build_attributor`` is the one dispatch from a config's ``method`` (``explain.baselines``) to
zennit: LRP and the composite-only methods (gradient, guided backprop, excitation backprop) run
zennit's ``Gradient`` with their composite; input × gradient, SmoothGrad and integrated gradients
run their own attributor with a composite that only canonizes. Every method keeps the canonizer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from zennit.core import Composite

from xaisearch.canonize.registry import get_canonizer
from xaisearch.explain.baselines import METHODS
from xaisearch.explain.config import ExplainerConfig
from xaisearch.explain.groups import CONV_TYPES
from xaisearch.explain.rules import make_rule
from xaisearch.integrity import preserved_state

if TYPE_CHECKING:
    from zennit.attribution import Attributor


def runs_with_gradient(config: ExplainerConfig) -> bool:
    """Whether zennit's ``Gradient`` with ``build_composite``'s composite gives ``config``'s attributions."""
    return METHODS[config.method].attributor == "gradient"


def build_composite(config: ExplainerConfig, model: nn.Module) -> Composite:
    """The zennit composite of a method that runs with zennit's ``Gradient``, its canonizer attached.

    Refused (``ValueError``) for input × gradient, SmoothGrad and integrated gradients: with a
    composite and ``Gradient`` they would silently give the plain gradient; use ``build_attributor``.
    """
    if not runs_with_gradient(config):
        raise ValueError(
            f"method {config.method!r} is not a composite for zennit's Gradient; build its attributor "
            "(xaisearch.attributor_from_config)"
        )
    return method_composite(config, model)


def method_composite(config: ExplainerConfig, model: nn.Module) -> Composite:
    """The composite ``config``'s method runs with, its canonizer attached (for every method).

    LRP: named layers get their group's rule; activations and (folded) BatchNorms pass relevance
    through, average pooling and ``Sum`` modules split it proportionally (zennit's base map).
    Every Conv/Linear of an LRP config must have a rule: a layer without one would silently
    fall back to the plain gradient. Guided and excitation backprop: zennit's composites.
    The attributor methods: the canonizer alone.
    """
    from zennit.composites import ExcitationBackprop, GuidedBackprop

    canonizers = [get_canonizer(config.canonizer, model)]
    kind = METHODS[config.method].composite
    if kind == "guided_backprop":
        return GuidedBackprop(canonizers=canonizers)
    if kind == "excitation_backprop":
        return ExcitationBackprop(canonizers=canonizers)
    if kind == "none":
        return Composite(module_map=None, canonizers=canonizers)
    return _lrp_composite(config, model, canonizers)


def _lrp_composite(config: ExplainerConfig, model: nn.Module, canonizers: list[Any]) -> Composite:
    from zennit.layer import Sum
    from zennit.rules import Norm, Pass
    from zennit.types import Activation, AvgPool, BatchNorm

    names = {name for name, _ in model.named_modules()}
    rule_specs = config.rule_by_layer()
    missing = sorted(set(rule_specs) - names)
    if missing:
        raise ValueError(f"config names layers the model does not have: {missing[:5]}; was it made for another model?")
    uncovered = [n for n, m in model.named_modules() if isinstance(m, (nn.Linear, *CONV_TYPES)) and n not in rule_specs]
    if uncovered:
        raise ValueError(f"layers without a rule would get the plain gradient: {uncovered[:5]}; add them to a group")
    templates = {layer: make_rule(spec.rule, spec.params) for layer, spec in rule_specs.items()}
    passthrough, proportional = Pass(), Norm()

    def module_map(ctx: dict, name: str, module: nn.Module) -> Any:
        if name in templates:
            return templates[name]
        if isinstance(module, (Activation, BatchNorm)):
            return passthrough
        if isinstance(module, (AvgPool, Sum)):
            return proportional
        return None

    return Composite(module_map=module_map, canonizers=canonizers)


def build_attributor(config: ExplainerConfig, model: nn.Module) -> Attributor:
    """The zennit attributor that computes ``config``'s attributions of ``model`` (composite attached).

    Call it as any zennit attributor, ``output, attribution = attributor(x, output_relevance)``,
    under ``torch.enable_grad()``; ``attribute_with`` does that in chunks and guards the model.
    """
    from zennit.attribution import Gradient, IntegratedGradients

    from xaisearch.explain.attributors import InputXGradient, SeededSmoothGrad, integrated_gradients_baseline

    composite = method_composite(config, model)
    kind, params = METHODS[config.method].attributor, config.params
    if kind == "input_x_gradient":
        return InputXGradient(model, composite)
    if kind == "smoothgrad":
        return SeededSmoothGrad(
            model, composite, noise_level=params["noise_level"], n_iter=params["n_samples"], seed=params["seed"]
        )
    if kind == "integrated_gradients":
        baseline = integrated_gradients_baseline(params["baseline"], params.get("input_low"))
        return IntegratedGradients(model, composite, baseline_fn=baseline, n_iter=params["steps"])
    return Gradient(model, composite)


def one_hot_target(target: torch.Tensor, num_classes: int, dtype: torch.dtype) -> torch.Tensor:
    """Output relevance: one at the explained class, zero elsewhere (as Pahde et al.)."""
    return torch.nn.functional.one_hot(target.long(), num_classes).to(dtype)


def attribute(
    model: nn.Module, composite: Composite | None, x: torch.Tensor, target: torch.Tensor, batch_size: int | None = None
) -> torch.Tensor:
    """Attributions of ``x`` for ``target`` with ``composite`` and zennit's ``Gradient`` (``attribute_with``)."""
    from zennit.attribution import Gradient

    return attribute_with(Gradient(model, composite), x, target, batch_size)


def attribute_with(
    attributor: Attributor, x: torch.Tensor, target: torch.Tensor, batch_size: int | None = None
) -> torch.Tensor:
    """Attributions of ``x`` for ``target`` with a zennit attributor (B×C×H×W, on ``x``'s device).

    Runs under ``torch.enable_grad`` (metric code often runs under ``no_grad``, where zennit
    fails), on a clone of ``x`` (zennit sets ``requires_grad`` on its input), and restores the
    model's parameter objects afterwards (zennit 1.0.0, #237).
    """
    model = attributor.model
    if model.training:
        raise ValueError("explain a model in eval mode: canonized BatchNorm is only exact with running statistics")
    outputs = []
    step = batch_size or len(x)
    with torch.enable_grad(), preserved_state(model), attributor:
        for start in range(0, len(x), step):
            chunk = x[start : start + step].detach().clone()
            labels = target[start : start + step]
            _, attribution = attributor(
                chunk, lambda out, labels=labels: one_hot_target(labels, out.shape[-1], out.dtype)
            )
            outputs.append(attribution.detach())
    return torch.cat(outputs)


def explain(
    config: ExplainerConfig, model: nn.Module, x: torch.Tensor, target: torch.Tensor, batch_size: int | None = None
) -> torch.Tensor:
    """Attributions for ``config``, whatever its method: ``build_attributor`` then ``attribute_with``."""
    return attribute_with(build_attributor(config, model), x, target, batch_size)
