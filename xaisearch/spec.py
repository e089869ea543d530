"""Study files: the validated description of one search.

A study file (YAML) names the model, the data, the canonizer, the search space, the metrics of
the objective, the sampler, the trial budget and the seed. Every validation error becomes one
line that names the file and the offending field (``search_space.groups.low.rules[1]``) and
says what would be accepted.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal, cast, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from xaisearch.errors import InputError

Direction = Literal["higher", "lower"]
Normalisation = Literal["none", "seed"]  # see search.normalisation
RuleName = Literal["epsilon", "gamma", "zplus", "alpha_beta", "flat", "zbox", "pass"]
FirstLayerChoice = Literal["group", "zbox", "flat", "epsilon", "gamma", "zplus", "alpha_beta"]
SeedName = Literal[
    "epsilon_plus", "epsilon_plus_flat", "epsilon_alpha2_beta1", "epsilon_alpha2_beta1_flat", "epsilon_gamma_box"
]
SEED_COMPOSITES: tuple[str, ...] = get_args(SeedName)
FIRST_LAYER_GROUP = "group"  # first-layer choice meaning "no override: use the group's rule"


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


DatasetName = Literal["shapes", "voc", "imagenet"]
REAL_DATASETS = ("voc", "imagenet")
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

    @model_validator(mode="after")
    def _dataset_fields(self) -> DataSpec:
        real = self.name in REAL_DATASETS
        fields = type(self).model_fields
        stray = [f for f in (_SHAPES_ONLY if real else _REAL_ONLY) if getattr(self, f) != fields[f].default]
        if stray:
            raise ValueError(f"{stray[0]} does not apply to data {self.name!r}; remove it")
        if real and not self.root:
            holder = "VOCdevkit/" if self.name == "voc" else "ILSVRC/"
            raise ValueError(f"data {self.name!r} needs root: the folder that holds {holder}")
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
        if self.name == "imagenet" and (self.split == "trainval" or self.masks != fields["masks"].default):
            raise ValueError("data 'imagenet' takes split train or val and always uses its boxes; remove masks")
        return self

    def bounds(self) -> tuple[float | list[float], float | list[float]]:
        """``(input_low, input_high)``, filled in by validation (scalars or one value per channel)."""
        assert self.input_low is not None and self.input_high is not None  # set by the validator
        return self.input_low, self.input_high

    def default_bounds(self) -> tuple[float | list[float], float | list[float]]:
        """Input range: [0, 1] for shapes; per channel of the ImageNet normalisation for real data."""
        if self.name not in REAL_DATASETS:
            return 0.0, 1.0
        from xaisearch.data.preprocess import Geometry, input_bounds

        return input_bounds(Geometry())


class GroupSpace(_Strict):
    rules: list[RuleName] = Field(min_length=1)


class ParamRange(_Strict):
    low: float
    high: float
    log: bool = True

    @model_validator(mode="after")
    def _ordered(self) -> ParamRange:
        if not self.low < self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError(f"low must be > 0 on a log scale, got {self.low}")
        return self


def _default_ranges() -> dict[str, ParamRange]:
    return {
        "epsilon": ParamRange(low=1e-6, high=1.0),
        "gamma": ParamRange(low=1e-3, high=10.0),
        "alpha": ParamRange(low=1.0, high=3.0, log=False),
    }


class SearchSpaceSpec(_Strict):
    """Rule choices per layer group and the ranges of the rules' parameters.

    ``layer_groups: depth`` splits convolutions into ``low``/``mid``/``high`` by execution depth
    and puts dense layers in ``dense``; a mapping ``{group: [module names or patterns]}`` names
    them instead. ``first_layer`` lists rules for the first layer; ``group`` keeps its group's.
    """

    layer_groups: Literal["depth"] | dict[str, list[str]] = "depth"
    groups: dict[str, GroupSpace]
    first_layer: list[FirstLayerChoice] = Field(default_factory=lambda: [cast(FirstLayerChoice, FIRST_LAYER_GROUP)])
    ranges: dict[str, ParamRange] = Field(default_factory=_default_ranges)

    @field_validator("ranges")
    @classmethod
    def _known_params(cls, ranges: dict[str, ParamRange]) -> dict[str, ParamRange]:
        for name, bounds in ranges.items():
            if name not in ("epsilon", "gamma", "alpha"):
                raise ValueError(f"ranges.{name}: not a searchable parameter; use epsilon, gamma or alpha")
            if name == "epsilon" and bounds.low <= 0:
                raise ValueError(f"ranges.epsilon.low must be > 0, got {bounds.low}")
            if name == "gamma" and bounds.low < 0:
                raise ValueError(f"ranges.gamma.low must be >= 0, got {bounds.low}")
            if name == "alpha" and bounds.low < 1:
                raise ValueError(f"ranges.alpha.low must be >= 1 (beta = alpha - 1 >= 0), got {bounds.low}")
        return ranges

    @model_validator(mode="after")
    def _ranges_cover_rules(self) -> SearchSpaceSpec:
        needs = {"epsilon": "epsilon", "gamma": "gamma", "alpha_beta": "alpha"}
        used = {rule for group in self.groups.values() for rule in group.rules} | set(self.first_layer)
        for rule, param in needs.items():
            if rule in used and param not in self.ranges:
                raise ValueError(f"rule {rule!r} is searched but ranges.{param} is missing")
        return self


class MetricSpec(_Strict):
    name: str
    weight: float = Field(1.0, ge=0)
    direction: Direction | None = None  # default: the metric's own
    params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _known_metric(self) -> MetricSpec:
        from xaisearch.metrics.registry import make_metric

        make_metric(self.name, **self.params)
        return self


class SamplerSpec(_Strict):
    name: Literal["tpe", "random", "grid", "nsga2"] = "tpe"
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


class StudySpec(_Strict):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
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

    @field_validator("canonizer")
    @classmethod
    def _known_canonizer(cls, name: str | None) -> str | None:
        from xaisearch.canonize.registry import available

        if name is not None and name not in available():
            raise ValueError(f"unknown canonizer {name!r}; choose from {available()} or leave it out")
        return name

    @model_validator(mode="after")
    def _weights_positive(self) -> StudySpec:
        if bool(self.metrics) == bool(self.suite):
            raise ValueError("give either 'metrics' (a list with weights) or 'suite' (fast or paper), not both or none")
        if self.metrics and not any(metric.weight > 0 for metric in self.metrics):
            raise ValueError("metrics: at least one metric needs a weight > 0")
        channels = self.model.input_shape[0]
        if isinstance(self.data.input_low, list) and len(self.data.input_low) != channels:
            raise ValueError(
                f"data.input_low/input_high: {len(self.data.input_low)} values for {channels} input channels"
            )
        if self.data.name in REAL_DATASETS and channels != 3:
            raise ValueError(
                f"model.input_shape: data {self.data.name!r} has RGB images, so 3 channels, not {channels}"
            )
        names = self.metric_names()
        for index, name in enumerate(self.objective.metrics):
            if name not in names:
                raise ValueError(f"objective.metrics[{index}]: {name!r} is not in this study's metrics {names}")
        return self

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
        if self.data.name not in REAL_DATASETS:
            for key in _REAL_ONLY:
                data["data"].pop(key)
        return data

    def content_hash(self) -> str:
        """Hash of everything that defines the search (not the budget, which may grow)."""
        data = {k: v for k, v in self.stored_form().items() if k not in ("n_trials", "device")}
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def _location(loc: tuple[Any, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts[-1:] = [f"{parts[-1]}[{item}]"] if parts else [f"[{item}]"]
        elif item not in ("function-after", "function-before") and not str(item).startswith(("literal[", "function")):
            parts.append(str(item))
    return ".".join(parts)


def one_line_error(source: str, error: ValidationError) -> str:
    """The first validation error as ``source: field 'a.b[1]': message``."""
    first = error.errors()[0]
    field = _location(tuple(first["loc"]))
    message = str(first["msg"]).removeprefix("Value error, ").replace("Input should be", "should be")
    if first["type"] == "missing":
        message = "is required but missing"
    elif first["type"] == "extra_forbidden":
        message = "is not a known field (check its spelling)"
    else:
        message = f"{message} (got {first.get('input')!r})" if first["type"] != "value_error" else message
    where = f"field '{field}'" if field else "top level"
    extra = f" (and {len(error.errors()) - 1} more problems)" if len(error.errors()) > 1 else ""
    return f"{source}: {where}: {message}{extra}".replace("\n", " ")


def parse_spec(data: Any, source: str = "study") -> StudySpec:
    if not isinstance(data, dict):
        raise InputError(f"{source}: expected a mapping of study fields at the top level, got {type(data).__name__}")
    try:
        return StudySpec.model_validate(data)
    except ValidationError as error:
        raise InputError(one_line_error(source, error)) from None


def load_spec(path: str | Path) -> StudySpec:
    """Read and validate a study file; every problem is an ``InputError`` naming the file and field."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: study file not found; pass the path of a YAML study file such as studies/demo.yaml")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise InputError(f"{path}: not valid YAML{where}: {getattr(error, 'problem', error)}") from None
    return parse_spec(data, str(path))
