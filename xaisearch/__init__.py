"""xaisearch: find the best LRP explanation settings for a neural network.

Canonize a model, explain it with LRP composites built from declarative configs, score the
explanations with quantitative metrics, and search rule parameters with Optuna.

Imports are lazy so that ``xaisearch --help`` does not pay for torch or zennit.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["ExplainerConfig", "attributor_from_config", "composite_from_config", "model_from_config", "__version__"]


def __getattr__(name: str) -> Any:
    if name in ("attributor_from_config", "composite_from_config", "model_from_config"):
        from xaisearch.explain import from_config

        return getattr(from_config, name)
    if name == "ExplainerConfig":
        from xaisearch.explain.config import ExplainerConfig

        return ExplainerConfig
    raise AttributeError(f"module 'xaisearch' has no attribute {name!r}")
