"""Weight and gradient norms per module while training: a vanishing aux head or an exploding module
shows in the curves (the paper added the aux heads for gradient flow; Szegedy et al. 2015, §5).

Per top-level module (``conv1`` … ``inception5b``, ``aux1``, ``aux2``, ``fc``): the L2 norm of all
its parameters together, and of their gradients, read from the tensors the training step already
holds — no extra pass. :meth:`ModuleNorms.measure` returns them as one device tensor, so the
trainer reads them with the losses in its one host sync per log interval.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["ModuleNorms"]


class ModuleNorms:
    """The parameters of each top-level module of ``model`` (plain, DDP- or compile-wrapped)."""

    def __init__(self, model: nn.Module) -> None:
        model = getattr(model, "module", model)
        model = getattr(model, "_orig_mod", model)
        groups = {name: [p for p in child.parameters() if p.requires_grad] for name, child in model.named_children() if child is not None}
        self.groups = {name: params for name, params in groups.items() if params}
        if not self.groups:
            raise ValueError(f"{type(model).__name__} has no trainable parameters to take norms of")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.groups)

    @torch.no_grad()
    def measure(self) -> Tensor:
        """2 × modules on the parameters' device: row 0 the weight norms, row 1 the gradient norms
        (NaN for a module without gradients, e.g. an aux head the loss does not use). No host sync."""
        weights, grads = [], []
        for params in self.groups.values():
            weights.append(_norm(params))
            present = [p.grad for p in params if p.grad is not None]
            grads.append(_norm(present) if present else torch.full((), float("nan"), device=params[0].device))
        return torch.stack([torch.stack(weights), torch.stack(grads)])

    def as_dicts(self, values: list[list[float]]) -> tuple[dict[str, float], dict[str, float | None]]:
        """``measure().tolist()`` as (weight norm, gradient norm) per module name; NaN gradients as ``None``."""
        weights = {name: round(v, 6) for name, v in zip(self.names, values[0])}
        grads = {name: (None if v != v else round(v, 8)) for name, v in zip(self.names, values[1])}
        return weights, grads


def _norm(tensors: list[Tensor]) -> Tensor:
    """``sqrt(Σ t²)`` over all the tensors together, in float32 (what ``clip_grad_norm_`` computes)."""
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(t.detach(), dtype=torch.float32) for t in tensors]))
