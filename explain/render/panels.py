"""HTML panels drawn from an :class:`~explain.explorer.Exploration`: the branch atlas, one branch's
channels, the heads' top-k, the contributions grid and an input attribution.

Why HTML and not plotly for these: an atlas as a plotly figure was a 370 KB JSON heatmap mosaic
that took the browser 0.8–1.9 s to ship and draw on a 2-core CPU, while the server had it in
18 ms. Here every map travels as an 8-bit grayscale PNG at its native resolution (a few hundred
bytes), the browser scales it up smoothly and colours it with an SVG filter (one per colour map:
``feComponentTransfer`` tables sampled from plotly's scales), and CSS lays it over the picture.
So the colour map and the opacity are CSS variables the page changes without a request, and a new
exploration ships about 40 KB. Every text is a real DOM node (never clipped, selectable), and a
cell's tooltip names the branch, its kernel and its share.

The page needs :data:`PANEL_CSS` and :func:`colormap_defs` once (the app puts them in its shell);
``standalone=True`` embeds both in a panel, e.g. for a notebook's ``IPython.display.HTML``.
"""

from __future__ import annotations

import base64
import hashlib
import html
import io

import numpy as np
from PIL import Image
from torch import Tensor

from explain.attributions import Attribution
from explain.explorer import HEADS, Exploration, Prediction
from explain.knockouts import MeasuredKnockouts, points
from explain.render.colormaps import COLORSCALES, sample, signed_scale
from explain.render.figures import HEAD_TITLES, MAP_KINDS, branch_map, map_range, top_channels

__all__ = [
    "PANEL_CSS",
    "MAP_KINDS",
    "colormap_defs",
    "filter_id",
    "atlas_html",
    "channels_html",
    "heads_html",
    "contributions_html",
    "attribution_html",
    "note_html",
    "map_range",
]


PANEL_CSS = """
:root { --gx-opacity: 0.6; --gx-seq: url(#gx-Inferno); --gx-div: url(#gx-RdBu); }
.gx-panel { font: 13px/1.35 Inter, system-ui, sans-serif; color: #111827; background: #fff; padding: 6px 4px; }
.gx-title { text-align: center; font-weight: 600; margin: 0 0 6px; }
.gx-grid { display: grid; gap: 4px; align-items: center; }
.gx-col { text-align: center; font-weight: 700; }
.gx-row { text-align: right; padding-right: 4px; font-size: 12px; line-height: 1.2; }
.gx-cell { position: relative; aspect-ratio: 1; background: #e5e7eb center / 100% 100% no-repeat var(--gx-photo); overflow: hidden; }
.gx-pixelated .gx-cell { image-rendering: pixelated; }
.gx-cell img.gx-map { position: absolute; inset: 0; width: 100%; height: 100%; image-rendering: auto;
  opacity: var(--gx-opacity); filter: var(--gx-seq); }
.gx-solid .gx-cell img.gx-map { opacity: 1; }
.gx-signed .gx-cell img.gx-map, .gx-signed .gx-scale { filter: var(--gx-div); }
.gx-cell.gx-open { outline: 3px solid #22c55e; outline-offset: 1px; }
.gx-tag { position: absolute; top: 2px; right: 2px; padding: 0 3px; border-radius: 3px; font-size: 11px; font-weight: 600;
  color: #fff; background: rgba(17, 24, 39, 0.72); }
.gx-tag.gx-left { right: auto; left: 2px; }
.gx-atlas { container-type: inline-size; }
@container (max-width: 640px) { .gx-tag { font-size: 9px; padding: 0 2px; top: 1px; right: 1px; } }
.gx-legend { display: flex; align-items: center; gap: 6px; justify-content: center; margin: 6px 0 8px; font-size: 12px; color: #374151; }
.gx-scalewrap { position: relative; display: inline-block; }
.gx-mid { position: absolute; left: 50%; top: 11px; transform: translateX(-50%); font-size: 10px; }
.gx-scale { display: block; width: 180px; height: 10px; background: linear-gradient(to right, #000, #fff); filter: var(--gx-seq); border: 1px solid #d1d5db; }
.gx-heads-grid { display: grid; grid-template-columns: repeat(3, minmax(0, 1fr)); gap: 16px; }
.gx-head-title { text-align: center; font-weight: 700; margin-bottom: 4px; }
.gx-head { display: grid; grid-template-columns: max-content minmax(24px, 1fr) max-content; column-gap: 6px; align-content: start; }
.gx-head-title { grid-column: 1 / -1; }
.gx-bar-row { display: contents; }
.gx-bar-row > span { margin: 2px 0; align-self: center; }
.gx-bar-row .gx-label { text-align: right; max-width: 11em; overflow-wrap: anywhere; }
.gx-track { height: 14px; background: #f3f4f6; border-radius: 2px; }
.gx-fill { display: block; height: 100%; background: #6366f1; border-radius: 2px; }
.gx-bar-row.gx-target .gx-fill { background: #f97316; }
.gx-bar-row.gx-target .gx-label { font-weight: 700; }
.gx-pct { font-variant-numeric: tabular-nums; text-align: right; }
table.gx-table { border-collapse: separate; border-spacing: 3px; margin: 0 auto; border: none; }
table.gx-table th, table.gx-table td { border: none; background: none; }
table.gx-table th { font-weight: 700; padding: 2px 6px; }
table.gx-table th.gx-rowhead { text-align: right; font-weight: 600; white-space: nowrap; }
table.gx-table td[style] { border: none; }
table.gx-table td { min-width: 3.6em; text-align: center; padding: 6px 4px; font-variant-numeric: tabular-nums; border-radius: 2px; }
.gx-pair { display: grid; grid-template-columns: repeat(2, minmax(0, 240px)); gap: 12px; justify-content: center; }
.gx-caption { text-align: center; font-size: 12px; color: #374151; }
.gx-note { padding: 10px 12px; color: #374151; background: #f9fafb; border: 1px dashed #d1d5db; border-radius: 6px; }
"""


def filter_id(name: str, signed: bool = False) -> str:
    """The SVG filter that colours a grayscale map with colour map ``name`` (signed: its diverging
    partner, see :func:`explain.render.colormaps.signed_scale`)."""
    return f"gx-{signed_scale(name) if signed else name}"


def colormap_defs() -> str:
    """One hidden SVG holding a colouring filter per colour map; maps refer to them by id."""
    filters = []
    for name in COLORSCALES:
        colours = np.array(sample(name), dtype=np.float64) / 255
        funcs = "".join(
            f'<feFunc{channel} type="table" tableValues="{" ".join(f"{v:.3f}" for v in colours[:, i])}"/>'
            for i, channel in enumerate("RGB")
        )
        filters.append(
            f'<filter id="gx-{name}" color-interpolation-filters="sRGB"><feComponentTransfer>{funcs}</feComponentTransfer></filter>'
        )
    return (
        '<svg class="gx-defs" width="0" height="0" aria-hidden="true" style="position:absolute;width:0;height:0;overflow:hidden">'
        + "".join(filters)
        + "</svg>"
    )


def _view_style(colorscale: str | None, opacity: float | None) -> str:
    """Inline colour map and opacity; ``None`` leaves them to the page (the app sets them on
    ``:root`` from its controls, so every panel, old or new, follows the controls)."""
    style = ""
    if opacity is not None:
        if not 0 <= opacity <= 1:
            raise ValueError(f"opacity must be in [0, 1], got {opacity}")
        style += f"--gx-opacity:{opacity:g};"
    if colorscale is not None:
        style += f"--gx-seq:url(#{filter_id(colorscale)});--gx-div:url(#{filter_id(colorscale, True)});"
    return style


def _png(gray: np.ndarray) -> str:
    """A 2-D array of values in [0, 1] as a grayscale PNG data URI."""
    buffer = io.BytesIO()
    Image.fromarray(np.round(np.clip(gray, 0, 1) * 255).astype(np.uint8), mode="L").save(buffer, format="PNG", optimize=False)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _photo(image: np.ndarray, side: int = 112) -> str:
    """The picture as a data URI: PNG when small (32×32 stays crisp), else a JPEG of ``side`` px."""
    picture = Image.fromarray(image)
    buffer = io.BytesIO()
    if picture.width <= 64:
        picture.save(buffer, format="PNG")
        return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    if picture.width > side:
        picture = picture.resize((side, side), Image.Resampling.BILINEAR)
    picture.save(buffer, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


def _signature(*parts) -> str:
    return hashlib.sha1(repr(parts).encode()).hexdigest()[:12]


def _percent(value: float) -> str:
    """``+12%``; values that round to zero print as ``0%``, never ``-0%``."""
    return "0%" if abs(value) < 0.005 else f"{value:+.0%}"


def _normalised(m: Tensor, kind: str, value_range: tuple[float, float] | None) -> tuple[np.ndarray, float]:
    """The map in [0, 1] for its PNG (signed: 0.5 is zero) and the factor it was divided by."""
    values = m.float().numpy().astype(np.float64)
    if value_range is None:
        peak = float(np.abs(values).max()) or 1.0
        low, high = (-peak, peak) if kind == "signed" else (0.0, peak)
    else:
        low, high = value_range
        peak = max(abs(low), abs(high)) or 1.0
    span = (high - low) or 1.0
    return (values - low) / span, peak


def _legend(kind_signed: bool, low: str, high: str) -> str:
    left, right = ("against", "for") if kind_signed else (low, high)
    middle = '<span class="gx-mid">0</span>' if kind_signed else ""
    return f'<div class="gx-legend"><span>{left}</span><span class="gx-scalewrap"><span class="gx-scale"></span>{middle}</span><span>{right}</span></div>'


def atlas_html(
    exploration: Exploration,
    kind: str = "cam",
    colorscale: str | None = "Inferno",
    opacity: float | None = 0.6,
    value_range: tuple[float, float] | None = None,
    highlight: str | None = None,
    title: str | None = None,
    standalone: bool = False,
    measured: MeasuredKnockouts | None = None,
    agreement: str | None = None,
) -> str:
    """The branch atlas: modules left to right, branches top to bottom, one map per branch over the
    picture; each corner shows the branch's share of its module's evidence for the target.

    Args:
        kind: ``"cam"`` (Grad-CAM), ``"signed"`` (Grad-CAM without ReLU, diverging colours) or
            ``"activation"`` (mean over the branch's channels).
        colorscale: one of :data:`explain.render.colormaps.COLORSCALES`; a signed map uses its diverging
            partner (:func:`explain.render.colormaps.signed_scale`). ``None``: the page's (``--gx-seq``).
        opacity: of the maps over the picture (0 … 1); ``None``: the page's (``--gx-opacity``).
        value_range: one colour range for every cell (see :func:`map_range`); default ``None``
            scales each cell to its own peak, which shows where each branch looks but not how
            strongly (the tooltip gives the peak).
        highlight: a branch to outline (the one open in the drill-down).
        measured: knock-outs measured for this exploration (:mod:`explain.knockouts`): the corners
            then show the measured change of p(class) when the branch is zeroed; without them,
            the first-order estimate (share of the module's evidence), and the title says which.
        agreement: a line printed under the maps (e.g. :func:`explain.knockouts.agreement_text`).
    """
    if kind not in MAP_KINDS:
        raise ValueError(f"unknown map kind {kind!r}; expected one of {sorted(MAP_KINDS)}")
    spec = exploration.spec
    signed = kind == "signed"
    if measured is not None and measured.key != exploration.key:
        raise ValueError("these knock-outs were measured for another image, model or class")
    cells = []
    for row in spec.branch_kinds:
        kernels = " | ".join(dict.fromkeys(b.kernel for m in spec.modules for b in m.branches if b.branch == row))
        cells.append(f'<div class="gx-row"><b>{row}</b><br>{html.escape(kernels)}</div>')
        for module in spec.modules:
            branch = next((b for b in module.branches if b.branch == row), None)
            if branch is None:
                cells.append("<div></div>")
                continue
            name = branch.name
            gray, peak = _normalised(branch_map(exploration, name, kind), kind, value_range)
            share = exploration.shares[name]
            scale_note = f"relative; peak {peak:.3g}" if value_range is None else "shared scale"
            tip = f"{name} ({exploration.kernels[name]})\nfirst-order estimate: share of the module's evidence {share:+.0%}\n{scale_note}"
            corner = _percent(share)
            if measured is not None:
                change = measured.probability_change[name]
                corner = points(change)
                tip += f"\nmeasured knock-out: p {change * 100:+.2f} points, logit {measured.logit_change[name]:+.3g}"
            cls = "gx-cell gx-open" if name == highlight else "gx-cell"
            cells.append(
                f'<div class="{cls}" data-branch="{name}" title="{html.escape(tip)}"><img class="gx-map" alt="" src="{_png(gray)}">'
                f'<span class="gx-tag">{corner}</span></div>'
            )
    header = "<div></div>" + "".join(f'<div class="gx-col">{m.short}</div>' for m in spec.modules)
    target = html.escape(exploration.target_name)
    heading = html.escape(title) if title else f"{MAP_KINDS[kind]} for “{target}”"
    if measured is None:
        corner_words = "share of the module's evidence, a first-order estimate Σ ∂y/∂A ⊙ A"
    else:
        corner_words = f"measured change of p(“{exploration.target_name}”) in points when the branch is zeroed"
    footer = f'<div class="gx-caption gx-agreement">{html.escape(agreement)}</div>' if agreement else ""
    small = exploration.image.shape[0] <= 64
    classes = "gx-panel gx-atlas" + (" gx-signed" if signed else "") + (" gx-pixelated" if small else "")
    low, high = ("0", "peak of each cell") if value_range is None else (f"{value_range[0]:.3g}", f"{value_range[1]:.3g}")
    body = (
        f'<div class="{classes}" data-sig="{_signature(exploration.key, kind, value_range, title)}" data-kind="{kind}" '
        f'data-corners="{"measured" if measured is not None else "estimate"}" data-agreement="{int(bool(agreement))}" '
        f'style="{_view_style(colorscale, opacity)}--gx-photo:url({_photo(exploration.image)})">'
        f'<div class="gx-title">{heading} <span style="font-weight:400">(modules left to right; corner: {html.escape(corner_words)})</span></div>'
        f'<div class="gx-grid" style="grid-template-columns:5.6em repeat({len(spec.modules)},minmax(0,1fr))">{header}{"".join(cells)}</div>'
        f"{_legend(signed, low, high)}{footer}</div>"
    )
    return _standalone(body) if standalone else body


def channels_html(exploration: Exploration, branch: str, n: int = 16, colorscale: str | None = "Inferno", standalone: bool = False) -> str:
    """The ``n`` channels of ``branch`` with the highest mean activation, each on its own scale."""
    act, means, order = top_channels(exploration, branch, n)
    n = len(order)
    cols = int(np.ceil(np.sqrt(n)))
    cells = []
    for channel in order:
        m = act[channel].float().numpy().astype(np.float64)
        peak = float(m.max()) or 1.0
        tip = f"{branch} channel {channel}\nmean {float(means[channel]):.3g}, max {peak:.3g}"
        cells.append(
            f'<div class="gx-cell" title="{html.escape(tip)}"><img class="gx-map" alt="" src="{_png(m / peak)}">'
            f'<span class="gx-tag gx-left">ch {channel}</span></div>'
        )
    title = f"{branch} ({exploration.kernels[branch]}): top {n} of {act.shape[0]} channels, {act.shape[1]}×{act.shape[2]}, each on its own scale"
    body = (
        f'<div class="gx-panel gx-channels gx-solid" data-sig="{_signature(exploration.key, branch, n)}" style="{_view_style(colorscale, None)}">'
        f'<div class="gx-title">{html.escape(title)}</div>'
        f'<div class="gx-grid" style="grid-template-columns:repeat({cols},minmax(0,104px));justify-content:center">{"".join(cells)}</div></div>'
    )
    return _standalone(body) if standalone else body


def heads_html(exploration: Exploration, standalone: bool = False) -> str:
    """Top-k of the main head and of both aux heads, side by side; the target class in orange."""
    return _heads(exploration.predictions, exploration.target, _signature(exploration.key), standalone)


def _heads(predictions: dict[str, list[Prediction]], target: int | None, sig: str, standalone: bool = False) -> str:
    columns = []
    for head in (h for h in HEADS if h in predictions):
        rows = []
        for p in predictions[head]:
            cls = "gx-bar-row gx-target" if p.index == target else "gx-bar-row"
            rows.append(
                f'<div class="{cls}"><span class="gx-label" title="{html.escape(p.label)}: {p.probability:.2%}">{html.escape(p.label)}</span>'
                f'<span class="gx-track"><span class="gx-fill" style="width:{100 * p.probability:.1f}%"></span></span>'
                f'<span class="gx-pct">{p.probability:.1%}</span></div>'
            )
        columns.append(f'<div class="gx-head"><div class="gx-head-title">{HEAD_TITLES.get(head, head)}</div>{"".join(rows)}</div>')
    body = (
        f'<div class="gx-panel gx-heads" data-sig="{sig}"><div class="gx-title">Top predictions of the main head and of the two '
        f'auxiliary classifiers (orange: the class explained)</div><div class="gx-heads-grid">{"".join(columns)}</div></div>'
    )
    return _standalone(body) if standalone else body


def _diverging_colour(value: float) -> tuple[str, str]:
    """Background (RdBu, -1 … 1) and a text colour that stays legible on it."""
    colours = sample("RdBu", 33)
    r, g, b = colours[round((np.clip(value, -1, 1) + 1) / 2 * 32)]
    text = "#111827" if 0.299 * r + 0.587 * g + 0.114 * b > 140 else "#ffffff"
    return f"rgb({r},{g},{b})", text


def contributions_html(exploration: Exploration, standalone: bool = False) -> str:
    """Each branch's share of its module's evidence for the target (Σ grad ⊙ activation), laid
    out like the atlas: modules left to right, branches top to bottom; red for, blue against."""
    spec = exploration.spec
    head = "<tr><th></th>" + "".join(f"<th>{m.short}</th>" for m in spec.modules) + "</tr>"
    rows = []
    for row in spec.branch_kinds:
        kernels = " | ".join(dict.fromkeys(b.kernel for m in spec.modules for b in m.branches if b.branch == row))
        cells = [f'<th class="gx-rowhead">{row} <span style="font-weight:400">{html.escape(kernels)}</span></th>']
        for module in spec.modules:
            name = f"{module.name}.{row}"
            if name not in exploration.shares:
                cells.append("<td></td>")
                continue
            share = exploration.shares[name]
            background, text = _diverging_colour(share)
            tip = f"{name}: share {share:+.1%}, Σ grad×activation {exploration.contributions[name]:.3g}"
            cells.append(f'<td style="background:{background};color:{text}" title="{html.escape(tip)}">{_percent(share)}</td>')
        rows.append("<tr>" + "".join(cells) + "</tr>")
    target = html.escape(exploration.target_name)
    body = (
        f'<div class="gx-panel gx-contributions" data-sig="{_signature(exploration.key)}">'
        f'<div class="gx-title">Share of each module\'s evidence for “{target}” per branch (Σ grad × activation; red for, blue against)</div>'
        f'<table class="gx-table">{head}{"".join(rows)}</table></div>'
    )
    return _standalone(body) if standalone else body


def attribution_html(
    attribution: Attribution, image: np.ndarray, colorscale: str = "Inferno", opacity: float = 0.6, standalone: bool = False
) -> str:
    """The picture, and the attribution over it; signed methods use the diverging colour map."""
    size = image.shape[0]
    m = attribution.map
    if m.shape[-1] != size:
        raise ValueError(f"attribution map {tuple(m.shape)} does not match the {size}×{size} picture")
    step = max(1, size // 224)
    values = m[::step, ::step].float().numpy().astype(np.float64)
    signed = attribution.method.signed
    peak = float(np.abs(values).max()) or 1.0
    if signed:  # clip at the 99th percentile so a few extreme pixels do not wash out the rest
        peak = float(np.quantile(np.abs(values), 0.99)) or peak
        gray = (np.clip(values / peak, -1, 1) + 1) / 2
    else:
        gray = np.clip(values / peak, 0, 1)
    extra = " + SmoothGrad" if attribution.noise_tunnel else ""
    title = f"{attribution.method.label}{extra} for “{attribution.target_name}” ({attribution.seconds:.1f} s)"
    classes = "gx-panel gx-attribution" + (" gx-signed" if signed else "") + (" gx-pixelated" if size <= 64 else "")
    body = (
        f'<div class="{classes}" data-sig="{_signature(attribution.method.label, attribution.target_name, float(peak), attribution.seconds)}" '
        f'style="{_view_style(colorscale, opacity)}--gx-photo:url({_photo(image, 224)})">'
        f'<div class="gx-title">{html.escape(title)}</div><div class="gx-pair">'
        f'<div><div class="gx-cell"></div><div class="gx-caption">input</div></div>'
        f'<div><div class="gx-cell" title="{html.escape(attribution.method.label)}; peak {peak:.3g}"><img class="gx-map" alt="" src="{_png(gray)}"></div>'
        f'<div class="gx-caption">{html.escape(attribution.method.label)}</div></div></div>'
        f"{_legend(signed, '0', 'peak')}</div>"
    )
    return _standalone(body) if standalone else body


def note_html(text: str) -> str:
    """A panel that says why it is empty or what to do (plain text, escaped)."""
    return f'<div class="gx-panel gx-note-panel"><div class="gx-note">{html.escape(text)}</div></div>'


def _standalone(body: str) -> str:
    return f"<style>{PANEL_CSS}</style>{colormap_defs()}{body}"
