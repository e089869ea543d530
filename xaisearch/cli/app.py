"""The ``xaisearch`` command line: one thin function per command, the work lives in the package.

Exit codes: 0 ok, 2 bad input (one line naming the field or file), 1 unexpected failure.
Heavy imports (torch, zennit, optuna) happen inside the commands so ``--help`` stays fast.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer

app = typer.Typer(
    name="xaisearch",
    help="Find the best LRP explanation settings for a neural network.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

StorageOption = typer.Option(
    None, "--storage", help="journal file path, sqlite:///FILE or postgresql+psycopg2://USER@HOST/DB"
)


@contextmanager
def resumable() -> Iterator[None]:
    """Ctrl-C anywhere in a command whose state is always resumable (trials re-enqueued, files
    written atomically) becomes ``Interrupted``, which ``main`` reports in one line."""
    from xaisearch.errors import Interrupted

    try:
        yield
    except KeyboardInterrupt:
        raise Interrupted() from None


@app.command()
def run(
    study_file: Path = typer.Argument(..., help="YAML study file, e.g. studies/demo.yaml"),
    storage: str | None = StorageOption,
    n_trials: int | None = typer.Option(None, "--n-trials", min=1, help="study budget (default: the file's n_trials)"),
    out: Path | None = typer.Option(None, "--out", help="run directory (default: runs/<study name>)"),
    workers: int = typer.Option(1, "--workers", min=1, help="worker processes on this machine (one per GPU)"),
) -> None:
    """Create or resume a study, run its trials, write best_composite.json and report.html."""
    from xaisearch.spec import load_spec

    spec = load_spec(study_file)  # before the heavy imports: a mistake in the file is reported at once
    with resumable():
        from xaisearch.cli.run import run_study

        run_study(spec, out_dir=out, storage_url=storage, budget=n_trials, workers=workers)


@app.command()
def validate(
    study_file: Path = typer.Argument(..., help="YAML study file, e.g. studies/demo.yaml"),
    storage: str | None = typer.Option(None, "--storage", help="also check this storage (connects; creates nothing)"),
) -> None:
    """Check a study file without training or writing anything: its fields, then whether its
    model, canonizer, search space and sampler fit together (and the storage, if given)."""
    from xaisearch.spec import load_spec

    spec = load_spec(study_file)
    from xaisearch.search.preflight import preflight

    space = preflight(spec)
    if storage is not None:
        from xaisearch.service.storage import check_storage

        check_storage(storage)
    groups = ", ".join(f"{name} ({len(layers)})" for name, layers in space.groups.items())
    typer.echo(f"{study_file}: valid; canonizer {space.canonizer}; layer groups {groups}")
    if spec.data.root is not None:  # valid without its data; say what a run will need
        from xaisearch.data.loading import missing_data_root

        missing = missing_data_root(spec.data.name, spec.data.root)
        if missing is not None:
            typer.echo(f"note: 'xaisearch run' needs the data: {missing}")


@app.command()
def create(
    study_file: Path = typer.Argument(..., help="YAML study file"),
    storage: str = typer.Option(..., "--storage", help="storage URL or journal file path"),
    out: Path | None = typer.Option(
        None, "--out", help="run directory for the model checkpoint (default: runs/<name>)"
    ),
    n_trials: int | None = typer.Option(None, "--n-trials", min=1, help="study budget (default: the file's n_trials)"),
) -> None:
    """Create the study (idempotent): store the spec, train the model if needed, enqueue the seeds."""
    from xaisearch.spec import load_spec

    spec = load_spec(study_file)  # before the heavy imports: a mistake in the file is reported at once
    with resumable():
        from xaisearch.cli.run import create_study

        create_study(spec, out_dir=out, storage_url=storage, budget=n_trials)


@app.command()
def worker(
    study: str = typer.Option(..., "--study", help="study name"),
    storage: str = typer.Option(..., "--storage", help="storage URL or journal file path"),
    devices: str | None = typer.Option(
        None, "--devices", help="one process per entry: GPU indices 0,1 or cuda:0,cuda:1; cpu,cpu for CPU"
    ),
    device: str = typer.Option("auto", "--device", help="device of this single process (auto, cpu, cuda:N)"),
    n_trials: int | None = typer.Option(None, "--n-trials", min=1, help="at most this many trials per process"),
    heartbeat_interval: int = typer.Option(60, "--heartbeat-interval", min=1, help="seconds (RDB storages)"),
    grace_period: int = typer.Option(180, "--grace-period", min=1, help="seconds without heartbeat before a retry"),
    artifact_dir: str | None = typer.Option(
        None, "--artifact-dir", help="heatmap store: a shared folder or s3://bucket"
    ),
    run_dir: Path | None = typer.Option(
        None, "--run-dir", help="folder with the model checkpoint (default: from the study)"
    ),
) -> None:
    """Join a study and run trials until its budget is reached (one process per device)."""
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    from xaisearch.service.storage import Heartbeat
    from xaisearch.service.worker import WorkerOptions, run_worker

    options = WorkerOptions(
        study, storage, device, n_trials, Heartbeat(heartbeat_interval, grace_period), artifact_dir, run_dir
    )
    if devices is not None:  # one child process per device, watched (CUDA_VISIBLE_DEVICES set per child)
        from xaisearch.devices import worker_devices
        from xaisearch.search.study import study_budget, trials_to_start
        from xaisearch.service.launcher import launch_workers
        from xaisearch.service.studies import load_existing_study

        chosen = worker_devices(devices)  # before the storage is opened: a typo costs nothing
        joined = load_existing_study(study, storage)
        budget = study_budget(joined)
        launch_workers(
            study,
            storage,
            chosen,
            options.command_args(),
            budget_reached=lambda: trials_to_start(joined, budget) <= 0,
        )
        return
    run_worker(options)


@app.command()
def status(
    study: str = typer.Option(..., "--study", help="study name"),
    storage: str = typer.Option(..., "--storage", help="storage URL or journal file path"),
) -> None:
    """Trials by state, the best values, and running trials with their worker and age."""
    from xaisearch.cli.status import print_status

    print_status(study, storage)


@app.command()
def export(
    study: str = typer.Option(..., "--study", help="study name"),
    storage: str = typer.Option(..., "--storage", help="storage URL or journal file path"),
    output: Path = typer.Option(Path("best_composite.json"), "-o", "--output", help="config file to write"),
    trial: int | None = typer.Option(None, "--trial", help="trial number (default: the winner on held-out images)"),
) -> None:
    """Write the winner on held-out images (or a given trial) as a composite config for
    xaisearch.composite_from_config, with its held-out scores, significance and stability."""
    from rich.console import Console

    from xaisearch.cli.export import export_validated
    from xaisearch.service.studies import load_existing_study

    config = export_validated(load_existing_study(study, storage), output, trial, Console())
    search = config.scores.get("objective", float("nan"))
    heldout = config.validation.heldout if config.validation else None
    on_heldout = "" if heldout is None or heldout.objective is None else f", held-out {heldout.objective:.4f}"
    typer.echo(f"wrote {output} (trial {config.trial}, objective {search:.4f} on the search set{on_heldout})")


@app.command()
def evaluate(
    study_file: Path = typer.Argument(..., help="YAML study file: model, data and metrics"),
    composite: list[Path] | None = typer.Option(
        None, "--composite", help="composite config JSON (xaisearch export); repeat for several"
    ),
    compare_canonization: bool = typer.Option(
        False, "--compare-canonization", help="the paper's table: every method, canonized and not, paired tests"
    ),
    methods: str | None = typer.Option(
        None, "--methods", help="with --compare-canonization: comma-separated rows (default: all; see the table)"
    ),
    csv_path: Path | None = typer.Option(None, "--csv", help="with --compare-canonization: also write the table"),
    out: Path | None = typer.Option(None, "--out", help="run directory with the model (default: runs/<name>)"),
    storage: str | None = typer.Option(None, "--storage", help="the study's storage (default: the run directory's)"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object instead of a table"),
) -> None:
    """Metric table (mean ± standard error) of one configuration; with --compare-canonization, the
    paper's table: standard composites, the study's best trial and every baseline, canonized and not."""
    from xaisearch.errors import InputError
    from xaisearch.spec import load_spec

    spec = load_spec(study_file)
    files = list(composite or [])
    if not compare_canonization:
        if len(files) != 1 or methods is not None or csv_path is not None:
            raise InputError(
                "evaluate: give one --composite (--methods and --csv need --compare-canonization)"
                if files
                else "evaluate: give --composite FILE, or --compare-canonization for the table of every method"
            )
        from xaisearch.cli.evaluate import evaluate_config

        evaluate_config(spec, files[0], out, as_json)
        return
    from xaisearch.cli.compare_canonization import compare_command

    chosen = None if methods is None else [name.strip() for name in methods.split(",") if name.strip()]
    with resumable():
        compare_command(spec, files, chosen, out, storage, csv_path, as_json)


@app.command()
def dashboard(
    storage: str = typer.Option(..., "--storage", help="storage URL or journal file path"),
    artifact_dir: Path | None = typer.Option(None, "--artifact-dir", help="the heatmap folder the workers write to"),
    host: str = typer.Option("127.0.0.1", "--host", help="bind address (the dashboard has no authentication)"),
    port: int = typer.Option(8080, "--port", min=1, max=65535),
) -> None:
    """Start optuna-dashboard on the study storage, with the trials' heatmaps."""
    from xaisearch.service.dashboard import serve

    serve(storage, artifact_dir, host, port)


@app.command()
def canonize(
    model: str = typer.Argument(
        ..., help="torchvision builder name (e.g. resnet50, efficientnet_b0), mini_vgg, or timm/<name> (timm/resnet18)"
    ),
    weights: Path | None = typer.Option(
        None, "--weights", help="state dict file, or 'pretrained' for a timm model (default: random weights and BN)"
    ),
    canonizer: str | None = typer.Option(None, "--canonizer", help="registered canonizer (default: by model type)"),
    check: bool = typer.Option(False, "--check", help="also check conservation, batch consistency, atomicity"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object instead of text"),
    input_size: int = typer.Option(64, "--input-size", help="side of the random square input, in pixels"),
) -> None:
    """Canonize MODEL: print each step, BN coverage, max output difference (float32) and timing, then run
    the guard a search runs (float64): exit 2 naming the first module whose output differs, 1 on other failures."""
    import json

    from xaisearch.canonize.check import canonize_named_model
    from xaisearch.canonize.guard import refusal
    from xaisearch.cli.canonize_report import report_text
    from xaisearch.errors import InputError

    outcome = canonize_named_model(model, canonizer, weights, input_size, check=check)
    report, checked, guard = outcome.report, outcome.checked, outcome.guard
    if as_json:
        payload = report.to_dict() | {"model": model, "unfolded": list(report.unfolded)}
        payload["unfolded_reasons"] = report.unfolded
        payload["guard"] = guard.to_dict()
        if checked is not None:
            payload |= {"check": checked.to_dict(), "check_passed": checked.passed()}
        typer.echo(json.dumps(payload))
    else:
        typer.echo(report_text(report, model))
        if checked is not None:
            typer.echo("--check (float64):\n" + report_text(checked, model))
        restored = "NO" if guard.restore_problems else "yes"
        typer.echo(
            f"guard ({guard.dtype}, {guard.images} images): max rel {guard.max_rel_diff:.3g} (bound "
            f"{guard.bound:.0e}), restored exactly: {restored}: {'passed' if guard.passed() else 'REFUSED'}"
        )
    refused = refusal(guard, model, "--canonizer", outcome.alternatives)
    if refused is not None:
        raise InputError(refused)
    if not report.passed() or (checked is not None and not checked.passed()):
        raise typer.Exit(1)


def main(argv: list[str] | None = None) -> int:
    """Entry point: usage errors (click) and input errors (ours) exit 2 with a one-line message;
    Ctrl-C during ``run`` or ``create`` exits 130 saying how to resume."""
    from xaisearch.errors import InputError, Interrupted

    try:
        app(args=argv, standalone_mode=True)
    except InputError as error:
        typer.echo(f"error: {error}", err=True)
        return 2
    except Interrupted:  # Ctrl-C: the interrupted trial was enqueued again; files are written atomically
        typer.echo("interrupted; run the same command to resume", err=True)
        return 130
    except SystemExit as done:
        return done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
    return 0


def entry_point() -> None:
    from xaisearch.allocator import keep_freed_memory_unless_disabled

    keep_freed_memory_unless_disabled()  # before any tensor: CPU passes reuse freed activations
    sys.exit(main())
