"""``xaisearch status``: what a study is doing, from the storage alone."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timezone

import optuna
from rich.console import Console
from rich.table import Table

from xaisearch.search.export import best_trial
from xaisearch.search.study import completed_trials, study_budget
from xaisearch.search.trial_attributes import WORKER_ATTR, metric_means
from xaisearch.service.studies import load_existing_study


def print_status(name: str, storage_url: str, console: Console | None = None) -> None:
    console = console or Console(width=None if Console().is_terminal else 120)
    study = load_existing_study(name, storage_url)
    trials = study.get_trials(deepcopy=False)
    counts = Counter(t.state.name.lower() for t in trials)
    console.print(
        f"study {name}: budget {study_budget(study)}; "
        + (", ".join(f"{n} {state}" for state, n in sorted(counts.items())) or "no trials")
    )
    if completed_trials(study):
        best = best_trial(study)
        console.print(
            f"best trial on the search set: #{best.number}, objective {', '.join(f'{v:.4f}' for v in best.values)}"
        )
        for metric, value in sorted(metric_means(best.user_attrs).items()):
            console.print(f"  {metric}: {value:.4f}")
        _print_heldout(study, console)
    running = [t for t in trials if t.state == optuna.trial.TrialState.RUNNING]
    if running:
        table = Table("trial", "worker", "age", title="running trials")
        now = datetime.now(timezone.utc)
        for trial in running:
            started = trial.datetime_start
            if started is not None and started.tzinfo is None:
                started = started.replace(tzinfo=timezone.utc)
            age = f"{(now - started).total_seconds():.0f} s" if started else "?"
            table.add_row(str(trial.number), str(trial.user_attrs.get(WORKER_ATTR, "?")), age)
        console.print(table)
    workers = sorted({str(t.user_attrs[WORKER_ATTR]) for t in trials if WORKER_ATTR in t.user_attrs})
    if workers:
        console.print(f"workers seen: {len(workers)} ({', '.join(workers[:8])}{', ...' if len(workers) > 8 else ''})")


def _print_heldout(study: optuna.Study, console: Console) -> None:
    """The held-out table and the winner, when the study's validation is stored (nothing is computed)."""
    from xaisearch.cli.validation_report import heldout_table, sentences
    from xaisearch.search.study import study_spec
    from xaisearch.search.validation import stored_outcome

    spec = study_spec(study)
    outcome = stored_outcome(study, spec)
    if outcome is None:
        console.print(
            f"not validated on held-out images yet (or new trials entered the top {spec.validation.top_k}); "
            "'xaisearch export' or the end of 'xaisearch run' validates"
        )
        return
    header, rows = heldout_table(outcome, study, spec)
    table = Table(*header, title=f"search set vs {outcome.n_images} held-out images")
    for cells in rows:
        table.add_row(*cells)
    console.print(table)
    for line in sentences(outcome, spec, study):
        console.print(line)
