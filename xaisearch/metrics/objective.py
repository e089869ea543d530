"""From per-metric means to the value Optuna optimises (always maximised).

``weighted_objective = Σ_i w_i · d_i · m_i / Σ_i w_i`` with ``d_i = +1`` for higher-is-better
and ``−1`` for lower-is-better metrics; directions come from the metric objects (or the study
file), never from names. Means enter unnormalised: the demo's metrics all lie in [0, 1].
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from xaisearch.metrics.suite import WeightedMetric


def weighted_objective(means: Mapping[str, float], entries: Sequence[WeightedMetric]) -> float:
    total_weight = sum(entry.weight for entry in entries)
    value = 0.0
    for entry in entries:
        sign = 1.0 if entry.effective_direction == "higher" else -1.0
        value += entry.weight * sign * means[entry.metric.name]
    value /= total_weight
    return value if math.isfinite(value) else float("nan")
