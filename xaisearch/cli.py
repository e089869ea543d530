"""The ``xaisearch`` command line: one thin function per command, the work lives in the package.

Exit codes: 0 ok, 2 bad input (one line naming the field or file), 1 unexpected failure.
Heavy imports (torch, zennit, optuna) happen inside the commands so ``--help`` stays fast.
"""

from __future__ import annotations

import sys
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


@app.command()
def run(
    study_file: Path = typer.Argument(..., help="YAML study file, e.g. studies/demo.yaml"),
    storage: str | None = StorageOption,
    n_trials: int | None = typer.Option(None, "--n-trials", min=1, help="study budget (default: the file's n_trials)"),
    out: Path | None = typer.Option(None, "--out", help="run directory (default: runs/<study name>)"),
) -> None:
    """Create or resume a study, run its trials, write best_composite.json and report.html."""
    from xaisearch.search.run import run_study
    from xaisearch.spec import load_spec

    run_study(load_spec(study_file), out_dir=out, storage_url=storage, budget=n_trials)


@app.command()
def status(
    study: str = typer.Option(..., "--study", help="study name"),
    storage: str = typer.Option(..., "--storage", help="storage URL or journal file path"),
) -> None:
    """Trials by state and the best values of a study."""
    from collections import Counter

    from rich.console import Console

    from xaisearch.search.study import load_existing_study

    loaded = load_existing_study(study, storage)
    console = Console()
    counts = Counter(t.state.name for t in loaded.get_trials(deepcopy=False))
    console.print(f"study {study}: " + ", ".join(f"{n} {state.lower()}" for state, n in sorted(counts.items())))
    completed = [t for t in loaded.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    if completed:
        best = loaded.best_trial
        console.print(f"best trial #{best.number}: objective {best.value:.4f}")
        for key, value in sorted(best.user_attrs.items()):
            if key.endswith(".mean") and value is not None:
                console.print(f"  {key.removesuffix('.mean')}: {value:.4f}")


@app.command()
def export(
    study: str = typer.Option(..., "--study", help="study name"),
    storage: str = typer.Option(..., "--storage", help="storage URL or journal file path"),
    output: Path = typer.Option(Path("best_composite.json"), "-o", "--output", help="config file to write"),
    trial: int | None = typer.Option(None, "--trial", help="trial number (default: the best trial)"),
) -> None:
    """Write the best (or a given) trial as a composite config for xaisearch.composite_from_config."""
    from xaisearch.search.export import export_trial
    from xaisearch.search.study import load_existing_study

    config = export_trial(load_existing_study(study, storage), output, trial)
    typer.echo(f"wrote {output} (trial {config.trial}, objective {config.scores.get('objective', float('nan')):.4f})")


def main(argv: list[str] | None = None) -> int:
    """Entry point: maps input errors to exit code 2 with a one-line message."""
    from xaisearch.errors import InputError

    try:
        app(args=argv, standalone_mode=False)
    except InputError as error:
        typer.echo(f"error: {error}", err=True)
        return 2
    except typer.Exit as done:
        return done.exit_code
    except typer.Abort:
        typer.echo("aborted", err=True)
        return 130
    except Exception as error:  # click usage errors are exit 2 too
        import click

        if isinstance(error, click.ClickException):
            error.show()
            return 2
        raise
    return 0


def entry_point() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry_point()
