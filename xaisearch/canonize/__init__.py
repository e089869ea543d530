"""Canonization: restructure a model so that LRP rules see the same function without BatchNorm.

Names are imported on first use (``xaisearch.lazy``): ``xaisearch.canonize.catalog``, which study
files are validated against, stays free of torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from xaisearch.lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "base": ("CanonizationPlan", "Canonizer", "NoCanonizer"),
        "catalog": ("CANONIZERS", "available"),
        "registry": ("canonizer_name_for", "get_canonizer"),
        "verify": ("VerificationReport", "verify_canonizer"),
    },
)

if TYPE_CHECKING:
    from xaisearch.canonize.base import CanonizationPlan, Canonizer, NoCanonizer
    from xaisearch.canonize.catalog import CANONIZERS, available
    from xaisearch.canonize.registry import canonizer_name_for, get_canonizer
    from xaisearch.canonize.verify import VerificationReport, verify_canonizer
