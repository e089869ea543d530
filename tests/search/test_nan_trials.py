"""A model whose attributions are all NaN: each trial fails saying which metric and why, and the user learns it."""

from dataclasses import dataclass

import optuna
import pytest
import torch

from xaisearch.cli import main
from xaisearch.errors import InputError
from xaisearch.metrics.base import Metric, MetricContext
from xaisearch.metrics.catalog import METRICS
from xaisearch.models.mini import mini_vgg
from xaisearch.search.objective import AttributionCheck, Objective, failure_reason
from xaisearch.search.study import BUDGET_ATTR
from xaisearch.search.trial_attributes import FAIL_REASON_ATTR, failure_summary
from xaisearch.search.workbench import Workbench
from xaisearch.service.worker import run_trials
from xaisearch.spec import parse_spec

NAN_RMA = (  # both metrics of the tiny study: pixel flipping has no removal order for a NaN map
    "metrics 'relevance_mass_accuracy', 'pixel_flipping' are NaN for every sample (all attributions NaN): "
    "check the model and the canonizer, and the rules' parameters (a rule can overflow)"
)


@dataclass(frozen=True)
class NanBlind(Metric):
    """A metric that scores any map, NaN ones too (what the objective must not trust)."""

    name = "nan_blind"
    category = "complexity"
    direction = "higher"

    def __call__(self, ctx: MetricContext) -> torch.Tensor:
        return torch.zeros(len(ctx.x), device=ctx.x.device)


class NanGradient(torch.autograd.Function):
    """The identity forward, NaN backward: the model's outputs stay finite, every attribution is NaN."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return torch.full_like(grad, float("nan"))


def saved_weights(path, nan_layer=None):
    torch.manual_seed(0)
    model = mini_vgg(num_classes=4, image_size=32)
    if nan_layer is not None:
        with torch.no_grad():
            model.get_submodule(nan_layer).weight[0, 0, 0, 0] = float("nan")
    torch.save(model.state_dict(), path)
    return path


@pytest.fixture
def small_study(tiny_study, tmp_path):
    """The tiny study on a saved random mini VGG (no training) with 8 evaluation images."""
    tiny_study["model"] = {"name": "mini_vgg", "num_classes": 4, "input_shape": [3, 32, 32]}
    tiny_study["model"]["weights"] = str(saved_weights(tmp_path / "weights.pt"))
    tiny_study["data"] = {"n_eval": 8, "batch_size": 8}
    return tiny_study


def nan_bench(study: dict, tmp_path) -> Workbench:
    bench = Workbench.prepare(parse_spec(study), tmp_path, torch.device("cpu"))
    bench.model.register_forward_hook(lambda module, inputs, output: NanGradient.apply(output))
    return bench


def one_trial(bench: Workbench) -> optuna.trial.FrozenTrial:
    study = optuna.create_study(directions=bench.directions(), sampler=optuna.samplers.RandomSampler(0))
    study.optimize(Objective(bench), n_trials=1, catch=(RuntimeError,))
    return study.trials[0]


def test_a_trial_whose_attributions_are_all_nan_fails_naming_the_metric(small_study, tmp_path):
    trial = one_trial(nan_bench(small_study, tmp_path))
    assert trial.state == optuna.trial.TrialState.FAIL
    assert trial.user_attrs[FAIL_REASON_ATTR] == NAN_RMA
    assert trial.user_attrs["relevance_mass_accuracy.nan_fraction"] == 1.0


def test_a_metric_that_still_scores_nan_maps_gives_no_fake_score(small_study, tmp_path, monkeypatch):
    monkeypatch.setitem(METRICS._entries, NanBlind.name, NanBlind)
    small_study["metrics"] = [{"name": NanBlind.name}]  # finite scores for NaN maps
    trial = one_trial(nan_bench(small_study, tmp_path))
    assert trial.state == optuna.trial.TrialState.FAIL
    assert trial.user_attrs[FAIL_REASON_ATTR].startswith("every attribution map is NaN, so no metric score")


def test_a_study_that_stops_after_ten_failures_says_why(small_study, tmp_path):
    bench = nan_bench(small_study, tmp_path)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(0))
    study.set_user_attr(BUDGET_ATTR, 2)
    with pytest.raises(InputError) as stopped:
        run_trials(study, Objective(bench))
    assert len(study.trials) == 10
    assert failure_summary(study.trials) == f"10 trials failed; the last (trial 9): {NAN_RMA}"
    summary = f"10 trials failed; the last (trial 9): {NAN_RMA}"
    assert str(stopped.value) == f"study {study.study_name!r}: {summary}; stopping instead of retrying forever"


def test_any_other_failure_is_recorded_in_one_line(small_study, tmp_path):
    bench = Workbench.prepare(parse_spec(small_study), tmp_path, torch.device("cpu"))

    def broken(module, inputs, output):
        raise RuntimeError("CUDA error: an illegal memory access\nsecond line")

    bench.model.classifier.register_forward_hook(broken)
    trial = one_trial(bench)
    assert trial.state == optuna.trial.TrialState.FAIL
    assert trial.user_attrs[FAIL_REASON_ATTR] == "RuntimeError: CUDA error: an illegal memory access"
    assert (
        failure_summary([trial])
        == "1 trial failed; the last (trial 0): RuntimeError: CUDA error: an illegal memory access"
    )


def test_the_reason_says_what_the_attributions_show():
    zero, nan = torch.zeros(2, 3, 4, 4), torch.full((1, 3, 4, 4), float("nan"))
    check = AttributionCheck()
    check.record(zero)
    assert failure_reason(["relevance_mass_accuracy"], check) == (
        "metric 'relevance_mass_accuracy' is NaN for every sample (all attributions zero): "
        "the rules lose all relevance; check the rules and the canonizer"
    )
    check.record(nan)
    assert check.problem() == "1 of 3 attribution maps contain NaN"
    assert failure_reason(["a", "b"], AttributionCheck()).startswith("metrics 'a', 'b' are NaN for every sample: ")
    assert failure_summary([]) is None


def test_a_model_with_a_nan_weight_is_refused_before_any_trial(small_study, write_study, tmp_path, capsys):
    small_study["model"]["weights"] = str(saved_weights(tmp_path / "nan.pt", nan_layer="features.0"))
    code = main(["run", str(write_study(small_study)), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "model mini_vgg: ['features.0.weight'] hold NaN or infinite values" in err
    assert not (tmp_path / "run" / "optuna.journal").exists()


def nan_gradient_vgg(ref):
    model = mini_vgg(num_classes=ref.num_classes, image_size=ref.input_shape[-1])
    model.register_forward_hook(lambda module, inputs, output: NanGradient.apply(output))
    return model


def test_run_stops_after_ten_failed_trials_with_one_line_naming_the_cause(small_study, write_study, tmp_path, capsys):
    from xaisearch.models.zoo import MODELS

    if "nan_gradient_vgg" not in MODELS:
        MODELS.add("nan_gradient_vgg", nan_gradient_vgg)
    small_study["model"]["name"] = "nan_gradient_vgg"
    small_study["n_trials"] = 2
    code = main(["run", str(write_study(small_study)), "--out", str(tmp_path / "run")])
    captured = capsys.readouterr()
    assert code == 2 and captured.err.count("\n") == 1
    assert captured.err == (
        f"error: study 'tiny': 10 trials failed; the last (trial 9): {NAN_RMA}; stopping instead of retrying forever\n"
    )
    assert "0/2" in captured.out and "10/2" not in captured.out
