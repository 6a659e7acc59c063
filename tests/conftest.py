"""Shared fixtures: the real CIFAR-10 subset in ../shared, small models, a private runs folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from bench.chromium import CHROMIUM_ARGS

ROOT = Path(__file__).resolve().parent.parent
# The real CIFAR-10 subset (4,068 train + 1,017 test images) lives outside the repository.
CIFAR_SUBSET = Path(os.environ.get("CIFAR10_SUBSET", ROOT.parent / "shared" / "data" / "cifar10-subset"))

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(autouse=True)
def _isolated(tmp_path_factory, monkeypatch):
    """Every test gets its own runs folder, CPU device and no network for ImageNet weights."""
    monkeypatch.setenv("GOOGLENET_RUNS", str(tmp_path_factory.mktemp("runs")))
    monkeypatch.setenv("GOOGLENET_DEVICE", "cpu")
    monkeypatch.setenv("GOOGLENET_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path_factory.mktemp("torch_home")))


@pytest.fixture(scope="session")
def cifar_dir() -> Path:
    if not (CIFAR_SUBSET / "cifar-10-batches-py" / "test_batch").is_file():
        pytest.skip(f"the CIFAR-10 subset is not at {CIFAR_SUBSET} (set CIFAR10_SUBSET)")
    return CIFAR_SUBSET


@pytest.fixture(scope="session")
def cifar(cifar_dir):
    from googlenet.datasets.cifar10 import read_cifar10

    return read_cifar10(cifar_dir)


def make_loaded(stem: str, width: float = 0.25, num_classes: int = 10, **model_options):
    """A small GoogLeNet with non-trivial BatchNorm statistics, prepared for inference as the app runs
    it (BN folded, channels_last), with ImageNet statistics and the stem's input size."""
    from googlenet.model import GoogLeNet
    from googlenet.preprocess import IMAGENET
    from googlenet.weights import CIFAR10_CLASSES, Loaded, prepare_for_inference

    torch.manual_seed(0)
    model = randomize_bn(GoogLeNet(num_classes=num_classes, stem=stem, width=width, **model_options))
    classes = CIFAR10_CLASSES if num_classes == 10 else tuple(f"class {i}" for i in range(num_classes))
    preprocess = IMAGENET.with_size(32) if stem == "cifar" else IMAGENET
    return Loaded(prepare_for_inference(model, torch.device("cpu")), classes, preprocess, f"test {stem}", "random")


def randomize_bn(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give BatchNorm layers non-trivial statistics so that folding them is really tested."""
    generator = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=generator) * 0.2 - 0.1)
            m.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=generator) + 0.5)
            m.bias.data.copy_(torch.rand(n, generator=generator) * 0.2 - 0.1)
    return model


# -- browser tests (tests/e2e): one app process and one Chromium per module --------------------


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_app(log_dir: Path, runs: Path, data: Path, timeout: float = 180.0):
    """Start ``python app.py`` as a newcomer would (offline, CPU, the given runs and data folders);
    yields its URL and stops it afterwards. A generator for module-scoped fixtures."""
    import subprocess
    import sys
    import time
    import urllib.request

    port = free_port()
    env = {**os.environ, "GOOGLENET_RUNS": str(runs), "GOOGLENET_DATA": str(data), "GOOGLENET_OFFLINE": "1", "GOOGLENET_DEVICE": "cpu"}
    log = open(log_dir / "app.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "app.py", "--host", "127.0.0.1", "--port", str(port)], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + timeout
    while True:
        if proc.poll() is not None:
            pytest.fail(f"the app exited: {(log_dir / 'app.log').read_text()[-2000:]}")
        try:
            urllib.request.urlopen(url + "gradio_api/info", timeout=2).close()
            break
        except OSError:
            if time.time() > deadline:
                proc.kill()
                pytest.fail("the app did not answer within 180 s")
            time.sleep(0.5)
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()


def require_chromium() -> str:
    """Debian's chromium (Playwright's own download is not used), or skip saying why."""
    import shutil

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("Debian chromium is not installed (apt install chromium); .ci/run installs it")
    return chromium


def browser_page(url: str, width: int = 1440, height: int = 900):
    """Debian Chromium through Playwright on ``url``; yields the page (skips without chromium)."""
    chromium = require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": width, "height": height})
        page.goto(url)
        page.wait_for_selector("#explore-button", timeout=120_000)
        try:
            yield page
        finally:
            browser.close()


def write_png_folder(cifar, root: Path, train: int, val: int | None, start: int = 0) -> Path:
    """Real CIFAR-10 pictures written as PNG files in class folders: ``root/train/CLASS/NNNNN.png``
    and ``root/val/CLASS/NNNNN.png`` (NNNNN: the index in the CIFAR split), or, with ``val=None``,
    ``root/CLASS/NNNNN.png`` from the training pictures only."""
    from PIL import Image

    parts = [("train", cifar.train_images, cifar.train_labels, train)]
    if val is not None:
        parts.append(("val", cifar.test_images, cifar.test_labels, val))
    for split, images, labels, count in parts:
        base = root / split if val is not None else root
        for i in range(start, start + count):
            folder = base / cifar.classes[int(labels[i])]
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(images[i].permute(1, 2, 0).numpy()).save(folder / f"{i:05d}.png")
    return root


def small_checkpoint(path, seed=0):
    """A width-0.125 CIFAR checkpoint with random weights, saved at ``path``."""
    from googlenet.model import GoogLeNet
    from googlenet.preprocess import Preprocess
    from googlenet.weights import CIFAR10_CLASSES, CheckpointMeta, save_checkpoint

    torch.manual_seed(seed)
    meta = CheckpointMeta(CIFAR10_CLASSES, Preprocess(32, 32, (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)), training={"accuracy": {"main": 0.5}})
    return save_checkpoint(path, GoogLeNet(num_classes=10, stem="cifar", width=0.125), meta)


@pytest.fixture
def passes(monkeypatch):
    """Counts Inception module calls: every model pass, full or from a module on, goes through them."""
    from googlenet.model import Inception

    calls = {"n": 0}
    original = Inception.forward

    def counted(self, x):
        calls["n"] += 1
        return original(self, x)

    monkeypatch.setattr(Inception, "forward", counted)
    return calls


def cifar_slice(cifar, train: int, test: int):
    """The first ``train`` training and ``test`` test pictures of the real subset, as a CIFAR10."""
    from googlenet.datasets.cifar10 import CIFAR10

    return CIFAR10(
        cifar.train_images[:train],
        cifar.train_labels[:train],
        cifar.test_images[:test],
        cifar.test_labels[:test],
        cifar.classes,
        cifar.root,
    )
