"""ILSVRC CLS-LOC images with their class's bounding boxes as exact masks (paper-and-data.md §5.2).

Reads the layout of the Kaggle "ImageNet Object Localization" download and of ILSVRC2017 as it
lies on disk, offline; torchvision's ``ImageNet`` exposes no boxes and needs the devkit.

* ``ILSVRC/Data/CLS-LOC/{train/<wnid>/<wnid>_<n>.JPEG, val/ILSVRC2012_val_<8 digits>.JPEG}``;
* ``ILSVRC/Annotations/CLS-LOC/{train/<wnid>/<wnid>_<n>.xml, val/ILSVRC2012_val_<8 digits>.xml}``
  in the VOC schema;
* optionally ``LOC_synset_mapping.txt`` next to ``ILSVRC/`` (``n01440764 tench, Tinca tinca``).

The class index is the wnid's position among all wnids in sorted order, which is what torchvision
weights use; the devkit's own numbering differs, so labels always go through wnid strings.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal, cast

import numpy as np
import torch
from torch.utils.data import Dataset

from xaisearch.data.preprocess import Geometry, Sample, prepare

Split = Literal["train", "val"]
Box = tuple[int, int, int, int]
MAPPING_FILE = "LOC_synset_mapping.txt"
IMAGE_FOLDER = Path("ILSVRC/Data/CLS-LOC")
ANNOTATION_FOLDER = Path("ILSVRC/Annotations/CLS-LOC")
_IMAGE_SUFFIXES = (".jpeg", ".jpg")
_WNID = re.compile(r"n\d{8}")
_FIX = "point data root at the folder that holds ILSVRC/"


def _require(path: Path, what: str) -> Path:
    if not path.exists():
        raise FileNotFoundError(f"{what} not found: {path} does not exist; {_FIX}")
    return path


def _read_mapping(root: Path) -> dict[str, str] | None:
    """wnid → the mapping file's first class name, or ``None`` when the file is absent."""
    path = root / MAPPING_FILE
    if not path.is_file():
        return None
    names: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        wnid, _, rest = line.strip().partition(" ")
        if wnid:
            names[wnid] = rest.split(",")[0].strip()
    return names


def class_index(root: str | Path) -> dict[str, int]:
    """wnid → class index, the wnid's position among all wnids sorted.

    The wnids come from ``LOC_synset_mapping.txt`` when present, else from the folder names of
    ``ILSVRC/Data/CLS-LOC/train``; without the mapping file those folders must be all 1000
    classes, or the indices will not match pretrained weights.
    """
    root = _require(Path(root), "ImageNet data root")
    mapping = _read_mapping(root)
    wnids: Iterable[str]
    if mapping is not None:
        wnids = mapping
    else:
        train = root / IMAGE_FOLDER / "train"
        if not train.is_dir():
            raise FileNotFoundError(f"ImageNet class list not found: neither {root / MAPPING_FILE} nor {train}; {_FIX}")
        wnids = [p.name for p in train.iterdir() if p.is_dir()]
    return {wnid: index for index, wnid in enumerate(sorted(wnids))}


def class_names(root: str | Path) -> dict[str, str]:
    """wnid → first human-readable name in ``LOC_synset_mapping.txt`` (empty without that file)."""
    return _read_mapping(_require(Path(root), "ImageNet data root")) or {}


def box_mask(boxes: Sequence[Box], shape: tuple[int, int], annotated: tuple[int, int] | None = None) -> np.ndarray:
    """The union of ``boxes`` as an ``H×W`` bool mask, ``shape = (H, W)``.

    Boxes are ``(xmin, ymin, xmax, ymax)`` with both ends inclusive, as ImageNet counts them, and
    are clipped to the image. ``annotated = (H', W')`` is the size the XML declares; when it
    differs from ``shape`` the mask is drawn at that size and resampled to ``shape`` with
    nearest-neighbour, so the boxes follow the image they describe.
    """
    height, width = annotated if annotated is not None else shape
    mask = np.zeros((height, width), dtype=bool)
    for xmin, ymin, xmax, ymax in boxes:
        x0, y0, x1, y1 = max(xmin, 0), max(ymin, 0), min(xmax, width - 1), min(ymax, height - 1)
        if x0 <= x1 and y0 <= y1:
            mask[y0 : y1 + 1, x0 : x1 + 1] = True
    if (height, width) == tuple(shape):
        return mask
    rows = np.minimum(((np.arange(shape[0]) + 0.5) * height / shape[0]).astype(np.int64), height - 1)
    cols = np.minimum(((np.arange(shape[1]) + 0.5) * width / shape[1]).astype(np.int64), width - 1)
    return mask[np.ix_(rows, cols)]


def _parse(path: Path) -> tuple[tuple[int, int] | None, list[tuple[str, Box]]]:
    """``((H, W) declared or None, [(wnid, box), ...])`` from one VOC-schema XML."""
    try:
        tree = ElementTree.parse(path).getroot()
        size = tree.find("size")
        height = int(size.findtext("height", "0")) if size is not None else 0
        width = int(size.findtext("width", "0")) if size is not None else 0
        objects: list[tuple[str, Box]] = []
        for obj in tree.iter("object"):
            box = obj.find("bndbox")
            if box is None:
                continue
            xmin, ymin, xmax, ymax = (int(float(box.findtext(k, ""))) for k in ("xmin", "ymin", "xmax", "ymax"))
            objects.append((obj.findtext("name", "").strip(), (xmin, ymin, xmax, ymax)))
    except (ElementTree.ParseError, ValueError) as error:
        raise ValueError(f"cannot read ImageNet annotation {path}: {error}") from error
    return ((height, width) if height > 0 and width > 0 else None), objects


def _images(folder: Path) -> dict[str, Path]:
    """File stem → image path for the JPEGs in ``folder`` (empty when the folder is absent)."""
    if not folder.is_dir():
        return {}
    return {p.stem: p for p in folder.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES}


def _resolve(requested: Sequence[str], index: dict[str, int], names: dict[str, str]) -> list[str]:
    """wnids for a list of wnids or class names; underscores match spaces (``tree_frog``)."""
    by_name: dict[str, list[str]] = {}
    for wnid, name in names.items():
        by_name.setdefault(name.replace("_", " "), []).append(wnid)
    resolved = []
    for item in requested:
        if item in index:
            resolved.append(item)
            continue
        matches = by_name.get(item.replace("_", " "), [])
        if len(matches) > 1:
            raise ValueError(f"ImageNet class name {item!r} is ambiguous ({', '.join(sorted(matches))}); give the wnid")
        if not matches:
            hint = "" if names else f" (class names need {MAPPING_FILE} in the data root)"
            raise ValueError(f"unknown ImageNet class {item!r}: neither a known wnid nor a class name{hint}")
        resolved.append(matches[0])
    return sorted(set(resolved))


class ImageNetBoxes(Dataset[Sample]):
    """ILSVRC images that have a box annotation, as ``(x, y, mask)``.

    A sample is an image with an annotation XML. Its class is its wnid: the folder in ``train``,
    the objects' ``<name>`` in ``val``; val images whose objects name several different wnids
    are skipped, since one label could not describe them, and so are images with no box of their
    own class, whose mask would be empty. The mask is the union of the class's boxes (boxes of
    other wnids are ignored), allocated ``H×W``, then transformed with the image by ``prepare``.

    ``wnids`` restricts the classes, given as wnids or as class names from the mapping file.
    The index is built here, parsing every XML once; images are read in ``__getitem__``. Order
    is sorted by ``(wnid, file name)``, so it does not depend on the file system.
    """

    def __init__(
        self,
        root: str | Path,
        split: Split = "val",
        wnids: Sequence[str] | None = None,
        geometry: Geometry = Geometry(),
    ) -> None:
        if split not in ("train", "val"):
            raise ValueError(f"ImageNet split must be 'train' or 'val', got {split!r}")
        root = _require(Path(root), "ImageNet data root")
        image_dir = _require(root / IMAGE_FOLDER / split, f"ImageNet {split} images")
        annotation_dir = _require(root / ANNOTATION_FOLDER / split, f"ImageNet {split} annotations")
        index = class_index(root)
        self.geometry = geometry
        self.wnids: list[str] = sorted(index) if wnids is None else _resolve(wnids, index, class_names(root))
        wanted = set(self.wnids)
        found: list[tuple[str | None, Path, Path]] = []  # (wnid if known from the folder, image, xml)
        if split == "train":
            for wnid in self.wnids:
                images = _images(image_dir / wnid)
                found += [(wnid, images[x.stem], x) for x in (annotation_dir / wnid).glob("*.xml") if x.stem in images]
        else:
            images = _images(image_dir)
            found += [(None, images[x.stem], x) for x in annotation_dir.glob("*.xml") if x.stem in images]
        samples: list[tuple[str, Path, tuple[int, int] | None, list[Box]]] = []
        for folder_wnid, image, xml in found:
            annotated, objects = _parse(xml)
            if folder_wnid is not None:
                wnid = folder_wnid
            else:
                named = {obj_wnid for obj_wnid, _ in objects}
                if len(named) != 1:
                    continue
                wnid = named.pop()
                if wnid not in index:
                    raise ValueError(f"{xml} names wnid {wnid!r}, which is not in the class list; add {MAPPING_FILE}")
                if wnid not in wanted:
                    continue
            boxes = [box for obj_wnid, box in objects if obj_wnid == wnid]
            if boxes:
                samples.append((wnid, image, annotated, boxes))
        if not samples:
            which = "any wnid" if wnids is None else ", ".join(self.wnids)
            raise ValueError(f"no annotated ImageNet {split} images for {which} under {annotation_dir}")
        samples.sort(key=lambda s: (s[0], s[1].name))
        self.items: list[tuple[Path, int]] = [(image, index[wnid]) for wnid, image, _, _ in samples]
        self._boxes = [(annotated, boxes) for _, _, annotated, boxes in samples]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> Sample:
        from PIL import Image

        path, label = self.items[i]
        with Image.open(path) as image:
            picture = image.convert("RGB")
        annotated, boxes = self._boxes[i]
        mask = box_mask(boxes, (picture.height, picture.width), annotated)
        x, region = prepare(picture, mask, self.geometry)
        return x, torch.tensor(label, dtype=torch.int64), region


def open_imagenet(
    root: Path, split: str, classes: Sequence[str] | None, masks: str, geometry: Geometry
) -> ImageNetBoxes:
    """The study file's ``data: {name: imagenet}`` (the opener named in ``data.catalog``); its masks are its boxes."""
    return ImageNetBoxes(root, split=cast(Split, split), wnids=classes, geometry=geometry)
