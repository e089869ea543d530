"""Build zennit composites from configs and compute attributions with them."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from zennit.core import Composite

from xaisearch.canonize.registry import get_canonizer
from xaisearch.explain.config import ExplainerConfig
from xaisearch.explain.groups import CONV_TYPES
from xaisearch.explain.rules import make_rule
from xaisearch.integrity import preserved_state


def build_composite(config: ExplainerConfig, model: nn.Module) -> Composite:
    """The zennit composite ``config`` describes, its canonizer attached.

    Named layers get their group's rule; activations and (folded) BatchNorms pass relevance
    through, average pooling and ``Sum`` modules split it proportionally (zennit's base map).
    Every Conv/Linear of an LRP config must have a rule: a layer without one would silently
    fall back to the plain gradient.
    """
    from zennit.core import Composite
    from zennit.layer import Sum
    from zennit.rules import Norm, Pass
    from zennit.types import Activation, AvgPool, BatchNorm

    canonizers = [get_canonizer(config.canonizer, model)]
    if config.method == "gradient":
        return Composite(module_map=None, canonizers=canonizers)
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


def one_hot_target(target: torch.Tensor, num_classes: int, dtype: torch.dtype) -> torch.Tensor:
    """Output relevance: one at the explained class, zero elsewhere (as Pahde et al.)."""
    return torch.nn.functional.one_hot(target.long(), num_classes).to(dtype)


def attribute(
    model: nn.Module, composite: Composite | None, x: torch.Tensor, target: torch.Tensor, batch_size: int | None = None
) -> torch.Tensor:
    """Attributions of ``x`` for ``target`` with ``composite`` (B×C×H×W, on ``x``'s device).

    Runs under ``torch.enable_grad`` (metric code often runs under ``no_grad``, where zennit
    fails), on a clone of ``x`` (zennit sets ``requires_grad`` on its input), and restores the
    model's parameter objects afterwards (zennit 1.0.0, #237).
    """
    from zennit.attribution import Gradient

    if model.training:
        raise ValueError("explain a model in eval mode: canonized BatchNorm is only exact with running statistics")
    outputs = []
    step = batch_size or len(x)
    with torch.enable_grad(), preserved_state(model), Gradient(model, composite) as attributor:
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
    """Attributions for ``config``: ``build_composite`` then ``attribute``."""
    return attribute(model, build_composite(config, model), x, target, batch_size)
