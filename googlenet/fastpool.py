"""A faster stride-1 3×3 max pooling for inference: the pool branch (branch4) of every Inception
module, as two separable passes of elementwise maxima over shifted views.

PyTorch's CPU ``max_pool2d`` computes the argmax indices as well: in the timeline's knock-outs
(width 0.25, 32 px, bf16, 2-core AVX-512 CPU) it took 26 % of the time, more than half of what
all the convolutions took. The shifted maxima give the same values exactly (max is exact in any
dtype) in 0.43–0.56 of the time on these shapes. Inference only: on ties the gradient of
``torch.maximum`` is shared, not routed to one input as ``max_pool2d``'s is, so training keeps the
module it was built with.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["ShiftedMaxPool3x3", "with_fast_pools"]


class ShiftedMaxPool3x3(nn.Module):
    """``nn.MaxPool2d(3, stride=1, padding=1)`` (``ceil_mode`` changes nothing at stride 1)."""

    def forward(self, x: Tensor) -> Tensor:
        p = F.pad(x, (1, 1, 1, 1), value=float("-inf"))
        rows = torch.maximum(torch.maximum(p[..., :-2], p[..., 1:-1]), p[..., 2:])
        return torch.maximum(torch.maximum(rows[..., :-2, :], rows[..., 1:-1, :]), rows[..., 2:, :])


def _is_stride1_pool3(module: nn.Module) -> bool:
    def pair(v):
        return (v, v) if isinstance(v, int) else tuple(v)

    return (
        isinstance(module, nn.MaxPool2d)
        and pair(module.kernel_size) == (3, 3)
        and pair(module.stride) == (1, 1)
        and pair(module.padding) == (1, 1)
        and pair(module.dilation) == (1, 1)
    )


def with_fast_pools(model: nn.Module) -> nn.Module:
    """Replace every stride-1 3×3 max pool of ``model`` in place (pass a copy to keep the original)."""
    for module in list(model.modules()):
        for child_name, child in list(module.named_children()):
            if _is_stride1_pool3(child):
                setattr(module, child_name, ShiftedMaxPool3x3())
    return model
