"""Datasets by name, importable without torch: what a study file's ``data.name`` may say.

An entry says what the study file must give for it (a ``root`` holding ``holder``, which splits
and mask sources it has) and which function opens it, imported on first use. ``shapes`` is
synthetic: generated from the seed, no root, no opener.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from xaisearch.registry import Registry


@dataclass(frozen=True)
class DatasetEntry:
    name: str
    labels: int | None  # how many label values it has (a model needs as many outputs); None: the tree says
    holder: str | None = None  # the folder under ``root`` that holds it; None: synthetic
    splits: tuple[str, ...] = ()
    masks: tuple[str, ...] = ()  # mask sources to choose from; () : one fixed source (say so in ``fixed_masks``)
    fixed_masks: str = ""
    opener: str = ""  # "module:function(root, split, classes, masks, geometry) -> SampleDataset"

    @property
    def real(self) -> bool:
        """Read from disk (needs ``root``; ImageNet-normalised inputs), not generated."""
        return self.holder is not None

    def open(self, **kwargs: Any) -> Any:
        module, function = self.opener.split(":")
        return getattr(importlib.import_module(module), function)(**kwargs)


DATASETS: Registry[DatasetEntry] = Registry("dataset")
for _entry in (
    DatasetEntry("shapes", labels=4),  # data.shapes.TARGET_SHAPES
    DatasetEntry(
        "voc",
        labels=20,  # VOC_CLASSES; labels stay VOC's indices when ``classes`` picks some
        holder="VOCdevkit/",
        splits=("train", "val", "trainval"),
        masks=("segmentation", "boxes"),
        opener="xaisearch.data.voc:open_voc",
    ),
    DatasetEntry(
        "imagenet",
        labels=None,  # the tree's class list (1000 for ILSVRC; a test tree has fewer)
        holder="ILSVRC/",
        splits=("train", "val"),
        fixed_masks="always uses its boxes",
        opener="xaisearch.data.imagenet:open_imagenet",
    ),
):
    DATASETS.add(_entry.name, _entry)


def real_datasets() -> list[str]:
    return [name for name, entry in DATASETS.items() if entry.real]
