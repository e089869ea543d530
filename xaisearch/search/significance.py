"""Is the winner's lead larger than the noise? Paired tests over the validation images.

Both configurations are scored on the same held-out images, so the test is paired: it looks at
the per-image differences of the objective (winner minus other), which removes the spread
between images that both share.

* ``wilcoxon``: scipy's two-sided Wilcoxon signed-rank test (zero differences dropped, as
  scipy's default ``zero_method="wilcox"``); no assumption on the differences' distribution.
* ``bootstrap``: a paired bootstrap of the mean difference (10,000 resamples of the images,
  seeded): p is twice the share of resampled means on the other side of zero, at least
  1/resamples.

Images where either score is not finite are left out (``n_pairs`` counts the rest). Identical
scores give p = 1 and an effect of 0, without calling the test (scipy refuses all-zero
differences). The effect is the mean difference in objective units; ``standardised_effect`` is
it over the differences' standard deviation (Cohen's d_z).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from xaisearch.explain.evidence import Comparison

BOOTSTRAP_RESAMPLES = 10_000


def paired_test(
    winner: Sequence[float] | np.ndarray,
    other: Sequence[float] | np.ndarray,
    test: str = "wilcoxon",
    alpha: float = 0.05,
    trial: int | None = None,
    label: str = "",
    seed: int = 0,
) -> Comparison:
    """The paired test of ``winner`` against ``other`` (per-image objectives, same images)."""
    a, b = np.asarray(winner, dtype=np.float64), np.asarray(other, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired scores need the same images: shapes {a.shape} and {b.shape}")
    if test not in ("wilcoxon", "bootstrap"):
        raise ValueError(f"unknown paired test {test!r}; choose wilcoxon or bootstrap")
    both = np.isfinite(a) & np.isfinite(b)
    differences = a[both] - b[both]
    n_pairs = int(differences.size)
    common = {"trial": trial, "label": label, "test": test, "n_pairs": n_pairs}
    if n_pairs == 0:
        return Comparison(p_value=None, effect=0.0, verdict="not comparable", **common)
    effect = float(differences.mean())
    spread = float(differences.std(ddof=1)) if n_pairs > 1 else 0.0
    standardised = effect / spread if spread > 0 else 0.0
    if not np.any(differences != 0):
        return Comparison(p_value=1.0, effect=0.0, standardised_effect=0.0, verdict="identical", **common)
    p_value = _wilcoxon(differences) if test == "wilcoxon" else _bootstrap(differences, seed)
    if p_value >= alpha:
        verdict = "not distinguishable"
    else:
        verdict = "better" if effect > 0 else "worse"
    return Comparison(p_value=p_value, effect=effect, standardised_effect=standardised, verdict=verdict, **common)


def _wilcoxon(differences: np.ndarray) -> float:
    from scipy.stats import wilcoxon

    return float(wilcoxon(differences, alternative="two-sided").pvalue)


def _bootstrap(differences: np.ndarray, seed: int) -> float:
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, differences.size, size=(BOOTSTRAP_RESAMPLES, differences.size))
    means = differences[picks].mean(axis=1)
    tail = min(float((means <= 0).mean()), float((means >= 0).mean()))
    return min(1.0, max(2 * tail, 1 / BOOTSTRAP_RESAMPLES))


_TEST_NAMES = {"wilcoxon": "Wilcoxon signed-rank", "bootstrap": "paired bootstrap"}


def describe(comparison: Comparison, what: str) -> str:
    """One sentence: ``not distinguishable from trial 17 (p = 0.41, Wilcoxon signed-rank, 128 images)``.

    ``what`` names the other configuration ("trial 17", "the best seed epsilon_gamma_box").
    """
    how = f"{_TEST_NAMES[comparison.test]}, {comparison.n_pairs} held-out images"
    if comparison.verdict == "not comparable":
        return f"cannot be compared with {what}: no held-out image has a finite score for both"
    if comparison.verdict == "identical":
        return f"scores the same as {what} on every held-out image (p = 1)"
    p = _p_text(comparison.p_value)
    if comparison.verdict == "not distinguishable":
        return f"not distinguishable from {what} ({p}, {how})"
    word = "better than" if comparison.verdict == "better" else "worse than"
    return f"{word} {what} by {comparison.effect:+.4f} objective per image ({p}, {how})"


def _p_text(p_value: float | None) -> str:
    if p_value is None or not math.isfinite(p_value):
        return "p undefined"
    return f"p = {p_value:.2g}" if p_value >= 1e-4 else "p < 0.0001"
