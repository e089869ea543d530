import numpy as np
import pytest

from xaisearch.data.shapes import TARGET_SHAPES, generate, intervene, render


def test_same_seed_same_scenes_and_independent_of_batch_size():
    a = generate(12, seed=3)
    b = generate(5, seed=3)
    assert np.array_equal(a.x[:5], b.x)
    assert np.array_equal(a.y[:5], b.y)
    assert np.array_equal(a.target_mask[:5], b.target_mask)
    assert not np.array_equal(generate(5, seed=4).x, b.x)


def test_splits_do_not_share_scenes():
    train, test = generate(20, seed=0, split="train"), generate(20, seed=0, split="test")
    assert not any(np.array_equal(train.x[i], test.x[j]) for i in range(20) for j in range(20))


def test_target_mask_is_exactly_the_pixels_the_target_changes():
    batch = generate(24, seed=11)
    for index, scene in enumerate(batch.scenes):
        target_index = next(i for i, obj in enumerate(scene.objects) if obj.is_target)
        without_target, _, _ = render(scene, remove=(target_index,))
        changed = np.any(batch.x[index] != without_target, axis=0)
        mask = batch.target_mask[index, 0].astype(bool)
        # every target pixel carries the target's colour; no pixel outside the mask is the target's
        colour = np.asarray(scene.target.colour, dtype=np.float32)
        assert np.allclose(batch.x[index][:, mask], colour[:, None])
        assert not np.any(changed & ~mask)
        assert mask.sum() > 0


def test_objects_never_overlap_and_masks_nest():
    batch = generate(32, seed=5)
    for index, scene in enumerate(batch.scenes):
        footprints = []
        for obj_index in range(len(scene.objects)):
            others = tuple(i for i in range(len(scene.objects)) if i != obj_index)
            _, _, alone = render(scene, remove=others)
            footprints.append(alone)
        coverage = np.sum(footprints, axis=0)
        assert coverage.max() == 1
        assert np.array_equal(coverage.astype(bool), batch.all_objects_mask[index, 0].astype(bool))
        assert np.all(batch.all_objects_mask[index] >= batch.target_mask[index])


def test_boxes_contain_each_objects_pixels():
    batch = generate(8, seed=2)
    for index, boxes in enumerate(batch.boxes()):
        mask = batch.target_mask[index, 0].astype(bool)
        (y0, x0, y1, x1) = next(box for _, is_target, box in boxes if is_target)
        outside = mask.copy()
        outside[y0:y1, x0:x1] = False
        assert not outside.any()


def test_labels_cover_every_class_and_shapes_are_valid():
    batch = generate(200, seed=0)
    assert set(batch.y.tolist()) == set(range(len(TARGET_SHAPES)))
    assert batch.x.dtype == np.float32 and batch.x.min() >= 0 and batch.x.max() <= 1
    assert batch.x.shape == (200, 3, 48, 48) and batch.target_mask.shape == (200, 1, 48, 48)
    fraction = batch.target_mask.mean()
    assert 0.01 < fraction < 0.08


def test_intervene_keeps_the_class_and_refuses_to_drop_the_target():
    scene = generate(1, seed=9).scenes[0]
    reduced = intervene(scene, remove=(1,))
    assert reduced.label == scene.label and len(reduced.objects) == len(scene.objects) - 1
    with pytest.raises(ValueError, match="target"):
        intervene(scene, remove=(0,))
