"""Reading a dataset for training: decoded once into memory, or streamed from its files.

A set whose pictures fit the memory budget is decoded once, each picture resized (shorter side)
and centre-cropped to a square with room for the random crop, and kept as uint8 on the training
device; :class:`googlenet.datasets.cifar10.DeviceBatches` augments it there per batch, as for CIFAR. A larger
set streams: :class:`StreamBatches` is a ``DataLoader`` whose workers decode the files
(``torchvision.io`` through :func:`googlenet.datasets.pictures.read_picture`), take a random-resized crop
and flip, and hand pinned uint8 batches to the device, which normalises them. Under ``torchrun``
a ``DistributedSampler`` gives each rank its own shard of every epoch.

:func:`plan_loading` makes the choice and says why in one line.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

import torch
from torch import Tensor
from torch.utils.data import DataLoader, DistributedSampler, Sampler
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from googlenet.datasets.cifar10 import _mix
from googlenet.datasets.pictures import ImageError, read_picture

from ..preprocess import Preprocess
from .base import DataError, Dataset, Split

__all__ = [
    "LOADING",
    "LoadingPlan",
    "plan_loading",
    "memory_budget",
    "load_in_memory",
    "read_split",
    "fit_square",
    "StreamBatches",
    "default_workers",
]

LOADING = ("auto", "memory", "stream")
# ImageNet's random-resized-crop (Szegedy et al. 2015, section 6; torchvision's reference recipe).
CROP_SCALE = (0.08, 1.0)
CROP_RATIO = (3 / 4, 4 / 3)


@dataclass(frozen=True)
class LoadingPlan:
    """How a dataset will be read, and why."""

    mode: str  # "memory" | "stream"
    size: int  # the side pictures are decoded at (in memory: stored at)
    bytes: int  # what the whole set takes as uint8 at that side
    budget: int
    reason: str  # one line for the log

    @property
    def in_memory(self) -> bool:
        return self.mode == "memory"


def memory_budget(device: torch.device, gib: float | None = None) -> tuple[int, str]:
    """Bytes a dataset may take on ``device``, and where that figure comes from.

    A quarter of the GPU's memory (the model, its activations and the optimizer need the rest),
    or a quarter of the memory the system has available on a CPU.
    """
    if gib is not None:
        if not gib > 0:
            raise ValueError(f"memory budget must be positive, got {gib} GiB")
        return int(gib * 2**30), f"--memory-budget {gib:g} GiB"
    if device.type == "cuda":
        total = torch.cuda.get_device_properties(device).total_memory
        return total // 4, f"a quarter of the GPU's {total / 2**30:.0f} GiB"
    available = _available_memory()
    return available // 4, f"a quarter of the {available / 2**30:.1f} GiB of memory available"


def plan_loading(
    dataset: Dataset,
    size: int,
    device: torch.device,
    choice: str = "auto",
    budget_gib: float | None = None,
    splits: tuple[Split, ...] | None = None,
) -> LoadingPlan:
    """Memory when the decoded ``splits`` (default: train and test) fit the budget or
    ``choice="memory"``, else streaming. Splits already in memory (CIFAR) stay there unless
    ``choice="stream"``."""
    if choice not in LOADING:
        raise ValueError(f"loading must be one of {LOADING}, got {choice!r}")
    budget, source = memory_budget(device, budget_gib)
    splits = splits if splits is not None else (dataset.train, dataset.test)
    pictures = sum(len(s) for s in splits)
    already = all(s.in_memory for s in splits)
    side = int(splits[0].images.shape[-1]) if already else size
    need = pictures * 3 * side * side
    what = f"{pictures:,} pictures at {side}×{side} take {_size(need)} as uint8"
    if choice == "stream" or (choice == "auto" and not already and need > budget):
        why = "--stream" if choice == "stream" else f"over the budget of {_size(budget)} ({source}); --in-memory overrides"
        return LoadingPlan("stream", size, need, budget, f"streaming from files: {what}, {why}")
    if choice == "memory" and need > budget:
        why = f"over the budget of {_size(budget)} ({source}), kept in memory as --in-memory asks"
    elif choice == "memory":
        why = "--in-memory"
    else:
        why = f"within the budget of {_size(budget)} ({source}); --stream overrides"
    return LoadingPlan("memory", side, need, budget, f"in memory on {device}: {what}, {why}")


def fit_square(pixels: Tensor, size: int) -> Tensor:
    """uint8 C×H×W → C×size×size: the shorter side resized to ``size`` (bilinear, antialiased),
    then the centre square, as :meth:`Preprocess.fit` does."""
    if min(pixels.shape[-2:]) != size:
        pixels = TF.resize(pixels, [size], interpolation=v2.InterpolationMode.BILINEAR, antialias=True)
    if pixels.shape[-2:] != (size, size):
        pixels = TF.center_crop(pixels, [size, size])
    return pixels


def load_in_memory(dataset: Dataset, size: int, workers: int | None = None, progress: Callable[[int, int], None] | None = None) -> Dataset:
    """The dataset with every split decoded to uint8 N×3×size×size (splits already in memory are
    kept as they are). Unreadable files are skipped, counted in ``notes`` and removed from the
    split's file list, so labels stay aligned."""
    total = sum(len(s) for s in (dataset.train, dataset.test) if not s.in_memory)
    done = [0]
    train, train_notes = read_split(dataset.train, size, "train", workers, progress, done, total)
    test, test_notes = read_split(dataset.test, size, dataset.test_name, workers, progress, done, total)
    return replace(dataset, train=train, test=test).with_notes(*train_notes, *test_notes)


def read_split(
    split: Split,
    size: int,
    name: str = "test",
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    done: list[int] | None = None,
    total: int | None = None,
) -> tuple[Split, list[str]]:
    """One split decoded to uint8 N×3×size×size, and what was skipped (see :func:`load_in_memory`)."""
    if split.in_memory:
        return split, []
    done = done if done is not None else [0]
    pictures, kept, failures = _decode_all(split.files, size, workers, progress, done, total or len(split))
    notes = []
    if failures:
        shown = "; ".join(failures[:3]) + ("; …" if len(failures) > 3 else "")
        notes.append(f"{len(failures)} unreadable {name} files skipped: {shown}")
    if not kept:
        raise DataError(f"none of the {len(split)} {name} files could be read ({failures[0] if failures else 'empty split'})")
    return Split(split.labels[kept], images=pictures, files=tuple(split.files[i] for i in kept)), notes


def _decode_all(files, size, workers, progress, done, total) -> tuple[Tensor, list[int], list[str]]:
    # Threads, not processes: PIL and torchvision.io release the GIL while decoding, and a
    # thread pool starts in no time (4,000 PNGs: see README "Your own data" for the measurement).
    workers = workers or default_workers()
    out = torch.empty(len(files), 3, size, size, dtype=torch.uint8)
    kept: list[int] = []
    failures: list[str] = []

    def one(i: int) -> tuple[int, str | None]:
        try:
            out[i] = fit_square(read_picture(files[i], size), size)
            return i, None
        except ImageError as error:
            return i, str(error)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        for i, failure in pool.map(one, range(len(files)), chunksize=64):
            if failure is None:
                kept.append(i)
            else:
                failures.append(failure)
            done[0] += 1
            if progress is not None and done[0] % 256 == 0:
                progress(done[0], total)
    if progress is not None:
        progress(done[0], total)
    return (out if len(kept) == len(files) else out[kept]), kept, failures


def default_workers() -> int:
    """Decoding processes for streaming: the cores but one (the training loop's), at most 8."""
    return max(1, min(8, (os.cpu_count() or 2) - 1))


class _Pictures(torch.utils.data.Dataset):
    """Items of one split for a DataLoader worker: ``(index, seed)`` → (uint8 picture, label, failure)."""

    def __init__(self, split: Split, recipe: Preprocess, train: bool, flip: bool, scale: tuple[float, float]) -> None:
        self.split, self.recipe, self.train, self.flip, self.scale = split, recipe, train, flip, scale

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, item: tuple[int, int]) -> tuple[Tensor | None, int, str | None]:
        index, seed = item
        label = int(self.split.labels[index])
        try:
            if self.split.images is not None:
                pixels = self.split.images[index]
            else:
                pixels = read_picture(self.split.files[index], self.recipe.resize_size)
        except ImageError as error:
            return None, label, str(error)
        size = self.recipe.input_size
        if not self.train:
            return self.recipe.fit(pixels), label, None
        generator = torch.Generator().manual_seed(seed)
        top, left, height, width = _crop_box(*pixels.shape[-2:], self.scale, generator)
        pixels = TF.resized_crop(pixels, top, left, height, width, [size, size], antialias=True)
        if self.flip and torch.rand((), generator=generator) < 0.5:
            pixels = pixels.flip(-1)
        return pixels, label, None


def _crop_box(height: int, width: int, scale: tuple[float, float], generator: torch.Generator) -> tuple[int, int, int, int]:
    """torchvision's RandomResizedCrop box (area share in ``scale``, aspect in 3/4…4/3, ten tries,
    then the centre), drawn from ``generator`` so a sample's crop depends on its seed only."""
    area = height * width
    log_ratio = (math.log(CROP_RATIO[0]), math.log(CROP_RATIO[1]))
    for _ in range(10):
        u = torch.rand(3, generator=generator).tolist()
        target = area * (scale[0] + (scale[1] - scale[0]) * u[0])
        aspect = math.exp(log_ratio[0] + (log_ratio[1] - log_ratio[0]) * u[1])
        w, h = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            top = int(torch.randint(0, height - h + 1, (), generator=generator))
            left = int(torch.randint(0, width - w + 1, (), generator=generator))
            return top, left, h, w
    ratio = width / height
    if ratio < CROP_RATIO[0]:
        w, h = width, round(width / CROP_RATIO[0])
    elif ratio > CROP_RATIO[1]:
        h, w = height, round(height * CROP_RATIO[1])
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def _collate(items: list[tuple[Tensor | None, int, str | None]]) -> tuple[Tensor, Tensor, list[str]]:
    """Stack the readable pictures with their own labels; unreadable ones leave with their labels."""
    good = [(p, y) for p, y, _ in items if p is not None]
    failures = [f for _, _, f in items if f is not None]
    if not good:
        return torch.zeros(0, dtype=torch.uint8), torch.zeros(0, dtype=torch.int64), failures
    return torch.stack([p for p, _ in good]), torch.tensor([y for _, y in good], dtype=torch.int64), failures


class _EpochBatches(Sampler):
    """The batches of one epoch as lists of ``(index, seed)``; set before each pass (the
    DataLoader iterates its batch sampler in the main process, so persistent workers see it)."""

    def __init__(self) -> None:
        self.batches: list[list[tuple[int, int]]] = []

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


class StreamBatches:
    """Augmented mini-batches decoded from files by ``DataLoader`` workers.

    The same interface as :class:`googlenet.datasets.cifar10.DeviceBatches` (``epoch(epoch, start)``,
    ``len``, ``batch_size``, ``labels``): the trainer does not know which one it holds. Each
    sample's crop and flip come from a generator seeded by ``(seed, epoch, index)``, and the
    order from ``DistributedSampler(seed=seed)`` with ``set_epoch``, so a resumed run reads
    the same batches. With ``world > 1`` each rank reads only its shard; evaluation
    (``train=False``) reads the whole split in order on every rank.

    Unreadable files are dropped from their batch (the batch is then shorter) and their
    messages collected in ``skipped``.
    """

    def __init__(
        self,
        split: Split,
        recipe: Preprocess,
        batch_size: int,
        device: torch.device,
        train: bool = True,
        seed: int = 0,
        rank: int = 0,
        world: int = 1,
        workers: int | None = None,
        flip: bool = True,
        scale: tuple[float, float] = CROP_SCALE,
        dtype: torch.dtype = torch.float32,
        channels_last: bool = False,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.split, self.recipe, self.batch_size, self.device = split, recipe, batch_size, device
        self.train, self.seed, self.dtype, self.channels_last = train, seed, dtype, channels_last
        self.labels = split.labels
        self.skipped: list[str] = []
        self._pictures = _Pictures(split, recipe, train, flip, scale)
        self._order = DistributedSampler(
            self._pictures, num_replicas=world if train else 1, rank=rank if train else 0, shuffle=train, seed=seed, drop_last=train
        )
        per_rank = self._order.num_samples
        self.batches_per_epoch = per_rank // batch_size if train else math.ceil(per_rank / batch_size)
        if self.batches_per_epoch == 0:
            raise ValueError(f"batch size {batch_size} is larger than the {per_rank} training images per process")
        self._sampler = _EpochBatches()
        workers = default_workers() if workers is None else workers
        self._loader = DataLoader(
            self._pictures,
            batch_sampler=self._sampler,
            num_workers=workers,
            collate_fn=_collate,
            pin_memory=device.type == "cuda",
            persistent_workers=workers > 0,
        )

    def __len__(self) -> int:
        return self.batches_per_epoch

    def indices(self, epoch: int) -> list[int]:
        """The sample indices this rank reads in ``epoch``, in order."""
        self._order.set_epoch(epoch)
        order = list(self._order)
        return order[: self.batches_per_epoch * self.batch_size] if self.train else order

    def epoch(self, epoch: int, start: int = 0) -> Iterator[tuple[Tensor, Tensor]]:
        """The batches of ``epoch`` from batch number ``start`` on."""
        order = self.indices(epoch)
        self._sampler.batches = [
            [(i, _mix(self.seed, epoch, i)) for i in order[b * self.batch_size : (b + 1) * self.batch_size]]
            for b in range(start, self.batches_per_epoch)
        ]
        for pixels, labels, failures in self._loader:
            self.skipped += failures
            if len(labels) == 0:
                continue
            yield self._prepare(pixels), labels.to(self.device, non_blocking=True)

    def _prepare(self, pixels: Tensor) -> Tensor:
        x = self.recipe.to_input(pixels.to(self.device, non_blocking=True)).to(self.dtype)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x


def _available_memory() -> int:
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 4 * 2**30  # unknown: assume a small machine


def _size(n: int) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"
