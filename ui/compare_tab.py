"""The Compare tab: two models on one image, predictions per head and both atlases on one colour scale."""

from __future__ import annotations

from typing import Any, NamedTuple

import gradio as gr

from explain.figures import MAP_KINDS, atlas_figure, heads_figure, map_range

from .shared import HUB, examples, gpu, image_input, outputs, user_errors


class CompareView(NamedTuple):
    heads_a: Any
    atlas_a: Any
    heads_b: Any
    atlas_b: Any


@user_errors
@gpu
def compare_view(image, model_a, model_b, kind, colorscale) -> CompareView:
    """Two models on one image; both atlases on one colour scale."""
    picture = image_input(image)
    a = HUB.explorer(model_a).explore(picture)
    b = HUB.explorer(model_b).explore(picture)
    shared = map_range([a, b], kind)
    return CompareView(
        heads_a=heads_figure(a),
        atlas_a=atlas_figure(a, kind, colorscale, 0.6, shared),
        heads_b=heads_figure(b),
        atlas_b=atlas_figure(b, kind, colorscale, 0.6, shared),
    )


def build(default: str, colorscale: gr.Dropdown) -> tuple[gr.Dropdown, gr.Dropdown]:
    """The Compare tab (call inside ``gr.Tab``); returns its two model pickers."""
    with gr.Row():
        image = gr.Image(label="Image", sources=["upload", "clipboard"], type="filepath", height=220)
        with gr.Column():
            model_a = gr.Dropdown(HUB.choices(), value=default, label="Model A")
            model_b = gr.Dropdown(HUB.choices(), value=HUB.choices()[-1][1], label="Model B")
            kind = gr.Radio(list(MAP_KINDS), value="cam", label="Atlas shows")
            button = gr.Button("Compare", variant="primary")
    if examples("photos") or examples("cifar"):
        gr.Examples(examples("cifar") + examples("photos"), inputs=image, examples_per_page=12)
    with gr.Row():
        with gr.Column():
            heads_a = gr.Plot(show_label=False, label="A: predictions")
            atlas_a = gr.Plot(show_label=False, label="A: atlas (shared colour scale)")
        with gr.Column():
            heads_b = gr.Plot(show_label=False, label="B: predictions")
            atlas_b = gr.Plot(show_label=False, label="B: atlas (shared colour scale)")
    components = dict(heads_a=heads_a, atlas_a=atlas_a, heads_b=heads_b, atlas_b=atlas_b)
    button.click(
        compare_view, [image, model_a, model_b, kind, colorscale], outputs(CompareView, components),
        api_name="compare", preprocess=False, concurrency_limit=1,
    )  # fmt: skip
    return model_a, model_b
