"""ModelRef: which model a config or a study explains, and where its weights are."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ModelRef(BaseModel):
    """Which model a config explains and where its weights are.

    ``weights`` is a checkpoint path (relative paths are resolved against the config file's
    folder), a torchvision weights enum name such as ``IMAGENET1K_V1``, or ``None`` for random
    initialisation.
    """

    model_config = ConfigDict(extra="forbid")

    name: str
    num_classes: int = Field(gt=0)
    input_shape: tuple[int, ...]
    weights: str | None = None
