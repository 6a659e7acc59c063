"""The Architecture tab: the live model's per-layer table beside the paper's Table 1, and a diagram."""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple

import gradio as gr
import pandas as pd

from explain.architecture import architecture_figure
from googlenet.model import GoogLeNet
from googlenet.summary import summarize

from .shared import HUB, outputs, user_errors


class ArchitectureView(NamedTuple):
    diagram: Any
    table: Any
    caption: Any


@functools.lru_cache(maxsize=8)
def architecture_of(config, input_size: int):
    """Summary and diagram of a configuration, as trained (the live copy has BN folded away)."""
    model = GoogLeNet(**dataclasses.asdict(config))
    return summarize(model, input_size), architecture_figure(model)


@user_errors
def architecture_view(model) -> ArchitectureView:
    loaded = HUB.loaded(model)
    summary, diagram = architecture_of(loaded.config, loaded.input_size)
    caption = (
        f"{summary.total_params:,} parameters · {summary.main_macs / 1e9:.3f} G multiply-adds per "
        f"{summary.input_size}×{summary.input_size} image (paper: ~6.8 M, ~1.5 G)"
    )
    return ArchitectureView(diagram=diagram, table=pd.DataFrame(summary.records()), caption=caption)


def build() -> list:
    """The Architecture tab (call inside ``gr.Tab``); returns the outputs of :func:`architecture_view`."""
    caption = gr.Markdown()
    diagram = gr.Plot(show_label=False, label="The network")
    table = gr.Dataframe(label="Per layer, beside the paper's Table 1", wrap=True)
    return outputs(ArchitectureView, dict(diagram=diagram, table=table, caption=caption))
