"""``xaisearch canonize``: the report, its JSON form, exit codes."""

from __future__ import annotations

import json

from xaisearch.cli import main


def test_json_report_has_the_documented_keys(capsys):
    assert main(["canonize", "mini_vgg", "--json", "--input-size", "32"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["canonizer"] == "vgg" and report["model"] == "mini_vgg"
    assert report["bn_total"] == report["bn_folded"] == 4 and report["unfolded"] == []
    assert report["max_rel_diff"] <= 1e-5 and report["max_abs_diff"] >= 0
    assert report["restored_exactly"] is True and report["apply_seconds"] >= 0
    assert len(report["steps"]) == 4


def test_text_report_with_checks_names_every_step(capsys):
    assert main(["canonize", "mini_vgg", "--canonizer", "auto", "--check", "--input-size", "32"]) == 0
    out = capsys.readouterr().out
    assert "features.1: BatchNorm folded into features.0" in out
    assert "BatchNorm: 4 total, 4 folded, 0 unfolded" in out
    assert "relevance conservation" in out and "failure atomicity: ok" in out


def test_unfolded_bn_are_listed_by_name(capsys):
    assert main(["canonize", "mini_vgg", "--canonizer", "none", "--json", "--input-size", "32"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["unfolded"] == ["features.1", "features.5", "features.9", "features.13"]


def test_bad_model_name_is_exit_2_with_one_line(capsys):
    assert main(["canonize", "resnet5O"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "resnet5O" in err and "resnet50" in err


def test_bad_canonizer_name_is_exit_2(capsys):
    assert main(["canonize", "mini_vgg", "--canonizer", "resnett"]) == 2
    assert "resnett" in capsys.readouterr().err


def test_relation_network_is_canonized_by_its_registered_canonizer(capsys):
    # the command kept its own list of models and refused the Relation Network
    assert main(["canonize", "mini_relation_network", "--json", "--input-size", "80"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["canonizer"] == "relation_network"
    assert report["bn_total"] == report["bn_folded"] == 4 and report["unfolded"] == []
    assert report["max_rel_diff"] <= 1e-5 and report["restored_exactly"] is True
