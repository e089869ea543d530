"""A real dataset by name, and a seeded evaluation sample of it as stacked tensors.

The study file names the dataset (``data.name``) and where it lives (``data.root``); workers
all draw the same sample: a permutation from ``torch.Generator().manual_seed(seed)``, its
first ``n`` items, read in index order.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Protocol, cast

import torch

from xaisearch.data.preprocess import Geometry, Preprocessing, Sample

log = logging.getLogger("xaisearch.data")


class SampleDataset(Protocol):
    """A map-style dataset of ``(x, y, mask)`` samples with a length (torch's ``Dataset`` declares none)."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> Sample: ...


def expand_root(root: str) -> Path:
    """``root`` with ``~`` and ``$VARIABLES`` expanded (study files stay free of machine paths)."""
    return Path(os.path.expandvars(os.path.expanduser(root)))


def open_dataset(
    name: str,
    root: str,
    image_size: int,
    split: str = "val",
    classes: list[str] | None = None,
    masks: str = "segmentation",
    preprocessing: Preprocessing = "resize",
) -> SampleDataset:
    """The dataset ``name`` (``voc`` or ``imagenet``) under ``root``, as ``(x, y, mask)`` samples."""
    geometry = Geometry(size=image_size, mode=preprocessing)
    if name == "voc":
        from xaisearch.data.voc import MaskSource, VOCClassMasks

        source = cast(MaskSource, masks)  # the study file's Literal has checked it
        return VOCClassMasks(expand_root(root), split=split, geometry=geometry, masks=source, classes=classes)
    if name == "imagenet":
        from xaisearch.data.imagenet import ImageNetBoxes, Split

        return ImageNetBoxes(expand_root(root), split=cast(Split, split), wnids=classes, geometry=geometry)
    raise ValueError(f"unknown dataset {name!r}; use 'voc' or 'imagenet'")


def seeded_sample(dataset: SampleDataset, n: int, seed: int) -> Sample:
    """``(x, y, mask)`` of ``min(n, len(dataset))`` items drawn without replacement from ``seed``."""
    size = len(dataset)
    if n > size:
        log.warning("%d evaluation samples asked for, the dataset holds %d: using all of them", n, size)
    order = torch.randperm(size, generator=torch.Generator().manual_seed(seed))[:n].sort().values
    xs, ys, masks = zip(*(dataset[int(i)] for i in order), strict=True)
    return torch.stack(xs), torch.stack([torch.as_tensor(y, dtype=torch.long) for y in ys]), torch.stack(masks)
