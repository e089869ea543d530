"""Device choice: CUDA when present, CPU otherwise; every tensor path takes the result."""

from __future__ import annotations

import torch

from xaisearch.errors import InputError


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise InputError(f"device: {name!r} is not a torch device; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device: {name} was asked for but CUDA is not available; use auto or cpu")
    return device
