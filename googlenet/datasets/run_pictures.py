"""A run's own test pictures, for the microscope's dataset examples and branch specialization.

A checkpoint's training summary names the data it was trained on (``training["data"]``) and
how a folder was split (``training["config"]``). :func:`run_reference_pictures` reads that split
back, as uint8 pictures the size the model sees, with labels and class names. The summary is
metadata of a file that may have been uploaded, so the folder it names is read only when it
lies under one of the roots the caller allows (the server's data root, the runs folder).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import Tensor

from ..preprocess import Preprocess
from .base import DataError
from .loading import read_split

__all__ = ["ReferencePictures", "reference_pictures", "run_reference_pictures"]

REFERENCE_BYTES = 300 * 2**20  # the pictures kept for the index: 2,090 at 224 px, all of CIFAR's 10,000 at 32


class ReferencePictures(NamedTuple):
    """A test split as the model sees it."""

    images: Tensor  # N×3×S×S uint8, S = the recipe's input size (fitted: resized and centre-cropped)
    labels: Tensor  # N int64
    classes: tuple[str, ...]
    description: str


def reference_pictures(
    data: str | os.PathLike, preprocess: Preprocess, val_split: float = 0.2, seed: int = 0, limit: int | None = None
) -> ReferencePictures:
    """The test (or validation) split of the dataset at ``data`` through ``preprocess``'s fit.

    At most ``limit`` pictures (default: as many as fit :data:`REFERENCE_BYTES` at the input
    size), evenly spaced over the split, which is sorted by class, so every class keeps its share.
    """
    from . import open_dataset

    dataset = open_dataset(data, input_size=preprocess.input_size, val_split=val_split, seed=seed, statistics=preprocess)
    split = dataset.test
    limit = limit if limit is not None else REFERENCE_BYTES // (3 * preprocess.input_size**2)
    if limit is not None and len(split) > limit:
        keep = torch.linspace(0, len(split) - 1, limit).round().long().unique()
        split = type(split)(split.labels[keep], None if split.images is None else split.images[keep], _pick(split.files, keep))
    split, _ = read_split(split, preprocess.resize_size, dataset.test_name)
    images = preprocess.fit(split.images)
    what = f"the {dataset.test_name} split of {dataset.name} {dataset.root.name} ({len(split):,} pictures)"
    return ReferencePictures(images, split.labels, dataset.classes, what)


def run_reference_pictures(
    training: dict[str, Any], classes: Iterable[str], preprocess: Preprocess, allowed_roots: Iterable[str | os.PathLike]
) -> ReferencePictures | None:
    """The test split of the data a checkpoint was trained on, or None when its summary names
    no data, the data is gone, lies outside ``allowed_roots``, or has other classes."""
    data = training.get("data")
    if not isinstance(data, str) or not data:
        return None
    path = Path(data).expanduser()
    try:
        resolved = path.resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    roots = [Path(r).expanduser().resolve() for r in allowed_roots]
    if not any(resolved == r or resolved.is_relative_to(r) for r in roots):
        return None
    config = training.get("config") if isinstance(training.get("config"), dict) else {}
    try:
        val_split = float(config.get("val_split") or 0.2)
        seed = int(config.get("seed") or 0)
        pictures = reference_pictures(resolved, preprocess, val_split, seed)
    except (DataError, ValueError, TypeError, OSError):
        return None
    return pictures if tuple(pictures.classes) == tuple(classes) else None


def _pick(files: tuple[Path, ...] | None, keep: Tensor) -> tuple[Path, ...] | None:
    return None if files is None else tuple(files[i] for i in keep.tolist())
