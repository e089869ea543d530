"""``xaisearch dashboard``: optuna-dashboard on the study storage, heatmaps included."""

from __future__ import annotations

from pathlib import Path

from xaisearch.errors import InputError
from xaisearch.service.storage import mask_password, open_storage


def serve(storage_url: str, artifact_dir: Path | None, host: str = "127.0.0.1", port: int = 8080) -> None:
    try:
        from optuna_dashboard import run_server
    except ImportError:
        raise InputError("dashboard: optuna-dashboard is not installed; pip install 'xaisearch[dashboard]'") from None
    storage = open_storage(storage_url, create=False)  # a mistyped path must not leave an empty journal
    store = None
    if artifact_dir is not None:
        if not Path(artifact_dir).is_dir():
            print(f"note: {artifact_dir} does not exist yet; created it empty (workers write heatmaps there)")
        from xaisearch.service.artifacts import open_artifact_store

        store = open_artifact_store(artifact_dir)
    if host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: the dashboard has no authentication and listens on {host}")
    print(f"optuna-dashboard for {mask_password(storage_url)} on http://{host}:{port}")
    run_server(storage, host=host, port=port, artifact_store=store)
