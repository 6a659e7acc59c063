"""The Explore tab: an image → three heads, the branch atlas, contributions, one branch's channels,
the microscope, captum attributions and knock-outs. Handlers first, then the tab's layout."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import gradio as gr

from explain import HEADS, Method
from explain.figures import (
    COLORSCALES,
    MAP_KINDS,
    ablation_figure,
    atlas_figure,
    attribution_figure,
    channels_figure,
    contributions_figure,
    heads_figure,
)
from explain.images import load_image

from . import links
from .caching import cached, examples_cache_folder
from .shared import HUB, TOP_CLASS, examples, gpu, image_input, outputs, unchanged, user_errors

DEFAULT_DATA = os.environ.get("GOOGLENET_DATA", "data")
DEFAULT_BRANCH = "inception4c.branch2"


class ExploreView(NamedTuple):
    exploration: Any
    heads: Any
    atlas: Any
    contributions: Any
    channels: Any
    summary: Any
    target: Any
    branch: Any


class Redraw(NamedTuple):
    atlas: Any
    channels: Any
    summary: Any


class KnockoutView(NamedTuple):
    knock_plot: Any
    knock_table: Any


@user_errors
@gpu
def classify(image, model: str | None = None, topk: int = 5) -> dict:
    """Classify an image with GoogLeNet (Inception v1): the top-k classes of its main head and of its two auxiliary heads (aux1 after inception4a, aux2 after inception4d), which show what the network already knows half-way through.

    Args:
        image: the picture to classify (a URL or an uploaded file).
        model: which weights, from the app's model list: "bundled" (a small CIFAR-10 model), "imagenet" (torchvision's ImageNet weights, when the server has them), "random", or a trained checkpoint; empty for the server's default.
        topk: how many classes per head (default 5).

    Returns:
        JSON with the model's name, the device, caveats (notes) and, per head (main, aux1, aux2), the top-k labels with their probabilities.
    """
    explorer = HUB.explorer(model)
    predictions = explorer.classify(image_input(image), int(topk))
    return {
        "model": explorer.loaded.name,
        "device": str(explorer.loaded.device),
        "notes": list(explorer.loaded.notes),
        "predictions": {
            head: [{"label": p.label, "probability": round(p.probability, 6)} for p in preds] for head, preds in predictions.items()
        },
    }


@user_errors
@gpu
def explore_view(image, model, target, kind, colorscale, opacity, branch) -> ExploreView:
    """One pass, then every view of it: heads, atlas, contributions, the chosen branch's channels."""
    explorer = HUB.explorer(model)
    target = target if _valid_target(target, explorer.loaded.classes) else None  # e.g. an ImageNet class after switching to CIFAR
    exploration = explorer.explore(image_input(image), target)
    if branch not in exploration.spec.branch_names:
        branch = max(exploration.shares, key=exploration.shares.get)
    classes = [TOP_CLASS, *explorer.loaded.classes]
    return ExploreView(
        exploration=exploration,
        heads=heads_figure(exploration),
        atlas=atlas_figure(exploration, kind, colorscale, opacity, highlight=branch),
        contributions=contributions_figure(exploration),
        channels=channels_figure(exploration, branch, 16, colorscale),
        summary=summary_text(exploration, branch),
        target=gr.update(choices=classes, value=exploration.target_name if target else TOP_CLASS),
        branch=gr.update(value=branch),
    )


def _valid_target(target, classes) -> bool:
    """A class name of this model, or its index as text (API callers)."""
    if target in classes:
        return True
    return isinstance(target, str) and target.isdigit() and int(target) < len(classes)


def explore_on_change(image, model, target, kind, colorscale, opacity, branch) -> ExploreView:
    """The image changed (upload, webcam, paste, example): explore it; a cleared image is no error.
    (Named parameters, not ``*args``: ``gr.cache`` calls the function with keywords.)"""
    if image is None:
        return unchanged(ExploreView)
    # one content cache for the button, the picture and the examples
    return cached(explore_view)(image, model, target, kind, colorscale, opacity, branch)


def summary_text(exploration, branch: str) -> str:
    main = exploration.predictions["main"][0]
    lines = [f"**Main head:** {main.label} ({main.probability:.1%}) · gradients taken for **{exploration.target_name}**"]
    for head in ("aux1", "aux2"):
        if head in exploration.predictions:
            p = exploration.predictions[head][0]
            lines.append(f"**{head}:** {p.label} ({p.probability:.1%})")
    lines.append(
        f"**{branch}** ({exploration.kernels[branch]}): {exploration.activations[branch].shape[0]} channels, "
        f"share of its module's evidence {exploration.shares[branch]:+.0%} (Σ grad×activation {exploration.contributions[branch]:.3g})"
    )
    return " · ".join(lines[:3]) + "\n\n" + lines[-1]


@user_errors
def rerender(exploration, kind, colorscale, opacity, branch) -> Redraw:
    """New colours, opacity or branch: drawn from the cached exploration, no new pass."""
    if exploration is None:
        return unchanged(Redraw)
    branch = branch if branch in exploration.spec.branch_names else DEFAULT_BRANCH
    return Redraw(
        atlas=atlas_figure(exploration, kind, colorscale, opacity, highlight=branch),
        channels=channels_figure(exploration, branch, 16, colorscale),
        summary=summary_text(exploration, branch),
    )


@user_errors
@gpu
def attribute_view(image, model, target, method_label, noise_tunnel, colorscale, opacity, progress=gr.Progress()):
    method = next((m for m in Method if m.label == method_label), None) or Method(method_label)
    explorer = HUB.explorer(model)
    target = None if target in (None, "", TOP_CLASS) else target
    picture = load_image(image_input(image))  # decoded once, for the attribution and the overlay
    result = explorer.attribute(picture, method, target, bool(noise_tunnel), progress=lambda f, msg: progress(f, desc=msg))
    return attribution_figure(result, explorer.prepare(picture)[1], colorscale, opacity)


@user_errors
@gpu
def knockout_view(image, model, target, branches) -> KnockoutView:
    if not branches:
        raise gr.Error("pick one or more branches (or whole modules) to knock out")
    sets = list(branches) + ([list(branches)] if len(branches) > 1 else [])
    ablation = HUB.explorer(model).ablate(image_input(image), sets, None if target in (None, "", TOP_CLASS) else target)
    heads = [h for h in HEADS if h in ablation.baseline_probability]
    rows = [f"| knocked out | {' | '.join(heads)} |", "|---|" + "---|" * len(heads)]
    rows.append(
        "| (nothing) | " + " | ".join(f"{ablation.baseline[h][0].label} {ablation.baseline_probability[h]:.1%}" for h in heads) + " |"
    )
    for k in ablation.knockouts:
        rows.append(f"| {k.label} | " + " | ".join(f"{k.predictions[h][0].label} ({k.delta[h]:+.1%})" for h in heads) + " |")
    table = f"p(“{ablation.target_name}”) per head; top class and change after the knock-out:\n\n" + "\n".join(rows)
    return KnockoutView(knock_plot=ablation_figure(ablation), knock_table=table)


@user_errors
@gpu
def microscope_branch(model, exploration, branch, progress=gr.Progress()):
    """The open branch's most active channels (on this image): visualization + dataset examples."""
    if exploration is None:
        raise gr.Error("explore an image first: the channels shown are the ones it excites most")
    act = exploration.activations[branch].mean(dim=(1, 2))
    channels = act.argsort(descending=True)[:6].tolist()
    scope = HUB.microscope(model, DEFAULT_DATA)
    return scope.branch_view(branch, channels, progress=lambda f, msg: progress(f, desc=msg))


@user_errors
@gpu
def microscope_module(model, module, progress=gr.Progress()):
    scope = HUB.microscope(model, DEFAULT_DATA)
    return scope.module_gallery(module, progress=lambda f, msg: progress(f, desc=msg))


@user_errors
@gpu
def microscope_specialization(model, progress=gr.Progress()):
    return HUB.microscope(model, DEFAULT_DATA).specialization(lambda f, msg: progress(f, desc=msg))


# -- layout ------------------------------------------------------------------------------------


@dataclass
class ExploreTab:
    """The components other tabs and the page wire to."""

    image: gr.Image
    target: gr.Dropdown
    exploration: gr.State
    colorscale: gr.Dropdown
    inputs: list
    outputs: list
    link_outputs: list
    linked_picture: gr.State


def build(model: gr.Dropdown, default: str) -> ExploreTab:
    """The Explore tab's components and events (call inside ``gr.Tab``)."""
    spec = HUB.loaded(default).spec
    methods = [m.label for m in Method]
    exploration = gr.State(None, time_to_live=1800)
    linked_picture = gr.State(None)  # the example a shared link asks for, set after the link's class and branch
    with gr.Row():
        with gr.Column(scale=1, min_width=300):
            cifar_first = HUB.loaded(default).input_size <= 64
            first = sorted(examples("cifar" if cifar_first else "photos"), key=lambda p: "cat" not in Path(p).name) or [None]
            # A first picture, explored on page load: a newcomer sees the network at work at once.
            image = gr.Image(
                first[0], label="Image", sources=["upload", "webcam", "clipboard"], type="filepath", height=280, elem_id="input-image"
            )
            galleries = []  # (cached on the default model, plain for any other model)
            for kind_name in ("cifar", "photos") if cifar_first else ("photos", "cifar"):
                if examples(kind_name):
                    label = "CIFAR-10-style examples (32×32)" if kind_name == "cifar" else "Photos"
                    galleries.append((kind_name, label))
            target = gr.Dropdown([TOP_CLASS], value=TOP_CLASS, label="Explain which class", allow_custom_value=False, filterable=True)
            run = gr.Button("Explore", variant="primary", elem_id="explore-button")
            with gr.Accordion("View", open=True):
                info = "; ".join(f"{k}: {v}" for k, v in MAP_KINDS.items())
                kind = gr.Radio(list(MAP_KINDS), value="cam", label="Atlas shows", info=info)
                colorscale = gr.Dropdown(list(COLORSCALES), value="Inferno", label="Colour map")
                opacity = gr.Slider(0, 1, value=0.6, step=0.05, label="Map opacity over the image")
                branch = gr.Dropdown(list(spec.branch_names), value=DEFAULT_BRANCH, label="Branch to open", filterable=True)
                share = gr.Button("Link to this view", size="sm", elem_id="share-view")
                link = gr.Textbox(label="Link to this view", buttons=["copy"], visible=False, elem_id="share-link")
                link_note = gr.Markdown(elem_id="share-note")
        with gr.Column(scale=3):
            heads = gr.Plot(show_label=False, label="Predictions: main head and the two auxiliary classifiers", elem_id="heads-plot")
            summary = gr.Markdown()
            atlas = gr.Plot(show_label=False, label="Branch atlas: modules × branches", elem_id="atlas-plot")
            contributions = gr.Plot(show_label=False, label="Contribution per branch", elem_id="contributions-plot")
            channels = gr.Plot(show_label=False, label="Channels of the open branch", elem_id="channels-plot")
            with gr.Accordion("Microscope: what do these channels look for?", open=False):
                gr.Markdown(
                    "Feature visualization (activation maximisation, Olah et al. 2017) of the open branch's most active channels, "
                    "each followed by the dataset images that excite it most; a gallery per module; and how the four branches "
                    "specialise. The first call indexes the reference set (seconds on CPU, then cached beside the checkpoint)."
                )
                with gr.Row():
                    scope_branch = gr.Button("Open branch: top channels")
                    scope_module = gr.Dropdown(list(spec.module_names), value="inception4c", label="Module", scale=1)
                    scope_gallery = gr.Button("Module gallery")
                    scope_special = gr.Button("Branch specialization")
                scope_plot = gr.Plot(show_label=False, label="Microscope", elem_id="microscope-plot")
    with gr.Row():
        with gr.Column():
            gr.Markdown("### Which pixels matter? (captum input attribution)")
            method = gr.Radio(methods, value=methods[0], label="Method")
            noise = gr.Checkbox(False, label="Smooth with NoiseTunnel (SmoothGrad; slower)")
            attribute_button = gr.Button("Attribute")
            attribution = gr.Plot(show_label=False, label="Attribution")
        with gr.Column():
            gr.Markdown("### Knock branches out (a causal check)")
            knock = gr.Dropdown(
                list(spec.branch_names) + list(spec.module_names), multiselect=True, label="Branches or whole modules to zero"
            )
            knock_button = gr.Button("Knock out")
            knock_plot = gr.Plot(show_label=False, label="Change of the target's probability")
            knock_table = gr.Markdown()

    components = dict(
        exploration=exploration, heads=heads, atlas=atlas, contributions=contributions, channels=channels,
        summary=summary, target=target, branch=branch, knock_plot=knock_plot, knock_table=knock_table,
    )  # fmt: skip
    view = [kind, colorscale, opacity, branch]
    explore_inputs = [image, model, target, *view]
    explore_outputs = outputs(ExploreView, components)
    run.click(
        cached(explore_view), explore_inputs, explore_outputs, api_name="explore", preprocess=False, concurrency_limit=2,
        concurrency_id="explore",
    )  # fmt: skip
    # The visitor's own picture (upload, webcam, paste, clear). Pictures the app sets (examples, a
    # shared link) are explored by their own events, so a cached example is drawn once, not twice.
    image.input(
        cached(explore_on_change), explore_inputs, explore_outputs, api_visibility="private", preprocess=False,
        concurrency_id="explore", trigger_mode="always_last",
    )  # fmt: skip
    _example_galleries(galleries, image, default, model, components, explore_inputs, explore_outputs)
    share.click(links.share_view, explore_inputs, [link, link_note], api_visibility="private").then(
        None, link, link, js="(q) => ({value: window.location.origin + window.location.pathname + q, visible: true, __type__: 'update'})"
    )
    for control in view:
        control.change(rerender, [exploration, *view], outputs(Redraw, components), api_visibility="private", show_progress="hidden")
    attribute_button.click(
        attribute_view, [image, model, target, method, noise, colorscale, opacity], attribution,
        api_name="attribute", preprocess=False, concurrency_limit=1,
    )  # fmt: skip
    knock_button.click(
        knockout_view,
        [image, model, target, knock],
        outputs(KnockoutView, components),
        api_name="ablate",
        preprocess=False,
        concurrency_limit=2,
    )
    scope_branch.click(
        microscope_branch,
        [model, exploration, branch],
        scope_plot,
        api_name="microscope_branch",
        concurrency_limit=1,
        concurrency_id="microscope",
    )
    scope_gallery.click(
        microscope_module, [model, scope_module], scope_plot, api_name="microscope_module", concurrency_limit=1, concurrency_id="microscope"
    )
    scope_special.click(
        microscope_specialization, model, scope_plot, api_name="branch_specialization", concurrency_limit=1, concurrency_id="microscope"
    )

    # classify has no button of its own: an API endpoint for scripts and agents
    hidden_image = gr.Image(visible=False, type="filepath")
    topk = gr.Number(5, visible=False, precision=0)
    classify_json = gr.JSON(visible=False)
    gr.Button(visible=False).click(
        classify, [hidden_image, model, topk], classify_json, api_name="classify", preprocess=False, concurrency_limit=4
    )
    return ExploreTab(
        image=image, target=target, exploration=exploration, colorscale=colorscale, inputs=explore_inputs, outputs=explore_outputs,
        link_outputs=outputs(links.LinkedView, dict(picture=linked_picture, model=model, target=target, kind=kind,
                                                    colorscale=colorscale, opacity=opacity, branch=branch, link_note=link_note)),
        linked_picture=linked_picture,
    )  # fmt: skip


EXAMPLE_VIEW = (TOP_CLASS, "cam", "Inferno", 0.6, DEFAULT_BRANCH)  # the view a cached example is drawn in


def example_view(image, model):
    """A lazily cached example: the default view of the default model (the same call, so the same
    content-cache entry, as :func:`after_example`)."""
    view = cached(explore_view)(image, model, *EXAMPLE_VIEW)
    return view.heads, view.atlas, view.contributions, view.channels, view.summary


def after_example(image, model, target, kind, colorscale, opacity, branch) -> ExploreView:
    """After a cached example is shown: its exploration for the page's state (a content-cache hit),
    re-drawn only if the visitor's view differs from the one the example was drawn in."""
    if image is None:
        return unchanged(ExploreView)
    view = cached(explore_view)(image, model, target, kind, colorscale, opacity, branch)
    if (target, kind, colorscale, float(opacity), branch) == EXAMPLE_VIEW:
        skip = gr.skip()
        return view._replace(heads=skip, atlas=skip, contributions=skip, channels=skip, summary=skip)  # already on screen
    return view


def _example_galleries(galleries, image, default: str, model, components, explore_inputs, explore_outputs) -> None:
    """The example pictures twice: cached lazily (Gradio's ``cache_examples``) while the default model
    is live, plain for any other model (Gradio keys its cache by position, not by model). Either way
    one event chain explores the picture and draws it once."""
    figures = [components[name] for name in ("heads", "atlas", "contributions", "channels", "summary")]
    with_cache, plain = [], []
    for kind_name, label in galleries:
        pictures = examples(kind_name)
        with examples_cache_folder(default, extra=repr(pictures)):
            with_cache.append(
                gr.Examples(
                    [[p, default] for p in pictures], inputs=[image, model], outputs=figures, fn=example_view, label=label,
                    examples_per_page=12, cache_examples=True, cache_mode="lazy", visible_columns=[0], preprocess=False,
                    postprocess=True,
                )
            )  # fmt: skip
        plain.append(gr.Examples(pictures, inputs=image, label=label, examples_per_page=12, visible=False))
        # Outside the queue: a cached answer is a file read (12 ms for four figures) and must not wait
        # behind other visitors' passes; the first, lazy computation of an example happens at most
        # once per example (Gradio locks each), so this stays bounded.
        gr.context.get_blocks_context().fns[with_cache[-1].cache_event["id"]].queue = False
        with_cache[-1].cache_event.then(
            cached(after_example), explore_inputs, explore_outputs, api_visibility="private", preprocess=False,
            concurrency_id="explore", show_progress="hidden",
        )  # fmt: skip
        plain[-1].load_input_event.then(
            cached(explore_on_change), explore_inputs, explore_outputs, api_visibility="private", preprocess=False,
            concurrency_id="explore",
        )  # fmt: skip

    def show(choice):
        on_default = choice == default
        return [gr.update(visible=on_default)] * len(with_cache) + [gr.update(visible=not on_default)] * len(plain)

    model.change(show, model, [e.dataset for e in with_cache + plain], api_visibility="private", queue=False)
