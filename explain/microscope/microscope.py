"""The microscope an app holds per model: what a branch's channels look for (feature
visualization), which reference images excite them most (dataset examples), a gallery per module,
and how the branches of each module specialise. Cached per model, on its own copy of the model.

Feature visualization needs no data and always renders. Dataset examples and specialization need
a reference set, looked for in the folders of :func:`explain.microscope.reference.candidate_roots`; without
one, the views say so in :attr:`MicroscopeView.note` (and specialization raises
:class:`~explain.microscope.reference.ReferenceMissing`) instead of failing.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

import numpy as np
import plotly.graph_objects as go

from explain.attributions import private_copy
from explain.microscope.examples import ExampleIndex, crops, load_or_build_index
from explain.microscope.featureviz import visualize
from explain.microscope.reference import ReferenceMissing, ReferenceSet, find_reference
from explain.render.figures import gallery_figure, specialization_figure
from googlenet.weights import Loaded

__all__ = ["Microscope", "MicroscopeView", "ReferenceMissing"]


class MicroscopeView(NamedTuple):
    figure: go.Figure
    note: str  # "" when complete; else why the dataset examples are missing and how to get them


class Microscope:
    """Feature visualizations, dataset examples and specialization for one model, cached.

    Args:
        loaded: the model (a private copy is made: the hooks here must not meet other passes).
        roots: folders to look for reference images in, in order (a single folder is accepted);
            see :mod:`explain.microscope.reference`. Until a reference set is found, later calls look again
            (after a download, or with other :attr:`roots`).
    """

    def __init__(self, loaded: Loaded, roots: Sequence[str | Path] | str | Path, viz_size: int | None = None, steps: int = 128) -> None:
        self.loaded = replace(loaded, model=private_copy(loaded.model))
        self.roots = [Path(roots)] if isinstance(roots, (str, Path)) else [Path(r) for r in roots]
        self.viz_size = viz_size or (64 if loaded.input_size <= 64 else 128)
        self.steps = steps
        self._lock = threading.Lock()
        self._index: ExampleIndex | None = None
        self._reference: ReferenceSet | None = None
        self._viz: dict[tuple, np.ndarray] = {}

    @property
    def found(self) -> bool:
        """Whether a reference set has been found (then it is kept, and :attr:`roots` no longer matter)."""
        return self._reference is not None

    def reference(self) -> ReferenceSet:
        """The reference set (found once, then kept); raises :class:`ReferenceMissing`."""
        if self._reference is None:
            self._reference = find_reference(self.loaded, self.roots)
        return self._reference

    def specialization(self, progress=None) -> go.Figure:
        """Class selectivity and share of output energy per branch over the reference set."""
        index = self.index(progress)
        # the pictures by name, without the folder (a server path means nothing to a visitor)
        over = re.sub(r" in \S+$", "", self.reference().description)
        return specialization_figure(index, self.loaded.spec, over)

    def index(self, progress=None) -> ExampleIndex:
        with self._lock:
            if self._index is None:
                reference = self.reference()
                self._index, _ = load_or_build_index(self.loaded, reference.images, reference.labels, progress)
            return self._index

    def _index_or_note(self, progress) -> tuple[ExampleIndex | None, str]:
        try:
            return self.index(progress), ""
        except ReferenceMissing as missing:
            return None, str(missing)

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

    def branch_view(self, branch: str, channels: list[int], progress=None, stop=None) -> MicroscopeView:
        """Per channel: what maximises it, then its strongest dataset examples (cropped at the peak)."""
        index, note = self._index_or_note(lambda f, m: progress(0.3 * f, m) if progress else None)
        pictures = self.visualizations(branch, channels, (lambda f, m: progress(0.3 + 0.7 * f, m)) if progress else None, stop)
        if index is None:  # feature visualizations alone: one row, a caption under each
            figure = gallery_figure([("", pictures)], tile=96, captions=[[f"ch {c}" for c in channels]])
            source = "(no dataset examples: see the note)"
        else:
            images = self.reference().images
            figure = gallery_figure([(f"ch {c}", [p, *crops(index, images, branch, c, count=5)]) for c, p in zip(channels, pictures)])
            source = f"then top examples from {self.reference().description}"
        figure.update_layout(title=dict(text=f"{branch}: feature visualization, {source}", x=0.5, font=dict(size=13)))
        return MicroscopeView(figure, note)

    def module_gallery(self, module: str, per_branch: int = 4, progress=None, stop=None, activations=None) -> MicroscopeView:
        """Each branch of ``module``: its whole-branch visualization and its most active channels
        (over the reference set; without one, on ``activations`` — a branch → C×H×W dict such as
        an exploration's — or its first channels)."""
        index, note = self._index_or_note(lambda f, m: progress(0.2 * f, m) if progress else None)
        rows = []
        branches = self.loaded.spec.module(module).branches
        for b, branch in enumerate(branches):
            if index is not None:
                strength = index.top_values[module][branch.channels, 0]
            elif activations is not None and branch.name in activations:
                strength = activations[branch.name].mean(dim=(1, 2))
            else:
                strength = None
            strongest = strength.argsort(descending=True)[:per_branch].tolist() if strength is not None else list(range(per_branch))
            report = (lambda f, m, b=b: progress(0.2 + 0.8 * (b + f) / len(branches), m)) if progress else None
            pictures = self.visualizations(branch.name, [None, *strongest], report, stop)
            rows.append((f"{branch.branch} (all, ch {', '.join(map(str, strongest))})", pictures))
        figure = gallery_figure(rows)
        figure.update_layout(title=dict(text=f"{module}: each branch as a whole, then its strongest channels", x=0.5, font=dict(size=13)))
        return MicroscopeView(figure, note)
