"""VGG canonizer: fold every Conv/Linear → BN pair of ``features`` and ``classifier``."""

from __future__ import annotations

from torch import nn

from xaisearch.canonize.base import CanonizationPlan, Canonizer
from xaisearch.canonize.batchnorm import BATCHNORM_TYPES, FoldBatchNormLeft, sequential_left_pairs


class SequentialFoldCanonizer(Canonizer):
    """Folds each BN that directly follows a Conv/Linear in an ``nn.Sequential``.

    That covers torchvision's VGG ``_bn`` variants and the mini VGG completely; any other BN is
    reported in ``plan(model).unfolded`` with the reason, never skipped silently.
    """

    name = "vgg"

    def plan(self, model: nn.Module) -> CanonizationPlan:
        plan = CanonizationPlan()
        plan.batchnorms = [n for n, m in model.named_modules() if isinstance(m, BATCHNORM_TYPES)]
        for linear_name, linear, norm_name, norm in sequential_left_pairs(model):
            plan.steps.append(FoldBatchNormLeft(linear, norm, linear_name, norm_name))
            plan.folded.append(norm_name)
        for name in plan.batchnorms:
            if name not in plan.folded:
                plan.unfolded[name] = "not directly preceded by a Conv/Linear in an nn.Sequential"
        return plan
