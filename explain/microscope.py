"""The microscope an app holds per model: what a branch's channels look for (feature
visualization), which reference images excite them most (dataset examples), a gallery per module,
and how the branches of each module specialise. Cached per model, on its own copy of the model.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import torch
from torch import Tensor

from googlenet.data import DataError, read_cifar10
from googlenet.datasets import run_reference_pictures
from googlenet.weights import CIFAR10_CLASSES, Loaded, runs_dir

from .attributions import private_copy
from .examples import ExampleIndex, crops, load_or_build_index
from .featureviz import visualize
from .figures import gallery_figure, specialization_figure
from .images import ImageError, load_image, prepare

__all__ = ["Microscope", "reference_set"]


class Microscope:
    """Feature visualizations, dataset examples and specialization for one model, cached.

    The reference set is the CIFAR-10 test batch for CIFAR models (from ``data_dir``) and, for
    other models, the example photos in ``assets/examples/photos`` plus any images in
    ``data_dir/reference/`` (a folder the operator chooses).
    """

    def __init__(self, loaded: Loaded, data_dir: str | Path, viz_size: int | None = None, steps: int = 128) -> None:
        # its own copy of the model: the forward hooks below must not meet other threads' passes
        self.loaded = replace(loaded, model=private_copy(loaded.model))
        self.data_dir = Path(data_dir)
        self.viz_size = viz_size or (64 if loaded.input_size <= 64 else 128)
        self.steps = steps
        self._lock = threading.Lock()
        self._index: ExampleIndex | None = None
        self._reference: tuple[Tensor, Tensor | None, str] | None = None
        self._viz: dict[tuple, np.ndarray] = {}

    def reference(self) -> tuple[Tensor, Tensor | None, str]:
        if self._reference is None:
            self._reference = reference_set(self.loaded, self.data_dir)
        return self._reference

    def specialization(self, progress=None) -> go.Figure:
        """Class selectivity and share of output energy per branch over the reference set."""
        return specialization_figure(self.index(progress), self.loaded.spec)

    def index(self, progress=None) -> ExampleIndex:
        with self._lock:
            if self._index is None:
                images, labels, _ = self.reference()
                self._index, _ = load_or_build_index(self.loaded, images, labels, progress)
            return self._index

    def visualizations(self, layer: str, channels: list[int | None], progress=None, stop=None) -> list[np.ndarray]:
        """One image per channel; computed together for the channels not cached yet."""
        missing = [c for c in channels if (layer, c) not in self._viz]
        if missing:
            result = visualize(self.loaded, layer, missing, self.viz_size, self.steps, progress=progress, stop=stop)
            for c, image in zip(missing, result.images):
                self._viz[(layer, c)] = image
            while len(self._viz) > 256:
                self._viz.pop(next(iter(self._viz)))
        return [self._viz[(layer, c)] for c in channels]

    def branch_view(self, branch: str, channels: list[int], progress=None, stop=None) -> go.Figure:
        """Per channel: what maximises it, then its strongest dataset examples (cropped at the peak)."""
        index = self.index(lambda f, m: progress(0.3 * f, m) if progress else None)
        images, _, description = self.reference()
        pictures = self.visualizations(branch, channels, (lambda f, m: progress(0.3 + 0.7 * f, m)) if progress else None, stop)
        rows = []
        for channel, picture in zip(channels, pictures):
            examples = crops(index, images, branch, channel, count=5)
            rows.append((f"ch {channel}", [picture, *examples]))
        figure = gallery_figure(rows)
        figure.update_layout(
            title=dict(text=f"{branch}: feature visualization, then top examples from {description}", x=0.5, font=dict(size=13))
        )
        return figure

    def module_gallery(self, module: str, per_branch: int = 4, progress=None, stop=None) -> go.Figure:
        """Each branch of ``module``: its whole-branch visualization and its most active channels."""
        index = self.index(lambda f, m: progress(0.2 * f, m) if progress else None)
        rows = []
        branches = self.loaded.spec.module(module).branches
        for b, branch in enumerate(branches):
            strongest = index.top_values[module][branch.channels, 0].argsort(descending=True)[:per_branch].tolist()
            report = (lambda f, m, b=b: progress(0.2 + 0.8 * (b + f) / len(branches), m)) if progress else None
            pictures = self.visualizations(branch.name, [None, *strongest], report, stop)
            rows.append((f"{branch.branch} (all, ch {', '.join(map(str, strongest))})", pictures))
        figure = gallery_figure(rows)
        figure.update_layout(title=dict(text=f"{module}: each branch as a whole, then its strongest channels", x=0.5, font=dict(size=13)))
        return figure


def reference_set(loaded: Loaded, data_dir: Path) -> tuple[Tensor, Tensor | None, str]:
    """(images N×3×S×S uint8, labels or None, description) for indexing dataset examples."""
    own = run_reference_pictures(loaded.training, loaded.classes, loaded.preprocess, allowed_roots=(data_dir, runs_dir()))
    if own is not None:  # the test split of the data the run was trained on
        return own.images, own.labels, own.description
    if tuple(loaded.classes) == CIFAR10_CLASSES:
        try:
            cifar = read_cifar10(data_dir)
            return cifar.test_images, cifar.test_labels, f"the CIFAR-10 test batch ({len(cifar.test_labels)} images)"
        except DataError as error:
            raise ValueError(f"dataset examples need the CIFAR-10 test batch: {error}") from None
    folders = [Path(__file__).resolve().parent.parent / "assets" / "examples" / "photos", data_dir / "reference"]
    pictures = []
    for folder in folders:
        for path in sorted(folder.glob("*")) if folder.is_dir() else []:
            try:
                _, shown = prepare(load_image(path), loaded.preprocess)
            except ImageError:
                continue
            pictures.append(torch.from_numpy(shown).permute(2, 0, 1))
    if not pictures:
        raise ValueError("no reference images: add some to <data>/reference/")
    return torch.stack(pictures), None, f"{len(pictures)} reference photos"
