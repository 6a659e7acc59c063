"""Per-class results of a training run's evaluation: accuracy per class, the confusion matrix, and
the class pairs confused most (the Train tab draws them after every epoch).

Everything is computed from the confusion matrix (rows: true class, columns: predicted; the
trainer's ``EpochEvent.confusion``), so the bars, the cells and the pairs always agree and sum to
the test images counted. Up to :data:`FULL_CLASSES` classes every class is shown; above it the
figures show a readable selection and say which: the lowest accuracies, and the classes of the
most frequent confusions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import plotly.graph_objects as go

__all__ = ["FULL_CLASSES", "Confusion", "most_confused", "per_class_figure", "confusion_figure", "confused_pairs_text"]

FULL_CLASSES = 20  # up to this many classes the figures show all of them
_GRID = dict(showgrid=True, gridcolor="#e5e7eb", zeroline=False, showline=True, linecolor="#9ca3af")


class Confusion(NamedTuple):
    """One off-diagonal cell: ``count`` test images of ``true`` predicted as ``predicted``;
    ``share``: that count over the images of ``true``."""

    true: str
    predicted: str
    count: int
    share: float


def _matrix(confusion: Sequence[Sequence[int]], classes: Sequence[str]) -> np.ndarray:
    matrix = np.asarray(confusion, dtype=np.int64)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1] or matrix.shape[0] != len(classes):
        raise ValueError(f"expected a {len(classes)}×{len(classes)} confusion matrix, got shape {matrix.shape}")
    return matrix


def most_confused(confusion: Sequence[Sequence[int]], classes: Sequence[str], k: int = 5) -> list[Confusion]:
    """The ``k`` largest off-diagonal cells, largest first (cells of 0 are left out)."""
    matrix = _matrix(confusion, classes)
    off = matrix.copy()
    np.fill_diagonal(off, 0)
    totals = matrix.sum(1)
    order = np.argsort(-off, axis=None, kind="stable")[:k]
    n = len(classes)
    pairs = []
    for flat in order.tolist():
        i, j = divmod(flat, n)
        if off[i, j] > 0:
            pairs.append(Confusion(classes[i], classes[j], int(off[i, j]), float(off[i, j] / max(totals[i], 1))))
    return pairs


def _empty(text: str, height: int) -> go.Figure:
    return go.Figure(
        layout=dict(
            template="none", height=height, paper_bgcolor="white", plot_bgcolor="white",
            xaxis=dict(visible=False), yaxis=dict(visible=False), margin=dict(l=10, r=10, t=10, b=10),
            annotations=[dict(text=text, xref="paper", yref="paper", x=0.5, y=0.5, showarrow=False, font=dict(size=13, color="#6b7280"))],
        )
    )  # fmt: skip


def per_class_figure(confusion: Sequence[Sequence[int]] | None, classes: Sequence[str], epoch: int | None = None) -> go.Figure:
    """The main head's test accuracy per class, as horizontal bars (class names readable at any
    length). Up to :data:`FULL_CLASSES` classes all in class order; above, the lowest
    :data:`FULL_CLASSES`, lowest first. Each bar's ``customdata`` is (correct, images)."""
    if confusion is None or not classes:
        return _empty("Accuracy per class appears after the first epoch.", 160)
    matrix = _matrix(confusion, classes)
    totals, correct = matrix.sum(1), np.diagonal(matrix)
    accuracy = np.where(totals > 0, correct / np.maximum(totals, 1), np.nan)
    index = np.arange(len(classes))
    title = f"Test accuracy per class (main head{f', epoch {epoch}' if epoch else ''})"
    if len(classes) > FULL_CLASSES:
        index = np.argsort(np.nan_to_num(accuracy, nan=2.0), kind="stable")[:FULL_CLASSES]
        title = f"The {FULL_CLASSES} lowest of {len(classes)} classes (main head{f', epoch {epoch}' if epoch else ''})"
    overall = correct.sum() / max(totals.sum(), 1)
    names = [classes[i] for i in index]
    bar = dict(
        type="bar", orientation="h", x=np.round(np.nan_to_num(accuracy[index]), 4).tolist(), y=names,
        customdata=np.stack([correct[index], totals[index]], axis=1).tolist(),
        marker=dict(color=[_accuracy_color(a) for a in accuracy[index]]),
        text=[f"{a:.0%}" if np.isfinite(a) else "no images" for a in accuracy[index]], textposition="outside", cliponaxis=False,
        hovertemplate="%{y}: %{customdata[0]} of %{customdata[1]} correct (%{x:.1%})<extra></extra>", showlegend=False,
    )  # fmt: skip
    height = max(260, 60 + 22 * len(index))
    layout = dict(
        template="none", title=dict(text=title, x=0, xanchor="left", font=dict(size=13)), height=height,
        xaxis=dict(range=[0, 1.12], tickformat=".0%", title="test accuracy", **_GRID),
        yaxis=dict(autorange="reversed", automargin=True, tickfont=dict(size=11), type="category"),
        margin=dict(l=10, r=16, t=36, b=44), paper_bgcolor="white", plot_bgcolor="#fafafa",
        shapes=[dict(type="line", x0=overall, x1=overall, yref="paper", y0=0, y1=1, line=dict(color="#6366f1", dash="dot", width=1))],
        annotations=[dict(x=overall, y=1, yref="paper", yanchor="bottom", text=f"all {overall:.0%}", showarrow=False,
                          font=dict(size=10, color="#6366f1"))],
    )  # fmt: skip
    return go.Figure(data=[bar], layout=layout)


def _accuracy_color(value: float) -> str:
    if not np.isfinite(value):
        return "#d1d5db"
    return "#ef4444" if value < 0.4 else "#f59e0b" if value < 0.7 else "#10b981"


def confusion_figure(confusion: Sequence[Sequence[int]] | None, classes: Sequence[str], epoch: int | None = None) -> go.Figure:
    """The confusion matrix as a heatmap (rows: true class, columns: predicted), counts in the
    cells. Up to :data:`FULL_CLASSES` classes the whole matrix; above, the rows and columns of the
    classes in the most frequent confusions (at most :data:`FULL_CLASSES`), with the title saying so.
    The colour is the share of the row's images (so rare and frequent classes compare), the cell
    text and hover the counts."""
    if confusion is None or not classes:
        return _empty("The confusion matrix appears after the first epoch.", 160)
    matrix = _matrix(confusion, classes)
    index = np.arange(len(classes))
    title = f"Confusion matrix (main head{f', epoch {epoch}' if epoch else ''}; {int(matrix.sum()):,} test images)"
    if len(classes) > FULL_CLASSES:
        picked: list[int] = []
        lookup = {name: i for i, name in enumerate(classes)}
        for pair in most_confused(matrix, classes, k=len(classes) * len(classes)):
            for name in (pair.true, pair.predicted):
                if lookup[name] not in picked and len(picked) < FULL_CLASSES:
                    picked.append(lookup[name])
            if len(picked) >= FULL_CLASSES:
                break
        index = np.asarray(sorted(picked) or list(range(min(FULL_CLASSES, len(classes)))))
        title = f"Confusion among the {len(index)} most confused of {len(classes)} classes (main head{f', epoch {epoch}' if epoch else ''})"
    sub = matrix[np.ix_(index, index)]
    totals = matrix.sum(1)[index]
    share = sub / np.maximum(totals, 1)[:, None]
    names = [classes[i] for i in index]
    n = len(index)
    heat = dict(
        type="heatmap", z=np.round(share, 4).tolist(), x=names, y=names, customdata=sub.tolist(),
        text=sub.tolist(), texttemplate="%{text}" if n <= FULL_CLASSES else None, textfont=dict(size=10 if n <= 12 else 8),
        colorscale="Blues", zmin=0, zmax=1, colorbar=dict(title=dict(text="share of row", side="right"), tickformat=".0%", thickness=12),
        hovertemplate="true %{y}, predicted %{x}: %{customdata} images (%{z:.1%} of the row)<extra></extra>", xgap=1, ygap=1,
    )  # fmt: skip
    size = min(620, max(360, 90 + 30 * n))
    layout = dict(
        template="none", title=dict(text=title, x=0, xanchor="left", font=dict(size=13)), height=size,
        xaxis=dict(title="predicted", tickangle=-45, automargin=True, type="category", tickfont=dict(size=11), side="bottom"),
        yaxis=dict(title="true class", autorange="reversed", automargin=True, type="category", tickfont=dict(size=11)),
        margin=dict(l=10, r=10, t=36, b=10), paper_bgcolor="white", plot_bgcolor="white",
    )  # fmt: skip
    return go.Figure(data=[heat], layout=layout)


def confused_pairs_text(confusion: Sequence[Sequence[int]] | None, classes: Sequence[str], k: int = 5) -> str:
    """Markdown: the class pairs confused most, with counts and the share of the true class."""
    if confusion is None or not classes:
        return "The class pairs the model confuses most appear after the first epoch."
    pairs = most_confused(confusion, classes, k)
    if not pairs:
        return "**Most confused:** no test image was misclassified."
    lines = ["**Most confused** (true → predicted: images, share of the true class)", ""]
    lines += [f"{i}. {p.true} → {p.predicted}: {p.count:,} ({p.share:.0%})" for i, p in enumerate(pairs, 1)]
    return "\n".join(lines)
