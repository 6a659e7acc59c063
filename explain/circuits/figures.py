"""Figures of how a channel is built: its strongest inputs' expanded kernels (signed, one colour
scale for all so they compare) and, on one image, gradient × activation against the measured drop."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .channel import ChannelInputs

__all__ = ["kernels_figure", "on_image_figure"]


def kernels_figure(result: ChannelInputs) -> go.Figure:
    """Two rows of signed k×k kernels: the strongest excitatory inputs, then the inhibitory ones."""
    rows = (("excitatory", result.excitatory), ("inhibitory", result.inhibitory))
    cols = max(len(links) for _, links in rows)
    titles = [f"{link.address}<br>{link.microscope} · Σ {link.strength:+.3g}" for _, links in rows for link in links]
    figure = make_subplots(rows=2, cols=cols, subplot_titles=titles, horizontal_spacing=0.012, vertical_spacing=0.16)
    scale = max((float(np.abs(link.kernel).max()) for _, links in rows for link in links), default=1.0) or 1.0
    for r, (_, links) in enumerate(rows, start=1):
        for c, link in enumerate(links, start=1):
            figure.add_trace(
                go.Heatmap(
                    z=link.kernel[::-1], zmin=-scale, zmax=scale, colorscale="RdBu", reversescale=True,
                    showscale=(r == 1 and c == cols), colorbar=dict(title="weight", len=0.8),
                    hovertemplate=f"{link.address} ({link.microscope})<br>tap %{{x}},%{{y}}: %{{z:.3g}}<extra></extra>",
                ),
                row=r, col=c,
            )  # fmt: skip
    figure.update_xaxes(showticklabels=False, constrain="domain")
    figure.update_yaxes(showticklabels=False, scaleanchor="x", constrain="domain")
    for annotation in figure.layout.annotations:
        annotation.font = dict(size=9)
    channel = result.channel
    figure.update_layout(
        title=dict(
            text=f"{channel.ours} = {channel.microscope}: strongest inputs from {result.input_layer} by expanded weight "
            f"({result.expanded.path}; top row excitatory, bottom inhibitory; red excites)",
            x=0.5, font=dict(size=13),
        ),
        height=330, margin=dict(l=10, r=10, t=90, b=10),
    )  # fmt: skip
    return figure


def on_image_figure(result: ChannelInputs) -> go.Figure:
    """Each input channel: gradient × activation (x, an estimate) against the measured drop (y)."""
    measured = result.on_image
    figure = go.Figure()
    if measured is None:
        return figure
    n = len(measured.drop)
    layer = result.input_layer
    figure.add_trace(
        go.Scattergl(
            x=measured.attribution, y=measured.drop, mode="markers", marker=dict(size=6, color="#6366f1", opacity=0.7),
            text=[f"{layer}:{i}" for i in range(n)], hovertemplate="%{text}<br>grad×act %{x:.3g}<br>measured drop %{y:.3g}<extra></extra>",
        )
    )  # fmt: skip
    lo = float(min(measured.attribution.min(), measured.drop.min(), 0))
    hi = float(max(measured.attribution.max(), measured.drop.max(), 0))
    figure.add_trace(go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", line=dict(color="#94a3b8", dash="dot"), hoverinfo="skip"))
    figure.update_layout(
        title=dict(
            text=f"On this picture: {n} inputs of {result.channel.ours} (activation {measured.activation:.3g}); "
            f"Spearman ρ between the estimate and the measured drop = {measured.agreement:.2f}",
            x=0.5, font=dict(size=13),
        ),
        xaxis_title="gradient × activation (first-order estimate)", yaxis_title="measured drop when the input is zeroed",
        showlegend=False, height=360, margin=dict(l=60, r=10, t=60, b=50),
    )  # fmt: skip
    return figure
