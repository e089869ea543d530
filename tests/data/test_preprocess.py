"""One geometry for image and mask: exact nearest-neighbour masks, ImageNet normalisation, both modes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xaisearch.data.preprocess import IMAGENET_MEAN, IMAGENET_STD, Geometry, input_bounds, prepare


def striped(height: int, width: int) -> np.ndarray:
    """An RGB image whose red channel is 255 on the left half and 0 on the right."""
    image = np.zeros((height, width, 3), dtype=np.uint8)
    image[:, : width // 2, 0] = 255
    return image


def test_resize_keeps_a_corner_region_in_its_corner_and_the_mask_binary():
    image, mask = striped(40, 64), np.zeros((40, 64), dtype=np.uint8)
    mask[:10, 48:] = 7  # top-right quarter of a non-square image; any nonzero value is inside
    x, region = prepare(image, mask, Geometry(size=16, mode="resize"))
    assert x.shape == (3, 16, 16) and region.shape == (16, 16) and region.dtype == torch.bool
    expected = torch.zeros(16, 16, dtype=torch.bool)
    expected[:4, 12:] = True
    assert torch.equal(region, expected)


def test_resize_crop_takes_the_centre_of_the_shorter_side():
    image, mask = striped(64, 128), np.zeros((64, 128), dtype=bool)
    mask[:, :16] = True  # the left border: cropped away by a centre crop
    mask[28:36, 60:68] = True  # the centre: kept
    geometry = Geometry(size=56, mode="resize_crop")
    assert geometry.resize_size == 64
    _, region = prepare(image, mask, geometry)
    assert region.shape == (56, 56)
    assert region[24:32, 24:32].all() and int(region.sum()) == 64


def test_an_image_of_the_target_size_is_only_normalised():
    image = np.full((8, 8, 3), 255, dtype=np.uint8)
    mask = np.eye(8, dtype=bool)
    x, region = prepare(image, mask, Geometry(size=8))
    white = torch.tensor([(1 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD, strict=True)])
    torch.testing.assert_close(x, white.view(3, 1, 1).expand(3, 8, 8))
    assert torch.equal(region, torch.from_numpy(mask))
    low, high = input_bounds(Geometry())
    torch.testing.assert_close(torch.tensor(high), white)
    assert all(lo < 0 < hi for lo, hi in zip(low, high, strict=True))


def test_bad_geometry_and_shapes_are_refused():
    with pytest.raises(ValueError, match="preprocessing"):
        Geometry(mode="squash")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="mask shape"):
        prepare(striped(10, 12), np.zeros((12, 10)), Geometry(size=4))


def test_the_report_shows_a_normalised_image_in_its_own_colours():
    from xaisearch.report.heatmaps import image_rgb

    pixels = (np.random.default_rng(0).random((8, 8, 3)) * 255).astype(np.uint8)
    geometry = Geometry(size=8)
    x, _ = prepare(pixels, np.zeros((8, 8)), geometry)
    shown = image_rgb(x, *input_bounds(geometry)).astype(int)
    assert np.abs(shown - pixels.astype(int)).max() <= 1
    assert np.array_equal(image_rgb(torch.ones(3, 2, 2)), np.full((2, 2, 3), 255, dtype=np.uint8))
