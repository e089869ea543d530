"""timm's models as ``timm/<name>``: random weights, a checkpoint file, or timm's own pretrained weights.

timm is the optional extra ``xaisearch[timm]``, imported only here and only when such a model is
checked or built: validating a study file imports neither torch nor timm. The name may carry a
timm weights tag (``timm/resnet18.a1_in1k``). Architectures are built with
``timm.create_model(name, pretrained=False, num_classes=…, in_chans=…)``; a checkpoint file
(``model.weights: path``) then loads through ``zoo.load_weights`` like any other.

``model.weights: pretrained`` takes timm's weights from the local caches, without any network
access: the Hugging Face cache (``$HF_HUB_CACHE``, else ``$HF_HOME/hub``, default
``~/.cache/huggingface/hub``), where ``timm.create_model(name, pretrained=True)`` puts them, or,
for weights timm still fetches by URL, ``$TORCH_HOME/hub/checkpoints``. The cached file is
handed to timm by path (``pretrained_cfg_overlay={"file": …}``), so timm's own adaptations
(classifier, input channels, position embeddings) still apply. A file that is not cached is
downloaded only when ``HF_HUB_OFFLINE`` is unset and the Hub can be reached; otherwise one line
says what to fetch and where to put it, instead of a hang or a traceback.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlparse

from torch import nn

from xaisearch.errors import InputError
from xaisearch.models.ref import ModelRef

TIMM_PREFIX = "timm/"
TIMM_EXTRA = 'pip install "xaisearch[timm]"'
PRETRAINED = "pretrained"  # model.weights of a timm model: timm's own weights, from the local cache
HF_FILES = ("model.safetensors", "pytorch_model.bin")  # what timm looks for in a Hub repository, in order


def timm_name(name: str) -> str | None:
    """``resnet18`` for ``timm/resnet18``; ``None`` for a name that is not a timm model's."""
    return name[len(TIMM_PREFIX) :] if name.startswith(TIMM_PREFIX) else None


def _timm(name: str, field: str) -> ModuleType:
    try:
        import timm
    except ImportError:
        raise InputError(f"{field}: {name} is a timm model, and timm is not installed; {TIMM_EXTRA}") from None
    return timm


def check_timm_name(name: str, field: str = "model.name") -> None:
    """One ``InputError`` line unless timm knows ``name`` (and its weights tag, if it has one)."""
    timm = _timm(name, field)
    architecture = timm_name(name) or ""
    base, _, tag = architecture.partition(".")
    if not base or not timm.is_model(base):
        close = difflib.get_close_matches(base, timm.list_models(), n=5, cutoff=0.6)
        suggestion = f"did you mean {[TIMM_PREFIX + c for c in close]}?" if close else "see timm.list_models()"
        raise InputError(f"{field}: timm has no model {base!r}; {suggestion}")
    if tag:
        try:
            timm.models.get_pretrained_cfg(architecture)
        except RuntimeError:
            tags = timm.list_pretrained(f"{base}.*")[:5]
            raise InputError(f"{field}: timm has no weights tag {tag!r} for {base}; use one of {tags}") from None


def _channels(ref: ModelRef) -> int:
    return ref.input_shape[0] if len(ref.input_shape) == 3 else 3


def timm_architecture(ref: ModelRef) -> nn.Module:
    """``ref``'s timm model with random weights."""
    check_timm_name(ref.name)
    timm = _timm(ref.name, "model.name")
    return timm.create_model(
        timm_name(ref.name), pretrained=False, num_classes=ref.num_classes, in_chans=_channels(ref)
    )


def hub_cache() -> Path:
    """The Hugging Face hub cache as the environment names it now (``huggingface_hub`` reads it once,
    at import)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME") or "~/.cache", "huggingface")
    return Path(home).expanduser() / "hub"


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").upper() in {"1", "ON", "YES", "TRUE"}


def cached_weights(pretrained_cfg: Any) -> Path | None:
    """The local file of timm's pretrained weights ``pretrained_cfg`` names, if one is cached."""
    hub_id = pretrained_cfg.hf_hub_id
    if hub_id:
        from huggingface_hub import try_to_load_from_cache

        repository, _, revision = hub_id.partition("@")
        for filename in [pretrained_cfg.hf_hub_filename] if pretrained_cfg.hf_hub_filename else HF_FILES:
            found = try_to_load_from_cache(repository, filename, cache_dir=hub_cache(), revision=revision or None)
            if isinstance(found, str):
                return Path(found)
    if pretrained_cfg.url:
        import torch

        cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(pretrained_cfg.url).path).name
        if cached.is_file():
            return cached
    return None


def timm_pretrained(ref: ModelRef, field: str = "model.weights") -> nn.Module:
    """``ref``'s timm model with timm's pretrained weights, read from the local cache (module doc)."""
    from xaisearch.models.zoo import download_possible

    check_timm_name(ref.name)
    timm = _timm(ref.name, field)
    architecture = timm_name(ref.name) or ""
    config = timm.models.get_pretrained_cfg(architecture)
    source = config.hf_hub_id or config.url if config is not None else None
    if config is None or not source:
        raise InputError(f"{field}: timm has no pretrained weights for {ref.name}; give a checkpoint file")
    if config.num_classes and ref.num_classes != config.num_classes:
        raise InputError(
            f"model.num_classes: {ref.name} with pretrained weights has {config.num_classes} classes, not "
            f"{ref.num_classes}; set num_classes: {config.num_classes}"
        )
    options: dict[str, Any] = {"pretrained": True, "num_classes": ref.num_classes, "in_chans": _channels(ref)}
    cached = cached_weights(config)
    if cached is not None:
        options["pretrained_cfg_overlay"] = {"file": str(cached)}
    else:
        url = os.environ.get("HF_ENDPOINT", "https://huggingface.co") if config.hf_hub_id else config.url
        if hub_offline() or not download_possible(url):
            why = "HF_HUB_OFFLINE is set" if hub_offline() else f"{urlparse(url).hostname} cannot be reached"
            fetch = f"python -c \"import timm; timm.create_model('{architecture}', pretrained=True)\""
            raise InputError(
                f"{field}: the pretrained weights of {ref.name} ({source}) are not in the local cache ({hub_cache()}) "
                f"and {why}; run {fetch} on a machine online and copy its cache here (HF_HOME moves it), or give a "
                "checkpoint file"
            )
    try:
        return timm.create_model(architecture, **options)
    except OSError as error:  # a download that failed after all
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise InputError(f"{field}: downloading the pretrained weights of {ref.name} failed ({first})") from None
    except Exception as error:  # a cut-short or corrupt cached file: the readers raise anything
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        what = f"{cached} (timm's cached {ref.name} weights)" if cached else f"the downloaded weights of {ref.name}"
        raise InputError(f"{field}: {what} do not load ({first}); delete the file and fetch it again") from None
