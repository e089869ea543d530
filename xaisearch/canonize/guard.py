"""The guard: before a search or ``xaisearch canonize`` uses a canonizer, check it on the model at hand.

``verify.py`` proves a canonizer on random inputs with random BatchNorm statistics (the
conformance suite). The guard checks the one model a worker explains, on the study's own images,
once per worker (``Workbench.prepare``; ``preflight`` and ``xaisearch canonize`` too): a canonizer
that changes the function would make every trial explain another model, silently.

What it does, on a deep copy (the model itself is never touched): ``apply`` the canonizer, run
the images, ``remove()`` it, and compare the outputs with the original's; then check that the copy
is restored exactly (``state_dict``, parameter identity, structure, BN ε, hooks: ``verify``'s
``restore_problems``), since every trial applies and removes it again. Two forwards when it
passes. Precision:

* **float64** where the model allows, on its GPU or else the CPU (bound ``FLOAT64_BOUND``):
  rounding is then far below any real error, so the bound is a fixed number;
* otherwise **float32** on the model's device (TF32 off), bounded by the model's own float32
  noise: the change that perturbing every parameter by one float32 ulp (what a fold's rounding
  does) makes, times ``NOISE_FACTOR``, and never less than DESIGN's ``FLOAT32_BOUND`` (one more
  forward).

A mismatch is localised with forward hooks on the leaf modules whose names survive
canonization (a BatchNorm with an activation inside, timm's ``BatchNormAct2d``, as one module;
a fresh copy, the original and the canonized run recorded): the first module, in execution
order, whose output differs beyond the bound is named; if none does, the model output.
Outputs that a correct fold changes on purpose are not compared: a Conv/Linear whose output feeds
a BatchNorm (folded from the left, its output is the BN's), and a BatchNorm whose output feeds a
Conv/Linear (folded from the right, it becomes the identity). Other deliberate changes
(DenseNet's thresholded ReLUs) can be named before the real culprit; the verdict itself depends
only on the model output.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from xaisearch.canonize.base import Canonizer, NoCanonizer
from xaisearch.canonize.recording import (
    changed_on_purpose,
    compared_names,
    label,
    output_differences,
    output_tensors,
    recorded,
    relative_difference,
)
from xaisearch.canonize.verify import restore_problems, state_snapshot, structure_snapshot
from xaisearch.errors import InputError

GUARD_IMAGES = 2
FLOAT64_BOUND = 1e-8  # float64 rounding of a correct fold: ~1e-13 (resnet, efficientnet, timm models)
FLOAT32_BOUND = 1e-5  # DESIGN §3.5
NOISE_FACTOR = 10.0
MODEL_OUTPUT = "the model output"


@dataclass
class GuardResult:
    """What the guard measured. ``max_rel_diff`` is ``max|y_canonized − y| / max|y|`` over the images."""

    canonizer: str
    dtype: str
    images: int
    max_rel_diff: float
    bound: float
    restore_problems: list[str] = field(default_factory=list)
    fallback: str | None = None  # why float64 could not be used
    diverging: str | None = None  # set when the function changed: the first module, or MODEL_OUTPUT
    diverging_rel_diff: float | None = None
    seconds: float = 0.0

    def passed(self) -> bool:
        return self.max_rel_diff <= self.bound and not self.restore_problems

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"passed": self.passed()}


def check_function_kept(model: nn.Module, canonizer: Canonizer, inputs: torch.Tensor) -> GuardResult:
    """Apply ``canonizer`` to a copy of ``model``, compare its outputs on ``inputs`` and its restore.

    ``inputs`` is a batch the model takes (the first ``GUARD_IMAGES`` are used). A ``ValueError``
    of the canonizer (a plan that does not fit the model) propagates.
    """
    started = time.perf_counter()
    x = inputs[:GUARD_IMAGES]
    if isinstance(canonizer, NoCanonizer):  # no steps: nothing to compare, nothing to restore
        return GuardResult(canonizer.name, "-", len(x), 0.0, 0.0)
    with _full_float32():
        return _checked(model, canonizer, x, started)


def _checked(model: nn.Module, canonizer: Canonizer, x: torch.Tensor, started: float) -> GuardResult:
    subject, x, reference, fallback = _subject(model, x)
    dtype = x.dtype
    with torch.no_grad():
        bound = FLOAT64_BOUND
        if dtype != torch.float64:
            with _perturbed(subject):
                bound = max(FLOAT32_BOUND, NOISE_FACTOR * relative_difference(reference, subject(x)))
        identities, state = state_snapshot(subject)
        structure = structure_snapshot(subject)
        handles = canonizer.apply(subject)
        try:
            canonized = subject(x)
        finally:
            for handle in reversed(handles):
                handle.remove()
    result = GuardResult(
        canonizer=canonizer.name,
        dtype=str(dtype).removeprefix("torch."),
        images=len(x),
        max_rel_diff=relative_difference(reference, canonized),
        bound=bound,
        restore_problems=restore_problems(subject, identities, state, structure),
        fallback=fallback,
    )
    del subject
    if result.max_rel_diff > bound:
        result.diverging, result.diverging_rel_diff = first_diverging_module(model, canonizer, x)
    result.seconds = time.perf_counter() - started
    return result


def guard_canonizer(
    model: nn.Module,
    canonizer: Canonizer,
    inputs: torch.Tensor,
    model_name: str,
    field: str = "canonizer",
    alternatives: Sequence[str] = ("auto",),
) -> GuardResult:
    """``check_function_kept``, refused as one ``InputError`` line naming ``field``, the first
    diverging module and the canonizers to try instead (``none`` and ``alternatives``)."""
    try:
        result = check_function_kept(model, canonizer, inputs)
    except ValueError as error:  # the plan does not fit this model (untraceable, wrong architecture)
        raise InputError(
            f"{field}: {str(error).splitlines()[0]}; {_try_instead(field, canonizer.name, alternatives)}"
        ) from None
    message = refusal(result, model_name, field, alternatives)
    if message is not None:
        raise InputError(message)
    return result


def refusal(result: GuardResult, model_name: str, field: str, alternatives: Sequence[str] = ("auto",)) -> str | None:
    """The one-line refusal for a result that did not pass; ``None`` if it passed."""
    hint = _try_instead(field, result.canonizer, alternatives)
    if result.max_rel_diff > result.bound:
        where = (
            f"no module's output differs beyond the bound, only {MODEL_OUTPUT}"
            if result.diverging in (None, MODEL_OUTPUT)
            else f"first at {result.diverging}, by {result.diverging_rel_diff:.1e}"
        )
        return (
            f"{field}: {result.canonizer!r} changes what {model_name} computes: its output differs by "
            f"{result.max_rel_diff:.1e} relative ({result.dtype}, {result.images} images, bound {result.bound:.0e}), "
            f"{where}; {hint}"
        )
    if result.restore_problems:
        more = f" and {len(result.restore_problems) - 1} more" if len(result.restore_problems) > 1 else ""
        return (
            f"{field}: {result.canonizer!r} does not restore {model_name} exactly after remove() "
            f"({result.restore_problems[0]}{more}), and every trial applies and removes it; {hint}"
        )
    return None


def _try_instead(field: str, used: str, alternatives: Sequence[str]) -> str:
    names = list(dict.fromkeys([*alternatives, "none"]))
    options = [f"{field} {n}" if field.startswith("-") else f"{field}: {n}" for n in names if n != used]
    if not options:
        return "use another canonizer"
    return "use " + (f"{', '.join(options[:-1])} or {options[-1]}" if len(options) > 1 else options[0])


def _subject(
    model: nn.Module, x: torch.Tensor, float64: bool = True
) -> tuple[nn.Module, torch.Tensor, object, str | None]:
    """An eval-mode float64 copy of ``model``, ``x`` to match and the copy's output, if the model
    runs so (on its CUDA device, else on the CPU); else a float32 copy on the model's own device,
    and why not float64."""
    device = next((p.device for p in model.parameters()), x.device)
    reason = None
    if float64:
        exact = device if device.type == "cuda" else torch.device("cpu")  # MPS has no float64
        try:
            subject = copy.deepcopy(model).to(device=exact, dtype=torch.float64).eval()
            exact_x = x.detach().to(device=exact, dtype=torch.float64)
            with torch.no_grad():
                output = subject(exact_x)
            if _all_finite(output):
                return subject, exact_x, output, None
            reason = "its float64 output is not finite"
        except Exception as error:  # an op or a plain tensor attribute that only works in float32
            reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
    subject = copy.deepcopy(model).to(device=device, dtype=torch.float32).eval()
    x = x.detach().to(device=device, dtype=torch.float32)
    with torch.no_grad():
        return subject, x, subject(x), reason


@contextmanager
def _full_float32() -> Iterator[None]:
    """No TF32 in CUDA convolutions and matrix products meanwhile: its 10-bit mantissa would hide
    the comparison of a float32 fallback under rounding that has nothing to do with the canonizer."""
    precision, cudnn_tf32 = torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32
    torch.set_float32_matmul_precision("highest")
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(precision)
        torch.backends.cudnn.allow_tf32 = cudnn_tf32


@contextmanager
def _perturbed(model: nn.Module, seed: int = 0) -> Iterator[None]:
    """Every floating parameter multiplied by ``1 ± ε`` (ε: its dtype's machine epsilon, signs at
    random): one rounding of each weight, what a fold does. Restored bit for bit, same objects."""
    generator = torch.Generator().manual_seed(seed)
    saved = []
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.is_floating_point():
                saved.append((parameter, parameter.detach().clone()))
                sign = torch.randint(0, 2, parameter.shape, generator=generator).to(parameter) * 2 - 1
                parameter.mul_(1 + sign * torch.finfo(parameter.dtype).eps)
    try:
        yield
    finally:
        with torch.no_grad():
            for parameter, value in saved:
                parameter.copy_(value)


def _all_finite(output: object) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in output_tensors(output) if t.is_floating_point())


def first_diverging_module(model: nn.Module, canonizer: Canonizer, inputs: torch.Tensor) -> tuple[str, float | None]:
    """The first module (execution order) whose output the canonized copy of ``model`` changes
    beyond the bound, labelled with its type (and the fold partner that fed it), and that
    difference; ``(MODEL_OUTPUT, None)`` if no compared module differs."""
    subject, x, _, _ = _subject(model, inputs, float64=inputs.dtype == torch.float64)
    names = compared_names(subject)
    with torch.no_grad():
        with recorded(subject, names) as original:
            subject(x)
        noise: dict[tuple[str, int], float] = {}
        if x.dtype != torch.float64:
            with _perturbed(subject), recorded(subject, names) as perturbed:
                subject(x)
            noise = output_differences(original, perturbed)
        handles = canonizer.apply(subject)
        try:
            with recorded(subject, names) as canonized:
                subject(x)
        finally:
            for handle in reversed(handles):
                handle.remove()
    skipped = changed_on_purpose(original)
    differences = output_differences(original, canonized)
    for call in original:
        key = (call.name, call.index)
        if key in skipped or key not in differences:
            continue
        bound = FLOAT64_BOUND if x.dtype == torch.float64 else max(FLOAT32_BOUND, NOISE_FACTOR * noise.get(key, 0.0))
        if differences[key] > bound:
            return label(call, skipped), differences[key]
    return MODEL_OUTPUT, None
