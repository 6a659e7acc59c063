"""Plotly figures drawn from an :class:`~explain.explorer.Exploration`, never recomputing it.

Figures are built as plain dicts and validated once by ``go.Figure``: 36 heatmaps take about
10 ms this way where ``make_subplots`` + ``add_trace`` took 130 ms (2-core CPU). Maps travel at
their native resolution (28/14/7 at 224×224) and the browser smooths them (``zsmooth="best"``),
which keeps an atlas under 1 MB of JSON.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from PIL import Image
from torch import Tensor

from explain.attributions import Attribution
from explain.cams import branch_cams, positive
from explain.explorer import HEADS, Ablation, Exploration
from explain.microscope.examples import ExampleIndex
from explain.render.colormaps import COLORSCALES, DEFAULT_SIGNED, plotly_scale, signed_scale
from googlenet.spec import NetworkSpec

__all__ = [
    "MAP_KINDS",
    "COLORSCALES",
    "HEAD_TITLES",
    "atlas_figure",
    "heads_figure",
    "contributions_figure",
    "channels_figure",
    "attribution_figure",
    "ablation_figure",
    "map_range",
    "branch_map",
    "specialization_figure",
    "gallery_figure",
]

MAP_KINDS = {
    "cam": "Grad-CAM (positive evidence)",
    "signed": "Grad-CAM signed (for and against, in a diverging colour map: RdBu unless you pick another diverging one)",
    "activation": "mean activation",
    "gradcam++": "Grad-CAM++ (positive)",
    "xgradcam": "XGrad-CAM (positive)",
    "layercam": "LayerCAM (positive)",
    "hirescam": "HiResCAM (positive)",
}  # the last four: explain.cams, from the same pass
_DIVERGING = plotly_scale(DEFAULT_SIGNED)  # red for, blue against


def _scale(colorscale: str, signed: bool) -> str:
    """The plotly scale for a choice: a signed map honours a diverging choice, else RdBu (see
    :mod:`explain.render.colormaps`); names outside the app's list pass through for unsigned maps."""
    if colorscale in COLORSCALES:
        return plotly_scale(signed_scale(colorscale)) if signed else plotly_scale(colorscale)
    return _DIVERGING if signed else colorscale


HEAD_TITLES = {"main": "main head", "aux1": "aux1 (after 4a)", "aux2": "aux2 (after 4d)"}
_FONT = dict(family="Inter, system-ui, sans-serif", size=12)
_OUTLINE = "1px 1px 1px #111827, -1px -1px 1px #111827, 1px -1px 1px #111827, -1px 1px 1px #111827"


def branch_map(exploration: Exploration, branch: str, kind: str) -> Tensor:
    """The H×W map of ``branch`` an atlas shows for ``kind`` (see :data:`MAP_KINDS`)."""
    if kind == "cam":
        return exploration.cams[branch]
    if kind == "signed":
        return exploration.cams_signed[branch]
    if kind == "activation":
        return exploration.activations[branch].mean(0)
    if kind in MAP_KINDS:
        return positive(branch_cams(exploration, kind)[branch])
    raise ValueError(f"unknown map kind {kind!r}; expected one of {sorted(MAP_KINDS)}")


def map_range(explorations: Sequence[Exploration], kind: str = "cam") -> tuple[float, float]:
    """One colour range for all 36 maps of several explorations (e.g. to compare two models)."""
    low, high = 0.0, 0.0
    for exploration in explorations:
        for branch in exploration.branches:
            m = branch_map(exploration, branch, kind)
            low, high = min(low, float(m.min())), max(high, float(m.max()))
    if kind == "signed":
        bound = max(abs(low), abs(high)) or 1.0
        return -bound, bound
    return (0.0 if kind == "cam" else low), (high or 1.0)


def _jpeg_uri(picture: Image.Image) -> str:
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


class _Mosaic:
    """A rows×cols grid of square cells on ONE pair of axes, in thumbnail-pixel coordinates.

    One axis pair, one mosaic picture and one text trace instead of a subplot per cell: plotly
    validates each axis and annotation object, and 72 axes + 49 annotations cost about 80 ms per
    atlas where this costs about 10 ms.
    """

    def __init__(self, rows: int, cols: int, image: np.ndarray | None, max_side: int = 112, gap_ratio: float = 0.06):
        self.rows, self.cols = rows, cols
        self.side = min(max_side, image.shape[0]) if image is not None else max_side
        self.gap = max(2, round(self.side * gap_ratio))
        self.data: list[dict] = []
        self.texts: dict[str, list] = {"x": [], "y": [], "text": [], "size": [], "color": []}
        self.thumb = None
        if image is not None:
            thumb = Image.fromarray(image)
            if thumb.width > self.side:
                thumb = thumb.resize((self.side, self.side), Image.Resampling.BILINEAR)
            self.thumb = thumb

    def origin(self, index: int) -> tuple[float, float]:
        r, c = divmod(index, self.cols)
        return c * (self.side + self.gap), r * (self.side + self.gap)

    def picture(self, cells: Sequence[int]) -> None:
        """One image trace showing the picture under each of ``cells``."""
        if self.thumb is None:
            return
        width = self.cols * (self.side + self.gap) - self.gap
        height = self.rows * (self.side + self.gap) - self.gap
        mosaic = Image.new("RGB", (width, height), (255, 255, 255))
        for index in cells:
            x, y = self.origin(index)
            mosaic.paste(self.thumb, (int(x), int(y)))
        self.data.append(dict(type="image", source=_jpeg_uri(mosaic), x0=0, y0=0, dx=1, dy=1, hoverinfo="skip"))

    def heatmap(self, index: int, z: np.ndarray, hover: str, opacity: float, coloraxis: str = "coloraxis") -> None:
        x, y = self.origin(index)
        rows, cols = z.shape
        self.data.append(
            dict(
                type="heatmap", z=z, x0=x + self.side / (2 * cols), dx=self.side / cols,
                y0=y + self.side / (2 * rows), dy=self.side / rows, coloraxis=coloraxis, opacity=opacity,
                zsmooth="best", hovertemplate=hover + "<br>value %{z:.3g}<extra></extra>",
            )
        )  # fmt: skip

    def text(self, x: float, y: float, text: str, size: int = 11, color: str = "#111827") -> None:
        self.texts["x"].append(x)
        self.texts["y"].append(y)
        self.texts["text"].append(text)
        self.texts["size"].append(size)
        self.texts["color"].append(color)

    def corner_label(self, index: int, text: str) -> None:
        """White text with a dark outline in the cell's top-right corner, legible on any map."""
        x, y = self.origin(index)
        self.text(x + self.side * 0.82, y + self.side * 0.1, text, 10, "white")

    def figure(self, layout: dict, left: float = 0.0, top: float = 0.0) -> go.Figure:
        if self.texts["x"]:
            self.data.append(
                dict(
                    type="scatter", mode="text", x=self.texts["x"], y=self.texts["y"], text=self.texts["text"],
                    # a dark outline on every side: white corner numbers stay legible on pale cells
                    textfont=dict(size=self.texts["size"], color=self.texts["color"], shadow=_OUTLINE),
                    hoverinfo="skip", showlegend=False,
                )
            )  # fmt: skip
        width = self.cols * (self.side + self.gap) - self.gap
        height = self.rows * (self.side + self.gap) - self.gap
        axes = dict(
            template="none",
            xaxis=dict(range=[-left, width + 1], visible=False, fixedrange=True),
            yaxis=dict(range=[height + 1, -top], visible=False, fixedrange=True, scaleanchor="x"),
            paper_bgcolor="white", plot_bgcolor="white", font=_FONT, showlegend=False,
        )  # fmt: skip
        return go.Figure(data=self.data, layout={**axes, **layout})


def _percent(value: float) -> str:
    """``+12%``; values that round to zero print as ``0%``, never ``-0%``."""
    return "0%" if abs(value) < 0.005 else f"{value:+.0%}"


def _rounded(m: Tensor, scale: float) -> np.ndarray:
    """Values / scale to 3 decimals: plenty for a colour, and a third of the JSON of float64."""
    return np.round(m.numpy().astype(np.float64) / scale, 3)


def atlas_figure(
    exploration: Exploration,
    kind: str = "cam",
    colorscale: str = "Inferno",
    opacity: float = 0.6,
    value_range: tuple[float, float] | None = None,
    show_image: bool = True,
    highlight: str | None = None,
) -> go.Figure:
    """The 9×4 branch atlas: one map per Inception branch, over the picture.

    Args:
        kind: ``"cam"`` (Grad-CAM), ``"signed"`` (Grad-CAM without ReLU, diverging colours) or
            ``"activation"`` (mean over the branch's channels).
        colorscale: one of :data:`COLORSCALES` (a signed map uses the choice when it is diverging,
            else RdBu), or any plotly colour scale name for unsigned maps.
        opacity: of the maps over the picture (0 … 1).
        value_range: one colour range for every cell (see :func:`map_range`); default ``None``
            scales each cell to its own maximum, which shows where each branch looks but not how
            strongly (the hover gives the factor).
        highlight: a branch to outline (the one open in the drill-down).

    Each cell's corner shows the branch's share of its module's evidence for the target.
    """
    if kind not in MAP_KINDS:
        raise ValueError(f"unknown map kind {kind!r}; expected one of {sorted(MAP_KINDS)}")
    if not 0 <= opacity <= 1:
        raise ValueError(f"opacity must be in [0, 1], got {opacity}")
    signed = kind == "signed"
    spec = exploration.spec
    # Modules run left to right (depth), branches top to bottom: a wide grid that fits a screen.
    rows, cols = spec.branch_kinds, len(spec.modules)
    grid = _Mosaic(len(rows), cols, exploration.image if show_image else None)
    cell = {b.name: rows.index(b.branch) * cols + c for c, m in enumerate(spec.modules) for b in m.branches}
    grid.picture(cell.values())
    for branch in exploration.branches:
        m = branch_map(exploration, branch, kind)
        if value_range is None:
            peak = float(m.abs().max()) or 1.0
            z, factor = _rounded(m, peak), f" (relative; × {peak:.3g})"
        else:
            z, factor = _rounded(m, 1.0), ""
        share = exploration.shares[branch]
        hover = f"<b>{branch}</b> {exploration.kernels[branch]}<br>share of evidence {share:+.0%}{factor}"
        grid.heatmap(cell[branch], z, hover, opacity if show_image else 1.0)
        grid.corner_label(cell[branch], _percent(share))
    half = grid.side / 2
    for c, module in enumerate(spec.modules):
        grid.text(grid.origin(c)[0] + half, -grid.side * 0.14, f"<b>{module.short}</b>", 13)
    for r, kind_name in enumerate(rows):
        grid.text(-grid.side * 0.42, grid.origin(r * cols)[1] + half, f"<b>{kind_name}</b><br>{_row_kernels(spec, kind_name)}", 11)
    low, high = value_range if value_range is not None else ((-1.0 if signed else 0.0), 1.0)
    layout = dict(
        template="none",  # plotly's default template adds 6.5 KB of JSON to every figure
        coloraxis=dict(
            colorscale=_scale(colorscale, signed), cmin=low, cmax=high,
            colorbar=dict(thickness=10, len=0.8, title=dict(text="relative" if value_range is None else "value", side="right")),
        ),
        margin=dict(l=4, r=4, t=36, b=4), height=460,
        title=dict(text=f"{MAP_KINDS[kind]} for “{exploration.target_name}” (modules left to right; corner: share of the module's evidence)", x=0.5, font=dict(size=13)),
    )  # fmt: skip
    if highlight in cell:
        x, y = grid.origin(cell[highlight])
        layout["shapes"] = [
            dict(type="rect", x0=x - 1, y0=y - 1, x1=x + grid.side + 1, y1=y + grid.side + 1, line=dict(color="#22c55e", width=3))
        ]
    return grid.figure(layout, left=grid.side * 0.85, top=grid.side * 0.3)


def _row_kernels(spec, branch: str) -> str:
    """What a row of branches computes, e.g. ``"1×1→3×3"``; ``"1×1→3×3 | 5×5"`` if modules differ."""
    kernels = dict.fromkeys(b.kernel for m in spec.modules for b in m.branches if b.branch == branch)
    return " | ".join(kernels)


def heads_figure(exploration: Exploration, bar_color: str = "#6366f1", target_color: str = "#f97316") -> go.Figure:
    """Top-k of the main head and of both aux heads, side by side; the target class in orange."""
    return _heads(exploration.predictions, exploration.target, bar_color, target_color, exploration.notes)


def _heads(predictions: dict, target: int | None, bar_color: str, target_color: str, notes=()) -> go.Figure:
    heads = [h for h in HEADS if h in predictions]
    data, layout = [], {}
    gap = 0.08
    width = (1 - gap * (len(heads) - 1)) / len(heads)
    annotations = []
    for i, head in enumerate(heads):
        suffix = "" if i == 0 else str(i + 1)
        preds = list(reversed(predictions[head]))
        labels = [p.label for p in preds]
        data.append(
            dict(
                type="bar", orientation="h", x=[round(p.probability, 4) for p in preds], y=labels,
                marker=dict(color=[target_color if p.index == target else bar_color for p in preds]),
                xaxis=f"x{suffix}", yaxis=f"y{suffix}", text=[f"{p.probability:.1%}" for p in preds],
                textposition="auto", hovertemplate="%{y}: %{x:.2%}<extra>" + head + "</extra>", showlegend=False,
            )
        )  # fmt: skip
        x0 = i * (width + gap)
        layout[f"xaxis{suffix}"] = dict(
            domain=[x0, x0 + width],
            range=[0, 1],
            tickformat=".0%",
            anchor=f"y{suffix}",
            fixedrange=True,
            showgrid=True,
            gridcolor="#e5e7eb",
        )
        layout[f"yaxis{suffix}"] = dict(anchor=f"x{suffix}", automargin=True, fixedrange=True)
        annotations.append(
            dict(
                text=f"<b>{HEAD_TITLES[head]}</b>", x=x0 + width / 2, y=1.02, xref="paper", yref="paper", yanchor="bottom", showarrow=False
            )
        )
    title = dict(text="Top predictions of the main head and of the two auxiliary classifiers", x=0.5, y=0.99, font=dict(size=13))
    layout.update(
        template="none",
        title=title,
        annotations=annotations,
        height=280,
        margin=dict(l=8, r=8, t=60, b=28),
        font=_FONT,
        bargap=0.25,
        paper_bgcolor="white",
        plot_bgcolor="white",
    )
    return go.Figure(data=data, layout=layout)


def contributions_figure(exploration: Exploration) -> go.Figure:
    """Each branch's share of its module's evidence for the target (Σ grad ⊙ activation).

    Laid out like the atlas: modules left to right, branches top to bottom.
    """
    spec = exploration.spec
    rows = spec.branch_kinds
    names = [[f"{m.name}.{b}" for m in spec.modules] for b in rows]
    z = [[round(exploration.shares[n], 3) if n in exploration.shares else None for n in row] for row in names]
    raw = [[exploration.contributions.get(n, np.nan) for n in row] for row in names]
    y = [f"{b} {_row_kernels(spec, b)}" for b in rows]
    trace = dict(
        type="heatmap", z=z, x=[m.short for m in spec.modules], y=y, customdata=np.round(np.array(raw, dtype=np.float64), 4),
        colorscale=_DIVERGING, zmid=0, zmin=-1, zmax=1, text=[["" if v is None else _percent(v) for v in row] for row in z], texttemplate="%{text}", textfont=dict(size=11),
        hovertemplate="inception%{x} %{y}<br>share %{z:+.1%}<br>Σ grad×act %{customdata:.3g}<extra></extra>",
        colorbar=dict(thickness=10, tickformat=".0%"),
    )  # fmt: skip
    layout = dict(
        template="none",  # plotly's default template adds 6.5 KB of JSON to every figure
        title=dict(text=f"Share of each module's evidence for “{exploration.target_name}” per branch (Σ grad × activation)", x=0.5, font=dict(size=13)),
        # automargin: the row labels ("branch2 1×1→3×3") get the room they need instead of a clipped "–"
        yaxis=dict(autorange="reversed", fixedrange=True, automargin=True, ticksuffix=" "), xaxis=dict(side="top", fixedrange=True),
        height=300, margin=dict(l=8, r=8, t=70, b=8), font=_FONT, paper_bgcolor="white",
    )  # fmt: skip
    return go.Figure(data=[trace], layout=layout)


def top_channels(exploration: Exploration, branch: str, n: int = 16) -> tuple[Tensor, Tensor, list[int]]:
    """``branch``'s activations (C×H×W), each channel's mean, and its ``n`` most active channels."""
    if branch not in exploration.cams:
        raise ValueError(f"unknown branch {branch!r}; expected e.g. 'inception4c.branch3'")
    act = exploration.activations[branch]
    means = act.mean(dim=(1, 2))
    return act, means, means.argsort(descending=True)[: max(1, min(n, act.shape[0]))].tolist()


def channels_figure(exploration: Exploration, branch: str, n: int = 16, colorscale: str = "Inferno", opacity: float = 0.0) -> go.Figure:
    """The ``n`` channels of ``branch`` with the highest mean activation, each on its own scale."""
    act, means, order = top_channels(exploration, branch, n)
    n = len(order)
    cols = int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    grid = _Mosaic(rows, cols, exploration.image if opacity > 0 else None, max_side=96)
    grid.picture(range(n))
    for i, channel in enumerate(order):
        m = act[channel]
        peak = float(m.max()) or 1.0
        hover = f"<b>{branch}</b> channel {channel}<br>mean {float(means[channel]):.3g}, max {peak:.3g}"
        grid.heatmap(i, _rounded(m, peak), hover, opacity if opacity > 0 else 1.0)
        x, y = grid.origin(i)
        grid.text(x + grid.side * 0.2, y + grid.side * 0.1, f"ch {channel}", 10, "white")
    layout = dict(
        template="none",  # plotly's default template adds 6.5 KB of JSON to every figure
        coloraxis=dict(colorscale=_scale(colorscale, False), cmin=0, cmax=1, showscale=False),
        title=dict(text=f"{branch} ({exploration.kernels[branch]}): top {n} of {act.shape[0]} channels, {act.shape[1]}×{act.shape[2]}", x=0.5, font=dict(size=13)),
        height=110 * rows + 50, margin=dict(l=4, r=4, t=36, b=4),
    )  # fmt: skip
    return grid.figure(layout)


def attribution_figure(attribution: Attribution, image: np.ndarray, colorscale: str = "Inferno", opacity: float = 0.6) -> go.Figure:
    """The picture and the attribution over it; signed methods use diverging colours around 0."""
    size = image.shape[0]
    m = attribution.map
    if m.shape[-1] != size:
        raise ValueError(f"attribution map {tuple(m.shape)} does not match the {size}×{size} picture")
    step = max(1, size // 112)  # 112×112 is plenty on screen and a quarter of the JSON
    small = m[::step, ::step]
    signed = attribution.method.signed
    peak = float(small.abs().max()) or 1.0
    if signed:  # clip at the 99th percentile so a few extreme pixels do not wash out the rest
        peak = float(np.quantile(small.abs().numpy(), 0.99)) or peak
    grid = _Mosaic(1, 2, image, max_side=224, gap_ratio=0.04)
    grid.picture([0, 1])
    grid.heatmap(1, np.clip(_rounded(small, peak), -1, 1), attribution.method.label, opacity)
    extra = " + SmoothGrad" if attribution.noise_tunnel else ""
    layout = dict(
        template="none",  # plotly's default template adds 6.5 KB of JSON to every figure
        coloraxis=dict(colorscale=_scale(colorscale, signed), cmin=-1 if signed else 0, cmax=1, colorbar=dict(thickness=10, title=dict(text="relative", side="right"))),
        title=dict(text=f"{attribution.method.label}{extra} for “{attribution.target_name}” ({attribution.seconds:.1f} s)", x=0.5, font=dict(size=13)),
        height=340, margin=dict(l=4, r=4, t=40, b=4),
    )  # fmt: skip
    return grid.figure(layout)


def ablation_figure(ablation: Ablation) -> go.Figure:
    """Change of the target's probability in each head when branches are knocked out.

    Each bar group is labelled with what was knocked out (``Knockout.label``: whole modules by
    name, e.g. "inception4c.branch2 + inception4e"), wrapped at the "+" so it fits under its bars.
    """
    labels = [k.label.replace(" + ", " +<br>") for k in ablation.knockouts]
    colors = {"main": "#6366f1", "aux1": "#14b8a6", "aux2": "#f59e0b"}
    data = [
        dict(
            type="bar", name=HEAD_TITLES[head], x=labels, y=[round(k.delta[head], 4) for k in ablation.knockouts],
            customdata=[[k.label, k.target_probability[head]] for k in ablation.knockouts],
            marker=dict(color=colors[head]),
            hovertemplate="%{customdata[0]}<br>p = %{customdata[1]:.1%} (Δ %{y:+.1%})<extra>" + head + "</extra>",
        )
        for head in HEADS if head in ablation.baseline_probability
    ]  # fmt: skip
    baseline = ", ".join(f"{h} {p:.1%}" for h, p in ablation.baseline_probability.items())
    largest = max((abs(k.delta[h]) for k in ablation.knockouts for h in k.delta), default=0.0)
    ticks = "+.1%" if largest < 0.1 else "+.0%"  # "+2%, +2%, +1%" for a 2.5 % range otherwise
    layout = dict(
        template="none",  # plotly's default template adds 6.5 KB of JSON to every figure
        barmode="group",
        # automargin on both axes: tick labels ("+10%", long knock-out names) get room instead of being clipped
        yaxis=dict(tickformat=ticks, title=dict(text="Δ probability", standoff=6), automargin=True, zeroline=True, zerolinecolor="#6b7280", showgrid=True, gridcolor="#e5e7eb"),
        xaxis=dict(automargin=True, tickangle=0), height=340,
        title=dict(text=f"Knock-out: change of p(“{ablation.target_name}”) per head (before: {baseline})", x=0.5, font=dict(size=13)),
        margin=dict(l=8, r=8, t=64, b=8), font=_FONT, legend=dict(orientation="h", x=0.5, xanchor="center", y=1.0, yanchor="bottom"), paper_bgcolor="white",
    )  # fmt: skip
    return go.Figure(data=data, layout=layout)


def specialization_figure(index: ExampleIndex, spec: NetworkSpec, over: str = "the reference set") -> go.Figure:
    """Per module (columns) and branch (rows): mean class selectivity and share of output energy;
    ``over`` names the pictures (the run's own test split, or the CIFAR-10 test batch)."""
    rows = spec.branch_kinds
    names = [[f"{m.name}.{b}" for m in spec.modules] for b in rows]
    selectivity = [[float(index.selectivity(n).mean()) if n in index.slices else None for n in row] for row in names]
    energy = [[index.energy.get(n) for n in row] for row in names]
    x = [m.short for m in spec.modules]
    data = [
        dict(type="heatmap", z=np.round(selectivity, 3), x=x, y=list(rows), colorscale="Viridis", zmin=0, zmax=1, texttemplate="%{z:.2f}",
             colorbar=dict(x=0.455, thickness=8, len=0.9), hovertemplate="inception%{x} %{y}<br>mean selectivity %{z:.3f}<extra></extra>"),
        dict(type="heatmap", z=np.round(energy, 3), x=x, y=list(rows), xaxis="x2", yaxis="y2", colorscale="Blues", zmin=0, zmax=1,
             texttemplate="%{z:.0%}", colorbar=dict(x=1.0, thickness=8, len=0.9), hovertemplate="inception%{x} %{y}<br>share of output energy %{z:.1%}<extra></extra>"),
    ]  # fmt: skip
    layout = dict(
        template="none",  # plotly's default template adds 6.5 KB of JSON to every figure
        xaxis=dict(domain=[0.07, 0.43]), yaxis=dict(autorange="reversed"),
        xaxis2=dict(domain=[0.58, 0.975], anchor="y2"), yaxis2=dict(autorange="reversed", anchor="x2", showticklabels=False),
        annotations=[
            dict(text="<b>class selectivity</b> (mean)", x=0.25, y=1.02, xref="paper", yref="paper", yanchor="bottom", showarrow=False),
            dict(text="<b>share of output energy</b> Σ A²", x=0.78, y=1.02, xref="paper", yref="paper", yanchor="bottom", showarrow=False),
        ],
        title=dict(text=f"Branch specialization over {over} (classes from {index.labels_from})", x=0.5, y=0.98, font=dict(size=13)),
        height=300, margin=dict(l=70, r=30, t=70, b=30), paper_bgcolor="white",
    )  # fmt: skip
    return go.Figure(data=data, layout=layout)


def gallery_figure(rows: list[tuple[str, list[np.ndarray]]], tile: int = 64, captions: list[list[str]] | None = None) -> go.Figure:
    """A grid of pictures: one row per (title, images), e.g. a channel's visualization and its
    examples; ``captions`` (one list per row) go under the pictures, e.g. one row of channels."""
    cols = max(len(images) for _, images in rows) if rows else 1
    gap = 4
    pitch = tile + gap + (16 if captions else 0)
    sheet = Image.new("RGB", (cols * (tile + gap), len(rows) * pitch), (255, 255, 255))
    for r, (_, images) in enumerate(rows):
        for c, image in enumerate(images):
            sheet.paste(
                Image.fromarray(image).resize(
                    (tile, tile), Image.Resampling.NEAREST if image.shape[0] < tile else Image.Resampling.BILINEAR
                ),
                (c * (tile + gap), r * pitch),
            )
    titled = any(title for title, _ in rows)
    xs, ys, labels, positions = [], [], [], []
    for r, (title, _) in enumerate(rows):
        if title:
            xs, ys, labels, positions = [*xs, -4], [*ys, r * pitch + tile / 2], [*labels, title], [*positions, "middle left"]
    for r, row in enumerate(captions or []):
        for c, text in enumerate(row):
            xs, ys, labels, positions = (
                [*xs, c * (tile + gap) + tile / 2],
                [*ys, r * pitch + tile + 8],
                [*labels, text],
                [*positions, "middle center"],
            )
    data = [
        dict(type="image", source=_jpeg_uri(sheet), x0=0, y0=0, dx=1, dy=1, hoverinfo="skip"),
        dict(type="scatter", mode="text", x=xs, y=ys, text=labels, textposition=positions, hoverinfo="skip"),
    ]
    left = 150 if titled else 4  # room for the row titles, only when there are some
    layout = dict(
        template="none",  # plotly's default template adds 6.5 KB of JSON to every figure
        xaxis=dict(visible=False, range=[-left, sheet.width], fixedrange=True), yaxis=dict(visible=False, range=[sheet.height, -4], scaleanchor="x", fixedrange=True),
        height=min(900, 40 + len(rows) * pitch * 1.3), margin=dict(l=4, r=4, t=30, b=4), paper_bgcolor="white", plot_bgcolor="white", showlegend=False,
    )  # fmt: skip
    return go.Figure(data=data, layout=layout)
