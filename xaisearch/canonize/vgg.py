"""VGG canonizer: fold every Conv/Linear → BN pair of ``features`` and ``classifier``."""

from __future__ import annotations

from xaisearch.canonize.fold_left import fold_sequential_pairs
from xaisearch.canonize.plan import CompositeCanonizer


class SequentialFoldCanonizer(CompositeCanonizer):
    """Folds each BN that directly follows a Conv/Linear in an ``nn.Sequential``.

    That covers torchvision's VGG ``_bn`` variants and the mini VGG completely; any other BN
    (``plan.BatchNorm``: ``SyncBatchNorm`` too) is reported in ``plan(model).unfolded`` with the
    reason, never skipped silently.
    """

    def __init__(self) -> None:
        super().__init__(
            "vgg",
            folds=[fold_sequential_pairs],
            unreached="not directly preceded by a Conv/Linear in an nn.Sequential",
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
