"""Coordinator overhead: trials per second and CPU per trial of the storage path, and its share of a real trial.

Each of K worker processes joins one study and runs trials whose objective samples the demo's
real conditional search space (TPE, rule per group, then parameters) and returns at once, so
what is measured is Optuna + storage: ask, suggest, user attributes, tell. Storages: the
journal file and PostgreSQL (a throw-away loopback cluster unless ``--postgres URL`` is given,
with PGPASSWORD set). Then one real demo trial is timed in this process for the overhead share.

    python bench/coordinator.py [--workers 4] [--trials 100] [--postgres URL]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _space():
    import torch

    from xaisearch.models.ref import ModelRef
    from xaisearch.models.zoo import build_architecture
    from xaisearch.search.space import SearchSpace
    from xaisearch.spec import load_spec

    spec = load_spec(ROOT / "studies" / "demo.yaml")
    ref = ModelRef(name=spec.model.name, num_classes=spec.model.num_classes, input_shape=spec.model.input_shape)
    torch.manual_seed(0)
    return spec, SearchSpace.build(spec, build_architecture(ref).eval(), ref, "vgg")


def _worker(storage_url: str, study_name: str, trials: int, ready, start) -> None:
    import optuna

    from xaisearch.search.study import make_sampler
    from xaisearch.service.studies import load_existing_study

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    spec, space = _space()
    study = load_existing_study(study_name, storage_url)
    study.sampler = make_sampler(spec, space, worker=str(os.getpid()))

    def objective(trial):
        config = space.sample(trial)
        trial.set_user_attr("config", config.model_dump(mode="json"))
        trial.set_user_attr("relevance_mass_accuracy.mean", 0.5)
        return float(len(trial.params))

    ready.wait()
    start.wait()
    study.optimize(objective, n_trials=trials, gc_after_trial=False)


def measure(storage_url: str, workers: int, trials: int) -> tuple[float, float]:
    """(trials per second, worker CPU milliseconds per trial) for ``workers`` processes."""
    import optuna

    from xaisearch.service.storage import open_storage

    name = f"bench-{time.monotonic_ns()}"
    optuna.create_study(study_name=name, storage=open_storage(storage_url), direction="maximize")
    context = multiprocessing.get_context("spawn")
    ready, start = context.Barrier(workers + 1), context.Event()
    processes = [
        context.Process(target=_worker, args=(storage_url, name, trials, ready, start)) for _ in range(workers)
    ]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    for process in processes:
        process.start()
    ready.wait()
    started = time.perf_counter()
    start.set()
    for process in processes:
        process.join()
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = workers * trials
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    # worker start-up (imports, building the space) is in cpu too: subtract one idle start per worker
    return total / wall, 1000 * max(cpu - workers * _startup_cpu(), 0.0) / total


_STARTUP: list[float] = []


def _startup_cpu() -> float:
    """CPU seconds a worker spends before its first trial (imports and the space), measured once."""
    if not _STARTUP:
        context = multiprocessing.get_context("spawn")
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        process = context.Process(target=_space)
        process.start()
        process.join()
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        _STARTUP.append((after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime))
    return _STARTUP[0]


def real_trial_seconds() -> float:
    """Wall time of one demo trial (explain + metrics on the demo's evaluation set), after a warm-up."""
    import optuna
    import torch

    from xaisearch.devices import resolve_device
    from xaisearch.search.objective import Objective
    from xaisearch.search.workbench import Workbench
    from xaisearch.spec import load_spec

    spec = load_spec(ROOT / "studies" / "demo.yaml")
    bench = Workbench.prepare(spec, ROOT / "runs" / "demo", resolve_device("cpu"))
    study = optuna.create_study(direction="maximize")
    objective = Objective(bench)
    torch.manual_seed(0)
    study.optimize(objective, n_trials=1)
    started = time.perf_counter()
    study.optimize(objective, n_trials=3)
    return (time.perf_counter() - started) / 3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--trials", type=int, default=100, help="trials per worker")
    parser.add_argument("--postgres", default=None, help="postgresql+psycopg2:// URL (default: a throw-away cluster)")
    args = parser.parse_args()
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)

    cluster = None
    postgres = args.postgres
    if postgres is None:
        from tests.service.pgcluster import start

        folder = Path(tempfile.mkdtemp(prefix="xaisearch-bench-pg-"))
        folder.chmod(0o755)
        cluster = start(folder / "data")
        os.environ["PGPASSWORD"] = cluster.password
        postgres = cluster.url
    try:
        rows = []
        with tempfile.TemporaryDirectory() as folder:
            for label, url in (("journal file", str(Path(folder) / "bench.journal")), ("PostgreSQL", postgres)):
                rate, cpu_ms = measure(url, args.workers, args.trials)
                rows.append((label, rate, cpu_ms))
        trial = real_trial_seconds()
    finally:
        if cluster is not None:
            cluster.stop()
    print(f"{args.workers} workers x {args.trials} trials, TPE on the demo's conditional space, {os.cpu_count()} CPUs")
    print("| storage | trials/s | worker CPU ms/trial | share of a real demo trial |")
    print("|---|---|---|---|")
    for label, rate, cpu_ms in rows:
        print(f"| {label} | {rate:.1f} | {cpu_ms:.1f} | {cpu_ms / 1000 / trial:.2%} |")
    print(f"real demo trial (128 images, 4 metrics, CPU): {trial:.2f} s")


if __name__ == "__main__":
    main()
