"""The one-call entry points for zennit users of an exported composite config.

Re-exported as ``xaisearch.composite_from_config``, ``xaisearch.attributor_from_config`` and
``xaisearch.model_from_config``. A config with a mistake raises ``xaisearch.errors.InputError``,
one line naming the file and the field.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn
from zennit.core import Composite

from xaisearch.errors import InputError
from xaisearch.explain.config import ExplainerConfig, load_config

if TYPE_CHECKING:
    from zennit.attribution import Attributor


def composite_from_config(config: str | Path | dict | ExplainerConfig, model: nn.Module) -> Composite:
    """A zennit composite (canonizer attached) that reproduces the config's attributions with
    zennit's ``Gradient``: methods ``lrp``, ``gradient``, ``guided_backprop``, ``excitation_backprop``.
    The other methods need their attributor (``attributor_from_config``) and are refused.

    >>> composite = composite_from_config("runs/demo/best_composite.json", model)
    >>> with zennit.attribution.Gradient(model, composite) as attributor:
    ...     output, relevance = attributor(x, one_hot_target)
    """
    from xaisearch.explain.methods import build_composite, runs_with_gradient

    explainer, _ = load_config(config)
    if not runs_with_gradient(explainer):
        source = str(config) if isinstance(config, (str, Path)) else "composite config"
        raise InputError(
            f"{source}: field 'method': {explainer.method!r} runs with its own zennit attributor, "
            "not with Gradient and a composite; use xaisearch.attributor_from_config(config, model)"
        )
    return build_composite(explainer, model)


def attributor_from_config(config: str | Path | dict | ExplainerConfig, model: nn.Module) -> Attributor:
    """A ready zennit attributor (composite and canonizer attached) that reproduces the config's
    attributions, for every method; SmoothGrad's noise is seeded from the config's ``params.seed``.

    >>> attributor = attributor_from_config("runs/demo/best_composite.json", model)
    >>> with torch.enable_grad(), attributor:
    ...     output, relevance = attributor(x, one_hot_target)
    """
    from xaisearch.explain.methods import build_attributor

    explainer, _ = load_config(config)
    return build_attributor(explainer, model)


def model_from_config(config: str | Path | dict | ExplainerConfig, device: str | torch.device = "cpu") -> nn.Module:
    """Rebuild the model a config names, with its weights, in eval mode."""
    from xaisearch.models.zoo import build_model

    explainer, base_dir = load_config(config)
    return build_model(explainer.model, base_dir=base_dir, device=device)
