import json
import pickle
import urllib.error
from pathlib import Path

import pytest
import torch
import torchvision
from safetensors.torch import load_file, save_file

import googlenet.weights as weights
from googlenet.model import GoogLeNet
from googlenet.preprocess import Preprocess
from googlenet.weights import (
    CIFAR10_CLASSES,
    CheckpointError,
    CheckpointMeta,
    find_checkpoints,
    load_model,
    pick_device,
    read_checkpoint,
    save_checkpoint,
)
from tests.conftest import randomize_bn

META = CheckpointMeta(CIFAR10_CLASSES, Preprocess(32, 32, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)), training={"epochs": 1})


def small_model():
    torch.manual_seed(0)
    return randomize_bn(GoogLeNet(num_classes=10, stem="cifar", width=0.125))


def test_checkpoint_round_trip_is_bit_exact(tmp_path):
    model = small_model()
    path = save_checkpoint(tmp_path / "a.safetensors", model, META)
    loaded, meta = read_checkpoint(path)
    for (k, a), (k2, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(a, b)
    assert meta == META
    assert loaded.config == model.config
    assert not list(tmp_path.glob(".*.tmp"))  # the temporary file was renamed


def test_fp16_checkpoint_loads_as_float32(tmp_path):
    model = small_model()
    path = save_checkpoint(tmp_path / "half.safetensors", model, META, dtype=torch.float16)
    assert load_file(str(path))["fc.weight"].dtype == torch.float16
    loaded = load_model(path)
    assert next(loaded.model.parameters()).dtype == torch.float32
    assert loaded.classes == CIFAR10_CLASSES and loaded.input_size == 32 and loaded.source == "checkpoint"


def test_loaded_model_is_folded_and_matches_the_trained_one(tmp_path):
    model = small_model().eval()
    path = save_checkpoint(tmp_path / "m.safetensors", model, META)
    loaded = load_model(path)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in loaded.model.modules())
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        expected = model(x)
        assert (loaded.model(x) - expected).abs().max() <= 1e-5 * expected.abs().max()


def _write_bad(tmp_path: Path, kind: str) -> Path:
    path = tmp_path / f"{kind}.safetensors"
    good = save_checkpoint(tmp_path / "good.safetensors", small_model(), META)
    if kind == "truncated":
        path.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("this is not a checkpoint at all, just some text")
    elif kind == "pickle":
        path.write_bytes(pickle.dumps({"weights": [1, 2, 3]}))
    elif kind == "torch_zip":
        torch.save(small_model().state_dict(), path)
    elif kind == "no_metadata":
        save_file({"x": torch.zeros(2)}, str(path))
    elif kind == "wrong_architecture":
        other = GoogLeNet(num_classes=10, stem="cifar", width=0.25)
        tensors = {k: v.contiguous() for k, v in other.state_dict().items()}
        with open(good, "rb"):
            pass
        from safetensors import safe_open

        with safe_open(str(good), "pt") as handle:
            metadata = handle.metadata()
        save_file(tensors, str(path), metadata=metadata)  # width-0.25 tensors, width-0.125 config
    elif kind == "class_count":
        from safetensors import safe_open

        with safe_open(str(good), "pt") as handle:
            metadata = handle.metadata()
        metadata["classes"] = json.dumps(["a", "b"])
        save_file(load_file(str(good)), str(path), metadata=metadata)
    elif kind == "nan":
        model = small_model()
        model.fc.weight.data[0, 0] = float("nan")
        save_checkpoint(path, model, META)
    return path


@pytest.mark.parametrize(
    "kind,message",
    [
        ("truncated", "truncated"),
        ("empty", "too short"),
        ("text", "not a safetensors file"),
        ("pickle", "pickle"),
        ("torch_zip", "zip / PyTorch"),
        ("no_metadata", "without GoogLeNet metadata"),
        ("wrong_architecture", "wrong architecture"),
        ("class_count", "class count mismatch"),
        ("nan", "non-finite"),
    ],
)
def test_bad_checkpoints_give_a_clear_error_naming_the_file(tmp_path, kind, message, monkeypatch):
    path = _write_bad(tmp_path, kind)
    monkeypatch.setattr(pickle, "loads", lambda *a, **k: pytest.fail("something unpickled a user file"))
    monkeypatch.setattr(pickle, "load", lambda *a, **k: pytest.fail("something unpickled a user file"))
    with pytest.raises(CheckpointError, match=message) as error:
        load_model(path)
    assert path.name in str(error.value)


def test_missing_checkpoint():
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        load_model("runs/nope/last.safetensors")


def _fake_imagenet_fetch(monkeypatch):
    """Replace only the network/cache read of torchvision's weights with a random state dict."""
    torch.manual_seed(1)
    reference = randomize_bn(torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=True)).eval()
    calls = []

    def fetch(url, *args, **kwargs):
        calls.append((url, kwargs))
        return reference.state_dict()

    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", fetch)
    return reference, calls


def test_imagenet_source_runs_the_real_code_path(monkeypatch):
    reference, calls = _fake_imagenet_fetch(monkeypatch)
    monkeypatch.setattr(weights.urllib.request, "urlopen", lambda *a, **k: type("R", (), {"close": lambda self: None})())
    loaded = load_model("imagenet")
    assert calls and calls[0][0].endswith("googlenet-1378be20.pth")
    assert calls[0][1]["check_hash"] is True and calls[0][1]["weights_only"] is True
    assert loaded.source == "imagenet" and len(loaded.classes) == 1000 and loaded.classes[0] == "tench"
    assert loaded.input_size == 224 and loaded.resize_size == 256
    assert any("aux" in note and "untrained" in note for note in loaded.notes)
    # torchvision's transform_input on ImageNet-normalised input == our model on (x - 0.5) / 0.5
    reference.transform_input = True
    pixels = torch.rand(1, 3, 224, 224)
    imagenet = (pixels - torch.tensor(weights.IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(weights.IMAGENET_STD).view(1, 3, 1, 1)
    ours = (pixels - 0.5) / 0.5
    with torch.no_grad():
        assert (loaded.model(ours) - reference(imagenet)).abs().max() <= 1e-4


def test_auto_prefers_imagenet_when_obtainable(monkeypatch):
    _fake_imagenet_fetch(monkeypatch)
    monkeypatch.setenv("GOOGLENET_OFFLINE", "0")
    monkeypatch.setattr(weights.urllib.request, "urlopen", lambda *a, **k: type("R", (), {"close": lambda self: None})())
    assert load_model("auto").source == "imagenet"


def _offline(*args, **kwargs):
    raise urllib.error.URLError("no network in this test")


def test_auto_falls_back_in_order_with_notes(monkeypatch, tmp_path):
    monkeypatch.setenv("GOOGLENET_OFFLINE", "0")
    monkeypatch.setattr(weights.urllib.request, "urlopen", _offline)
    # 1. no checkpoint → bundled model (when present) …
    monkeypatch.setattr(weights, "BUNDLED_MODEL", tmp_path / "missing.safetensors")
    loaded = load_model("auto")
    assert loaded.source == "random"
    assert any("ImageNet weights unavailable" in n for n in loaded.notes)
    assert any("predictions and maps mean nothing" in n for n in loaded.notes)
    bundled = save_checkpoint(tmp_path / "bundled.safetensors", small_model(), META, dtype=torch.float16)
    monkeypatch.setattr(weights, "BUNDLED_MODEL", bundled)
    loaded = load_model("auto")
    assert loaded.source == "bundled" and any("bundled" in n for n in loaded.notes)
    # 2. … and a checkpoint in the runs folder beats the bundled model; a corrupt newer one is skipped.
    runs = weights.runs_dir()
    save_checkpoint(runs / "run1" / "last.safetensors", small_model(), META)
    loaded = load_model("auto")
    assert loaded.source == "checkpoint" and loaded.name == "run1/last.safetensors"
    (runs / "run2").mkdir()
    (runs / "run2" / "last.safetensors").write_bytes(b"\x00" * 100)
    loaded = load_model("auto")
    assert loaded.name == "run1/last.safetensors"
    assert any("skipped" in n and "run2" in n for n in loaded.notes)


def test_find_checkpoints_ignores_temporary_and_state_files():
    runs = weights.runs_dir()
    save_checkpoint(runs / "r" / "last.safetensors", small_model(), META)
    (runs / "r" / ".last.safetensors.abc.tmp").write_bytes(b"partial")
    (runs / "r" / "state-00000010.safetensors").write_bytes(b"x")  # the trainer's state files, then and now
    (runs / "r" / "state-00000010.pt").write_bytes(b"x")
    assert [p.name for p in find_checkpoints()] == ["last.safetensors"]


def test_device_choice(monkeypatch):
    monkeypatch.delenv("GOOGLENET_DEVICE")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert pick_device().type == expected
    monkeypatch.setenv("GOOGLENET_DEVICE", "cpu")
    assert pick_device().type == "cpu"
    with pytest.raises(ValueError, match="unknown device"):
        pick_device("tpu9")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            pick_device("cuda")


def test_random_weights_are_labelled():
    loaded = load_model("random")
    assert loaded.source == "random" and not loaded.trained
    assert any("mean nothing" in n for n in loaded.notes)


def test_saving_refuses_an_inference_copy(tmp_path):
    from googlenet.model import fold_batchnorm

    with pytest.raises(ValueError, match="folded"):
        save_checkpoint(tmp_path / "x.safetensors", fold_batchnorm(small_model()), META)


def test_a_checkpoint_whose_header_length_starts_like_a_pickle_still_loads(tmp_path):
    # A safetensors file begins with its header's length (8 bytes, little-endian): 128 modulo 256
    # puts 0x80, a pickle's first byte, at the start. A real checkpoint of this project hit it.
    from googlenet.preprocess import CIFAR10 as RECIPE
    from googlenet.weights import CIFAR10_CLASSES, CheckpointMeta, read_checkpoint, save_checkpoint

    model = GoogLeNet(num_classes=10, stem="cifar", width=0.125)
    path = tmp_path / "last.safetensors"
    for pad in range(300):
        save_checkpoint(path, model, CheckpointMeta(CIFAR10_CLASSES, RECIPE, {"note": "x" * pad}))
        if path.read_bytes()[0] == 0x80:
            break
    assert path.read_bytes()[0] == 0x80
    loaded, meta = read_checkpoint(path)
    assert meta.training["note"].startswith("x")
