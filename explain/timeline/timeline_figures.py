"""Plotly figures of a run's timeline (:mod:`googlenet.analysis.epoch_measures`, :mod:`explain.timeline.run_timeline`):
branch specialization over (branch × epoch) with an epoch slider, the three heads over time,
module knock-out importance over time, and the probe image's atlas as an animation.

Built as plain dicts and validated once by ``go.Figure``, like :mod:`explain.render.figures`.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from explain.render.curves import ACC_SERIES
from explain.render.figures import MAP_KINDS, atlas_figure, map_range
from explain.timeline.run_timeline import RunTimeline
from googlenet.analysis.epoch_measures import Timeline

__all__ = ["METRICS", "specialization_timeline_figure", "heads_timeline_figure", "importance_timeline_figure", "atlas_animation"]

# metric → (title, colour scale, tick format); importance gets a symmetric range around 0.
METRICS = {
    "selectivity": ("mean class selectivity of the branch's channels", "Viridis", ".2f"),
    "energy": ("share of the module's output energy Σ A²", "Blues", ".0%"),
    "importance": ("knock-out importance: main-head test accuracy lost when the branch is zeroed", "RdBu_r", "+.1%"),
}
_GRID = dict(showgrid=True, gridcolor="#e5e7eb", zeroline=False, showline=True, linecolor="#9ca3af")
_FONT = dict(family="Inter, system-ui, sans-serif", size=12)
_AGREEMENT = {"main=aux1": "#14b8a6", "main=aux2": "#f59e0b", "aux1=aux2": "#9ca3af", "all": "#111827"}


def _empty(text: str, height: int = 300) -> go.Figure:
    return go.Figure(
        layout=dict(
            template="none", height=height, xaxis=dict(visible=False), yaxis=dict(visible=False),
            annotations=[dict(text=text, xref="paper", yref="paper", x=0.5, y=0.5, showarrow=False)],
        )
    )  # fmt: skip


def _split(branch: str) -> tuple[str, str]:
    module, kind = branch.split(".")
    return module, kind


def specialization_timeline_figure(timeline: Timeline, metric: str = "selectivity") -> go.Figure:
    """Left: every branch (rows, in network order) over the epochs (columns). Right: the
    modules × branches grid at the epoch the slider picks (the last one at first).

    ``metric``: ``"selectivity"``, ``"energy"`` or ``"importance"``. Does a branch commit early
    and stay, as the feedback-loop hypothesis of Voss et al. (2021) predicts? Read along its row.
    """
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; expected one of {', '.join(METRICS)}")
    if not timeline.entries:
        return _empty("no epochs measured yet: the first appears after the first epoch")
    title, colorscale, fmt = METRICS[metric]
    branches = timeline.branches
    epochs = [str(e) for e in timeline.epochs]
    z = np.array([[entry.__getattribute__(metric)[b] for entry in timeline.entries] for b in branches], dtype=np.float64)
    if metric == "importance":
        bound = float(np.abs(z).max()) or 0.01
        low, high = -bound, bound
    else:
        low, high = 0.0, max(1.0 if metric == "energy" else float(z.max()), 1e-6)
    modules = list(dict.fromkeys(_split(b)[0] for b in branches))
    kinds = list(dict.fromkeys(_split(b)[1] for b in branches))
    row = {b: i for i, b in enumerate(branches)}
    labels = [f"{m.removeprefix('inception')} {k}" for m, k in map(_split, branches)]

    def grid(j: int) -> list[list[float | None]]:
        return [[round(float(z[row[f"{m}.{k}"], j]), 4) if f"{m}.{k}" in row else None for m in modules] for k in kinds]

    last = len(epochs) - 1
    color = dict(coloraxis="coloraxis")
    hover_fmt = fmt.replace("+", "")
    data = [
        dict(type="heatmap", z=np.round(z, 4), x=epochs, y=labels, **color, xgap=1, ygap=1,
             hovertemplate="%{y}, epoch %{x}<br>%{z:" + hover_fmt + "}<extra></extra>"),
        dict(type="heatmap", z=grid(last), x=[m.removeprefix("inception") for m in modules], y=kinds, xaxis="x2", yaxis="y2",
             **color, xgap=2, ygap=2, texttemplate="%{z:" + fmt + "}", textfont=dict(size=10),
             hovertemplate="inception%{x} %{y}<br>%{z:" + hover_fmt + "}<extra></extra>"),
    ]  # fmt: skip

    # A white rule between modules on the left (category rows are 1 apart, centred on integers).
    rules = [
        dict(type="line", xref="paper", x0=0, x1=0.5, yref="y", y0=i - 0.5, y1=i - 0.5, line=dict(color="white", width=3))
        for i in range(1, len(branches))
        if _split(branches[i])[0] != _split(branches[i - 1])[0]
    ]

    def marker(j: int) -> list[dict]:
        return [*rules, dict(type="rect", xref="x", yref="paper", x0=j - 0.5, x1=j + 0.5, y0=0, y1=1, line=dict(color="#ef4444", width=2))]

    frames = [
        dict(name=e, data=[dict(type="heatmap", z=grid(j))], traces=[1], layout=dict(shapes=marker(j), annotations=_grid_title(e)))
        for j, e in enumerate(epochs)
    ]
    slider = dict(
        active=last, currentvalue=dict(prefix="epoch "), pad=dict(t=30), x=0.58, len=0.42,
        steps=[
            dict(label=e, method="animate", args=[[e], dict(mode="immediate", frame=dict(duration=0, redraw=True), transition=dict(duration=0))])
            for e in epochs
        ],
    )  # fmt: skip
    layout = dict(
        template="none", font=_FONT, paper_bgcolor="white",
        title=dict(text=f"Branch specialization over training: {title}", x=0.5, font=dict(size=13)),
        xaxis=dict(domain=[0.0, 0.5], title="epoch", type="category", side="bottom"),
        yaxis=dict(autorange="reversed", tickfont=dict(size=9), type="category"),
        xaxis2=dict(domain=[0.6, 1.0], anchor="y2", side="top", type="category"),
        yaxis2=dict(domain=[0.45, 1.0], anchor="x2", autorange="reversed", type="category"),
        coloraxis=dict(colorscale=colorscale, cmin=low, cmax=high, colorbar=dict(thickness=10, len=0.5, y=0.72, x=1.02, tickformat=fmt)),
        shapes=marker(last), annotations=_grid_title(epochs[last]), sliders=[slider],
        height=max(420, 14 * len(branches) + 120), margin=dict(l=90, r=40, t=60, b=40),
    )  # fmt: skip
    return go.Figure(data=data, layout=layout, frames=frames)


def _grid_title(epoch: str) -> list[dict]:
    return [dict(text=f"<b>epoch {epoch}</b>: modules × branches", x=0.8, y=0.4, xref="paper", yref="paper", showarrow=False)]


def heads_timeline_figure(timeline: Timeline) -> go.Figure:
    """Test accuracy of main, aux1 and aux2 per epoch (solid) and how often they agree (dotted)."""
    if not timeline.entries:
        return _empty("no epochs measured yet")
    epochs = list(timeline.epochs)
    data = []
    for head, color in ACC_SERIES.values():
        values = timeline.series("accuracy", head)
        if any(v is not None for v in values):
            data.append(
                dict(type="scatter", mode="lines+markers", x=epochs, y=values, name=f"{head} accuracy", line=dict(color=color, width=2))
            )
    for pair, color in _AGREEMENT.items():
        values = timeline.series("agreement", pair)
        if any(v is not None for v in values):
            label = "all three agree" if pair == "all" else f"{pair.replace('=', ' = ')}"
            data.append(dict(type="scatter", mode="lines", x=epochs, y=values, name=label, line=dict(color=color, width=1.4, dash="dot")))
    layout = dict(
        template="none", font=_FONT, paper_bgcolor="white", plot_bgcolor="#fafafa", height=340,
        title=dict(text="The three heads over training: test accuracy (solid) and how often their top classes agree (dotted)", x=0.5, font=dict(size=13)),
        xaxis=dict(title="epoch", tickmode="array", tickvals=epochs, **_GRID), yaxis=dict(range=[0, 1], tickformat=".0%", **_GRID),
        legend=dict(orientation="h", y=-0.25), margin=dict(l=50, r=12, t=50, b=40),
    )  # fmt: skip
    return go.Figure(data=data, layout=layout)


def importance_timeline_figure(timeline: Timeline) -> go.Figure:
    """Each module's knock-out importance per epoch: main-head accuracy lost when it is zeroed."""
    if not timeline.entries:
        return _empty("no epochs measured yet")
    epochs = list(timeline.epochs)
    modules = timeline.modules
    palette = ["#1e3a8a", "#1d4ed8", "#0e7490", "#0f766e", "#15803d", "#65a30d", "#ca8a04", "#ea580c", "#b91c1c"]
    data = [
        dict(type="scatter", mode="lines+markers", x=epochs, y=timeline.series("importance", m), name=m.removeprefix("inception"),
             line=dict(color=palette[i % len(palette)], width=1.6), hovertemplate=m + ", epoch %{x}: %{y:+.1%}<extra></extra>")
        for i, m in enumerate(modules)
    ]  # fmt: skip
    layout = dict(
        template="none", font=_FONT, paper_bgcolor="white", plot_bgcolor="#fafafa", height=340,
        title=dict(text="Knock-out importance of each module: main-head test accuracy lost when its output is zeroed", x=0.5, font=dict(size=13)),
        xaxis=dict(title="epoch", tickmode="array", tickvals=epochs, **_GRID),
        yaxis=dict(tickformat="+.0%", **{**_GRID, "zeroline": True, "zerolinecolor": "#6b7280"}),
        legend=dict(orientation="h", y=-0.25, title=dict(text="inception")), margin=dict(l=50, r=12, t=50, b=40),
    )  # fmt: skip
    return go.Figure(data=data, layout=layout)


def atlas_animation(run: RunTimeline, kind: str = "cam", colorscale: str = "Inferno", opacity: float = 0.6) -> go.Figure:
    """The probe image's 9×4 branch atlas, one frame per epoch, with a slider and a play button.

    Every frame shares one colour range (:func:`explain.render.figures.map_range` over all epochs), so a
    branch that brightens has gained evidence, not just been rescaled. ``kind``: ``"cam"`` or
    ``"signed"`` (the frames keep Grad-CAMs only, not activations).
    """
    if kind not in ("cam", "signed"):
        raise ValueError(f"the timeline keeps Grad-CAMs: kind must be 'cam' or 'signed', got {kind!r} (of {sorted(MAP_KINDS)})")
    if not run.frames:
        return _empty("no atlas yet: the first appears after the first epoch", height=460)
    explorations = [run.exploration(frame) for frame in run.frames]
    value_range = map_range(explorations, kind)
    figures = [atlas_figure(e, kind, colorscale, opacity, value_range=value_range) for e in explorations]
    base = figures[0]
    # The picture (trace 0) is the same in every frame: frames carry only the maps and labels.
    changing = [i for i, trace in enumerate(base.data) if trace.type != "image"]
    names = [str(f.epoch) for f in run.frames]
    frames = [
        go.Frame(name=name, data=[figure.data[i] for i in changing], traces=changing, layout=dict(title=_atlas_title(run, frame, kind)))
        for name, frame, figure in zip(names, run.frames, figures)
    ]
    animate = dict(mode="immediate", frame=dict(duration=0, redraw=True), transition=dict(duration=0))
    base.update(frames=frames)
    base.update_layout(
        title=_atlas_title(run, run.frames[0], kind),
        sliders=[dict(active=0, currentvalue=dict(prefix="epoch "), pad=dict(t=10), x=0.14, len=0.86, steps=[dict(label=n, method="animate", args=[[n], animate]) for n in names])],
        updatemenus=[
            dict(
                type="buttons", direction="left", x=0.0, y=-0.02, xanchor="left", yanchor="top", pad=dict(t=10),
                buttons=[
                    dict(label="▶ play", method="animate", args=[None, dict(mode="immediate", fromcurrent=True, frame=dict(duration=700, redraw=True), transition=dict(duration=0))]),
                    dict(label="❚❚", method="animate", args=[[None], dict(mode="immediate", frame=dict(duration=0, redraw=False), transition=dict(duration=0))]),
                ],
            )
        ],
        height=540, margin=dict(l=4, r=4, t=40, b=70),
    )  # fmt: skip
    return base


def _atlas_title(run: RunTimeline, frame, kind: str) -> dict:
    p = frame.probabilities.get("main", [])
    confidence = f", p(main) = {p[run.probe_target]:.0%}" if p else ""
    text = f"{MAP_KINDS[kind]} for the probe “{run.probe_label}” at epoch {frame.epoch}{confidence} (one colour scale for all epochs)"
    return dict(text=text, x=0.5, font=dict(size=13))
