"""The paper's table for any study's model: every method, canonized and not, on the same images.

Pahde et al.'s central result is one row per explanation method and one column pair
(uncanonized / canonized) per metric. Here each method is an ``ExplainerConfig``; its two arms
differ only in ``canonizer`` (the study's, and ``none``), and both are scored with the study's
suite on the same images, so every pair is a paired sample: the test (Wilcoxon signed-rank or a
paired bootstrap, ``search.significance``) says whether canonization changed the metric by more
than the noise between images.

* **Equal columns.** Canonization keeps the model's function, so a method without rules (gradient,
  input × gradient, SmoothGrad, integrated gradients) gives the same maps either way, up to float
  error. Both arms are still computed; a pair whose per-image scores agree within
  ``EQUAL_TOLERANCE``, or a rule-free method's pair whose mean differs by float noise only
  (``FLOAT_NOISE``), is reported as ``equal`` with p = 1, not as a "significant" difference of
  1e-7 (a paired test finds one: the noise has a sign). A rule-free pair beyond that would be a
  canonizer that changed the function, and is reported as measured.
* **Better.** The better mean of each pair, with the metric's direction applied.
* **Rank aggregation.** Per metric, every (method, arm) cell is ranked among all cells (1 = best,
  ties averaged, directions applied); a row's mean rank over the metrics summarises it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from xaisearch.explain.baselines import METHODS
from xaisearch.explain.config import ExplainerConfig
from xaisearch.metrics.suite import summary
from xaisearch.search.significance import paired_test
from xaisearch.search.workbench import Workbench

UNCANONIZED, CANONIZED = "uncanonized", "canonized"
EQUAL_TOLERANCE = 1e-5  # relative: |a - b| <= tol * max(1, |a|) on every image counts as equal
FLOAT_NOISE = 1e-4  # relative: a rule-free method's |mean difference| within it is float error
Better = Literal["canonized", "uncanonized", "equal"]
Progress = Callable[[int, int, str], None]  # (done, total, what is being scored)


@dataclass(frozen=True)
class Method:
    """One row: a named configuration and what kind of thing it is."""

    name: str
    kind: str  # "standard composite", "best trial", "baseline", "composite file"
    config: ExplainerConfig

    @property
    def invariant(self) -> bool:
        """No rules (nor modified backward passes): canonization cannot change its maps."""
        return METHODS[self.config.method].composite == "none"


@dataclass(frozen=True)
class Pair:
    """One metric of one method, uncanonized against canonized, paired over images."""

    metric: str
    direction: str  # "higher" or "lower" is better
    uncanonized: tuple[float, float]  # mean, standard error
    canonized: tuple[float, float]
    better: Better
    difference: float  # mean over images of canonized - uncanonized, in the metric's units
    p_value: float | None
    significant: bool
    test: str
    n_images: int


@dataclass
class Row:
    method: Method
    canonizer: str
    pairs: dict[str, Pair]
    mean_rank: dict[str, float] = field(default_factory=dict)  # arm -> mean rank over metrics


@dataclass
class CanonizationTable:
    study: str
    model: str
    images: str  # what the scores were measured on, e.g. "search set (128 images)"
    test: str
    alpha: float
    metrics: list[str]
    directions: dict[str, str]
    rows: list[Row]

    def records(self) -> list[dict[str, Any]]:
        """One flat record per (method, metric): the CSV's rows and the JSON's ``records``."""
        out = []
        for row in self.rows:
            for metric in self.metrics:
                pair = row.pairs[metric]
                out.append(
                    {
                        "method": row.method.name,
                        "kind": row.method.kind,
                        "canonizer": row.canonizer,
                        "metric": metric,
                        "better_is": pair.direction,
                        "uncanonized_mean": pair.uncanonized[0],
                        "uncanonized_sem": pair.uncanonized[1],
                        "canonized_mean": pair.canonized[0],
                        "canonized_sem": pair.canonized[1],
                        "better": pair.better,
                        "difference": pair.difference,
                        "p_value": pair.p_value,
                        "significant": pair.significant,
                        "test": pair.test,
                        "n_images": pair.n_images,
                        "mean_rank_uncanonized": row.mean_rank[UNCANONIZED],
                        "mean_rank_canonized": row.mean_rank[CANONIZED],
                    }
                )
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "study": self.study,
            "model": self.model,
            "images": self.images,
            "test": self.test,
            "alpha": self.alpha,
            "metrics": {name: self.directions[name] for name in self.metrics},
            "records": self.records(),
        }


def compare_canonization(
    bench: Workbench,
    methods: Sequence[Method],
    canonizer: str,
    test: str = "wilcoxon",
    alpha: float = 0.05,
    progress: Progress | None = None,
) -> CanonizationTable:
    """Score every method with ``canonizer`` and without, on the workbench's evaluation set."""
    if canonizer == "none":
        raise ValueError("the study's canonizer is 'none': there is no canonized arm to compare")
    directions: dict[str, str] = {entry.metric.name: entry.effective_direction for entry in bench.suite.entries}
    metrics = list(bench.suite.names)
    rows = []
    total = 2 * len(methods)
    for index, method in enumerate(methods):
        scores: dict[str, dict[str, torch.Tensor]] = {}
        for offset, (arm, arm_canonizer) in enumerate(((UNCANONIZED, "none"), (CANONIZED, canonizer))):
            if progress is not None:
                progress(2 * index + offset, total, f"{method.name}, {arm}")
            scores[arm] = bench.score(method.config.model_copy(update={"canonizer": arm_canonizer}))
        pairs = {
            name: _pair(
                name,
                directions[name],
                scores[UNCANONIZED][name],
                scores[CANONIZED][name],
                test,
                alpha,
                method.invariant,
            )
            for name in metrics
        }
        rows.append(Row(method, canonizer, pairs))
    if progress is not None:
        progress(total, total, "done")
    _rank(rows, metrics, directions)
    n_images = sum(len(batch.x) for batch in bench.batches)
    return CanonizationTable(
        study=bench.spec.name,
        model=bench.spec.model.name,
        images=f"search set ({n_images} images)",
        test=test,
        alpha=alpha,
        metrics=metrics,
        directions=directions,
        rows=rows,
    )


def _pair(
    metric: str,
    direction: str,
    uncanonized: torch.Tensor,
    canonized: torch.Tensor,
    test: str,
    alpha: float,
    invariant: bool = False,
) -> Pair:
    a = uncanonized.detach().double().cpu().numpy()
    b = canonized.detach().double().cpu().numpy()
    both = np.isfinite(a) & np.isfinite(b)
    n_images = int(both.sum())
    u, c = summary(uncanonized), summary(canonized)
    if n_images == 0:
        return Pair(metric, direction, u, c, "equal", math.nan, None, False, test, 0)
    differences = b[both] - a[both]
    float_noise = invariant and abs(differences.mean()) <= FLOAT_NOISE * max(1.0, abs(u[0]))
    if float_noise or np.all(np.abs(differences) <= EQUAL_TOLERANCE * np.maximum(1.0, np.abs(a[both]))):
        return Pair(metric, direction, u, c, "equal", float(differences.mean()), 1.0, False, test, n_images)
    sign = 1.0 if direction == "higher" else -1.0
    comparison = paired_test(sign * b[both], sign * a[both], test=test, alpha=alpha)
    gain = sign * (c[0] - u[0])
    better: Better = "canonized" if gain > 0 else "uncanonized" if gain < 0 else "equal"
    p_value = comparison.p_value
    significant = p_value is not None and p_value < alpha
    return Pair(metric, direction, u, c, better, float(differences.mean()), p_value, significant, test, n_images)


def _rank(rows: list[Row], metrics: list[str], directions: Mapping[str, str]) -> None:
    """Each row's mean rank per arm: per metric, all cells ranked together (1 = best, ties averaged)."""
    from scipy.stats import rankdata

    arms = (UNCANONIZED, CANONIZED)
    ranks: dict[tuple[int, str], list[float]] = {(index, arm): [] for index in range(len(rows)) for arm in arms}
    for metric in metrics:
        sign = -1.0 if directions[metric] == "higher" else 1.0  # rank 1 = best
        cells = [(index, arm) for index in range(len(rows)) for arm in arms]
        values = {cell: sign * getattr(rows[cell[0]].pairs[metric], cell[1])[0] for cell in cells}
        finite = [cell for cell in cells if math.isfinite(values[cell])]
        for cell, rank in zip(finite, rankdata([values[cell] for cell in finite], method="average")):
            ranks[cell].append(float(rank))
    for index, row in enumerate(rows):
        row.mean_rank = {arm: float(np.mean(ranks[index, arm])) if ranks[index, arm] else math.nan for arm in arms}
