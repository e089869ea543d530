"""A tiny Pascal VOC tree in the real on-disk format, for testing loaders offline (paper-and-data.md §6).

JPEGs, annotation XMLs with 1-based inclusive corners, palette PNGs of class indices (0 background,
255 void) and ``ImageSets/{Main,Segmentation}/<split>.txt``. Split files list ids out of order on
purpose, so a loader has to sort them itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

VOID = 255


@dataclass(frozen=True)
class FakeObject:
    """One annotated object: class name, 1-based inclusive corners ``(xmin, ymin, xmax, ymax)``, difficulty."""

    name: str
    corners: tuple[int, int, int, int]
    difficult: bool = False


@dataclass
class FakeImage:
    """One image: ``pixels`` H×W×3 uint8, ``segmentation`` H×W uint8 class map (``None``: not in Segmentation)."""

    image_id: str
    pixels: np.ndarray
    objects: list[FakeObject] = field(default_factory=list)
    segmentation: np.ndarray | None = None


def voc_palette() -> list[int]:
    """VOC's colour map (bit-interleaved class index), with void drawn cream as in the real PNGs."""
    palette = []
    for index in range(256):
        red = green = blue = 0
        value = index
        for shift in range(7, -1, -1):
            red |= ((value >> 0) & 1) << shift
            green |= ((value >> 1) & 1) << shift
            blue |= ((value >> 2) & 1) << shift
            value >>= 3
        palette += [red, green, blue]
    palette[3 * VOID : 3 * VOID + 3] = [224, 224, 192]
    return palette


def default_images() -> list[FakeImage]:
    """Three images whose content the tests know by heart.

    * ``2007_000039``: portrait 37 wide × 53 high, noise. Segmentation: a dog (value 12) with a void ring.
      Boxes: a dog in the top-right corner, and a difficult person (the only person).
    * ``2007_000032``: landscape 53 wide × 37 high, noise. Segmentation: a cat (value 8) left, void elsewhere.
      Boxes: a cat in the top-left corner, and two aeroplanes, one of them difficult.
    * ``2007_000033``: square 32 × 32, pure white. Segmentation: a person (15) and a bird (3), with void.
      Boxes: a bird at xmin=1, ymin=3, xmax=4, ymax=10.
    """
    noise = np.random.default_rng(0)

    portrait_map = np.zeros((53, 37), dtype=np.uint8)
    portrait_map[10:30, 5:20] = VOID
    portrait_map[11:29, 6:19] = 12
    portrait = FakeImage(
        "2007_000039",
        noise.integers(0, 256, size=(53, 37, 3), dtype=np.uint8),
        [FakeObject("dog", (28, 1, 37, 10)), FakeObject("person", (2, 30, 20, 50), difficult=True)],
        portrait_map,
    )

    landscape_map = np.full((37, 53), VOID, dtype=np.uint8)
    landscape_map[:, :30] = 0
    landscape_map[4:20, 2:25] = 8
    landscape = FakeImage(
        "2007_000032",
        noise.integers(0, 256, size=(37, 53, 3), dtype=np.uint8),
        [
            FakeObject("cat", (1, 1, 10, 8)),
            FakeObject("aeroplane", (20, 20, 30, 25)),
            FakeObject("aeroplane", (40, 5, 50, 15), difficult=True),
        ],
        landscape_map,
    )

    square_map = np.zeros((32, 32), dtype=np.uint8)
    square_map[2:12, 2:12] = 3
    square_map[15:30, 10:25] = VOID
    square_map[16:29, 11:24] = 15
    square = FakeImage(
        "2007_000033",
        np.full((32, 32, 3), 255, dtype=np.uint8),
        [FakeObject("bird", (1, 3, 4, 10))],
        square_map,
    )
    return [portrait, landscape, square]


def _annotation(image: FakeImage) -> str:
    height, width = image.pixels.shape[:2]
    objects = "".join(
        f"<object><name>{obj.name}</name><pose>Unspecified</pose><truncated>0</truncated>"
        f"<difficult>{int(obj.difficult)}</difficult><bndbox><xmin>{obj.corners[0]}</xmin>"
        f"<ymin>{obj.corners[1]}</ymin><xmax>{obj.corners[2]}</xmax><ymax>{obj.corners[3]}</ymax>"
        "</bndbox></object>"
        for obj in image.objects
    )
    return (
        f"<annotation><folder>VOC2012</folder><filename>{image.image_id}.jpg</filename>"
        f"<size><width>{width}</width><height>{height}</height><depth>3</depth></size>"
        f"<segmented>{int(image.segmentation is not None)}</segmented>{objects}</annotation>"
    )


def write_voc_tree(root: Path, images: list[FakeImage] | None = None, year: str = "2012", split: str = "val") -> Path:
    """Write ``images`` under ``root/VOCdevkit/VOC<year>`` and return ``root`` (what loaders take)."""
    images = default_images() if images is None else images
    base = root / "VOCdevkit" / f"VOC{year}"
    for folder in ("JPEGImages", "Annotations", "SegmentationClass", "ImageSets/Main", "ImageSets/Segmentation"):
        (base / folder).mkdir(parents=True, exist_ok=True)
    for image in images:
        Image.fromarray(image.pixels).save(base / "JPEGImages" / f"{image.image_id}.jpg", quality=95)
        (base / "Annotations" / f"{image.image_id}.xml").write_text(_annotation(image))
        if image.segmentation is not None:
            height, width = image.segmentation.shape
            png = Image.frombytes("P", (width, height), np.ascontiguousarray(image.segmentation).tobytes())
            png.putpalette(voc_palette())
            png.save(base / "SegmentationClass" / f"{image.image_id}.png")
    (base / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(f"{i.image_id}\n" for i in images))
    segmented = "".join(f"{i.image_id}\n" for i in images if i.segmentation is not None)
    (base / "ImageSets" / "Segmentation" / f"{split}.txt").write_text(segmented)
    return root
