"""Feature visualization by activation maximisation, after Olah et al. 2017, "Feature
Visualization" (https://distill.pub/2017/feature-visualization/): the image is parameterised in
Fourier space with a 1/f spectrum scale and decorrelated colour (lucid's recipe), and each Adam step
sees a randomly padded, jittered, scaled and rotated copy. Several channels are optimised at once as
one batch; the forward pass stops at the target layer. Needs no data: it always works.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from googlenet.model import BasicConv2d
from googlenet.weights import Loaded

__all__ = ["FourierImage", "Visualization", "visualize", "Cancelled"]

_COLOR_SQRT = torch.tensor([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]])
_COLOR = _COLOR_SQRT / _COLOR_SQRT.norm(dim=0).max()


class Cancelled(RuntimeError):
    """A visualization stopped by its caller."""


class _Reached(Exception):
    """Raised by a hook to stop the forward pass once the target layer has run."""


class FourierImage(torch.nn.Module):
    """``batch`` RGB images parameterised as decorrelated-colour Fourier spectra.

    ``image = sigmoid(C · irfft2(scale ⊙ spectrum) / 4)`` with ``scale = 1 / max(|f|, 1/side)``
    (``decay_power=1``) times ``sqrt(h·w)``, and ``C`` lucid's normalised colour matrix. The
    1/f scale gives low frequencies a larger learning rate, which is what keeps the result
    free of high-frequency noise.
    """

    def __init__(self, batch: int, size: int, sd: float = 0.01, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.size = size
        fy = torch.fft.fftfreq(size)[:, None]
        fx = torch.fft.rfftfreq(size)[None, :]
        freqs = torch.sqrt(fx * fx + fy * fy)
        scale = 1.0 / torch.clamp(freqs, min=1.0 / size)
        self.register_buffer("scale", (scale * size)[None, None])  # sqrt(h·w) = size
        shape = (batch, 3, size, size // 2 + 1, 2)
        self.spectrum = torch.nn.Parameter(torch.randn(shape, generator=generator) * sd)

    def forward(self) -> Tensor:
        spectrum = torch.view_as_complex(self.spectrum) * self.scale
        raw = torch.fft.irfft2(spectrum, s=(self.size, self.size)) / 4.0
        colored = torch.einsum("ij,bjhw->bihw", _COLOR.to(raw.device), raw)
        return torch.sigmoid(colored)

    @torch.no_grad()
    def set_image(self, image: Tensor) -> None:
        """The parameters whose ``forward()`` gives ``image`` (B×3×S×S in (0, 1)): the inverse map."""
        colored = torch.logit(image.clamp(1e-4, 1 - 1e-4))
        raw = torch.einsum("ij,bjhw->bihw", torch.linalg.inv(_COLOR).to(image.device), colored) * 4.0
        spectrum = torch.fft.rfft2(raw) / self.scale
        self.spectrum.copy_(torch.view_as_real(spectrum))


def _transform(images: Tensor, generator: torch.Generator) -> Tensor:
    """lucid's standard transforms: pad 12 (grey), jitter 8, scale ±5 %, rotate ±10°, jitter 4."""

    def randint(low: int, high: int) -> int:
        return int(torch.randint(low, high + 1, (1,), generator=generator))

    x = F.pad(images, (12, 12, 12, 12), value=0.5)
    dx, dy = randint(0, 8), randint(0, 8)
    x = x[..., dy : x.shape[-2] - (8 - dy), dx : x.shape[-1] - (8 - dx)]
    factor = 1 + (randint(0, 10) - 5) / 50
    x = F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)
    angle = math.radians(randint(-10, 10))
    cos, sin = math.cos(angle), math.sin(angle)
    theta = torch.tensor([[cos, -sin, 0.0], [sin, cos, 0.0]], dtype=x.dtype, device=x.device).expand(x.shape[0], 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    dx, dy = randint(0, 4), randint(0, 4)
    return x[..., dy : x.shape[-2] - (4 - dy), dx : x.shape[-1] - (4 - dx)]


@dataclass(frozen=True)
class Visualization:
    """Images (N×S×S×3 uint8) that maximise ``targets`` of ``layer``, with the objective's history."""

    layer: str
    targets: tuple[int | None, ...]  # channel per image (None: the whole layer, or a class logit)
    images: np.ndarray
    objective: list[float]  # mean objective per step
    seconds: float


def _objective_module(model: nn.Module, layer: str, spec) -> nn.Module:
    """Where the objective is read: for a branch, its last convolution before the ReLU.

    After the ReLU a channel that is negative everywhere on the starting noise has zero gradient
    and its picture stays flat gray (6 of the 20 pictures of the bundled model's inception4c
    gallery did); before it, the same objective has a gradient from the first step and, once
    positive, is the same ranking. Modules (concatenated outputs) are read as they are.
    """
    if layer not in spec.branch_names:
        return model.get_submodule(layer)
    convs = [m for m in model.get_submodule(layer).modules() if isinstance(m, BasicConv2d)]
    return convs[-1].bn if convs else model.get_submodule(layer)


def visualize(
    loaded: Loaded,
    layer: str,
    channels: list[int | None],
    size: int = 128,
    steps: int = 128,
    lr: float = 0.05,
    seed: int = 0,
    progress: Callable[[float, str], None] | None = None,
    stop: threading.Event | None = None,
) -> Visualization:
    """Activation maximisation of several channels at once (one batch element per channel).

    Args:
        layer: a branch (``"inception4c.branch3"``), a module (``"inception4c"``) or ``"logits"``.
        channels: a channel index of ``layer`` per image; ``None`` maximises the mean over all of
            the layer's channels. For ``"logits"`` the index is a class.
        size, steps, lr: image side, Adam steps and learning rate (lucid's 0.05).
        seed: fixes the initial spectrum and every random transform (CPU runs repeat exactly).
        stop: set it to cancel; :class:`Cancelled` is raised within a step.
    """
    if not channels:
        raise ValueError("give at least one channel to visualise")
    model = loaded.model
    device = loaded.device
    spec = loaded.spec
    if layer != "logits" and layer not in spec.branch_names and layer not in spec.module_names:
        raise ValueError(f"unknown layer {layer!r}: use a branch like 'inception4c.branch3', a module or 'logits'")
    generator = torch.Generator().manual_seed(seed)
    param = FourierImage(len(channels), size, generator=generator).to(device)
    optimizer = torch.optim.Adam(param.parameters(), lr=lr)
    captured: dict[str, Tensor] = {}

    def grab(_module, _inputs, output):
        captured["out"] = output
        raise _Reached

    handle = None if layer == "logits" else _objective_module(model, layer, spec).register_forward_hook(grab)
    index = torch.arange(len(channels), device=device)
    picked = torch.tensor([c if c is not None else -1 for c in channels], device=device)
    history: list[float] = []
    started = time.perf_counter()
    was_training = model.training
    model.eval()
    try:
        for step in range(steps):
            if stop is not None and stop.is_set():
                raise Cancelled(f"stopped after {step} of {steps} steps")
            x = loaded.preprocess.normalize(_transform(param(), generator))
            try:
                out = model(x.contiguous(memory_format=torch.channels_last))
            except _Reached:
                out = captured.pop("out")
            if out.ndim == 4:  # B×C×H×W: mean over positions of the chosen channel
                per_channel = out.mean(dim=(2, 3))
            else:
                per_channel = out
            whole = per_channel.mean(1)
            chosen = per_channel[index, picked.clamp(min=0)]
            objective = torch.where(picked >= 0, chosen, whole)
            optimizer.zero_grad(set_to_none=True)
            (-objective.sum()).backward()
            optimizer.step()
            history.append(float(objective.detach().mean()))
            if progress is not None:
                progress((step + 1) / steps, f"feature visualization: step {step + 1}/{steps}")
    finally:
        if handle is not None:
            handle.remove()
        model.train(was_training)
    with torch.no_grad():
        images = (param().permute(0, 2, 3, 1).cpu().numpy() * 255).round().astype(np.uint8)
    return Visualization(layer, tuple(channels), images, history, time.perf_counter() - started)
