"""The held-out validation as people read it: a table and sentences that say how sure we are.

Every number says what it was measured on: the search set (the images the trials were chosen
on) or the held-out images (never seen by the search), and every comparison names its test.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import optuna
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from xaisearch.explain.evidence import Comparison
from xaisearch.metrics.suite import summary
from xaisearch.search.export import search_objective, seed_trials
from xaisearch.search.significance import describe
from xaisearch.search.validation import ValidationOutcome, validate
from xaisearch.search.workbench import Workbench, build_suite
from xaisearch.spec import StudySpec


def validate_with_progress(
    study: optuna.Study, spec: StudySpec, bench: Callable[[], Workbench], console: Console
) -> ValidationOutcome | None:
    """``search.validation.validate`` with a progress bar while configurations are re-scored."""
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"))
    with Progress(*columns, TimeElapsedColumn(), console=console, transient=False) as progress:
        task = progress.add_task(
            f"validating on {spec.data.validation_size} held-out images", total=None, info="", visible=False
        )

        def on_candidate(done: int, total: int, label: str) -> None:
            progress.update(task, completed=done, total=total, info=label, visible=True)

        return validate(study, spec, bench, progress=on_candidate)


def _number(value: float | None) -> str:
    return "nan" if value is None or not math.isfinite(value) else f"{value:.4f}"


def heldout_table(
    outcome: ValidationOutcome, study: optuna.Study, spec: StudySpec
) -> tuple[list[str], list[list[str]]]:
    """Header and rows: every validated configuration and every seed, with the objective on the
    search set and on the held-out images (mean ± standard error) and the held-out metric means."""
    entries = build_suite(spec).entries
    names = [entry.metric.name for entry in entries]
    n_search, n_heldout = spec.data.n_eval, outcome.n_images
    header = ["configuration", "trial", f"search set ({n_search} img)", f"held-out ({n_heldout} img) ± sem", *names]
    rows = []
    for scored in outcome.scored:
        candidate = scored.candidate
        if scored is outcome.winner:
            role = "winner"
        elif candidate.trial == outcome.search_best:
            role = "search best"
        elif candidate.trial is None:
            role = "plain gradient"
        else:
            role = "validated"
        label = f"{role} (seed {candidate.seed})" if candidate.seed else role
        sem = summary(_tensor(scored.objective_per_image))[1]
        means = [summary(_tensor(scored.per_image.get(name, [])))[0] for name in names]
        rows.append(
            [
                label,
                "-" if candidate.trial is None else str(candidate.trial),
                "-" if candidate.search_objective is None else _number(candidate.search_objective),
                f"{_number(scored.objective)} ± {_number(sem)}",
                *(_number(m) for m in means),
            ]
        )
    validated = {s.candidate.trial for s in outcome.scored}
    for name, trial in sorted(seed_trials(study).items(), key=lambda kv: -search_objective(kv[1], entries)):
        if trial.number not in validated:
            rows.append(
                [
                    f"seed {name}",
                    str(trial.number),
                    _number(search_objective(trial, entries)),
                    "not validated",
                    *("" for _ in names),
                ]
            )
    return header, rows


def _tensor(values: list[float]) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


def _what(comparison: Comparison) -> str:
    return comparison.label or (f"trial {comparison.trial}" if comparison.trial is not None else "the other")


def sentences(outcome: ValidationOutcome, spec: StudySpec, study: optuna.Study) -> list[str]:
    """What the held-out validation says, one sentence a line."""
    evidence, winner = outcome.evidence, outcome.subject
    n = outcome.n_images
    heldout = evidence.heldout
    sem = f" ± {heldout.objective_sem:.4f}" if heldout.objective_sem is not None else ""
    lines = [
        f"winner, chosen on {n} held-out images: trial #{winner.candidate.trial}"
        + (f" (seed {winner.candidate.seed})" if winner.candidate.seed else "")
        + f", objective {_number(heldout.objective)}{sem} held-out, {_number(heldout.search_objective)} on the "
        f"{spec.data.n_eval} search images"
    ]
    if outcome.winner_differs and winner is outcome.winner:
        best = outcome.by_trial(outcome.search_best)
        if best is not None:
            rank = outcome.scored.index(best) + 1
            lines.append(
                f"the search set's best, trial #{outcome.search_best} ({_number(best.candidate.search_objective)} "
                f"on the search set), is #{rank} on held-out images ({_number(best.objective)}): "
                "the winner differs from the search's choice"
            )
    significance = evidence.significance
    if significance.vs_runner_up is not None:
        comparison = significance.vs_runner_up
        lines.append(f"against the runner-up: {describe(comparison, _what(comparison))}")
    if significance.vs_best_seed is not None:
        comparison = significance.vs_best_seed
        if comparison.trial == winner.candidate.trial:
            lines.append("against the best seed: the winner is that seed composite itself")
        else:
            lines.append(f"against the best seed: {describe(comparison, _what(comparison))}")
    stability = evidence.stability
    if stability is not None and stability.perturbations:
        flipped = [p.name for p in stability.perturbations if not p.winner_kept]
        tau = "undefined" if stability.kendall_tau is None else f"{stability.kendall_tau:.2f}"
        kept, total = sum(p.winner_kept for p in stability.perturbations), len(stability.perturbations)
        line = (
            f"under {total} perturbed metric settings ({stability.n_candidates} trials re-ranked on held-out "
            f"images): median Kendall tau {tau}; the winner stays first under {kept} of {total}"
        )
        lines.append(line + (f" (not under {', '.join(flipped)})" if flipped else ""))
    elif stability is not None:
        lines.append("no metric of this suite has a setting to perturb: stability not measured")
    return lines
