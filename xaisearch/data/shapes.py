"""Synthetic "shapes" benchmark: RGB scenes whose class is decided by one target object.

Each scene holds one *target* object, whose shape is the class, among 1–3 *distractors* drawn
from a disjoint set of shapes. Colours are random, so colour carries no class information, and
objects never overlap (their boxes keep a one-pixel gap), so the target's pixel mask is exact:
it is the set of pixels the renderer painted for the target, nothing else.

Determinism: scene ``i`` of split ``split`` under ``seed`` is drawn from its own generator
``numpy.random.default_rng([seed, split_id, i])``, so a scene never depends on how many others
were generated with it, and the train and test splits never share a stream.

Ideas from CLEVR-XAI (ground truth from the generator's object list; strict and lenient masks)
and BlockMNIST (a signal region among null regions).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np

TARGET_SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "cross")
DISTRACTOR_SHAPES: tuple[str, ...] = ("ring", "bar", "hollow_square")
BACKGROUND_GREY = 0.5
_MAX_PLACEMENT_TRIES = 200

Split = Literal["train", "test", "val", "heldout"]  # heldout: the validation images of a search
GroundTruth = Literal["target", "all_objects"]


@dataclass(frozen=True)
class SceneObject:
    """One object of a scene: its shape, RGB colour in [0, 1] and box ``(top, left, size)``."""

    kind: str
    colour: tuple[float, float, float]
    top: int
    left: int
    size: int
    is_target: bool

    @property
    def box(self) -> tuple[int, int, int, int]:
        """Box as ``(y0, x0, y1, x1)`` with exclusive ends, in pixels."""
        return (self.top, self.left, self.top + self.size, self.left + self.size)


@dataclass(frozen=True)
class Scene:
    """Everything needed to render one image again, with or without some of its objects."""

    image_size: int
    objects: tuple[SceneObject, ...]
    noise_seed: int
    noise_std: float

    @property
    def label(self) -> int:
        return TARGET_SHAPES.index(self.target.kind)

    @property
    def target(self) -> SceneObject:
        return next(obj for obj in self.objects if obj.is_target)


@dataclass
class ShapesBatch:
    """A rendered batch: ``x`` float32 (N,3,H,W) in [0,1], ``y`` int64 (N,), masks uint8 (N,1,H,W)."""

    x: np.ndarray
    y: np.ndarray
    target_mask: np.ndarray
    all_objects_mask: np.ndarray
    scenes: list[Scene] = field(default_factory=list)

    def mask(self, ground_truth: GroundTruth = "target") -> np.ndarray:
        """The strict (target only) or lenient (every object) ground-truth mask."""
        return self.target_mask if ground_truth == "target" else self.all_objects_mask

    def boxes(self) -> list[list[tuple[str, bool, tuple[int, int, int, int]]]]:
        """Per image, one ``(kind, is_target, (y0, x0, y1, x1))`` entry per object."""
        return [[(obj.kind, obj.is_target, obj.box) for obj in scene.objects] for scene in self.scenes]

    def __len__(self) -> int:
        return len(self.y)


def shape_mask(kind: str, size: int) -> np.ndarray:
    """Boolean ``size``×``size`` footprint of a shape; every shape touches its box on some side."""
    centre = (size - 1) / 2.0
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    radius = np.hypot(yy - centre, xx - centre)
    thickness = max(1, size // 4)
    if kind == "circle":
        return radius <= size / 2.0
    if kind == "square":
        inset = max(1, size // 10)
        return (yy >= inset) & (yy < size - inset) & (xx >= inset) & (xx < size - inset)
    if kind == "triangle":
        # apex at the top centre, base on the bottom row
        half_width = (yy + 1) / size * (size / 2.0)
        return np.abs(xx - centre) <= half_width
    if kind == "cross":
        band = np.abs(np.arange(size) - centre) < thickness / 2.0 + 0.5
        return band[:, None] | band[None, :]
    if kind == "ring":
        return (radius <= size / 2.0) & (radius > size / 2.0 - thickness)
    if kind == "bar":
        band = np.abs(np.arange(size) - centre) < thickness / 2.0 + 0.5
        return np.broadcast_to(band[:, None], (size, size)).copy()
    if kind == "hollow_square":
        outer = np.ones((size, size), dtype=bool)
        outer[thickness:-thickness, thickness:-thickness] = False
        return outer
    raise ValueError(f"unknown shape kind {kind!r}; known: {TARGET_SHAPES + DISTRACTOR_SHAPES}")


def _split_id(split: str) -> int:
    return zlib.crc32(split.encode())


def _random_colour(rng: np.random.Generator) -> tuple[float, float, float]:
    """A colour that stands out from the grey background (mean channel distance ≥ 0.25)."""
    while True:
        colour = rng.uniform(0.0, 1.0, size=3)
        if np.abs(colour - BACKGROUND_GREY).mean() >= 0.25:
            return (float(colour[0]), float(colour[1]), float(colour[2]))


def _place(rng: np.random.Generator, image_size: int, size: int, taken: list[tuple[int, int, int]]) -> tuple[int, int]:
    """Top-left corner of a box that keeps a one-pixel gap to every box in ``taken``."""
    for _ in range(_MAX_PLACEMENT_TRIES):
        top, left = (int(v) for v in rng.integers(0, image_size - size + 1, size=2))
        if all(
            top + size + 1 <= t or t + s + 1 <= top or left + size + 1 <= lf or lf + s + 1 <= left for t, lf, s in taken
        ):
            return top, left
    raise RuntimeError(f"could not place a {size}px object in a {image_size}px image; lower object_fraction")


def sample_scene(
    rng: np.random.Generator,
    image_size: int = 48,
    object_fraction: float = 0.22,
    distractors: tuple[int, int] = (1, 3),
    noise_std: float = 0.05,
) -> Scene:
    """Draw a scene description: one target, ``distractors`` (inclusive range) other objects."""
    label = int(rng.integers(len(TARGET_SHAPES)))
    n_distractors = int(rng.integers(distractors[0], distractors[1] + 1))
    base = max(5, round(image_size * object_fraction))
    taken: list[tuple[int, int, int]] = []
    objects: list[SceneObject] = []
    kinds = [TARGET_SHAPES[label]] + [str(k) for k in rng.choice(DISTRACTOR_SHAPES, size=n_distractors)]
    for index, kind in enumerate(kinds):
        size = int(base + rng.integers(-1, 2))
        top, left = _place(rng, image_size, size, taken)
        taken.append((top, left, size))
        objects.append(SceneObject(kind, _random_colour(rng), top, left, size, is_target=index == 0))
    return Scene(image_size, tuple(objects), noise_seed=int(rng.integers(2**31)), noise_std=noise_std)


def render(scene: Scene, remove: tuple[int, ...] = ()) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Render ``scene`` as (image (3,H,W) float32, target mask (H,W) bool, all-objects mask (H,W) bool).

    ``remove`` lists object indices to leave out: the same background and the other objects, an
    in-distribution counterfactual (FunnyBirds-style intervention).
    """
    n = scene.image_size
    noise = np.random.default_rng(scene.noise_seed).normal(0.0, scene.noise_std, size=(3, n, n))
    image = (BACKGROUND_GREY + noise).astype(np.float32)
    target = np.zeros((n, n), dtype=bool)
    everything = np.zeros((n, n), dtype=bool)
    for index, obj in enumerate(scene.objects):
        if index in remove:
            continue
        footprint = np.zeros((n, n), dtype=bool)
        footprint[obj.top : obj.top + obj.size, obj.left : obj.left + obj.size] = shape_mask(obj.kind, obj.size)
        image[:, footprint] = np.asarray(obj.colour, dtype=np.float32)[:, None]
        everything |= footprint
        if obj.is_target:
            target |= footprint
    return np.clip(image, 0.0, 1.0), target, everything


def intervene(scene: Scene, remove: tuple[int, ...]) -> Scene:
    """The same scene without the objects at ``remove`` (the label still names the original target)."""
    kept = tuple(obj for index, obj in enumerate(scene.objects) if index not in remove)
    if not any(obj.is_target for obj in kept):
        raise ValueError("intervene: removing the target leaves a scene without a class; render(..., remove=) instead")
    return replace(scene, objects=kept)


def generate(
    n: int,
    seed: int = 0,
    split: Split = "train",
    image_size: int = 48,
    object_fraction: float = 0.22,
    distractors: tuple[int, int] = (1, 3),
    noise_std: float = 0.05,
) -> ShapesBatch:
    """Generate ``n`` scenes of ``split``; the same arguments always give the same arrays."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    scenes = [
        sample_scene(
            np.random.default_rng([seed, _split_id(split), index]),
            image_size=image_size,
            object_fraction=object_fraction,
            distractors=distractors,
            noise_std=noise_std,
        )
        for index in range(n)
    ]
    rendered = [render(scene) for scene in scenes]
    x = np.stack([r[0] for r in rendered]) if n else np.zeros((0, 3, image_size, image_size), np.float32)
    target = np.stack([r[1] for r in rendered]) if n else np.zeros((0, image_size, image_size), bool)
    everything = np.stack([r[2] for r in rendered]) if n else np.zeros((0, image_size, image_size), bool)
    return ShapesBatch(
        x=x,
        y=np.asarray([scene.label for scene in scenes], dtype=np.int64),
        target_mask=target[:, None].astype(np.uint8),
        all_objects_mask=everything[:, None].astype(np.uint8),
        scenes=scenes,
    )
