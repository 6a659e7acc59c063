"""Checkpoints people already have: torchvision state dicts in (CLI and app upload), and back out."""

import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

from explain.explorer import Explorer
from googlenet.convert import export_torchvision, import_checkpoint, infer_config, read_state_dict
from googlenet.weights import CheckpointError, load_model, read_checkpoint, runs_dir
from server.hub import ModelHub

ROOT = Path(__file__).resolve().parent.parent
CLASSES = ["oak", "maple", "birch", "pine", "ash", "elm", "willow"]


def torchvision_googlenet(**kwargs) -> torch.nn.Module:
    torch.manual_seed(0)
    return torchvision.models.googlenet(weights=None, init_weights=True, **kwargs).eval()


@pytest.fixture(scope="module")
def picture() -> torch.Tensor:
    return torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("aux", [True, False])
def test_a_torchvision_state_dict_imports_through_the_cli_and_round_trips(tmp_path, picture, aux):
    reference = torchvision_googlenet(num_classes=7, aux_logits=aux)
    pth = tmp_path / "leaves.pth"
    torch.save(reference.state_dict(), pth)
    names = tmp_path / "classes.txt"
    names.write_text("\n".join(CLASSES) + "\n")
    out = tmp_path / "leaves.safetensors"
    cli = subprocess.run(
        [sys.executable, "-m", "googlenet", "import", str(pth), "--classes", str(names), "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert cli.returncode == 0, cli.stderr
    assert "7 classes" in cli.stdout and ("aux1" in cli.stdout) == aux

    model, meta = read_checkpoint(out)
    assert meta.classes == tuple(CLASSES) and meta.preprocess.input_size == 224
    with torch.no_grad():
        expected = reference(picture)
        assert (model.eval()(picture) - expected).abs().max() <= 1e-5
        loaded = load_model(out)  # as the app runs it: BatchNorm folded, channels_last
        assert (loaded.model(picture) - expected).abs().max() <= 1e-4

    exploration = Explorer(loaded).explore(np.random.default_rng(0).integers(0, 256, (240, 260, 3), dtype=np.uint8))
    assert len(exploration.cams) == 36
    assert tuple(exploration.predictions) == (("main", "aux1", "aux2") if aux else ("main",))
    assert {p.label for p in exploration.predictions["main"]} <= set(CLASSES)

    back = tmp_path / "back.pth"
    cli = subprocess.run(
        [sys.executable, "-m", "googlenet", "export", str(out), "--torchvision", str(back)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert cli.returncode == 0, cli.stderr
    again = torchvision.models.googlenet(weights=None, num_classes=7, aux_logits=aux, init_weights=False).eval()
    again.load_state_dict(torch.load(back, weights_only=True), strict=True)
    with torch.no_grad():
        assert torch.equal(again(picture), expected)


def test_wrapped_and_prefixed_state_dicts_and_safetensors(tmp_path):
    from safetensors.torch import save_file

    state = torchvision_googlenet(num_classes=3, aux_logits=False).state_dict()
    torch.save({"epoch": 4, "state_dict": {f"module.{k}": v for k, v in state.items()}}, tmp_path / "ddp.pt")
    assert set(read_state_dict(tmp_path / "ddp.pt")) == set(state)
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "bare.safetensors"))
    out = import_checkpoint(tmp_path / "bare.safetensors", tmp_path / "imported.safetensors")
    _, meta = read_checkpoint(out)
    assert meta.classes == ("class 0", "class 1", "class 2") and "class names unknown" in meta.training["note"]


def test_the_paper_layout_and_the_cifar_stem_are_inferred():
    from googlenet.model import GoogLeNet

    plain = infer_config(GoogLeNet(num_classes=5, batch_norm=False, width=0.25).state_dict())
    assert (plain.batch_norm, plain.kernel3, plain.num_classes, plain.width) == (False, 5, 5, 0.25)
    cifar = infer_config(GoogLeNet(num_classes=10, stem="cifar", width=0.3, aux_logits=False).state_dict())
    assert (cifar.stem, cifar.aux_logits, cifar.width) == ("cifar", False, 0.2998046875)


class _RunsCode:
    def __reduce__(self):
        return (print, ("this would have run",))


def test_bad_files_get_clear_messages_and_nothing_is_written(tmp_path):
    cases = {}
    with open(tmp_path / "code.pth", "wb") as handle:
        pickle.dump({"conv1.conv.weight": _RunsCode()}, handle)
    cases["code.pth"] = "could run code"
    torch.save({"w": torch.zeros(3)}, tmp_path / "full.pth")
    (tmp_path / "truncated.pth").write_bytes((tmp_path / "full.pth").read_bytes()[:200])
    cases["truncated.pth"] = "damaged or truncated"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), tmp_path / "resnet.pth")
    cases["resnet.pth"] = "looks like a ResNet"
    v3 = {
        k: v
        for k, v in torchvision.models.inception_v3(weights=None, init_weights=False, aux_logits=False).state_dict().items()
        if k.startswith("Mixed_5b")
    }
    torch.save(v3, tmp_path / "inception_v3.pth")
    cases["inception_v3.pth"] = "Inception v3"
    with open(tmp_path / "huge.pth", "wb") as handle:
        handle.truncate(2 * 2**30)  # 2 GB, sparse: nothing is read
    cases["huge.pth"] = "over the 1024 MiB limit"
    (tmp_path / "text.bin").write_text("not a model")
    cases["text.bin"] = "neither a PyTorch file"
    for name, message in cases.items():
        with pytest.raises(CheckpointError, match=message):
            import_checkpoint(tmp_path / name, runs_dir() / "imported" / f"{name}.safetensors")
    good = tmp_path / "seven.pth"
    torch.save(torchvision_googlenet(num_classes=7, aux_logits=False).state_dict(), good)
    with pytest.raises(ValueError, match="3 class names for a model with 7 outputs"):
        import_checkpoint(good, runs_dir() / "imported" / "seven.safetensors", classes=["a", "b", "c"])
    assert not (runs_dir() / "imported").exists()


def test_the_app_hub_accepts_a_torchvision_upload(tmp_path):
    pth = tmp_path / "my model.pth"
    torch.save(torchvision_googlenet(num_classes=4, aux_logits=False).state_dict(), pth)
    hub = ModelHub(device="cpu")
    choice = hub.add_upload(pth, "my model.pth")
    loaded = hub.loaded(choice)
    assert loaded.classes == ("class 0", "class 1", "class 2", "class 3") and any("class names unknown" in n for n in loaded.notes)
    with pytest.raises(CheckpointError, match="could run code"):
        bad = tmp_path / "bad.pth"
        with open(bad, "wb") as handle:
            pickle.dump(_RunsCode(), handle)
        hub.add_upload(bad, "bad.pth")
    assert sorted(p.name for p in (runs_dir() / "uploads").iterdir()) == ["my-model.safetensors"]


def test_export_refuses_layouts_torchvision_does_not_have(tmp_path):
    from googlenet.model import GoogLeNet
    from googlenet.preprocess import CIFAR10
    from googlenet.weights import CIFAR10_CLASSES, CheckpointMeta, save_checkpoint

    path = save_checkpoint(
        tmp_path / "cifar.safetensors", GoogLeNet(num_classes=10, stem="cifar", width=0.25), CheckpointMeta(CIFAR10_CLASSES, CIFAR10)
    )
    with pytest.raises(CheckpointError, match="torchvision has no such network: .*CIFAR stem.*width is 0.25"):
        export_torchvision(path, tmp_path / "out.pth")
    assert not (tmp_path / "out.pth").exists()
