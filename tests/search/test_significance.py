"""The paired tests and rank correlations the held-out validation reports."""

import math

import numpy as np
import pytest
from scipy.stats import kendalltau, wilcoxon

from xaisearch.search.significance import describe, paired_test
from xaisearch.search.stability import kendall_tau


def known_pairs() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    other = rng.normal(0.5, 0.1, 40)
    return other + rng.normal(0.02, 0.05, 40), other


def test_wilcoxon_matches_scipy_on_a_known_paired_sample():
    winner, other = known_pairs()
    comparison = paired_test(winner, other, "wilcoxon", trial=17, label="trial 17")
    expected = wilcoxon(winner - other, alternative="two-sided")
    assert comparison.p_value == pytest.approx(float(expected.pvalue), rel=1e-12)
    assert comparison.effect == pytest.approx(float(np.mean(winner - other)))
    assert comparison.n_pairs == 40 and comparison.test == "wilcoxon" and comparison.trial == 17


def test_exact_wilcoxon_p_of_eight_positive_differences():
    """All 2^8 sign patterns are equally likely under the null; two of them are as extreme."""
    comparison = paired_test(np.arange(1.0, 9.0), np.zeros(8))
    assert comparison.p_value == pytest.approx(2 / 256)
    assert comparison.verdict == "better"


@pytest.mark.parametrize("test", ["wilcoxon", "bootstrap"])
def test_an_identical_runner_up_gives_p_one_and_no_effect(test):
    winner, _ = known_pairs()
    comparison = paired_test(winner, winner.copy(), test)
    assert comparison.p_value == 1.0 and comparison.effect == 0.0 and comparison.standardised_effect == 0.0
    assert comparison.verdict == "identical"
    assert "(p = 1)" in describe(comparison, "trial 3")


def test_the_bootstrap_is_seeded_and_agrees_with_the_rank_test_on_clear_cases():
    winner, other = known_pairs()
    first, again = paired_test(winner, other, "bootstrap", seed=3), paired_test(winner, other, "bootstrap", seed=3)
    assert first.p_value == again.p_value
    assert first.p_value < 0.05 and first.verdict == "better"
    rng = np.random.default_rng(0)
    noise = rng.normal(0, 0.1, 200)
    unrelated = paired_test(noise, rng.permutation(noise), "bootstrap")
    assert unrelated.p_value > 0.05 and unrelated.verdict == "not distinguishable"


def test_images_without_a_finite_score_for_both_are_left_out():
    winner = np.array([0.9, np.nan, 0.8, 0.7, 0.95, 0.85])
    other = np.array([0.5, 0.4, np.inf, 0.3, 0.6, 0.55])
    comparison = paired_test(winner, other)
    assert comparison.n_pairs == 4
    assert comparison.effect == pytest.approx(np.mean([0.4, 0.4, 0.35, 0.3]))
    nothing = paired_test([math.nan, 1.0], [0.0, math.nan])
    assert nothing.p_value is None and nothing.verdict == "not comparable"
    assert "cannot be compared" in describe(nothing, "trial 1")


def test_the_sentence_says_not_distinguishable_with_the_p_value():
    rng = np.random.default_rng(1)
    base = rng.normal(0.5, 0.1, 64)
    comparison = paired_test(base + rng.normal(0, 0.05, 64), base + rng.normal(0, 0.05, 64), alpha=0.05)
    assert comparison.verdict == "not distinguishable"
    sentence = describe(comparison, "trial 17")
    assert sentence.startswith("not distinguishable from trial 17 (p = ") and "64 held-out images" in sentence


def test_mismatched_or_unknown_inputs_are_refused():
    with pytest.raises(ValueError, match="same images"):
        paired_test([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="unknown paired test"):
        paired_test([1.0], [2.0], test="t")


def test_kendall_tau_matches_scipy_and_says_when_it_is_undefined():
    first, second = [0.1, 0.4, 0.3, 0.9, 0.5], [0.2, 0.5, 0.1, 0.8, 0.7]
    assert kendall_tau(first, second) == pytest.approx(float(kendalltau(first, second).statistic))
    assert kendall_tau(first, first) == pytest.approx(1.0)
    assert kendall_tau(first, [-v for v in first]) == pytest.approx(-1.0)
    assert kendall_tau(first, [0.5] * 5) is None
    assert kendall_tau([0.1, math.nan, 0.3], [0.2, 0.1, 0.4]) == pytest.approx(1.0)
