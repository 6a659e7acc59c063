"""How a channel is built: expanded weights against a brute-force impulse, and the batched
zeroing against zeroing each input for real."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from conftest import make_loaded, randomize_bn
from torch import nn

from explain.circuits.channel import channel_inputs, module_input, rank_agreement
from explain.circuits.expanded import expanded_weights
from googlenet.inceptionv1 import inceptionv1
from googlenet.model import GoogLeNet


def impulse_response(module: nn.Module, branch: str, channel: int, source: int, size: int = 11) -> torch.Tensor:
    """The branch with every ReLU removed, fed a unit impulse in input channel ``source`` at the
    centre, minus its response to zeros (the biases): the kernel, flipped, around the centre."""
    layers = copy.deepcopy(module.get_submodule(branch)).eval()
    for name, child in list(layers.named_modules()):
        if isinstance(child, nn.ReLU):
            parent = layers.get_submodule(name.rsplit(".", 1)[0]) if "." in name else layers
            setattr(parent, name.rsplit(".", 1)[-1], nn.Identity())
    in_channels = next(m for m in layers.modules() if isinstance(m, nn.Conv2d)).in_channels
    zeros = torch.zeros(1, in_channels, size, size)
    x = zeros.clone()
    x[0, source, size // 2, size // 2] = 1.0
    with torch.no_grad():
        response = layers(x) - layers(zeros)
    return response[0, channel]


@pytest.mark.parametrize("layout", ["inceptionv1", "torchvision-bn"])
@pytest.mark.parametrize("branch", ["branch1", "branch2", "branch3", "branch4"])
def test_expanded_weights_equal_the_impulse_response(layout, branch):
    torch.manual_seed(0)
    if layout == "inceptionv1":
        model = inceptionv1(width=0.25)
    else:
        model = randomize_bn(GoogLeNet(num_classes=10, width=0.25, aux_logits=False)).eval()
    module = model.inception4c.eval()
    expanded = expanded_weights(module, branch, 3)
    k = expanded.kernels.shape[-1]
    c = 11 // 2
    for source in (0, 5, expanded.kernels.shape[0] - 1):
        response = impulse_response(module, branch, 3, source)
        window = response[c - k // 2 : c + k // 2 + 1, c - k // 2 : c + k // 2 + 1].flip(0, 1)
        assert (window - expanded.kernels[source]).abs().max() <= 1e-5
        outside = response.clone()
        outside[c - k // 2 : c + k // 2 + 1, c - k // 2 : c + k // 2 + 1] = 0
        assert outside.abs().max() <= 1e-5  # nothing reaches beyond the kernel
    assert k == {"branch1": 1, "branch2": 3, "branch3": 5 if layout == "inceptionv1" else 3, "branch4": 3}[branch]


@pytest.mark.parametrize("address", ["inception4c.branch1:2", "inception4c.branch2:7", "inception4a.branch3:1", "inception5b.branch4:0"])
def test_batched_drop_equals_zeroing_each_input(address):
    loaded = make_loaded("cifar")
    x = torch.randn(1, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    result = channel_inputs(loaded, address, image=x)
    channel = result.channel
    module = loaded.model.get_submodule(channel.module)
    inputs = module_input(loaded.model, channel.module, x).float()
    layers = module.get_submodule(channel.branch)
    with torch.no_grad():
        base = float(layers(inputs.clone())[0, channel.channel].mean())
        for i in (0, 3, inputs.shape[1] - 1):
            zeroed = inputs.clone()
            zeroed[:, i] = 0
            measured = base - float(layers(zeroed)[0, channel.channel].mean())
            assert abs(measured - result.on_image.drop[i]) <= 1e-5
    assert abs(result.on_image.activation - base) <= 1e-6
    # gradient × activation is the first-order estimate of the same drop: exact when nothing crosses a ReLU
    assert result.on_image.attribution.shape == result.on_image.drop.shape == (result.input_channels,)


def test_strongest_inputs_are_ranked_and_addressed():
    loaded = make_loaded("cifar")
    result = channel_inputs(loaded, "mixed4c:40")
    assert result.input_layer == "inception4b" and result.input_channels == loaded.spec.module("inception4b").channels
    strengths = [link.strength for link in result.excitatory]
    assert strengths == sorted(strengths, reverse=True) and strengths[0] == float(result.expanded.strength.max())
    assert [link.strength for link in result.inhibitory][0] == float(result.expanded.strength.min())
    assert all(link.address.startswith("inception4b.branch") for link in result.excitatory)
    first = channel_inputs(loaded, "inception3a.branch2:0")
    assert first.input_layer == "conv3" and first.excitatory[0].address.startswith("conv3:")


def test_rank_agreement():
    a = np.array([1.0, 2.0, 3.0, 4.0])
    assert rank_agreement(a, a * 10) == pytest.approx(1.0)
    assert rank_agreement(a, -a) == pytest.approx(-1.0)
    assert np.isnan(rank_agreement(a, np.zeros(4)))
