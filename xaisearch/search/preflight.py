"""What can be checked before a model is trained or a file is written, and is.

A study file can be valid field by field and still not fit together: a canonizer made for
another architecture or one that changes the model's function, an input too small for the
model, a layer group the model does not have, a grid sampler over a continuous range. Each of
these used to surface after the model was trained (minutes) and a run folder and an empty
journal were written. ``preflight`` builds the untrained architecture (milliseconds for the
models we train) and tries each of them on it. For a model the package trains, that includes
the canonizer guard (``canonize.guard``, random BatchNorm statistics and images), which
``Workbench.prepare`` runs on every model, trained or loaded, with the study's own images; for a
model with weights preflight skips it, since the guard costs two float64 forwards (seconds for
the large zoo models on a CPU) and ``prepare`` runs it before any trial anyway.
"""

from __future__ import annotations

import torch
from torch import nn

from xaisearch.canonize.guard import GuardResult, guard_canonizer
from xaisearch.canonize.registry import canonizer_name_for, get_canonizer
from xaisearch.canonize.verify import randomize_batchnorm
from xaisearch.errors import InputError
from xaisearch.models.ref import ModelRef
from xaisearch.models.zoo import build_architecture, check_model_name
from xaisearch.search.space import SearchSpace
from xaisearch.spec import GRID_SAMPLER, StudySpec


def preflight(spec: StudySpec) -> SearchSpace:
    """Build the architecture, run it once, plan its canonizer and build the search space; every
    misfit is an ``InputError`` naming the field. Returns the space (of the untrained model)."""
    ref = ModelRef(name=spec.model.name, num_classes=spec.model.num_classes, input_shape=spec.model.input_shape)
    check_model_name(spec.model.name)
    try:
        model = build_architecture(ref).eval()
    except ValueError as error:
        raise InputError(
            f"model: {spec.model.name} cannot be built for input_shape {list(ref.input_shape)} and "
            f"num_classes {ref.num_classes} ({str(error).splitlines()[0]})"
        ) from None
    _runs_on_its_input(model, spec)
    canonizer = _canonizer_that_fits(model, spec)
    if spec.model.weights is None:  # the package trains it: refuse a canonizer that changes it before that
        generator = torch.Generator().manual_seed(spec.seed)
        randomize_batchnorm(model, generator)  # trained-looking statistics can hide a wrong fold
        guard_study_canonizer(model, canonizer, torch.randn(2, *spec.model.input_shape, generator=generator), spec)
    space = SearchSpace.build(spec, model, ref, canonizer)
    if spec.sampler.name == GRID_SAMPLER:
        space.grid()
    return space


def _runs_on_its_input(model: nn.Module, spec: StudySpec) -> None:
    shape = tuple(spec.model.input_shape)
    try:
        with torch.no_grad():
            output = model(torch.zeros(1, *shape))
    except RuntimeError as error:
        first = str(error).splitlines()[0]
        raise InputError(
            f"model.input_shape: {spec.model.name} cannot take inputs of shape {list(shape)} ({first}); "
            "give the shape the model was made for, such as [3, 224, 224]"
        ) from None
    if output.shape[-1] != spec.model.num_classes:
        raise InputError(
            f"model.num_classes: {spec.model.name} gives {output.shape[-1]} outputs, not {spec.model.num_classes}"
        )


def _canonizer_that_fits(model: nn.Module, spec: StudySpec) -> str:
    registered = canonizer_name_for(model)
    name = spec.canonizer or registered
    try:
        get_canonizer(name).plan(model)
    except ValueError as error:
        hint = f"leave canonizer out (this model's is {registered!r})" if name != registered else "use canonizer: none"
        raise InputError(f"canonizer: {str(error).splitlines()[0]}; {hint}") from None
    return name


def guard_study_canonizer(model: nn.Module, canonizer: str, images: torch.Tensor, spec: StudySpec) -> GuardResult:
    """The canonizer guard for a study: ``canonizer`` must keep ``model``'s function on ``images``
    and restore it exactly, or one line names the first module that differs and the canonizers to
    try instead (the one registered for the model's type, ``auto``, ``none``)."""
    return guard_canonizer(
        model,
        get_canonizer(canonizer),
        images,
        model_name=spec.model.name,
        field="canonizer",
        alternatives=(canonizer_name_for(model), "auto"),
    )
