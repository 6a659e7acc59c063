"""Shared fixtures: the real CIFAR-10 subset in ../shared, small models, a private runs folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

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
    from googlenet.data import read_cifar10

    return read_cifar10(cifar_dir)


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
