"""The metric protocol: what a score means, stated on the metric.

A metric is a small frozen dataclass: its fields are its parameters (so it has a ``repr``, is
comparable and serialises), its class attributes are its metadata, and ``__call__(ctx)`` returns
**one float score per sample** as a tensor of shape ``(B,)`` on the inputs' device:

* ``NaN`` where the score is undefined for that sample (an empty mask, an all-zero map), never
  a made-up 0 or 1;
* inputs are never modified;
* no global random state: stochastic metrics draw from a ``torch.Generator`` seeded by ``seed``;
* normalisation is per sample: a sample's score never depends on the rest of its batch;
* ``direction`` says whether higher or lower is better; the search derives Optuna's directions
  from it, never from display names.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Literal

import torch
from torch import nn

Direction = Literal["higher", "lower"]
Category = Literal["faithfulness", "localisation", "robustness", "complexity", "randomisation", "axiomatic"]


@dataclass
class MetricContext:
    """The inputs of one scoring call.

    ``x`` is B×C×H×W, ``y`` the explained class per sample, ``a`` the attribution (B×C×H×W or
    B×1×H×W), ``s`` the ground-truth mask (B×1×H×W, or ``None``), ``cache`` a dict shared across
    calls on the same batch (clean model outputs, random draws: work that does not depend on
    the explanation).
    """

    x: torch.Tensor
    y: torch.Tensor
    a: torch.Tensor
    s: torch.Tensor | None = None
    model: nn.Module | None = None
    cache: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Metric:
    name: ClassVar[str]
    category: ClassVar[Category]
    direction: ClassVar[Direction]
    needs_mask: ClassVar[bool] = False
    needs_model: ClassVar[bool] = False
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
        if ctx.a.dim() != 4 or ctx.a.shape[0] != ctx.x.shape[0] or ctx.a.shape[-2:] != ctx.x.shape[-2:]:
            raise ValueError(
                f"metric {self.name!r}: attribution shape {tuple(ctx.a.shape)} does not fit x {tuple(ctx.x.shape)}"
            )
