"""Verify a canonizer on a model given by name: what ``xaisearch canonize`` and ``bench/canonize.py`` run.

Random weights unless a weights file is given (or, for ``timm/<name>``, ``pretrained``: timm's
weights from the local cache); with random weights the BN statistics and affine parameters are
randomised too (trained-looking statistics can hide a wrong fold, §9). ``canonize_named_model``
adds the canonizer guard (``guard.py``) that a search runs before its first trial.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from xaisearch.canonize.guard import GuardResult, check_function_kept
from xaisearch.canonize.verify import VerificationReport, randomize_batchnorm, verify_canonizer
from xaisearch.errors import InputError
from xaisearch.models.relation_network import CLEVR_ANSWERS, RelationNetwork


def build_named_model(name: str, weights: Path | None = None, input_size: int = 64) -> nn.Module:
    """``name`` (any model of ``models.zoo.available()``, or ``timm/<name>``) in eval mode, weights
    loaded if given.

    The random architecture first runs one ``input_size``² image, so a size the model cannot take
    is one line naming the smallest that works, before any weights are read. A Relation Network
    answers a fixed, seeded question: the image is its only attributed input."""
    from xaisearch.models import timm_models, zoo
    from xaisearch.models.ref import ModelRef

    zoo.check_model_name(name, field="model")
    if input_size < 1:
        raise InputError(f"--input-size {input_size}: give the side of the square input in pixels, e.g. 64")
    if weights is not None and str(weights) == timm_models.PRETRAINED and timm_models.timm_name(name) is not None:
        _input_size_checked(name, input_size)
        ref = ModelRef(name=name, num_classes=_num_classes(name), input_shape=(3, input_size, input_size))
        return timm_models.timm_pretrained(ref, field="--weights").eval()
    if weights is not None and not Path(weights).is_file():
        what = "is a folder; give the checkpoint file in it" if Path(weights).is_dir() else "no such file"
        raise InputError(f"--weights: {str(weights)!r} {what}")
    model = _input_size_checked(name, input_size)
    if weights is not None:
        classes = _num_classes(name)
        sizes = f"xaisearch canonize builds {name} with {classes} classes for --input-size {input_size}"
        zoo.load_weights(model, Path(weights), name, field="--weights", sizes=sizes)
    return model


def _num_classes(name: str) -> int:
    """1000 (ImageNet) for torchvision and timm models; 4 for the mini models, CLEVR's answers for RNs."""
    from xaisearch.models import zoo

    return 4 if name in zoo.MINI_MODELS else CLEVR_ANSWERS if name in zoo.RELATION_NETWORKS else 1000


def _random_model(name: str, input_size: int) -> nn.Module:
    """The architecture with random weights, in eval mode; a Relation Network with its question set."""
    from xaisearch.models import zoo
    from xaisearch.models.ref import ModelRef

    ref = ModelRef(name=name, num_classes=_num_classes(name), input_shape=(3, input_size, input_size))
    model = zoo.build_architecture(ref)
    if isinstance(model, RelationNetwork):
        vocabulary = model.question.embedding.num_embeddings
        tokens = torch.randint(1, vocabulary, (1, 6), generator=torch.Generator().manual_seed(0))
        model.set_question(tokens, torch.tensor([6]))
    return model.eval()


def _input_size_checked(name: str, input_size: int, largest: int = 1024) -> nn.Module:
    """The random model of ``name`` once it has run an ``input_size``² image; else one line naming
    the smallest side (up to ``largest``) that runs, found by doubling and bisection."""
    from xaisearch.models import zoo

    model: nn.Module | None = None

    def problem(size: int) -> str | None:
        nonlocal model
        try:  # mini models size their head to the input: rebuilt per size; the others are built once
            if model is None or name in zoo.MINI_MODELS:
                model = _random_model(name, size)
            with torch.no_grad():
                model(torch.zeros(1, 3, size, size))
        except (RuntimeError, ValueError) as error:
            return (str(error).strip().splitlines() or [type(error).__name__])[0]
        return None

    failure = problem(input_size)
    if failure is None and model is not None:
        return model
    low, high = input_size, input_size * 2
    while high <= largest and problem(high) is not None:
        low, high = high, high * 2
    if high > largest:
        raise InputError(f"--input-size {input_size}: {name} cannot take {input_size}×{input_size} inputs ({failure})")
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if problem(middle) is not None else (low, middle)
    raise InputError(
        f"--input-size {input_size}: {name} cannot take {input_size}×{input_size} inputs ({failure}); "
        f"the smallest that works is {high}"
    )


def check_named_model(
    name: str,
    canonizer: str | None = None,
    weights: Path | None = None,
    input_size: int = 64,
    dtype: Literal["float32", "float64"] = "float32",
    batch_size: int = 2,
    relevance: bool = False,
    atomicity: bool = False,
) -> VerificationReport:
    """Build ``name`` and run ``verify_canonizer`` with the named (or the registered) canonizer."""
    _check_canonizer_name(canonizer)
    model = build_named_model(name, weights, input_size)
    return _verified(model, canonizer, input_size, weights is None, dtype, batch_size, relevance, atomicity)


def _check_canonizer_name(canonizer: str | None) -> None:
    from xaisearch.canonize.registry import available

    if canonizer is not None and canonizer not in available():
        raise InputError(f"--canonizer: unknown canonizer {canonizer!r}; choose from {available()}")


def _verified(
    model: nn.Module,
    canonizer: str | None,
    input_size: int,
    random_weights: bool,
    dtype: Literal["float32", "float64"] = "float32",
    batch_size: int = 2,
    relevance: bool = False,
    atomicity: bool = False,
) -> VerificationReport:
    from xaisearch.canonize.auto import UntraceableModelError
    from xaisearch.canonize.registry import get_canonizer

    try:
        return verify_canonizer(
            model,
            get_canonizer(canonizer, model),
            (3, input_size, input_size),
            dtype=getattr(torch, dtype),
            batch_size=batch_size,
            randomize_bn=random_weights,
            relevance=relevance,
            atomicity=atomicity,
        )
    except UntraceableModelError as error:
        raise InputError(f"--canonizer: {error}") from None


@dataclass
class CanonizeOutcome:
    """What ``xaisearch canonize`` reports: the float32 verification, the float64 checks (``--check``),
    the guard's verdict, and the canonizers to suggest if the guard refuses."""

    report: VerificationReport
    checked: VerificationReport | None
    guard: GuardResult
    alternatives: tuple[str, ...]


def canonize_named_model(
    name: str,
    canonizer: str | None = None,
    weights: Path | None = None,
    input_size: int = 64,
    check: bool = False,
    relevance: bool = True,
    atomicity: bool = True,
) -> CanonizeOutcome:
    """Build ``name`` once; verify the named (or registered) canonizer in float32 (and, with
    ``check``, in float64 with the ``relevance`` and ``atomicity`` checks); then run the guard on
    two seeded random images (BN statistics randomised when the weights are random)."""
    from xaisearch.canonize.registry import canonizer_name_for, get_canonizer

    _check_canonizer_name(canonizer)
    model = build_named_model(name, weights, input_size)
    random_weights = weights is None
    report = _verified(model, canonizer, input_size, random_weights)
    checked = None
    if check:
        checked = _verified(model, canonizer, input_size, random_weights, "float64", 2, relevance, atomicity)
    generator = torch.Generator().manual_seed(0)
    if random_weights:
        randomize_batchnorm(model, generator)  # as verify's copy: the same statistics and images
    images = torch.randn(2, 3, input_size, input_size, generator=generator)
    try:
        guard = check_function_kept(model, get_canonizer(canonizer, model), images)
    except ValueError as error:  # verify planned it already; a plan may still fail on the model itself
        raise InputError(f"--canonizer: {str(error).splitlines()[0]}") from None
    return CanonizeOutcome(report, checked, guard, (canonizer_name_for(model), "auto"))
