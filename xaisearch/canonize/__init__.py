"""Canonization: restructure a model so that LRP rules see the same function without BatchNorm."""

from xaisearch.canonize.base import CanonizationPlan, Canonizer, NoCanonizer
from xaisearch.canonize.registry import available, canonizer_name_for, get_canonizer
from xaisearch.canonize.verify import VerificationReport, verify_canonizer

__all__ = [
    "CanonizationPlan",
    "Canonizer",
    "NoCanonizer",
    "VerificationReport",
    "available",
    "canonizer_name_for",
    "get_canonizer",
    "verify_canonizer",
]
