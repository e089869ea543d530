"""From per-metric means to what Optuna optimises.

Directions come from the metric objects (``Metric.direction``, overridable per entry in the study
file), never from names. Two forms:

* **scalar** (``weighted_objective``, always maximised): Σ_i w_i · d_i · n_i(m_i) / Σ_i w_i with
  d_i = +1 for higher-is-better and −1 for lower-is-better metrics and n_i a normalisation;
* **multi-objective** (``multi_objective``): one value per chosen metric, each with its Optuna
  direction ("maximize"/"minimize"), for a Pareto front (NSGA-II, TPE multi-objective).

Normalisations (``Normalisation``), so metrics of different units and spreads can be summed:

* ``none``: raw means (fine when all metrics lie in [0, 1], as the ``fast`` suite);
* ``seed``: z-score against the seed composites' statistics, (m − mean_seed) / std_seed per
  metric (std 0 or one seed → divide by |mean_seed|, or 1): "better than the known settings by
  how many spreads"; fixed once the seeds finished, so values of later trials stay comparable;
Normalisation is monotone per metric, so the direction sign is applied after it. Normalising
against the finished trials (ranks, min-max) is left out on purpose: a trial's value would then
depend on when it ran, and the sampler and the winner would compare numbers that mean different
things.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import get_args

from xaisearch.metrics.suite import WeightedMetric
from xaisearch.spec import Normalisation

OPTUNA_DIRECTION = {"higher": "maximize", "lower": "minimize"}


def normalise_mean(value: float, reference: Sequence[float], method: Normalisation) -> float:
    """``value`` of one metric normalised against ``reference`` means (the seed composites')."""
    finite = [r for r in reference if math.isfinite(r)]
    if method == "none" or not math.isfinite(value):
        return value
    if method != "seed":
        raise ValueError(f"unknown normalisation {method!r}; choose {' or '.join(get_args(Normalisation))}")
    if not finite:
        raise ValueError(f"normalisation {method!r} needs at least one finite reference value")
    mean = sum(finite) / len(finite)
    spread = math.sqrt(sum((r - mean) ** 2 for r in finite) / (len(finite) - 1)) if len(finite) > 1 else 0.0
    scale = spread or abs(mean) or 1.0
    return (value - mean) / scale


def weighted_objective(
    means: Mapping[str, float],
    entries: Sequence[WeightedMetric],
    normalisation: Normalisation = "none",
    reference: Sequence[Mapping[str, float]] = (),
) -> float:
    """The scalar objective (maximise). NaN (a failed trial) when any weighted mean is NaN."""
    total_weight = sum(entry.weight for entry in entries)
    value = 0.0
    for entry in entries:
        name = entry.metric.name
        sign = 1.0 if entry.effective_direction == "higher" else -1.0
        mean = normalise_mean(means[name], [r[name] for r in reference], normalisation)
        value += entry.weight * sign * mean
    value /= total_weight
    return value if math.isfinite(value) else float("nan")


def multi_objective(
    means: Mapping[str, float], entries: Sequence[WeightedMetric], names: Sequence[str] | None = None
) -> tuple[list[float], list[str]]:
    """One value per chosen metric (default: every entry with weight > 0) and its Optuna direction.

    Raw means, oriented by the metric's direction: pass the directions to
    ``optuna.create_study(directions=...)`` and return the values from the objective.
    """
    chosen = [e for e in entries if (names is None and e.weight > 0) or (names is not None and e.metric.name in names)]
    if names is not None and len(chosen) != len(names):
        raise ValueError(f"unknown metrics {sorted(set(names) - {e.metric.name for e in chosen})} in the objective")
    return [means[e.metric.name] for e in chosen], [OPTUNA_DIRECTION[e.effective_direction] for e in chosen]
