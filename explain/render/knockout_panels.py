"""The contribution table with measured knock-outs (:mod:`explain.knockouts`): laid out like the
atlas, one cell per branch plus a row for the whole module, each the measured change of p(class)
when it is zeroed; the tooltip adds the logit change and the first-order estimate beside it."""

from __future__ import annotations

import html

from explain.explorer import Exploration
from explain.knockouts import MeasuredKnockouts, points
from explain.render.panels import _diverging_colour, _signature, _standalone

__all__ = ["knockout_table_html"]


def knockout_table_html(exploration: Exploration, measured: MeasuredKnockouts, standalone: bool = False) -> str:
    """Measured change of p(target) per branch and module; red: zeroing it lowers p (it was for
    the class), blue: zeroing it raises p. Colours are scaled to the largest change shown."""
    if measured.key != exploration.key:
        raise ValueError("these knock-outs were measured for another image, model or class")
    spec = exploration.spec
    names = list(measured.branches) + list(measured.modules)
    peak = max((abs(measured.probability_change[n]) for n in names), default=0.0) or 1.0
    head = "<tr><th></th>" + "".join(f"<th>{m.short}</th>" for m in spec.modules) + "</tr>"

    def cell(name: str) -> str:
        change = measured.probability_change[name]
        background, text = _diverging_colour(-change / peak)
        tip = (
            f"{name} zeroed: p {change * 100:+.2f} points, logit {measured.logit_change[name]:+.4g} (measured); "
            f"first-order estimate of the logit change {measured.estimate[name]:+.4g}"
        )
        return f'<td style="background:{background};color:{text}" title="{html.escape(tip)}" data-name="{name}">{points(change)}</td>'

    rows = []
    for row in spec.branch_kinds:
        kernels = " | ".join(dict.fromkeys(b.kernel for m in spec.modules for b in m.branches if b.branch == row))
        cells = [f'<th class="gx-rowhead">{row} <span style="font-weight:400">{html.escape(kernels)}</span></th>']
        for module in spec.modules:
            name = f"{module.name}.{row}"
            cells.append(cell(name) if name in measured.probability_change else "<td></td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    rows.append('<tr><th class="gx-rowhead">whole module</th>' + "".join(cell(m.name) for m in spec.modules) + "</tr>")
    target = html.escape(exploration.target_name)
    body = (
        f'<div class="gx-panel gx-contributions gx-measured" data-sig="{_signature(exploration.key, "measured")}">'
        f'<div class="gx-title">Measured knock-outs: change of p(“{target}”) in points when each branch or module is zeroed '
        f"(main head; red: zeroing it lowers p, blue: raises it; p = {measured.baseline_probability:.1%} before)</div>"
        f'<table class="gx-table">{head}{"".join(rows)}</table></div>'
    )
    return _standalone(body) if standalone else body
