"""Prove the winner on images the search never saw.

The best of many trials on the search set is optimistic: part of its lead is selection noise.
When a search ends, the ``validation.top_k`` best trials (by their search objective), the best
seed composite and plain gradient are re-scored, with the study's own suite, on the held-out
validation set (``data.n_validation`` images, disjoint from the search set:
``workbench.validation_batches``). The winner is the best trial **there**; the search's own
best is kept beside it. The winner is tested against the runner-up and the best seed
(``significance``), and the ranking of the trials is recomputed under every applicable
perturbation of the metric settings (``metrics.settings.PERTURBATIONS``, ``stability``).

Scores are stored on the study (user attributes under ``validation.<fingerprint>.``, one per
configuration: per-image scores and per-perturbation means), so a re-run, ``export`` and other
processes read them instead of computing them again; the fingerprint covers everything the
scores depend on (the search's content hash and the validation set's size).

With ``objective.normalisation: seed`` the held-out objective is normalised by the seed
composites' means on the search set (the same fixed reference as the trials'); under a perturbed
setting, where no seed was scored, by the validated trials' own means.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import optuna
import torch

from xaisearch.explain.config import ExplainerConfig
from xaisearch.explain.evidence import HeldoutScores, MeanSem, Significance, ValidationEvidence
from xaisearch.metrics.settings import applicable_perturbations
from xaisearch.metrics.suite import MetricSuite, WeightedMetric, summary
from xaisearch.search.export import config_of, search_objective, seed_trials
from xaisearch.search.normalisation import weighted_objective
from xaisearch.search.significance import paired_test
from xaisearch.search.stability import stability_of
from xaisearch.search.trial_attributes import metric_means
from xaisearch.search.workbench import Workbench
from xaisearch.spec import StudySpec

ATTR_PREFIX = "validation"
GRADIENT = "gradient"
Progress = Callable[[int, int, str], None]  # (done, total, what is being scored)


@dataclass(frozen=True)
class Candidate:
    """A configuration re-scored on the validation set."""

    label: str  # "trial 17", "seed epsilon_gamma_box (trial 2)", "gradient"
    key: str  # its results' attribute suffix: "trial_17" or "gradient"
    trial: int | None
    config: ExplainerConfig
    search_objective: float | None
    seed: str | None = None


@dataclass
class Scored:
    """One candidate's held-out results: per-image scores and, per perturbation, metric means."""

    candidate: Candidate
    per_image: dict[str, list[float]]
    perturbed: dict[str, dict[str, float]] = field(default_factory=dict)
    objective: float = float("nan")
    objective_per_image: list[float] = field(default_factory=list)


def fingerprint(spec: StudySpec) -> str:
    """What held-out scores depend on: the search (content hash) and the validation set's size."""
    key = f"{spec.content_hash()}:{spec.data.validation_size}:heldout/1"
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def candidates(
    study: optuna.Study, spec: StudySpec, entries: Sequence[WeightedMetric], also: Sequence[int] = ()
) -> list[Candidate]:
    """The ``top_k`` completed trials by search objective, the best seed composite, plain
    gradient, and the trials ``also`` names (an export of a chosen trial)."""
    completed = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    ranked = sorted(completed, key=lambda t: (-search_objective(t, entries), t.number))
    chosen = ranked[: spec.validation.top_k]
    seeds = {trial.number: name for name, trial in seed_trials(study).items()}
    best_seed = next((t for t in ranked if t.number in seeds), None)
    extra = [t for t in completed if t.number in set(also)]
    picked: dict[int, optuna.trial.FrozenTrial] = {}
    for trial in [*chosen, *([best_seed] if best_seed else []), *extra]:
        picked.setdefault(trial.number, trial)
    result = []
    for trial in picked.values():
        seed = seeds.get(trial.number)
        label = f"seed {seed} (trial {trial.number})" if seed else f"trial {trial.number}"
        value = search_objective(trial, entries)
        result.append(Candidate(label, f"trial_{trial.number}", trial.number, config_of(trial, study), value, seed))
    if result:
        gradient = ExplainerConfig(model=result[0].config.model, canonizer="none", method="gradient")
        result.append(Candidate(GRADIENT, GRADIENT, None, gradient, None))
    return result


class HeldoutScorer:
    """Scores configurations on the validation set with the study's suite and, for stability,
    with every perturbed suite; each suite is built once, so its per-batch caches (clean outputs,
    noise draws) serve every configuration, as a worker's serve every trial."""

    def __init__(self, bench: Workbench, stability: bool) -> None:
        self.bench = bench
        self.batches = bench.heldout_batches()
        self.suite = MetricSuite(bench.suite.entries)
        perturbations = applicable_perturbations(bench.suite.entries) if stability else []
        self.perturbed = [(p.name, MetricSuite(entries)) for p, entries in perturbations]

    @property
    def n_images(self) -> int:
        return sum(len(batch.x) for batch in self.batches)

    def score(self, candidate: Candidate, perturb: bool) -> Scored:
        from xaisearch.metrics.execution import explain_in_chunks

        explain = self.bench.explainer(candidate.config)
        maps = [explain_in_chunks(explain, self.bench.model, b.x, b.y) for b in self.batches]
        scores = self.suite.score(self.bench.model, self.batches, explain, attributions=maps)
        perturbed = {}
        for name, suite in self.perturbed if perturb else []:
            means = suite.score(self.bench.model, self.batches, explain, attributions=maps)
            perturbed[name] = {metric: summary(values)[0] for metric, values in means.items()}
        return Scored(candidate, {name: values.tolist() for name, values in scores.items()}, perturbed)


def _stored(scored: Scored) -> dict[str, Any]:
    finite = lambda v: v if math.isfinite(v) else None  # noqa: E731 - JSON has no NaN
    return {
        "per_image": {name: [finite(v) for v in values] for name, values in scored.per_image.items()},
        "perturbed": {p: {m: finite(v) for m, v in means.items()} for p, means in scored.perturbed.items()},
    }


def _loaded(candidate: Candidate, data: Mapping[str, Any]) -> Scored:
    nan = lambda v: float("nan") if v is None else float(v)  # noqa: E731
    per_image = {name: [nan(v) for v in values] for name, values in data["per_image"].items()}
    perturbed = {p: {m: nan(v) for m, v in means.items()} for p, means in data.get("perturbed", {}).items()}
    return Scored(candidate, per_image, perturbed)


@dataclass
class ValidationOutcome:
    """The held-out results of one study: every candidate's scores, the winner and the evidence
    for ``subject`` (the winner, or the trial an export names)."""

    scored: list[Scored]  # the trials first (best on validation first), gradient last
    winner: Scored
    subject: Scored
    search_best: int
    evidence: ValidationEvidence
    n_images: int

    @property
    def winner_differs(self) -> bool:
        return self.winner.candidate.trial != self.search_best

    def by_trial(self, number: int) -> Scored | None:
        return next((s for s in self.scored if s.candidate.trial == number), None)


def reference_means(study: optuna.Study, spec: StudySpec, bench: Callable[[], Workbench]) -> list[dict[str, float]]:
    """The seed composites' search-set means (stored on their trials; computed if none finished)."""
    if spec.objective.normalisation != "seed":
        return []
    stored = [metric_means(t.user_attrs) for t in seed_trials(study).values()]
    return stored or bench().seed_reference()


def validate(
    study: optuna.Study,
    spec: StudySpec,
    bench: Callable[[], Workbench],
    subject: int | None = None,
    progress: Progress | None = None,
) -> ValidationOutcome | None:
    """Re-score the candidates on the validation set and build the evidence for ``subject`` (a
    trial number; default: the winner on validation). ``None`` when no trial completed.

    Stored results are reused; ``bench`` (the workbench, made on first call: it loads the model)
    is only asked for when something must be scored.
    """
    from xaisearch.search.workbench import build_suite

    entries = build_suite(spec).entries
    chosen = candidates(study, spec, entries, also=[subject] if subject is not None else [])
    if not chosen:
        return None
    prefix = f"{ATTR_PREFIX}.{fingerprint(spec)}."
    perturbations = bool(applicable_perturbations(entries)) and spec.validation.stability
    scorer: HeldoutScorer | None = None
    scored: list[Scored] = []
    for index, candidate in enumerate(chosen):
        perturb = perturbations and candidate.trial is not None
        data = study.user_attrs.get(prefix + candidate.key)
        if data is None or (perturb and not data.get("perturbed")):
            scorer = scorer or HeldoutScorer(bench(), spec.validation.stability)
            if progress is not None:
                progress(index, len(chosen), candidate.label)
            result = scorer.score(candidate, perturb)
            study.set_user_attr(prefix + candidate.key, _stored(result))
        else:
            result = _loaded(candidate, data)
        scored.append(result)
    if progress is not None:
        progress(len(chosen), len(chosen), "")
    reference = reference_means(study, spec, bench)
    for result in scored:
        result.objective, result.objective_per_image = _objectives(result.per_image, entries, spec, reference)
    return _outcome(scored, spec, entries, subject)


def stored_outcome(study: optuna.Study, spec: StudySpec) -> ValidationOutcome | None:
    """The held-out results already stored on the study, or ``None`` when a candidate (or every
    one) has none yet: what ``status`` shows without loading a model."""

    def no_bench() -> Workbench:
        raise _NotValidated

    try:
        return validate(study, spec, no_bench)
    except _NotValidated:
        return None


class _NotValidated(Exception):
    """Raised instead of loading a model: a candidate has no stored held-out scores."""


def _objectives(
    per_image: Mapping[str, Sequence[float]],
    entries: Sequence[WeightedMetric],
    spec: StudySpec,
    reference: Sequence[Mapping[str, float]],
) -> tuple[float, list[float]]:
    """The objective of the held-out means, and the objective of each image (for paired tests)."""
    normalisation = spec.objective.normalisation
    means = {name: summary(torch.tensor(values, dtype=torch.float64))[0] for name, values in per_image.items()}
    objective = weighted_objective(means, entries, normalisation, reference)
    count = len(next(iter(per_image.values()), []))
    per = [
        weighted_objective({name: values[i] for name, values in per_image.items()}, entries, normalisation, reference)
        for i in range(count)
    ]
    return objective, per


def _outcome(
    scored: list[Scored], spec: StudySpec, entries: Sequence[WeightedMetric], subject: int | None
) -> ValidationOutcome:
    trials = [s for s in scored if s.candidate.trial is not None]
    ranked = sorted(trials, key=lambda s: (-_finite_or_low(s.objective), -_finite_or_low(s.candidate.search_objective)))
    gradient = [s for s in scored if s.candidate.trial is None]
    winner = ranked[0]
    focus = next((s for s in ranked if s.candidate.trial == subject), winner) if subject is not None else winner
    search_best = max(trials, key=lambda s: (_finite_or_low(s.candidate.search_objective), -(s.candidate.trial or 0)))
    n_images = len(winner.objective_per_image)
    objective_sem = summary(torch.tensor(focus.objective_per_image, dtype=torch.float64))[1]
    heldout = HeldoutScores(
        n_images=n_images,
        objective=_json_float(focus.objective),
        objective_sem=_json_float(objective_sem),
        scores={
            name: MeanSem(mean=_json_float(m), sem=_json_float(s))
            for name, values in focus.per_image.items()
            for m, s in [summary(torch.tensor(values, dtype=torch.float64))]
        },
        search_objective=_json_float(focus.candidate.search_objective),
    )
    test, alpha = spec.validation.test, spec.validation.alpha
    others = [s for s in ranked if s is not focus]
    seeds = sorted((s for s in trials if s.candidate.seed), key=lambda s: -_finite_or_low(s.candidate.search_objective))

    def compare(other: Scored) -> Any:
        mine, theirs = focus.objective_per_image, other.objective_per_image
        return paired_test(mine, theirs, test, alpha, other.candidate.trial, other.candidate.label)

    significance = Significance(
        alpha=alpha,
        vs_runner_up=compare(others[0]) if others else None,
        vs_best_seed=compare(seeds[0]) if seeds else None,
    )
    stability = stability_of(ranked, focus, entries, spec) if spec.validation.stability else None
    evidence = ValidationEvidence(
        search_best=search_best.candidate.trial, heldout=heldout, significance=significance, stability=stability
    )
    best = search_best.candidate.trial
    assert best is not None  # a trial candidate
    return ValidationOutcome([*ranked, *gradient], winner, focus, best, evidence, n_images)


def _finite_or_low(value: float | None) -> float:
    return value if value is not None and math.isfinite(value) else float("-inf")


def _json_float(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None
