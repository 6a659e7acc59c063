"""How one channel is built: its strongest inputs by expanded weight, and on one image, each input
channel's gradient × activation beside the measured drop when that input is zeroed.

The channel's activation is the spatial mean of its output (after its ReLU, as the atlas shows it).
Zeroing an input channel is computed exactly for all C_in inputs in one batched pass through the
channel's branch only: a branch starts with a linear 1×1 conv (or a per-channel max pool, which
maps a zeroed channel to a zeroed channel), so zeroing input ``i`` subtracts ``R[:, i] ⊗ X_i`` from
the first layer's pre-activation; the rest of the branch (its inner ReLU, the k×k kernel, the
ReLU) runs on that C_in-sized batch for the one output channel.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from googlenet.channels import ChannelAddress, all_channels, parse_channel
from googlenet.model import BasicConv2d
from googlenet.weights import Loaded

from ..images import prepare
from .expanded import ExpandedWeights, conv_weights, expanded_weights, input_layer

__all__ = ["InputLink", "OnImage", "ChannelInputs", "channel_inputs", "rank_agreement"]


@dataclass(frozen=True)
class InputLink:
    """One input channel of the channel being built."""

    index: int  # channel of the module's input (the previous module's concatenated output)
    address: str  # "inception4b.branch2:17" (or "conv3:5" for inception3a's inputs)
    microscope: str  # "mixed4b:177" (or "conv3:5")
    strength: float  # the expanded kernel's sum
    kernel: np.ndarray  # k×k signed expanded kernel


@dataclass(frozen=True)
class OnImage:
    """Per input channel, on one image: ``attribution`` Σ ∂a/∂X_i ⊙ X_i (a first-order estimate)
    and ``drop`` a − a(X_i = 0), measured; ``agreement`` the Spearman correlation of the two."""

    activation: float
    attribution: np.ndarray
    drop: np.ndarray
    agreement: float
    seconds: float


@dataclass(frozen=True)
class ChannelInputs:
    channel: ChannelAddress
    input_layer: str  # "inception4b" or "conv3"
    input_channels: int
    expanded: ExpandedWeights
    excitatory: tuple[InputLink, ...]
    inhibitory: tuple[InputLink, ...]
    on_image: OnImage | None
    seconds: float


class _Stop(Exception):
    pass


def _links(spec, layer: str, expanded: ExpandedWeights, order: Tensor) -> tuple[InputLink, ...]:
    names = {c.index: c for c in all_channels(spec) if c.module == layer} if layer in spec.module_names else {}
    links = []
    for i in order.tolist():
        found = names.get(i)
        address, microscope = (found.ours, found.microscope) if found else (f"{layer}:{i}", f"{layer}:{i}")
        links.append(InputLink(i, address, microscope, float(expanded.strength[i]), expanded.kernels[i].cpu().numpy()))
    return tuple(links)


def module_input(model: nn.Module, module: str, x: Tensor) -> Tensor:
    """The tensor ``module`` receives for input ``x`` (the pass stops there)."""
    seen: dict[str, Tensor] = {}

    def grab(_module, inputs):
        seen["x"] = inputs[0]
        raise _Stop

    handle = model.get_submodule(module).register_forward_pre_hook(grab)
    try:
        with torch.no_grad():
            model(x)
    except _Stop:
        pass
    finally:
        handle.remove()
    return seen["x"]


def _first(layers: nn.Module, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The branch's first conv on ``x``: (pre-activation, its input, its 1×1 weights C_out × C_in)."""
    pool = next((m for m in layers.modules() if isinstance(m, nn.MaxPool2d)), None)
    block = next(m for m in layers.modules() if isinstance(m, BasicConv2d))
    source = pool(x) if pool is not None else x
    weight, bias = conv_weights(block)
    pre = F.conv2d(source, weight, bias)
    return pre, source, weight[:, :, 0, 0]


def _zeroed_activations(layers: nn.Module, x: Tensor, channel: int, chunk: int = 128) -> Tensor:
    """The channel's activation with each input channel zeroed in turn: C_in values, batched."""
    blocks = [m for m in layers.modules() if isinstance(m, BasicConv2d)]
    pre, source, weight = _first(layers, x)  # 1×r×H×W, 1×C_in×H×W, r×C_in
    if len(blocks) == 1:
        pre, weight = pre[:, channel : channel + 1], weight[channel : channel + 1]
    values = []
    for start in range(0, source.shape[1], chunk):
        stop = min(start + chunk, source.shape[1])
        # zeroing input i removes weight[:, i] · source_i from the first pre-activation
        delta = torch.einsum("ri,ihw->irhw", weight[:, start:stop], source[0, start:stop])
        hidden = F.relu(pre - delta)  # n×r×H×W
        if len(blocks) > 1:
            second = blocks[1].conv
            k_weight, k_bias = conv_weights(blocks[1])
            hidden = F.relu(F.conv2d(hidden, k_weight[channel : channel + 1], k_bias[channel : channel + 1], padding=second.padding))
        values.append(hidden.mean((1, 2, 3)))
    return torch.cat(values)


def rank_agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's ρ (average ranks for ties); NaN when either side is constant."""

    def ranks(v: np.ndarray) -> np.ndarray:
        order = np.argsort(v, kind="stable")
        r = np.empty(len(v))
        r[order] = np.arange(len(v), dtype=float)
        for value in np.unique(v):  # ties share their mean rank
            tied = v == value
            if tied.sum() > 1:
                r[tied] = r[tied].mean()
        return r

    ra, rb = ranks(np.asarray(a, float)), ranks(np.asarray(b, float))
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def on_image(loaded: Loaded, channel: ChannelAddress, x: Tensor) -> OnImage:
    started = time.perf_counter()
    model = loaded.model
    module = model.get_submodule(channel.module)
    layers = module.get_submodule(channel.branch)
    with torch.no_grad():
        inputs = module_input(model, channel.module, x).float().contiguous()
    X = inputs.clone().requires_grad_(True)
    with torch.enable_grad():
        out = layers(X)
        activation = out[0, channel.channel].mean()
        (grad,) = torch.autograd.grad(activation, X)
    attribution = (grad * inputs).sum((2, 3))[0]
    with torch.no_grad():
        zeroed = _zeroed_activations(layers, inputs, channel.channel)
    drop = (activation.detach() - zeroed).cpu().numpy()
    attribution = attribution.cpu().numpy()
    return OnImage(float(activation.detach()), attribution, drop, rank_agreement(attribution, drop), time.perf_counter() - started)


def channel_inputs(loaded: Loaded, address: str | ChannelAddress, image: object | None = None, top: int = 8) -> ChannelInputs:
    """The strongest excitatory and inhibitory inputs of a channel by expanded weight and, with an
    ``image`` (a picture, a prepared 1×3×H×W input or an Exploration), its inputs on that image."""
    started = time.perf_counter()
    spec = loaded.spec
    channel = address if isinstance(address, ChannelAddress) else parse_channel(address, spec)
    module = loaded.model.get_submodule(channel.module)
    expanded = expanded_weights(module, channel.branch, channel.channel)
    layer = input_layer(spec, channel.module)
    n = expanded.strength.numel()
    k = min(top, n)
    excitatory = _links(spec, layer, expanded, expanded.strength.topk(k).indices)
    inhibitory = _links(spec, layer, expanded, (-expanded.strength).topk(k).indices)
    measured = None
    if image is not None:
        x = getattr(image, "input", image)
        if not isinstance(x, Tensor):
            x, _ = prepare(image, loaded.preprocess, loaded.device)
        measured = on_image(loaded, channel, x.to(loaded.device))
    return ChannelInputs(channel, layer, n, expanded, excitatory, inhibitory, measured, time.perf_counter() - started)


def summary(result: ChannelInputs) -> dict:
    """JSON-ready numbers (the MCP tool and the CLI print them)."""
    channel = result.channel

    def links(items: tuple[InputLink, ...]) -> list[dict]:
        return [dict(address=i.address, microscope=i.microscope, strength=round(i.strength, 6)) for i in items]

    out = dict(
        channel=channel.ours, microscope=channel.microscope, lucid=channel.lucid_branch, kernel=channel.kernel,
        input_layer=result.input_layer, input_channels=result.input_channels, expanded_path=result.expanded.path,
        expanded_weights_skip=result.expanded.skips, excitatory=links(result.excitatory), inhibitory=links(result.inhibitory),
        seconds=round(result.seconds, 3),
    )  # fmt: skip
    if result.on_image is not None:
        m = result.on_image
        order = np.argsort(-m.drop)[:8]
        out["on_image"] = dict(
            activation=round(m.activation, 6), spearman_attribution_vs_drop=round(m.agreement, 4),
            largest_measured_drops=[dict(input=int(i), drop=round(float(m.drop[i]), 6), attribution=round(float(m.attribution[i]), 6)) for i in order],
        )  # fmt: skip
    return out
