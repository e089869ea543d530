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


def build_named_model(name: str, weights: Path | None = None, input_size: int = 64) -> nn.Module:
    """``name`` (a torchvision classification builder or ``mini_vgg``) in eval mode, weights loaded if given."""
    import torchvision

    from xaisearch.explain.config import ModelRef
    from xaisearch.models import zoo

    known = list(zoo.MINI_MODELS) + sorted(torchvision.models.list_models(module=torchvision.models))
    if name not in known:
        close = [n for n in known if n.startswith(name[:4])][:8]
        raise InputError(f"model: unknown model {name!r}; use a torchvision builder such as {close or known[:8]}")
    if weights is not None and not Path(weights).is_file():
        raise InputError(f"--weights: no such file {str(weights)!r}")
    num_classes = 4 if name in zoo.MINI_MODELS else 1000
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


def report_text(report: VerificationReport, model: str) -> str:
    """The human-readable report: every step, BN coverage, output difference, timing, checks."""
    lines = [f"{model}: canonizer {report.canonizer!r}, {len(report.steps)} steps"]
    lines += [f"  {step}" for step in report.steps]
    lines.append(f"BatchNorm: {report.bn_total} total, {report.bn_folded} folded, {len(report.unfolded)} unfolded")
    lines += [f"  unfolded {name}: {why}" for name, why in report.unfolded.items()]
    lines += [f"  note: {note}" for note in report.notes]
    lines.append(
        f"output difference ({report.dtype}): max abs {report.max_abs_diff:.3g}, max rel {report.max_rel_diff:.3g}"
    )
    lines.append(f"restored exactly: {'yes' if report.restored_exactly else 'NO'}")
    lines += [f"  {problem}" for problem in report.restore_problems[:10]]
    lines.append(f"apply {report.apply_seconds:.3f} s, remove {report.remove_seconds:.3f} s")
    if report.conservation_error is not None:
        ratios = ", ".join(f"{r:.6f}" for r in report.conservation_ratios)
        lines.append(
            f"relevance conservation (bias-free, {report.dtype}): {ratios} (max error {report.conservation_error:.2g})"
        )
        lines.append(f"batch = per-sample attribution: max rel diff {report.batch_rel_diff:.2g}")
        state = report.attribution_problems[:3] if report.attribution_problems else "intact"
        lines.append(f"state after attribution: {state}")
    if report.atomicity_problems is not None:
        lines.append(f"failure atomicity: {'ok' if not report.atomicity_problems else report.atomicity_problems[:3]}")
    return "\n".join(lines)
