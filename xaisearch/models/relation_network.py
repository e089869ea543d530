"""Relation Network for visual question answering (Santoro et al., NeurIPS 2017).

The CLEVR-XAI model of Pahde et al. 2023 (paper-and-data.md §5.4; their
``quantus_evaluation/models/relation_network.py``): a 4-layer CNN turns the image into a grid of
objects, each object gets its two standardised grid coordinates, every ordered pair of objects
(``i = j`` included) gets the question's LSTM state appended, ``g`` scores each pair, the scores
are summed over pairs, and ``f`` answers.

Built for LRP: every operation a rule must see is a module. The stem is
Conv(stride 2, no padding) → ReLU → BN, as in the reference (BN after the ReLU); objects,
pairs and the question concatenation are parameter-free modules whose plain gradient is the
right relevance flow (copies and concatenations); the pair sum is ``zennit.layer.Sum`` so that
composites give it the proportional ``Norm`` rule. zennit attributes only the first input
(zennit #176), so the image is the only input of an attribution: fix the question first with
``set_question`` or ``asking``, then call ``model(image)``; ``model(image, tokens, lengths)``
encodes a question per call (training).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence
from zennit.layer import Sum

CLEVR_VOCABULARY = 82  # training vocabulary + padding (index 0) + unknown
CLEVR_ANSWERS = 28


def _standardised(size: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Grid positions ``0..size-1`` with zero mean and unit (population) standard deviation."""
    positions = torch.arange(size, dtype=dtype, device=device)
    centred = positions - positions.mean()
    return centred / centred.pow(2).mean().sqrt() if size > 1 else centred


class ObjectsWithCoordinates(nn.Module):
    """``(N, C, h, w)`` feature map → ``(N, h·w, C + 2)`` objects in row-major order, each cell's
    features followed by its standardised ``(x, y)`` grid coordinates (x along the width)."""

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        n, _, height, width = features.shape
        y = _standardised(height, features.dtype, features.device)
        x = _standardised(width, features.dtype, features.device)
        grid_y, grid_x = torch.meshgrid(y, x, indexing="ij")
        coordinates = torch.stack([grid_x, grid_y], dim=-1).reshape(1, height * width, 2).expand(n, -1, -1)
        return torch.cat([features.flatten(2).transpose(1, 2), coordinates], dim=-1)


class ObjectPairs(nn.Module):
    """``(N, K, D)`` objects → ``(N, K², 2D)`` ordered pairs; pair ``i·K + j`` is ``[o_i, o_j]``."""

    def forward(self, objects: torch.Tensor) -> torch.Tensor:
        n, k, d = objects.shape
        first = objects.unsqueeze(2).expand(n, k, k, d)
        second = objects.unsqueeze(1).expand(n, k, k, d)
        return torch.cat([first, second], dim=-1).reshape(n, k * k, 2 * d)


class AppendQuestion(nn.Module):
    """``(N, P, D)`` pairs and an ``(N, Q)`` question → ``(N, P, D + Q)``; the question is a
    constant side input, so relevance that reaches its columns leaves the image explanation."""

    def forward(self, pairs: torch.Tensor, question: torch.Tensor) -> torch.Tensor:
        question = question.unsqueeze(1).expand(-1, pairs.shape[1], -1)
        return torch.cat([pairs, question], dim=-1)


class QuestionEncoder(nn.Module):
    """Token ids ``(N, T)``, zero-padded, with lengths ``(N,)`` → the LSTM's final state ``(N, H)``."""

    def __init__(self, vocabulary: int, embedding_dim: int, hidden: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocabulary, embedding_dim, padding_idx=0)
        self.lstm = nn.LSTM(embedding_dim, hidden, batch_first=True)

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        packed = pack_padded_sequence(self.embedding(tokens), lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, (hidden, _) = self.lstm(packed)
        return hidden[-1]


class RelationNetwork(nn.Module):
    """The CLEVR Relation Network; defaults are the paper's widths (484.5k parameters).

    ``conv_channels`` C, ``question_size`` (LSTM state), ``g_width`` and ``f_width`` set the
    widths; ``mini_relation_network`` is the narrow model of paper-and-data.md §8. The first
    ``g`` layer reads ``[o_i (C features, 2 coordinates), o_j (same), q]``. Any image size that
    leaves at least one cell after four unpadded stride-2 convolutions works (127 px → 7×7).
    """

    def __init__(
        self,
        num_classes: int = CLEVR_ANSWERS,
        vocabulary: int = CLEVR_VOCABULARY,
        embedding_dim: int = 32,
        question_size: int = 128,
        conv_channels: int = 24,
        g_width: int = 256,
        f_width: int = 256,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        self.question = QuestionEncoder(vocabulary, embedding_dim, question_size)
        stem: list[nn.Module] = []
        for index in range(4):
            stem += [nn.Conv2d(3 if index == 0 else conv_channels, conv_channels, 3, stride=2, padding=0)]
            stem += [nn.ReLU(), nn.BatchNorm2d(conv_channels)]
        self.image_encoder = nn.Sequential(*stem)
        self.objects = ObjectsWithCoordinates()
        self.pairs = ObjectPairs()
        self.append_question = AppendQuestion()
        widths = [2 * (conv_channels + 2) + question_size] + [g_width] * 4
        self.g = nn.Sequential(*[m for i in range(4) for m in (nn.Linear(widths[i], widths[i + 1]), nn.ReLU())])
        self.pair_sum = Sum(dim=1)
        self.f = nn.Sequential(
            nn.Linear(g_width, f_width),
            nn.ReLU(),
            nn.Linear(f_width, f_width),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(f_width, num_classes),
        )
        self._asked: tuple[torch.Tensor, torch.Tensor] | None = None

    @property
    def object_feature_columns(self) -> tuple[slice, slice]:
        """The input columns of ``g[0]`` that hold CNN features (of object i, of object j)."""
        last = self.image_encoder[-1]
        assert isinstance(last, nn.BatchNorm2d)  # the encoder ends in its fourth BatchNorm (built above)
        channels = last.num_features
        return slice(0, channels), slice(channels + 2, 2 * channels + 2)

    def set_question(self, tokens: torch.Tensor | None, lengths: torch.Tensor | None = None) -> None:
        """Fix the question that ``model(image)`` answers: one per image, or one for all
        (a single row is broadcast). ``None`` clears it."""
        if tokens is None:
            self._asked = None
            return
        if lengths is None or tokens.dim() != 2 or lengths.shape != tokens.shape[:1]:
            raise ValueError("set_question needs tokens (N, T) and lengths (N,), one length per question")
        self._asked = (tokens, lengths)

    @contextmanager
    def asking(self, tokens: torch.Tensor, lengths: torch.Tensor) -> Iterator[RelationNetwork]:
        """``with model.asking(tokens, lengths): model(image)``; the previous question is restored."""
        previous = self._asked
        self.set_question(tokens, lengths)
        try:
            yield self
        finally:
            self._asked = previous

    def encode_objects(self, image: torch.Tensor) -> torch.Tensor:
        """``(N, 3, H, W)`` → ``(N, K, C + 2)`` objects."""
        return self.objects(self.image_encoder(image))

    def relate(self, objects: torch.Tensor, question: torch.Tensor) -> torch.Tensor:
        """Answer logits from objects ``(N, K, C + 2)`` and encoded questions ``(N, Q)``."""
        return self.f(self.pair_sum(self.g(self.append_question(self.pairs(objects), question))))

    def forward(
        self, image: torch.Tensor, tokens: torch.Tensor | None = None, lengths: torch.Tensor | None = None
    ) -> torch.Tensor:
        if tokens is None:
            if self._asked is None:
                raise ValueError(
                    "RelationNetwork needs a question: call model(image, tokens, lengths), or fix one with "
                    "model.set_question(tokens, lengths) / `with model.asking(tokens, lengths):` before model(image)"
                )
            tokens, lengths = self._asked
        elif lengths is None:
            raise ValueError("model(image, tokens, lengths) needs the question lengths too")
        question = self.question(tokens.to(image.device), lengths)
        if len(question) not in (1, len(image)):
            raise ValueError(f"{len(question)} questions for {len(image)} images; give one per image or one for all")
        return self.relate(self.encode_objects(image), question.expand(len(image), -1))


def relation_network(num_classes: int = CLEVR_ANSWERS, vocabulary: int = CLEVR_VOCABULARY) -> RelationNetwork:
    """The paper's Relation Network (CLEVR-XAI, 128 px resized, cropped to 127 px)."""
    return RelationNetwork(num_classes=num_classes, vocabulary=vocabulary)


def mini_relation_network(
    num_classes: int = CLEVR_ANSWERS, vocabulary: int = CLEVR_VOCABULARY, widths: Sequence[int] = (16, 32, 64)
) -> RelationNetwork:
    """The narrow RN of the mini VQA benchmark (paper-and-data.md §8): C=16, LSTM 32, g=f=64,
    about 46k parameters; 80 px images give a 4×4 object grid."""
    conv_channels, question_size, width = widths
    return RelationNetwork(
        num_classes=num_classes,
        vocabulary=vocabulary,
        question_size=question_size,
        conv_channels=conv_channels,
        g_width=width,
        f_width=width,
    )
