"""Heatmap artifacts: PNGs of a fixed set of evaluation images, uploaded inside each trial.

Stores: a shared directory (``FileSystemArtifactStore``, the default; workers and the dashboard
mount the same folder) or S3-compatible object storage (``s3://bucket/prefix`` through boto3,
endpoint from ``AWS_ENDPOINT_URL`` for MinIO). Uploads must happen while the trial is RUNNING:
Optuna rejects artifacts on finished trials.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import optuna
import torch

if TYPE_CHECKING:
    from optuna.artifacts._protocol import ArtifactStore

from xaisearch.errors import InputError


def open_artifact_store(location: str | Path) -> ArtifactStore:
    """An Optuna artifact store for a directory path or an ``s3://bucket[/prefix]`` URL."""
    from optuna.artifacts import Boto3ArtifactStore, FileSystemArtifactStore

    text = str(location)
    if text.startswith("s3://"):
        bucket, _, prefix = text.removeprefix("s3://").partition("/")
        if not bucket:
            raise InputError(f"artifact store {text}: no bucket; use s3://BUCKET or s3://BUCKET/PREFIX")
        try:
            import boto3
        except ImportError:
            raise InputError(f"artifact store {text}: S3 needs boto3 (pip install boto3)") from None
        store: ArtifactStore = Boto3ArtifactStore(bucket, client=boto3.client("s3"))
        return PrefixedArtifactStore(store, prefix) if prefix.strip("/") else store
    path = Path(text)
    path.mkdir(parents=True, exist_ok=True)
    return FileSystemArtifactStore(str(path))


class PrefixedArtifactStore:
    """Keeps every artifact of an inner store under ``prefix/`` (``s3://bucket/prefix``): Optuna's
    Boto3 store writes to the bucket's root, so without this the URL's prefix would be dropped."""

    def __init__(self, inner: ArtifactStore, prefix: str) -> None:
        self.inner = inner
        self.prefix = prefix.strip("/")

    def key(self, artifact_id: str) -> str:
        return f"{self.prefix}/{artifact_id}"

    def open_reader(self, artifact_id: str) -> BinaryIO:
        return self.inner.open_reader(self.key(artifact_id))

    def write(self, artifact_id: str, content_body: BinaryIO) -> None:
        self.inner.write(self.key(artifact_id), content_body)

    def remove(self, artifact_id: str) -> None:
        self.inner.remove(self.key(artifact_id))


def heatmap_uploader(store: ArtifactStore) -> Callable[[optuna.trial.Trial, torch.Tensor, torch.Tensor], list[str]]:
    """What an ``Objective`` calls with (trial, images, attributions) to upload the trial's heatmaps."""

    def upload(trial: optuna.trial.Trial, images: torch.Tensor, attributions: torch.Tensor) -> list[str]:
        return upload_heatmaps(trial, store, images, attributions)

    return upload


def upload_heatmaps(
    trial: optuna.trial.Trial, store: ArtifactStore, images: torch.Tensor, attributions: torch.Tensor, cmap: str = "bwr"
) -> list[str]:
    """Upload one PNG per image (``heatmap_<i>.png``); returns the artifact ids."""
    from optuna.artifacts import upload_artifact

    from xaisearch.report.heatmaps import heatmap_rgb, png_bytes

    ids = []
    with tempfile.TemporaryDirectory() as folder:
        for index, attribution in enumerate(attributions):
            path = Path(folder) / f"trial{trial.number}_heatmap_{index}.png"
            path.write_bytes(png_bytes(heatmap_rgb(attribution, cmap), scale=4))
            ids.append(upload_artifact(artifact_store=store, file_path=str(path), study_or_trial=trial))
    return ids
