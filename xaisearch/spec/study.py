"""Study files: the validated description of one search.

A study file (YAML) names the model, the data, the canonizer, the search space, the metrics of
the objective, the sampler, the trial budget and the seed. Every validation error becomes one
line that names the file and the offending field (``search_space.groups.low.rules[1]``) and
says what would be accepted.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Annotated, Any, Literal, cast, get_args

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from xaisearch.canonize.catalog import CANONIZERS
from xaisearch.data.catalog import DATASETS, DatasetEntry
from xaisearch.explain.rules import RULES, first_layer_rules, searched_params, unknown_rule
from xaisearch.metrics.catalog import METRICS, Direction
from xaisearch.spec import methods
from xaisearch.spec.samplers import SAMPLERS, SINGLE_OBJECTIVE_ONLY

Normalisation = Literal["none", "seed"]  # see search.normalisation
SeedName = Literal[
    "epsilon_plus", "epsilon_plus_flat", "epsilon_alpha2_beta1", "epsilon_alpha2_beta1_flat", "epsilon_gamma_box"
]
SEED_COMPOSITES: tuple[str, ...] = get_args(SeedName)
MAX_EVALUATION_BYTES = 16 * 2**30  # evaluation images and masks, held by every worker
FIRST_LAYER_GROUP = "group"  # first-layer choice meaning "no override: use the group's rule"


def _known_rule(name: str) -> str:
    if name not in RULES:
        raise ValueError(unknown_rule(name))
    return name


def _first_layer_choice(name: str) -> str:
    choices = [FIRST_LAYER_GROUP, *first_layer_rules()]
    if name not in choices:
        raise ValueError(f"{name!r} is not a first-layer rule; choose one of {choices}")
    return name


RuleName = Annotated[str, AfterValidator(_known_rule)]  # a name in ``explain.rules.RULES``
FirstLayerChoice = Annotated[str, AfterValidator(_first_layer_choice)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TrainingSpec(_Strict):
    """How the package trains the model when no weights file is given (seeded, cached)."""

    n_train: int = Field(6000, gt=0)
    n_test: int = Field(1000, gt=0)
    epochs: int = Field(6, gt=0)
    batch_size: int = Field(32, gt=0)
    learning_rate: float = Field(1e-3, gt=0)
    seed: int = 0
    min_accuracy: float = Field(0.8, ge=0, le=1)


class ModelSpec(_Strict):
    name: str = "mini_vgg"
    num_classes: int = Field(4, gt=0)
    input_shape: tuple[int, int, int] = (3, 48, 48)
    weights: str | None = None
    training: TrainingSpec = Field(default_factory=TrainingSpec)


def _known_dataset(name: str) -> str:
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {DATASETS.available()}")
    return name


DatasetName = Annotated[str, AfterValidator(_known_dataset)]  # a name in ``data.catalog.DATASETS``
_SHAPES_ONLY = ("ground_truth",)
_REAL_ONLY = ("root", "split", "classes", "masks", "preprocessing")


class DataSpec(_Strict):
    """The evaluation data: the synthetic shapes (default, offline) or a real dataset on disk.

    ``voc`` (Pascal VOC: one sample per image and class, segmentation or box masks) and
    ``imagenet`` (ILSVRC CLS-LOC with boxes) read ``root``, the folder that holds ``VOCdevkit/``
    or ``ILSVRC/`` (``$VARIABLES`` and ``~`` are expanded). Their inputs are ImageNet-normalised,
    so the first layer's z^B bounds default to the per-channel range of that normalisation.
    """

    name: DatasetName = "shapes"
    n_eval: int = Field(64, gt=0)
    # held-out images that re-score the best trials when the search ends; None: as many as n_eval
    n_validation: int | None = Field(None, gt=0)
    seed: int = 1
    ground_truth: Literal["target", "all_objects"] = "target"
    batch_size: int = Field(64, gt=0)
    root: str | None = None
    split: Literal["train", "val", "trainval"] = "val"  # trainval: VOC only
    classes: list[str] | None = Field(None, min_length=1)
    masks: Literal["segmentation", "boxes"] = "segmentation"  # voc; imagenet masks are always its boxes
    preprocessing: Literal["resize", "resize_crop"] = "resize"
    input_low: float | list[float] | None = None
    input_high: float | list[float] | None = None

    @property
    def validation_size(self) -> int:
        """How many held-out images re-score the winners (``n_validation``, default ``n_eval``)."""
        return self.n_validation if self.n_validation is not None else self.n_eval

    @property
    def entry(self) -> DatasetEntry:
        return DATASETS.get(self.name)

    @property
    def real(self) -> bool:
        """Read from disk (``root``), not generated."""
        return self.entry.real

    @model_validator(mode="after")
    def _dataset_fields(self) -> DataSpec:
        entry, fields = self.entry, type(self).model_fields
        stray = [f for f in (_SHAPES_ONLY if entry.real else _REAL_ONLY) if getattr(self, f) != fields[f].default]
        if stray:
            raise ValueError(f"{stray[0]} does not apply to data {self.name!r}; remove it")
        if entry.real and not self.root:
            raise ValueError(f"data {self.name!r} needs root: the folder that holds {entry.holder}")
        if self.input_low is None or self.input_high is None:
            low, high = self.default_bounds()
            self.input_low = low if self.input_low is None else self.input_low
            self.input_high = high if self.input_high is None else self.input_high
        if isinstance(self.input_low, list) != isinstance(self.input_high, list):
            raise ValueError("input_low and input_high must both be numbers or both be lists (one value per channel)")
        lows, highs = (v if isinstance(v, list) else [v] for v in (self.input_low, self.input_high))
        if not lows or len(lows) != len(highs):
            raise ValueError("input_low and input_high need the same number of values, one per channel")
        if not all(lo < hi for lo, hi in zip(lows, highs, strict=True)):
            raise ValueError("input_low must be below input_high")
        if entry.real and self.split not in entry.splits:
            raise ValueError(f"data {self.name!r} has no split {self.split!r}; choose one of {list(entry.splits)}")
        if entry.real and not entry.masks and self.masks != fields["masks"].default:
            raise ValueError(f"data {self.name!r} {entry.fixed_masks}; remove masks")
        return self

    def bounds(self) -> tuple[float | list[float], float | list[float]]:
        """``(input_low, input_high)``, filled in by validation (scalars or one value per channel)."""
        assert self.input_low is not None and self.input_high is not None  # set by the validator
        return self.input_low, self.input_high

    def default_bounds(self) -> tuple[float | list[float], float | list[float]]:
        """Input range: [0, 1] for shapes; per channel of the ImageNet normalisation for real data."""
        if not self.real:
            return 0.0, 1.0
        from xaisearch.data.preprocess import Geometry, input_bounds

        return input_bounds(Geometry())


class GroupSpace(_Strict):
    rules: list[RuleName] = Field(min_length=1)


class ParamRange(_Strict):
    low: float
    high: float
    log: bool = True
    # also offer exactly 0 (a trial first picks '<group>.<param>.zero'); left out of the stored form when false
    zero: bool = Field(False, exclude_if=lambda zero: not zero)

    @model_validator(mode="after")
    def _ordered(self) -> ParamRange:
        if not self.low < self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError(f"low must be > 0 on a log scale, got {self.low}")
        return self


def _default_ranges() -> dict[str, ParamRange]:
    """Every searchable rule parameter over its range in ``explain.rules.RULES``."""
    return {
        name: ParamRange(low=param.search.low, high=param.search.high, log=param.search.log)
        for name, param in searched_params().items()
        if param.search is not None
    }


class SearchSpaceSpec(_Strict):
    """Rule choices per layer group and the ranges of the rules' parameters.

    ``layer_groups: depth`` splits convolutions into ``low``/``mid``/``high`` by execution depth
    and puts dense layers in ``dense``; a mapping ``{group: [module names or patterns]}`` names
    them instead. ``first_layer`` lists rules for the first layer; ``group`` keeps its group's.
    ``ranges.gamma.zero: true`` offers gamma = 0 (LRP-0) beside the log-scale range [low, high].
    ``method`` (default ``lrp``) and ``method_params`` search a baseline method instead (``spec.methods``).
    """

    method: methods.MethodName = Field("lrp", exclude_if=lambda method: method == "lrp")
    layer_groups: Literal["depth"] | dict[str, list[str]] = "depth"
    groups: dict[str, GroupSpace] = Field(default_factory=dict)  # required for LRP (``methods.check_lrp_fields``)
    first_layer: list[FirstLayerChoice] = Field(default_factory=lambda: [cast(FirstLayerChoice, FIRST_LAYER_GROUP)])
    ranges: dict[str, ParamRange] = Field(default_factory=_default_ranges)
    method_params: dict[str, Any] = Field(default_factory=dict, validate_default=True, exclude_if=lambda p: not p)

    _method_space = field_validator("method_params")(methods.method_space)

    @field_validator("ranges")
    @classmethod
    def _known_params(cls, ranges: dict[str, ParamRange]) -> dict[str, ParamRange]:
        searchable = searched_params()
        for name, bounds in ranges.items():
            if name not in searchable:
                raise ValueError(f"ranges.{name}: not a searchable parameter; use one of {list(searchable)}")
            problem = searchable[name].problem(bounds.low)
            if problem is not None:
                raise ValueError(f"ranges.{name}.low: {problem}")
            if bounds.zero and (problem := searchable[name].problem(0.0)) is not None:
                raise ValueError(f"ranges.{name}.zero: {problem}, so 0 cannot be offered; remove zero")
        return ranges

    @model_validator(mode="after")
    def _ranges_cover_rules(self) -> SearchSpaceSpec:
        methods.check_lrp_fields(self)
        used = {rule for group in self.groups.values() for rule in group.rules} | set(self.first_layer)
        for rule in sorted(used & set(RULES)):
            for param in RULES[rule].searched():
                if param.name not in self.ranges:
                    raise ValueError(f"rule {rule!r} is searched but ranges.{param.name} is missing")
        return self


class MetricSpec(_Strict):
    name: str
    weight: float = Field(1.0, ge=0)
    direction: Direction | None = None  # default: the metric's own
    params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _known_metric(self) -> MetricSpec:
        if self.name not in METRICS:
            raise ValueError(f"unknown metric {self.name!r}; available: {METRICS.available()}")
        return self  # its params are checked by ``check_with_implementations`` (they need torch)


def _known_sampler(name: str) -> str:
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; choose one of {SAMPLERS.available()}")
    return name


class SamplerSpec(_Strict):
    name: Annotated[str, AfterValidator(_known_sampler)] = "tpe"
    grid: dict[str, list[Any]] = Field(default_factory=dict)


class ObjectiveSpec(_Strict):
    """``weighted``: one scalar (maximised), optionally pruned per evaluation batch (Wilcoxon).
    ``multi``: one objective per metric in ``metrics`` (default: all), a Pareto front, no pruning."""

    type: Literal["weighted", "multi"] = "weighted"
    pruner: Literal["none", "wilcoxon"] = "none"
    metrics: list[str] = Field(default_factory=list)
    # "seed": each metric as a z-score against the seed composites, evaluated once per worker, so
    # metrics of different units (the paper suite) add up and every trial is scored alike
    normalisation: Normalisation = "none"

    @model_validator(mode="after")
    def _pruning_is_scalar(self) -> ObjectiveSpec:
        if self.type == "multi" and self.pruner != "none":
            raise ValueError("pruning needs the weighted objective; Optuna cannot prune multi-objective trials")
        return self


class ValidationSpec(_Strict):
    """How the winner is proven on held-out images (``search.validation``) when the search ends.

    ``top_k`` trials (best on the search set), the best seed composite and plain gradient are
    re-scored on ``data.n_validation`` images the search never saw; the best there wins.
    ``test``: the paired test over images of the winner against the runner-up and the best seed
    (``wilcoxon`` signed-rank, or a paired ``bootstrap`` of the mean difference); differences with
    p >= ``alpha`` are reported as not distinguishable. ``stability``: re-rank the candidates under
    the documented metric-setting perturbations (``metrics.settings.PERTURBATIONS``).
    """

    top_k: int = Field(5, ge=1, le=50)
    test: Literal["wilcoxon", "bootstrap"] = "wilcoxon"
    alpha: float = Field(0.05, gt=0, lt=1)
    stability: bool = True


class StudySpec(_Strict):
    name: str
    n_trials: int = Field(gt=0)
    seed: int = 0
    device: str = "auto"
    model: ModelSpec
    data: DataSpec = Field(default_factory=DataSpec)
    canonizer: str | None = None  # None: the one registered for the model's type
    search_space: SearchSpaceSpec
    suite: Literal["fast", "paper"] | None = None  # a pinned suite (weight 1 each) instead of `metrics`
    metrics: list[MetricSpec] = Field(default_factory=list)
    sampler: SamplerSpec = Field(default_factory=SamplerSpec)
    objective: ObjectiveSpec = Field(default_factory=ObjectiveSpec)
    n_heatmaps: int = Field(4, ge=0, le=64)  # heatmap artifacts per trial (fixed evaluation images)
    seeds: list[SeedName] = Field(default_factory=lambda: cast(list[SeedName], list(SEED_COMPOSITES)))
    validation: ValidationSpec = Field(default_factory=ValidationSpec)

    @field_validator("name")
    @classmethod
    def _folder_name(cls, name: str) -> str:
        """The name is the run folder's (``runs/<name>``): '..' or 'a/b' would write elsewhere."""
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
            raise ValueError(
                f"{name!r} cannot name a run folder; use letters, digits, '_', '.' and '-', starting with a letter "
                "or digit"
            )
        return name

    @field_validator("canonizer")
    @classmethod
    def _known_canonizer(cls, name: str | None) -> str | None:
        if name is not None and name not in CANONIZERS:
            raise ValueError(f"unknown canonizer {name!r}; choose from {CANONIZERS.available()} or leave it out")
        return name

    @model_validator(mode="after")
    def _weights_positive(self) -> StudySpec:
        methods.baseline_seeds(self)
        if bool(self.metrics) == bool(self.suite):
            raise ValueError("give either 'metrics' (a list with weights) or 'suite' (fast or paper), not both or none")
        if self.metrics and not any(metric.weight > 0 for metric in self.metrics):
            raise ValueError("metrics: at least one metric needs a weight > 0")
        self._evaluation_fits_in_memory()
        channels = self.model.input_shape[0]
        if isinstance(self.data.input_low, list) and len(self.data.input_low) != channels:
            raise ValueError(
                f"data.input_low/input_high: {len(self.data.input_low)} values for {channels} input channels"
            )
        if channels != 3:  # every dataset of the catalog has RGB images
            raise ValueError(
                f"model.input_shape: data {self.data.name!r} has RGB images, so 3 channels, not {channels}"
            )
        height, width = self.model.input_shape[1:]
        if not self.data.real and height != width:
            raise ValueError(f"model.input_shape: the shapes images are square; give equal sides, not {height}x{width}")
        labels = self.data.entry.labels
        if labels is not None and self.model.num_classes < labels:
            raise ValueError(
                f"model.num_classes: {self.model.num_classes} outputs, but data {self.data.name!r} has "
                f"{labels} labels; give num_classes: {labels} (or more)"
            )
        if self.objective.type == "multi" and self.sampler.name in SINGLE_OBJECTIVE_ONLY:
            raise ValueError(
                f"sampler.name: {self.sampler.name} optimises one objective; use objective.type: weighted, "
                "or a multi-objective sampler (tpe, nsga2, gp)"
            )
        names = self.metric_names()
        for index, name in enumerate(self.objective.metrics):
            if name not in names:
                raise ValueError(f"objective.metrics[{index}]: {name!r} is not in this study's metrics {names}")
        return self

    def _evaluation_fits_in_memory(self) -> None:
        """The evaluation images are held as one float32 tensor (plus a mask each) on every worker."""
        channels, height, width = self.model.input_shape
        per_image = height * width * (channels * 4 + 1)
        for field, count in (("n_eval", self.data.n_eval), ("n_validation", self.data.validation_size)):
            needed = count * per_image
            if needed > MAX_EVALUATION_BYTES:
                raise ValueError(
                    f"data.{field}: {count} images of {channels}x{height}x{width} need about "
                    f"{needed / 2**30:,.0f} GiB of memory on every worker; "
                    f"use at most {MAX_EVALUATION_BYTES // per_image}"
                )

    def metric_names(self) -> list[str]:
        """Names of the objective's metrics, from ``metrics`` or from the pinned ``suite``."""
        if self.metrics:
            return [metric.name for metric in self.metrics]
        from xaisearch.metrics.suite import suite_entries

        assert self.suite is not None  # the validator requires metrics or a suite
        return [entry.metric.name for entry in suite_entries(self.suite, image_size=self.model.input_shape[-1])]

    def stored_form(self) -> dict[str, Any]:
        """The spec as JSON data, without the real-data fields of a shapes study: studies made before
        real datasets keep their hash, and workers of that version can still read new shapes studies."""
        data = self.model_dump(mode="json")
        if not self.data.real:
            for key in _REAL_ONLY:
                data["data"].pop(key)
        # validation settings at their defaults are left out too: studies made before them keep their form
        if self.data.n_validation is None:
            data["data"].pop("n_validation")
        if self.validation == ValidationSpec():
            data.pop("validation")
        return data

    def content_hash(self) -> str:
        """Hash of everything that defines the search: not the budget (it may grow), nor how the
        winner is validated afterwards (changing that re-scores, it does not void the trials)."""
        data = {k: v for k, v in self.stored_form().items() if k not in ("n_trials", "device", "validation")}
        data["data"] = {k: v for k, v in data["data"].items() if k != "n_validation"}
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]
