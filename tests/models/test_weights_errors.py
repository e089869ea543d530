"""Weights that cannot be loaded: one line naming the file (or name) and what it holds, never a traceback.

Every checkpoint here is a real file written by the test; torchvision weights come from a hub
cache the test fills (or leaves empty), so nothing is downloaded.
"""

from __future__ import annotations

import random
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torchvision

from xaisearch.cli import main
from xaisearch.errors import InputError
from xaisearch.models import zoo
from xaisearch.models.mini import mini_vgg
from xaisearch.models.ref import ModelRef


class TrainingRun:
    """Not weights: a pickled object of the test's own class, which weights-only loading refuses."""

    def __init__(self) -> None:
        self.epochs = 3


def _garbage(path: Path) -> None:
    path.write_bytes(random.Random(0).randbytes(2000))


def _truncated(path: Path) -> None:
    torch.save(mini_vgg(image_size=32).state_dict(), path)
    path.write_bytes(path.read_bytes()[:20000])


BAD_FILES: dict[str, tuple[Callable[[Path], None], str]] = {
    "random bytes": (_garbage, "is not a PyTorch checkpoint"),
    "empty": (lambda path: path.write_bytes(b""), "is empty"),
    "cut short": (_truncated, "is not a PyTorch checkpoint"),
    "a list": (lambda path: torch.save([1, 2, 3], path), "holds a list, not a state dict"),
    "an object": (lambda path: torch.save(TrainingRun(), path), f"pickled {__name__}.TrainingRun object"),
    "no tensors": (lambda path: torch.save({"epoch": 3, "lr": 0.1}, path), "dict without tensors (keys epoch, lr)"),
    "another architecture": (
        lambda path: torch.save(torchvision.models.resnet18().state_dict(), path),
        "another architecture than mini_vgg: 28 missing keys (features.0.weight, features.0.bias, features.1.weight, "
        "…), 122 unexpected (conv1.weight, bn1.weight, bn1.bias, …)",
    ),
    "other sizes": (
        lambda path: torch.save({"model_state": mini_vgg(num_classes=10, image_size=32).state_dict()}, path),
        "mini_vgg weights of other sizes (2 of 32 tensors: classifier.2.weight [10, 64] in the file, [4, 64] here; "
        "classifier.2.bias [10] in the file, [4] here)",
    ),
}


def mini_ref(weights: str | None) -> ModelRef:
    return ModelRef(name="mini_vgg", num_classes=4, input_shape=(3, 32, 32), weights=weights)


def one_line_error(call: Callable[[], object]) -> str:
    with pytest.raises(InputError) as raised:
        call()
    message = str(raised.value)
    assert "\n" not in message and len(message) < 400, message
    return message


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_a_bad_weights_file_is_one_line_naming_the_file_and_what_it_holds(tmp_path, case):
    write, holds = BAD_FILES[case]
    path = tmp_path / "weights.pt"
    write(path)
    message = one_line_error(lambda: zoo.build_model(mini_ref(str(path))))
    assert message.startswith(f"model.weights: {str(path)!r} ") and holds in message


def test_other_sizes_say_what_the_model_was_built_for(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save(mini_vgg(num_classes=4, image_size=64).state_dict(), path)
    message = one_line_error(lambda: zoo.build_model(mini_ref(str(path))))
    assert "classifier.0.weight [64, 1024] in the file, [64, 256] here" in message
    assert message.endswith("mini_vgg was built for model.num_classes 4 and model.input_shape [3, 32, 32]")


def test_a_data_parallel_checkpoint_is_named_as_such(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save({f"module.{k}": v for k, v in mini_vgg(image_size=32).state_dict().items()}, path)
    message = one_line_error(lambda: zoo.build_model(mini_ref(str(path))))
    assert (
        "holds mini_vgg weights saved from a DataParallel wrapper" in message and "model.module.state_dict()" in message
    )


@pytest.mark.parametrize("nesting", ["bare", "model_state", "state_dict"])
def test_good_checkpoints_still_load_exactly(tmp_path, nesting):
    state = mini_vgg(image_size=32).state_dict()
    path = tmp_path / "weights.pt"
    torch.save(state if nesting == "bare" else {nesting: state, "epoch": 3}, path)
    loaded = zoo.build_model(mini_ref(str(path))).state_dict()
    assert all(torch.equal(loaded[key], value) for key, value in state.items())


def test_canonize_weights_errors_end_to_end(tmp_path):
    """The console script: exit 2, one stderr line, for an object pickle and another architecture."""
    cases = {"object.pt": TrainingRun(), "resnet.pt": torchvision.models.resnet18().state_dict()}
    for name, content in cases.items():
        torch.save(content, tmp_path / name)
    for name, holds in (("object.pt", "TrainingRun object"), ("resnet.pt", "another architecture than mini_vgg")):
        result = subprocess.run(
            [sys.executable, "-m", "xaisearch.cli", "canonize", "mini_vgg", "--weights", str(tmp_path / name)],
            capture_output=True,
            text=True,
        )
        assert result.returncode == 2, result.stderr
        assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: --weights: ")
        assert holds in result.stderr and result.stdout == ""


def test_canonize_weights_of_other_sizes_name_the_input_size(tmp_path, capsys):
    path = tmp_path / "mini.pt"
    torch.save(mini_vgg(image_size=32).state_dict(), path)
    assert main(["canonize", "mini_vgg", "--weights", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "builds mini_vgg with 4 classes for --input-size 64" in err
    assert main(["canonize", "mini_vgg", "--weights", str(path), "--input-size", "32", "--json"]) == 0


# --- torchvision weights names ---------------------------------------------------------------


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """An empty torch hub cache, and no network: a download attempt fails the test."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def no_download(*args: object, **kwargs: object) -> None:
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    return tmp_path / "torch" / "hub" / "checkpoints"


def test_a_torchvision_weights_name_on_our_own_model(hub_cache):
    message = one_line_error(lambda: zoo.build_model(mini_ref("IMAGENET1K_V1")))
    assert "'IMAGENET1K_V1' is a torchvision weights name, which only torchvision builders take" in message
    assert "mini_vgg" in message and "give a checkpoint file" in message


def test_an_unknown_torchvision_weights_name_lists_the_valid_ones(hub_cache):
    ref = ModelRef(name="resnet18", num_classes=1000, input_shape=(3, 224, 224), weights="FOO_V9")
    message = one_line_error(lambda: zoo.build_model(ref))
    assert "resnet18 has no torchvision weights 'FOO_V9'" in message and "['IMAGENET1K_V1', 'DEFAULT']" in message


def test_torchvision_weights_for_another_class_count(hub_cache):
    ref = ModelRef(name="resnet18", num_classes=4, input_shape=(3, 224, 224), weights="IMAGENET1K_V1")
    message = one_line_error(lambda: zoo.build_model(ref))
    assert message.startswith("model.num_classes: resnet18 with weights IMAGENET1K_V1 has 1000 classes")


def test_torchvision_weights_offline_and_not_cached(hub_cache, monkeypatch):
    monkeypatch.setattr(zoo, "download_possible", lambda url, timeout=3.0: False)
    ref = ModelRef(name="resnet18", num_classes=1000, input_shape=(3, 224, 224), weights="IMAGENET1K_V1")
    message = one_line_error(lambda: zoo.build_model(ref))
    cached = hub_cache / "resnet18-f37072fd.pth"
    assert f"resnet18 IMAGENET1K_V1 is not in the local cache ({cached})" in message
    assert "download.pytorch.org cannot be reached" in message and "resnet18-f37072fd.pth there" in message
    assert not cached.exists()


def test_torchvision_weights_load_from_the_cache_without_the_network(hub_cache, monkeypatch):
    monkeypatch.setattr(zoo, "download_possible", lambda url, timeout=3.0: pytest.fail("network probed"))
    hub_cache.mkdir(parents=True)
    state = torchvision.models.resnet18().state_dict()
    torch.save(state, hub_cache / "resnet18-f37072fd.pth")
    ref = ModelRef(name="resnet18", num_classes=1000, input_shape=(3, 224, 224), weights="IMAGENET1K_V1")
    loaded = zoo.build_model(ref).state_dict()
    assert all(torch.equal(loaded[key], value) for key, value in state.items())


def test_download_possible_is_false_for_a_host_that_refuses(monkeypatch):
    for proxy in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(proxy, raising=False)
    with socket.socket() as closed:  # bound, never listening: connections are refused at once
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        assert zoo.download_possible(f"http://127.0.0.1:{port}/resnet18.pth", timeout=1.0) is False
