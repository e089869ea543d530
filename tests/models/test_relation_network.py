"""The Relation Network: the paper's architecture, its object/pair modules, questions, invariances."""

from __future__ import annotations

import pytest
import torch
from zennit.layer import Sum

from xaisearch.models.ref import ModelRef
from xaisearch.models.relation_network import ObjectPairs, RelationNetwork, mini_relation_network, relation_network
from xaisearch.models.zoo import build_architecture


def question(batch: int = 1, length: int = 9, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.randint(3, length + 1, (batch,), generator=generator)
    tokens = torch.randint(1, 82, (batch, length), generator=generator)
    tokens[torch.arange(length)[None, :] >= lengths[:, None]] = 0
    return tokens, lengths


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_the_paper_model_has_the_paper_shapes_and_parameter_counts():
    """paper-and-data.md §5.4: 484.5k parameters; 127 px → 7×7 objects of 24 + 2 features → 28 answers."""
    model = relation_network().eval()
    assert count(model) == 484_548
    parts = {"image_encoder": 16_488, "g": 243_712, "f": 138_780, "question.lstm": 82_944, "question.embedding": 2_624}
    assert {name: count(model.get_submodule(name)) for name in parts} == parts
    image = torch.rand(2, 3, 127, 127)
    assert model.encode_objects(image).shape == (2, 49, 26)
    assert model(image, *question(2)).shape == (2, 28)
    assert isinstance(model.pair_sum, Sum) and model.pair_sum.dim == 1
    assert [type(m).__name__ for m in model.image_encoder][:3] == ["Conv2d", "ReLU", "BatchNorm2d"]
    assert all(conv.padding == (0, 0) and conv.stride == (2, 2) for conv in model.image_encoder[::3])


def test_the_narrow_model_for_the_mini_benchmark():
    """paper-and-data.md §8: C=16, LSTM 32, g=64, about 40k parameters, 80 px → 4×4 objects."""
    model = mini_relation_network(num_classes=10).eval()
    assert 40_000 <= count(model) <= 50_000
    image = torch.rand(3, 3, 80, 80)
    assert model.encode_objects(image).shape == (3, 16, 18)
    assert model(image, *question(3)).shape == (3, 10)
    ref = ModelRef(name="mini_relation_network", num_classes=10, input_shape=(3, 80, 80))
    assert count(build_architecture(ref)) == count(model)


def test_pairs_are_all_ordered_pairs_with_the_question_and_coordinates_are_standardised():
    model = mini_relation_network().double().eval()
    objects = model.encode_objects(torch.rand(2, 3, 80, 80, dtype=torch.float64))
    coordinates = objects[0, :, -2:].reshape(4, 4, 2)
    torch.testing.assert_close(coordinates[..., 0], coordinates[0, :, 0].expand(4, 4))  # x varies along the width
    torch.testing.assert_close(coordinates[..., 1], coordinates[:, 0, 1, None].expand(4, 4))
    x = coordinates[0, :, 0]
    torch.testing.assert_close((x.mean(), x.pow(2).mean()), (x.new_tensor(0.0), x.new_tensor(1.0)))
    pairs = ObjectPairs()(objects)
    assert pairs.shape == (2, 256, 36)
    for i, j in [(0, 0), (3, 7), (7, 3), (15, 0)]:
        torch.testing.assert_close(pairs[:, i * 16 + j], torch.cat([objects[:, i], objects[:, j]], -1), rtol=0, atol=0)
    q = torch.randn(2, 32, dtype=torch.float64)
    with_question = model.append_question(pairs, q)
    assert torch.equal(with_question[:, :, 36:], q[:, None].expand(2, 256, 32))


def test_the_answer_does_not_depend_on_the_order_of_the_objects():
    """Sum over all ordered pairs: a relation network is invariant to permutations of its objects."""
    model = mini_relation_network().double().eval()
    objects = model.encode_objects(torch.rand(2, 3, 80, 80, dtype=torch.float64))
    q = model.question(*question(2))
    permutation = torch.randperm(16, generator=torch.Generator().manual_seed(0))
    reference = model.relate(objects, q)
    torch.testing.assert_close(model.relate(objects[:, permutation], q), reference, rtol=1e-12, atol=1e-12)
    assert not torch.allclose(model.relate(objects, q.flip(0)), reference)


def test_questions_padding_and_fixing_a_question_for_attribution():
    model = mini_relation_network().eval()
    image = torch.rand(3, 3, 80, 80)
    tokens, lengths = question(3)
    answers = model(image, tokens, lengths)
    padded = torch.cat([tokens, torch.zeros(3, 4, dtype=tokens.dtype)], 1)
    torch.testing.assert_close(model(image, padded, lengths), answers)
    with pytest.raises(ValueError, match="needs a question"):
        model(image)
    with model.asking(tokens, lengths):
        torch.testing.assert_close(model(image), answers)
    assert model._asked is None
    model.set_question(tokens[:1], lengths[:1])  # one question for all images
    torch.testing.assert_close(model(image), model(image, tokens[:1].expand(3, -1), lengths[:1].expand(3)))
    model.set_question(tokens[:2], lengths[:2])
    with pytest.raises(ValueError, match="2 questions for 3 images"):
        model(image)


def test_a_relation_network_is_its_own_class_for_the_registry():
    from xaisearch.canonize import canonizer_name_for

    assert isinstance(mini_relation_network(), RelationNetwork)
    assert canonizer_name_for(mini_relation_network()) == "relation_network"
