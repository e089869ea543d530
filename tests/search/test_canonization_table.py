"""The canonization table: every method canonized and not, paired tests, marks, ranks, CSV = JSON."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch
from scipy.stats import wilcoxon

from xaisearch.cli import main
from xaisearch.search.canonization_table import CANONIZED, FLOAT_NOISE, UNCANONIZED, Method, Row, _pair, _rank
from xaisearch.search.significance import paired_test


def test_a_pair_marks_the_better_value_with_the_direction_applied():
    rng = np.random.default_rng(0)
    uncanonized = torch.tensor(rng.uniform(0.2, 0.4, 40))
    canonized = uncanonized - 0.05 + torch.tensor(rng.normal(0, 0.01, 40))  # lower on every image
    lower = _pair("avg_sensitivity", "lower", uncanonized, canonized, "wilcoxon", 0.05)
    higher = _pair("sparseness", "higher", uncanonized, canonized, "wilcoxon", 0.05)
    assert lower.better == CANONIZED and higher.better == UNCANONIZED
    assert lower.significant and higher.significant
    assert lower.difference == pytest.approx(float((canonized - uncanonized).mean()))
    expected = wilcoxon((canonized - uncanonized).numpy()).pvalue
    assert lower.p_value == pytest.approx(expected) and higher.p_value == pytest.approx(expected)


def test_a_pair_equal_on_every_image_is_equal_with_p_one_not_a_significant_1e_7():
    scores = torch.linspace(0.1, 0.9, 30, dtype=torch.float64)
    pair = _pair("rma", "higher", scores, scores + 1e-8, "wilcoxon", 0.05)
    assert pair.better == "equal" and pair.p_value == 1.0 and not pair.significant
    assert pair.difference == pytest.approx(1e-8)
    # the same float noise without the tolerance would have been "significant": the tolerance matters
    assert paired_test((scores + 1e-8).numpy(), scores.numpy()).p_value < 0.05


def test_a_rule_free_method_float_noise_is_equal_but_a_real_change_is_not():
    rng = np.random.default_rng(2)
    scores = torch.tensor(rng.uniform(0.1, 0.9, 64))
    noisy = scores + torch.tensor(rng.normal(1e-6, 1e-5, 64))  # BN folding's float error, one sign more often
    assert _pair("pf", "higher", scores, noisy, "wilcoxon", 0.05, invariant=True).better == "equal"
    assert _pair("pf", "higher", scores, noisy, "wilcoxon", 0.05, invariant=False).better != "equal"
    changed = _pair("pf", "higher", scores, scores + 0.01, "wilcoxon", 0.05, invariant=True)
    assert changed.better == CANONIZED and changed.significant  # a canonizer that changed the function shows


def test_a_small_difference_in_noise_is_not_significant():
    rng = np.random.default_rng(1)
    a = torch.tensor(rng.uniform(0, 1, 20))
    pair = _pair("rma", "higher", a, a + torch.tensor(rng.normal(0, 0.2, 20)), "bootstrap", 0.05)
    assert not pair.significant and pair.test == "bootstrap"


def test_ranks_apply_each_metric_direction():
    def row(name, higher, lower):
        pairs = {
            "up": _pair("up", "higher", torch.tensor(higher[0]), torch.tensor(higher[1]), "wilcoxon", 0.05),
            "down": _pair("down", "lower", torch.tensor(lower[0]), torch.tensor(lower[1]), "wilcoxon", 0.05),
        }
        return Row(Method(name, "test", None), "vgg", pairs)  # type: ignore[arg-type]

    best = row("best", ([0.8, 0.9], [0.9, 1.0]), ([0.1, 0.2], [0.0, 0.1]))  # highest 'up', lowest 'down'
    worst = row("worst", ([0.1, 0.2], [0.0, 0.1]), ([0.8, 0.9], [0.9, 1.0]))
    rows = [worst, best]
    _rank(rows, ["up", "down"], {"up": "higher", "down": "lower"})
    assert best.mean_rank == {UNCANONIZED: 2.0, CANONIZED: 1.0}
    assert worst.mean_rank == {UNCANONIZED: 3.0, CANONIZED: 4.0}


@pytest.fixture(scope="module")
def trained_study(tmp_path_factory):
    """A tiny study run for two trials: its model, storage and best composite."""
    import yaml

    from tests.search.conftest import TINY_STUDY

    folder = tmp_path_factory.mktemp("table")
    study_file = folder / "study.yaml"
    study_file.write_text(yaml.safe_dump(TINY_STUDY | {"n_trials": 2}))
    out = folder / "run"
    assert main(["run", str(study_file), "--out", str(out)]) == 0
    return study_file, out


def test_the_table_covers_every_method_both_ways_and_csv_equals_json(trained_study, tmp_path, capsys):
    study_file, out = trained_study
    capsys.readouterr()
    table_csv = tmp_path / "t.csv"
    args = ["evaluate", str(study_file), "--compare-canonization", "--out", str(out), "--csv", str(table_csv)]
    assert main([*args, "--json"]) == 0
    table = json.loads(capsys.readouterr().out)
    methods = {record["method"] for record in table["records"]}
    baselines = {"gradient", "input_x_gradient", "smoothgrad", "integrated_gradients"}
    standard = {"epsilon_plus", "epsilon_plus_flat", "epsilon_alpha2_beta1", "epsilon_alpha2_beta1_flat"}
    assert (
        baselines | standard | {"guided_backprop", "excitation_backprop", "epsilon_gamma_box", "best_trial"} <= methods
    )
    assert table["images"] == "search set (16 images)"
    assert table["metrics"] == {"relevance_mass_accuracy": "higher", "pixel_flipping": "higher"}  # AOPC of the drop
    by_method = {}
    for record in table["records"]:
        by_method.setdefault(record["method"], []).append(record)
    for name in baselines:  # no rules: canonization cannot change them, and the table says so
        for record in by_method[name]:
            assert record["better"] == "equal" and record["p_value"] == 1.0, record
            assert abs(record["uncanonized_mean"] - record["canonized_mean"]) <= FLOAT_NOISE * max(
                1, record["canonized_mean"]
            )
    lrp_changed = [r for name in standard for r in by_method[name] if r["metric"] == "relevance_mass_accuracy"]
    assert any(r["better"] != "equal" for r in lrp_changed)  # LRP explains the canonized model differently
    for record in table["records"]:
        if record["better"] in (CANONIZED, UNCANONIZED):
            sign = 1 if record["better_is"] == "higher" else -1
            winner, loser = (record["canonized_mean"], record["uncanonized_mean"])
            if record["better"] == UNCANONIZED:
                winner, loser = loser, winner
            assert sign * (winner - loser) > 0
    with table_csv.open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(table["records"])
    for row, record in zip(rows, table["records"]):
        assert row["method"] == record["method"] and row["metric"] == record["metric"]
        for key in ("uncanonized_mean", "canonized_mean", "mean_rank_canonized"):
            assert math.isclose(float(row[key]), record[key], rel_tol=1e-12)


def test_the_printed_table_has_the_pairs_marks_and_legend(trained_study, capsys):
    study_file, out = trained_study
    capsys.readouterr()
    args = ["evaluate", str(study_file), "--compare-canonization", "--out", str(out)]
    assert main([*args, "--methods", "gradient,epsilon_plus,best_trial"]) == 0
    printed = capsys.readouterr().out
    assert "relevance_mass_accuracy ↑" in printed and "pixel_flipping ↑" in printed
    assert " = " in printed  # gradient's equal columns
    assert "uncanonized / canonized" in printed and "search set (16 images)" in printed
    assert "excitation_backprop" not in printed


def test_unknown_method_and_unfit_csv_are_one_line_errors(trained_study, tmp_path, capsys):
    study_file, out = trained_study
    capsys.readouterr()
    args = ["evaluate", str(study_file), "--compare-canonization", "--out", str(out)]
    assert main([*args, "--methods", "gradient,lrp_magic"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--methods: unknown method 'lrp_magic'" in err
    assert main([*args, "--csv", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--csv" in err
    fresh = ["evaluate", str(study_file), "--compare-canonization", "--out", str(tmp_path / "fresh")]
    assert main([*fresh, "--methods", "gradiant"]) == 2  # refused before a model is trained for it
    assert "did you mean 'gradient'?" in capsys.readouterr().err and not (tmp_path / "fresh").exists()
    assert main(["evaluate", str(study_file), "--csv", str(tmp_path / "x.csv")]) == 2
    assert "--compare-canonization" in capsys.readouterr().err
