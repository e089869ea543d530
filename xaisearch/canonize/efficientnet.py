"""EfficientNet canonizer (torchvision ``efficientnet_b0`` … ``_b7``, and the V2 models).

* every ``Conv2dNormActivation`` is an ``nn.Sequential`` Conv → BN (→ SiLU): all BNs fold left;
* squeeze-excitation ``scale * x`` becomes a signal-only gate (``gates.py``);
* the MBConv residual ``result += input`` becomes an explicit, out-of-place ``Sum``
  (``residual.py``). ``StochasticDepth`` is still called: it is the identity in eval mode, and
  canonized models are only used in eval mode (BN with ε=0 refuses train mode anyway).

b5–b7 use BN ε=1e-3: zennit 0.5.1's merge, which keeps ε, is off by 1e-3 relative there; our
fold uses ε and then sets it to 0, so it is exact (canonization.md §2.4).
"""

from __future__ import annotations

from torch import Tensor, nn
from torchvision.models.efficientnet import FusedMBConv, MBConv

from xaisearch.canonize.fold_left import fold_sequential_pairs
from xaisearch.canonize.gates import squeeze_excitation_gates
from xaisearch.canonize.plan import CompositeCanonizer
from xaisearch.canonize.residual import explicit_residuals, explicit_sum


def _inverted_residual_forward(self: MBConv | FusedMBConv, input: Tensor) -> Tensor:
    result = self.stochastic_depth(self.block(input))
    return explicit_sum(self.canonizer_sum, input, result)


def _uses_residual(module: nn.Module) -> bool:
    return bool(getattr(module, "use_res_connect", False))


INVERTED_RESIDUALS = explicit_residuals(
    {MBConv: _inverted_residual_forward, FusedMBConv: _inverted_residual_forward}, adds=_uses_residual
)


class EfficientNetCanonizer(CompositeCanonizer):
    """Fold all Conv → BN, signal-only SE gates, explicit MBConv residual ``Sum``.

    ``fold=False`` is the structural arm (gates and sums only, every BN reported as kept).
    """

    def __init__(self, fold: bool = True) -> None:
        super().__init__(
            "efficientnet",
            structure=[squeeze_excitation_gates, INVERTED_RESIDUALS],
            folds=[fold_sequential_pairs],
            unreached="not directly preceded by a Conv/Linear in an nn.Sequential",
            fold=fold,
        )
