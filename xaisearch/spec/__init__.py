"""Study files: the validated description of one search (``study``), how a file is read
(``loading``), and the samplers a study may name (``samplers``). Importable without torch."""

from xaisearch.spec.loading import check_with_implementations, load_spec, one_line_error, parse_spec
from xaisearch.spec.samplers import GRID_SAMPLER, SAMPLERS
from xaisearch.spec.study import (
    FIRST_LAYER_GROUP,
    SEED_COMPOSITES,
    DataSpec,
    MetricSpec,
    ModelSpec,
    Normalisation,
    ObjectiveSpec,
    ParamRange,
    SamplerSpec,
    SearchSpaceSpec,
    StudySpec,
    TrainingSpec,
    ValidationSpec,
)

__all__ = [
    "FIRST_LAYER_GROUP",
    "GRID_SAMPLER",
    "SAMPLERS",
    "SEED_COMPOSITES",
    "DataSpec",
    "MetricSpec",
    "ModelSpec",
    "Normalisation",
    "ObjectiveSpec",
    "ParamRange",
    "SamplerSpec",
    "SearchSpaceSpec",
    "StudySpec",
    "TrainingSpec",
    "ValidationSpec",
    "check_with_implementations",
    "load_spec",
    "one_line_error",
    "parse_spec",
]
