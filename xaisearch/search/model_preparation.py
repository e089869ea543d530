"""The model of a study: loaded from its weights file, or trained by the package and cached.

Mini models on the shapes benchmark are trained by ``train_classifier`` with the study's seeded
recipe; the checkpoint and a small JSON record (recipe hash, accuracy, time) are written to the
run directory, and a later run with the same recipe loads them instead of training again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from xaisearch.errors import InputError
from xaisearch.files import atomic_path, write_text
from xaisearch.models.ref import ModelRef
from xaisearch.models.zoo import MINI_MODELS, build_architecture, build_model
from xaisearch.spec import DataSpec, ModelSpec

CHECKPOINT_NAME = "model.pt"
RECORD_NAME = "model.json"


def recipe_hash(model: ModelSpec) -> str:
    recipe = {"model": model.model_dump(mode="json", exclude={"weights"}), "format": 1}
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


def obtain_model(
    model_spec: ModelSpec,
    data_spec: DataSpec,
    run_dir: Path,
    device: torch.device,
    on_step: Callable[[int, int, float], None] | None = None,
    allow_training: bool = True,
) -> tuple[nn.Module, ModelRef, dict]:
    """The study's model in eval mode on ``device``, the ``ModelRef`` configs should name, and
    a record of how it was obtained (``trained``, accuracy, seconds).

    Workers pass ``allow_training=False``: they must all explain the same weights, so only the
    coordinator (``run``/``create``) trains, and workers load its checkpoint."""
    ref = ModelRef(name=model_spec.name, num_classes=model_spec.num_classes, input_shape=model_spec.input_shape)
    if model_spec.weights is not None:
        ref.weights = model_spec.weights
        try:
            return build_model(ref, device=device), ref, {"trained": False, "weights": model_spec.weights}
        except FileNotFoundError as error:
            raise InputError(f"model.weights: {error}") from None
        except RuntimeError as error:
            raise InputError(f"model.weights: {model_spec.weights} does not fit {model_spec.name}: {error}") from None
    if data_spec.name != "shapes":
        raise InputError(
            f"model.weights: a study on {data_spec.name!r} needs the model's trained weights (a checkpoint file or "
            "torchvision weights name); xaisearch trains models on the shapes benchmark only"
        )
    if model_spec.name not in MINI_MODELS:
        raise InputError(f"model.weights: {model_spec.name} needs a weights file; xaisearch trains only {MINI_MODELS}")
    ref.weights = CHECKPOINT_NAME
    checkpoint, record_path = run_dir / CHECKPOINT_NAME, run_dir / RECORD_NAME
    wanted = recipe_hash(model_spec)
    if checkpoint.is_file() and record_path.is_file():
        record = json.loads(record_path.read_text())
        if record.get("recipe") == wanted:
            return build_model(ref, base_dir=run_dir, device=device), ref, {**record, "trained": False}
    if not allow_training:
        raise InputError(
            f"model.weights: no trained checkpoint for this study in {run_dir}; run 'xaisearch create' (it trains "
            "the model) and give workers the same run directory, or name model.weights in the study file"
        )
    model, record = train_mini_model(model_spec, device, on_step)
    with atomic_path(checkpoint) as temporary:
        torch.save(model.state_dict(), temporary)
    write_text(record_path, json.dumps({**record, "recipe": wanted}, indent=2) + "\n")
    return model, ref, {**record, "trained": True}


def train_mini_model(
    model_spec: ModelSpec, device: torch.device, on_step: Callable[[int, int, float], None] | None = None
) -> tuple[nn.Module, dict]:
    from xaisearch.data.shapes import generate
    from xaisearch.models.train import train_classifier

    recipe = model_spec.training
    size = model_spec.input_shape[-1]
    train = generate(recipe.n_train, seed=recipe.seed, split="train", image_size=size)
    test = generate(recipe.n_test, seed=recipe.seed, split="test", image_size=size)
    torch.manual_seed(recipe.seed)  # the initial weights too: the recipe alone decides the model
    model = build_architecture(
        ModelRef(name=model_spec.name, num_classes=model_spec.num_classes, input_shape=model_spec.input_shape)
    )
    result = train_classifier(
        model,
        torch.from_numpy(train.x),
        torch.from_numpy(train.y),
        torch.from_numpy(test.x),
        torch.from_numpy(test.y),
        epochs=recipe.epochs,
        batch_size=recipe.batch_size,
        learning_rate=recipe.learning_rate,
        seed=recipe.seed,
        device=device,
        on_step=on_step,
    )
    if result.test_accuracy < recipe.min_accuracy:
        raise InputError(
            f"model.training: held-out accuracy {result.test_accuracy:.1%} is below min_accuracy "
            f"{recipe.min_accuracy:.0%}; raise model.training.epochs or n_train"
        )
    record = {
        "test_accuracy": result.test_accuracy,
        "train_accuracy": result.train_accuracy,
        "seconds": round(result.seconds, 2),
    }
    return model.eval(), record
