"""Relation Network canonizer (Pahde et al. 2023, ``RelationNetBNAllCanonizer``; canonization.md §8).

The RN stem is Conv → ReLU → BN, so each BN follows a ReLU and nothing can fold it left (zennit's
``SequentialMergeBatchNorm`` finds no pair and says nothing). It folds right instead:

* BN₁..BN₃ into the next stem conv. Those convs are unpadded, so the shift is an exact scalar
  bias (§2.2) and no threshold is needed: no ReLU sits between BN and conv.
* BN₄ into the first ``g`` layer, through the object and pair modules (which copy and
  concatenate, so they commute with a per-channel affine map): only the two column blocks that
  hold the CNN features of object i and object j are scaled, and the shift enters the bias once
  per slot. The coordinate and question columns are untouched.

The structural half of the reference canonizer (the pair sum as ``zennit.layer.Sum``, the
concatenations made explicit) is built into ``xaisearch.models.relation_network``; ``plan``
checks that it is there. The LRP baseline arm is therefore ``none``.
"""

from __future__ import annotations

from torch import nn

from xaisearch.canonize._merge_right import FoldSliceRight
from xaisearch.canonize.base import CanonizationPlan, Canonizer, StepSequence
from xaisearch.canonize.fold_left import FoldBatchNormLeft
from xaisearch.canonize.fold_right import right_fold_layer_problem
from xaisearch.canonize.plan import LINEAR_TYPES, BatchNorm, IdentityBatchNorm


class RelationNetworkCanonizer(Canonizer):
    """Folds every BN of a ``RelationNetwork``'s stem (module docstring)."""

    name = "relation_network"

    def plan(self, model: nn.Module) -> CanonizationPlan:
        from zennit.layer import Sum

        from xaisearch.models.relation_network import AppendQuestion, ObjectPairs, RelationNetwork

        if not isinstance(model, RelationNetwork):
            raise ValueError(f"canonizer {self.name!r} needs a RelationNetwork, got {type(model).__name__}")
        structure = {"pair_sum": Sum, "pairs": ObjectPairs, "append_question": AppendQuestion}
        wrong = [name for name, kind in structure.items() if not isinstance(getattr(model, name, None), kind)]
        if wrong:
            raise ValueError(f"RelationNetwork modules {wrong} were replaced; the canonizer relies on them")
        stem = [(f"image_encoder.{key}", module) for key, module in model.image_encoder.named_children()]
        plan = CanonizationPlan(batchnorms=[name for name, module in stem if isinstance(module, BatchNorm)])
        for index, (name, norm) in enumerate(stem):
            if not isinstance(norm, BatchNorm):
                continue
            if norm.running_mean is None:
                plan.unfolded[name] = "no running statistics (track_running_stats=False)"
                continue
            before = stem[index - 1] if index > 0 else ("", None)
            after = stem[index + 1] if index + 1 < len(stem) else None
            if isinstance(before[1], LINEAR_TYPES):
                plan.steps.append(FoldBatchNormLeft(before[1], norm, before[0], name))
            elif after is not None and isinstance(after[1], nn.Conv2d):
                problem = right_fold_layer_problem(after[1])
                if problem is not None:
                    plan.unfolded[name] = f"cannot merge into {after[0]}: {problem}"
                    continue
                key = after[0].rsplit(".", 1)[1]
                merge = FoldSliceRight(norm, model.image_encoder, key, f"{name}: merged right into {after[0]}")
                plan.steps.append(StepSequence([merge, IdentityBatchNorm(norm, name)], merge.description))
            elif after is None:
                first, second = model.object_feature_columns
                columns = f"[{first.start}:{first.stop}) and [{second.start}:{second.stop})"
                merge = FoldSliceRight(
                    norm, model.g, "0", f"{name}: merged right into g.0 columns {columns}", columns=(first, second)
                )
                plan.steps.append(StepSequence([merge, IdentityBatchNorm(norm, name)], merge.description))
            else:
                plan.unfolded[name] = (
                    f"between {before[0]} and {after[0]}: neither a Linear/Conv before nor a Conv after"
                )
                continue
            plan.folded.append(name)
        return plan
