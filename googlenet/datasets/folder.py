"""An image folder as a :class:`Dataset`: one subfolder per class (torchvision's ``ImageFolder``
convention), any format PIL reads.

Layouts::

    FOLDER/train/CLASS/*.png  +  FOLDER/val/CLASS/*.png   (or test/): the splits as given
    FOLDER/CLASS/*.jpg                                      a stratified split made here

The split made here is deterministic: per class, the files sorted by path are permuted by a
generator seeded with ``seed`` and the first ``round(n × val_split)`` (at least one when the class
has two or more pictures) are held out. Only file names are read here; pictures are decoded when
the dataset is read into memory or streamed, through :func:`googlenet.datasets.pictures.read_picture`.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from googlenet.datasets.pictures import image_suffixes

from ..preprocess import IMAGENET, Preprocess
from .base import SMALL_INPUT, DataError, Dataset, Split

__all__ = ["image_folder", "is_image_folder", "stratified_split", "VAL_NAMES"]

VAL_NAMES = ("val", "validation", "test")
_IGNORED_DIRS = ("__MACOSX",)


def image_folder(
    path: str | Path,
    input_size: int = 224,
    val_split: float = 0.2,
    seed: int = 0,
    statistics: Preprocess = IMAGENET,
) -> Dataset:
    """Scan ``path`` (see the module docstring for the layouts) into a :class:`Dataset`.

    Args:
        input_size: the side the model will see; with ImageNet's margin (256 for 224) above
            64 pixels, used whole below.
        val_split: the share of each class held out when the folder has no ``val/``/``test/``.
        seed: seeds that split.
        statistics: mean/std to train with (ImageNet's by default, which fine-tuning needs).
    """
    root = Path(path).expanduser()
    if not root.exists():
        raise DataError(f"image folder not found: {root}")
    if not root.is_dir():
        raise DataError(f"{root} is not a folder (expected one subfolder per class, or a .zip of that)")
    if not 0 < val_split < 1:
        raise ValueError(f"val_split must be in (0, 1), got {val_split}")
    notes: list[str] = []
    train_dir = root / "train"
    val_dir = next((root / name for name in VAL_NAMES if (root / name).is_dir() and _class_dirs(root / name)), None)
    if train_dir.is_dir() and val_dir is not None:
        classes = _class_names(train_dir)
        train_files, train_labels, ignored = _scan(train_dir, classes)
        val_classes = _class_names(val_dir)
        unknown = sorted(set(val_classes) - set(classes))
        if unknown:
            raise DataError(f"{val_dir} has classes that {train_dir} lacks: {', '.join(unknown[:5])}")
        test_files, test_labels, more = _scan(val_dir, classes)
        ignored += more
        test_name = "test" if val_dir.name == "test" else "val"
    else:
        base = train_dir if train_dir.is_dir() and _class_dirs(train_dir) else root
        classes = _class_names(base)
        files, labels, ignored = _scan(base, classes)
        train_index, test_index = stratified_split(labels, val_split, seed)
        train_files, train_labels = [files[i] for i in train_index], labels[train_index]
        test_files, test_labels = [files[i] for i in test_index], labels[test_index]
        test_name = "val"
        notes.append(f"no val/ or test/ folder: {val_split:.0%} of each class held out for validation (seed {seed})")
    empty = [c for c, n in zip(classes, torch.bincount(train_labels, minlength=len(classes)).tolist()) if n == 0]
    if empty:
        raise DataError(f"{root}: no training pictures for {len(empty)} classes ({', '.join(empty[:5])})")
    if ignored:
        notes.append(f"{ignored} files that are not pictures ignored")
    resize = input_size if input_size <= SMALL_INPUT else round(input_size * 256 / 224)
    return Dataset(
        name="image folder",
        root=root,
        classes=classes,
        recipe=statistics.with_size(input_size, resize),
        train=Split(train_labels, files=tuple(train_files)),
        test=Split(test_labels, files=tuple(test_files)),
        test_name=test_name,
        whole=False,
        notes=tuple(notes),
    )


def is_image_folder(path: Path) -> bool:
    """A folder with class subfolders, directly or under ``train/``."""
    return path.is_dir() and bool(_class_dirs(path))


def stratified_split(labels: torch.Tensor, val_share: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (train, val), each sorted: per class, ``round(n × val_share)`` held out (at least one
    for classes of two or more), chosen by a permutation seeded with ``seed`` only."""
    generator = torch.Generator().manual_seed(seed)
    held: list[torch.Tensor] = []
    for c in range(int(labels.max()) + 1 if len(labels) else 0):
        members = (labels == c).nonzero().flatten()
        n = len(members)
        take = min(n - 1, max(1, round(n * val_share))) if n >= 2 else 0
        held.append(members[torch.randperm(n, generator=generator)[:take]])
    val = torch.cat(held).sort().values if held else torch.zeros(0, dtype=torch.int64)
    keep = torch.ones(len(labels), dtype=torch.bool)
    keep[val] = False
    return keep.nonzero().flatten(), val


def _class_dirs(folder: Path) -> list[Path]:
    try:
        entries = sorted(folder.iterdir())
    except OSError:
        return []
    return [e for e in entries if e.is_dir() and not e.name.startswith(".") and e.name not in _IGNORED_DIRS]


def _class_names(folder: Path) -> tuple[str, ...]:
    classes = tuple(d.name for d in _class_dirs(folder))
    if len(classes) < 2:
        raise DataError(
            f"{folder}: found {len(classes)} class folder(s); an image folder needs one subfolder per class "
            "(at least two), e.g. leaves/oak/*.jpg and leaves/maple/*.jpg, optionally under train/ and val/"
        )
    return classes


def _scan(folder: Path, classes: tuple[str, ...]) -> tuple[list[Path], torch.Tensor, int]:
    """Picture files under ``folder/CLASS/`` (recursively, sorted), their labels, and how many
    other files were ignored."""
    suffixes = image_suffixes()
    files: list[Path] = []
    labels: list[int] = []
    ignored = 0
    for label, name in enumerate(classes):
        class_dir = folder / name
        if not class_dir.is_dir():
            continue  # a validation folder may lack a class
        found = []
        for dirpath, dirnames, filenames in os.walk(class_dir):
            dirnames[:] = [d for d in dirnames if not d.startswith(".") and d not in _IGNORED_DIRS]
            for filename in filenames:
                if filename.startswith("."):
                    continue  # .DS_Store, AppleDouble ._ files
                if os.path.splitext(filename)[1].lower() in suffixes:
                    found.append(Path(dirpath) / filename)
                else:
                    ignored += 1
        found.sort()
        files += found
        labels += [label] * len(found)
    return files, torch.tensor(labels, dtype=torch.int64), ignored
