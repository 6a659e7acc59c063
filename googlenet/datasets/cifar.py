"""CIFAR-10 and CIFAR-100 in their official "python version" layouts, as :class:`Dataset`\\ s.

CIFAR-100 (``cifar-100-python/``: ``train``, ``test``, ``meta``) is read with the fine labels
(100 classes) through the same restricted unpickler as CIFAR-10: the files are pickles, and only
what a numpy array needs may be built from them.
"""

from __future__ import annotations

from pathlib import Path

from googlenet.datasets.cifar10 import CIFAR10, DataError, _download, _read_batch, _unpickle, find_batches_dir, read_cifar10

from ..preprocess import CIFAR10 as CIFAR10_RECIPE
from ..preprocess import CIFAR100 as CIFAR100_RECIPE
from .base import Dataset, Split

__all__ = ["cifar10", "from_cifar10", "is_cifar10", "cifar100", "find_cifar100_dir", "download_cifar100", "CIFAR100_DIR"]

CIFAR100_DIR = "cifar-100-python"


def cifar10(path: str | Path) -> Dataset:
    """The CIFAR-10 folder at ``path`` (holding ``cifar-10-batches-py/``, or that folder)."""
    return from_cifar10(read_cifar10(path))


def from_cifar10(data: CIFAR10) -> Dataset:
    """A :class:`googlenet.datasets.cifar10.CIFAR10` (e.g. a subset a test cut) as a :class:`Dataset`."""
    return Dataset(
        name="CIFAR-10",
        root=Path(data.root),
        classes=tuple(data.classes),
        recipe=CIFAR10_RECIPE,
        train=Split(data.train_labels, images=data.train_images),
        test=Split(data.test_labels, images=data.test_images),
    )


def find_cifar100_dir(path: str | Path) -> Path | None:
    """The ``cifar-100-python`` folder for ``path`` (that folder or its parent), else None."""
    path = Path(path).expanduser()
    for candidate in (path / CIFAR100_DIR, path):
        if (candidate / "meta").is_file() and ((candidate / "test").is_file() or (candidate / "train").is_file()):
            return candidate
    return None


def cifar100(path: str | Path) -> Dataset:
    """CIFAR-100 with its 100 fine labels from the official python-version folder."""
    folder = find_cifar100_dir(path)
    if folder is None:
        raise DataError(
            f"no CIFAR-100 files in {path}: expected {CIFAR100_DIR}/ with train, test and meta "
            "(the official 'python version'); use --download cifar100 to fetch it"
        )
    meta = _unpickle(folder / "meta", "CIFAR-100")
    classes = tuple(c.decode() if isinstance(c, bytes) else str(c) for c in meta.get("fine_label_names", ()))
    if len(classes) != 100:
        raise DataError(f"{folder / 'meta'}: expected 100 fine_label_names, found {len(classes)}")
    train_images, train_labels = _read_batch(folder / "train", "CIFAR-100", "fine_labels", 100)
    test_images, test_labels = _read_batch(folder / "test", "CIFAR-100", "fine_labels", 100)
    return Dataset(
        name="CIFAR-100",
        root=folder,
        classes=classes,
        recipe=CIFAR100_RECIPE,
        train=Split(train_labels, images=train_images),
        test=Split(test_labels, images=test_images),
    )


def download_cifar100(root: str | Path) -> Path:
    """Download and unpack the full CIFAR-100 into ``root`` with torchvision's MD5-checked utilities."""
    from torchvision.datasets import CIFAR100 as TorchvisionCIFAR100

    return _download(TorchvisionCIFAR100, root, "CIFAR-100")


def is_cifar10(path: Path) -> bool:
    try:
        find_batches_dir(path)
    except DataError:
        return False
    return True
