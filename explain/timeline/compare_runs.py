"""Compare training runs as TensorBoard and W&B users do: loss and accuracy curves overlaid (the
live plot's smoothing and thinning, :mod:`explain.render.curves`) and a table of the runs' configs with
the fields that differ marked, and their final per-head test accuracy.
"""

from __future__ import annotations

import html
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go

from explain.render.curves import ACC_SERIES, smoothed_line
from googlenet.analysis.epoch_measures import resolve_run
from googlenet.training.trainer import EpochEvent, StartEvent, StepEvent, read_metrics

__all__ = ["RunComparison", "compare_runs", "IDENTITY_FIELDS"]

# What names a run rather than configures it: every run differs here by construction, and the
# table's columns already carry the run's name.
IDENTITY_FIELDS = ("out", "resume")
_PALETTE = ("#6366f1", "#ef4444", "#10b981", "#f59e0b", "#0ea5e9", "#a855f7", "#84cc16", "#ec4899")
_GRID = dict(showgrid=True, gridcolor="#e5e7eb", zeroline=False, showline=True, linecolor="#9ca3af")
_MISSING = "—"


@dataclass(frozen=True)
class RunComparison:
    """Two or more runs side by side.

    Attributes:
        runs: the runs' names, in the order given (the table's columns).
        figure: total loss per step (left) and test accuracy per epoch (right) of every run.
        fields: every config field in the table, in ``TrainConfig`` order.
        differing: the fields whose values differ between the runs.
        values: field → one value per run (``None`` where a run's config lacks the field).
        accuracy: run name → head → its final test accuracy (``None``: no epoch finished / no aux head).
        epochs: run name → epochs finished.
    """

    runs: tuple[str, ...]
    figure: go.Figure
    fields: tuple[str, ...]
    differing: tuple[str, ...]
    values: dict[str, tuple[Any, ...]]
    accuracy: dict[str, dict[str, float | None]]
    epochs: dict[str, int]

    def rows(self, only_differing: bool = False) -> list[list[str]]:
        """``[field, value in run 1, …]`` rows as text, the final accuracies first (for a table widget)."""
        rows = [
            [f"accuracy {head}", *(_format(self.accuracy[r][head], percent=True) for r in self.runs)] for head in ("main", "aux1", "aux2")
        ]
        rows.append(["epochs finished", *(str(self.epochs[r]) for r in self.runs)])
        for name in self.differing if only_differing else self.fields:
            rows.append([name, *(_format(v) for v in self.values[name])])
        return rows

    def html(self, only_differing: bool = False) -> str:
        """The table as HTML, differing fields highlighted and marked with ≠ (values escaped)."""
        head = "".join(f"<th>{html.escape(r)}</th>" for r in self.runs)
        body = []
        for row in self.rows(only_differing):
            differs = row[0] in self.differing
            style = ' style="background:#fef3c7;font-weight:600"' if differs else ""
            cells = "".join(f"<td>{html.escape(c)}</td>" for c in row[1:])
            body.append(f"<tr{style}><td>{'≠ ' if differs else ''}{html.escape(row[0])}</td>{cells}</tr>")
        return f'<table class="run-comparison"><thead><tr><th>setting</th>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def compare_runs(runs: Sequence[str | os.PathLike], smoothing: float = 0.6, log_y: bool = False, max_points: int = 2000) -> RunComparison:
    """Curves, configs and final accuracies of two or more run folders (or NAMEs in the runs folder).

    The curves use the live plot's debiased EMA (``smoothing``) and min/max thinning to
    ``max_points`` per run (see :mod:`explain.render.curves`).
    """
    paths = [resolve_run(r) for r in runs]
    if len(paths) < 2:
        raise ValueError(f"compare needs two or more runs, got {len(paths)}")
    names = _unique_names(paths)
    configs, steps, epochs = [], [], []
    for path in paths:
        events = read_metrics(path)
        configs.append(_config(path, events))
        steps.append([e for e in events if isinstance(e, StepEvent)])
        epochs.append(_last_per_epoch([e for e in events if isinstance(e, EpochEvent)]))
    fields = list(dict.fromkeys(k for c in configs for k in c if k not in IDENTITY_FIELDS))
    values = {f: tuple(c.get(f) for c in configs) for f in fields}
    differing = tuple(f for f in fields if len({json.dumps(v, sort_keys=True) for v in values[f]}) > 1)
    accuracy = {}
    for name, finished in zip(names, epochs):
        last = finished[-1] if finished else None
        accuracy[name] = {head: (getattr(last, f"acc_{head}") if last else None) for head in ("main", "aux1", "aux2")}
    figure = _figure(names, steps, epochs, smoothing, log_y, max_points)
    return RunComparison(
        tuple(names), figure, tuple(fields), differing, values, accuracy, {n: (e[-1].epoch if e else 0) for n, e in zip(names, epochs)}
    )


def _unique_names(paths: list[Path]) -> list[str]:
    names = [p.name for p in paths]
    if len(set(names)) == len(names):
        return names
    return [str(p) for p in paths]  # two folders of the same name in different places


def _config(path: Path, events: list) -> dict[str, Any]:
    """``config.json`` (the settings after the preset was applied), else the start event's copy."""
    try:
        return json.loads((path / "config.json").read_text())
    except (OSError, json.JSONDecodeError):
        starts = [e for e in events if isinstance(e, StartEvent)]
        return dict(starts[-1].config) if starts else {}


def _last_per_epoch(events: list[EpochEvent]) -> list[EpochEvent]:
    """One event per epoch (a resumed run may have logged an epoch twice: the later counts)."""
    by_epoch = {e.epoch: e for e in events}
    return [by_epoch[k] for k in sorted(by_epoch)]


def _figure(names, steps, epochs, smoothing: float, log_y: bool, max_points: int) -> go.Figure:
    data: list[dict] = []
    last = max((e[-1].epoch for e in epochs if e), default=1)
    for i, (name, run_steps, run_epochs) in enumerate(zip(names, steps, epochs)):
        color = _PALETTE[i % len(_PALETTE)]
        if run_steps:
            x = np.array([e.step for e in run_steps])
            y = np.array([e.loss for e in run_steps], dtype=np.float64)
            line = dict(color=color, width=1.6)
            data.append(smoothed_line(x, y, smoothing, max_points, name=f"{name} loss", legendgroup=name, line=line))
        for key, (head, _) in ACC_SERIES.items():
            points = [(e.epoch, getattr(e, key)) for e in run_epochs if getattr(e, key) is not None]
            if not points:
                continue
            ex, ey = zip(*points)
            data.append(
                dict(
                    type="scatter", mode="lines+markers" if head == "main" else "lines", x=ex, y=ey, xaxis="x2", yaxis="y2",
                    name=f"{name} {head}", legendgroup=name, showlegend=head == "main",
                    line=dict(color=color, width=2 if head == "main" else 1, dash="solid" if head == "main" else "dot"),
                    hovertemplate=f"{name} {head}, epoch %{{x}}: %{{y:.1%}}<extra></extra>",
                )
            )  # fmt: skip
    layout = dict(
        template="none", paper_bgcolor="white", plot_bgcolor="#fafafa", height=400,
        title=dict(text="Runs compared: total loss per step (left), test accuracy per epoch (right; main solid, aux heads dotted)", x=0.5, font=dict(size=13)),
        xaxis=dict(domain=[0, 0.58], title="step", **_GRID), yaxis=dict(title="loss", type="log" if log_y else "linear", **_GRID),
        xaxis2=dict(domain=[0.68, 1], title="epoch", anchor="y2", dtick=max(1, -(-last // 8)), **_GRID),  # whole epochs
        yaxis2=dict(title="test accuracy", range=[0, 1], tickformat=".0%", anchor="x2", **_GRID),
        legend=dict(orientation="h", y=-0.22), margin=dict(l=60, r=12, t=40, b=40),
    )  # fmt: skip
    return go.Figure(data=data, layout=layout)


def _format(value: Any, percent: bool = False) -> str:
    if value is None:
        return _MISSING
    if percent:
        return f"{value:.2%}"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)
