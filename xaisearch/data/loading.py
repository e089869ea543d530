"""A real dataset by name, and a seeded evaluation sample of it as stacked tensors.

The study file names the dataset (``data.name``) and where it lives (``data.root``); workers
all draw the same sample: a permutation from ``torch.Generator().manual_seed(seed)``, its
first ``n`` items, read in index order.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Protocol

import torch

from xaisearch.data.catalog import DATASETS
from xaisearch.data.preprocess import Geometry, Preprocessing, Sample

log = logging.getLogger("xaisearch.data")


class SampleDataset(Protocol):
    """A map-style dataset of ``(x, y, mask)`` samples with a length (torch's ``Dataset`` declares none)."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> Sample: ...


def expand_root(root: str) -> Path:
    """``root`` with ``~`` and ``$VARIABLES`` expanded (study files stay free of machine paths)."""
    return Path(os.path.expandvars(os.path.expanduser(root)))


def missing_data_root(name: str, root: str) -> str | None:
    """Why ``root`` cannot hold the real dataset ``name`` (a variable not set, no such folder, no
    holder folder in it), or ``None`` when it looks right: checked before a model is loaded, so a
    missing dataset costs no weights download and no training."""
    holder = DATASETS.get(name).holder
    if holder is None:
        return None
    expanded = expand_root(root)
    unset = re.findall(r"\$\{?(\w+)", str(expanded))
    if unset:
        variables = ", ".join(unset)
        return f"data.root: {root!r} uses {variables}, which is not set; set it to the folder that holds {holder}"
    if not (expanded / holder).is_dir():
        where = "does not exist" if not expanded.exists() else f"holds no {holder}"
        return f"data.root: {expanded} {where}; point data.root at the folder that holds {holder}"
    return None


def open_dataset(
    name: str,
    root: str,
    image_size: int,
    split: str = "val",
    classes: list[str] | None = None,
    masks: str = "segmentation",
    preprocessing: Preprocessing = "resize",
) -> SampleDataset:
    """The dataset ``name`` (a real one of ``data.catalog.DATASETS``) under ``root``, as ``(x, y, mask)`` samples."""
    entry = DATASETS.get(name)
    if not entry.real:
        raise ValueError(f"dataset {name!r} is generated, not read from disk")
    geometry = Geometry(size=image_size, mode=preprocessing)
    dataset: SampleDataset = entry.open(
        root=expand_root(root), split=split, classes=classes, masks=masks, geometry=geometry
    )
    return dataset


def seeded_sample(dataset: SampleDataset, n: int, seed: int, skip: int = 0) -> Sample:
    """``(x, y, mask)`` of ``min(n, len(dataset) - skip)`` items drawn without replacement from ``seed``.

    ``skip`` passes over the first draws of the same seeded order: the held-out validation images
    (``skip`` = the search set's size) are then disjoint from the search set by construction.
    """
    size = len(dataset)
    if skip >= size:
        raise ValueError(
            f"the dataset holds {size} samples and the search set uses {min(skip, size)}: none is left for "
            "validation; lower data.n_eval or add images"
        )
    if skip + n > size:
        what = "validation" if skip else "evaluation"
        log.warning("%d %s samples asked for, the dataset holds %d more: using all of them", n, what, size - skip)
    order = torch.randperm(size, generator=torch.Generator().manual_seed(seed))[skip : skip + n].sort().values
    xs, ys, masks = zip(*(dataset[int(i)] for i in order), strict=True)
    return torch.stack(xs), torch.stack([torch.as_tensor(y, dtype=torch.long) for y in ys]), torch.stack(masks)
