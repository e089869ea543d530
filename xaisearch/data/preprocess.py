"""One geometry for an image and its mask, then ImageNet normalisation: what real datasets share.

Two modes (reference: paper-and-data.md §5.5), recorded with every sample set:

* ``resize``: ``Resize((S, S))``, as Pahde et al. ran it. It distorts the aspect ratio, but
  every box stays in the frame;
* ``resize_crop``: the shorter side to ``round(S · 256 / 224)``, then ``CenterCrop(S)``. This is
  torchvision's ``weights.transforms()``, which pretrained weights expect.

The mask goes through the same resize and crop with centre-aligned nearest-neighbour
interpolation (``NEAREST_EXACT``, aligned like the image's bilinear resize; torchvision's default
``NEAREST`` for masks floors coordinates and shifts edges by up to a pixel). It stays exact:
every mask pixel is the source pixel under its centre, with no blending. Images are converted
to RGB, scaled to [0, 1] and normalised per channel. ``input_bounds`` gives the per-channel
range of the normalised input, which the first layer's z^B rule needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch

if TYPE_CHECKING:
    from PIL import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
Preprocessing = Literal["resize", "resize_crop"]
PREPROCESSING: tuple[str, ...] = ("resize", "resize_crop")
Sample = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
"""What a real dataset yields: ``(x, y, mask)``, a normalised 3×S×S image, an int64 class, an S×S bool mask."""


@dataclass(frozen=True)
class Geometry:
    """How images become ``3 × size × size`` inputs (see the module docstring)."""

    size: int = 224
    mode: Preprocessing = "resize"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ValueError(f"image size must be positive, got {self.size}")
        if self.mode not in PREPROCESSING:
            raise ValueError(f"preprocessing must be one of {PREPROCESSING}, got {self.mode!r}")

    @property
    def resize_size(self) -> int:
        """The shorter side before the centre crop in ``resize_crop`` (256 for 224, as torchvision)."""
        return round(self.size * 256 / 224)


def prepare(image: Image.Image | np.ndarray, mask: np.ndarray, geometry: Geometry) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x, mask)``: the normalised ``3×S×S`` float image and the ``S×S`` bool mask, under one geometry.

    ``image`` is a PIL image or an ``H×W×3`` uint8 array; ``mask`` an ``H×W`` array of the same
    height and width (any dtype; nonzero is inside).
    """
    from torchvision.transforms import v2

    pixels = np.asarray(image.convert("RGB") if hasattr(image, "convert") else image, dtype=np.uint8)
    if pixels.ndim != 3 or pixels.shape[2] != 3:
        raise ValueError(f"expected an RGB image, got an array of shape {pixels.shape}")
    if mask.shape != pixels.shape[:2]:
        raise ValueError(f"mask shape {mask.shape} does not match the image's {pixels.shape[:2]}")
    picture = torch.from_numpy(pixels.copy()).permute(2, 0, 1)
    region = torch.from_numpy(np.asarray(mask) != 0).to(torch.uint8).unsqueeze(0)
    size = [geometry.size, geometry.size] if geometry.mode == "resize" else geometry.resize_size
    picture = v2.functional.resize(picture, size, antialias=True)
    # centre-aligned nearest neighbour, as the bilinear image resize: NEAREST floors and shifts edges by a pixel
    region = v2.functional.resize(region, size, interpolation=v2.InterpolationMode.NEAREST_EXACT)
    if geometry.mode == "resize_crop":
        picture = v2.functional.center_crop(picture, [geometry.size])
        region = v2.functional.center_crop(region, [geometry.size])
    x = v2.functional.to_dtype(picture, torch.float32, scale=True)
    x = v2.functional.normalize(x, list(geometry.mean), list(geometry.std))
    return x, region[0].bool()


def input_bounds(geometry: Geometry) -> tuple[list[float], list[float]]:
    """Per-channel lowest and highest normalised input: ``(0 − mean) / std`` and ``(1 − mean) / std``."""
    low = [(0.0 - m) / s for m, s in zip(geometry.mean, geometry.std, strict=True)]
    high = [(1.0 - m) / s for m, s in zip(geometry.mean, geometry.std, strict=True)]
    return low, high
