"""Does the winner stay the winner when the metrics' settings move a little?

For each perturbation of ``metrics.settings.PERTURBATIONS`` that applies to the study's suite,
the validated trials are ranked by their held-out objective under the perturbed settings and
compared with their ranking under the study's settings: Kendall's tau-b (scipy; 1 = the same
order, 0 = unrelated, -1 = reversed) and whether the winner is still first. The summary is the
median tau and the share of perturbations that keep the winner.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from xaisearch.explain.evidence import PerturbationResult, Stability
from xaisearch.metrics.suite import WeightedMetric
from xaisearch.search.normalisation import weighted_objective
from xaisearch.spec import StudySpec

if TYPE_CHECKING:
    from xaisearch.search.validation import Scored


def kendall_tau(first: Sequence[float], second: Sequence[float]) -> float | None:
    """Kendall's tau-b of two scorings of the same items (pairs with a non-finite value left out);
    ``None`` when fewer than two items remain or either scoring is constant."""
    from scipy.stats import kendalltau

    pairs = [(a, b) for a, b in zip(first, second, strict=True) if math.isfinite(a) and math.isfinite(b)]
    if len(pairs) < 2 or len({a for a, _ in pairs}) < 2 or len({b for _, b in pairs}) < 2:
        return None
    tau = float(kendalltau([a for a, _ in pairs], [b for _, b in pairs]).statistic)
    return tau if math.isfinite(tau) else None


def perturbed_objectives(
    means: Sequence[Mapping[str, float]], entries: Sequence[WeightedMetric], spec: StudySpec
) -> list[float]:
    """The objective of each candidate's perturbed means. A seed-normalised study is normalised by
    the candidates' own perturbed means: no seed composite was scored under the perturbation."""
    normalisation = spec.objective.normalisation
    reference = list(means) if normalisation == "seed" else []
    return [weighted_objective(m, entries, normalisation, reference) for m in means]


def stability_of(
    ranked: Sequence[Scored], subject: Scored, entries: Sequence[WeightedMetric], spec: StudySpec
) -> Stability:
    """Kendall's tau and "winner kept" of ``subject`` over every perturbation all ``ranked`` have."""
    names = [name for name in subject.perturbed if all(name in s.perturbed for s in ranked)]
    original = [s.objective for s in ranked]
    results = []
    for name in names:
        values = perturbed_objectives([s.perturbed[name] for s in ranked], entries, spec)
        finite = [(v, s) for v, s in zip(values, ranked, strict=True) if math.isfinite(v)]
        top = max(finite, key=lambda pair: pair[0])[1] if finite else None
        results.append(
            PerturbationResult(
                name=name,
                kendall_tau=kendall_tau(original, values),
                winner_kept=top is subject,
                winner=top.candidate.trial if top is not None else None,
            )
        )
    taus = [r.kendall_tau for r in results if r.kendall_tau is not None]
    return Stability(
        kendall_tau=statistics.median(taus) if taus else None,
        winner_kept=sum(r.winner_kept for r in results) / len(results) if results else None,
        n_candidates=len(ranked),
        perturbations=results,
    )
