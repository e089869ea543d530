"""``xaisearch evaluate STUDY --compare-canonization``: the paper's table for the study's model.

Rows: zennit's standard composites, the study's best trial (when the study exists), every
baseline method and any ``--composite`` files. Columns: one pair (uncanonized / canonized) per
metric of the study's suite, the better value of each pair in bold, a star where the paired test
finds the difference significant, and each row's mean rank over the metrics. ``--csv`` and
``--json`` carry the same numbers, one record per (method, metric).
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from pathlib import Path

import optuna
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from xaisearch.errors import InputError
from xaisearch.explain.config import ExplainerConfig
from xaisearch.files import write_text
from xaisearch.models.ref import ModelRef
from xaisearch.search.canonization_table import CANONIZED, UNCANONIZED, CanonizationTable, Pair, compare_canonization
from xaisearch.search.export import refuse_unfit_path
from xaisearch.search.table_methods import (
    baseline_methods,
    best_trial_method,
    check_method_names,
    choose,
    composite_files,
    refuse_missing_layers,
    standard_composites,
)
from xaisearch.spec import StudySpec

DIRECTION_MARK = {"higher": "↑", "lower": "↓"}
NO_CANONIZER = "canonizer: the study's canonizer is 'none'; name one (e.g. canonizer: vgg) to compare with"


def compare_command(
    spec: StudySpec,
    composites: Sequence[Path],
    methods: Sequence[str] | None,
    out_dir: Path | None,
    storage_url: str | None,
    csv_path: Path | None,
    as_json: bool,
) -> CanonizationTable:
    """Build the rows, score them both ways on the study's search set, print and write the table."""
    from xaisearch.cli.run import prepare_workbench

    # every mistake of the command line before a model is loaded or trained (minutes)
    if csv_path is not None:
        refuse_unfit_path(csv_path, "--csv")
    if methods is not None:
        check_method_names(methods)
    if spec.canonizer == "none":
        raise InputError(NO_CANONIZER)
    ref = ModelRef(name=spec.model.name, num_classes=spec.model.num_classes, input_shape=spec.model.input_shape)
    files = composite_files(composites, ref)
    console = Console(stderr=as_json, width=None if Console().is_terminal else 200)
    run_dir = out_dir or Path("runs") / spec.name
    bench = prepare_workbench(spec, run_dir, console)
    canonizer = bench.space.canonizer
    if canonizer == "none":
        raise InputError(NO_CANONIZER)
    layers = {name for name, _ in bench.model.named_modules()}
    for path, method in zip(composites, files):
        refuse_missing_layers(path, method.config.missing_layers(layers))
    available = standard_composites(bench) + best_trial_method(*_study_winner(spec, run_dir, storage_url))
    available += baseline_methods(bench)
    if methods is None and files:
        rows = files  # asked for files only
    else:
        rows = choose(available, methods) + files
    with _progress(console) as bar:
        task = bar.add_task("scoring", total=2 * len(rows))

        def progress(done: int, total: int, what: str) -> None:
            bar.update(task, completed=done, description=what)

        try:
            table = compare_canonization(bench, rows, canonizer, progress=progress)
        except ValueError as error:  # a layer without a rule, a canonizer that does not fit
            raise InputError(f"--compare-canonization: {error}") from None
    if csv_path is not None:
        write_text(csv_path, table_csv(table))
    if as_json:
        print(json.dumps(table.to_dict(), allow_nan=True))
    else:
        console.print(rich_table(table, plain=not console.is_terminal))
        console.print(legend(table))
        if csv_path is not None:
            console.print(f"wrote {csv_path}")
    return table


def _study_winner(
    spec: StudySpec, run_dir: Path, storage_url: str | None
) -> tuple[optuna.Study | None, ExplainerConfig | None]:
    """The study (when its storage exists) and its validated winner's config (when validated)."""
    from xaisearch.search.validation import stored_outcome
    from xaisearch.service.studies import default_storage_url, load_existing_study

    url = storage_url or default_storage_url(run_dir)
    if storage_url is None and not Path(url).is_file():
        return None, None
    try:
        study = load_existing_study(spec.name, url)
    except InputError:
        if storage_url is not None:
            raise
        return None, None
    outcome = stored_outcome(study, spec)
    return study, None if outcome is None else outcome.winner.candidate.config


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description:<40}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )


def cell(pair: Pair, plain: bool = False) -> str:
    """``uncanonized / canonized``: the better in bold (``**0.62**`` in plain text), ``*``
    significant, ``=`` equal."""
    u, c = (_number(pair.uncanonized[0]), _number(pair.canonized[0]))
    if pair.better == "equal":
        return f"{u} = {c}"
    bold = "**{}**" if plain else "[bold]{}[/bold]"
    if pair.better == CANONIZED:
        c = bold.format(c)
    else:
        u = bold.format(u)
    return f"{u} / {c}{' *' if pair.significant else ''}"


def _number(value: float) -> str:
    return "nan" if not math.isfinite(value) else f"{value:.3f}"


def rich_table(table: CanonizationTable, plain: bool = False) -> Table:
    title = f"{table.model}: canonized ({table.rows[0].canonizer}) or not, on the {table.images}"
    out = Table(title=title)
    out.add_column("method")
    for metric in table.metrics:
        out.add_column(f"{metric} {DIRECTION_MARK.get(table.directions[metric], '')}", justify="right")
    out.add_column("mean rank", justify="right")
    for row in table.rows:
        rank = f"{row.mean_rank[UNCANONIZED]:.1f} / {row.mean_rank[CANONIZED]:.1f}"
        out.add_row(row.method.name, *(cell(row.pairs[m], plain) for m in table.metrics), rank)
    return out


def legend(table: CanonizationTable) -> str:
    test = "Wilcoxon signed-rank" if table.test == "wilcoxon" else "paired bootstrap"
    return (
        f"Each cell: uncanonized / canonized, the mean over the {table.images}; bold: the better of the pair; "
        f"*: the difference is significant (p < {table.alpha}, {test}, paired over images); "
        "'=': equal (on every image, or to float precision for a method without rules, which canonization "
        "cannot change); "
        "mean rank: over all metrics, every cell ranked together (1 = best). Standard errors, p-values and "
        "effects per pair: --csv or --json."
    )


def table_csv(table: CanonizationTable) -> str:
    records = table.records()
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(records[0]) if records else ["method"])
    writer.writeheader()
    writer.writerows(records)
    return buffer.getvalue()
