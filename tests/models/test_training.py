"""The demo's training recipe reaches the accuracy the search needs (>= 80 % held out)."""

import torch

from xaisearch.search.model_preparation import train_mini_model
from xaisearch.spec import load_spec


def test_demo_recipe_trains_to_80_percent_held_out():
    spec = load_spec("studies/demo.yaml")
    model, record = train_mini_model(spec.model, torch.device("cpu"))
    assert record["test_accuracy"] >= 0.8
    assert not model.training


def test_training_is_deterministic_for_a_seed():
    spec = load_spec("studies/demo.yaml").model.model_copy(deep=True)
    spec.training.n_train, spec.training.n_test, spec.training.epochs, spec.training.min_accuracy = 128, 32, 1, 0.0
    first, _ = train_mini_model(spec, torch.device("cpu"))
    second, _ = train_mini_model(spec, torch.device("cpu"))
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), second.state_dict().values()))
