"""Build a model from its name, class count, input shape and weights (``ModelRef``).

Our own builders register in ``MODELS`` (the registry helper: a duplicate name is an error);
every torchvision classification builder is available besides them, under its own name, and
every timm model as ``timm/<name>`` (``timm_models.py``; timm is the optional extra
``xaisearch[timm]``, imported only when such a model is built). Weights that do not load (a file
that is no state dict, one for another architecture, a torchvision weights name a builder lacks
or a machine cannot fetch) are one ``InputError`` line.
"""

from __future__ import annotations

import difflib
import pickle
import re
import warnings
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import nn

from xaisearch.errors import InputError
from xaisearch.models import timm_models
from xaisearch.models.ref import ModelRef
from xaisearch.registry import Registry

MODELS: Registry[Callable[[ModelRef], nn.Module]] = Registry("model")
MINI_MODELS = ("mini_vgg", "mini_resnet", "mini_efficientnet", "mini_densenet")
RELATION_NETWORKS = ("relation_network", "mini_relation_network")  # VQA: fix a question before model(image)


@MODELS.register("mini_vgg")
def _mini_vgg(ref: ModelRef) -> nn.Module:
    from xaisearch.models.mini import mini_vgg

    return mini_vgg(num_classes=ref.num_classes, image_size=ref.input_shape[-1])


def _classes_only(module: str, builder: str) -> Callable[[ModelRef], nn.Module]:
    """A registry entry for ``xaisearch.models.<module>.<builder>(num_classes=...)``, imported when
    first built (the models' modules stay out of a study file's validation)."""

    def build(ref: ModelRef) -> nn.Module:
        import importlib

        return getattr(importlib.import_module(f"xaisearch.models.{module}"), builder)(num_classes=ref.num_classes)

    return build


for _module, _builders in (
    ("mini_zoo", ("mini_resnet", "mini_efficientnet", "mini_densenet")),
    ("relation_network", RELATION_NETWORKS),
):
    for _builder in _builders:
        MODELS.add(_builder, _classes_only(_module, _builder))


def torchvision_models() -> list[str]:
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


def available() -> list[str]:
    """Our own models (the mini zoo, Relation Networks) plus every torchvision classification builder;
    timm's models (``timm/<name>``, over a thousand) are checked by ``check_model_name`` instead."""
    return MODELS.available() + torchvision_models()


def check_model_name(name: str, field: str = "model.name") -> None:
    """One ``InputError`` line naming ``field`` unless ``name`` is a model ``build_architecture``
    builds; an unknown name gets the closest known ones."""
    if timm_models.timm_name(name) is not None:
        timm_models.check_timm_name(name, field)
        return
    known = available()
    if name in known:
        return
    close = difflib.get_close_matches(name, known, n=5, cutoff=0.6) or [n for n in known if n.startswith(name[:4])][:5]
    raise InputError(
        f"{field}: unknown model {name!r}; use a torchvision builder such as {close or known[:5]}, one of "
        f"{MODELS.available()}, or {timm_models.TIMM_PREFIX}<name> for a timm model"
    )


def build_architecture(ref: ModelRef) -> nn.Module:
    """The randomly initialised architecture ``ref`` names."""
    if ref.name in MODELS:
        return MODELS.get(ref.name)(ref)
    if timm_models.timm_name(ref.name) is not None:
        return timm_models.timm_architecture(ref)
    if ref.name not in torchvision_models():
        own = MODELS.available()
        raise ValueError(f"unknown model {ref.name!r}; use a torchvision classification builder or {own}")
    import torchvision

    return torchvision.models.get_model(ref.name, weights=None, num_classes=ref.num_classes)


CHECKPOINT_KEYS = ("model_state", "state_dict")  # where a checkpoint may nest its state dict
SAVE_HINT = "save it with torch.save(model.state_dict(), path)"


def load_state(
    path: Path, map_location: str | torch.device = "cpu", field: str = "model.weights"
) -> dict[str, torch.Tensor]:
    """A state dict from a checkpoint: a bare state dict or one under ``model_state``/``state_dict``.

    Read with ``weights_only=True``, so a checkpoint never runs code. Whatever else the file holds
    (nothing, random bytes, a list, a pickled object) is one ``InputError`` naming ``field``, the
    file and what it holds.
    """
    where = f"{field}: {str(path)!r}"
    state = _read_checkpoint(path, map_location, where)
    for key in CHECKPOINT_KEYS:
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict):
        raise InputError(f"{where} holds a {type(state).__name__}, not a state dict; {SAVE_HINT}")
    if not any(isinstance(value, torch.Tensor) for value in state.values()):
        keys = sorted(map(str, state))
        raise InputError(
            f"{where} holds a dict without tensors (keys {_preview(keys)}), not a state dict; {SAVE_HINT}, "
            f"bare or under {' or '.join(map(repr, CHECKPOINT_KEYS))}"
        )
    return state


def _read_checkpoint(path: Path, map_location: str | torch.device, where: str) -> object:
    """What ``torch.load`` reads from ``path`` (weights only), or one line saying why it cannot."""
    try:
        with path.open("rb") as handle:
            empty = not handle.read(1)
    except OSError as error:
        raise InputError(f"{where} cannot be read ({error.strerror or error})") from None
    if empty:
        raise InputError(f"{where} is empty; {SAVE_HINT}")
    not_checkpoint = f"{where} is not a PyTorch checkpoint (not written by torch.save, or cut short)"
    try:
        with warnings.catch_warnings():  # its note on a pickle protocol would precede our one line
            warnings.filterwarnings("ignore", module="torch._weights_only_unpickler")
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        refused = re.search(r"GLOBAL (\S+)", str(error))
        if refused is None:
            raise InputError(not_checkpoint) from None
        raise InputError(
            f"{where} holds a pickled {refused.group(1)} object, which weights-only loading refuses (it could run "
            f"code); {SAVE_HINT}"
        ) from None
    except Exception:  # the zip and pickle readers raise anything (even OSError) on bytes that are no checkpoint
        raise InputError(not_checkpoint) from None


def load_weights(model: nn.Module, path: Path, name: str, field: str = "model.weights", sizes: str = "") -> None:
    """Load the checkpoint at ``path`` into ``model`` (architecture ``name``): every key, or an error.

    A file for another architecture, or with tensors of other sizes, is one ``InputError`` that
    counts the differences and names the first few (torch lists every key, kilobytes of them);
    ``sizes`` says what decides the model's sizes, for that message.
    """
    state = load_state(path, field=field)
    where = f"{field}: {str(path)!r}"
    resized: list[str] = []
    try:
        incompatible = model.load_state_dict(state, strict=False)
        missing, unexpected = incompatible.missing_keys, incompatible.unexpected_keys
    except RuntimeError as error:  # sizes differ, or a value is no tensor: compare the keys ourselves
        expected = model.state_dict()
        missing = [key for key in expected if key not in state]
        unexpected = [key for key in state if key not in expected]
        resized = [key for key in expected if key in state and _shape(state[key]) != _shape(expected[key])]
        if not (missing or unexpected or resized):
            detail = " ".join(line.strip() for line in str(error).strip().splitlines()[1:3])
            raise InputError(f"{where} does not load into {name}: {detail[:300]}") from None
    if (
        unexpected
        and all(key.startswith("module.") for key in unexpected)
        and {k[7:] for k in unexpected} >= set(missing)
    ):
        raise InputError(
            f"{where} holds {name} weights saved from a DataParallel wrapper (every key starts with 'module.'); "
            "save model.module.state_dict()"
        )
    if missing or unexpected:
        counts = [f"{len(missing)} missing keys ({_preview(missing)})"] if missing else []
        counts += [f"{len(unexpected)} unexpected ({_preview(unexpected)})"] if unexpected else []
        raise InputError(f"{where} holds a state dict for another architecture than {name}: {', '.join(counts)}")
    if resized:
        shown = "; ".join(
            f"{key} {_shape(state[key])} in the file, {_shape(model.state_dict()[key])} here" for key in resized[:2]
        )
        more = ", …" if len(resized) > 2 else ""
        raise InputError(
            f"{where} holds {name} weights of other sizes ({len(resized)} of {len(state)} tensors: {shown}{more})"
            + (f"; {sizes}" if sizes else "")
        )


def _preview(keys: list[str], shown: int = 3) -> str:
    return ", ".join(keys[:shown]) + (", …" if len(keys) > shown else "")


def _shape(value: object) -> list[int] | None:
    return list(value.shape) if isinstance(value, torch.Tensor) else None


def torchvision_weights(name: str, weights: str, num_classes: int, field: str = "model.weights") -> nn.Module:
    """Torchvision's builder ``name`` with its weights enum member ``weights`` (``IMAGENET1K_V1``).

    The file comes from the torch hub cache (``$TORCH_HOME/hub/checkpoints``); it is downloaded
    only when the download host can be reached, so an offline machine gets one line naming the
    file to copy there instead of a hang or a traceback.
    """
    import torchvision

    if name in MODELS:
        raise InputError(
            f"{field}: {weights!r} is a torchvision weights name, which only torchvision builders take; {name} is "
            f"xaisearch's own model: give a checkpoint file instead ({SAVE_HINT})"
        )
    choices = torchvision.models.get_model_weights(name)
    if weights not in choices.__members__:
        raise InputError(
            f"{field}: {name} has no torchvision weights {weights!r} (and no file of that name); choose one of "
            f"{list(choices.__members__)} or give a checkpoint file"
        )
    chosen = choices[weights]
    categories = len(chosen.meta["categories"])
    if num_classes != categories:
        raise InputError(
            f"model.num_classes: {name} with weights {weights} has {categories} classes, not {num_classes}; "
            f"set num_classes: {categories}"
        )
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(chosen.url).path).name
    offline = f"{field}: {name} {weights} is not in the local cache ({cached})"
    if not cached.is_file() and not download_possible(chosen.url):
        raise InputError(
            f"{offline} and {urlparse(chosen.url).hostname} cannot be reached; copy {chosen.url} there "
            "(TORCH_HOME moves the cache) or give a checkpoint file"
        )
    try:
        return torchvision.models.get_model(name, weights=weights)
    except OSError as error:  # URLError included
        raise InputError(f"{offline} and downloading {chosen.url} failed ({error}); copy it there") from None
    except Exception as error:  # a cut-short or corrupt cache file: torch.load's readers raise anything
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise InputError(
            f"{field}: {cached} (the cached {name} {weights}) does not load ({first}); delete it"
        ) from None


def download_possible(url: str, timeout: float = 3.0) -> bool:
    """Whether a download of ``url`` can start: a proxy is set for it, or its host takes a connection."""
    import socket
    import urllib.request

    parts = urlparse(url)
    if urllib.request.getproxies().get(parts.scheme) or not parts.hostname:
        return True
    try:
        with socket.create_connection((parts.hostname, parts.port or 443), timeout=timeout):
            return True
    except OSError:
        return False


def build_model(ref: ModelRef, base_dir: Path | None = None, device: str | torch.device = "cpu") -> nn.Module:
    """The model of ``ref`` in eval mode on ``device``, with its weights loaded.

    Relative weight paths are resolved against ``base_dir`` (the config file's folder), then
    the working directory; other strings name torchvision weights (``IMAGENET1K_V1``), or, for
    ``timm/<name>``, ``pretrained``: timm's weights from the local cache (``timm_models``).
    """
    if ref.weights == timm_models.PRETRAINED and timm_models.timm_name(ref.name) is not None:
        return timm_models.timm_pretrained(ref).to(device).eval()
    model = build_architecture(ref)
    if ref.weights is not None:
        candidates = [Path(ref.weights)] if base_dir is None else [base_dir / ref.weights, Path(ref.weights)]
        path = next((p for p in candidates if p.is_file()), None)
        if path is not None:
            built = f"model.num_classes {ref.num_classes} and model.input_shape {list(ref.input_shape)}"
            load_weights(model, path, ref.name, sizes=f"{ref.name} was built for {built}")
        elif re.fullmatch(r"[A-Z0-9_]+", ref.weights) and timm_models.timm_name(ref.name) is None:
            model = torchvision_weights(ref.name, ref.weights, ref.num_classes)
        else:
            timm_hint = f"; give a checkpoint file or '{timm_models.PRETRAINED}' (timm's own weights)"
            raise FileNotFoundError(
                f"model weights {ref.weights!r} not found (looked in {[str(p) for p in candidates]})"
                + (timm_hint if timm_models.timm_name(ref.name) is not None else "")
            )
    return model.to(device).eval()
