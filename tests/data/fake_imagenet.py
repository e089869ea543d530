"""A tiny ILSVRC CLS-LOC tree in the real on-disk format, with synthetic images only.

ImageNet's terms forbid redistributing its images, so every JPEG here is random noise. Images
are 40×64 (H×W) unless stated, so a transposed mask could not pass for a right one.

train (class folders: goldfish, great white shark, tiger shark):
  goldfish ``n01443537_1``: one box in the top-right corner (x 48..63, y 0..9);
  goldfish ``n01443537_2``: goldfish boxes top-left (x 0..15, y 0..9) and bottom-right
    (x 48..63, y 30..39), plus a tench box in the centre (x 24..39, y 15..24);
  goldfish ``n01443537_3``: no XML, so not a sample;
  great white shark ``n01484850_5``: a box in the bottom-left corner (x 0..15, y 30..39);
  tiger shark ``n01491361_7``: the XML declares 80×128 and a box x 64..127, y 0..39, i.e. the
    top-right quarter once scaled to the real 40×64 image.
val:
  ``ILSVRC2012_val_00000001``: great white shark, a box in the bottom-right corner;
  ``ILSVRC2012_val_00000002``: objects of two wnids, so not a sample;
  ``ILSVRC2012_val_00000003``: no XML, so not a sample.
The mapping file (optional) lists 7 wnids, shuffled, two of them named "crane" as in ImageNet.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

TENCH, GOLDFISH, WHITE_SHARK, TIGER_SHARK = "n01440764", "n01443537", "n01484850", "n01491361"
MAPPING = [
    "n01491361 tiger shark, Galeocerdo cuvieri",
    "n01440764 tench, Tinca tinca",
    "n03126707 crane",
    "n01494475 hammerhead, hammerhead shark",
    "n01443537 goldfish, Carassius auratus",
    "n02012849 crane",
    "n01484850 great white shark, white shark, man-eater, man-eating shark, Carcharodon carcharias",
]
HEIGHT, WIDTH = 40, 64


def write_jpeg(path: Path, height: int = HEIGHT, width: int = WIDTH, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, format="JPEG")


def write_xml(path: Path, objects: list[tuple[str, tuple[int, int, int, int]]], size=(HEIGHT, WIDTH)) -> None:
    """A VOC-schema annotation; ``objects`` are ``(wnid, (xmin, ymin, xmax, ymax))``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    parts = [
        f"<object><name>{wnid}</name><pose>Unspecified</pose><truncated>0</truncated><difficult>0</difficult>"
        f"<bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>"
        for wnid, (x0, y0, x1, y1) in objects
    ]
    path.write_text(
        f"<annotation><folder>{path.parent.name}</folder><filename>{path.stem}</filename>"
        f"<source><database>ILSVRC_2017</database></source>"
        f"<size><width>{size[1]}</width><height>{size[0]}</height><depth>3</depth></size>"
        f"<segmented>0</segmented>{''.join(parts)}</annotation>\n",
        encoding="utf-8",
    )


def make_tree(root: Path, mapping: bool = True) -> Path:
    """Write the tree described in the module docstring under ``root``; return ``root``."""
    images, notes = root / "ILSVRC/Data/CLS-LOC", root / "ILSVRC/Annotations/CLS-LOC"
    train = {
        f"{GOLDFISH}_1": [(GOLDFISH, (48, 0, 63, 9))],
        f"{GOLDFISH}_2": [(GOLDFISH, (0, 0, 15, 9)), (TENCH, (24, 15, 39, 24)), (GOLDFISH, (48, 30, 63, 39))],
        f"{GOLDFISH}_3": None,
        f"{WHITE_SHARK}_5": [(WHITE_SHARK, (0, 30, 15, 39))],
    }
    for seed, (stem, objects) in enumerate(train.items()):
        wnid = stem.split("_")[0]
        write_jpeg(images / "train" / wnid / f"{stem}.JPEG", seed=seed)
        if objects is not None:
            write_xml(notes / "train" / wnid / f"{stem}.xml", objects)
    write_jpeg(images / "train" / TIGER_SHARK / f"{TIGER_SHARK}_7.JPEG", seed=10)
    write_xml(notes / "train" / TIGER_SHARK / f"{TIGER_SHARK}_7.xml", [(TIGER_SHARK, (64, 0, 127, 39))], (80, 128))
    val = {
        "ILSVRC2012_val_00000001": [(WHITE_SHARK, (48, 30, 63, 39))],
        "ILSVRC2012_val_00000002": [(GOLDFISH, (0, 0, 9, 9)), (TENCH, (20, 20, 29, 29))],
        "ILSVRC2012_val_00000003": None,
    }
    for seed, (stem, objects) in enumerate(val.items()):
        write_jpeg(images / "val" / f"{stem}.JPEG", seed=20 + seed)
        if objects is not None:
            write_xml(notes / "val" / f"{stem}.xml", objects)
    if mapping:
        (root / "LOC_synset_mapping.txt").write_text("\n".join(MAPPING) + "\n", encoding="utf-8")
    return root
