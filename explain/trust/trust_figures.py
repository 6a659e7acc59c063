"""Plotly figures of a :class:`~explain.trust.report.TrustReport`, drawn without recomputing anything.

Built as plain dicts with ``template="none"`` like :mod:`explain.render.figures`; randomised maps travel
as thumbnails of at most 32×32 values each, so a 14-step curve stays well under 100 KB of JSON.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import torch.nn.functional as F
from torch import Tensor

from explain.trust.report import BASELINE_NAMES, CHANGED_BELOW, UNCHANGED_FROM, DataRandomization, TrustReport

__all__ = [
    "randomization_figure",
    "faithfulness_figure",
    "road_figure",
    "contributions_figure",
    "data_randomization_figure",
    "scores_records",
]

_FONT = dict(family="Inter, system-ui, sans-serif", size=12)
_COLORS = {"spearman_abs": "#6366f1", "spearman": "#14b8a6", "ssim": "#f59e0b"}
_NAMES = {"spearman_abs": "Spearman ρ of |map|", "spearman": "Spearman ρ of signed map", "ssim": "SSIM of |map|"}
_BASELINE_STYLE = {
    "map": dict(color="#6366f1", width=3),
    "random": dict(color="#6b7280", dash="dash"),
    "random_regions": dict(color="#6b7280", dash="dashdot"),
    "centre": dict(color="#9ca3af", dash="dot"),
}
_BASELINE_NAMES = {"map": "this map"} | BASELINE_NAMES
THUMB = 32


def _thumb(m: Tensor, side: int = THUMB) -> np.ndarray:
    """A map in [0, 1] as at most 32×32 bytes: 256 colour levels are plenty, and plotly sends
    uint8 arrays as base64, 1 byte a value where float64 takes 8 (14 thumbnails: 19 KB, not 150)."""
    if max(m.shape) > side:
        m = F.adaptive_avg_pool2d(m[None, None].float(), (side, side))[0, 0]
    return np.round(m.float().clamp(0, 1).numpy() * 255).astype(np.uint8)


def _value(v: float) -> float | None:
    return None if v is None or not np.isfinite(v) else round(float(v), 4)


def randomization_figure(report: TrustReport, order: str = "cascading") -> go.Figure:
    """Similarity to the original map after each randomisation step, thumbnails of the maps below.

    ``order``: ``"cascading"`` (top layers first, each step keeps the earlier ones random) or
    ``"independent"`` (one layer at a time).
    """
    if report.randomization is None:
        raise ValueError("this report has no randomisation test (run it with cascading=True or independent=True)")
    if order not in ("cascading", "independent"):
        raise ValueError(f"order must be 'cascading' or 'independent', got {order!r}")
    r = report.randomization
    steps = r.cascading if order == "cascading" else r.independent
    labels = ["original"] + [s.layer for s in steps]
    xs = list(range(len(labels)))
    data: list[dict] = []
    for key in ("spearman_abs", "spearman", "ssim"):
        ys = [1.0] + [_value(getattr(s, key)) for s in steps]
        data.append(
            dict(
                type="scatter", mode="lines+markers", x=xs, y=ys, name=_NAMES[key], line=dict(color=_COLORS[key], width=3 if key == "spearman_abs" else 2),
                customdata=labels, hovertemplate="%{customdata}: %{y:.2f}<extra>" + _NAMES[key] + "</extra>",
            )
        )  # fmt: skip
    maps = [r.original] + [s.map for s in steps]
    for i, m in enumerate(maps):
        z = _thumb(m)
        h, w = z.shape
        data.append(
            dict(
                type="heatmap", z=z, x0=i - 0.42 + 0.84 / (2 * w), dx=0.84 / w, y0=0.84 / (2 * h), dy=0.84 / h,
                xaxis="x2", yaxis="y2", coloraxis="coloraxis", zsmooth="best", hovertemplate=f"{labels[i]}<extra></extra>",
            )
        )  # fmt: skip
    band = dict(type="rect", xref="paper", x0=0, x1=1, yref="y", line=dict(width=0), layer="below")
    shapes = [
        band | dict(y0=UNCHANGED_FROM, y1=1.05, fillcolor="rgba(239,68,68,0.08)"),
        band | dict(y0=-1.05, y1=CHANGED_BELOW, fillcolor="rgba(34,197,94,0.08)"),
    ]
    title = (
        f"{report.label}: how much the map for “{report.target_name}” changes as weights are randomised "
        f"({'cascading from the top' if order == 'cascading' else 'one layer at a time'})"
    )
    layout = dict(
        template="none", font=_FONT, height=460, margin=dict(l=56, r=12, t=48, b=8), paper_bgcolor="white", plot_bgcolor="white",
        title=dict(text=title, x=0.5, font=dict(size=13)),
        xaxis=dict(domain=[0, 1], tickvals=xs, ticktext=labels, range=[-0.5, len(labels) - 0.5], anchor="y", fixedrange=True, tickangle=-30),
        yaxis=dict(domain=[0.36, 1], range=[-1.05, 1.05], title="similarity to original", zeroline=True, zerolinecolor="#9ca3af", gridcolor="#e5e7eb", fixedrange=True),
        xaxis2=dict(domain=[0, 1], range=[-0.5, len(labels) - 0.5], anchor="y2", visible=False, fixedrange=True, matches="x"),
        yaxis2=dict(domain=[0, 0.2], range=[0.9, -0.06], visible=False, fixedrange=True),
        coloraxis=dict(colorscale="Inferno", cmin=0, cmax=255, showscale=False),
        legend=dict(orientation="h", y=1.0, yanchor="bottom", x=0.5, xanchor="center"),
        shapes=shapes,
        annotations=[
            dict(text=f"fails above {UNCHANGED_FROM}", xref="paper", x=1, y=UNCHANGED_FROM, yref="y", xanchor="right", yanchor="bottom", showarrow=False, font=dict(size=10, color="#b91c1c")),
            dict(text=f"passes below {CHANGED_BELOW}", xref="paper", x=1, y=CHANGED_BELOW, yref="y", xanchor="right", yanchor="top", showarrow=False, font=dict(size=10, color="#15803d")),
        ],
    )  # fmt: skip
    return go.Figure(data=data, layout=layout)


def faithfulness_figure(report: TrustReport) -> go.Figure:
    """Deletion (left) and insertion (right) curves of the map, random pixels, random regions and a centre blob."""
    f = report.faithfulness
    if f is None:
        raise ValueError("this report has no faithfulness check (run it with faithfulness=True)")
    data = []
    for panel, (kind, curves) in enumerate((("deletion", f.deletion), ("insertion", f.insertion))):
        suffix = "" if panel == 0 else "2"
        for label, curve in curves.items():
            drawn = f", mean of {f.random_draws}" if label in ("random", "random_regions") and f.random_draws > 1 else ""
            data.append(
                dict(
                    type="scatter", mode="lines", x=np.round(curve.fractions.numpy().astype(np.float64), 4), y=np.round(curve.scores.numpy().astype(np.float64), 4),
                    name=f"{kind}: {_BASELINE_NAMES[label]}{drawn} (AUC {curve.auc:.3f})", line=_BASELINE_STYLE[label], xaxis=f"x{suffix}", yaxis=f"y{suffix}",
                    legendgroup=kind, hovertemplate="%{x:.0%} of pixels: p = %{y:.3f}<extra>" + _BASELINE_NAMES[label] + "</extra>",
                )
            )  # fmt: skip
    axis = dict(range=[0, 1], tickformat=".0%", gridcolor="#e5e7eb", fixedrange=True)
    layout = dict(
        template="none", font=_FONT, height=440, margin=dict(l=56, r=12, t=56, b=110), paper_bgcolor="white", plot_bgcolor="white",
        title=dict(text=f"{report.label}: p(“{report.target_name}”) as the most relevant pixels are deleted (left, lower is better) or inserted into a blurred copy (right, higher is better)", x=0.5, font=dict(size=12)),
        xaxis=axis | dict(domain=[0, 0.46], title="fraction of pixels deleted", anchor="y"),
        yaxis=axis | dict(title="probability", tickformat=".0%", anchor="x"),
        xaxis2=axis | dict(domain=[0.54, 1], title="fraction of pixels inserted", anchor="y2"),
        yaxis2=axis | dict(tickformat=".0%", anchor="x2"),
        legend=dict(orientation="h", y=-0.22, yanchor="top", font=dict(size=10)),
    )  # fmt: skip
    return go.Figure(data=data, layout=layout)


def road_figure(report: TrustReport) -> go.Figure:
    """ROAD: p(target) after imputing the most (MoRF, solid) or least (LeRF, dotted) relevant pixels."""
    f = report.faithfulness
    if f is None or f.road is None:
        raise ValueError("this report has no ROAD check (run it with road=True)")
    data = []
    for label, r in f.road.items():
        style = _BASELINE_STYLE[label]
        x = np.round(r.fractions.numpy().astype(np.float64), 2)
        for kind, ys, dash in (("MoRF", r.morf, None), ("LeRF", r.lerf, "dot")):
            line = style | ({"dash": dash} if dash else {})
            mean = float(ys.mean())
            data.append(
                dict(
                    type="scatter", mode="lines+markers", x=x, y=np.round(ys.numpy().astype(np.float64), 4), line=line,
                    name=f"{kind}: {_BASELINE_NAMES[label]} (mean {mean:.3f})", hovertemplate="%{x:.0%} imputed: p = %{y:.3f}<extra></extra>",
                )
            )  # fmt: skip
    layout = dict(
        template="none", font=_FONT, height=420, margin=dict(l=56, r=12, t=48, b=110), paper_bgcolor="white", plot_bgcolor="white",
        title=dict(text=f"ROAD for {report.label}: most relevant first (lower is better) and least relevant first (higher is better)", x=0.5, font=dict(size=12)),
        xaxis=dict(range=[0.05, 0.95], tickformat=".0%", title="fraction of pixels imputed", gridcolor="#e5e7eb", fixedrange=True),
        yaxis=dict(range=[0, 1], tickformat=".0%", title=f"p(“{report.target_name}”)", gridcolor="#e5e7eb", fixedrange=True),
        legend=dict(orientation="h", y=-0.22, yanchor="top", font=dict(size=10)),
    )  # fmt: skip
    return go.Figure(data=data, layout=layout)


def contributions_figure(report: TrustReport) -> go.Figure:
    """Each branch's (dots) and module's (diamonds) first-order contribution against the measured
    fall of the target logit when it is zeroed; points on the diagonal are estimated exactly."""
    c = report.contributions
    if c is None:
        raise ValueError("this report has no contribution check (run it with contributions=True)")
    depth = [c.modules.index(b.split(".")[0]) for b in c.branches]
    values = list(c.estimated) + list(c.measured) + list(c.module_estimated) + list(c.module_measured)
    low, high = min(values), max(values)
    pad = 0.05 * (high - low or 1.0)
    data = [
        dict(type="scatter", mode="lines", x=[low - pad, high + pad], y=[low - pad, high + pad], line=dict(color="#9ca3af", dash="dash"), name="estimate = measurement", hoverinfo="skip"),
        dict(
            type="scatter", mode="markers", x=np.round(c.estimated, 4), y=np.round(c.measured, 4), text=list(c.branches), name=f"36 branches (ρ = {c.spearman:.2f})",
            marker=dict(size=9, color=depth, colorscale="Viridis", cmin=0, cmax=max(1, len(c.modules) - 1), line=dict(width=0.5, color="white")),
            hovertemplate="%{text}<br>estimate %{x:.3f}<br>measured %{y:.3f}<extra></extra>",
        ),
        dict(
            type="scatter", mode="markers", x=np.round(c.module_estimated, 4), y=np.round(c.module_measured, 4), text=list(c.modules),
            name=f"9 modules (ρ = {c.module_spearman:.2f})", marker=dict(size=12, symbol="diamond-open", color="#f97316", line=dict(width=2)),
            hovertemplate="%{text}<br>estimate %{x:.3f}<br>measured %{y:.3f}<extra></extra>",
        ),
    ]  # fmt: skip
    layout = dict(
        template="none", font=_FONT, height=460, margin=dict(l=64, r=12, t=48, b=100), paper_bgcolor="white", plot_bgcolor="white",
        title=dict(text=f"First-order contribution vs measured knock-out for “{report.target_name}” (logit units; colour: depth)", x=0.5, font=dict(size=12)),
        xaxis=dict(title="estimate Σ ∂y/∂A ⊙ A (what the atlas corners show)", gridcolor="#e5e7eb", zeroline=True, zerolinecolor="#9ca3af"),
        yaxis=dict(title="measured fall of the logit when zeroed", gridcolor="#e5e7eb", zeroline=True, zerolinecolor="#9ca3af"),
        legend=dict(orientation="h", y=-0.18, yanchor="top"),
    )  # fmt: skip
    return go.Figure(data=data, layout=layout)


def data_randomization_figure(result: DataRandomization, label: str = "") -> go.Figure:
    """The map on the model trained on true labels beside the map on the shuffled-label model."""
    data = []
    for i, (m, name) in enumerate(((result.real, "true labels"), (result.shuffled, "shuffled labels"))):
        z = _thumb(m, 112)
        h, w = z.shape
        data.append(
            dict(
                type="heatmap",
                z=z,
                x0=i * 1.08 + 0.5 / w,
                dx=1 / w,
                y0=0.5 / h,
                dy=1 / h,
                coloraxis="coloraxis",
                hovertemplate=f"{name}<extra></extra>",
            )
        )
    title = f"{label or result.method}: ρ(|map|) {result.spearman_abs:.2f}, SSIM {result.ssim:.2f} between the two models"
    layout = dict(
        template="none", font=_FONT, height=300, margin=dict(l=4, r=4, t=40, b=24), paper_bgcolor="white", plot_bgcolor="white",
        title=dict(text=title, x=0.5, font=dict(size=12)), coloraxis=dict(colorscale="Inferno", cmin=0, cmax=255, showscale=False),
        xaxis=dict(range=[-0.02, 2.1], visible=False, fixedrange=True), yaxis=dict(range=[1.02, -0.02], visible=False, scaleanchor="x", fixedrange=True),
        annotations=[dict(text=t, x=0.5 + i * 1.08, y=1.0, yanchor="top", yref="y", xref="x", showarrow=False, yshift=-2) for i, t in enumerate(("true labels", "shuffled labels"))],
    )  # fmt: skip
    return go.Figure(data=data, layout=layout)


def scores_records(report: TrustReport) -> list[dict]:
    """The scores table as records (``gr.Dataframe(value=pandas.DataFrame(records))`` or a list of rows)."""
    return report.records()
