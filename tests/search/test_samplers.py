"""Every sampler a study file can name runs a tiny real study end to end, and says nothing.

The study is the shared tiny one (a mini VGG trained once for the module, 8 images) with a
conditional space: a rule per group, its parameter only under that rule. 11 trials take TPE and
GP past their 10 random start-up trials, so their models propose the last one. Warnings are
Python's and Optuna's logged ones; the only logged line let through is Optuna's note that the
optional ``greenlet`` package is missing (it says how the GP's acquisition is optimised).
"""

from __future__ import annotations

import io
import logging
import math
import warnings
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
import yaml
from rich.console import Console

from xaisearch.cli.run import create_study, optimise_here
from xaisearch.errors import InputError
from xaisearch.spec import SAMPLERS
from xaisearch.spec.loading import load_spec
from xaisearch.spec.samplers import SEQUENCE_SAMPLERS, SINGLE_OBJECTIVE_ONLY

N_TRIALS = 11
MODEL_BASED_MULTI_OBJECTIVE = ["tpe", "gp", "nsga2"]
GRID = {"gamma": [0.0, 0.25, 10.0], "epsilon": [1e-6, 0.1]}


class Recorder(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if "greenlet" not in record.getMessage():
            self.messages.append(record.getMessage())


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One run folder for every study of the module: the tiny model is trained once, then loaded."""
    return tmp_path_factory.mktemp("samplers")


@pytest.fixture
def recorded() -> Iterator[tuple[list[warnings.WarningMessage], Recorder]]:
    handler = Recorder()
    logger = logging.getLogger("optuna")
    logger.addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield caught, handler
    finally:
        logger.removeHandler(handler)


def study_file(data: dict, run_dir: Path, sampler: str, objective: str) -> Path:
    data["name"] = f"tiny-{sampler}-{objective}"
    data["n_trials"] = N_TRIALS
    data["data"] = {"n_eval": 8, "batch_size": 8}
    data["seeds"] = []  # every trial is the sampler's
    data["n_heatmaps"] = 0
    data["sampler"] = {"name": sampler, "grid": GRID} if sampler == "grid" else {"name": sampler}
    data["objective"] = {"type": objective}
    path = run_dir / f"{data['name']}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def run_tiny_study(data: dict, run_dir: Path, sampler: str, objective: str) -> optuna.Study:
    spec = load_spec(study_file(data, run_dir, sampler, objective))
    assert spec.sampler.name == sampler
    console = Console(file=io.StringIO(), width=120)
    study, bench, _, _ = create_study(spec, out_dir=run_dir, console=console)
    assert optimise_here(study, bench, console) == N_TRIALS
    return study


def check_trials(study: optuna.Study, n_objectives: int) -> None:
    trials = study.get_trials()
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * N_TRIALS
    assert all(len(t.values) == n_objectives and all(math.isfinite(v) for v in t.values) for t in trials)
    assert len({tuple(sorted(t.params.items())) for t in trials}) > 1  # the sampler moved


def test_the_registry_holds_every_sampler_the_benchmark_compares() -> None:
    assert {"tpe", "gp", "cmaes", "random", "qmc", "grid", "nsga2"} <= set(SAMPLERS.available())


@pytest.mark.slow
@pytest.mark.parametrize("sampler", SAMPLERS.available())
def test_every_sampler_runs_a_tiny_study_without_warnings(tiny_study, run_dir, recorded, sampler) -> None:
    study = run_tiny_study(tiny_study, run_dir, sampler, "weighted")
    caught, logged = recorded
    assert [str(w.message) for w in caught] == [] and logged.messages == []
    check_trials(study, 1)
    if sampler == "grid":
        gammas = {v for t in study.trials for k, v in t.params.items() if k.endswith(".gamma")}
        assert gammas <= set(GRID["gamma"])


@pytest.mark.slow
@pytest.mark.parametrize("sampler", MODEL_BASED_MULTI_OBJECTIVE)
def test_multi_objective_studies_run_without_warnings(tiny_study, run_dir, recorded, sampler) -> None:
    """One objective per metric (two here), for the samplers whose proposals depend on the objectives:
    TPE (MOTPE), GP (expected hypervolume improvement), NSGA-II. Random, QMC and grid points do not."""
    assert set(MODEL_BASED_MULTI_OBJECTIVE) <= set(SAMPLERS.available()) - SINGLE_OBJECTIVE_ONLY
    study = run_tiny_study(tiny_study, run_dir, sampler, "multi")
    caught, logged = recorded
    assert [str(w.message) for w in caught] == [] and logged.messages == []
    check_trials(study, 2)


def test_cma_es_refuses_multi_objective_studies_as_declared() -> None:
    """``SINGLE_OBJECTIVE_ONLY`` says what Optuna does: CMA-ES fails the first multi-objective trial."""
    study = optuna.create_study(directions=["maximize", "maximize"], sampler=SAMPLERS.get("cmaes")(0, dict))
    with pytest.raises(ValueError, match="multi-objective"):
        study.optimize(lambda t: (t.suggest_float("x", 0, 1), t.suggest_float("y", 0, 1)), n_trials=1, catch=())
    assert SINGLE_OBJECTIVE_ONLY == {"cmaes"}


def test_a_multi_objective_study_may_not_name_a_single_objective_sampler(tiny_study) -> None:
    from xaisearch.spec import parse_spec

    tiny_study["objective"] = {"type": "multi"}
    tiny_study["sampler"] = {"name": "cmaes"}
    with pytest.raises(InputError, match="field 'sampler.name': cmaes optimises one objective"):
        parse_spec(tiny_study, "study.yaml")


@pytest.mark.parametrize("name", sorted(SEQUENCE_SAMPLERS))
def test_sequence_samplers_get_the_study_seed_not_one_per_trial(tiny_study, name) -> None:
    """A grid's order and a Sobol' sequence only hold together when every trial shares one seed."""
    from xaisearch.search.study import TrialSeededSampler, make_sampler
    from xaisearch.spec import parse_spec

    tiny_study["sampler"] = {"name": name, "grid": GRID} if name == "grid" else {"name": name}
    spec = parse_spec(tiny_study, "study.yaml")

    class NoSpace:
        grid = staticmethod(lambda: {"x": [0, 1]})

    sampler = make_sampler(spec, NoSpace())  # type: ignore[arg-type]
    assert not isinstance(sampler, TrialSeededSampler)
    tiny_study["sampler"]["name"] = "tpe"
    tiny_study["sampler"].pop("grid", None)
    assert isinstance(make_sampler(parse_spec(tiny_study, "study.yaml"), NoSpace()), TrialSeededSampler)  # type: ignore[arg-type]
