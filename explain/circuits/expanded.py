"""Expanded weights (Voss et al., "Visualizing Weights", Distill 2021): how an output channel of an
Inception module reads each channel of the module's input, with the branch's inner ReLU skipped.

For ``branch2``/``branch3`` the 1×1 reduce ``R`` (r × C_in) and the k×k kernel ``K`` (C × r × k × k)
compose into one k×k kernel per input channel, ``E[c, i] = Σ_r K[c, r] · R[r, i]``; ``branch1`` is
its own 1×1 weight. ``branch4`` max-pools 3×3 before its 1×1 ``P``: a positive input in a quiet
neighbourhood (activations after a ReLU are ≥ 0) reaches the 1×1 from all 9 positions, so its
kernel is 3×3 with every tap ``P[c, i]``. These are exactly what the branch, with its inner ReLU
removed, returns for a unit impulse in one input channel (``tests/test_circuits_channel.py``).

The module's input is the previous module's output (max-pooled 3×3/2 before inception4a and
inception5a, a per-channel operation, so the channels are the same) or, for inception3a, the stem's.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from googlenet.model import BasicConv2d

__all__ = ["ExpandedWeights", "conv_weights", "expanded_weights", "input_layer"]


@dataclass(frozen=True)
class ExpandedWeights:
    """``kernels``: C_in × k × k, the signed expanded kernel from every input channel to one channel;
    ``strength``: C_in, each kernel's sum (its effect on a spatially uniform input)."""

    kernels: Tensor
    strength: Tensor
    path: str  # "1×1", "1×1 reduce ∘ 5×5", "3×3 max pool → 1×1"
    skips: str  # what the linear reading leaves out


def conv_weights(block: BasicConv2d) -> tuple[Tensor, Tensor]:
    """(weight, bias) of a conv block with its BatchNorm folded in (inference models are folded already)."""
    weight = block.conv.weight.detach().float()
    bias = block.conv.bias.detach().float() if block.conv.bias is not None else torch.zeros(weight.shape[0], device=weight.device)
    bn = block.bn
    if isinstance(bn, nn.BatchNorm2d):
        scale = bn.weight.detach().float() / torch.sqrt(bn.running_var.float() + bn.eps)
        weight = weight * scale.view(-1, 1, 1, 1)
        bias = (bias - bn.running_mean.float()) * scale + bn.bias.detach().float()
    return weight, bias


def expanded_weights(module: nn.Module, branch: str, channel: int) -> ExpandedWeights:
    """The expanded kernels from every input channel of ``module`` (an Inception) to ``channel`` of
    ``branch`` (``"branch3"``)."""
    layers = module.get_submodule(branch)
    blocks = [m for m in layers.modules() if isinstance(m, BasicConv2d)]
    pooled = any(isinstance(m, nn.MaxPool2d) for m in layers.modules())
    if not 0 <= channel < blocks[-1].conv.out_channels:
        raise ValueError(f"{branch} has {blocks[-1].conv.out_channels} channels, not {channel + 1}")
    if len(blocks) == 1:
        weight, _ = conv_weights(blocks[0])
        row = weight[channel]  # C_in × 1 × 1
        if pooled:
            size = next(m for m in layers.modules() if isinstance(m, nn.MaxPool2d)).kernel_size
            size = size if isinstance(size, int) else size[0]
            kernels = row.expand(-1, size, size).contiguous()
            return ExpandedWeights(
                kernels,
                kernels.sum((1, 2)),
                f"{size}×{size} max pool → 1×1",
                "the max pool is linear only for one input in a quiet neighbourhood",
            )
        return ExpandedWeights(row.clone(), row.sum((1, 2)), "1×1", "nothing: a 1×1 conv is linear up to its ReLU")
    reduce, _ = conv_weights(blocks[0])
    kernel, _ = conv_weights(blocks[1])
    k = kernel.shape[-1]
    kernels = torch.einsum("ruv,ri->iuv", kernel[channel], reduce[:, :, 0, 0])
    return ExpandedWeights(
        kernels, kernels.sum((1, 2)), f"1×1 reduce ∘ {k}×{k}", f"the ReLU after the 1×1 reduce ({blocks[0].conv.out_channels} channels)"
    )


def input_layer(spec, module: str) -> str:
    """What feeds ``module``: the previous Inception module, or the stem (``"conv3"``) for the first."""
    names = spec.module_names
    at = names.index(module)
    return names[at - 1] if at > 0 else "conv3"
