"""Device choice: CUDA when present, CPU otherwise; every tensor path takes the result."""

from __future__ import annotations

import os
import re

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


def worker_devices(text: str) -> list[str]:
    """``worker --devices`` as the launcher takes it, one entry per worker process: a GPU index
    (``0`` or ``cuda:0`` → ``"0"``, set as that child's ``CUDA_VISIBLE_DEVICES``), ``cpu`` or ``auto``.

    An empty entry or list is refused rather than read as "no workers" (which exits 0 having done
    nothing); GPUs are checked against this machine unless ``CUDA_VISIBLE_DEVICES`` renumbers them."""
    form = "give one entry per worker process, e.g. --devices cuda:0,cuda:1 (or 0,1) or --devices cpu"
    entries = [part.strip().lower() for part in text.split(",")]
    chosen: list[str] = []
    for entry in entries:
        index = re.fullmatch(r"(?:cuda:)?(\d+)", entry)
        if entry in ("cpu", "auto") or index is not None:
            chosen.append(entry if index is None else str(int(index.group(1))))
            continue
        what = "has an empty entry" if not entry else f"{entry!r} is not a device"
        raise InputError(f"--devices {text!r}: {what}; {form}")
    gpus = sorted({int(entry) for entry in chosen if entry.isdigit()})
    if gpus and not torch.cuda.is_available():
        raise InputError(f"--devices {text!r}: asks for GPUs but CUDA is not available here; use --devices cpu")
    if gpus and "CUDA_VISIBLE_DEVICES" not in os.environ and gpus[-1] >= torch.cuda.device_count():
        count = torch.cuda.device_count()
        raise InputError(f"--devices {text!r}: there is no GPU {gpus[-1]}; this machine has {count} (0 to {count - 1})")
    return chosen
