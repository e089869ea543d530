"""Heatmap images of attributions, rendered with zennit's colour maps.

``zennit.image.imgify`` builds palette images that Pillow 13 cannot save; we apply the colour
map ourselves (``get_cmap(name)`` on a map normalised to [0, 1]) and save plain RGB.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence

import numpy as np
import torch


def heatmap_rgb(attribution: torch.Tensor, cmap: str = "bwr") -> np.ndarray:
    """C×H×W or H×W attribution → H×W×3 uint8, channel-summed, symmetric around 0 (white)."""
    from zennit.image import get_cmap

    relevance = attribution.detach().double().cpu()
    if relevance.dim() == 3:
        relevance = relevance.sum(0)
    scale = float(relevance.abs().max())
    normalised = (relevance / scale + 1.0) / 2.0 if scale > 0 else torch.full_like(relevance, 0.5)
    colours = get_cmap(cmap)(normalised.clamp(0, 1).numpy())
    return (np.clip(colours[..., :3], 0.0, 1.0) * 255).round().astype(np.uint8)


def image_rgb(x: torch.Tensor, low: float | Sequence[float] = 0.0, high: float | Sequence[float] = 1.0) -> np.ndarray:
    """C×H×W input whose range is ``[low, high]`` (a number, or one per channel) → H×W×3 uint8.

    With the per-channel bounds of a normalisation (``(0 − mean) / std``, ``(1 − mean) / std``)
    this undoes it, so real images show in their own colours.
    """
    image = x.detach().cpu().double()
    bounds = [torch.as_tensor(v, dtype=torch.float64).reshape(-1, 1, 1) for v in (low, high)]
    array = ((image - bounds[0]) / (bounds[1] - bounds[0])).clamp(0, 1).permute(1, 2, 0).numpy()
    return (array * 255).round().astype(np.uint8)


def png_bytes(rgb: np.ndarray, scale: int = 3) -> bytes:
    from PIL import Image

    image = Image.fromarray(rgb)
    if scale > 1:
        image = image.resize((rgb.shape[1] * scale, rgb.shape[0] * scale), Image.Resampling.NEAREST)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def png_data_uri(rgb: np.ndarray, scale: int = 3) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes(rgb, scale)).decode()
