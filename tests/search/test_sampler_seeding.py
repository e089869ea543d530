"""Samplers are seeded per trial: reproducible from the study's seed, different across trials."""

from __future__ import annotations

import optuna

from xaisearch.search.study import TrialSeededSampler
from xaisearch.spec import SAMPLERS


def draws(seed: int, n: int) -> list[float]:
    sampler = TrialSeededSampler(SAMPLERS.get("random"), seed, lambda: {})
    study = optuna.create_study(sampler=sampler)
    study.optimize(lambda trial: trial.suggest_float("x", 0.0, 1.0), n_trials=n)
    return [trial.params["x"] for trial in study.trials]


def test_the_same_seed_draws_the_same_trials_and_trials_differ():
    first = draws(seed=3, n=5)
    assert first == draws(seed=3, n=5)
    assert len(set(first)) == 5 and draws(seed=4, n=5) != first


def test_two_studies_that_share_a_history_but_not_trial_numbers_draw_differently():
    """What two concurrent runs of one study see: the same seed, different trial numbers."""
    sampler = TrialSeededSampler(SAMPLERS.get("tpe"), 0, lambda: {})
    assert sampler.seed_for(7) != sampler.seed_for(8)
    study = optuna.create_study(sampler=sampler)
    study.enqueue_trial({"x": 0.5})
    study.optimize(lambda trial: trial.suggest_float("x", 0.0, 1.0), n_trials=3)
    assert len({trial.params["x"] for trial in study.trials}) == 3
