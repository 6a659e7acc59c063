"""A diagram of the live network: stem, the nine Inception modules with their four branches
(kernel and channel count read off the modules), the pools between them and both aux heads."""

from __future__ import annotations

import plotly.graph_objects as go
from torch import nn

from googlenet.model import GoogLeNet
from googlenet.spec import describe

__all__ = ["architecture_figure"]

BRANCH_COLORS = {"branch1": "#6366f1", "branch2": "#14b8a6", "branch3": "#f59e0b", "branch4": "#ec4899"}


def architecture_figure(model: GoogLeNet) -> go.Figure:
    """Left to right: each Inception module is a column of its four branches."""
    stages = []
    for name, child in model.named_children():
        if child is None or isinstance(child, nn.Identity) or name.startswith("aux") or name in ("dropout",):
            continue
        stages.append(name)
    shapes, texts = [], {"x": [], "y": [], "text": [], "hover": []}

    def box(x0, y0, x1, y1, color, label, hover):
        shapes.append(dict(type="rect", x0=x0, y0=y0, x1=x1, y1=y1, line=dict(color="#334155", width=1), fillcolor=color, layer="below"))
        texts["x"].append((x0 + x1) / 2)
        texts["y"].append((y0 + y1) / 2)
        texts["text"].append(label)
        texts["hover"].append(hover)

    spec = describe(model)
    x = 0.0
    centers = {}
    for name in stages:
        module = model.get_submodule(name)
        if name in spec.module_names:
            for i, branch in enumerate(spec.module(name).branches):
                y0 = 3 - i
                label, hover = f"{branch.kernel}<br>{branch.width}", f"{branch.name}: {branch.kernel}, {branch.width} channels"
                if branch.branch == "branch3" and branch.kernel.endswith("3×3"):
                    hover += " (the paper's branch3 is 1×1→5×5; torchvision's layout has 3×3)"
                box(x, y0 - 0.9, x + 1.6, y0, BRANCH_COLORS.get(branch.branch, "#94a3b8"), label, hover)
            texts["x"].append(x + 0.8)
            texts["y"].append(3.35)
            texts["text"].append(f"<b>{spec.module(name).short}</b>")
            texts["hover"].append(f"{name}: {sum(p.numel() for p in module.parameters()):,} parameters")
            centers[name] = x + 0.8
            x += 2.0
        else:
            label = {
                "maxpool1": "pool",
                "maxpool2": "pool",
                "maxpool3": "pool",
                "maxpool4": "pool",
                "avgpool": "avg<br>pool",
                "fc": "fc",
            }.get(name, name)
            color = "#e2e8f0" if "pool" in name else "#cbd5e1"
            box(x, 0.6, x + 0.9, 2.6, color, f"<b>{label}</b>", f"{name}: {module}")
            x += 1.2
    # Aux heads hang below the column of the module whose output they read, clear of branch4
    # (whose box ends at y=-0.9): the connector runs in the gap, not through a label.
    for aux, after in spec.aux_taps:
        if after in centers:
            cx = centers[after]
            short = spec.module(after).short if after in spec.module_names else after
            box(
                cx - 0.8,
                -2.4,
                cx + 0.8,
                -1.4,
                "#fde68a",
                f"<b>{aux}</b><br>on {short}'s output",
                f"{aux}: auxiliary classifier on {after}'s output (training only)",
            )
            shapes.append(dict(type="line", x0=cx, y0=-0.95, x1=cx, y1=-1.4, line=dict(color="#92400e", width=2, dash="dot")))
    kernels3 = {b.kernel for m in spec.modules for b in m.branches if b.branch == "branch3"}
    note = (
        "branch3 is 1×1→3×3 in torchvision's layout (pytorch/vision#906); the paper's is 1×1→5×5"
        if kernels3 and all(k.endswith("3×3") for k in kernels3)
        else "branch3 is 1×1→5×5, as in the paper"
    )
    data = [
        dict(
            type="scatter", mode="text", x=texts["x"], y=texts["y"], text=texts["text"], hovertext=texts["hover"],
            hoverinfo="text", textfont=dict(size=10, color="#0f172a"), showlegend=False,
        )
    ]  # fmt: skip
    layout = dict(
        template="none",  # plotly's default template adds 6.5 KB of JSON to every figure
        shapes=shapes,
        xaxis=dict(visible=False, range=[-0.3, x + 0.1], fixedrange=False),
        yaxis=dict(visible=False, range=[-2.6, 3.7], fixedrange=True),
        height=380, margin=dict(l=4, r=4, t=30, b=24), paper_bgcolor="white", plot_bgcolor="white",
        annotations=[dict(text=note, x=1, y=0, xref="paper", yref="paper", xanchor="right", yanchor="top", yshift=-4, showarrow=False, font=dict(size=11, color="#475569"))],
        title=dict(text=f"GoogLeNet ({model.config.stem} stem, width {model.config.width}): each module's four branches, concatenated", x=0.5, font=dict(size=13)),
    )  # fmt: skip
    return go.Figure(data=data, layout=layout)
