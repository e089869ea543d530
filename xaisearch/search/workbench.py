"""Everything a worker builds once and reuses for every trial.

The model (canonized per trial by the composite, so the canonizer is applied and removed around
each explanation), the evaluation batches on the worker's device, the search space with its
resolved layer groups, and the metric suite with its per-batch cache. Before any trial the
canonizer guard checks, once, that the canonizer keeps this model's function on the study's own
images and restores it exactly (``canonize.guard``; two forwards of two images).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from xaisearch.canonize.registry import canonizer_name_for
from xaisearch.errors import InputError
from xaisearch.explain.config import ExplainerConfig
from xaisearch.metrics.base import ModelExplainer, config_explainer
from xaisearch.metrics.registry import make_metric
from xaisearch.metrics.suite import EvalBatch, MetricSuite, WeightedMetric, suite_entries
from xaisearch.models.ref import ModelRef
from xaisearch.search.model_preparation import obtain_model
from xaisearch.search.preflight import guard_study_canonizer
from xaisearch.search.space import SearchSpace
from xaisearch.spec import DataSpec, StudySpec


def evaluation_batches(data: DataSpec, image_size: int, device: torch.device, heldout: bool = False) -> list[EvalBatch]:
    """The study's search set, or with ``heldout`` its validation set; masks are B×1×H×W.

    Shapes: the ``val`` split (disjoint from training data); the validation images come from the
    ``heldout`` split's own random stream. A real dataset: a seeded sample; the validation images
    are the next ``n_validation`` draws of the same seeded order, so the two sets never share an image.
    """
    count = data.validation_size if heldout else data.n_eval
    if data.name == "shapes":
        from xaisearch.data.shapes import generate

        scenes = generate(count, seed=data.seed, split="heldout" if heldout else "val", image_size=image_size)
        x, y = torch.from_numpy(scenes.x), torch.from_numpy(scenes.y)
        s = torch.from_numpy(scenes.mask(data.ground_truth))
    else:
        x, y, s = real_evaluation_set(data, image_size, count, skip=data.n_eval if heldout else 0)
    x, y, s = x.to(device), y.to(device), s.to(device)
    step = data.batch_size
    return [EvalBatch(x[i : i + step], y[i : i + step], s[i : i + step]) for i in range(0, len(x), step)]


def validation_batches(data: DataSpec, image_size: int, device: torch.device) -> list[EvalBatch]:
    """The held-out validation set: ``data.validation_size`` images disjoint from the search set."""
    return evaluation_batches(data, image_size, device, heldout=True)


def real_evaluation_set(
    data: DataSpec, image_size: int, count: int | None = None, skip: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``count`` (default ``data.n_eval``) samples of ``data.name`` under ``data.root``, after the
    first ``skip`` draws; a missing or empty tree is an input error."""
    from xaisearch.data.loading import open_dataset, seeded_sample

    try:
        dataset = open_dataset(
            data.name, data.root or "", image_size, data.split, data.classes, data.masks, data.preprocessing
        )
        x, y, s = seeded_sample(dataset, data.n_eval if count is None else count, data.seed, skip)
    except FileNotFoundError as error:
        raise InputError(f"data.root: {str(error).splitlines()[0]}") from None
    except (ValueError, OSError) as error:  # unknown class, wrong split, nothing to sample, unreadable image
        field = "data.n_validation" if skip else "data"
        raise InputError(f"{field}: {str(error).splitlines()[0]}") from None
    return x, y, s.unsqueeze(1).to(torch.uint8)


def build_suite(spec: StudySpec) -> MetricSuite:
    """The study's metrics with weights and directions, or its pinned suite (weight 1 each)."""
    if spec.suite is not None:
        return MetricSuite(suite_entries(spec.suite, image_size=spec.model.input_shape[-1]))
    return MetricSuite([WeightedMetric(make_metric(m.name, **m.params), m.weight, m.direction) for m in spec.metrics])


def refuse_non_finite_model(model: nn.Module, batch: EvalBatch, name: str) -> None:
    """Refuse a model with a NaN or infinite weight, or whose output on the first evaluation batch
    is not finite: every attribution of it would be NaN and every trial would fail the same way."""
    broken = [n for n, t in (*model.named_parameters(), *model.named_buffers()) if not torch.isfinite(t).all()]
    if broken:
        more = f" and {len(broken) - 3} more" if len(broken) > 3 else ""
        raise InputError(
            f"model {name}: {broken[:3]}{more} hold NaN or infinite values; check model.weights (or retrain the model)"
        )
    with torch.no_grad():
        output = model(batch.x)
    bad = int((~torch.isfinite(output.flatten(1))).any(dim=1).sum())
    if bad:
        finite_images = bool(torch.isfinite(batch.x).all())
        cause = "its weights are finite" if finite_images else "the images hold NaN or infinite values"
        raise InputError(
            f"model {name}: its output is NaN or infinite for {bad} of {len(output)} evaluation images ({cause}); "
            "check the data's preprocessing and the model's weights"
        )


@dataclass
class Workbench:
    spec: StudySpec
    device: torch.device
    model: nn.Module
    model_ref: ModelRef
    model_record: dict
    space: SearchSpace
    batches: list[EvalBatch]
    suite: MetricSuite
    _seed_reference: list[dict[str, float]] | None = None
    _heldout: list[EvalBatch] | None = None

    @classmethod
    def prepare(
        cls,
        spec: StudySpec,
        run_dir: Path,
        device: torch.device,
        on_train_step: Callable[[int, int, float], None] | None = None,
        allow_training: bool = True,
    ) -> Workbench:
        model, ref, record = obtain_model(spec.model, spec.data, run_dir, device, on_train_step, allow_training)
        try:
            canonizer = spec.canonizer or canonizer_name_for(model)
        except ValueError as error:
            raise InputError(f"canonizer: {error}") from None
        space = SearchSpace.build(spec, model, ref, canonizer)
        batches = evaluation_batches(spec.data, spec.model.input_shape[-1], device)
        refuse_non_finite_model(model, batches[0], spec.model.name)
        guard_study_canonizer(model, canonizer, batches[0].x, spec)
        return cls(spec, device, model, ref, record, space, batches, build_suite(spec))

    def heldout_batches(self) -> list[EvalBatch]:
        """The validation set on this workbench's device, read once (``validation_batches``)."""
        if self._heldout is None:
            self._heldout = validation_batches(self.spec.data, self.spec.model.input_shape[-1], self.device)
        return self._heldout

    def seed_reference(self) -> list[dict[str, float]]:
        """Metric means of every seed composite the space expresses, computed once per worker
        (the fixed reference of ``objective.normalisation: seed``)."""
        if self._seed_reference is None:
            from optuna.trial import FixedTrial

            from xaisearch.metrics.suite import summary

            reference = []
            for seed in self.spec.seeds:
                params, _ = self.space.seed_params(seed)
                if params is not None:
                    scores = self.score(self.space.sample(FixedTrial(params)))
                    reference.append({name: summary(values)[0] for name, values in scores.items()})
            if not reference:
                raise InputError("objective.normalisation: seed needs at least one seed composite in the search space")
            self._seed_reference = reference
        return self._seed_reference

    def objective_value(self, means: dict[str, float]) -> float:
        """The weighted objective, normalised as the study file asks."""
        from xaisearch.search.normalisation import weighted_objective

        if self.spec.objective.normalisation == "seed":
            return weighted_objective(means, self.suite.entries, "seed", self.seed_reference())
        return weighted_objective(means, self.suite.entries)

    def objective_metrics(self) -> list[str]:
        """Metrics that are objectives of their own (multi-objective studies)."""
        return list(self.spec.objective.metrics) or self.suite.names

    def directions(self) -> list[Literal["minimize", "maximize"]]:
        """Optuna directions: one ``maximize`` for the weighted objective, else one per metric."""
        if self.spec.objective.type == "weighted":
            return ["maximize"]
        by_name = {entry.metric.name: entry.effective_direction for entry in self.suite.entries}
        return ["maximize" if by_name[name] == "higher" else "minimize" for name in self.objective_metrics()]

    def explainer(self, config: ExplainerConfig) -> ModelExplainer:
        """``config``'s explainer on this model (LRP or a baseline method); randomisation metrics
        rebind it to randomised copies."""
        return config_explainer(config, self.model)

    def score(
        self, config: ExplainerConfig, on_batch: Callable[[int, dict[str, torch.Tensor]], None] | None = None
    ) -> dict[str, torch.Tensor]:
        """Per-sample scores of every metric of the suite for ``config``."""
        return self.suite.score(self.model, self.batches, self.explainer(config), on_batch)
