"""The main job: prepare a worker, run (or resume) the study, export the best config, report."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import optuna
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from xaisearch.devices import resolve_device
from xaisearch.search.export import WEIGHTS_DIR_ATTR, config_of, export_trial, seed_trials
from xaisearch.search.objective import Objective, mean_attr
from xaisearch.search.study import (
    SEED_NAME_ATTR,
    default_storage_url,
    finished_trials,
    mask_password,
    open_study,
)
from xaisearch.search.workbench import Workbench
from xaisearch.spec import StudySpec

BEST_CONFIG_NAME = "best_composite.json"
REPORT_NAME = "report.html"
FINISHED_STATES = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL, optuna.trial.TrialState.PRUNED)


@dataclass
class RunOutcome:
    study: optuna.Study
    run_dir: Path
    best_config: Path
    report: Path
    ran: int
    best_is_seed: bool
    best_seed: str | None


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
        console.print(
            f"model {spec.model.name}: {how} checkpoint, held-out accuracy {record['test_accuracy']:.1%} on {device}"
        )
    console.print(
        f"canonizer {bench.space.canonizer}; layer groups "
        + ", ".join(f"{g} ({len(layers)})" for g, layers in bench.space.groups.items())
        + f"; {sum(len(b.x) for b in bench.batches)} evaluation images"
    )
    return bench


def optimise(study: optuna.Study, bench: Workbench, budget: int, console: Console) -> int:
    """Run trials until ``budget`` trials of the study are finished (by any worker)."""
    remaining = budget - len(finished_trials(study))
    if remaining <= 0:
        console.print(f"study {study.study_name!r} already has its {budget} finished trials; nothing to run")
        return 0
    with _progress(console) as progress:
        task = progress.add_task("trials", total=remaining, info="")

        def on_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
            best = study.best_value if any(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials) else None
            info = f"best {best:.4f}" if best is not None else ""
            progress.update(task, advance=1, info=info)

        study.optimize(
            Objective(bench),
            n_trials=remaining,
            callbacks=[optuna.study.MaxTrialsCallback(budget, states=FINISHED_STATES), on_trial],
            catch=(RuntimeError, FloatingPointError),
            gc_after_trial=False,
        )
    return remaining


def comparison_table(study: optuna.Study, metric_names: list[str]) -> tuple[list[str], list[list[str]], str | None]:
    """Header and rows of best trial vs every seed; also the best seed's name."""
    seeds = seed_trials(study)
    best = study.best_trial
    header = ["configuration", "trial", "objective"] + metric_names

    def row(label: str, trial: optuna.trial.FrozenTrial) -> list[str]:
        cells = [label, str(trial.number), f"{trial.value:.4f}"]
        for name in metric_names:
            value = trial.user_attrs.get(mean_attr(name))
            cells.append("nan" if value is None or not math.isfinite(value) else f"{value:.4f}")
        return cells

    rows = [row("best", best)]
    rows += [row(f"seed {name}", trial) for name, trial in sorted(seeds.items(), key=lambda kv: -kv[1].value)]
    best_seed = max(seeds, key=lambda name: seeds[name].value) if seeds else None
    return header, rows, best_seed


def heatmap_gallery(bench: Workbench, study: optuna.Study, best_seed: str | None, n_images: int = 6):
    from xaisearch.report.heatmaps import heatmap_rgb, image_rgb, png_data_uri

    batch = bench.batches[0]
    x, y = batch.x[:n_images], batch.y[:n_images]
    rows = [("input", [png_data_uri(image_rgb(image)) for image in x])]
    chosen = [("best trial", study.best_trial)]
    if best_seed is not None:
        chosen.append((f"best seed ({best_seed})", seed_trials(study)[best_seed]))
    for label, trial in chosen:
        attribution = bench.explainer(config_of(trial, study))(x, y)
        rows.append((label, [png_data_uri(heatmap_rgb(a)) for a in attribution]))
    return rows


def run_study(
    spec: StudySpec,
    out_dir: Path | None = None,
    storage_url: str | None = None,
    budget: int | None = None,
    console: Console | None = None,
) -> RunOutcome:
    console = console or Console(width=None if Console().is_terminal else 120)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    torch.manual_seed(spec.seed)
    run_dir = out_dir or Path("runs") / spec.name
    run_dir.mkdir(parents=True, exist_ok=True)
    storage_url = storage_url or default_storage_url(run_dir)
    bench = prepare_workbench(spec, run_dir, console)
    study, skipped = open_study(spec, storage_url, bench.space)
    for line in skipped:
        console.print(f"[yellow]{line}[/yellow]")
    if WEIGHTS_DIR_ATTR not in study.user_attrs:
        study.set_user_attr(WEIGHTS_DIR_ATTR, str(run_dir.resolve()))
    budget = budget or spec.n_trials
    console.print(f"study {spec.name!r} on {mask_password(storage_url)}: budget {budget} trials")
    ran = optimise(study, bench, budget, console)

    best_path = run_dir / BEST_CONFIG_NAME
    export_trial(study, best_path)
    header, rows, best_seed = comparison_table(study, bench.suite.names)
    table = Table(*header, title="best configuration vs seed composites")
    for cells in rows:
        table.add_row(*cells)
    console.print(table)
    best = study.best_trial
    best_is_seed = SEED_NAME_ATTR in best.user_attrs
    if best_is_seed:
        console.print(f"a seed won: zennit's {best.user_attrs[SEED_NAME_ATTR]} is the best configuration found")
    elif best_seed is not None:
        margin = best.value - seed_trials(study)[best_seed].value
        console.print(f"best trial #{best.number} beats every seed composite (best seed {best_seed} by {margin:+.4f})")
    from xaisearch.report.html import write_report

    report = write_report(study, run_dir / REPORT_NAME, (header, rows), heatmap_gallery(bench, study, best_seed))
    console.print(f"wrote {best_path} and {report}")
    return RunOutcome(study, run_dir, best_path, report, ran, best_is_seed, best_seed)
