"""Four more class activation maps from the explorer's one pass: Grad-CAM++, XGrad-CAM, LayerCAM and
HiResCAM need only a layer's activations ``A`` and the gradient ``G = ∂y_c/∂A``, which
:class:`~explain.explorer.Exploration` already holds for all 9 modules (so for all 36 branches as
channel slices): no extra forward or backward pass.

With sums over positions ``Σ_ij`` and channels ``Σ_k`` of a branch's channels, as pytorch-grad-cam
computes them (``pytorch_grad_cam.GradCAMPlusPlus``, ``XGradCAM``, ``LayerCAM``, ``HiResCAM``; tests
hold these equal to it within 1e-5):

- Grad-CAM (Selvaraju et al. 2017): ``Σ_k mean_ij(G_k) A_k``.
- Grad-CAM++ (Chattopadhay et al. 2018, eq. 19, with the usual G², G³ for the higher derivatives):
  ``w_k = Σ_ij ReLU(G_kij) a_kij``, ``a = G² / (2G² + Σ_ij(A_k) G³ + 1e-6)`` (0 where ``G = 0``).
- XGrad-CAM (Fu et al. 2020): ``w_k = Σ_ij G_kij A_kij / (Σ_ij A_kij + 1e-7)``.
- LayerCAM (Jiang et al. 2021): ``Σ_k ReLU(G_k) ⊙ A_k`` (a weight per position, not per channel).
- HiResCAM (Draelos & Carin 2020): ``Σ_k G_k ⊙ A_k``: its sum over positions is the branch's
  first-order contribution (:attr:`Exploration.contributions`).

Maps are returned signed (before the ReLU every method applies for display); :func:`positive` clips.
"""

from __future__ import annotations

import weakref
from enum import StrEnum

import torch
from torch import Tensor

from .explorer import Exploration

__all__ = ["CamMethod", "branch_cams", "module_cam", "layer_cams", "positive"]


class CamMethod(StrEnum):
    GRADCAM = "gradcam"
    GRADCAM_PLUS_PLUS = "gradcam++"
    XGRADCAM = "xgradcam"
    LAYERCAM = "layercam"
    HIRESCAM = "hirescam"

    @property
    def label(self) -> str:
        return {
            CamMethod.GRADCAM: "Grad-CAM",
            CamMethod.GRADCAM_PLUS_PLUS: "Grad-CAM++",
            CamMethod.XGRADCAM: "XGrad-CAM",
            CamMethod.LAYERCAM: "LayerCAM",
            CamMethod.HIRESCAM: "HiResCAM",
        }[self]


def module_cam(activations: Tensor, gradients: Tensor, method: CamMethod | str, membership: Tensor | None = None) -> Tensor:
    """Signed maps from a layer's ``C×H×W`` activations and gradients: ``H×W``, or ``B×H×W`` with a
    ``B×C`` 0/1 ``membership`` (row b: the channels of branch b; a module's branches in one matmul)."""
    method = CamMethod(method)
    a, g = activations.float(), gradients.float()
    channels = a.shape[0]
    rows = torch.ones(1, channels) if membership is None else membership.float()
    if method in (CamMethod.LAYERCAM, CamMethod.HIRESCAM):
        per_channel = (g.clamp(min=0) if method is CamMethod.LAYERCAM else g) * a
        maps = rows @ per_channel.reshape(channels, -1)
    else:
        maps = (rows * channel_weights(a, g, method)) @ a.reshape(channels, -1)
    maps = maps.reshape(-1, *a.shape[1:])
    return maps[0] if membership is None else maps


def channel_weights(a: Tensor, g: Tensor, method: CamMethod) -> Tensor:
    """One weight per channel (Grad-CAM, Grad-CAM++, XGrad-CAM), exactly as pytorch-grad-cam."""
    if method is CamMethod.GRADCAM:
        return g.mean(dim=(1, 2))
    sum_a = a.sum(dim=(1, 2), keepdim=True)
    if method is CamMethod.XGRADCAM:
        return (g * a / (sum_a + 1e-7)).sum(dim=(1, 2))
    if method is CamMethod.GRADCAM_PLUS_PLUS:
        g2 = g * g
        aij = g2 / (2 * g2 + sum_a * g2 * g + 1e-6)
        aij = torch.where(g != 0, aij, torch.zeros_like(aij))
        return (g.clamp(min=0) * aij).sum(dim=(1, 2))
    raise ValueError(f"{method.label} has no channel weights")


# Per exploration and method, computed once: the atlas redraws (kind, colours) reuse them.
_CACHE: weakref.WeakKeyDictionary[Exploration, dict[CamMethod, dict[str, Tensor]]] = weakref.WeakKeyDictionary()


def branch_cams(exploration: Exploration, method: CamMethod | str) -> dict[str, Tensor]:
    """Branch → signed H×W map of ``method`` for all 36 branches, from the exploration's pass."""
    method = CamMethod(method)
    if method is CamMethod.GRADCAM:
        return exploration.cams_signed
    known = _CACHE.setdefault(exploration, {})
    if method in known:
        return known[method]
    if not exploration.gradients:
        raise ValueError("this exploration kept no gradients (made by an older version): explore the image again")
    maps: dict[str, Tensor] = {}
    for module in exploration.spec.modules:
        act, grad = exploration.activations[module.name], exploration.gradients[module.name]
        membership = torch.zeros(len(module.branches), act.shape[0])
        for b, branch in enumerate(module.branches):
            membership[b, branch.channels] = 1.0
        per_branch = module_cam(act, grad, method, membership)
        for b, branch in enumerate(module.branches):
            maps[branch.name] = per_branch[b]
    known[method] = maps
    return maps


def positive(m: Tensor) -> Tensor:
    """The map as every CAM method shows it: ``ReLU``."""
    return m.clamp(min=0)


def layer_cams(model: torch.nn.Module, layer: str, x: Tensor, target: int, method: CamMethod | str) -> Tensor:
    """Signed ``1×h×w`` map of ``method`` at ``layer`` (a module or branch) for a ``1×3×H×W`` input:
    one forward and one backward with a hook on that layer (the trust checks' randomised copies)."""
    saved: list[Tensor] = []
    handle = model.get_submodule(layer).register_forward_hook(lambda _m, _i, out: saved.append(out))
    try:
        with torch.enable_grad():
            logits = model(x.detach().requires_grad_(True))
            logits = logits[0] if isinstance(logits, tuple) else logits
            (grad,) = torch.autograd.grad(logits[0, target], saved[0])
    finally:
        handle.remove()
    return module_cam(saved[0].detach()[0], grad[0], method).unsqueeze(0)
