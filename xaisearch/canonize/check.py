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

    A Relation Network answers a fixed, seeded question: the image is its only attributed input."""
    from xaisearch.models import zoo
    from xaisearch.models.ref import ModelRef

    known = zoo.available()
    if name not in known:
        close = [n for n in known if n.startswith(name[:4])][:8]
        raise InputError(f"model: unknown model {name!r}; use a torchvision builder such as {close or known[:8]}")
    if weights is not None and not Path(weights).is_file():
        raise InputError(f"--weights: no such file {str(weights)!r}")
    num_classes = 4 if name in zoo.MINI_MODELS else CLEVR_ANSWERS if name in zoo.RELATION_NETWORKS else 1000
    model = zoo.build_architecture(
        ModelRef(name=name, num_classes=num_classes, input_shape=(3, input_size, input_size))
    )
    if weights is not None:
        try:
            model.load_state_dict(zoo.load_state(Path(weights)))
        except RuntimeError as error:
            first = " ".join(line.strip() for line in str(error).strip().splitlines()[:2])
            raise InputError(
                f"--weights: {str(weights)!r} does not fit {name} ({num_classes} classes): {first}"
            ) from None
    if isinstance(model, RelationNetwork):
        vocabulary = model.question.embedding.num_embeddings
        tokens = torch.randint(1, vocabulary, (1, 6), generator=torch.Generator().manual_seed(0))
        model.set_question(tokens, torch.tensor([6]))
    return model.eval()


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
