"""The keys a trial's user attributes are stored under: declared once, read by export, status and report.

Per metric a trial stores ``<metric>.mean``, ``<metric>.sem`` and ``<metric>.nan_fraction``;
besides, the sampled config (``config``), the worker that ran it (``worker``) and, for a pruned
trial, how many evaluation batches it saw (``pruned_after_batches``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

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
