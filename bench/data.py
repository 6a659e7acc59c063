"""Data-loading figures: an image folder read into memory, the streaming loader at 224 px, and
whether streaming keeps up with training.

    python -m bench.data [--cifar DIR] [--workers N] [--batches N]

Builds its folders in a temporary directory from the real CIFAR-10 subset: 4,000 training
pictures as 32×32 PNG files (the bar's "4,000 small PNGs"), and the same pictures enlarged to
500×375 JPEG files, the size of an average ImageNet photo, for the 224-px streaming figure.
Prints ``name=value`` lines, the device, and the headline last.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

from googlenet.datasets import StreamBatches, load_in_memory, open_dataset
from googlenet.datasets.cifar10 import read_cifar10
from googlenet.datasets.loading import default_workers
from googlenet.model import GoogLeNet
from googlenet.preprocess import IMAGENET

ROOT = Path(__file__).resolve().parent.parent


def _write(cifar, root: Path, count: int, size: tuple[int, int] | None, fmt: str) -> Path:
    for i in range(count):
        folder = root / "train" / cifar.classes[int(cifar.train_labels[i])]
        folder.mkdir(parents=True, exist_ok=True)
        picture = Image.fromarray(cifar.train_images[i].permute(1, 2, 0).numpy())
        if size is not None:
            picture = picture.resize(size, Image.BICUBIC)
        picture.save(folder / f"{i:05d}.{fmt.lower()}", format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    for i in range(200):  # a small val/ so the folder has both splits
        folder = root / "val" / cifar.classes[int(cifar.test_labels[i])]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(cifar.test_images[i].permute(1, 2, 0).numpy()).save(folder / f"{i:05d}.png")
    return root


def _stream_rate(folder: Path, workers: int, batches: int, batch_size: int = 64) -> float:
    dataset = open_dataset(folder, input_size=224)
    stream = StreamBatches(dataset.train, dataset.recipe, batch_size, torch.device("cpu"), workers=workers)
    iterator = stream.epoch(0)
    next(iterator)  # workers started, first batch in
    started, images = time.perf_counter(), 0
    for _, (x, _) in zip(range(batches), iterator):
        images += len(x)
    return images / (time.perf_counter() - started)


def _train_rate(width: float, steps: int = 3, batch_size: int = 16) -> float:
    model = GoogLeNet(num_classes=10, width=width).to(memory_format=torch.channels_last).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = IMAGENET.to_input(torch.randint(0, 255, (batch_size, 3, 224, 224), dtype=torch.uint8)).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch_size,))
    rates = []
    for step in range(steps + 1):
        started = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(x)
            loss = torch.nn.functional.cross_entropy(out.logits, y) + 0.3 * sum(torch.nn.functional.cross_entropy(a, y) for a in out[1:])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step:  # the first step warms up the allocator and kernels
            rates.append(batch_size / (time.perf_counter() - started))
    return sorted(rates)[len(rates) // 2]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.data", description=__doc__)
    parser.add_argument("--cifar", default=os.environ.get("CIFAR10_SUBSET", str(ROOT.parent / "shared" / "data" / "cifar10-subset")))
    parser.add_argument("--workers", type=int, default=None, help=f"streaming workers (default {default_workers()})")
    parser.add_argument("--batches", type=int, default=20, help="batches of 64 timed per streaming figure")
    parser.add_argument("--pictures", type=int, default=4000)
    args = parser.parse_args(argv)
    workers = args.workers if args.workers is not None else default_workers()
    cifar = read_cifar10(args.cifar)
    print(f"device=cpu ({os.cpu_count()} cores, torch threads {torch.get_num_threads()})")
    with tempfile.TemporaryDirectory() as tmp:
        pngs = _write(cifar, Path(tmp) / "png", args.pictures, None, "PNG")
        started = time.perf_counter()
        dataset = open_dataset(pngs, input_size=32)
        scanned = time.perf_counter()
        loaded = load_in_memory(dataset, 32)
        done = time.perf_counter()
        print(f"folder_pictures={len(loaded.train) + len(loaded.test)}")
        print(f"folder_scan_s={scanned - started:.2f}")
        print(f"folder_decode_s={done - scanned:.2f}")
        print(f"folder_load_s={done - started:.2f}")
        print(f"stream_workers={workers}")
        print(f"stream_images_per_s_224_png32={_stream_rate(pngs, workers, args.batches):.0f}")
        jpegs = _write(cifar, Path(tmp) / "jpeg", min(args.pictures, (args.batches + 2) * 64), (500, 375), "JPEG")
        stream = _stream_rate(jpegs, workers, args.batches)
        print(f"stream_images_per_s_224_jpeg500={stream:.0f}")
    for width in (0.25, 1.0):
        rate = _train_rate(width)
        print(f"train_images_per_s_224_w{width:g}={rate:.1f}")
        print(f"stream_keeps_up_w{width:g}={'yes' if stream >= rate else 'no'} ({stream / rate:.1f}x the training rate)")
    print(f"folder_load_s={done - started:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
