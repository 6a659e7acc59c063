import pytest
import torch

from explain.hub import UPLOAD_LIMIT_BYTES, ModelHub
from googlenet.model import GoogLeNet
from googlenet.preprocess import Preprocess
from googlenet.weights import CIFAR10_CLASSES, CheckpointError, CheckpointMeta, runs_dir, save_checkpoint

META = CheckpointMeta(CIFAR10_CLASSES, Preprocess(32, 32, (0.5,) * 3, (0.25,) * 3), training={"accuracy": {"main": 0.61}})


def tiny(path):
    torch.manual_seed(0)
    return save_checkpoint(path, GoogLeNet(num_classes=10, stem="cifar", width=0.125), META)


def test_choices_list_runs_with_accuracy_and_resolve_safely():
    tiny(runs_dir() / "a" / "last.safetensors")
    hub = ModelHub()
    choices = dict((v, label) for label, v in hub.choices())
    assert "runs:a/last.safetensors" in choices and "61.0%" in choices["runs:a/last.safetensors"]
    assert "random" in choices
    for bad in ("runs:../outside.safetensors", "runs:a/../../x.safetensors", "/etc/passwd", "runs:a/config.json"):
        with pytest.raises(ValueError):
            hub.resolve(bad)
    assert hub.explorer("runs:a/last.safetensors").loaded.input_size == 32


def test_uploads_are_checked_copied_and_offered(tmp_path):
    hub = ModelHub()
    good = tiny(tmp_path / "my model!.safetensors")
    choice = hub.add_upload(good, "../../my model!.safetensors")
    assert choice == "runs:uploads/my-model.safetensors"
    assert (runs_dir() / "uploads" / "my-model.safetensors").is_file()
    assert hub.add_upload(good, "my model!.safetensors") == choice  # the same file again: kept once
    torch.manual_seed(1)
    other = save_checkpoint(tmp_path / "other.safetensors", GoogLeNet(num_classes=10, stem="cifar", width=0.125), META)
    assert hub.add_upload(other, "my model!.safetensors") == "runs:uploads/my-model-2.safetensors"  # never overwritten
    assert sorted(p.name for p in (runs_dir() / "uploads").iterdir()) == ["my-model-2.safetensors", "my-model.safetensors"]
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x80\x04not really")
    with pytest.raises(CheckpointError, match="pickle"):
        hub.add_upload(bad)
    assert not (runs_dir() / "uploads" / "bad.safetensors").exists()
    big = tmp_path / "big.safetensors"
    with open(big, "wb") as f:
        f.truncate(UPLOAD_LIMIT_BYTES + 1)
    with pytest.raises(CheckpointError, match="upload limit"):
        hub.add_upload(big)


def test_operator_can_pin_a_file_and_clients_cannot(tmp_path):
    hub = ModelHub()
    path = tiny(tmp_path / "pinned.safetensors")
    hub.prefer(str(path))
    assert hub.default() == "file" and hub.loaded("file").path == path.resolve()
    other = ModelHub()
    with pytest.raises(ValueError):
        other.resolve("file")
    with pytest.raises(FileNotFoundError):
        other.prefer(str(tmp_path / "nope.safetensors"))


def test_microscope_owns_its_model_and_leaves_with_it(tmp_path):
    for name in "abcd":
        tiny(runs_dir() / name / "last.safetensors")
    hub = ModelHub(max_models=2)
    scope = hub.microscope("runs:a/last.safetensors", tmp_path)
    assert hub.microscope("runs:a/last.safetensors", tmp_path) is scope
    # its hooks never meet the passes that classify and explore run on the shared model
    assert scope.loaded.model is not hub.loaded("runs:a/last.safetensors").model
    for name in "bcd":
        hub.explorer(f"runs:{name}/last.safetensors")
    assert len(hub._microscopes) == 0  # evicted with its model
    assert hub.microscope("runs:a/last.safetensors", tmp_path) is not scope
