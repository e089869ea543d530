"""Verify a canonizer on a model given by name: what ``xaisearch canonize`` and ``bench/canonize.py`` run.

Random weights unless a weights file is given; with random weights the BN statistics and
affine parameters are randomised too (trained-looking statistics can hide a wrong fold, §9).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
from torch import nn

from xaisearch.canonize.verify import VerificationReport, verify_canonizer
from xaisearch.errors import InputError
from xaisearch.models.relation_network import CLEVR_ANSWERS, RelationNetwork


def build_named_model(name: str, weights: Path | None = None, input_size: int = 64) -> nn.Module:
    """``name`` (any model of ``models.zoo.available()``) in eval mode, weights loaded if given.

    The random architecture first runs one ``input_size``² image, so a size the model cannot take
    is one line naming the smallest that works, before any weights are read. A Relation Network
    answers a fixed, seeded question: the image is its only attributed input."""
    from xaisearch.models import zoo

    known = zoo.available()
    if name not in known:
        close = [n for n in known if n.startswith(name[:4])][:8]
        raise InputError(f"model: unknown model {name!r}; use a torchvision builder such as {close or known[:8]}")
    if weights is not None and not Path(weights).is_file():
        what = "is a folder; give the checkpoint file in it" if Path(weights).is_dir() else "no such file"
        raise InputError(f"--weights: {str(weights)!r} {what}")
    if input_size < 1:
        raise InputError(f"--input-size {input_size}: give the side of the square input in pixels, e.g. 64")
    model = _input_size_checked(name, input_size)
    if weights is not None:
        classes = _num_classes(name)
        sizes = f"xaisearch canonize builds {name} with {classes} classes for --input-size {input_size}"
        zoo.load_weights(model, Path(weights), name, field="--weights", sizes=sizes)
    return model


def _num_classes(name: str) -> int:
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
    from xaisearch.canonize.auto import UntraceableModelError
    from xaisearch.canonize.registry import available, get_canonizer

    if canonizer is not None and canonizer not in available():
        raise InputError(f"--canonizer: unknown canonizer {canonizer!r}; choose from {available()}")
    model = build_named_model(name, weights, input_size)
    try:
        return verify_canonizer(
            model,
            get_canonizer(canonizer, model),
            (3, input_size, input_size),
            dtype=getattr(torch, dtype),
            batch_size=batch_size,
            randomize_bn=weights is None,
            relevance=relevance,
            atomicity=atomicity,
        )
    except UntraceableModelError as error:
        raise InputError(f"--canonizer: {error}") from None
