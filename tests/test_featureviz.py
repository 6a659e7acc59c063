import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from explain.microscope.examples import build_index, crops, load_or_build_index, selectivity_index
from explain.microscope.featureviz import Cancelled, FourierImage, visualize
from explain.render.figures import specialization_figure
from googlenet.model import GoogLeNet
from googlenet.preprocess import Preprocess
from googlenet.weights import CIFAR10_CLASSES, CheckpointMeta, find_checkpoints, load_model, runs_dir, save_checkpoint
from tests.conftest import randomize_bn

META = CheckpointMeta(CIFAR10_CLASSES, Preprocess(32, 32, (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, cifar):
    """The bundled trained model (random weights respond to everything alike); a briefly trained
    narrow one when the bundled file is absent. Copied, so the test may overwrite it."""
    from googlenet.datasets.cifar10 import CIFAR10
    from googlenet.training.trainer import TrainConfig, Trainer
    from googlenet.weights import BUNDLED_MODEL

    if BUNDLED_MODEL.is_file():
        path = tmp_path_factory.mktemp("fv") / "model.safetensors"
        path.write_bytes(BUNDLED_MODEL.read_bytes())
        return path
    small = CIFAR10(
        cifar.train_images[:2048], cifar.train_labels[:2048], cifar.test_images[:128], cifar.test_labels[:128], cifar.classes, cifar.root
    )
    out = tmp_path_factory.mktemp("fv") / "run"
    Trainer(TrainConfig(out=str(out), epochs=2, width=0.125, batch_size=64, seed=0), data=small).run()
    path = out / "model.safetensors"
    path.write_bytes((out / "last.safetensors").read_bytes())
    return path


@pytest.fixture(scope="module")
def loaded(checkpoint):
    return load_model(checkpoint)


def channel_mean(loaded, images_uint8, layer, channel):
    captured = {}
    handle = loaded.model.get_submodule(layer).register_forward_hook(lambda m, i, o: captured.__setitem__("out", o))
    mean = torch.tensor(loaded.mean).view(1, 3, 1, 1)
    std = torch.tensor(loaded.std).view(1, 3, 1, 1)
    with torch.no_grad():
        x = torch.as_tensor(images_uint8).permute(0, 3, 1, 2).float() / 255
        loaded.model((x - mean) / std)
    handle.remove()
    return captured["out"][:, channel].mean(dim=(1, 2))


def test_visualization_excites_its_channel_far_beyond_noise_and_data(loaded, cifar):
    channels = [0, 1, 2]
    result = visualize(loaded, "inception4c.branch2", channels, size=32, steps=128, seed=1)
    assert result.images.shape == (3, 32, 32, 3) and result.images.dtype == np.uint8
    assert result.objective[-1] > result.objective[0]
    noise = (np.random.default_rng(0).random((16, 32, 32, 3)) * 255).astype(np.uint8)
    data = cifar.test_images[:256].permute(0, 2, 3, 1).numpy()
    factors = []
    for i, channel in enumerate(channels):
        achieved = float(channel_mean(loaded, result.images[i : i + 1], "inception4c.branch2", channel)[0])
        on_noise = float(channel_mean(loaded, noise, "inception4c.branch2", channel).mean())
        on_data = float(channel_mean(loaded, data, "inception4c.branch2", channel).mean())
        assert achieved > 3 * max(on_noise, 1e-3), (channel, achieved, on_noise)
        assert achieved > 3 * max(on_data, 1e-3), (channel, achieved, on_data)
        factors.append(achieved / max(on_data, 1e-3))
    assert sum(factors) / len(factors) > 4, factors


def test_visualization_is_deterministic_for_a_seed(loaded):
    a = visualize(loaded, "inception3b.branch1", [5, None], size=32, steps=6, seed=3)
    b = visualize(loaded, "inception3b.branch1", [5, None], size=32, steps=6, seed=3)
    c = visualize(loaded, "inception3b.branch1", [5, None], size=32, steps=6, seed=4)
    assert np.array_equal(a.images, b.images) and a.objective == b.objective
    assert not np.array_equal(a.images, c.images)


def test_class_logit_and_cancel(loaded):
    result = visualize(loaded, "logits", [3], size=32, steps=8)
    assert result.objective[-1] > result.objective[0]
    stop = threading.Event()
    stop.set()
    with pytest.raises(Cancelled):
        visualize(loaded, "inception4a", [0], size=32, steps=8, stop=stop)
    with pytest.raises(ValueError, match="unknown layer"):
        visualize(loaded, "inception9x", [0])


def test_parameterisation_round_trips():
    torch.manual_seed(0)
    image = torch.rand(2, 3, 48, 48) * 0.9 + 0.05
    param = FourierImage(2, 48)
    param.set_image(image)
    assert (param().detach() - image).abs().max() < 1e-4


def test_index_equals_brute_force(loaded, cifar):
    images, labels = cifar.test_images[:40], cifar.test_labels[:40]
    index = build_index(loaded, images, labels, k=3, batch_size=16)
    captured = {}
    hooks = [
        loaded.model.get_submodule(m).register_forward_hook(lambda mod, i, o, m=m: captured.__setitem__(m, o))
        for m in ("inception3a", "inception5b")
    ]
    mean = torch.tensor(loaded.mean).view(1, 3, 1, 1)
    std = torch.tensor(loaded.std).view(1, 3, 1, 1)
    with torch.no_grad():
        loaded.model((images.float() / 255 - mean) / std)
    for h in hooks:
        h.remove()
    for module in ("inception3a", "inception5b"):
        flat = captured[module].flatten(2)  # N×C×HW
        for channel in (0, 5, flat.shape[1] - 1):
            peaks = flat[:, channel].max(dim=1).values
            expected = peaks.topk(3).indices.tolist()
            assert index.top_images[module][channel].tolist() == expected
            best = expected[0]
            assert index.top_positions[module][channel][0] == int(flat[best, channel].argmax())
            assert torch.allclose(index.top_values[module][channel], peaks.topk(3).values)
    assert abs(sum(index.energy[f"inception4c.branch{i}"] for i in range(1, 5)) - 1) < 1e-5
    pictures = crops(index, images, "inception4c.branch1", 0, count=3)
    assert len(pictures) == 3 and all(p.shape[2] == 3 for p in pictures)
    figure = specialization_figure(index, loaded.spec)
    assert np.asarray(figure.data[0].z).shape == (4, 9)


def test_selectivity_index_on_a_known_case():
    # channel 0 fires for class 2 only; channel 1 fires equally for every class; channel 2 never
    means = torch.zeros(10, 3)
    means[2, 0] = 4.0
    means[:, 1] = 1.5
    si = selectivity_index(means)
    assert torch.allclose(si, torch.tensor([1.0, 0.0, 0.0]))
    # half the classes at 3, half at 1: top 3, rest (4·3 + 5·1)/9
    means = torch.tensor([3.0] * 5 + [1.0] * 5)[:, None]
    rest = (4 * 3 + 5 * 1) / 9
    assert torch.allclose(selectivity_index(means), torch.tensor([(3 - rest) / (3 + rest)]))


def test_index_in_bf16_finds_the_same_top_examples(loaded, cifar):
    images, labels = cifar.test_images[:40], cifar.test_labels[:40]
    exact = build_index(loaded, images, labels, k=3, batch_size=16)
    fast = build_index(loaded, images, labels, k=3, batch_size=16, precision="bf16")
    for module in ("inception3a", "inception4c", "inception5b"):
        top1 = fast.top_images[module][:, 0]
        # bf16 may swap near-ties, but each channel's best image stays among the exact top 3
        agree = (exact.top_images[module] == top1[:, None]).any(1).float().mean()
        assert agree >= 0.95, (module, float(agree))
        torch.testing.assert_close(fast.top_values[module][:, 0], exact.top_values[module][:, 0], rtol=0.05, atol=0.05)


def test_index_cache_is_reused_and_invalidated_when_the_checkpoint_changes(checkpoint, cifar):
    images, labels = cifar.test_images[:24], cifar.test_labels[:24]
    first, cached = load_or_build_index(load_model(checkpoint), images, labels)
    # outside the runs folder (like the bundled model): nothing is written beside the file
    assert not cached and not list(checkpoint.parent.glob("*.examples.safetensors"))
    assert len(list((runs_dir() / ".microscope").glob("*.examples.safetensors"))) == 1
    again, cached = load_or_build_index(load_model(checkpoint), images, labels)
    assert cached and torch.equal(again.top_images["inception4a"], first.top_images["inception4a"])
    renamed = shutil.copy(checkpoint, checkpoint.with_name("renamed.safetensors"))  # same weights
    assert load_or_build_index(load_model(renamed), images, labels)[1]
    Path(renamed).unlink()
    # a checkpoint in the runs folder keeps its index beside it, and the index is not a checkpoint
    in_runs = Path(shutil.copy(checkpoint, (runs_dir() / "r1").mkdir(parents=True) or runs_dir() / "r1" / "last.safetensors"))
    load_or_build_index(load_model(in_runs), images, labels)
    assert in_runs.with_name("last.examples.safetensors").is_file()
    assert find_checkpoints() == [in_runs]
    torch.manual_seed(99)
    save_checkpoint(checkpoint, randomize_bn(GoogLeNet(num_classes=10, stem="cifar", width=0.125), seed=5), META)
    changed, cached = load_or_build_index(load_model(checkpoint), images, labels)
    assert not cached and not torch.equal(changed.top_values["inception4a"], first.top_values["inception4a"])


def test_channels_silent_on_the_starting_noise_still_get_a_picture():
    # inception4c.branch3 channels 1 and 0 of the bundled model are negative before their ReLU on
    # the starting noise: read after the ReLU, their gradient was zero and the picture flat gray
    from googlenet.weights import load_model

    bundled = load_model("bundled", device="cpu")
    result = visualize(bundled, "inception4c.branch3", [1, 0], size=32, steps=16)
    assert all(float(image.std()) > 5 for image in result.images), [float(image.std()) for image in result.images]
