"""Part 3 of ``bench/search_efficiency.py``: the continuous gamma space, scored for real.

``studies/paper-gamma-tpe.yaml`` (gamma = 0 or log-uniform in [0.01, 50] per group) through the
package's own study (``create_study`` + ``optimise_here``, journal under ``<run>/continuous``, the
study file's per-trial seeding): TPE and CMA-ES, and CMA-ES on the same range without the zero
option (a gamma that exists only when its zero choice is false is never in CMA-ES's space, so with
the option CMA-ES hands every gamma to its TPE fallback). Every run's best trial and the grid's best
are scored again on the search set and on the held-out validation set (``validation_batches``, one
fresh ``MetricSuite``: suites cache per batch index): the objective of the means, the sem over
images of the per-image objective, and the paired difference to the grid's best with its sem.
"""

from __future__ import annotations

import io
import shutil
import time
from pathlib import Path
from typing import Any

import torch
import yaml
from rich.console import Console

ROOT = Path(__file__).resolve().parents[1]
CONTINUOUS_STUDY = ROOT / "studies" / "paper-gamma-tpe.yaml"
CONTINUOUS = (("tpe", "tpe", True), ("cmaes", "cmaes", True), ("cmaes-no-zero", "cmaes", False))


def quiet() -> Console:
    return Console(file=io.StringIO(), width=120)


def continuous_spec(variant: str, sampler: str, zero: bool, seed: int, n_trials: int, device: str) -> Any:
    from xaisearch.spec.loading import parse_spec

    data = yaml.safe_load(CONTINUOUS_STUDY.read_text())
    data.update(name=f"{data['name']}-{variant}-s{seed}", seed=seed, n_trials=n_trials, device=device)
    data["sampler"] = {"name": sampler}
    data["search_space"]["ranges"]["gamma"]["zero"] = zero
    return parse_spec(data, str(CONTINUOUS_STUDY))


def per_image_objective(scores: dict[str, torch.Tensor], entries: list[Any]) -> torch.Tensor:
    from xaisearch.search.normalisation import weighted_objective

    count = len(next(iter(scores.values())))
    rows = [weighted_objective({n: float(v[i]) for n, v in scores.items()}, entries) for i in range(count)]
    return torch.tensor(rows, dtype=torch.float64)


def scored(bench: Any, config: Any, suite: Any = None, batches: Any = None) -> tuple[float, torch.Tensor]:
    """Objective of ``config`` and its per-image values: on the search set, or on ``batches`` by ``suite``."""
    from xaisearch.metrics.suite import summary

    if suite is None:
        scores, entries = bench.score(config), bench.suite.entries
    else:
        scores, entries = suite.score(bench.model, batches, bench.explainer(config)), suite.entries
    means = {name: summary(values)[0] for name, values in scores.items()}
    return bench.objective_value(means), per_image_objective(scores, entries)


def continuous_runs(run_dir: Path, cache: dict[str, Any], seeds: int, n_trials: int, device: str) -> list[dict]:
    from xaisearch.cli.run import create_study, optimise_here
    from xaisearch.explain.config import ExplainerConfig
    from xaisearch.metrics.suite import MetricSuite, summary
    from xaisearch.search.export import config_of
    from xaisearch.search.model_preparation import CHECKPOINT_NAME, RECORD_NAME
    from xaisearch.search.workbench import build_suite, validation_batches

    folder = run_dir / "continuous"
    folder.mkdir(parents=True, exist_ok=True)
    for name in (CHECKPOINT_NAME, RECORD_NAME):  # the same recipe: the grid's trained model is loaded, not retrained
        if not (folder / name).exists() and (run_dir / name).exists():
            shutil.copy(run_dir / name, folder / name)
    results: list[dict] = []
    held_out: dict[str, Any] = {}
    grid_config = ExplainerConfig.model_validate(cache["best"])
    for variant, sampler, zero in CONTINUOUS:
        for seed in range(seeds):
            spec = continuous_spec(variant, sampler, zero, seed, n_trials, device)
            started = time.perf_counter()
            study, bench, _, _ = create_study(spec, out_dir=folder, console=quiet())
            optimise_here(study, bench, quiet())
            seconds = time.perf_counter() - started
            if not held_out:  # one held-out suite for every config: its caches are per validation batch
                held_out["suite"] = MetricSuite(build_suite(spec).entries)
                held_out["batches"] = validation_batches(spec.data, spec.model.input_shape[-1], bench.device)
            suite, batches = held_out["suite"], held_out["batches"]

            if "grid" not in held_out:
                held_out["grid"] = (scored(bench, grid_config), scored(bench, grid_config, suite, batches))
            (grid_search, grid_search_rows), (grid_value, grid_rows) = held_out["grid"]
            best = study.best_trial
            search, search_rows = scored(bench, config_of(best, study))
            value, rows = scored(bench, config_of(best, study), suite, batches)
            results.append(
                {
                    "sampler": variant,
                    "seed": seed,
                    "trials": len(study.trials),
                    "seconds": round(seconds, 1),
                    "best_params": best.params,
                    "trial_value": best.value,
                    "search": search,
                    "search_sem": summary(search_rows)[1],
                    "search_minus_grid": search - grid_search,
                    "search_paired_sem": summary(search_rows - grid_search_rows)[1],
                    "validation": value,
                    "validation_sem": summary(rows)[1],
                    "validation_minus_grid": value - grid_value,
                    "paired_sem": summary(rows - grid_rows)[1],
                    "grid_search": grid_search,
                    "grid_search_sem": summary(grid_search_rows)[1],
                    "grid_validation": grid_value,
                    "grid_validation_sem": summary(grid_rows)[1],
                    "n_search": len(search_rows),
                    "n_validation": len(rows),
                }
            )
    return results
