"""Where the Microscope finds its reference images (dataset examples, branch specialization), and
how a visitor gets some when none are on disk.

Feature visualization needs no data. Dataset examples do, and they are looked for, in order:

1. the test (or validation) split of the data the model was trained on, when its checkpoint's
   ``training["data"]`` names a folder that is still there and lies under the data root or the
   runs folder (:func:`googlenet.datasets.run_reference_pictures`: an uploaded checkpoint's
   metadata never points the server at another folder);
2. the configured data root (``python app.py --data DIR`` or ``GOOGLENET_DATA``);
3. the Train tab's data folder;
4. :func:`reference_root`, where "Get reference images" downloads to.

A CIFAR-10 model reads the CIFAR-10 test batch (``cifar-10-batches-py/``) in one of them. An
ImageNet model reads Imagenette's validation split (``imagenette2-160/val``, 10 ImageNet classes)
or any pictures in ``<root>/reference/``, and otherwise the example photos shipped in
``assets/examples/photos``. Downloads go through torchvision's checksummed downloaders and only
ever into :func:`reference_root`: never into a path a visitor typed.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from explain.images import ImageError, load_image, prepare
from googlenet.datasets import run_reference_pictures
from googlenet.datasets.cifar10 import DataError, download_cifar10, read_cifar10
from googlenet.weights import CIFAR10_CLASSES, Loaded, runs_dir

__all__ = [
    "ReferenceSet",
    "ReferenceMissing",
    "data_root",
    "reference_root",
    "candidate_roots",
    "find_reference",
    "fetch_reference",
    "reference_kind",
]

ASSET_PHOTOS = Path(__file__).resolve().parents[2] / "assets" / "examples" / "photos"
IMAGENETTE_FOLDERS = ("imagenette2-160", "imagenette2-320", "imagenette2")
IMAGENETTE_PER_CLASS = 30  # 300 pictures: 45 MB as 224×224 uint8, indexed in about a minute on 2 CPU cores
PICTURE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")


class ReferenceMissing(ValueError):
    """No reference images anywhere; the message says where they were looked for and how to get some."""


@dataclass(frozen=True)
class ReferenceSet:
    images: Tensor  # N×3×S×S uint8
    labels: Tensor | None  # class indices of the model, or None (the model's predictions stand in)
    description: str  # e.g. "the CIFAR-10 test batch (1,017 images) in data/"
    root: Path | None


def data_root() -> Path:
    """The configured data root: ``GOOGLENET_DATA`` (``python app.py --data DIR`` sets it), else ``data``."""
    return Path(os.environ.get("GOOGLENET_DATA") or "data").expanduser()


def reference_root() -> Path:
    """Where "Get reference images" downloads to: ``<runs folder>/reference``, a folder of the
    operator's (persistent on a Space with storage), never one a visitor names. The one place to
    change when an operator setting names another."""
    return runs_dir() / "reference"


def reference_kind(loaded: Loaded) -> str:
    """``"cifar10"``, ``"imagenet"`` or ``"other"``: which reference set suits the model's classes."""
    if tuple(loaded.classes) == CIFAR10_CLASSES:
        return "cifar10"
    if len(loaded.classes) == 1000:
        return "imagenet"
    return "other"


def candidate_roots(loaded: Loaded, train_folder: str | Path | None = None) -> list[Path]:
    """The folders to look in, in order (see the module docstring); duplicates removed."""
    roots = [data_root()]
    if train_folder:
        roots.append(Path(str(train_folder)).expanduser())
    roots.append(reference_root())
    unique: dict[str, Path] = {}
    for root in roots:
        unique.setdefault(str(root.resolve()) if root.exists() else str(root), root)
    return list(unique.values())


def find_reference(loaded: Loaded, roots: Sequence[Path]) -> ReferenceSet:
    """The first reference set for ``loaded`` found under ``roots``; raises :class:`ReferenceMissing`."""
    own = run_reference_pictures(loaded.training or {}, loaded.classes, loaded.preprocess, allowed_roots=(data_root(), runs_dir(), *roots))
    if own is not None:
        return ReferenceSet(own.images, own.labels, own.description, None)
    kind = reference_kind(loaded)
    for root in roots:
        if kind == "cifar10":
            try:
                cifar = read_cifar10(root)
            except DataError:
                continue  # not here: the message below lists every folder looked in
            n = len(cifar.test_labels)
            return ReferenceSet(cifar.test_images, cifar.test_labels, f"the CIFAR-10 test batch ({n:,} images) in {cifar.root}", root)
        if kind == "imagenet":
            found = _imagenette(loaded, root)
            if found is not None:
                return found
        pictures = _pictures(loaded, [root / "reference"])
        if pictures is not None:
            return ReferenceSet(pictures, None, f"{len(pictures)} pictures in {root / 'reference'}", root)
    if kind != "cifar10":
        pictures = _pictures(loaded, [ASSET_PHOTOS])
        if pictures is not None:
            return ReferenceSet(pictures, None, f"the {len(pictures)} example photos shipped with the app", None)
    where = ", ".join(str(r) for r in roots)
    wanted = "the CIFAR-10 test batch (cifar-10-batches-py/)" if kind == "cifar10" else "reference pictures (<folder>/reference/)"
    raise ReferenceMissing(
        f"Dataset examples need {wanted}, and none was found in {where}. Press “Get reference images” to download "
        f"them into {reference_root()}, or start the app with --data DIR (or GOOGLENET_DATA=DIR) naming a folder that holds them."
    )


def fetch_reference(loaded: Loaded, progress: Callable[[float, str], None] | None = None) -> Path:
    """Download the reference set that suits ``loaded`` into :func:`reference_root` (CIFAR-10's
    archive, or Imagenette's 160 px validation split for ImageNet models) with torchvision's
    checksummed downloaders; raises :class:`ReferenceMissing` with the reason when offline."""
    root = reference_root()
    kind = reference_kind(loaded)
    if kind == "other":
        raise ReferenceMissing(
            f"there is no download for a model with {len(loaded.classes)} classes: put pictures into {data_root() / 'reference'}"
        )
    if progress is not None:
        progress(0.0, "downloading reference images (CIFAR-10, 170 MB)" if kind == "cifar10" else "downloading Imagenette (95 MB)")
    try:
        root.mkdir(parents=True, exist_ok=True)
        _DOWNLOADS[kind](root)
    except (DataError, OSError, RuntimeError) as error:
        raise ReferenceMissing(
            f"The reference images could not be downloaded ({error}). Without internet, put "
            + (
                "the CIFAR-10 python folder (cifar-10-batches-py/)"
                if kind == "cifar10"
                else "Imagenette (imagenette2-160/) or your own pictures (reference/)"
            )
            + f" into {data_root()} or start the app with --data DIR naming a folder that holds it."
        ) from None
    if progress is not None:
        progress(1.0, "reference images ready")
    return root


def _download_cifar10(root: Path) -> None:
    download_cifar10(root)


def _download_imagenette(root: Path) -> None:
    from torchvision.datasets import Imagenette

    Imagenette(str(root), split="val", size="160px", download=True)


# What "Get reference images" runs per kind of model (tests replace these: no network in tests).
_DOWNLOADS: dict[str, Callable[[Path], None]] = {"cifar10": _download_cifar10, "imagenet": _download_imagenette}


def _imagenette(loaded: Loaded, root: Path) -> ReferenceSet | None:
    for name in IMAGENETTE_FOLDERS:
        val = root / name / "val"
        if not val.is_dir():
            continue
        files = []
        for wnid in sorted(p for p in val.iterdir() if p.is_dir()):
            files += sorted(f for f in wnid.iterdir() if f.suffix.lower() in PICTURE_SUFFIXES)[:IMAGENETTE_PER_CLASS]
        images = _load(loaded, files)
        if images is not None:
            return ReferenceSet(images, None, f"{len(images)} Imagenette validation pictures in {val}", root)
    return None


def _pictures(loaded: Loaded, folders: Sequence[Path]) -> Tensor | None:
    files = [p for folder in folders if folder.is_dir() for p in sorted(folder.iterdir()) if p.suffix.lower() in PICTURE_SUFFIXES]
    return _load(loaded, files[:500])


def _load(loaded: Loaded, files: Sequence[Path]) -> Tensor | None:
    pictures = []
    for path in files:
        try:
            _, shown = prepare(load_image(path), loaded.preprocess)
        except (ImageError, OSError):
            continue
        pictures.append(torch.from_numpy(shown).permute(2, 0, 1))
    return torch.stack(pictures) if pictures else None
