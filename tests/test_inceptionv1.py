"""Lucid's InceptionV1 layout: lucent's state dict imports (API and CLI) with lucent's own logits,
the explorer works on it, and ``--weights inceptionv1`` fetches with a checksum or says why not."""

from __future__ import annotations

import urllib.error

import numpy as np
import pytest
import torch

from googlenet.inceptionv1 import INCEPTIONV1_PREPROCESS, from_lucent_state, inceptionv1, is_lucent_state, to_lucent_state

lucent = pytest.importorskip(
    "lucent.modelzoo.inceptionv1",
    reason="torch-lucent is the reference here: pip install --no-deps torch-lucent==0.1.8 (its kornia<=0.4.1 pin predates torch 2)",
)


def lucent_model(seed: int = 0):
    """A randomly initialised lucent InceptionV1 whose activations stay O(1) through 57 convs
    (PyTorch's default init shrinks them to logits of ±0.05, where an error hides): He-normal
    conv weights, small random biases."""
    torch.manual_seed(seed)
    model = lucent.InceptionV1(pretrained=False, redirected_ReLU=False).eval()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Conv2d):
                fan_in = module.weight[0].numel()
                # conv1 also undoes the input's ×255 range, so that logits come out near ±10
                scale = (2 / fan_in) ** 0.5 / (128 if module is model.conv2d0_pre_relu_conv else 1)
                module.weight.copy_(torch.randn(module.weight.shape, generator=generator) * scale)
                module.bias.copy_(torch.randn(module.bias.shape, generator=generator) * 0.1)
    return model


def lucent_logits(model, x: torch.Tensor) -> torch.Tensor:
    """lucent's forward ends in a softmax: its logits are the input of ``softmax2``."""
    seen = {}
    handle = model.softmax2_pre_activation_matmul.register_forward_hook(lambda _m, _i, out: seen.setdefault("logits", out))
    try:
        with torch.no_grad():
            model(x)
    finally:
        handle.remove()
    return seen["logits"]


@pytest.fixture(scope="module")
def reference():
    model = lucent_model()
    torch.manual_seed(1)
    x = torch.rand(2, 3, 224, 224) * 255 - 117  # lucent's input range: x·255 − 117
    return model, x, lucent_logits(model, x)


def test_layout_shapes_match_lucent():
    ours = inceptionv1()
    theirs = lucent.InceptionV1(pretrained=False)
    mapped = to_lucent_state(ours.state_dict())
    assert {k: tuple(v.shape) for k, v in mapped.items()} == {k: tuple(v.shape) for k, v in theirs.state_dict().items()}
    assert ours.inception4a.branch2[1].conv.out_channels == 204  # TF-slim's, not the paper's 208


def test_lucent_state_dict_gives_lucents_logits(reference):
    model, x, expected = reference
    state = model.state_dict()
    assert is_lucent_state(state)
    ours = inceptionv1().eval()
    ours.load_state_dict(from_lucent_state(state), strict=True)
    with torch.no_grad():
        got = ours(x)
    assert expected.abs().max() > 1  # the check is not on vanishing logits
    assert (got - expected).abs().max() <= 1e-4


def test_symmetric_padding_would_be_caught(reference):
    """The equality above is sensitive to the layout: torch's symmetric padding in conv1 breaks it."""
    model, x, expected = reference
    ours = inceptionv1().eval()
    ours.load_state_dict(from_lucent_state(model.state_dict()), strict=True)
    ours.conv1.pad, ours.conv1.conv.padding = None, (3, 3)
    with torch.no_grad():
        got = ours(x)
    assert (got - expected).abs().max() > 1e-2


def test_import_cli_and_load_model(reference, tmp_path, capsys):
    from googlenet.__main__ import main
    from googlenet.weights import load_model

    model, x, expected = reference
    source = tmp_path / "inceptionv1.pth"
    torch.save(model.state_dict(), source)
    out = tmp_path / "inceptionv1.safetensors"
    assert main(["import", str(source), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "InceptionV1" in printed and "1008 classes" in printed and "branch3 5×5" in printed
    loaded = load_model(out, device="cpu")
    assert loaded.config.layout == "inceptionv1" and loaded.preprocess == INCEPTIONV1_PREPROCESS
    with torch.no_grad():
        got = loaded.model(x.contiguous(memory_format=torch.channels_last))
    assert (got - expected).abs().max() <= 1e-4


def test_preprocess_is_lucents():
    """A picture in [0, 1] becomes x·255 − 117, lucent.optvis.transform.preprocess_inceptionv1."""
    pixels = torch.rand(1, 3, 224, 224)
    mean = torch.tensor(INCEPTIONV1_PREPROCESS.mean).view(1, 3, 1, 1)
    std = torch.tensor(INCEPTIONV1_PREPROCESS.std).view(1, 3, 1, 1)
    assert torch.allclose((pixels - mean) / std, pixels * 255 - 117, atol=1e-4)


def test_explorer_gradcam_knockout_architecture_on_the_layout():
    from explain.explorer import Explorer
    from explain.render.architecture import architecture_figure
    from googlenet.spec import describe
    from googlenet.weights import Loaded, prepare_for_inference

    spec = describe(inceptionv1())
    assert len(spec.branch_names) == 36 and spec.heads == ("main",)
    assert {b.kernel for m in spec.modules for b in m.branches if b.branch == "branch3"} == {"1×1→5×5"}
    assert spec.module("inception4a").channels == 508

    torch.manual_seed(0)
    small = prepare_for_inference(inceptionv1(width=0.25), torch.device("cpu"))
    loaded = Loaded(small, tuple(f"class {i}" for i in range(1008)), INCEPTIONV1_PREPROCESS, "test inceptionv1", "random")
    explorer = Explorer(loaded, cache_size=0)
    image = (np.random.default_rng(0).random((240, 260, 3)) * 255).astype(np.uint8)
    exploration = explorer.explore(image)
    assert len(exploration.cams) == 36 and set(exploration.predictions) == {"main"}
    assert all(torch.isfinite(cam).all() for cam in exploration.cams.values())
    ablation = explorer.ablate(image, ["inception4c.branch3", "inception5b"])
    assert len(ablation.knockouts) == 2 and set(ablation.baseline) == {"main"}
    figure = architecture_figure(small)
    hovers = [h for trace in figure.data for h in (trace.hovertext or ())]
    assert any("inception4c.branch3: 1×1→5×5" in str(h) for h in hovers)
    assert not any("aux" in str(h) for h in hovers)


# -- --weights inceptionv1 -----------------------------------------------------------------


def test_weights_inceptionv1_downloads_with_checksum(reference, monkeypatch):
    from googlenet import inceptionv1_weights
    from googlenet.weights import CheckpointError, load_model

    model, x, expected = reference
    monkeypatch.setenv("GOOGLENET_OFFLINE", "0")
    calls = []

    def fake_download(url, dst):  # stands in for the network: lucent's file is a torch.save'd state dict
        calls.append(url)
        torch.save(model.state_dict(), dst)

    monkeypatch.setattr(inceptionv1_weights, "download", fake_download)
    loaded = load_model("inceptionv1", device="cpu")
    assert calls == [inceptionv1_weights.INCEPTIONV1_URL] and loaded.source == "inceptionv1"
    with torch.no_grad():
        assert (loaded.model(x.contiguous(memory_format=torch.channels_last)) - expected).abs().max() <= 1e-4
    path = inceptionv1_weights.cached_path()
    assert path.with_name(path.name + ".sha256").read_text().strip() == inceptionv1_weights.sha256_of(path)
    load_model("inceptionv1", device="cpu")
    assert len(calls) == 1  # the second load is served from the cache

    with open(path, "ab") as handle:  # the cached file changes after its download
        handle.write(b"\0")
    with pytest.raises(CheckpointError, match="SHA-256"):
        load_model("inceptionv1", device="cpu")


def test_pinned_checksum_refuses_another_file(reference, monkeypatch):
    from googlenet import inceptionv1_weights
    from googlenet.weights import CheckpointError, load_model

    monkeypatch.setenv("GOOGLENET_OFFLINE", "0")
    monkeypatch.setenv("GOOGLENET_INCEPTIONV1_SHA256", "0" * 64)
    monkeypatch.setattr(inceptionv1_weights, "download", lambda url, dst: torch.save(reference[0].state_dict(), dst))
    with pytest.raises(CheckpointError, match="not the pinned"):
        load_model("inceptionv1", device="cpu")
    assert not inceptionv1_weights.cached_path().exists()


def test_weights_inceptionv1_offline_says_why(monkeypatch):
    from googlenet import inceptionv1_weights
    from googlenet.weights import WeightsUnavailable, load_model

    with pytest.raises(WeightsUnavailable, match="downloads are off"):
        load_model("inceptionv1", device="cpu")  # conftest sets GOOGLENET_OFFLINE=1

    def unreachable(url, dst):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setenv("GOOGLENET_OFFLINE", "0")
    monkeypatch.setattr(inceptionv1_weights, "download", unreachable)
    with pytest.raises(WeightsUnavailable, match="unreachable: .*name resolution"):
        load_model("inceptionv1", device="cpu")


def test_app_weights_flag_offline_is_a_message(monkeypatch, capsys):
    import app

    with pytest.raises(SystemExit) as exit_info:
        app.main(["--weights", "inceptionv1"])
    assert exit_info.value.code == 2
    assert "InceptionV1 weights are unavailable" in capsys.readouterr().err
