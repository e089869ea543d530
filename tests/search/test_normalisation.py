"""Every objective normalisation the search implements can be chosen in a study file, and only those."""

from __future__ import annotations

from typing import get_args

import pytest

from xaisearch.search.normalisation import normalise_mean
from xaisearch.spec import Normalisation, ObjectiveSpec


@pytest.mark.parametrize("name", get_args(Normalisation))
def test_each_study_file_normalisation_is_implemented(name):
    assert ObjectiveSpec(normalisation=name).normalisation == name
    assert normalise_mean(0.9, [0.5, 0.7, 0.9], name) == pytest.approx(0.9 if name == "none" else 1.0)


@pytest.mark.parametrize("name", ["rank", "minmax"])
def test_normalisations_against_finished_trials_are_neither_implemented_nor_accepted(name):
    # a trial's value would depend on when it ran; before, these were implemented but unreachable
    with pytest.raises(ValueError, match="unknown normalisation"):
        normalise_mean(0.9, [0.5, 0.7, 0.9], name)
    with pytest.raises(ValueError, match="normalisation"):
        ObjectiveSpec(normalisation=name)
