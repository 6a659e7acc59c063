"""The Architecture tab: the live model's per-layer table beside the paper's Table 1, and a diagram."""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple

import gradio as gr
import pandas as pd

from explain.render.architecture import architecture_figure
from googlenet.analysis.summary import PAPER_NOTES, summarize
from googlenet.model import GoogLeNet

from .shared import HUB, outputs, user_errors

COUNT_COLUMNS = ("params", "multiply-adds", "paper params (scaled)", "paper multiply-adds (scaled)")


class ArchitectureView(NamedTuple):
    diagram: Any
    table: Any
    caption: Any


@functools.lru_cache(maxsize=8)
def architecture_of(config, input_size: int):
    """Summary and diagram of a configuration, as trained (the live copy has BN folded away)."""
    model = GoogLeNet(**dataclasses.asdict(config))
    return summarize(model, input_size), architecture_figure(model)


def count(value) -> str:
    """12828672 → "12,828,672"; no paper row → "—"."""
    return "—" if value is None or pd.isna(value) else f"{int(value):,}"


def layer_table(records: list[dict]):
    """The rows with thousands separators in the browser, the numbers kept as numbers."""
    frame = pd.DataFrame(records)
    # Columns holding "no paper row" are object-typed so a None never turns the ints into floats.
    for column in COUNT_COLUMNS:
        frame[column] = frame[column].astype(object)
    numbers = [*COUNT_COLUMNS, "Δ params", "Δ multiply-adds"]
    return frame.style.format(count, subset=list(COUNT_COLUMNS)).set_properties(subset=numbers, **{"text-align": "right"})


@user_errors
def architecture_view(model) -> ArchitectureView:
    loaded = HUB.loaded(model)
    summary, diagram = architecture_of(loaded.config, loaded.input_size)
    config = loaded.config
    caption = (
        f"**{summary.total_params:,} parameters** · **{summary.main_macs:,} multiply-adds** per "
        f"{summary.input_size}×{summary.input_size} image ({summary.main_macs / 1e9:.3f} G) · width {config.width}, "
        f"{config.stem} stem, {config.num_classes} classes. The paper's network: about 6.8 M parameters and 1.5 G "
        "multiply-adds at 224×224 with 1,000 classes; the table's paper columns are scaled to this network."
    )
    return ArchitectureView(diagram=diagram, table=layer_table(summary.records()), caption=caption)


def build(default: str) -> list:
    """The Architecture tab (call inside ``gr.Tab``); returns the outputs of :func:`architecture_view`.

    The default model's view is drawn while the page is built (no request at page load).
    """
    first = architecture_view(default)
    caption = gr.Markdown(first.caption, elem_id="architecture-caption", label="Totals")
    diagram = gr.Plot(first.diagram, show_label=False, label="The network", elem_id="architecture-diagram")
    # Tall enough for every row of the table at once (22 rows): nothing hides below a scroll.
    table = gr.Dataframe(
        first.table,
        label="Per layer, beside the paper's Table 1",
        wrap=True,
        max_height=1200,
        elem_id="architecture-table",
        interactive=False,
    )
    gr.Markdown("\n".join(f"- {note}" for note in PAPER_NOTES), elem_id="architecture-notes")
    return outputs(ArchitectureView, dict(diagram=diagram, table=table, caption=caption))
