"""Pascal VOC as one sample per (image, class present) pair, with that class's exact mask.

This is Pahde et al.'s ``VOCSingleClassSegmentation`` (reference: paper-and-data.md §5.1): the paper
explains each class an image holds on its own, so an image with a dog and a person is two samples.

* ``masks="segmentation"`` (what the paper ran): ids from ``ImageSets/Segmentation/<split>.txt``; the
  mask is ``SegmentationClass == class index + 1``. Void (255, the boundary band) counts as outside.
* ``masks="boxes"``: ids from ``ImageSets/Main/<split>.txt``; the mask is the union of the class's
  boxes, allocated ``H × W``. The reference allocated ``np.zeros(img.size)`` (``W × H``) and so
  transposed masks of non-square images; ours are not. Difficult objects are dropped unless asked for,
  as the VOC detection benchmark does.

The index (which classes each image holds) is built once, from the PNGs or XMLs; images load lazily.
Sample order is pinned: sorted image ids, then class index.
"""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from collections.abc import Sequence
from pathlib import Path
from typing import Literal, cast

import numpy as np
import torch
from torch.utils.data import Dataset

from xaisearch.data.preprocess import Geometry, Sample, prepare

VOC_CLASSES: tuple[str, ...] = (
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)
MaskSource = Literal["segmentation", "boxes"]
MASK_SOURCES: tuple[str, ...] = ("segmentation", "boxes")
VOID = 255
_ROOT_FIX = "point the data root at the folder that holds VOCdevkit/"

# (y0, x0, y1, x1): 0-based pixel rows and columns, exclusive ends
Box = tuple[int, int, int, int]


class VOCClassMasks(Dataset[Sample]):
    """``(x, y, mask)`` per (image, class) pair: ``x`` from :func:`prepare`, ``y`` an int64 scalar, ``mask`` S×S bool.

    ``root`` is the folder that holds ``VOCdevkit/``, as for torchvision's VOC datasets.
    ``classes`` keeps only the named classes (``None``: all 20).
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "val",
        year: str = "2012",
        geometry: Geometry = Geometry(),
        masks: MaskSource = "segmentation",
        classes: Sequence[str] | None = None,
        include_difficult: bool = False,
    ) -> None:
        if masks not in MASK_SOURCES:
            raise ValueError(f"masks must be one of {MASK_SOURCES}, got {masks!r}")
        self.base = Path(root) / "VOCdevkit" / f"VOC{year}"
        if not self.base.is_dir():
            raise FileNotFoundError(f"VOC {year} not found: no folder {self.base}; {_ROOT_FIX}")
        self.split = split
        self.geometry = geometry
        self.masks: MaskSource = masks
        self.include_difficult = include_difficult
        keep = _class_indices(classes)
        self._boxes: dict[str, dict[int, list[Box]]] = {}
        self.items: list[tuple[str, int]] = []
        for image_id in self._image_ids():
            present = self._classes_in(image_id)
            self.items.extend((image_id, index) for index in sorted(present) if index in keep)
        if not self.items:
            wanted = "any class" if classes is None else f"the classes {list(classes)}"
            raise ValueError(f"no samples: VOC{year} {split} ({masks}) has no image with {wanted}")

    def _image_ids(self) -> list[str]:
        folder = "Segmentation" if self.masks == "segmentation" else "Main"
        path = self.base / "ImageSets" / folder / f"{self.split}.txt"
        if not path.is_file():
            raise FileNotFoundError(f"VOC split file not found: {path}; check the split name, or {_ROOT_FIX}")
        # Main/<split>.txt holds one id per line; take the first field to be safe with "<id> <flag>" files
        return sorted({line.split()[0] for line in path.read_text().splitlines() if line.strip()})

    def _classes_in(self, image_id: str) -> set[int]:
        """Class indices present in one image; for boxes, also caches the kept boxes per class."""
        if self.masks == "segmentation":
            values = np.unique(self._segmentation(image_id))
            return {int(v) - 1 for v in values if v != 0 and v != VOID}
        boxes = _read_boxes(self._file("Annotations", image_id, ".xml"), self.include_difficult)
        self._boxes[image_id] = boxes
        return set(boxes)

    def _file(self, folder: str, image_id: str, suffix: str) -> Path:
        path = self.base / folder / f"{image_id}{suffix}"
        if not path.is_file():
            raise FileNotFoundError(f"VOC file not found: {path} (listed in the {self.split} split); {_ROOT_FIX}")
        return path

    def _segmentation(self, image_id: str) -> np.ndarray:
        """The class-index map: a palette PNG read as its indices, not its colours."""
        from PIL import Image

        path = self._file("SegmentationClass", image_id, ".png")
        with Image.open(path) as png:
            values = np.asarray(png)
        if values.ndim != 2:
            raise ValueError(f"{path} is not a palette PNG of class indices (shape {values.shape}); use VOC's own PNGs")
        unknown = sorted(set(np.unique(values).tolist()) - set(range(len(VOC_CLASSES) + 1)) - {VOID})
        if unknown:
            raise ValueError(f"{path} holds values {unknown}; VOC class maps hold 0..20 and 255 (void)")
        return values

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> Sample:
        from PIL import Image

        image_id, class_index = self.items[index]
        with Image.open(self._file("JPEGImages", image_id, ".jpg")) as jpeg:
            image = jpeg.convert("RGB")
        if self.masks == "segmentation":
            mask = self._segmentation(image_id) == class_index + 1
        else:
            mask = np.zeros((image.height, image.width), dtype=bool)
            for y0, x0, y1, x1 in self._boxes[image_id][class_index]:
                mask[y0:y1, x0:x1] = True
        x, region = prepare(image, mask, self.geometry)
        return x, torch.tensor(class_index, dtype=torch.int64), region

    def __repr__(self) -> str:
        return (
            f"VOCClassMasks({str(self.base)!r}, split={self.split!r}, masks={self.masks!r}, "
            f"geometry={self.geometry!r}, include_difficult={self.include_difficult}, samples={len(self)})"
        )


def _class_indices(classes: Sequence[str] | None) -> set[int]:
    if classes is None:
        return set(range(len(VOC_CLASSES)))
    if isinstance(classes, str):
        classes = [classes]
    unknown = [name for name in classes if name not in VOC_CLASSES]
    if unknown:
        raise ValueError(f"unknown VOC class {unknown[0]!r}; valid names: {', '.join(VOC_CLASSES)}")
    return {VOC_CLASSES.index(name) for name in classes}


def _read_boxes(path: Path, include_difficult: bool) -> dict[int, list[Box]]:
    """Kept boxes per class index from one annotation XML.

    VOC corners are 1-based and inclusive, so ``xmin..xmax`` covers 0-based columns
    ``xmin - 1 .. xmax - 1``: the slice ``[xmin - 1, xmax)``. A few VOC files write corners as decimals;
    they are rounded to the nearest pixel.
    """
    boxes: dict[int, list[Box]] = {}
    try:
        objects = list(ElementTree.parse(path).getroot().iter("object"))
    except ElementTree.ParseError as error:
        raise ValueError(f"{path} is not a readable annotation XML ({error}); use VOC's own annotations") from None
    for obj in objects:
        name = (obj.findtext("name") or "").strip()
        if name not in VOC_CLASSES:
            raise ValueError(f"{path}: unknown object name {name!r}; valid names: {', '.join(VOC_CLASSES)}")
        if (obj.findtext("difficult") or "0").strip() == "1" and not include_difficult:
            continue
        corners = [obj.findtext(f"bndbox/{key}") for key in ("xmin", "ymin", "xmax", "ymax")]
        if None in corners:
            raise ValueError(f"{path}: object {name!r} lacks a complete <bndbox> (xmin, ymin, xmax, ymax)")
        xmin, ymin, xmax, ymax = (round(float(text or "")) for text in corners)
        boxes.setdefault(VOC_CLASSES.index(name), []).append((max(ymin - 1, 0), max(xmin - 1, 0), ymax, xmax))
    return boxes


def open_voc(root: Path, split: str, classes: Sequence[str] | None, masks: str, geometry: Geometry) -> VOCClassMasks:
    """The study file's ``data: {name: voc}`` (the opener named in ``data.catalog``)."""
    return VOCClassMasks(root, split=split, geometry=geometry, masks=cast(MaskSource, masks), classes=classes)
