"""The rows of the canonization table: zennit's standard composites, the study's best trial, the
baseline methods and composite files, each as an ``ExplainerConfig`` for the study's model."""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from pathlib import Path

import optuna

from xaisearch.errors import InputError
from xaisearch.explain.baselines import LRP, METHODS
from xaisearch.explain.config import ExplainerConfig, FirstLayerRule, GroupRule, load_config
from xaisearch.explain.groups import depth_groups, linear_layers
from xaisearch.models.ref import ModelRef
from xaisearch.search.canonization_table import Method
from xaisearch.search.export import best_trial, config_of
from xaisearch.search.space import STANDARD_COMPOSITES
from xaisearch.search.workbench import Workbench
from xaisearch.spec import FIRST_LAYER_GROUP
from xaisearch.spec.methods import trial_params

BEST_TRIAL = "best_trial"


def standard_composites(bench: Workbench) -> list[Method]:
    """zennit's standard composites on the study's layer groups (depth groups for a baseline study)."""
    shape = bench.spec.model.input_shape
    groups = bench.space.groups or depth_groups(bench.model, shape)
    dense_layers = {name for name, kind in linear_layers(bench.model, shape) if kind == "dense"}
    low, high = bench.spec.data.bounds()
    methods = []
    for name, (conv_rule, conv_params, dense_rule, dense_params, first) in STANDARD_COMPOSITES.items():
        rules = []
        for group, layers in groups.items():
            dense = set(layers) <= dense_layers
            rule, params = (dense_rule, dense_params) if dense else (conv_rule, conv_params)
            rules.append(GroupRule(name=group, layers=layers, rule=rule, params=dict(params)))
        first_rule = None
        if first != FIRST_LAYER_GROUP:
            bounds: dict[str, object] = {"low": low, "high": high} if first == "zbox" else {}
            first_rule = FirstLayerRule(layer=bench.space.first_layer, rule=first, params=bounds)
        config = ExplainerConfig(model=bench.model_ref, canonizer="none", groups=rules, first_layer=first_rule)
        methods.append(Method(name, "standard composite", config))
    return methods


def baseline_methods(bench: Workbench) -> list[Method]:
    """Every baseline method with its default parameters (SmoothGrad's noise seeded by the study)."""
    spec = bench.spec
    methods = []
    for name in METHODS:
        if name != LRP:
            params = trial_params(name, {}, spec.seed, spec.data.input_low)
            config = ExplainerConfig(model=bench.model_ref, canonizer="none", method=name, params=params)
            methods.append(Method(name, "baseline", config))
    return methods


def best_trial_method(study: optuna.Study | None, held_out: ExplainerConfig | None = None) -> list[Method]:
    """The study's winner: chosen on held-out images when validated, else the search set's best."""
    if held_out is not None:
        return [Method(BEST_TRIAL, f"trial {held_out.trial} (winner on held-out images)", held_out)]
    if study is None or not any(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials):
        return []
    trial = best_trial(study)
    return [Method(BEST_TRIAL, f"trial {trial.number} (best on the search set)", config_of(trial, study))]


def composite_files(paths: Sequence[Path], model: ModelRef) -> list[Method]:
    """Exported configs, each made for ``model`` (read before any model is loaded or trained; the
    layers are checked against the built model by ``refuse_missing_layers``)."""
    methods = []
    for path in paths:
        try:
            config, _ = load_config(path)
        except InputError as error:
            raise InputError(f"--composite {error}") from None
        refuse_another_model(path, config.model_differences(model))
        methods.append(Method(path.stem, "composite file", config))
    return methods


def refuse_another_model(composite: Path, differences: list[str]) -> None:
    """A composite made for another model than the study's: its scores would describe nothing the study has."""
    if differences:
        raise InputError(
            f"--composite {composite}: made for another model: it names {'; '.join(differences)}; "
            "export a composite from a study of this model, or evaluate it with the study file it came from"
        )


def refuse_missing_layers(composite: Path, missing: list[str]) -> None:
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        refuse_another_model(composite, [f"layers {missing[:3]}{more}, which the study's model does not have"])


def method_names() -> list[str]:
    """Every row ``--methods`` may name: the standard composites, the study's winner, the baselines."""
    return [*STANDARD_COMPOSITES, BEST_TRIAL, *(name for name in METHODS if name != LRP)]


def check_method_names(names: Sequence[str], option: str = "--methods") -> None:
    """An unknown row name is one line, with the closest known one, before anything is loaded."""
    known = method_names()
    for name in names:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise InputError(f"{option}: unknown method {name!r}; {hint}choose from {', '.join(known)}")


def choose(methods: Sequence[Method], names: Sequence[str] | None, option: str = "--methods") -> list[Method]:
    """The methods ``names`` asks for, in that order (all when ``None``); an unknown name is one line."""
    if names is None:
        return list(methods)
    check_method_names(names, option)
    by_name = {method.name: method for method in methods}
    missing = [name for name in names if name not in by_name]
    if missing:  # a known name without its row: the study has no completed trial yet
        raise InputError(f"{option}: {missing[0]!r} needs a study with completed trials; run the study first")
    return [by_name[name] for name in dict.fromkeys(names)]
