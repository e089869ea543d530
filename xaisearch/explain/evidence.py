"""The evidence an exported composite carries: how it did on images the search never saw.

``ExplainerConfig.validation`` (DESIGN.md §3.3) holds it, written by ``search.validation``:

* ``heldout``: the winner's scores on the validation set (``n_images``), its objective there and
  the same trial's objective on the search set;
* ``significance``: paired tests over the validation images of the winner's per-image objective
  against the runner-up and the best seed composite;
* ``stability``: how the ranking of the best trials moves when the metrics' settings do.

Configs exported before validation existed have no such object and still load.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Evidence(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MeanSem(_Evidence):
    mean: float | None  # None: no finite score
    sem: float | None


class HeldoutScores(_Evidence):
    n_images: int = Field(ge=0)
    objective: float | None
    objective_sem: float | None = None  # the standard error of the mean per-image objective
    scores: dict[str, MeanSem] = Field(default_factory=dict)
    search_objective: float | None = None  # the same trial's objective on the search set


class Comparison(_Evidence):
    """A paired test of the winner against one other configuration over the validation images."""

    trial: int | None  # None: not a trial (plain gradient)
    label: str = ""  # "trial 17", "seed epsilon_gamma_box"
    p_value: float | None  # None: no image has a finite score for both
    effect: float  # mean per-image objective difference, winner minus other
    standardised_effect: float = 0.0  # effect / standard deviation of the differences (Cohen's d_z)
    test: Literal["wilcoxon", "bootstrap"]
    n_pairs: int = Field(0, ge=0)
    verdict: Literal["better", "worse", "not distinguishable", "identical", "not comparable"] = "not comparable"


class Significance(_Evidence):
    alpha: float = 0.05
    vs_runner_up: Comparison | None = None  # None: only one trial was validated
    vs_best_seed: Comparison | None = None  # None: the study has no completed seed composite


class PerturbationResult(_Evidence):
    name: str
    kendall_tau: float | None  # None: the ranking is constant under the perturbation
    winner_kept: bool
    winner: int | None = None  # the trial that wins under this perturbation


class Stability(_Evidence):
    kendall_tau: float | None  # median over the perturbations
    winner_kept: float | None  # share of the perturbations that keep the winner
    n_candidates: int = 0
    perturbations: list[PerturbationResult] = Field(default_factory=list)


class ValidationEvidence(_Evidence):
    chosen_on: Literal["validation"] = "validation"
    search_best: int | None = None  # the trial the search set alone would have chosen
    heldout: HeldoutScores
    significance: Significance = Field(default_factory=Significance)
    stability: Stability | None = None  # None: turned off (``validation.stability: false``)
