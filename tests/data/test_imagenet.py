"""ILSVRC boxes as masks, run on a tiny real-format tree of synthetic images (tests/data/fake_imagenet.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.data.fake_imagenet import GOLDFISH, TENCH, TIGER_SHARK, WHITE_SHARK, make_tree
from xaisearch.data.imagenet import ImageNetBoxes, box_mask, class_index, class_names
from xaisearch.data.preprocess import Geometry

SMALL = Geometry(size=16, mode="resize")  # 40×64 → 16×16: rows shrink by 2.5, columns by 4


@pytest.fixture
def root(tmp_path):
    return make_tree(tmp_path)


def expected(*blocks: tuple[slice, slice]) -> torch.Tensor:
    mask = torch.zeros(16, 16, dtype=torch.bool)
    for rows, cols in blocks:
        mask[rows, cols] = True
    return mask


def sample(dataset: ImageNetBoxes, name: str):
    index = next(i for i, (path, _) in enumerate(dataset.items) if path.stem == name)
    return dataset[index]


def test_class_index_comes_from_the_mapping_file_else_from_the_train_folders(tmp_path):
    with_mapping = make_tree(tmp_path / "a")
    index = class_index(with_mapping)
    assert len(index) == 7 and index[TENCH] == 0 and index[GOLDFISH] == 1 and index[TIGER_SHARK] == 3
    assert class_names(with_mapping)[WHITE_SHARK] == "great white shark"
    without = make_tree(tmp_path / "b", mapping=False)
    assert class_index(without) == {GOLDFISH: 0, WHITE_SHARK: 1, TIGER_SHARK: 2}
    assert class_names(without) == {}
    labels = [int(y) for _, y in ImageNetBoxes(without, "train", geometry=SMALL).items]
    assert labels == [0, 0, 1, 2]


def test_train_samples_are_the_annotated_images_sorted_by_wnid_and_name(root):
    dataset = ImageNetBoxes(root, "train", geometry=SMALL)
    names = [path.stem for path, _ in dataset.items]
    assert names == [f"{GOLDFISH}_1", f"{GOLDFISH}_2", f"{WHITE_SHARK}_5", f"{TIGER_SHARK}_7"]  # _3 has no XML
    assert [label for _, label in dataset.items] == [1, 1, 2, 3]
    assert len(dataset) == 4 and dataset.wnids == sorted(class_index(root))
    _, y, _ = dataset[2]
    assert y.dtype == torch.int64 and y.ndim == 0 and int(y) == 2


def test_a_corner_box_of_a_non_square_image_stays_in_its_corner(root):
    dataset = ImageNetBoxes(root, "train", geometry=SMALL)
    _, _, top_right = sample(dataset, f"{GOLDFISH}_1")
    assert torch.equal(top_right, expected((slice(0, 4), slice(12, 16))))
    _, _, bottom_left = sample(dataset, f"{WHITE_SHARK}_5")
    assert torch.equal(bottom_left, expected((slice(12, 16), slice(0, 4))))


def test_the_mask_is_the_union_of_the_class_boxes_and_ignores_other_wnids(root):
    _, _, mask = sample(ImageNetBoxes(root, "train", geometry=SMALL), f"{GOLDFISH}_2")
    # the tench box in the centre (rows 6..9, columns 6..9 after resizing) is not part of it
    assert torch.equal(mask, expected((slice(0, 4), slice(0, 4)), (slice(12, 16), slice(12, 16))))


def test_boxes_follow_the_image_when_the_xml_declares_another_size(root):
    # the XML says 80×128 and x 64..127; read as pixels of the 40×64 image the box would fall outside
    _, _, mask = sample(ImageNetBoxes(root, "train", geometry=SMALL), f"{TIGER_SHARK}_7")
    assert torch.equal(mask, expected((slice(0, 8), slice(8, 16))))


def test_box_mask_counts_both_ends_clips_and_is_height_by_width():
    one_pixel = box_mask([(3, 2, 3, 2)], (5, 7))
    assert one_pixel.shape == (5, 7) and one_pixel.sum() == 1 and one_pixel[2, 3]
    clipped = box_mask([(60, 35, 70, 45), (-5, -5, 0, 0)], (40, 64))
    assert clipped[35:, 60:].all() and clipped[0, 0] and clipped.sum() == 5 * 4 + 1
    halved = box_mask([(10, 4, 19, 7)], (4, 16), annotated=(8, 32))
    reference = np.zeros((4, 16), dtype=bool)
    reference[2:4, 5:10] = True
    assert np.array_equal(halved, reference)


def test_val_takes_the_class_from_the_objects_and_skips_mixed_or_unannotated_images(root):
    dataset = ImageNetBoxes(root, "val", geometry=SMALL)
    assert [(path.name, label) for path, label in dataset.items] == [("ILSVRC2012_val_00000001.JPEG", 2)]
    _, y, mask = dataset[0]
    assert int(y) == 2 and torch.equal(mask, expected((slice(12, 16), slice(12, 16))))


def test_wnids_select_classes_by_wnid_or_by_name(root):
    by_wnid = ImageNetBoxes(root, "train", wnids=[TIGER_SHARK, WHITE_SHARK], geometry=SMALL)
    by_name = ImageNetBoxes(root, "train", wnids=["tiger_shark", "great white shark"], geometry=SMALL)
    assert by_wnid.wnids == by_name.wnids == [WHITE_SHARK, TIGER_SHARK]
    assert by_wnid.items == by_name.items and [label for _, label in by_name.items] == [2, 3]
    with pytest.raises(ValueError, match="'swordfish'"):
        ImageNetBoxes(root, "train", wnids=["swordfish"])
    with pytest.raises(ValueError, match="n02012849, n03126707"):
        ImageNetBoxes(root, "train", wnids=["crane"])


def test_classes_without_annotated_images_are_an_error_that_names_them(root):
    with pytest.raises(ValueError, match=f"train images for {TENCH}"):
        ImageNetBoxes(root, "train", wnids=["tench"])  # no folder of its own; its box in a goldfish XML
    with pytest.raises(ValueError, match=f"val images for {GOLDFISH}"):
        ImageNetBoxes(root, "val", wnids=[GOLDFISH])  # only in the mixed val image


def test_a_missing_root_or_split_names_the_path_and_the_fix(tmp_path, root):
    with pytest.raises(FileNotFoundError) as missing:
        ImageNetBoxes(tmp_path / "nowhere")
    message = str(missing.value)
    assert str(tmp_path / "nowhere") in message and "ILSVRC/" in message and "\n" not in message
    with pytest.raises(FileNotFoundError, match="ILSVRC/Data/CLS-LOC/val"):
        ImageNetBoxes(root / "ILSVRC")  # pointed one level too deep


@pytest.mark.parametrize("mode", ["resize", "resize_crop"])
def test_both_geometries_give_square_inputs_and_masks(root, mode):
    dataset = ImageNetBoxes(root, "train", geometry=Geometry(size=24, mode=mode))
    for x, y, mask in (dataset[i] for i in range(len(dataset))):
        assert x.shape == (3, 24, 24) and x.dtype == torch.float32
        assert mask.shape == (24, 24) and mask.dtype == torch.bool and mask.any()
        assert y.shape == ()
