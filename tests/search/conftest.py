from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

TINY_STUDY = {
    "name": "tiny",
    "n_trials": 3,
    "seed": 0,
    "device": "cpu",
    "model": {
        "name": "mini_vgg",
        "num_classes": 4,
        "input_shape": [3, 32, 32],
        "training": {"n_train": 256, "n_test": 64, "epochs": 1, "min_accuracy": 0.0},
    },
    "data": {"n_eval": 16, "batch_size": 8},
    "canonizer": "vgg",
    "search_space": {
        "groups": {
            "low": {"rules": ["gamma", "epsilon", "zplus"]},
            "mid": {"rules": ["gamma", "zplus"]},
            "high": {"rules": ["gamma", "zplus"]},
            "dense": {"rules": ["epsilon"]},
        },
        "first_layer": ["group", "zbox", "flat"],
    },
    "metrics": [
        {"name": "relevance_mass_accuracy", "weight": 1.0},
        {"name": "pixel_flipping", "weight": 1.0, "params": {"steps": 4}},
    ],
}


@pytest.fixture
def tiny_study():
    return copy.deepcopy(TINY_STUDY)


@pytest.fixture
def write_study(tmp_path):
    def write(data, name="study.yaml") -> Path:
        path = tmp_path / name
        path.write_text(yaml.safe_dump(data))
        return path

    return write
