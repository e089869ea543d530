"""The main job: create or resume the study, run its trials, export the best config, report.

``workers=1`` runs the trials in this process with progress bars; ``workers=K`` starts K worker
processes (``xaisearch worker``) on the same storage and watches them (``launcher``).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import optuna
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from xaisearch.data.loading import missing_data_root
from xaisearch.devices import resolve_device
from xaisearch.errors import InputError
from xaisearch.search.export import best_seed_name, best_trial, config_of, export_trial, pick_trial, seed_trials
from xaisearch.search.objective import HeatmapSink, Objective
from xaisearch.search.preflight import preflight
from xaisearch.search.study import SEED_NAME_ATTR, completed_trials, study_budget, trials_to_start
from xaisearch.search.trial_attributes import mean_attr
from xaisearch.search.validation import ValidationOutcome
from xaisearch.search.workbench import Workbench
from xaisearch.service.storage import check_storage, mask_password, refuse_concurrent_sqlite
from xaisearch.service.studies import default_storage_url, open_study
from xaisearch.service.worker import WorkerOptions, run_interruptibly, worker_id
from xaisearch.spec import StudySpec

BEST_CONFIG_NAME = "best_composite.json"
REPORT_NAME = "report.html"
ARTIFACTS_NAME = "artifacts"


@dataclass
class RunOutcome:
    study: optuna.Study
    run_dir: Path
    best_config: Path
    report: Path
    ran: int
    best_is_seed: bool  # the winner (chosen on held-out images) is a seed composite
    best_seed: str | None
    validation: ValidationOutcome | None = None


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


def prepare_workbench(spec: StudySpec, run_dir: Path, console: Console) -> Workbench:
    device = resolve_device(spec.device)
    with _progress(console) as progress:
        task = progress.add_task("training model", total=None, info="", visible=False)

        def on_step(step: int, total: int, loss: float) -> None:
            progress.update(task, completed=step, total=total, info=f"loss {loss:.3f}", visible=True)

        bench = Workbench.prepare(spec, run_dir, device, on_step)
    record = bench.model_record
    if "test_accuracy" in record:
        how = "trained" if record.get("trained") else "loaded cached"
        accuracy = record["test_accuracy"]
        console.print(f"model {spec.model.name}: {how} checkpoint, held-out accuracy {accuracy:.1%} on {device}")
    console.print(
        f"canonizer {bench.space.canonizer}; layer groups "
        + ", ".join(f"{g} ({len(layers)})" for g, layers in bench.space.groups.items())
        + f"; {sum(len(b.x) for b in bench.batches)} evaluation images"
    )
    return bench


def _best_info(study: optuna.Study) -> str:
    if len(study.directions) > 1 or not completed_trials(study):
        return f"{len(completed_trials(study))} done"
    return f"best {study.best_value:.4f} on the search set"


def optimise_here(
    study: optuna.Study, bench: Workbench, console: Console, upload_heatmaps: HeatmapSink | None = None
) -> int:
    """Run trials in this process until the study's budget is reached."""
    budget = study_budget(study)
    remaining = trials_to_start(study, budget)
    if remaining <= 0:
        console.print(f"study {study.study_name!r} already has its {budget} completed trials; nothing to run")
        return 0
    with _progress(console) as progress:
        task = progress.add_task("trials", total=remaining, info="")
        evaluation = progress.add_task("  evaluating", total=len(bench.batches), info="batches")

        def on_batch(done: int, total: int) -> None:
            progress.update(evaluation, completed=done, total=total)

        def on_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
            failed = trial.state == optuna.trial.TrialState.FAIL  # uses no budget: another trial follows
            progress.update(task, advance=0 if failed else 1, info=_best_info(study))

        objective = Objective(bench, on_batch, worker=worker_id(), upload_heatmaps=upload_heatmaps)
        return run_interruptibly(study, objective, on_trial=on_trial)


def optimise_with_workers(
    study: optuna.Study, storage_url: str, run_dir: Path, workers: int, console: Console, artifact_dir: Path
) -> int:
    """Start ``workers`` worker processes and show the study's progress until they finish."""
    import threading

    from xaisearch.service.launcher import launch_workers

    budget = study_budget(study)
    before = len(completed_trials(study))
    if trials_to_start(study, budget) <= 0:
        console.print(f"study {study.study_name!r} already has its {budget} completed trials; nothing to run")
        return 0
    args = WorkerOptions(study.study_name, storage_url, run_dir=run_dir, artifact_dir=str(artifact_dir)).command_args()
    finished = threading.Event()
    with _progress(console) as progress:
        task = progress.add_task(f"trials ({workers} workers)", total=budget, completed=before, info="")

        def watch() -> None:
            while not finished.wait(1.0):
                progress.update(task, completed=len(completed_trials(study)), info=_best_info(study))

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        try:
            deaths = launch_workers(
                study.study_name,
                storage_url,
                ["cpu"] * workers
                if not torch.cuda.is_available()
                else [str(i % torch.cuda.device_count()) for i in range(workers)],
                args,
                budget_reached=lambda: trials_to_start(study, budget) <= 0,
            )
        finally:
            finished.set()
            watcher.join()
        progress.update(task, completed=len(completed_trials(study)), info=_best_info(study))
    if deaths:
        console.print(f"[yellow]{deaths} worker(s) died; their running trials were re-enqueued[/yellow]")
    return len(completed_trials(study)) - before


def comparison_table(study: optuna.Study, metric_names: list[str]) -> tuple[list[str], list[list[str]], str | None]:
    """Header and rows of best trial vs every seed; also the best seed's name."""
    seeds = seed_trials(study)
    best = best_trial(study)
    header = ["configuration", "trial", "objective"] + metric_names

    def row(label: str, trial: optuna.trial.FrozenTrial) -> list[str]:
        objective = ", ".join(f"{v:.4f}" for v in trial.values)
        cells = [label, str(trial.number), objective]
        for name in metric_names:
            value = trial.user_attrs.get(mean_attr(name))
            cells.append("nan" if value is None or not math.isfinite(value) else f"{value:.4f}")
        return cells

    ranked = sorted(seeds.items(), key=lambda kv: -kv[1].values[0])
    rows = [row("best", best)] + [row(f"seed {name}", trial) for name, trial in ranked]
    return header, rows, ranked[0][0] if ranked else None


def heatmap_gallery(
    bench: Workbench, study: optuna.Study, winner: optuna.trial.FrozenTrial, best_seed: str | None, n_images: int = 6
) -> list[tuple[str, list[str]]]:
    from xaisearch.report.heatmaps import heatmap_rgb, image_rgb, png_data_uri

    batch = bench.batches[0]
    x, y = batch.x[:n_images], batch.y[:n_images]
    bounds = bench.spec.data.bounds()
    rows = [("input", [png_data_uri(image_rgb(image, *bounds)) for image in x])]
    chosen = [(f"winner (trial {winner.number})", winner)]
    if best_seed is not None and seed_trials(study)[best_seed].number != winner.number:
        chosen.append((f"best seed ({best_seed})", seed_trials(study)[best_seed]))
    for label, trial in chosen:
        attribution = bench.explainer(config_of(trial, study))(x, y)
        rows.append((label, [png_data_uri(heatmap_rgb(a)) for a in attribution]))
    return rows


def summarise(
    study: optuna.Study, bench: Workbench, run_dir: Path, console: Console
) -> tuple[Path, Path, bool, str | None, ValidationOutcome | None]:
    """Validate on held-out images, export the winner with its evidence, print the table and what
    the evidence says, write the report."""
    from xaisearch.cli.validation_report import heldout_table, sentences, validate_with_progress
    from xaisearch.report.html import write_report

    outcome = validate_with_progress(study, bench.spec, lambda: bench, console)
    number = outcome.winner.candidate.trial if outcome is not None else None
    best_path = run_dir / BEST_CONFIG_NAME
    exported = export_trial(study, best_path, number, evidence=outcome.evidence if outcome else None)
    winner = pick_trial(study, exported.trial)
    best_seed = best_seed_name(study)
    if outcome is not None:
        header, rows = heldout_table(outcome, study, bench.spec)
        title = (
            f"objective on the search set and on {outcome.n_images} held-out images (the winner's set); "
            "metric columns: held-out means"
        )
    else:
        header, rows, _ = comparison_table(study, bench.suite.names)
        title = "best configuration vs seed composites"
    table = Table(*header, title=title)
    for cells in rows:
        table.add_row(*cells)
    console.print(table)
    best_is_seed = SEED_NAME_ATTR in winner.user_attrs
    for line in sentences(outcome, bench.spec, study) if outcome is not None else []:
        console.print(line)
    gallery = heatmap_gallery(bench, study, winner, best_seed)
    report = write_report(study, run_dir / REPORT_NAME, (header, rows), gallery)
    console.print(f"wrote {best_path} and {report}")
    return best_path, report, best_is_seed, best_seed, outcome


def check_run_dir(run_dir: Path) -> None:
    """Refuse a run folder (``--out``) that cannot be one, without making it: it or a parent is a
    file, or the nearest existing folder is not writable."""
    existing = next((p for p in (run_dir, *run_dir.parents) if p.exists()), Path("."))
    if not existing.is_dir():
        where = "is a file" if existing == run_dir else f"lies under the file {existing}"
        raise InputError(f"--out {run_dir}: {where}; give a folder for the run")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InputError(f"--out {run_dir}: {existing} is not writable; give a writable folder")


def create_study(
    spec: StudySpec,
    out_dir: Path | None = None,
    storage_url: str | None = None,
    budget: int | None = None,
    console: Console | None = None,
) -> tuple[optuna.Study, Workbench, Path, str]:
    """Prepare the model (train once if needed) and create or resume the study; idempotent."""
    console = console or Console(width=None if Console().is_terminal else 120)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    torch.manual_seed(spec.seed)
    run_dir = out_dir or Path("runs") / spec.name
    if spec.data.root is not None and (missing := missing_data_root(spec.data.name, spec.data.root)) is not None:
        raise InputError(missing)  # first: a missing dataset costs no model build and no weights download
    preflight(spec)  # the model, canonizer, search space and sampler fit: before anything is trained or written
    check_run_dir(run_dir)
    storage_url = default_storage_url(run_dir) if storage_url is None else storage_url  # '' is refused, not replaced
    check_storage(storage_url)
    created = not run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        bench = prepare_workbench(spec, run_dir, console)
        bench.heldout_batches()  # a dataset too small for the validation set fails now, not after the search
    except (InputError, KeyboardInterrupt):  # bad data root or weights, or Ctrl-C while training: leave nothing
        if created and not any(run_dir.iterdir()):
            run_dir.rmdir()
        raise
    study, skipped = open_study(spec, storage_url, bench.space, budget, run_dir, bench.directions())
    for line in skipped:
        console.print(f"[yellow]{line}[/yellow]")
    console.print(f"study {spec.name!r} on {mask_password(storage_url)}: budget {study_budget(study)} trials")
    return study, bench, run_dir, storage_url


def run_study(
    spec: StudySpec,
    out_dir: Path | None = None,
    storage_url: str | None = None,
    budget: int | None = None,
    console: Console | None = None,
    workers: int = 1,
) -> RunOutcome:
    console = console or Console(width=None if Console().is_terminal else 120)
    if storage_url is not None:
        refuse_concurrent_sqlite(storage_url, workers)
    study, bench, run_dir, storage_url = create_study(spec, out_dir, storage_url, budget, console)
    from xaisearch.service.recovery import recover_orphans

    for number in recover_orphans(study):
        console.print(f"[yellow]trial {number} was left running by a process that is gone; re-enqueued[/yellow]")
    artifact_dir = run_dir / ARTIFACTS_NAME
    if workers > 1:
        ran = optimise_with_workers(study, storage_url, run_dir, workers, console, artifact_dir)
    else:
        from xaisearch.service.artifacts import heatmap_uploader, open_artifact_store

        ran = optimise_here(study, bench, console, heatmap_uploader(open_artifact_store(artifact_dir)))
    best_path, report, best_is_seed, best_seed, validation = summarise(study, bench, run_dir, console)
    return RunOutcome(study, run_dir, best_path, report, ran, best_is_seed, best_seed, validation)
