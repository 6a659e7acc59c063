"""``python -m googlenet bench``: this engine against the guide's training pipeline, and
``--inference``: the app's batch-1 latency against torchvision's googlenet.

Every figure is measured in this process on this device; lines are ``name=value``, the headline
last.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import NamedTuple

import torch

from googlenet.datasets.cifar10 import CIFAR10, read_cifar10
from googlenet.model import GoogLeNet
from googlenet.training.trainer import StepEvent, TrainConfig, Trainer
from googlenet.weights import pick_device, prepare_for_inference


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", default="data", help="CIFAR-10 folder (the shared subset is enough)")
    p.add_argument("--inference", action="store_true", help="batch-1 latency of the app's model vs torchvision")
    p.add_argument("--steps", type=int, default=None, help="timed steps per pipeline (default: 3 on CPU, 30 on GPU)")
    p.add_argument("--batch-size", type=int, default=None, help="default: 64, the guide's")
    p.add_argument("--device", default=None)
    p.add_argument("--runs", type=int, default=30, help="--inference: timed calls per model")


def run(args) -> int:
    device = pick_device(args.device)
    print(
        f"device={device}"
        + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else f" ({torch.get_num_threads()} threads)")
    )
    if args.inference:
        return _inference(device, args.runs)
    return _training(device, args)


# -- inference -----------------------------------------------------------------------------


def inference_models(device: torch.device) -> tuple[torch.nn.Module, GoogLeNet]:
    """torchvision's googlenet as users run it, and the app's prepared model with the same weights."""
    import torchvision

    torch.manual_seed(0)
    reference = torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=True).eval().to(device)
    model = GoogLeNet(aux_logits=True)
    model.load_state_dict(reference.state_dict(), strict=False)
    return reference, prepare_for_inference(model, device)


def _inference(device: torch.device, runs: int) -> int:
    reference, app_model = inference_models(device)
    x = torch.rand(1, 3, 224, 224, device=device)
    x_cl = x.contiguous(memory_format=torch.channels_last)

    def time_it(fn) -> float:
        for _ in range(5):
            fn()
        times = []
        for _ in range(runs):
            _sync(device)
            start = time.perf_counter()
            fn()
            _sync(device)
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    with torch.no_grad():
        tv = time_it(lambda: reference(x))
    with torch.inference_mode():
        ours = time_it(lambda: app_model(x_cl))
        ours_aux = time_it(lambda: app_model(x_cl, aux=True))
    print(f"torchvision_ms={tv * 1000:.1f}")
    print(f"app_model_ms={ours * 1000:.1f}  (BN folded, channels_last, inference_mode)")
    print(f"app_model_with_aux_heads_ms={ours_aux * 1000:.1f}")
    print(f"ratio_vs_torchvision={ours / tv:.2f}")
    return 0


# -- training ------------------------------------------------------------------------------


def _training(device: torch.device, args) -> int:
    data = read_cifar10(args.data)
    steps = args.steps or (30 if device.type == "cuda" else 3)
    speeds = measure_training(data, device, steps, args.batch_size or 64)
    print(f"guide_pipeline_images_per_s={speeds.guide:.1f}  (torchvision transforms with Resize(224), DataLoader, plain network, fp32)")
    print(
        f"engine_guide_preset_224_images_per_s={speeds.engine_224:.1f}  (same network and recipe at 224, on-device data and augmentation)"
    )
    print(
        f"engine_fast_preset_images_per_s={speeds.engine_fast:.1f}  (CIFAR stem at 32×32, BN, channels_last"
        + (", bf16)" if device.type == "cuda" else ")")
    )
    print(f"full_cifar10_epoch_seconds_fast={50_000 / speeds.engine_fast:.1f}  (50,000 images at this rate)")
    print(f"speedup_224={speeds.engine_224 / speeds.guide:.2f}")
    print(f"speedup={speeds.engine_fast / speeds.guide:.2f}")
    return 0


class TrainingSpeeds(NamedTuple):
    """Images/s of the three pipelines ``python -m googlenet bench`` compares."""

    guide: float  # the guide's pipeline as written
    engine_224: float  # this engine, guide preset (same network and recipe at 224)
    engine_fast: float  # this engine, fast preset (CIFAR stem at 32×32)


def measure_training(data: CIFAR10, device: torch.device, steps: int, batch: int, width: float = 1.0, size: int = 224) -> TrainingSpeeds:
    """``width`` and ``size`` (the guide's 1.0 and 224) shrink only for smoke tests."""
    guide = _guide_pipeline(data, device, steps, batch, width, size)
    engine_224 = engine_speed(data, device, steps, batch, preset="guide", width=width, input_size=size).images_per_s
    engine_fast = engine_speed(data, device, steps, batch, preset="fast", width=width).images_per_s
    return TrainingSpeeds(guide, engine_224, engine_fast)


def _guide_pipeline(data: CIFAR10, device: torch.device, steps: int, batch: int, width: float = 1.0, size: int = 224) -> float:
    """The guide's training pipeline as written (README, Training): PIL transforms (random crop
    32 pad 4, flip, Resize(224), ImageNet normalisation) in a DataLoader, the plain network, SGD
    lr 0.05 momentum 0.9 wd 1e-4, batch 64, loss main + 0.3 × (aux1 + aux2); ``width`` and
    ``size`` shrink only for smoke tests."""
    import torchvision.transforms as transforms
    from PIL import Image
    from torch.utils.data import DataLoader, Dataset

    transform_train = transforms.Compose(
        [
            transforms.RandomCrop(32, padding=4),
            transforms.RandomHorizontalFlip(),
            transforms.Resize(size),
            transforms.ToTensor(),
            transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
        ]
    )

    class Subset(Dataset):  # torchvision's CIFAR10 refuses the subset (its MD5 sums differ); same items
        def __len__(self):
            return len(data.train_labels)

        def __getitem__(self, i):
            image = Image.fromarray(data.train_images[i].permute(1, 2, 0).numpy())
            return transform_train(image), int(data.train_labels[i])

    loader = DataLoader(Subset(), batch_size=batch, shuffle=True)
    torch.manual_seed(0)
    model = GoogLeNet(num_classes=10, aux_logits=True, batch_norm=False, width=width).to(device)  # the guide's network
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=0.0001)
    criterion = torch.nn.CrossEntropyLoss()
    model.train()
    seen, started = 0, None
    for i, (images, labels) in enumerate(loader):
        if i == 1:  # the first step warms up kernels and allocator
            _sync(device)
            started = time.perf_counter()
        images, labels = images.to(device), labels.to(device)
        outputs, aux1, aux2 = model(images)
        loss = criterion(outputs, labels) + 0.3 * (criterion(aux1, labels) + criterion(aux2, labels))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        loss.item()  # the guide's running_loss += loss.item()
        if i >= 1:
            seen += images.shape[0]
        if i >= steps:
            break
    _sync(device)
    return seen / (time.perf_counter() - started)


class EngineSpeed(NamedTuple):
    images_per_s: float  # after the first log interval
    warmup_s: float  # from the Trainer's start to its first step event: setup, first steps, any compilation


def engine_speed(data: CIFAR10, device: torch.device, steps: int, batch: int, preset: str, **overrides) -> EngineSpeed:
    """Images/s of the Trainer after one warm-up interval, from its own step events.

    On a GPU the trainer syncs with the host only when it logs, so it logs every 10 steps here.
    """
    log_every = 1 if device.type == "cpu" else 10
    events: list[StepEvent] = []
    with tempfile.TemporaryDirectory() as out:
        config = TrainConfig(
            preset=preset, out=str(Path(out) / "bench"), batch_size=batch, max_steps=steps + log_every,
            log_every=log_every, device=str(device), epochs=1, **overrides,
        )  # fmt: skip
        Trainer(config, data=data).run(lambda e: events.append(e) if isinstance(e, StepEvent) else None, threading.Event())
    rates = [e.images_per_s for e in events]
    timed = rates[1:] or rates  # the first interval holds kernel selection and allocator warm-up
    rate = len(timed) / sum(1 / r for r in timed)  # images/s over the timed intervals (harmonic mean)
    return EngineSpeed(rate, events[0].elapsed)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
