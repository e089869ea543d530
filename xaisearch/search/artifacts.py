"""Heatmap artifacts: PNGs of a fixed set of evaluation images, uploaded inside each trial.

Stores: a shared directory (``FileSystemArtifactStore``, the default; workers and the dashboard
mount the same folder) or S3-compatible object storage (``s3://bucket/prefix`` through boto3,
endpoint from ``AWS_ENDPOINT_URL`` for MinIO). Uploads must happen while the trial is RUNNING:
Optuna rejects artifacts on finished trials.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from xaisearch.errors import InputError


def open_artifact_store(location: str | Path):
    """An Optuna artifact store for a directory path or an ``s3://bucket[/prefix]`` URL."""
    from optuna.artifacts import Boto3ArtifactStore, FileSystemArtifactStore

    text = str(location)
    if text.startswith("s3://"):
        try:
            import boto3
        except ImportError:
            raise InputError(f"artifact store {text}: S3 needs boto3 (pip install boto3)") from None
        bucket = text.removeprefix("s3://").split("/", 1)[0]
        return Boto3ArtifactStore(bucket, client=boto3.client("s3"))
    path = Path(text)
    path.mkdir(parents=True, exist_ok=True)
    return FileSystemArtifactStore(str(path))


def upload_heatmaps(trial, store, images: torch.Tensor, attributions: torch.Tensor, cmap: str = "bwr") -> list[str]:
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
