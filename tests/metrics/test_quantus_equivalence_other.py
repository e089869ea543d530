"""Our localisation, robustness and randomisation metrics against Quantus 0.6.0 on RGB input.

Where Quantus is right, scores agree to 1e-5 (stochastic metrics are made deterministic by
replaying our noise through Quantus' ``perturb_func``). Where it is wrong (metrics.md §2.4),
a test shows the defect and what we return instead. Quantus is a test-only dependency.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from tests.metrics.toolkit import batch, context, gradient_x_input, tiny_cnn
from xaisearch.metrics import make_metric
from xaisearch.metrics.robustness import noisy_inputs
from xaisearch.metrics.similarity import ssim

quantus = pytest.importorskip("quantus")
TOL = {"rtol": 0, "atol": 1e-5}


def q_explain(model, inputs, targets, **kwargs):
    """Quantus explain_func: channel-summed gradient × input, as our metrics pool it."""
    x = torch.as_tensor(inputs, dtype=torch.float32)
    return gradient_x_input(model, x, torch.as_tensor(targets).long()).sum(1, keepdim=True).numpy()


def per_sample(kind):
    def normalise(a, **kwargs):
        flat = a.reshape(len(a), -1)
        scale = np.sqrt((flat**2).mean(1)) if kind == "second_moment" else np.abs(flat).max(1)
        return a / scale.reshape(-1, *[1] * (a.ndim - 1))

    return normalise


def replay(copies: torch.Tensor):
    """A Quantus perturb_func returning our noisy copies, one per call."""
    queue = list(copies.numpy())

    def perturb(arr, indices, **kwargs):
        return queue.pop(0).reshape(arr.shape)

    return perturb


@pytest.fixture(scope="module")
def parts():
    model, x, y, a, s = batch(4, seed=3)
    return model, x, y, a, s, a.sum(1, keepdim=True).numpy(), s.numpy()


def ours(name, parts, **params):
    model, x, y, a, s = parts[:5]
    return make_metric(name, **params)(context(model, x, y, a, s)).double()


def q_call(metric, parts, **kwargs):
    model, x, y = parts[:3]
    scores = metric(model=model, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=parts[5], s_batch=parts[6], **kwargs)
    return torch.as_tensor(np.asarray(scores, dtype=np.float64))


# localisation ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, params, q_metric",
    [
        ("pointing_game", {}, lambda: quantus.PointingGame(disable_warnings=True)),
        ("top_k_intersection", {"k": 25}, lambda: quantus.TopKIntersection(k=25, disable_warnings=True)),
        ("auc", {}, lambda: quantus.AUC(disable_warnings=True)),
        (
            "attribution_localisation",
            {},
            lambda: quantus.AttributionLocalisation(abs=False, positive_attributions=True, disable_warnings=True),
        ),
    ],
)
def test_localisation_matches_quantus(name, params, q_metric, parts):
    torch.testing.assert_close(ours(name, parts, **params), q_call(q_metric(), parts), **TOL)


def test_quantus_pointing_game_scores_an_empty_mask_as_a_hit(parts):
    model, x, y, a, s, q_a, q_s = parts
    empty = s.clone()
    empty[0] = 0
    quantus_scores = quantus.PointingGame(disable_warnings=True)(
        model=model, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=q_a, s_batch=empty.numpy()
    )
    assert quantus_scores[0] == True  # noqa: E712  (defect #1: a bool array cannot hold NaN)
    assert torch.isnan(make_metric("pointing_game")(context(model, x, y, a, empty))[0])


def test_quantus_attribution_localisation_weights_by_a_wrong_image_size(parts):
    model, x, y, a, s, q_a, q_s = parts
    kwargs = {"abs": False, "positive_attributions": True, "disable_warnings": True}
    plain = q_call(quantus.AttributionLocalisation(**kwargs), parts)
    weighted = q_call(quantus.AttributionLocalisation(weighted=True, **kwargs), parts)
    wrong_ratio = s.sum((1, 2, 3)).double() / x[2:].numel()  # defect #3: x_batch[2:].size
    torch.testing.assert_close(weighted / plain, wrong_ratio)
    chance = s.mean((1, 2, 3)).double()  # ours: mu / (|GT| / N)
    torch.testing.assert_close(ours("attribution_localisation", parts, weighted=True), plain / chance, **TOL)


def test_quantus_normalises_over_the_batch_we_per_sample(parts):
    """Defect #14: one sample's normalised map depends on the other samples of its batch."""
    a = parts[5]
    alone = quantus.normalise_func.normalise_by_max(a[:1])
    together = quantus.normalise_func.normalise_by_max(np.concatenate([a[:1], 1000 * a[1:]]))[:1]
    assert not np.allclose(alone, together)
    from xaisearch.metrics.pooling import normalise_per_sample

    t = torch.as_tensor(a)
    torch.testing.assert_close(
        normalise_per_sample(t[:1], "max_abs"), normalise_per_sample(torch.cat([t[:1], 1000 * t[1:]]), "max_abs")[:1]
    )


# robustness ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, q_class", [("avg_sensitivity", "AvgSensitivity"), ("max_sensitivity", "MaxSensitivity")]
)
@pytest.mark.parametrize("normalise", ["none", "second_moment"])
def test_sensitivity_matches_quantus_on_the_same_noise(name, q_class, normalise, parts):
    model, x, y, a, s = parts[:5]
    params = {"samples": 4, "radius": 0.2, "denominator": "explanation", "normalise": normalise, "seed": 5}
    copies = noisy_inputs(context(model, x, y, a, s), "uniform", 4, 0.2, 5).view(4, *x.shape)
    q_metric = getattr(quantus, q_class)(
        nr_samples=4,
        lower_bound=0.2,
        perturb_func=replay(copies),
        normalise=normalise != "none",
        normalise_func=per_sample(normalise),
        abs=False,
        disable_warnings=True,
    )
    expected = q_call(q_metric, parts, explain_func=q_explain)
    torch.testing.assert_close(ours(name, parts, **params), expected, **TOL)


def test_local_lipschitz_matches_quantus_on_the_same_noise(parts):
    model, x, y, a, s = parts[:5]
    copies = noisy_inputs(context(model, x, y, a, s), "gaussian", 4, 0.1, 2).view(4, *x.shape)
    q_metric = quantus.LocalLipschitzEstimate(
        nr_samples=4, perturb_func=replay(copies), normalise_func=per_sample("max_abs"), disable_warnings=True
    )
    expected = q_call(q_metric, parts, explain_func=q_explain)
    torch.testing.assert_close(ours("local_lipschitz", parts, samples=4, std=0.1, seed=2), expected, **TOL)


def test_paper_sensitivity_divides_by_the_input_norm(parts):
    model, x, y, a, s = parts[:5]
    by_input = ours("avg_sensitivity", parts, samples=3, normalise="none")
    by_map = ours("avg_sensitivity", parts, samples=3, normalise="none", denominator="explanation")
    ratio = a.sum(1).flatten(1).double().norm(dim=1) / x.flatten(1).double().norm(dim=1)
    torch.testing.assert_close(by_input, by_map * ratio)


# randomisation ---------------------------------------------------------------------------------


def test_flat_ssim_matches_quantus_and_2d_ssim_matches_scikit_image():
    from skimage.metrics import structural_similarity

    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(3, 16, 12, generator=g, dtype=torch.float64), torch.rand(3, 16, 12, generator=g).double()
    b = b + a  # correlated pairs
    flat = quantus.similarity_func.ssim(a.flatten(1).numpy(), b.flatten(1).numpy(), batched=True)
    torch.testing.assert_close(ssim(a, b, "flat1d"), torch.tensor(flat, dtype=torch.float64), **TOL)
    for i in range(3):
        both = torch.cat([a[i], b[i]])
        expected = structural_similarity(a[i].numpy(), b[i].numpy(), data_range=float(both.max() - both.min()))
        assert abs(float(ssim(a[i : i + 1], b[i : i + 1], "2d")) - expected) <= 1e-5


def test_flattened_ssim_is_not_an_image_similarity():
    """Defect #11: 1-D SSIM on flattened maps depends on the scan direction; 2-D SSIM does not."""
    g = torch.Generator().manual_seed(1)
    a = torch.rand(1, 16, 16, generator=g, dtype=torch.float64)
    b = a + 0.5 * torch.rand(1, 16, 16, generator=g, dtype=torch.float64)
    turned = (a.transpose(1, 2), b.transpose(1, 2))
    torch.testing.assert_close(ssim(a, b, "2d"), ssim(*turned, "2d"))
    assert abs(float(ssim(a, b, "flat1d") - ssim(*turned, "flat1d"))) > 1e-3


@pytest.fixture(scope="module")
def two_class_parts():
    model, x, y, a, s = batch(4, seed=4, model=tiny_cnn(4, num_classes=2), classes=2)
    return model, x, y, a, s, None, s.numpy()


def test_random_logit_matches_quantus_with_one_other_class(two_class_parts):
    parts = two_class_parts
    model, x, y = parts[:3]
    q_metric = quantus.RandomLogit(num_classes=2, normalise_func=per_sample("second_moment"), disable_warnings=True)
    q_a = parts[3].sum(1, keepdim=True).numpy()
    state = np.random.get_state()
    expected = q_metric(model=model, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=q_a, explain_func=q_explain)
    after = np.random.rand()
    np.random.set_state(state)
    torch.testing.assert_close(ours("random_logit", parts, ssim="flat1d"), torch.tensor(expected).double(), **TOL)
    # defect #6: Quantus reseeded NumPy's global generator (np.random.seed(42) per batch)
    np.random.seed(42)
    np.random.randint(0, 1, len(x))
    assert np.random.rand() == after


def _quantus_mprt(parts, **kwargs):
    model, x, y = parts[:3]
    metric = quantus.MPRT(layer_order="top_down", seed=42, disable_warnings=True, **kwargs)
    with torch.random.fork_rng(devices=[]):
        return metric(model=model, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=parts[5], explain_func=q_explain)


def test_mprt_matches_quantus_layer_average_without_the_clean_model(parts):
    per_layer = _quantus_mprt(parts)
    layers = [torch.tensor(v, dtype=torch.float64) for k, v in per_layer.items() if k != "original"]
    expected = torch.stack(layers).mean(0)
    torch.testing.assert_close(ours("mprt", parts), expected, **TOL)
    # defect #4: return_average_correlation keeps the unrandomised model's similarity 1.0 in the mean
    with_clean = torch.tensor(_quantus_mprt(parts, return_average_correlation=True), dtype=torch.float64)
    torch.testing.assert_close(with_clean, (expected * len(layers) + 1) / (len(layers) + 1), **TOL)


def test_efficient_mprt_matches_quantus(parts):
    model, x, y = parts[:3]
    metric = quantus.EfficientMPRT(seed=42, disable_warnings=True)
    with torch.random.fork_rng(devices=[]):
        expected = metric(model=model, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=parts[5], explain_func=q_explain)
    torch.testing.assert_close(ours("efficient_mprt", parts), torch.tensor(expected, dtype=torch.float64), **TOL)


def test_mprt_randomisation_leaves_the_global_rng_alone(parts):
    rng = torch.get_rng_state()
    ours("mprt", parts)
    assert torch.equal(torch.get_rng_state(), rng)
    # Quantus seeds the global generator (torch.manual_seed(seed + 1) per layer, defect #6)
    model, x, y = parts[:3]
    quantus.MPRT(seed=42, disable_warnings=True)(
        model=model, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=parts[5], explain_func=q_explain
    )
    assert not torch.equal(torch.get_rng_state(), rng)
    torch.set_rng_state(rng)


def test_metric_objects_are_data(parts):
    metric = make_metric("mprt", order="bottom_up")
    assert dataclasses.replace(metric, order="top_down") == make_metric("mprt")
