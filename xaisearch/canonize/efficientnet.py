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
from torchvision.ops.misc import SqueezeExcitation

from xaisearch.canonize.base import CanonizationPlan, Canonizer
from xaisearch.canonize.batchnorm import add_left_fold, batchnorm_names, report_unfolded, sequential_left_pairs
from xaisearch.canonize.gates import squeeze_excitation_step
from xaisearch.canonize.residual import explicit_sum, residual_step

INVERTED_RESIDUALS = (MBConv, FusedMBConv)


def _inverted_residual_forward(self: MBConv, input: Tensor) -> Tensor:
    result = self.stochastic_depth(self.block(input))
    return explicit_sum(self.canonizer_sum, input, result)


class EfficientNetCanonizer(Canonizer):
    """Fold all Conv → BN, signal-only SE gates, explicit MBConv residual ``Sum``.

    ``fold=False`` is the structural arm (gates and sums only, every BN reported as kept).
    """

    name = "efficientnet"

    def __init__(self, fold: bool = True) -> None:
        self.fold = fold
        if not fold:
            self.name = "efficientnet.structural"

    def plan(self, model: nn.Module) -> CanonizationPlan:
        plan = CanonizationPlan(batchnorms=batchnorm_names(model))
        for name, module in model.named_modules():
            gate = squeeze_excitation_step(name, module)
            if gate is not None:
                plan.steps.append(gate)
            elif isinstance(module, SqueezeExcitation):
                plan.notes.append(f"{name}: SqueezeExcitation overrides forward; its product is left as is")
            if isinstance(module, INVERTED_RESIDUALS) and module.use_res_connect:
                if type(module).forward in (MBConv.forward, FusedMBConv.forward):
                    plan.steps.append(residual_step(name, module, _inverted_residual_forward))
                else:
                    plan.notes.append(f"{name}: {type(module).__name__} overrides forward; its addition is left as is")
        if self.fold:
            for linear_name, linear, norm_name, norm in sequential_left_pairs(model):
                add_left_fold(plan, linear_name, linear, norm_name, norm)
            report_unfolded(plan, "not directly preceded by a Conv/Linear in an nn.Sequential")
        else:
            report_unfolded(plan, "structural arm: BatchNorm kept on purpose")
        return plan

    def __repr__(self) -> str:
        return f"{type(self).__name__}(fold={self.fold})"
