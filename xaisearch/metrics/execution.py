"""How a metric's model passes run on a device: memory layout and chunk sizes.

The metric code is cheap; the model passes are the cost (DESIGN §4). Two measured facts
decide how they run (mini VGG, 48 px, one CPU thread, ``bench/metrics.py``, BENCHMARKS.md):

* oneDNN convolutions on channels-last (NHWC) inputs take a third of the time of NCHW ones,
  forwards and LRP backwards alike, so 4-D inputs on a CPU are passed channels-last;
* an explanation of 320 images in one call costs 1.5x as much per image as calls of 32-64
  (the activations leave the caches), so explanations run in chunks sized by the memory budget.

A model that cannot take a channels-last input (a ``view`` on its input, an op that ignores
strides) is found by a probe on one image, once per model, and runs contiguous. On a GPU
inputs keep the caller's layout and chunks are large (unmeasured here: no device lent).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable

import torch
from torch import nn

DEFAULT_MEMORY_BUDGET: int | None = None  # None: chosen by device (``memory_budget_for``)
CPU_MEMORY_BUDGET = 4 * 2**20  # measured 1.7-1.9x faster than 256 MiB on the mini VGG (caches)
GPU_MEMORY_BUDGET = 256 * 2**20  # large chunks keep a GPU busy
EXPLANATION_MEMORY_FACTOR = 4  # an explanation keeps its activations for the backward
MIN_IMAGES_PER_EXPLANATION = 16  # under the default budget: 1-image calls at 224 px were 1.3x slower than 8
CHANNELS_LAST_DEVICES = frozenset({"cpu"})

_channels_last_ok: weakref.WeakKeyDictionary[nn.Module, tuple[int, bool]] = weakref.WeakKeyDictionary()


def memory_budget_for(device: torch.device, memory_budget: int | None) -> int:
    """``memory_budget`` bytes, or the device's default when ``None``."""
    if memory_budget is not None:
        return memory_budget
    return CPU_MEMORY_BUDGET if device.type == "cpu" else GPU_MEMORY_BUDGET


def chunk_size(x: torch.Tensor, memory_budget: int | None) -> int:
    """How many copies of the batch fit in ``memory_budget`` bytes (``None``: by ``x``'s device)."""
    return max(1, memory_budget_for(x.device, memory_budget) // max(1, x.numel() * x.element_size()))


def images_per_explanation(x: torch.Tensor, memory_budget: int | None) -> int:
    """Images per explainer call: the budget over the input bytes an explanation holds per image.

    A budget given explicitly is followed exactly; the device's default never goes below
    ``MIN_IMAGES_PER_EXPLANATION`` (large images would otherwise be explained one by one).
    """
    per_image = max(1, x[:1].numel() * x.element_size() * EXPLANATION_MEMORY_FACTOR)
    images = max(1, memory_budget_for(x.device, memory_budget) // per_image)
    return images if memory_budget is not None else max(images, MIN_IMAGES_PER_EXPLANATION)


def channels_last_ok(model: nn.Module, x: torch.Tensor) -> bool:
    """Whether ``model`` gives the same output on a channels-last copy of ``x`` (probed once per model).

    A model in train mode is never probed (a forward would update its BatchNorm statistics).
    """
    if x.dim() != 4 or x.device.type not in CHANNELS_LAST_DEVICES or x.shape[0] == 0 or model.training:
        return False
    structure = hash(tuple(map(id, model.modules())))  # a canonizer may swap modules in place
    try:
        known = _channels_last_ok.get(model)
    except TypeError:  # a module that is not hashable cannot be remembered: keep its layout
        return False
    if known is None or known[0] != structure:
        probe = x[:1].detach().contiguous()
        try:
            with torch.no_grad():
                reference = model(probe)
                other = model(probe.contiguous(memory_format=torch.channels_last))
            same = isinstance(reference, torch.Tensor) and torch.allclose(
                reference, other, rtol=1e-4, atol=1e-6 * float(reference.abs().max().clamp(min=1))
            )
        except Exception:  # any failure on channels-last input: keep the caller's layout
            same = False
        known = _channels_last_ok[model] = (structure, bool(same))
    return known[1]


def fast_layout(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``x`` in the layout ``model`` runs fastest on ``x``'s device (same values)."""
    if channels_last_ok(model, x):
        return x.contiguous(memory_format=torch.channels_last)
    return x


def forward(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``model(x)`` in the fastest layout."""
    return model(fast_layout(model, x))


def explain_in_chunks(
    explainer: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    model: nn.Module | None,
    x: torch.Tensor,
    y: torch.Tensor,
    memory_budget: int | None = DEFAULT_MEMORY_BUDGET,
) -> torch.Tensor:
    """``explainer(x, y)`` (detached, contiguous), called on chunks of images in ``model``'s fastest layout.

    ``model`` is the model the explainer explains (its layout probe); ``None`` keeps ``x``'s layout.
    Explainers are per-sample maps (as every LRP composite and gradient method is): one that
    normalises over its whole batch would see chunks instead.
    """
    if len(x) == 0:
        with torch.enable_grad():
            return explainer(x, y).detach().contiguous()
    step = images_per_explanation(x, memory_budget)
    parts = []
    with torch.enable_grad():
        for first in range(0, len(x), step):
            chunk = x[first : first + step]
            if model is not None:
                chunk = fast_layout(model, chunk)
            parts.append(explainer(chunk, y[first : first + step]).detach().contiguous())
    return parts[0] if len(parts) == 1 else torch.cat(parts)
