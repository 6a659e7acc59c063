"""Branch specialization over a dataset: each channel's class selectivity and each branch's share of
its module's output energy, accumulated batch by batch from the modules' outputs.

Following Voss et al. 2021, "Branch Specialization"
(https://distill.pub/2020/circuits/branch-specialization/): per branch, the class selectivity
index of its channels (Morcos et al. 2018, https://arxiv.org/abs/1803.06959)
``SI = (μ_max − μ_rest) / (μ_max + μ_rest)`` (``μ_max`` the highest class-conditional mean of the
channel's spatially averaged activation, ``μ_rest`` the mean of the other classes' means; 0:
responds to all classes alike, 1: to one class only), and the share of the module's output energy
``Σ A²`` that the branch carries.

Pure tensor code on a :class:`~googlenet.spec.NetworkSpec`: the microscope's dataset index
(``explain.microscope.examples``) and the run timeline (``googlenet.analysis.epoch_measures``) both accumulate with it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from googlenet.spec import NetworkSpec

__all__ = ["selectivity_index", "BranchStatistics"]


def selectivity_index(class_means: Tensor) -> Tensor:
    """``(μ_max − μ_rest) / (μ_max + μ_rest)`` per channel from an n_classes × C table of means."""
    if class_means.shape[0] < 2:
        raise ValueError("selectivity needs at least two classes")
    means = class_means.clamp(min=0)  # post-ReLU activations; guards against rounding below 0
    top, _ = means.max(dim=0)
    rest = (means.sum(dim=0) - top) / (means.shape[0] - 1)
    return torch.where(top + rest > 0, (top - rest) / (top + rest), torch.zeros_like(top))


class BranchStatistics:
    """Running class-conditional channel means and branch energy shares over batches.

    Call :meth:`add_labels` once per batch and :meth:`add` once per module of that batch; sums
    stay on the CPU in float32 (n_classes × C per module: a few KB).
    """

    def __init__(self, spec: NetworkSpec, n_classes: int) -> None:
        if n_classes < 1:
            raise ValueError(f"n_classes must be ≥ 1, got {n_classes}")
        self.spec = spec
        self.n_classes = n_classes
        self.counts = torch.zeros(n_classes)
        self.images = 0
        self._one_hot = torch.zeros(0, n_classes)
        self._sums: dict[str, Tensor] = {}
        self._energy = {b: 0.0 for b in spec.branch_names}

    def add_labels(self, labels: Tensor) -> Tensor:
        """The batch's class indices (dataset labels or a model's predictions); returns the one-hot B×n_classes."""
        self._one_hot = F.one_hot(labels.long().cpu(), self.n_classes).float()
        self.counts += self._one_hot.sum(0)
        self.images += len(labels)
        return self._one_hot

    def add(self, module: str, output: Tensor) -> None:
        """One module's output for the batch of the last :meth:`add_labels`: B×C×H×W or B×C×HW."""
        flat = output.flatten(2).float()  # B×C×HW
        if flat.shape[0] != self._one_hot.shape[0]:
            raise ValueError(f"{module}: {flat.shape[0]} images but {self._one_hot.shape[0]} labels; call add_labels first")
        spatial_mean = flat.mean(dim=2).cpu()  # B×C
        previous = self._sums.get(module)
        self._sums[module] = self._one_hot.T @ spatial_mean + (previous if previous is not None else 0)
        squares = flat.pow(2).sum(dim=2).cpu()  # B×C
        total = squares.sum(1).clamp(min=1e-12)
        for branch in self.spec.module(module).branches:
            self._energy[branch.name] += float((squares[:, branch.channels].sum(1) / total).sum())

    def class_means(self, module: str) -> Tensor:
        """n_classes × C means of each channel's spatially averaged activation (0 for unseen classes)."""
        if module not in self._sums:
            raise ValueError(f"no outputs of {module!r} were added")
        return self._sums[module] / self.counts.clamp(min=1)[:, None]

    @property
    def energy(self) -> dict[str, float]:
        """Branch → mean over images of its share of the module's ``Σ A²``."""
        return {b: v / max(self.images, 1) for b, v in self._energy.items()}

    def selectivity(self, branch: str) -> Tensor:
        """Class selectivity index of each channel of ``branch``."""
        spec = self.spec.branch(branch)
        return selectivity_index(self.class_means(spec.module)[:, spec.channels])
