"""What every dataset gives the trainer and the evaluator, whatever its format on disk."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import Tensor

from googlenet.datasets.cifar10 import DataError

from ..preprocess import Preprocess

__all__ = ["Split", "Dataset", "DataError", "SMALL_INPUT"]

# Inputs up to this side are CIFAR-like pictures used whole (resize to the input, pad-and-crop
# augmentation); above it, ImageNet's margin: resize the shorter side to 256/224 of the input, so
# a 224 random or centre crop keeps 87.5 % of the picture.
SMALL_INPUT = 64


@dataclass(frozen=True, eq=False)
class Split:
    """One split of a dataset: labels, and either the pictures (uint8 N×3×H×W, one size for all)
    or the files they are decoded from on demand.

    ``files[i]`` has label ``labels[i]``; a split read into memory keeps the files it came from
    (unreadable ones removed) so that a streaming and an in-memory reading of it agree.
    """

    labels: Tensor
    images: Tensor | None = None
    files: tuple[Path, ...] | None = None

    def __post_init__(self) -> None:
        if self.images is None and self.files is None:
            raise ValueError("a Split needs images or files")
        if self.images is not None and len(self.images) != len(self.labels):
            raise ValueError(f"{len(self.images)} images but {len(self.labels)} labels")
        if self.files is not None and len(self.files) != len(self.labels):
            raise ValueError(f"{len(self.files)} files but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def in_memory(self) -> bool:
        return self.images is not None

    def counts(self, num_classes: int) -> Tensor:
        """Pictures per class (int64, length ``num_classes``)."""
        return torch.bincount(self.labels, minlength=num_classes)


@dataclass(frozen=True, eq=False)
class Dataset:
    """A labelled picture collection with a train and a test (or validation) split.

    Attributes:
        name: the format, as the CLI and the app print it ("CIFAR-10", "CIFAR-100", "image folder").
        root: where it was read from (the extracted folder for a zip).
        classes: class names; label ``i`` is ``classes[i]``.
        recipe: the input recipe to train with at the dataset's native size: its statistics
            (mean/std) and input size (32 for CIFAR, the requested size for folders); see
            :meth:`recipe_for` for another size.
        train, test: the splits; ``test_name`` says whether the second is a "test" or "val" set.
        whole: pictures are used whole at any input size (CIFAR) rather than with ImageNet's margin.
        notes: what a user should know (a split made here, unreadable files skipped, …).
    """

    name: str
    root: Path
    classes: tuple[str, ...]
    recipe: Preprocess
    train: Split
    test: Split
    test_name: str = "test"
    whole: bool = True
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for split_name, split in (("train", self.train), (self.test_name, self.test)):
            if len(split) and (int(split.labels.min()) < 0 or int(split.labels.max()) >= len(self.classes)):
                raise DataError(f"{self.root}: {split_name} labels outside 0…{len(self.classes) - 1}")

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def input_size(self) -> int:
        return self.recipe.input_size

    @property
    def mean(self) -> tuple[float, float, float]:
        return self.recipe.mean

    @property
    def std(self) -> tuple[float, float, float]:
        return self.recipe.std

    def recipe_for(self, input_size: int, statistics: Preprocess | None = None) -> Preprocess:
        """The recipe at ``input_size`` with this dataset's statistics (or those of ``statistics``).

        CIFAR pictures are used whole (resize 32 → input, no crop: what the guide's preset does);
        a folder's pictures get ImageNet's margin above :data:`SMALL_INPUT` (256 for 224).
        """
        resize = input_size if self.whole or input_size <= SMALL_INPUT else round(input_size * 256 / 224)
        return (statistics or self.recipe).with_size(input_size, resize)

    # The fields of googlenet.datasets.cifar10.CIFAR10, for code written against it.
    @property
    def train_images(self) -> Tensor:
        return self._images(self.train, "train")

    @property
    def train_labels(self) -> Tensor:
        return self.train.labels

    @property
    def test_images(self) -> Tensor:
        return self._images(self.test, self.test_name)

    @property
    def test_labels(self) -> Tensor:
        return self.test.labels

    def _images(self, split: Split, name: str) -> Tensor:
        if split.images is None:
            raise DataError(f"the {name} split of {self.root} is not in memory; read it with googlenet.datasets.load_in_memory")
        return split.images

    def with_notes(self, *notes: str) -> Dataset:
        return replace(self, notes=(*self.notes, *notes))

    def describe(self) -> str:
        """One line: format, folder, split sizes, classes."""
        return (
            f"{self.name} {self.root}: {len(self.train):,} train + {len(self.test):,} {self.test_name} images, {self.num_classes} classes"
        )

    def __repr__(self) -> str:
        return f"Dataset({self.describe()})"
