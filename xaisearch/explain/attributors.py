"""The two zennit attributors xaisearch adds: input × gradient, and SmoothGrad with seeded noise.

Both subclass zennit's own (``Gradient``, ``SmoothGrad``), so composites, canonizers and output
relevance work as with any zennit attributor, and both keep zennit's constructor arguments,
which 0.5.1 and 1.0.0 share (``create_graph``/``retain_graph``, then ``noise_level``/``n_iter``:
always passed by keyword here). Integrated gradients is zennit's ``IntegratedGradients`` itself,
with ``integrated_gradients_baseline`` as its ``baseline_fn``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from zennit.attribution import Gradient, SmoothGrad

BaselineFn = Callable[[torch.Tensor], torch.Tensor]


class InputXGradient(Gradient):
    """``x · ∂f/∂x`` (Shrikumar et al. 2016): the gradient weighted by the input it explains.

    With a composite it is the input times the modified gradient, as zennit's attributors do.
    """

    def forward(self, input: torch.Tensor, attr_output_fn: Any) -> tuple[torch.Tensor, torch.Tensor]:
        output, gradient = super().forward(input, attr_output_fn)
        return output, input.detach() * gradient


class SeededSmoothGrad(SmoothGrad):
    """zennit's ``SmoothGrad`` whose noise comes from a generator seeded with ``seed`` on every call.

    zennit draws with ``torch.randn_like`` from the global random state (both releases), so its maps
    change from call to call. Here every call draws from ``torch.Generator().manual_seed(seed)``
    on the CPU, then moves the draw to the input's device: an exported config gives the trial's
    maps bit for bit, on any device. One draw serves every sample of a batch (scaled by each
    sample's own value range, zennit's ``noise_level``), so a sample's map does not depend on the
    batch it is in. Otherwise this is zennit's algorithm: ``n_iter`` gradients averaged, the last
    one noise-free (``n_iter = 1`` is the gradient). For a batch of one on the CPU it equals zennit's
    ``SmoothGrad`` after ``torch.manual_seed(seed)``.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        composite: Any = None,
        attr_output: Any = None,
        noise_level: float = 0.1,
        n_iter: int = 20,
        seed: int = 0,
    ) -> None:
        super().__init__(model, composite=composite, attr_output=attr_output, noise_level=noise_level, n_iter=n_iter)
        self.seed = seed

    def forward(self, input: torch.Tensor, attr_output_fn: Any) -> tuple[torch.Tensor, torch.Tensor]:
        input = input.detach()
        dims = tuple(range(1, input.ndim))
        std = self.noise_level * (input.amax(dims, keepdim=True) - input.amin(dims, keepdim=True))
        generator = torch.Generator().manual_seed(int(self.seed))
        result = torch.zeros_like(input)
        for n in range(self.n_iter):
            if n == self.n_iter - 1:
                epsilon = torch.zeros_like(input)
            else:
                draw = torch.randn(input.shape[1:], generator=generator, dtype=input.dtype)
                epsilon = draw.to(input.device) * std
            output, gradient = self.grad(input + epsilon, attr_output_fn)
            result += gradient / self.n_iter
        return output, result


def integrated_gradients_baseline(baseline: Any, input_low: Any = None) -> BaselineFn:
    """The reference image of integrated gradients as zennit's ``baseline_fn`` (a function of the input).

    ``zero``: zeros (zennit's default; the mean colour for ImageNet-normalised inputs); ``mean``:
    each image's mean per channel, everywhere; ``black``: ``input_low``, the data's lowest value;
    a number or one number per channel: that constant image.
    """
    if baseline == "zero":
        return torch.zeros_like
    if baseline == "mean":
        return lambda x: x.mean(dim=tuple(range(2, x.ndim)), keepdim=True).expand_as(x).clone()
    value = input_low if baseline == "black" else baseline
    values = [float(v) for v in value] if isinstance(value, (list, tuple)) else [float(value)]

    def constant(x: torch.Tensor) -> torch.Tensor:
        if len(values) not in (1, x.shape[1]):
            field = "input_low" if baseline == "black" else "baseline"
            raise ValueError(f"params.{field}: {len(values)} values for inputs of {x.shape[1]} channels")
        shape = (1, len(values)) + (1,) * (x.ndim - 2)
        return torch.tensor(values, dtype=x.dtype, device=x.device).view(shape).expand_as(x).clone()

    return constant
