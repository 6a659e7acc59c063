"""Datasets behind one interface: CIFAR-10, CIFAR-100, image folders and zips of them.

``open_dataset(PATH)`` recognises the format and returns a :class:`Dataset`: class names, the
input recipe to train with (mean/std, input size), and a train and a test (or validation) split.
See :mod:`googlenet.datasets.loading` for how a split is read (in memory or streamed).
"""

from __future__ import annotations

from pathlib import Path

from googlenet.datasets.run_pictures import ReferencePictures, reference_pictures, run_reference_pictures

from ..preprocess import IMAGENET, Preprocess
from .archive import MAX_BYTES, MAX_FILES, MAX_RATIO, Extracted, datasets_dir, extract_zip
from .base import DataError, Dataset, Split
from .cifar import CIFAR100_DIR, cifar10, cifar100, download_cifar100, find_cifar100_dir, from_cifar10, is_cifar10
from .folder import image_folder, is_image_folder, stratified_split
from .loading import LOADING, LoadingPlan, StreamBatches, fit_square, load_in_memory, memory_budget, plan_loading, read_split

__all__ = [
    "Dataset",
    "Split",
    "DataError",
    "open_dataset",
    "as_dataset",
    "describe_formats",
    "cifar10",
    "cifar100",
    "from_cifar10",
    "download_cifar100",
    "image_folder",
    "stratified_split",
    "extract_zip",
    "Extracted",
    "datasets_dir",
    "MAX_BYTES",
    "MAX_FILES",
    "MAX_RATIO",
    "LOADING",
    "LoadingPlan",
    "plan_loading",
    "memory_budget",
    "load_in_memory",
    "read_split",
    "fit_square",
    "StreamBatches",
    "CIFAR100_DIR",
    "ReferencePictures",
    "reference_pictures",
    "run_reference_pictures",
]

FORMATS = (
    "the CIFAR-10 python folder (cifar-10-batches-py/), the CIFAR-100 python folder (cifar-100-python/), "
    "an image folder (one subfolder per class, optionally under train/ and val/), or a .zip of an image folder"
)


def open_dataset(
    path: str | Path,
    input_size: int | None = None,
    val_split: float = 0.2,
    seed: int = 0,
    statistics: Preprocess | None = None,
) -> Dataset:
    """The dataset at ``path``, whatever its format (see :data:`FORMATS`).

    Args:
        input_size: for image folders, the side the model sees (default 224); CIFAR sets keep
            their 32 px and are resized by the trainer's recipe.
        val_split, seed: the stratified validation split of a folder without ``val/``/``test/``.
        statistics: mean/std for image folders (default ImageNet's).
    """
    path = Path(path).expanduser()
    folder_options = dict(input_size=input_size or 224, val_split=val_split, seed=seed, statistics=statistics or IMAGENET)
    if path.is_file() and path.suffix.lower() == ".zip":
        extracted = extract_zip(path)
        return image_folder(extracted.folder, **folder_options).with_notes(*extracted.skipped)
    if is_cifar10(path):
        return cifar10(path)
    if find_cifar100_dir(path) is not None:
        return cifar100(path)
    if is_image_folder(path):
        return image_folder(path, **folder_options)
    if not path.exists():
        raise DataError(f"data not found: {path} (expected {FORMATS}; use --download to fetch CIFAR-10 or CIFAR-100)")
    raise DataError(f"{path} is not a dataset this trainer reads: expected {FORMATS}")


def as_dataset(data) -> Dataset:
    """A :class:`Dataset` from a Dataset or a :class:`googlenet.datasets.cifar10.CIFAR10`."""
    if isinstance(data, Dataset):
        return data
    from googlenet.datasets.cifar10 import CIFAR10

    if isinstance(data, CIFAR10):
        return from_cifar10(data)
    raise TypeError(f"expected a googlenet.datasets.Dataset or googlenet.datasets.cifar10.CIFAR10, got {type(data).__name__}")


def describe_formats() -> str:
    return FORMATS
