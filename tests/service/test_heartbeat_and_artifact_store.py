"""Rules that held only in the CLI now hold for Python callers too; s3 prefixes are kept."""

from __future__ import annotations

import io

import pytest
from optuna.artifacts import FileSystemArtifactStore

from xaisearch.errors import InputError
from xaisearch.service.artifacts import PrefixedArtifactStore, open_artifact_store
from xaisearch.service.storage import Heartbeat
from xaisearch.service.worker import WorkerOptions


def test_grace_period_under_two_heartbeats_is_refused_in_python():
    with pytest.raises(InputError, match="--grace-period 100: must be at least twice"):
        Heartbeat(interval=60, grace_period=100)
    assert Heartbeat(interval=60, grace_period=120).grace_period == 120


def test_worker_command_line_carries_every_option():
    options = WorkerOptions("s", "j.journal", n_trials=3, heartbeat=Heartbeat(5, 10), artifact_dir="a")
    args = options.command_args()
    assert args[:4] == ["--study", "s", "--storage", "j.journal"]
    assert args[args.index("--grace-period") + 1] == "10" and args[args.index("--n-trials") + 1] == "3"
    assert "--device" not in args and "--run-dir" not in args


def test_prefixed_store_keeps_every_artifact_under_its_prefix(tmp_path):
    (tmp_path / "runs" / "demo").mkdir(parents=True)  # S3 keys need no folders; the file store does
    inner = FileSystemArtifactStore(str(tmp_path))
    store = PrefixedArtifactStore(inner, "/runs/demo/")
    store.write("heatmap", io.BytesIO(b"png"))
    assert (tmp_path / "runs" / "demo" / "heatmap").read_bytes() == b"png"
    with store.open_reader("heatmap") as reader:
        assert reader.read() == b"png"
    store.remove("heatmap")
    assert not (tmp_path / "runs" / "demo" / "heatmap").exists()


def test_s3_url_without_bucket_is_one_line():
    with pytest.raises(InputError, match="no bucket"):
        open_artifact_store("s3:///prefix")
