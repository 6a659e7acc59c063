"""Pictures and plain summaries of an exploration, for clients that cannot draw plotly: agents over
MCP (which passes images through and turns everything else into text), scripts and notebooks.

:func:`atlas_image` draws the same 9 × 4 branch atlas as :func:`explain.render.figures.atlas_figure`
(modules left to right, branches top to bottom, each map over the picture with the branch's
share of its module's evidence in the corner) as an RGB array; :func:`exploration_summary` is the
exploration as JSON-ready numbers.
"""

from __future__ import annotations

import numpy as np
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

from explain.attributions import Attribution
from explain.explorer import Ablation, Exploration

__all__ = ["atlas_image", "overlay_image", "exploration_summary", "attribution_summary", "ablation_summary"]

MAP_KINDS = ("cam", "signed", "activation")


def _colour(values: np.ndarray, signed: bool, colormap: str) -> np.ndarray:
    """H×W values in [0, 1] (or [-1, 1] when signed) → H×W×3 float RGB in [0, 1]."""
    import matplotlib  # a captum dependency; only its colour tables are used (no pyplot)

    table = matplotlib.colormaps["RdBu_r" if signed else colormap.lower()]
    return table((values + 1) / 2 if signed else values)[..., :3]


def _upsample(m: Tensor, size: int) -> np.ndarray:
    return F.interpolate(m[None, None].float(), size=(size, size), mode="bilinear", align_corners=False)[0, 0].numpy()


def _resize(image: np.ndarray, size: int) -> np.ndarray:
    return np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR), dtype=np.float32) / 255.0


def overlay_image(picture: np.ndarray, values: Tensor, signed: bool, colormap: str = "inferno", opacity: float = 0.6) -> np.ndarray:
    """``values`` (H×W, any scale) over ``picture`` (h×w×3 uint8) as an RGB uint8 array at the
    picture's size; each map is scaled to its own largest magnitude."""
    size = picture.shape[0]
    peak = float(values.abs().max()) or 1.0
    m = np.clip(_upsample(values / peak, size), -1 if signed else 0, 1)
    blended = (1 - opacity) * _resize(picture, size) + opacity * _colour(m, signed, colormap)
    return (blended * 255).round().astype(np.uint8)


def atlas_image(
    exploration: Exploration, kind: str = "cam", cell: int = 112, colormap: str = "inferno", opacity: float = 0.6
) -> np.ndarray:
    """The branch atlas as an RGB uint8 array (about 1,100 × 520 pixels at ``cell=112``).

    Args:
        kind: ``"cam"`` (Grad-CAM with ReLU: where the branch finds evidence for the target),
            ``"signed"`` (without ReLU: red for, blue against) or ``"activation"`` (the branch's mean
            channel activation, whatever the class).
        cell: side of one cell in pixels; colormap: a matplotlib colour map for unsigned maps.
    """
    if kind not in MAP_KINDS:
        raise ValueError(f"unknown map kind {kind!r}; expected one of {MAP_KINDS}")
    spec = exploration.spec
    rows, cols = spec.branch_kinds, spec.modules
    left, top, gap = 150, 30, 4
    width, height = left + len(cols) * (cell + gap), top + len(rows) * (cell + gap)
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=14)
    small = ImageFont.load_default(size=12)
    for c, module in enumerate(cols):
        draw.text((left + c * (cell + gap) + cell // 2, top // 2), module.short, fill="black", font=font, anchor="mm")
        for branch in module.branches:
            r = rows.index(branch.branch)
            values = _map(exploration, branch.name, kind)
            tile = overlay_image(exploration.image, values, kind == "signed", colormap, opacity)
            x, y = left + c * (cell + gap), top + r * (cell + gap)
            canvas.paste(Image.fromarray(tile).resize((cell, cell), Image.BILINEAR), (x, y))
            share = f"{exploration.shares[branch.name]:+.0%}"
            draw.rectangle((x, y, x + 8 * len(share) + 4, y + 16), fill="white")
            draw.text((x + 2, y + 1), share, fill="black", font=small)
    for r, name in enumerate(rows):
        kernels = sorted({b.kernel for m in cols for b in m.branches if b.branch == name})
        y = top + r * (cell + gap) + cell // 2
        draw.text((8, y - 9), name, fill="black", font=font)
        plain = " / ".join(kernels).replace("×", "x").replace("→", " > ")  # the bundled bitmap font has neither glyph
        draw.text((8, y + 9), plain, fill="dimgray", font=small)
    return np.asarray(canvas)


def _map(exploration: Exploration, branch: str, kind: str) -> Tensor:
    if kind == "cam":
        return exploration.cams[branch]
    if kind == "signed":
        return exploration.cams_signed[branch]
    return exploration.activations[branch].float().mean(0)


def _predictions(predictions: dict) -> dict:
    return {head: [{"label": p.label, "probability": round(p.probability, 4)} for p in preds] for head, preds in predictions.items()}


def exploration_summary(exploration: Exploration, top: int = 5) -> dict:
    """JSON-ready: each head's top-k, the class explained, and every branch's evidence share."""
    shares = exploration.shares
    ranked = sorted(shares, key=lambda b: exploration.contributions[b], reverse=True)
    return {
        "model": exploration.model_name,
        "target": exploration.target_name,
        "predictions": _predictions(exploration.predictions),
        "strongest_branches": [
            {
                "branch": b,
                "kernel": exploration.kernels[b],
                "share": round(shares[b], 3),
                "contribution": round(exploration.contributions[b], 4),
            }
            for b in ranked[:top]
        ],
        "shares": {b: round(s, 3) for b, s in shares.items()},
        "how_to_read": (
            "share: a branch's part of its module's evidence for the target (sum of grad × activation, "
            "divided by the module's total |evidence|); the atlas image shows modules left to right "
            "(inception3a … 5b) and branches top to bottom, each map over the picture"
        ),
        "notes": list(exploration.notes),
    }


def attribution_summary(result: Attribution) -> dict:
    """JSON-ready: which method, for which class, where the attribution peaks and how concentrated it is."""
    m = result.map.float()
    flat = m.flatten()
    total = float(flat.abs().sum()) or 1.0
    top = flat.abs().topk(max(1, flat.numel() // 20)).values  # the 5 % most attributed pixels
    peak = int(flat.abs().argmax())
    return {
        "method": result.method.label,
        "target": result.target_name,
        "noise_tunnel": result.noise_tunnel,
        "seconds": round(result.seconds, 3),
        "peak_pixel": {"row": peak // m.shape[1], "column": peak % m.shape[1], "of": list(m.shape)},
        "top_5_percent_pixels_hold": round(float(top.sum()) / total, 3),
        "positive_fraction": round(float(flat.clamp(min=0).sum()) / total, 3),
    }


def ablation_summary(ablation: Ablation) -> dict:
    """JSON-ready: the target's probability per head before and after each knock-out."""
    return {
        "target": ablation.target_name,
        "baseline": {
            head: {"p_target": round(p, 4), "top": ablation.baseline[head][0].label} for head, p in ablation.baseline_probability.items()
        },
        "knockouts": [
            {
                "removed": k.label,
                "branches": list(k.branches),
                "p_target": {h: round(p, 4) for h, p in k.target_probability.items()},
                "change": {h: round(d, 4) for h, d in k.delta.items()},
                "top": {h: preds[0].label for h, preds in k.predictions.items()},
                "top_changed": dict(k.top_changed),
            }
            for k in ablation.knockouts
        ],
    }
