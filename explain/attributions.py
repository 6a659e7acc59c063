"""Input attributions from captum's public API: which pixels push the target class.

* Integrated Gradients (Sundararajan et al. 2017, https://arxiv.org/abs/1703.01365):
  ``(x − x₀) ⊙ ∫₀¹ ∂y_c/∂x (x₀ + α(x − x₀)) dα`` with the baseline ``x₀`` = the mean image
  (zero after normalisation), ``n_steps`` Gauss-Legendre points.
* Saliency (Simonyan et al. 2013, https://arxiv.org/abs/1312.6034): ``|∂y_c/∂x|``.
* Occlusion (Zeiler & Fergus 2014, https://arxiv.org/abs/1311.2901): the drop of ``y_c`` when a
  ``window``-sized patch (sliding by ``stride``) is replaced by the mean colour.
* Guided Grad-CAM (Selvaraju et al. 2017): guided backprop ⊙ the layer's Grad-CAM upsampled.
* ``noise_tunnel=True`` wraps any of them in SmoothGrad (Smilkov et al. 2017,
  https://arxiv.org/abs/1706.03825): the average over ``nt_samples`` copies of the input with
  Gaussian noise of ``stdevs`` (in normalised units) added.

Defaults are chosen to finish in a few seconds on a 2-core CPU at 224×224 (measured by
``python -m bench.explore``); every one can be overridden.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import torch
from captum.attr import GuidedGradCam, IntegratedGradients, NoiseTunnel, Occlusion, Saliency
from torch import Tensor, nn

__all__ = ["Method", "Attribution", "attribute", "DEFAULTS"]


class Method(StrEnum):
    """Attribution methods, shared by ``explain`` and the app."""

    INTEGRATED_GRADIENTS = "integrated_gradients"
    SALIENCY = "saliency"
    OCCLUSION = "occlusion"
    GUIDED_GRADCAM = "guided_gradcam"

    @property
    def label(self) -> str:
        return {
            Method.INTEGRATED_GRADIENTS: "Integrated Gradients",
            Method.SALIENCY: "Saliency",
            Method.OCCLUSION: "Occlusion",
            Method.GUIDED_GRADCAM: "Guided Grad-CAM",
        }[self]

    @property
    def signed(self) -> bool:
        """Whether the map has meaningful negative values (evidence against the class)."""
        return self in (Method.INTEGRATED_GRADIENTS, Method.OCCLUSION, Method.GUIDED_GRADCAM)


DEFAULTS: dict[str, Any] = {
    "n_steps": 32,  # IG integration points
    "internal_batch_size": 16,  # IG points per forward pass
    "nt_samples": 4,  # SmoothGrad copies
    "stdevs": 0.15,  # SmoothGrad noise, in normalised input units
    "window": None,  # occlusion patch side; None: input_size // 7 (32 px at 224, 4 px at 32)
    "stride": None,  # occlusion stride; None: window // 2
    "perturbations_per_eval": 16,
    "layer": "inception4e",  # Guided Grad-CAM layer: 14×14 at 224 (inception5b's 7×7 is coarse)
}


@dataclass(frozen=True)
class Attribution:
    """An input attribution: ``raw`` 3×H×W from captum and ``map`` H×W (summed over colour)."""

    method: Method
    target: int
    target_name: str
    map: Tensor
    raw: Tensor
    noise_tunnel: bool
    seconds: float
    settings: dict[str, Any] = field(default_factory=dict)


def attribute(
    model: nn.Module,
    x: Tensor,
    method: Method | str,
    target: int,
    target_name: str = "",
    noise_tunnel: bool = False,
    progress: Callable[[float, str], None] | None = None,
    **options: Any,
) -> Attribution:
    """Attribute ``model``'s logit ``target`` to the pixels of ``x`` (1×3×H×W, normalised).

    Args:
        model: a module returning logits; used as is (pass a private copy if other threads use it).
        method: a :class:`Method` or its value.
        progress: called with (fraction done, message) after each forward pass.
        options: override :data:`DEFAULTS`.
    """
    try:
        method = Method(method)
    except ValueError:
        raise ValueError(f"unknown attribution method {method!r}; expected one of {[m.value for m in Method]}") from None
    unknown = set(options) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"unknown attribution options {sorted(unknown)}; known: {sorted(DEFAULTS)}")
    settings = {**DEFAULTS, **{k: v for k, v in options.items() if v is not None}}
    size = x.shape[-1]
    if settings["window"] is None:
        settings["window"] = max(2, size // 7)
    if settings["stride"] is None:
        settings["stride"] = max(1, settings["window"] // 2)

    x = x.detach().clone().contiguous(memory_format=torch.channels_last)
    passes = _expected_passes(method, settings, noise_tunnel, x.shape[-2:])
    counter = _PassCounter(model, passes, progress, method.label)
    started = time.perf_counter()
    with counter, _relu_not_inplace(model, method is Method.GUIDED_GRADCAM), torch.enable_grad():
        algorithm, kwargs = _algorithm(model, method, settings, x)
        if noise_tunnel:
            raw = NoiseTunnel(algorithm).attribute(
                x, nt_type="smoothgrad", nt_samples=settings["nt_samples"], stdevs=settings["stdevs"],
                target=target, **kwargs,
            )  # fmt: skip
        else:
            raw = algorithm.attribute(x, target=target, **kwargs)
    raw = raw.detach()[0].float().cpu()
    if progress is not None:
        progress(1.0, f"{method.label}: done")
    used = {k: settings[k] for k in _USED[method]} | (
        {"nt_samples": settings["nt_samples"], "stdevs": settings["stdevs"]} if noise_tunnel else {}
    )
    return Attribution(
        method=method,
        target=target,
        target_name=target_name,
        map=raw.sum(0) if method.signed else raw.abs().amax(0),
        raw=raw,
        noise_tunnel=noise_tunnel,
        seconds=time.perf_counter() - started,
        settings=used,
    )


_USED = {
    Method.INTEGRATED_GRADIENTS: ("n_steps", "internal_batch_size"),
    Method.SALIENCY: (),
    Method.OCCLUSION: ("window", "stride", "perturbations_per_eval"),
    Method.GUIDED_GRADCAM: ("layer",),
}


def _algorithm(model: nn.Module, method: Method, s: dict[str, Any], x: Tensor):
    if method is Method.INTEGRATED_GRADIENTS:
        kwargs = dict(baselines=torch.zeros_like(x), n_steps=s["n_steps"], internal_batch_size=s["internal_batch_size"])
        return IntegratedGradients(model), kwargs
    if method is Method.SALIENCY:
        return Saliency(model), dict(abs=True)
    if method is Method.OCCLUSION:
        w, st = s["window"], s["stride"]
        kwargs = dict(
            sliding_window_shapes=(3, w, w), strides=(3, st, st), baselines=0.0, perturbations_per_eval=s["perturbations_per_eval"]
        )
        return Occlusion(model), kwargs
    layer = model.get_submodule(s["layer"])
    return GuidedGradCam(model, layer), {}


def _expected_passes(method: Method, s: dict[str, Any], noise_tunnel: bool, hw) -> int:
    samples = s["nt_samples"] if noise_tunnel else 1
    if method is Method.INTEGRATED_GRADIENTS:
        return math.ceil(s["n_steps"] * samples / s["internal_batch_size"])
    if method is Method.OCCLUSION:
        windows = 1
        for side in hw:
            windows *= (side - s["window"]) // s["stride"] + 1
        return 1 + math.ceil(windows * samples / s["perturbations_per_eval"])
    return 2 if method is Method.GUIDED_GRADCAM else 1


class _PassCounter:
    """Counts the model's forward passes and reports them as progress (hook removed on exit)."""

    def __init__(self, model: nn.Module, expected: int, progress, label: str) -> None:
        self.model, self.expected, self.progress, self.label = model, max(1, expected), progress, label
        self.done = 0
        self.handle = None

    def __enter__(self):
        if self.progress is not None:
            self.handle = self.model.register_forward_hook(self._hook)
        return self

    def _hook(self, *_):
        self.done += 1
        self.progress(min(0.99, self.done / self.expected), f"{self.label}: pass {self.done}/{self.expected}")

    def __exit__(self, *exc):
        if self.handle is not None:
            self.handle.remove()


class _relu_not_inplace:
    """Guided backprop overrides ReLU gradients with hooks, which in-place ReLUs do not allow."""

    def __init__(self, model: nn.Module, active: bool) -> None:
        self.relus = [m for m in model.modules() if isinstance(m, nn.ReLU) and m.inplace] if active else []

    def __enter__(self):
        for relu in self.relus:
            relu.inplace = False

    def __exit__(self, *exc):
        for relu in self.relus:
            relu.inplace = True


def private_copy(model: nn.Module) -> nn.Module:
    """A copy for captum, whose hooks must not meet other threads' passes on the shared model."""
    return copy.deepcopy(model).eval()
