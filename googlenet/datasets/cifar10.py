"""CIFAR-10: reader of the official "python version" folder, downloader, on-device batches.

The whole set lives on the training device as uint8 (50,000 × 3 × 32 × 32 is 150 MB); crop, flip,
resize and normalisation run there on each batch. Like airbench, this is faster than a
DataLoader of PIL transforms: there is no per-image Python in the training loop (see
``python -m googlenet bench`` for the measured difference).
"""

from __future__ import annotations

import math
import pickle
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from googlenet.preprocess import Preprocess

__all__ = ["CIFAR10", "DataError", "read_cifar10", "find_batches_dir", "download_cifar10", "DeviceBatches", "Augment"]

BATCHES_DIR = "cifar-10-batches-py"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"


class DataError(ValueError):
    """A missing, incomplete or corrupt CIFAR-10 folder, with the path and what is wrong."""


@dataclass(frozen=True)
class CIFAR10:
    """CIFAR-10 as uint8 tensors: images N×3×32×32, labels N (int64)."""

    train_images: Tensor
    train_labels: Tensor
    test_images: Tensor
    test_labels: Tensor
    classes: tuple[str, ...]
    root: Path

    def __repr__(self) -> str:
        return f"CIFAR10(train={len(self.train_labels)}, test={len(self.test_labels)}, root={str(self.root)!r})"


def find_batches_dir(path: str | Path) -> Path:
    """The ``cifar-10-batches-py`` folder for ``path`` (that folder itself, or its parent)."""
    path = Path(path).expanduser()
    for candidate in (path / BATCHES_DIR, path):
        if (candidate / "batches.meta").is_file() or (candidate / TEST_FILE).is_file():
            return candidate
    if not path.exists():
        raise DataError(f"CIFAR-10 folder not found: {path} (expected {path / BATCHES_DIR}; use --download to fetch it)")
    raise DataError(
        f"no CIFAR-10 batches in {path}: expected {BATCHES_DIR}/ with data_batch_1…5, test_batch and "
        "batches.meta (the official 'python version'); use --download to fetch it"
    )


def read_cifar10(path: str | Path) -> CIFAR10:
    """Read and check the official python-version batches, including smaller subsets of them.

    Training batches present among ``data_batch_1…5`` are all used; at least one is required,
    and ``test_batch`` and ``batches.meta``.
    """
    folder = find_batches_dir(path)
    meta = _unpickle(folder / "batches.meta")
    classes = tuple(str(c) for c in meta.get("label_names", ()))
    if len(classes) != 10:
        raise DataError(f"{folder / 'batches.meta'}: expected 10 label_names, found {len(classes)}")
    train_files = [folder / name for name in TRAIN_FILES if (folder / name).exists()]
    if not train_files:
        raise DataError(f"{folder}: no training batches (data_batch_1 … data_batch_5)")
    train = [_read_batch(f) for f in train_files]
    test_images, test_labels = _read_batch(folder / TEST_FILE)
    return CIFAR10(
        train_images=torch.cat([images for images, _ in train]),
        train_labels=torch.cat([labels for _, labels in train]),
        test_images=test_images,
        test_labels=test_labels,
        classes=classes,
        root=folder,
    )


def download_cifar10(root: str | Path) -> Path:
    """Download and unpack the full CIFAR-10 into ``root`` with torchvision's MD5-checked utilities."""
    from torchvision.datasets import CIFAR10 as TorchvisionCIFAR10

    return _download(TorchvisionCIFAR10, root, "CIFAR-10")


def _download(dataset, root: str | Path, name: str) -> Path:
    """Fetch torchvision's archive of ``dataset`` (CIFAR10 or CIFAR100) into ``root`` unless every
    file already passes its MD5 check; check every file after the download."""
    from torchvision.datasets import utils

    root = Path(root).expanduser()
    folder = root / dataset.base_folder
    expected = dataset.train_list + dataset.test_list
    if all(utils.check_integrity(str(folder / name), md5) for name, md5 in expected):
        return folder
    try:
        utils.download_and_extract_archive(dataset.url, str(root), filename=dataset.filename, md5=dataset.tgz_md5)
    except OSError as error:  # URLError is an OSError
        raise DataError(f"could not download {name} from {dataset.url}: {error}") from None
    bad = [file for file, md5 in expected if not utils.check_integrity(str(folder / file), md5)]
    if bad:
        raise DataError(f"downloaded {name} fails its MD5 check: {', '.join(bad)}")
    return folder


class _BatchUnpickler(pickle.Unpickler):
    """CIFAR batches are pickles; allow only what a numpy array needs, so no code can run."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"forbidden object {module}.{name} in a data batch")
        if name == "_reconstruct":  # numpy 2 renamed numpy.core to numpy._core
            try:
                from numpy._core.multiarray import _reconstruct
            except ImportError:  # numpy < 2
                from numpy.core.multiarray import _reconstruct
            return _reconstruct
        return super().find_class(module, name)


def _unpickle(path: Path, kind: str = "CIFAR-10") -> dict:
    if not path.is_file():
        raise DataError(f"missing {kind} file: {path}")
    try:
        with open(path, "rb") as handle:
            data = _BatchUnpickler(handle, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as error:
        raise DataError(f"corrupt {kind} file {path}: {error}") from None
    if not isinstance(data, dict):
        raise DataError(f"corrupt {kind} file {path}: expected a dict, got {type(data).__name__}")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in data.items()}


def _read_batch(path: Path, kind: str = "CIFAR-10", label_key: str = "labels", num_classes: int = 10) -> tuple[Tensor, Tensor]:
    batch = _unpickle(path, kind)
    data, labels = batch.get("data"), batch.get(label_key)
    if not isinstance(data, np.ndarray) or data.ndim != 2 or data.shape[1] != 3072 or data.dtype != np.uint8:
        shape = getattr(data, "shape", None)
        raise DataError(f"{path}: 'data' must be a uint8 array of N×3072, got {type(data).__name__} {shape}")
    if labels is None or len(labels) != len(data):
        raise DataError(f"{path}: {len(data)} images but {0 if labels is None else len(labels)} {label_key}")
    labels = torch.as_tensor(np.asarray(labels), dtype=torch.int64)
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataError(f"{path}: labels must be in 0…{num_classes - 1}, found {labels.min().item()}…{labels.max().item()}")
    images = torch.from_numpy(data.copy()).view(-1, 3, 32, 32)
    return images, labels


@dataclass(frozen=True)
class Augment:
    """Per-batch augmentation, all on the device, then the model's input recipe.

    preprocess: the recipe that turns the augmented uint8 pixels into the model input (resize to
        its input size, e.g. 32 → 224 bilinear as the guide's ``Resize(224)``; normalise).
    crop_padding: pixels added on each side before the random crop (0: none). The crop is the
        input size, or the pictures' own side when they are smaller (CIFAR's 32 for a 224 input,
        resized after the crop); pictures stored larger than the input (a folder decoded at 256
        for 224) are cropped at random even without padding.
    pad_mode: "reflect" (fast preset) or "constant" (zeros, torchvision's RandomCrop default).
    flip: random horizontal flip with p=0.5.
    cutout: side of a square set to the mean colour at a random place in each image (DeVries &
        Taylor 2017, https://arxiv.org/abs/1708.04552); 0 disables it.
    """

    preprocess: Preprocess
    crop_padding: int = 4
    pad_mode: str = "reflect"
    flip: bool = True
    cutout: int = 0


class DeviceBatches:
    """Shuffled, augmented mini-batches from uint8 images held on ``device``.

    Randomness comes from generators seeded by ``(seed, epoch, batch)`` only, so the batches of a
    resumed run are exactly those of an uninterrupted one. With ``world > 1`` each rank takes a
    disjoint shard of every epoch's permutation (DistributedSampler's scheme).
    """

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        batch_size: int,
        augment: Augment,
        device: torch.device,
        train: bool = True,
        seed: int = 0,
        rank: int = 0,
        world: int = 1,
        dtype: torch.dtype = torch.float32,
        channels_last: bool = False,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.device, self.train, self.seed, self.rank, self.world = device, train, seed, rank, world
        self.batch_size, self.augment, self.dtype, self.channels_last = batch_size, augment, dtype, channels_last
        self.labels = labels.to(device)
        pad = augment.crop_padding if train else 0
        images = images.to(device)
        self.crop = min(augment.preprocess.input_size, int(images.shape[-1]))
        self.crop_range = images.shape[-1] + 2 * pad - self.crop + 1  # positions per axis
        # Pad once for the whole set; a crop is then just an index.
        self.images = F.pad(images, (pad,) * 4, mode=augment.pad_mode) if pad else images
        n = len(labels)
        per_rank = n // world if train else n
        self.batches_per_epoch = per_rank // batch_size if train else math.ceil(n / batch_size)
        if self.batches_per_epoch == 0:
            raise ValueError(f"batch size {batch_size} is larger than the {per_rank} training images per process")

    def __len__(self) -> int:
        return self.batches_per_epoch

    def epoch(self, epoch: int, start: int = 0) -> Iterator[tuple[Tensor, Tensor]]:
        """The batches of ``epoch`` from batch number ``start`` on."""
        if not self.train:
            for b in range(start, self.batches_per_epoch):
                index = torch.arange(b * self.batch_size, min((b + 1) * self.batch_size, len(self.labels)), device=self.device)
                yield self._prepare(self.images[index], None), self.labels[index]
            return
        generator = torch.Generator(device="cpu").manual_seed(_mix(self.seed, epoch))
        order = torch.randperm(len(self.labels), generator=generator).to(self.device)
        order = order[self.rank :: self.world]
        for b in range(start, self.batches_per_epoch):
            index = order[b * self.batch_size : (b + 1) * self.batch_size]
            batch_gen = torch.Generator(device=self.device).manual_seed(_mix(self.seed, epoch, b, self.rank))
            yield self._prepare(self.images[index], batch_gen), self.labels[index]

    def _prepare(self, images: Tensor, generator: torch.Generator | None) -> Tensor:
        aug = self.augment
        n = images.shape[0]
        if generator is not None and self.train and self.crop_range > 1:
            dy = torch.randint(0, self.crop_range, (n,), device=self.device, generator=generator)
            dx = torch.randint(0, self.crop_range, (n,), device=self.device, generator=generator)
            ar = torch.arange(self.crop, device=self.device)
            rows = (dy[:, None] + ar)[:, None, :, None]  # n×1×crop×1
            cols = (dx[:, None] + ar)[:, None, None, :]  # n×1×1×crop
            chans = torch.arange(3, device=self.device)[None, :, None, None]
            images = images[torch.arange(n, device=self.device)[:, None, None, None], chans, rows, cols]
        if generator is not None and self.train and aug.flip:
            flip = torch.rand(n, device=self.device, generator=generator) < 0.5
            images = torch.where(flip[:, None, None, None], images.flip(3), images)
        # a crop at the input size is the input already: resizing it again to the recipe's
        # resize_size (256 for 224) and centre-cropping would throw away its margin a second time
        x = aug.preprocess.to_input(images) if images.shape[-1] == aug.preprocess.input_size else aug.preprocess(images)
        if generator is not None and self.train and aug.cutout:
            x = self._cutout(x, aug.cutout, generator)
        x = x.to(self.dtype)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def _cutout(self, x: Tensor, side: int, generator: torch.Generator) -> Tensor:
        """Zero (the mean colour, after normalisation) a side×side square per image, clipped at the border."""
        n, _, h, w = x.shape
        cy = torch.randint(0, h, (n, 1, 1), device=self.device, generator=generator)
        cx = torch.randint(0, w, (n, 1, 1), device=self.device, generator=generator)
        rows = torch.arange(h, device=self.device)[None, :, None]
        cols = torch.arange(w, device=self.device)[None, None, :]
        low_y, low_x = cy - side // 2, cx - side // 2
        inside = (rows >= low_y) & (rows < low_y + side) & (cols >= low_x) & (cols < low_x + side)
        return x.masked_fill(inside[:, None], 0.0)


def _mix(*numbers: int) -> int:
    """A 63-bit seed from a tuple of integers (reproducible, unlike ``hash``)."""
    value = 0x9E3779B97F4A7C15
    for n in numbers:
        value = (value ^ (int(n) + 0x9E3779B97F4A7C15 + (value << 6) + (value >> 2))) & ((1 << 63) - 1)
    return value
