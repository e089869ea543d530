"""Benchmark: how few trials each sampler needs to find the paper's gamma grid's best, and whether a
continuous gamma space beats the grid (issue 12, part 6).

1. **The grid** (``studies/paper-gamma-grid.yaml``: the gamma rule in the 4 layer groups, gamma in
   {0, 0.1, 0.25, 0.5, 1, 10, 50}, 7^4 = 2,401 points) is run once through the package
   (``xaisearch.cli.run.run_study``) into the run folder, unless its journal there is complete;
   every point's objective and per-metric means are read from its trials (user attributes
   ``<metric>.mean``) and cached in ``grid_cache.json`` beside the journal.
2. **Cached grid.** TPE, GP, CMA-ES, random and QMC, each made by ``xaisearch.spec.SAMPLERS``
   (what ``sampler.name`` in a study file makes), search the grid's own values; a trial looks its
   point up in the cache (no model pass). Encodings: ``categorical`` (each group's gamma one of the
   7 values) and ``ordinal`` (an integer index 0..6; CMA-ES evolves only numbers). *Within 1 %*:
   a trial whose objective is >= best - 0.01 * |best|, best = the grid's best objective. A run
   counts the trials (1-based, repeats of a point included: in a study each costs a trial) until
   its first such trial; a run with none within its budget B is *censored* and sorts after every
   count (as > B) in the median and quartiles, which are sample quantiles without interpolation.
3. **Continuous space** (``studies/paper-gamma-tpe.yaml``: gamma = 0 or log-uniform in [0.01, 50]
   per group), scored for real by the package's study (journal under ``<run>/continuous``): TPE and
   CMA-ES with the study file's seeding, and CMA-ES on the same range without the zero option (a
   gamma that exists only when the zero choice is false is never in CMA-ES's space). Every run's
   best trial and the grid's best are re-scored on the held-out validation set
   (``validation_batches``, a fresh ``MetricSuite``): objective of the means, sem over images of
   the per-image objective, and the paired difference to the grid's best.
4. **Multi-objective**, over the cache: NSGA-II and multi-objective TPE (random for reference), one
   objective per metric with the metric's direction. Hypervolume of the trials so far, each metric
   mapped by the grid's range to [0, 1] (0 = the grid's best value of it, 1 = its worst), reference
   point (1, ..., 1) = the grid's worst value of every metric, as a fraction of the hypervolume of
   all 2,401 points. Median curves and quartile bands: ``bench/search_efficiency_hypervolume.html``.

Run: ``python bench/search_efficiency.py [--run-dir runs/paper-gamma-grid] [--seeds 5] [--budget 300]
[--real-seeds 3] [--real-trials 120] [--device cpu] [--json] [--quick]``.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
GRID_STUDY = ROOT / "studies" / "paper-gamma-grid.yaml"
HTML = Path(__file__).with_name("search_efficiency_hypervolume.html")
CACHE_NAME = "grid_cache.json"
GROUPS = ("low", "mid", "high", "dense")
SEARCHERS = ("tpe", "gp", "cmaes", "random", "qmc")
MULTI = ("nsga2", "tpe", "random")
Key = tuple[float, ...]


def quiet() -> Console:
    return Console(file=io.StringIO(), width=120)


# -- 1. the grid, evaluated once ------------------------------------------------------------
def grid_points(run_dir: Path, spec: Any) -> tuple[list[optuna.trial.FrozenTrial], optuna.Study | None]:
    from xaisearch.errors import InputError
    from xaisearch.service.studies import default_storage_url, load_existing_study

    try:
        study = load_existing_study(spec.name, default_storage_url(run_dir))
    except InputError:
        return [], None
    return [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"], study


def grid_cache(run_dir: Path, device: str, console: Console) -> dict[str, Any]:
    """Objective and metric means of every grid point, from the grid study's trials (run if needed)."""
    from xaisearch.search.export import config_of
    from xaisearch.search.trial_attributes import mean_attr
    from xaisearch.search.workbench import build_suite
    from xaisearch.spec.loading import load_spec

    spec = load_spec(GRID_STUDY).model_copy(update={"device": device})
    path = run_dir / CACHE_NAME
    if path.is_file():
        cached = json.loads(path.read_text())
        if cached["spec_hash"] == spec.content_hash() and len(cached["points"]) == cached["size"]:
            return cached
    from xaisearch.search.preflight import preflight

    size = math.prod(len(values) for values in preflight(spec).grid().values())
    trials, study = grid_points(run_dir, spec)
    if len({tuple(sorted(t.params.items())) for t in trials}) < size:
        console.print(f"running the grid study into {run_dir} ({len(trials)} of {size} points done)")
        from xaisearch.cli.run import run_study

        run_study(spec, out_dir=run_dir, console=console)
        trials, study = grid_points(run_dir, spec)
    assert study is not None
    entries = build_suite(spec).entries
    metrics = [e.metric.name for e in entries]
    points = {}
    for t in trials:
        key = ",".join(repr(t.params[f"{g}.gamma"]) for g in GROUPS)
        points[key] = {"objective": t.value, "means": [t.user_attrs[mean_attr(m)] for m in metrics]}
    best = max(trials, key=lambda t: t.value or -math.inf)
    starts, ends = [t.datetime_start for t in trials], [t.datetime_complete for t in trials]
    cached = {
        "spec_hash": spec.content_hash(),
        "size": size,
        "n_images": spec.data.n_eval,
        "metrics": metrics,
        "directions": [e.effective_direction for e in entries],
        "points": points,
        "best": config_of(best, study).model_dump(mode="json"),
        "trial_seconds": sum((e - s).total_seconds() for s, e in zip(starts, ends) if s and e),
        "span_seconds": (max(e for e in ends if e) - min(s for s in starts if s)).total_seconds(),
    }
    path.write_text(json.dumps(cached))
    return cached


def lookup(cache: dict[str, Any]) -> tuple[dict[Key, float], dict[Key, list[float]]]:
    objective, means = {}, {}
    for text, point in cache["points"].items():
        key = tuple(float(v) for v in text.split(","))
        objective[key], means[key] = point["objective"], point["means"]
    return objective, means


# -- 2. single objective on the cache -------------------------------------------------------
def pick(trial: optuna.Trial, gammas: list[float], encoding: str) -> Key:
    if encoding == "ordinal":
        return tuple(gammas[trial.suggest_int(f"{g}.gamma_index", 0, len(gammas) - 1)] for g in GROUPS)
    return tuple(trial.suggest_categorical(f"{g}.gamma", gammas) for g in GROUPS)


def make_sampler(name: str, seed: int) -> optuna.samplers.BaseSampler:
    from xaisearch.spec import SAMPLERS

    return SAMPLERS.get(name)(seed, dict)


def trials_to_target(values: dict[Key, float], target: float, name: str, seed: int, encoding: str, budget: int) -> int:
    """Trials until the first within-1% one, or ``budget + 1`` (censored)."""
    gammas = sorted({k[0] for k in values})
    study = optuna.create_study(direction="maximize", sampler=make_sampler(name, seed))
    hit = [budget + 1]

    def stop(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if trial.value is not None and trial.value >= target:
            hit[0] = trial.number + 1
            study.stop()

    study.optimize(lambda t: values[pick(t, gammas, encoding)], n_trials=budget, callbacks=[stop])
    return hit[0]


def order_stats(counts: list[int], budget: int) -> dict[str, Any]:
    ranked = np.array(sorted(counts))
    q1, median, q3 = (int(np.quantile(ranked, q, method="inverted_cdf")) for q in (0.25, 0.5, 0.75))
    return {"median": median, "q1": q1, "q3": q3, "censored": int(sum(c > budget for c in counts))}


def shown(value: int, budget: int) -> str:
    return f"> {budget}" if value > budget else str(value)


# -- 4. multi-objective: hypervolume over trials ----------------------------------------------
def losses(means: dict[Key, list[float]], directions: list[str]) -> Callable[[list[float]], np.ndarray]:
    table = np.array(list(means.values()))
    flip = np.array([-1.0 if d == "higher" else 1.0 for d in directions])
    oriented = table * flip  # lower is better in every column
    low, high = oriented.min(axis=0), oriented.max(axis=0)
    return lambda values: (np.asarray(values) * flip - low) / np.where(high > low, high - low, 1.0)


def hypervolume(points: np.ndarray) -> float:
    from optuna._hypervolume import compute_hypervolume  # Optuna's WFG, as its own plots use

    return float(compute_hypervolume(points, np.ones(points.shape[1])))


def hypervolume_curve(means: dict[Key, list[float]], directions: list[str], name: str, seed: int, budget: int):
    to_loss = losses(means, directions)
    gammas = sorted({k[0] for k in means})
    study = optuna.create_study(
        directions=["maximize" if d == "higher" else "minimize" for d in directions], sampler=make_sampler(name, seed)
    )
    study.optimize(lambda t: tuple(means[pick(t, gammas, "categorical")]), n_trials=budget)
    curve, front, value = [], np.empty((0, len(directions))), 0.0
    for trial in study.trials:
        point = to_loss(trial.values)
        if not (front <= point).all(axis=1).any():  # not dominated (nor equalled): the front changes
            front = np.vstack([front[~(point <= front).all(axis=1)], point])
            value = hypervolume(front)
        curve.append(value)
    return curve


def write_html(curves: dict[str, list[list[float]]], budget: int, n_images: int) -> None:
    import plotly.graph_objects as go

    figure = go.Figure()
    x = list(range(1, budget + 1))
    for name, runs in curves.items():
        q1, median, q3 = np.quantile(np.array(runs), [0.25, 0.5, 0.75], axis=0)
        figure.add_trace(
            go.Scatter(
                x=x + x[::-1],
                y=list(q3) + list(q1)[::-1],
                fill="toself",
                opacity=0.2,
                line={"width": 0},
                showlegend=False,
                name=f"{name} quartiles",
            )
        )
        figure.add_trace(go.Scatter(x=x, y=list(median), name=f"{name} (median of {len(runs)} seeds)"))
    figure.update_layout(
        title=f"Hypervolume of the trials so far, as a fraction of the whole grid's (search set, {n_images} images)",
        xaxis_title="trial",
        yaxis_title="hypervolume / grid hypervolume",
        template="plotly_white",
    )
    figure.write_html(HTML, include_plotlyjs="cdn")


# -- the command --------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", type=Path, default=ROOT / "runs" / "paper-gamma-grid")
    parser.add_argument("--seeds", type=int, default=5, help="seeds per sampler on the cached grid (>= 5 recorded)")
    parser.add_argument("--budget", type=int, default=300, help="trials per run on the cached grid")
    parser.add_argument("--real-seeds", type=int, default=3, help="seeds per sampler on the continuous space")
    parser.add_argument("--real-trials", type=int, default=120)
    parser.add_argument("--device", default="cpu", help="auto, cpu, cuda, cuda:1 (the real scoring)")
    parser.add_argument("--json", action="store_true", help="one JSON object per sampler and part, one a line")
    parser.add_argument("--quick", action="store_true", help="2 seeds, budget 60, 1 real seed of 20 trials")
    parser.add_argument("--skip-continuous", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.budget, args.real_seeds, args.real_trials = 2, 60, 1, 20
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    console = Console(width=None if Console().is_terminal else 140)
    out: list[dict[str, Any]] = []

    def emit(row: dict[str, Any]) -> None:  # printed at once with --json: a long run shows what it has
        out.append(row)
        if args.json:
            print(json.dumps(row), flush=True)

    cache = grid_cache(args.run_dir, args.device, console if not args.json else quiet())
    values, means = lookup(cache)
    best = max(values.values())
    target = best - 0.01 * abs(best)
    near = sum(v >= target for v in values.values())
    header = {"grid_best": best, "target": target, "points_within_1pct": near, "n_images": cache["n_images"]}
    for encoding in ("categorical", "ordinal"):
        for name in SEARCHERS:
            started = time.perf_counter()
            counts = [trials_to_target(values, target, name, s, encoding, args.budget) for s in range(args.seeds)]
            emit(
                {
                    "part": "grid-cache",
                    "sampler": name,
                    "encoding": encoding,
                    "seeds": args.seeds,
                    "budget": args.budget,
                    "trials": counts,
                    **order_stats(counts, args.budget),
                    **header,
                    "seconds": round(time.perf_counter() - started, 1),
                }
            )
    directions = cache["directions"]
    grid_volume = hypervolume(np.array([losses(means, directions)(v) for v in means.values()]))
    curves: dict[str, list[list[float]]] = {}
    for name in MULTI:
        runs = [hypervolume_curve(means, directions, name, s, args.budget) for s in range(args.seeds)]
        curves[name] = [[v / grid_volume for v in run] for run in runs]
        final = [run[-1] for run in curves[name]]
        at = {
            n: float(np.median([run[n - 1] for run in curves[name]]))
            for n in (25, 50, 100, args.budget)
            if n <= args.budget
        }
        emit(
            {
                "part": "hypervolume",
                "sampler": name,
                "seeds": args.seeds,
                "budget": args.budget,
                "metrics": cache["metrics"],
                "directions": directions,
                "grid_hypervolume": grid_volume,
                "median_fraction_at": at,
                "final_fraction": final,
                "n_images": cache["n_images"],
            }
        )
    write_html(curves, args.budget, cache["n_images"])
    if not args.skip_continuous:
        from search_efficiency_real import continuous_runs  # beside this script (bench/ is on sys.path)

        for run in continuous_runs(args.run_dir, cache, args.real_seeds, args.real_trials, args.device):
            emit(
                {
                    "part": "continuous",
                    **run,
                    "grid_best_in_grid_run": best,
                    "beats_grid_search": run["search_minus_grid"] > 0,
                    "beats_grid_validation": run["validation_minus_grid"] > 0,
                }
            )
    if args.json:
        return
    render(console, out, cache, header)


def render(console: Console, out: list[dict[str, Any]], cache: dict[str, Any], header: dict[str, Any]) -> None:
    console.print(
        f"grid: {cache['size']} points on the search set of {cache['n_images']} images; best objective "
        f"{header['grid_best']:.4f}; within 1 % means >= {header['target']:.4f} (best - 0.01 |best|), "
        f"{header['points_within_1pct']} points; grid run {cache['span_seconds'] / 60:.1f} min wall "
        f"({cache['trial_seconds'] / cache['size']:.2f} s a trial)"
    )
    table = Table(
        "sampler",
        "encoding",
        "median",
        "q1",
        "q3",
        "censored",
        "runs",
        title="trials to within 1 % of the grid's best (cached grid; censored: none within the budget)",
    )
    for row in (r for r in out if r["part"] == "grid-cache"):
        budget = row["budget"]
        table.add_row(
            row["sampler"],
            row["encoding"],
            shown(row["median"], budget),
            shown(row["q1"], budget),
            shown(row["q3"], budget),
            str(row["censored"]),
            str(row["seeds"]),
        )
    console.print(table)
    table = Table(
        "sampler",
        "median HV fraction at trial ...",
        "final (per seed)",
        title="multi-objective: hypervolume / the grid's (metrics normalised by the grid's range)",
    )
    for row in (r for r in out if r["part"] == "hypervolume"):
        at = ", ".join(f"{n}: {v:.3f}" for n, v in row["median_fraction_at"].items())
        table.add_row(row["sampler"], at, ", ".join(f"{v:.3f}" for v in row["final_fraction"]))
    console.print(table)
    rows = [r for r in out if r["part"] == "continuous"]
    if rows:
        first = rows[0]
        table = Table(
            "sampler",
            "seed",
            "search best ± sem",
            "minus grid (paired sem)",
            "validation ± sem",
            "minus grid (paired sem)",
            title=f"continuous space, real scoring: search set {first['n_search']} images, held-out "
            f"{first['n_validation']}; the grid's best: search {first['grid_search']:.4f} ± "
            f"{first['grid_search_sem']:.4f}, validation {first['grid_validation']:.4f} ± "
            f"{first['grid_validation_sem']:.4f}",
        )
        for r in rows:
            table.add_row(
                r["sampler"],
                str(r["seed"]),
                f"{r['search']:.4f} ± {r['search_sem']:.4f}",
                f"{r['search_minus_grid']:+.4f} ({r['search_paired_sem']:.4f})",
                f"{r['validation']:.4f} ± {r['validation_sem']:.4f}",
                f"{r['validation_minus_grid']:+.4f} ({r['paired_sem']:.4f})",
            )
        console.print(table)
    console.print(f"wrote {HTML}")


if __name__ == "__main__":
    main()
