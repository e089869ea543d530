"""The metric protocol: what a score means, stated on the metric.

A metric is a small frozen dataclass: its fields are its parameters (so it has a ``repr``, is
comparable and serialises), its class attributes are its metadata, and ``__call__(ctx)`` returns
**one float score per sample** as a tensor of shape ``(B,)`` on the inputs' device:

* ``NaN`` where the score is undefined for that sample (an empty mask, an all-zero map), never
  a made-up 0 or 1;
* inputs are never modified;
* no global random state: stochastic metrics take a ``seed`` field and draw from a CPU
  ``torch.Generator`` seeded with it (``generator(seed)``), then move the draw to the inputs'
  device, so a seed gives the same draws on every device and in every trial (common random
  numbers); draws that do not depend on the explanation are kept in ``ctx.cache``;
* normalisation is per sample: a sample's score never depends on the rest of its batch;
* ``direction`` says whether higher or lower is better; the search derives Optuna's directions
  from it, never from display names;
* metrics that explain again (noisy inputs, another class, randomised models) call
  ``ctx.explainer``; those that explain *another model* use ``explainer.with_model(model)``
  (a ``ModelExplainer``, or any callable with that method).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

import torch
from torch import nn

# Direction and Category are defined in the torch-free catalog (study files are validated against it)
from xaisearch.metrics.catalog import Category, Direction

if TYPE_CHECKING:
    from xaisearch.explain.config import ExplainerConfig


class Explainer(Protocol):
    """What metrics that explain again need: ``(x, y) -> attribution`` on ``x``'s device."""

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class ModelBoundExplainer(Explainer, Protocol):
    """An explainer that can explain another model the same way (randomisation metrics)."""

    def with_model(self, model: nn.Module) -> ModelBoundExplainer: ...


@dataclass(frozen=True, eq=False)
class ModelExplainer:
    """An explainer bound to a model: ``explainer(x, y) == method(model, x, y)``.

    ``with_model(other)`` explains another model the same way (randomisation metrics explain
    randomised copies of the model).
    """

    model: nn.Module
    method: Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.method(self.model, x, y)

    def with_model(self, model: nn.Module) -> ModelExplainer:
        return replace(self, model=model)


def make_explainer(explainer: Any, model: nn.Module | None) -> Explainer | None:
    """An explainer from a composite config (path, dict, ``ExplainerConfig``) or a callable.

    A config is read and validated once and explains with its own method (``config_explainer``).
    """
    from xaisearch.explain.config import ExplainerConfig

    if explainer is None or callable(explainer):
        return explainer
    if not isinstance(explainer, (str, Path, dict, ExplainerConfig)):
        raise ValueError(f"explainer must be a composite config (path, dict) or a callable, got {type(explainer)}")
    if model is None:
        raise ValueError("an explainer given as a composite config needs the model")
    from xaisearch.explain.config import load_config

    config, _ = load_config(explainer)
    return config_explainer(config, model)


def config_explainer(config: ExplainerConfig, model: nn.Module) -> ModelExplainer:
    """``config``'s explainer on ``model``, whatever its method (LRP, SmoothGrad, ...).

    The zennit attributor is built once for ``model`` and again for each other model it is
    rebound to (randomisation metrics explain randomised copies), so every re-explanation of a
    metric uses the config's method, parameters and canonizer (``explain.methods.build_attributor``).
    """
    from xaisearch.explain.methods import attribute_with, build_attributor

    own = build_attributor(config, model)

    def method(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return attribute_with(own if net is model else build_attributor(config, net), x, y)

    return ModelExplainer(model, method)


def generator(seed: int) -> torch.Generator:
    """The CPU generator every stochastic metric draws from (then moves draws to the device)."""
    return torch.Generator().manual_seed(int(seed))


@dataclass
class MetricContext:
    """The inputs of one scoring call.

    ``x`` is B×C×H×W, ``y`` the explained class per sample, ``a`` the attribution (B×C×H×W or
    B×1×H×W), ``s`` the ground-truth mask (B×1×H×W, or ``None``), ``explainer`` the callable
    that produced ``a`` (``(x, y) -> a``) for metrics that explain again.

    Three caches, by lifetime: ``cache`` lives as long as the batch (across trials: clean model
    outputs, noise draws, random classes: work that does not depend on the explanation);
    ``model_cache`` as long as the model (across batches: randomised weights); ``scratch`` one
    scoring call (one trial, one batch: explanation-dependent work several metrics share, such
    as sorted maps and noisy explanations).
    """

    x: torch.Tensor
    y: torch.Tensor
    a: torch.Tensor
    s: torch.Tensor | None = None
    model: nn.Module | None = None
    cache: dict[Any, Any] = field(default_factory=dict)
    explainer: Explainer | None = None
    scratch: dict[Any, Any] = field(default_factory=dict)
    model_cache: dict[Any, Any] = field(default_factory=dict)

    # what ``Metric.check`` guarantees a metric that declares the need; typed without ``None``
    @property
    def required_model(self) -> nn.Module:
        if self.model is None:
            raise ValueError("this metric needs the model")
        return self.model

    @property
    def required_mask(self) -> torch.Tensor:
        if self.s is None:
            raise ValueError("this metric needs a ground-truth mask (s)")
        return self.s

    @property
    def required_explainer(self) -> Explainer:
        if self.explainer is None:
            raise ValueError("this metric explains again: pass explainer=<composite config or callable (x, y) -> a>")
        return self.explainer


@dataclass(frozen=True)
class Metric:
    """Base of every metric; see the module docstring for the contract every subclass keeps.

    ``needs_explainer``: the metric explains again (``ctx.explainer`` must be set).
    ``forwards_per_sample`` / ``explanations_per_sample``: model passes per sample and trial
    beyond the scored explanation (for cost estimates; properties where they depend on fields).
    """

    name: ClassVar[str]
    category: ClassVar[Category]
    direction: ClassVar[Direction]
    needs_mask: ClassVar[bool] = False
    needs_model: ClassVar[bool] = False
    needs_explainer: ClassVar[bool] = False
    forwards_per_sample: ClassVar[int] = 0
    explanations_per_sample: ClassVar[int] = 0

    def __call__(self, ctx: MetricContext) -> torch.Tensor:
        raise NotImplementedError

    def params(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def check(self, ctx: MetricContext) -> None:
        """Refuse inputs this metric cannot score, naming what is missing."""
        if self.needs_mask and ctx.s is None:
            raise ValueError(f"metric {self.name!r} needs a ground-truth mask (s)")
        if self.needs_model and ctx.model is None:
            raise ValueError(f"metric {self.name!r} needs the model")
        if self.needs_explainer and ctx.explainer is None:
            raise ValueError(
                f"metric {self.name!r} explains again: pass explainer=<composite config or callable (x, y) -> a>"
            )
        if ctx.a.dim() != 4 or ctx.a.shape[0] != ctx.x.shape[0] or ctx.a.shape[-2:] != ctx.x.shape[-2:]:
            raise ValueError(
                f"metric {self.name!r}: attribution shape {tuple(ctx.a.shape)} does not fit x {tuple(ctx.x.shape)}"
            )
