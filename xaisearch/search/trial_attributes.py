"""The keys a trial's user attributes are stored under: declared once, read by export, status and report.

Per metric a trial stores ``<metric>.mean``, ``<metric>.sem`` and ``<metric>.nan_fraction``;
besides, the sampled config (``config``), the worker that ran it (``worker``) and, for a pruned
trial, how many evaluation batches it saw (``pruned_after_batches``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optuna

CONFIG_ATTR = "config"
WORKER_ATTR = "worker"
PRUNED_AFTER_ATTR = "pruned_after_batches"
_MEAN, _SEM, _NAN_FRACTION = ".mean", ".sem", ".nan_fraction"


def mean_attr(metric: str) -> str:
    return f"{metric}{_MEAN}"


def sem_attr(metric: str) -> str:
    return f"{metric}{_SEM}"


def nan_fraction_attr(metric: str) -> str:
    return f"{metric}{_NAN_FRACTION}"


def metric_means(user_attrs: Mapping[str, Any]) -> dict[str, float]:
    """Every metric's stored mean (metrics whose mean was undefined, stored as ``None``, left out)."""
    return {
        key.removesuffix(_MEAN): value for key, value in user_attrs.items() if key.endswith(_MEAN) and value is not None
    }


FAIL_REASON_ATTR = "fail_reason"  # one line: why the trial failed (set before it is marked FAIL)


def failure_summary(trials: Sequence[optuna.trial.FrozenTrial]) -> str | None:
    """``10 trials failed; the last (trial 9): <its reason>``, or ``None`` when none failed."""
    import optuna

    failed = [t for t in trials if t.state == optuna.trial.TrialState.FAIL]
    if not failed:
        return None
    last = max(failed, key=lambda t: t.number)
    reason = last.user_attrs.get(FAIL_REASON_ATTR) or "no reason recorded (its worker died or lost the storage)"
    count = f"{len(failed)} trial{'s' if len(failed) > 1 else ''} failed"
    return f"{count}; the last (trial {last.number}): {reason}"
