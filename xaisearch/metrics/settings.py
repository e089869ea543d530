"""Perturbed metric settings: the documented list a winner's ranking must survive.

Wickstrøm et al. (arXiv 2412.05592) show that a metric's own settings (the baseline that
replaces removed pixels, the number of steps, the patch size, the noise of the sensitivities,
the channel pooling) can flip the ranking of explanation methods. ``PERTURBATIONS`` is the fixed
list xaisearch re-ranks the best trials under (``search.validation``); each entry changes one
setting in every metric of a suite that has it, and leaves the others alone:

| name | setting | change |
|---|---|---|
| ``baseline=mean``, ``=black``, ``=blur``, ``=uniform`` | ``baseline`` | replaced (skipped where it already is) |
| ``steps/2``, ``steps*2`` | ``steps`` (perturbation curves) | halved (at least 2) / doubled |
| ``patch_size/2``, ``patch_size*2`` | ``patch_size`` (region perturbation) | halved (at least 1) / doubled |
| ``noise/2``, ``noise*2`` | ``radius`` (Avg-/MaxSensitivity), ``std`` (LocalLipschitz) | halved / doubled |
| ``pooling=sum_abs``, ``pooling=pos_sum`` | ``pooling`` (channels → pixel) | replaced (skipped where it already is) |

A perturbation that changes no metric of a suite (a suite without perturbation curves has no
``steps``), or whose new value a metric refuses (doubled steps beyond the pixel count), leaves
that metric as it was; a perturbation that changes nothing at all is not applied.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from xaisearch.metrics.base import Metric
from xaisearch.metrics.suite import WeightedMetric

Change = Callable[[Any], Any]


def _replace_with(value: Any) -> Change:
    return lambda current: value


def _scaled(factor: float, smallest: int | None = None) -> Change:
    def change(current: Any) -> Any:
        if isinstance(current, bool) or not isinstance(current, (int, float)):
            return current  # a per-channel baseline or ``None``: not a scale to perturb
        if isinstance(current, int):
            return max(smallest or 1, round(current * factor))
        return current * factor

    return change


@dataclass(frozen=True)
class SettingPerturbation:
    """One change of one kind of metric setting, applied to every metric that has the setting."""

    name: str
    fields: tuple[str, ...]  # the metric fields it changes (the first one a metric has)
    change: Change
    description: str

    def apply(self, metric: Metric) -> Metric | None:
        """``metric`` with the setting changed, or ``None`` when it has no such setting, the value
        stays the same, or the metric refuses the new value."""
        from xaisearch.metrics.registry import make_metric

        params = metric.params()
        field = next((f for f in self.fields if f in params), None)
        if field is None:
            return None
        new = self.change(params[field])
        if new == params[field]:
            return None
        try:
            return make_metric(metric.name, **{**params, field: new})
        except ValueError:
            return None

    def perturbed(self, entries: Sequence[WeightedMetric]) -> list[WeightedMetric] | None:
        """The suite's entries with this setting changed (weights and directions kept), or
        ``None`` when it changes no metric of the suite."""
        changed, result = False, []
        for entry in entries:
            metric = self.apply(entry.metric)
            changed = changed or metric is not None
            result.append(WeightedMetric(metric or entry.metric, entry.weight, entry.direction))
        return result if changed else None


PERTURBATIONS: tuple[SettingPerturbation, ...] = (
    *(
        SettingPerturbation(f"baseline={b}", ("baseline",), _replace_with(b), f"removed pixels replaced by {b}")
        for b in ("mean", "black", "blur", "uniform")
    ),
    SettingPerturbation("steps/2", ("steps",), _scaled(0.5, smallest=2), "half as many curve steps"),
    SettingPerturbation("steps*2", ("steps",), _scaled(2.0), "twice as many curve steps"),
    SettingPerturbation("patch_size/2", ("patch_size",), _scaled(0.5, smallest=1), "patches of half the side"),
    SettingPerturbation("patch_size*2", ("patch_size",), _scaled(2.0), "patches of twice the side"),
    SettingPerturbation("noise/2", ("radius", "std"), _scaled(0.5), "half the noise of the sensitivities"),
    SettingPerturbation("noise*2", ("radius", "std"), _scaled(2.0), "twice the noise of the sensitivities"),
    SettingPerturbation("pooling=sum_abs", ("pooling",), _replace_with("sum_abs"), "channels pooled as |sum|"),
    SettingPerturbation("pooling=pos_sum", ("pooling",), _replace_with("pos_sum"), "channels pooled as max(sum, 0)"),
)


def applicable_perturbations(
    entries: Sequence[WeightedMetric],
) -> list[tuple[SettingPerturbation, list[WeightedMetric]]]:
    """Every perturbation of ``PERTURBATIONS`` that changes at least one metric of the suite,
    with the perturbed entries, in the order of the list."""
    found = []
    for perturbation in PERTURBATIONS:
        perturbed = perturbation.perturbed(entries)
        if perturbed is not None:
            found.append((perturbation, perturbed))
    return found
