"""Localisation metrics on cases with known answers."""

from __future__ import annotations

import pytest
import torch

from tests.metrics.toolkit import masks
from xaisearch.metrics import evaluate

Y = torch.zeros(4, dtype=torch.long)


def score(name, a, s, **params):
    return evaluate(name, None, torch.rand(len(a), 3, *a.shape[-2:]), Y[: len(a)], a, s, **params)


@pytest.mark.parametrize("name", ["pointing_game", "attribution_localisation", "top_k_intersection", "auc"])
def test_the_mask_itself_localises_perfectly(name):
    s = masks(4)
    a = s.expand(-1, 3, -1, -1) + 0.01 * torch.rand(4, 3, 16, 16) * s  # inside > outside = 0
    params = {"k": 5} if name == "top_k_intersection" else {}
    torch.testing.assert_close(score(name, a, s, **params), torch.ones(4))


@pytest.mark.parametrize("name", ["pointing_game", "top_k_intersection", "attribution_localisation"])
def test_a_constant_map_scores_the_chance_level(name):
    s = masks(4)
    torch.testing.assert_close(score(name, torch.full((4, 3, 16, 16), 0.3), s), s.mean((1, 2, 3)))


def test_auc_of_a_constant_map_is_one_half_and_matches_scikit_learn_with_ties():
    roc_auc_score = pytest.importorskip("sklearn.metrics").roc_auc_score

    s = masks(4)
    assert torch.allclose(score("auc", torch.ones(4, 1, 16, 16), s), torch.full((4,), 0.5))
    a = torch.randint(0, 4, (4, 1, 16, 16)).float()  # many ties
    expected = [roc_auc_score(s[i].flatten().numpy(), a[i].flatten().numpy()) for i in range(4)]
    torch.testing.assert_close(score("auc", a, s), torch.tensor(expected, dtype=torch.float32))


def test_auc_is_nan_when_the_mask_covers_everything():
    assert torch.isnan(score("auc", torch.rand(1, 1, 16, 16), torch.ones(1, 1, 16, 16))).all()


def test_top_k_counts_and_fractions():
    s = torch.zeros(1, 1, 4, 4)
    s[0, 0, 0] = 1  # first row
    a = torch.arange(16.0).flip(0).view(1, 1, 4, 4)  # most relevant: first row, then second
    assert score("top_k_intersection", a, s, k=4).item() == 1.0
    assert score("top_k_intersection", a, s, k=8).item() == 0.5
    assert score("top_k_intersection", a, s, k=0.5).item() == 0.5
    assert score("top_k_intersection", a, s, k=8, concept_influence=True).item() == 2.0
    with pytest.raises(ValueError, match="k=17"):
        score("top_k_intersection", a, s, k=17)


def test_pointing_game_ties_count_in_expectation():
    s = torch.zeros(1, 1, 4, 4)
    s[0, 0, 0, 0] = 1
    a = torch.zeros(1, 1, 4, 4)
    a[0, 0, 0, 0] = a[0, 0, 3, 3] = 1.0  # two maxima, one inside
    assert score("pointing_game", a, s).item() == 0.5


def test_attribution_localisation_uses_positive_relevance_and_filters_large_objects():
    s = torch.zeros(2, 1, 4, 4)
    s[:, 0, :2] = 1  # half the image
    a = torch.zeros(2, 1, 4, 4)
    a[:, 0, 0, 0], a[:, 0, 3, 3], a[:, 0, 2, 2] = 3.0, 1.0, -5.0  # negative relevance ignored
    torch.testing.assert_close(score("attribution_localisation", a, s), torch.full((2,), 0.75))
    torch.testing.assert_close(score("attribution_localisation", a, s, weighted=True), torch.full((2,), 1.5))
    assert torch.isnan(score("attribution_localisation", a, s, max_size=0.4)).all()


def test_rank_metrics_share_one_sort_per_call():
    from xaisearch.metrics import make_metric
    from xaisearch.metrics.base import MetricContext

    s, a = masks(2), torch.rand(2, 3, 16, 16)
    ctx = MetricContext(x=torch.rand(2, 3, 16, 16), y=Y[:2], a=a, s=s)
    for name in ("pointing_game", "top_k_intersection", "auc"):
        make_metric(name)(ctx)
    assert sum(key[0] == "sorted" for key in ctx.scratch) == 1
