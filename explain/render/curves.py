"""Live training curves that stay fast on long runs.

Each series is smoothed (TensorBoard's debiased exponential moving average) and then thinned to
at most ``max_points`` by keeping the minimum and the maximum of every bucket, so spikes survive
the thinning. A 100,000-step run re-plots in well under 200 ms (``python -m bench.explore``: curves_100k_steps_ms).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go

__all__ = ["ema", "downsample", "thin_records", "training_figure", "norms_figure", "LOSS_SERIES"]

LOSS_SERIES = {
    "loss": ("total", "#111827"),
    "loss_main": ("main", "#6366f1"),
    "loss_aux1": ("aux1", "#14b8a6"),
    "loss_aux2": ("aux2", "#f59e0b"),
}
_GRID = dict(showgrid=True, gridcolor="#e5e7eb", zeroline=False, showline=True, linecolor="#9ca3af")
ACC_SERIES = {"acc_main": ("main", "#6366f1"), "acc_aux1": ("aux1", "#14b8a6"), "acc_aux2": ("aux2", "#f59e0b")}


def ema(values: np.ndarray, smoothing: float) -> np.ndarray:
    """Debiased EMA: ``s_t = w·s_{t−1} + (1−w)·x_t``, divided by ``1 − w^t`` (``w = smoothing``)."""
    if not 0 <= smoothing < 1:
        raise ValueError(f"smoothing must be in [0, 1), got {smoothing}")
    values = np.asarray(values, dtype=np.float64)
    if smoothing == 0 or values.size == 0:
        return values
    out = np.empty_like(values)
    last, weight = 0.0, 0.0
    for i, value in enumerate(values.tolist()):  # plain floats: 10× faster than numpy scalars
        last = smoothing * last + (1 - smoothing) * value
        weight = smoothing * weight + (1 - smoothing)
        out[i] = last / weight
    return out


def downsample(x: np.ndarray, y: np.ndarray, max_points: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    """At most ``max_points`` points of (x, y), keeping each bucket's minimum and maximum in order."""
    x, y = np.asarray(x), np.asarray(y, dtype=np.float64)
    n = len(y)
    if n <= max_points:
        return x, y
    buckets = max(1, max_points // 2)
    size = int(np.ceil(n / buckets))
    pad = buckets * size - n
    padded = np.concatenate([y, np.full(pad, np.nan)]).reshape(buckets, size)
    low = np.nanargmin(padded, axis=1)
    high = np.nanargmax(padded, axis=1)
    base = np.arange(buckets) * size
    index = np.sort(np.unique(np.concatenate([base + low, base + high])))
    index = index[index < n]
    return x[index], y[index]


def training_figure(
    steps: Sequence[dict] | dict[str, np.ndarray],
    epochs: Sequence[dict] = (),
    smoothing: float = 0.6,
    log_y: bool = False,
    max_points: int = 2000,
) -> go.Figure:
    """Losses per step (left) and test accuracy per epoch of each head (right).

    Args:
        steps: step records (dicts or dataclass ``__dict__``s with ``step`` and the loss keys),
            or a dict of arrays with those keys.
        epochs: epoch records with ``epoch`` and ``acc_main``/``acc_aux1``/``acc_aux2``.
        smoothing: EMA weight in [0, 1) (0: raw).
        log_y: logarithmic loss axis.
    """
    columns = steps if isinstance(steps, dict) else _columns(steps, ("step", *LOSS_SERIES))
    data: list[dict] = []
    x = np.asarray(columns.get("step", []))
    for key, (label, color) in LOSS_SERIES.items():
        y = np.asarray([np.nan if v is None else v for v in columns.get(key, [])], dtype=np.float64)
        if y.size == 0 or np.isnan(y).all():
            continue
        line = dict(color=color, width=2 if key == "loss" else 1.4)
        data.append(smoothed_line(x, np.nan_to_num(y, nan=0.0), smoothing, max_points, name=f"{label} loss", line=line, legendgroup=label))
    for key, (label, color) in ACC_SERIES.items():
        points = [(e["epoch"], e[key]) for e in epochs if e.get(key) is not None]
        if points:
            ex, ey = zip(*points)
            data.append(
                dict(
                    type="scatter",
                    mode="lines+markers",
                    x=ex,
                    y=ey,
                    name=f"{label} accuracy",
                    xaxis="x2",
                    yaxis="y2",
                    line=dict(color=color),
                    legendgroup=label,
                    showlegend=True,
                )
            )
    layout = dict(
        template="none",  # plotly's default template adds 6.5 KB of JSON to every figure
        xaxis=dict(domain=[0, 0.58], title="step", **_GRID),
        yaxis=dict(title="loss", type="log" if log_y else "linear", **_GRID),
        xaxis2=dict(domain=[0.68, 1], title="epoch", anchor="y2", **_GRID),
        yaxis2=dict(title="test accuracy", range=[0, 1], tickformat=".0%", anchor="x2", **_GRID),
        height=380, margin=dict(l=60, r=12, t=30, b=40), legend=dict(orientation="h", y=-0.22),
        paper_bgcolor="white", plot_bgcolor="#fafafa", uirevision="curves",
    )  # fmt: skip
    if not data:  # no axes to show yet: empty ones would run over a meaningless -1…6
        _empty(
            layout, "No steps yet: press Start.<br>The loss per step (left) and each head's test accuracy per epoch (right) appear here."
        )
    return go.Figure(data=data, layout=layout)


def _empty(layout: dict, text: str) -> None:
    """A figure with nothing to plot yet: its axes hidden, a short one-line-high note instead."""
    for axis in ("xaxis", "yaxis", "xaxis2", "yaxis2"):
        layout[axis] = dict(layout[axis], visible=False)
    layout.update(plot_bgcolor="white", height=160)
    layout["annotations"] = [
        dict(text=text, xref="paper", yref="paper", x=0.5, y=0.5, showarrow=False, font=dict(size=13, color="#6b7280"))
    ]


def smoothed_line(x: np.ndarray, y: np.ndarray, smoothing: float, max_points: int, **style: Any) -> dict:
    """A loss curve as the live plot draws it: EMA-smoothed, thinned to ``max_points``, WebGL."""
    xs, ys = downsample(x, ema(y, smoothing), max_points)
    return dict(type="scattergl", mode="lines", x=xs, y=np.round(ys, 5), **style)


def _columns(records: Sequence[dict], keys: Sequence[str]) -> dict[str, list]:
    return {key: [r.get(key) for r in records] for key in keys}


# Stem to top from light to dark blue; the aux heads in their loss colours, dashed.
_MODULE_COLORS = ("#bfdbfe", "#93c5fd", "#60a5fa", "#3b82f6", "#2563eb", "#1d4ed8", "#1e40af", "#1e3a8a", "#172554")
_HEAD_COLORS = {"aux1": LOSS_SERIES["loss_aux1"][1], "aux2": LOSS_SERIES["loss_aux2"][1], "fc": LOSS_SERIES["loss_main"][1]}


def thin_records(records: Sequence[dict], max_records: int) -> list[dict]:
    """At most ``max_records`` of ``records``, evenly spaced, the first and the last kept."""
    n = len(records)
    if n <= max_records:
        return list(records)
    index = np.unique(np.linspace(0, n - 1, max(2, max_records)).round().astype(int))
    return [records[i] for i in index.tolist()]


def norms_figure(
    steps: Sequence[dict],
    smoothing: float = 0.6,
    max_points: int = 2000,
    max_records: int | None = None,
    trace_type: str = "scattergl",
) -> go.Figure:
    """Gradient norm (left, log scale) and weight norm (right) of each module per logged step.

    ``steps``: step records with ``step``, ``grad_norm`` and ``weight_norm`` (module → value, as
    the trainer logs them; records without them are skipped). Same smoothing and thinning as
    :func:`training_figure`. A module whose gradient falls by orders of magnitude below the
    others is starved of gradient; the aux heads (dashed) were added to feed the middle of the
    network (Szegedy et al. 2015, §5).

    ``max_records``: smooth and draw at most this many records, evenly spaced (a live plot
    re-drawn every second: the smoothing loops over ~15 modules × 2 series per record).
    ``trace_type``: ``"scatter"`` (SVG) beside another live WebGL plot, whose re-draws would
    otherwise use up the browser's WebGL contexts.
    """
    records = [r for r in steps if r.get("grad_norm")]
    if max_records is not None:
        records = thin_records(records, max_records)
    data: list[dict] = []
    if records:
        x = np.asarray([r["step"] for r in records])
        modules = list(dict.fromkeys(name for r in records for name in r["grad_norm"]))
        body = [m for m in modules if m not in _HEAD_COLORS]
        for name in modules:
            if name in _HEAD_COLORS:
                color, dash = _HEAD_COLORS[name], "dash" if name.startswith("aux") else "solid"
            else:
                color, dash = (
                    _MODULE_COLORS[min(len(_MODULE_COLORS) - 1, body.index(name) * len(_MODULE_COLORS) // max(1, len(body)))],
                    "solid",
                )
            for key, axes in (("grad_norm", {}), ("weight_norm", dict(xaxis="x2", yaxis="y2"))):
                y = np.asarray([np.nan if r.get(key, {}).get(name) is None else r[key][name] for r in records], dtype=np.float64)
                if np.isnan(y).all():
                    continue
                keep = ~np.isnan(y)
                xs, ys = downsample(x[keep], ema(y[keep], smoothing), max_points)
                data.append(
                    dict(
                        type=trace_type, mode="lines", x=xs, y=np.round(ys, 6), name=name, legendgroup=name,
                        showlegend=key == "grad_norm", line=dict(color=color, width=1.3, dash=dash),
                        hovertemplate=f"{name} {key.replace('_', ' ')}" + " %{y:.3g} at step %{x}<extra></extra>", **axes,
                    )
                )  # fmt: skip
    layout = dict(
        template="none",
        xaxis=dict(domain=[0, 0.44], title="step", **_GRID), yaxis=dict(title="gradient norm", type="log", dtick="D2", **_GRID),
        xaxis2=dict(domain=[0.6, 1], title="step", anchor="y2", **_GRID), yaxis2=dict(title="weight norm", anchor="x2", **_GRID),
        height=380, margin=dict(l=60, r=12, t=30, b=40), legend=dict(orientation="h", y=-0.22, font=dict(size=10)),
        paper_bgcolor="white", plot_bgcolor="#fafafa", uirevision="norms",
    )  # fmt: skip
    if not data:  # no empty axes running over a meaningless range
        _empty(layout, "No gradient norms logged yet.<br>Each module's gradient norm (left) and weight norm (right) per step appear here.")
    return go.Figure(data=data, layout=layout)
