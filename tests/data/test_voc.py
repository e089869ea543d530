import numpy as np
import pytest
import torch
from PIL import Image

from tests.data.fake_voc import FakeImage, default_images, write_voc_tree
from xaisearch.data.preprocess import IMAGENET_MEAN, IMAGENET_STD, Geometry, prepare
from xaisearch.data.voc import VOC_CLASSES, VOCClassMasks

DOG, CAT, BIRD, PERSON, AEROPLANE = (VOC_CLASSES.index(n) for n in ("dog", "cat", "bird", "person", "aeroplane"))


@pytest.fixture
def root(tmp_path):
    return write_voc_tree(tmp_path)


@pytest.fixture
def images() -> dict[str, FakeImage]:
    return {image.image_id: image for image in default_images()}


def box_mask(image: FakeImage, *corner_sets: tuple[int, int, int, int]) -> np.ndarray:
    """The expected full-size H×W mask, written out from 1-based inclusive corners."""
    mask = np.zeros(image.pixels.shape[:2], dtype=bool)
    for xmin, ymin, xmax, ymax in corner_sets:
        mask[ymin - 1 : ymax, xmin - 1 : xmax] = True
    return mask


def test_classes_are_the_twenty_voc_names_in_order():
    assert len(VOC_CLASSES) == 20
    assert (VOC_CLASSES[0], VOC_CLASSES[11], VOC_CLASSES[14], VOC_CLASSES[19]) == (
        "aeroplane",
        "dog",
        "person",
        "tvmonitor",
    )


def test_segmentation_samples_are_sorted_image_then_class(root):
    dataset = VOCClassMasks(str(root), geometry=Geometry(24))
    assert dataset.items == [("2007_000032", CAT), ("2007_000033", BIRD), ("2007_000033", PERSON), ("2007_000039", DOG)]
    assert len(dataset) == 4 and dataset.masks == "segmentation" and dataset.geometry == Geometry(24)
    x, y, mask = dataset[2]
    assert y.dtype == torch.int64 and y.shape == () and int(y) == PERSON
    assert x.dtype == torch.float32 and mask.dtype == torch.bool


@pytest.mark.parametrize("mode", ["resize", "resize_crop"])
def test_segmentation_masks_are_the_class_region_under_the_same_geometry(root, images, mode):
    geometry = Geometry(24, mode=mode)
    dataset = VOCClassMasks(root, geometry=geometry)
    for index, (image_id, class_index) in enumerate(dataset.items):
        x, _, mask = dataset[index]
        image = images[image_id]
        expected = image.segmentation == class_index + 1
        _, expected_mask = prepare(image.pixels, expected, geometry)
        assert x.shape == (3, 24, 24) and mask.shape == (24, 24)
        assert torch.equal(mask, expected_mask), (image_id, class_index)
        assert mask.any()


def test_square_image_at_geometry_size_keeps_its_mask_pixel_for_pixel_and_void_is_outside(root, images):
    dataset = VOCClassMasks(root, geometry=Geometry(32), classes=["person", "bird"])
    person = dataset[dataset.items.index(("2007_000033", PERSON))][2]
    bird = dataset[dataset.items.index(("2007_000033", BIRD))][2]
    expected = np.zeros((32, 32), dtype=bool)
    expected[16:29, 11:24] = True
    assert torch.equal(person, torch.from_numpy(expected))
    void = images["2007_000033"].segmentation == 255
    assert void.sum() > 0 and not person[torch.from_numpy(void)].any()
    assert int(bird.sum()) == 100 and bool(bird[2:12, 2:12].all())


def test_white_image_is_normalised_per_channel(root):
    dataset = VOCClassMasks(root, geometry=Geometry(32), classes=["bird"])
    x = dataset[0][0]
    for channel, (mean, std) in enumerate(zip(IMAGENET_MEAN, IMAGENET_STD)):
        assert torch.allclose(x[channel], torch.full((32, 32), (1 - mean) / std), atol=1e-5)


def test_box_corners_are_one_based_and_inclusive(root):
    dataset = VOCClassMasks(root, geometry=Geometry(32), masks="boxes", classes=["bird"])
    assert dataset.items == [("2007_000033", BIRD)]
    expected = torch.zeros(32, 32, dtype=torch.bool)
    expected[2:10, 0:4] = True  # xmin=1..xmax=4 → columns 0..3; ymin=3..ymax=10 → rows 2..9
    assert torch.equal(dataset[0][2], expected)


@pytest.mark.parametrize("mode", ["resize", "resize_crop"])
def test_box_masks_are_not_transposed_on_non_square_images(root, images, mode):
    geometry = Geometry(24, mode=mode)
    dataset = VOCClassMasks(root, geometry=geometry, masks="boxes")
    assert dataset.items == [
        ("2007_000032", AEROPLANE),
        ("2007_000032", CAT),
        ("2007_000033", BIRD),
        ("2007_000039", DOG),
    ]
    # portrait 37 wide × 53 high: the dog sits in the top-right corner
    dog = dataset[3][2]
    assert dog.shape == (24, 24)
    if mode == "resize":
        assert dog[0, -1] and not dog[0, 0] and not dog[-1, -1] and not dog[-1, 0]
    portrait = images["2007_000039"]
    assert torch.equal(dog, prepare(portrait.pixels, box_mask(portrait, (28, 1, 37, 10)), geometry)[1])
    # landscape 53 wide × 37 high: the cat sits in the top-left corner, wider than high
    cat = dataset[1][2]
    landscape = images["2007_000032"]
    assert torch.equal(cat, prepare(landscape.pixels, box_mask(landscape, (1, 1, 10, 8)), geometry)[1])
    if mode == "resize":
        assert cat[0, 0] and not cat[-1, 0] and not cat[0, -1]
        rows, cols = torch.nonzero(cat, as_tuple=True)
        # centre-aligned nearest: output row i is source row ⌊(i + ½)·37/24⌋ (inside while ≤ 7),
        # column j is ⌊(j + ½)·53/24⌋ (inside while ≤ 9)
        assert int(rows.max()) == 4 and int(cols.max()) == 4 and int(cat.sum()) == 5 * 5


def test_difficult_boxes_are_skipped_unless_included(root, images):
    geometry = Geometry(53, mode="resize")
    strict = VOCClassMasks(root, geometry=geometry, masks="boxes")
    lenient = VOCClassMasks(root, geometry=geometry, masks="boxes", include_difficult=True)
    assert ("2007_000039", PERSON) not in strict.items
    assert lenient.items == strict.items[:3] + [("2007_000039", DOG), ("2007_000039", PERSON)]
    landscape = images["2007_000032"]
    one = prepare(landscape.pixels, box_mask(landscape, (20, 20, 30, 25)), geometry)[1]
    both = prepare(landscape.pixels, box_mask(landscape, (20, 20, 30, 25), (40, 5, 50, 15)), geometry)[1]
    assert torch.equal(strict[0][2], one) and torch.equal(lenient[0][2], both)
    assert int(both.sum()) > int(one.sum())


def test_classes_filter_keeps_only_the_named_classes(root):
    dataset = VOCClassMasks(root, classes=["person", "cat"], geometry=Geometry(16))
    assert dataset.items == [("2007_000032", CAT), ("2007_000033", PERSON)]


def test_unknown_class_is_named_with_the_valid_names(root):
    with pytest.raises(ValueError, match="'persn'") as caught:
        VOCClassMasks(root, classes=["person", "persn"])
    assert "tvmonitor" in str(caught.value)


def test_empty_selection_is_an_error(root):
    with pytest.raises(ValueError, match="no samples"):
        VOCClassMasks(root, classes=["sofa"])


def test_missing_root_split_and_image_name_the_path_and_the_fix(root, tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError) as caught:
        VOCClassMasks(missing)
    message = str(caught.value)
    assert str(missing / "VOCdevkit" / "VOC2012") in message and "VOCdevkit/" in message and "\n" not in message
    with pytest.raises(FileNotFoundError, match="Segmentation/train.txt"):
        VOCClassMasks(root, split="train")
    dataset = VOCClassMasks(root)
    (root / "VOCdevkit" / "VOC2012" / "JPEGImages" / "2007_000032.jpg").unlink()
    with pytest.raises(FileNotFoundError, match="2007_000032.jpg"):
        dataset[0]


def test_palette_png_is_read_as_class_indices_not_colours(root):
    png = Image.open(root / "VOCdevkit" / "VOC2012" / "SegmentationClass" / "2007_000033.png")
    assert png.mode == "P"
    assert set(np.unique(np.asarray(png)).tolist()) == {0, 3, 15, 255}


def test_the_fake_tree_is_one_torchvision_reads(root):
    """Guards the fake tree: torchvision's own VOC readers accept it and see the same content."""
    from torchvision.datasets import VOCDetection, VOCSegmentation

    segmentation = VOCSegmentation(str(root), year="2012", image_set="val")
    detection = VOCDetection(str(root), year="2012", image_set="val")
    assert len(segmentation) == 3 and len(detection) == 3
    _, target = segmentation[1]
    assert set(np.unique(np.asarray(target)).tolist()) <= {0, 3, 8, 12, 15, 255}
    names = {obj["name"] for _, annotation in detection for obj in annotation["annotation"]["object"]}
    assert names == {"dog", "person", "cat", "aeroplane", "bird"}


def test_a_dataloader_batches_the_samples(root):
    loader = torch.utils.data.DataLoader(VOCClassMasks(root, geometry=Geometry(20, mode="resize_crop")), batch_size=4)
    x, y, mask = next(iter(loader))
    assert x.shape == (4, 3, 20, 20) and mask.shape == (4, 20, 20) and mask.dtype == torch.bool
    assert y.tolist() == [CAT, BIRD, PERSON, DOG]
