import pytest
import torch

from googlenet.model import GoogLeNet
from googlenet.preprocess import Preprocess
from googlenet.weights import CIFAR10_CLASSES, CheckpointError, CheckpointMeta, runs_dir, save_checkpoint
from server.hub import UPLOAD_LIMIT_BYTES, ModelHub

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


def test_a_public_hub_lists_each_visitors_runs_and_uploads_to_them_only(tmp_path):
    from server.hub import EVERYONE
    from server.owners import Owner, write_owner

    alice, bob = "a1" * 10, "b2" * 10
    tiny(runs_dir() / "operator-run" / "last.safetensors")  # the CLI's: no owner record
    tiny(runs_dir() / "alice-run" / "last.safetensors")
    write_owner(runs_dir() / "alice-run", Owner(alice, "visitor amber otter"))
    tiny(runs_dir() / "admin-run" / "last.safetensors")
    write_owner(runs_dir() / "admin-run", Owner(bob, "visitor x", operator=True))
    (runs_dir() / "broken-run").mkdir()
    tiny(runs_dir() / "broken-run" / "last.safetensors")
    (runs_dir() / "broken-run" / "owner.json").write_text("{not json")
    hub = ModelHub()
    hub.private_listing = True
    upload = hub.add_upload(tiny(tmp_path / "mine.safetensors"), "mine.safetensors", owner=alice)
    assert upload == f"runs:uploads/{alice}/mine.safetensors"

    def values(viewer):
        return {v for _, v in hub.choices(viewer)}

    shared = {"runs:operator-run/last.safetensors", "runs:admin-run/last.safetensors", "bundled", "random"}
    assert values(None) == shared  # a stranger (and the default) sees the operator's models only
    assert values(bob) == shared
    assert values(alice) == shared | {"runs:alice-run/last.safetensors", upload}
    assert "runs:broken-run/last.safetensors" in values(EVERYONE)  # an unreadable record: the operator only
    assert hub.default() in shared
    hub.viewer = lambda: bob  # another visitor asking for alice's run by name: as if it did not exist
    for choice in ("runs:alice-run/last.safetensors", upload):
        with pytest.raises(ValueError, match="no longer exists"):
            hub.resolve(choice)
    hub.viewer = lambda: alice
    assert hub.explorer(upload).loaded.input_size == 32
    hub.private_listing = False  # a local server lists everything, as before
    assert "runs:alice-run/last.safetensors" in values(None)


def test_upload_quota_per_visitor_and_total_cap_evicts_the_oldest_upload(tmp_path):
    import os

    from server.hub import UploadPolicy

    hub = ModelHub()
    hub.private_listing = True
    size = tiny(tmp_path / "probe.safetensors").stat().st_size
    hub.policy = UploadPolicy(quota_bytes=2 * size + 10, total_bytes=3 * size + 10)
    alice, bob = "a1" * 10, "b2" * 10
    kept = []
    for i, owner in enumerate((alice, alice, bob)):
        torch.manual_seed(i)
        path = save_checkpoint(tmp_path / f"m{i}.safetensors", GoogLeNet(num_classes=10, stem="cifar", width=0.125), META)
        kept.append(runs_dir() / hub.add_upload(path, f"m{i}.safetensors", owner=owner)[len("runs:") :])
        os.utime(kept[-1], (1000 + i, 1000 + i))  # a clear order, oldest first
    tiny(runs_dir() / "a-run" / "last.safetensors")  # runs are never evicted
    torch.manual_seed(9)
    third = save_checkpoint(tmp_path / "m9.safetensors", GoogLeNet(num_classes=10, stem="cifar", width=0.125), META)
    with pytest.raises(CheckpointError, match=r"per-visitor quota of .* MB \(GOOGLENET_UPLOAD_QUOTA_MB\)"):
        hub.add_upload(third, "m9.safetensors", owner=alice)
    newest = runs_dir() / hub.add_upload(third, "m9.safetensors", owner=bob)[len("runs:") :]
    assert not kept[0].exists() and kept[1].exists() and kept[2].exists() and newest.exists()  # past the cap: the oldest went
    assert (runs_dir() / "a-run" / "last.safetensors").exists()
    hub.policy = UploadPolicy(retention_s=3600)
    hub._sweep_uploads(force=True)  # the utime'd uploads are from 1970: past any retention
    assert not kept[1].exists() and not kept[2].exists() and newest.exists()
