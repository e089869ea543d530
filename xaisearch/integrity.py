"""Keep a model's parameter and buffer objects intact across zennit attributions.

Used by ``explain`` (every attribution) and ``canonize.verify`` (which checks attributions as
xaisearch runs them), so it depends on nothing but torch.

zennit 1.0.0 swaps every ruled module's registered ``Parameter`` objects for new ones and leaves
instance-attribute shadows behind (upstream #237): afterwards ``state_dict`` holds extra keys and
an optimizer built earlier no longer trains the model. 0.5.1 is clean. ``preserved_state`` makes
both behave like 0.5.1 by restoring every module's ``_parameters``/``_buffers`` entries *by
identity* and deleting new shadows on exit. It costs one dict copy per module.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn


@contextmanager
def preserved_state(model: nn.Module) -> Iterator[nn.Module]:
    snapshot = [
        (module, dict(module._parameters), dict(module._buffers), set(vars(module))) for module in model.modules()
    ]
    try:
        yield model
    finally:
        for module, parameters, buffers, attributes in snapshot:
            module._parameters.clear()
            module._parameters.update(parameters)
            module._buffers.clear()
            module._buffers.update(buffers)
            for key in set(vars(module)) - attributes:
                if key in parameters or key in buffers:
                    delattr(module, key)
