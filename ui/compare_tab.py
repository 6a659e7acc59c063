"""The Compare tab: two models on one image, predictions per head and both atlases side by side.

Model B starts as the most useful partner of the default model: another trained model when there
is one (ImageNet weights, a checkpoint), else the default's untrained twin (same layout, random
init), so a fresh clone compares "trained" with "untrained" rather than a CIFAR model with
random ImageNet weights. Picking an image (upload or example) compares at once.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import gradio as gr

from explain.images import load_image
from explain.render.figures import MAP_KINDS
from explain.render.panels import atlas_html, heads_html, map_range, note_html

from .shared import HUB, examples, gpu, image_input, open_choices, outputs, unchanged, user_errors, viewer_key

SCALES = {
    "each map its own": "every map scaled to its own peak, as in Explore: where each branch looks, readable for both models",
    "shared by A and B": "one colour scale for all 72 maps: strengths comparable, but the weaker model's maps look dark",
}
HINT = "Pick an example or upload an image: both models explore it at once."


class CompareView(NamedTuple):
    heads_a: Any
    atlas_a: Any
    heads_b: Any
    atlas_b: Any


@user_errors
@gpu
def compare_view(image, model_a, model_b, kind, scale="each map its own") -> CompareView:
    """Two models on one image; every map on its own scale (default) or all on one shared by both.

    A scale per model was tried and dropped: one strong map per model left the other 35 dark.
    """
    picture = load_image(image_input(image))
    a = HUB.explorer(model_a).explore(picture)
    b = HUB.explorer(model_b).explore(picture)
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; expected one of {', '.join(SCALES)}")
    ranges = [map_range([a, b], kind)] * 2 if scale == "shared by A and B" else [None, None]
    return CompareView(
        heads_a=heads_html(a),
        atlas_a=atlas_html(a, kind, None, None, ranges[0], title=f"A: {a.model_name} — {MAP_KINDS[kind]} for “{a.target_name}”"),
        heads_b=heads_html(b),
        atlas_b=atlas_html(b, kind, None, None, ranges[1], title=f"B: {b.model_name} — {MAP_KINDS[kind]} for “{b.target_name}”"),
    )


def compare_on_change(image, *args) -> CompareView:
    if image is None:
        return unchanged(CompareView)
    return compare_view(image, *args)


def default_partner(default: str, choices: list[tuple[str, str]] | None = None) -> tuple[list[tuple[str, str]], str]:
    """Model B's choices (``choices``, by default every model, plus the default's untrained twin)
    and its starting value."""
    choices = HUB.choices() if choices is None else choices
    trained = [value for _, value in choices if value not in (default, "random")]
    twin = f"untrained:{default}"
    with_twin = [*choices, (HUB.untrained_label(default), twin)] if default != "random" else choices
    return with_twin, (trained[0] if trained else twin if default != "random" else default)


def visitor_choices(model_a, model_b):
    """Both pickers as this visitor may see them (their own runs and uploads join on a public
    server), keeping the current choices where they are still there."""
    choices = HUB.choices(viewer_key())
    choices_b, value_b = default_partner(HUB.default(), choices)

    def keep(current, options, fallback):
        values = [v for _, v in options]
        return gr.update(choices=options, value=current if current in values else fallback)

    return keep(model_a, choices, choices[0][1]), keep(model_b, choices_b, value_b)


def build(default: str) -> tuple[gr.Dropdown, gr.Dropdown]:
    """The Compare tab (call inside ``gr.Tab``); returns its two model pickers."""
    choices_b, value_b = default_partner(default)
    with gr.Row():
        image = gr.Image(label="Image", sources=["upload", "clipboard"], type="filepath", height=220, elem_id="compare-image")
        with gr.Column():
            model_a = open_choices(gr.Dropdown(HUB.choices(), value=default, label="Model A", allow_custom_value=True))
            model_b = open_choices(gr.Dropdown(choices_b, value=value_b, label="Model B", allow_custom_value=True))
            kind = gr.Radio(list(MAP_KINDS), value="cam", label="Atlas shows")
            scale = gr.Radio(
                list(SCALES), value="each map its own", label="Colour scale", info="; ".join(f"{k}: {v}" for k, v in SCALES.items())
            )
            button = gr.Button("Compare", variant="primary", elem_id="compare-button")
    if examples("photos") or examples("cifar"):
        gr.Examples(examples("cifar") + examples("photos"), inputs=image, examples_per_page=12, elem_id="compare-examples")
    with gr.Row(equal_height=False):
        with gr.Column(min_width=320):
            heads_a = gr.HTML(note_html(HINT), label="A: predictions", elem_id="compare-heads-a", js_on_load=None)
            atlas_a = gr.HTML(label="A: atlas", elem_id="compare-atlas-a", js_on_load=None)
        with gr.Column(min_width=320):
            heads_b = gr.HTML(label="B: predictions", elem_id="compare-heads-b", js_on_load=None)
            atlas_b = gr.HTML(label="B: atlas", elem_id="compare-atlas-b", js_on_load=None)
    components = dict(heads_a=heads_a, atlas_a=atlas_a, heads_b=heads_b, atlas_b=atlas_b)
    inputs = [image, model_a, model_b, kind, scale]
    button.click(compare_view, inputs, outputs(CompareView, components), api_name="compare", preprocess=False, concurrency_limit=1)
    # An example or an upload compares at once, as in the Explore tab; so do the other choices.
    for trigger in (image.change, model_a.input, model_b.input, kind.input, scale.input):
        trigger(
            compare_on_change, inputs, outputs(CompareView, components), api_visibility="private", preprocess=False,
            concurrency_limit=1, concurrency_id="compare", trigger_mode="always_last",
        )  # fmt: skip
    return model_a, model_b
