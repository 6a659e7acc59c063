"""The Explore tab: an image → three heads, the branch atlas, contributions, one branch's channels,
the microscope, captum attributions and knock-outs. Handlers first, then the tab's layout.

How the panels stay current and fast (issue 13):
- a new image, model or class recomputes the heads, atlas, contributions and channels in one
  event and clears the panels drawn for the old one (attribution, knock-out, microscope), which
  recompute on their own button;
- every view control answers on ``.input`` (the user's change, never a programmatic one): the
  colour map and the opacity are CSS variables the browser changes with no request (see
  :mod:`explain.render.panels`), the map kind redraws the atlas alone, the open branch redraws the
  channels and moves the atlas outline in the browser;
- the first example is explored while the page is built, so the page arrives with its atlas;
- explorations are cached by content (``ui/caching.py``), examples lazily on disk, and a shared
  link (``ui/links.py``) reopens a view.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import gradio as gr
from PIL import Image

from explain import HEADS, Method
from explain.images import load_image
from explain.microscope.reference import ReferenceMissing, candidate_roots, data_root, fetch_reference
from explain.render.colormaps import COLORSCALES, DEFAULT_SIGNED, DIVERGING
from explain.render.figures import MAP_KINDS, ablation_figure
from explain.render.panels import atlas_html, attribution_html, channels_html, contributions_html, heads_html, note_html

from . import knockout_corners, links, trust_panel
from .caching import cached, examples_cache_folder
from .shared import (
    HUB,
    TOP_CLASS,
    chosen_target,
    examples,
    gpu,
    image_input,
    last_data_folder,
    open_choices,
    outputs,
    settings,
    unchanged,
    user_errors,
)

DEFAULT_BRANCH = "inception4c.branch2"
ATTRIBUTION_HINT = "Press “Attribute” to see which pixels matter for the class explained above."
SCOPE_HINT = ""

# Browser-side view changes: no request, every map panel on the page follows at once.
# Panels carry the colours they were drawn with (an API client gets what it asked for); a change
# here sets the page's default and every panel on it, so old and new panels agree.
JS_COLOURS = """(name) => {
    for (const el of [document.documentElement, ...document.querySelectorAll('.gx-panel')]) {
        el.style.setProperty('--gx-seq', `url(#gx-${name})`);
        el.style.setProperty('--gx-div', `url(#gx-${DIVERGING.includes(name) ? name : SIGNED})`);
    }
}"""
JS_OPACITY = """(value) => {
    for (const el of [document.documentElement, ...document.querySelectorAll('.gx-panel')]) el.style.setProperty('--gx-opacity', value);
}"""
JS_OUTLINE = """(branch) => {
    for (const cell of document.querySelectorAll('#atlas-plot .gx-cell')) cell.classList.toggle('gx-open', cell.dataset.branch === branch);
}"""


class ExploreView(NamedTuple):
    exploration: Any
    heads: Any
    atlas: Any
    contributions: Any
    channels: Any
    summary: Any
    target: Any
    branch: Any
    caution: Any


class AtlasView(NamedTuple):
    atlas: Any


class BranchView(NamedTuple):
    channels: Any
    summary: Any


class Cleared(NamedTuple):
    """What was drawn for the previous image, model or class, until its button is pressed again."""

    attribution: Any
    knock_plot: Any
    knock_table: Any
    scope_plot: Any
    scope_note: Any


class KnockoutView(NamedTuple):
    knock_plot: Any
    knock_table: Any


class ScopeView(NamedTuple):
    scope_plot: Any
    scope_note: Any


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
    """One pass, then every view of it: heads, atlas, contributions, the chosen branch's channels,
    as HTML panels (:mod:`explain.render.panels`) drawn in ``colorscale`` and ``opacity`` (the page then
    changes those in the browser, without a request)."""
    explorer = HUB.explorer(model)
    valid = _valid_target(target, explorer.loaded.classes)  # e.g. an ImageNet class after switching to CIFAR
    picture = load_image(image_input(image))
    exploration = explorer.explore(picture, target if valid else None)
    if branch not in exploration.spec.branch_names:
        branch = max(exploration.shares, key=exploration.shares.get)
    return ExploreView(
        exploration=exploration,
        heads=heads_html(exploration),
        atlas=atlas_html(exploration, kind, colorscale, float(opacity), highlight=branch),
        contributions=contributions_html(exploration),
        channels=channels_html(exploration, branch, 16, colorscale),
        summary=summary_text(exploration, branch),
        target=exploration.target_name if valid and target != TOP_CLASS else TOP_CLASS,
        branch=branch,
        caution=caution_text(explorer.loaded, picture),
    )


def _valid_target(target, classes) -> bool:
    """A class name of this model, or its index as text (API callers)."""
    if target in classes:
        return True
    return isinstance(target, str) and target.isdigit() and int(target) < len(classes)


def explore_on_change(image, model, target, kind, colorscale, opacity, branch) -> ExploreView:
    """The image, model or class changed: explore again; a cleared image is no error.
    (Named parameters, not ``*args``: ``gr.cache`` calls the function with keywords.)"""
    if image is None:
        return unchanged(ExploreView)
    # one content cache for the button, the picture and the examples
    return cached(explore_view)(image, model, target, kind, colorscale, opacity, branch)


def caution_text(loaded, picture: Image.Image) -> str:
    """One line when a photo meets a 32×32 CIFAR model: it will be shrunk and forced into 10 classes."""
    if loaded.input_size > 64 or max(picture.size) <= 2 * loaded.input_size:
        return ""
    return (
        f"⚠️ **{loaded.name}** knows {len(loaded.classes)} classes ({', '.join(loaded.classes[:4])}, …) at "
        f"{loaded.input_size}×{loaded.input_size}: this {picture.width}×{picture.height} photo is shrunk to "
        f"{loaded.input_size}×{loaded.input_size} and must be called one of them. For photos, use ImageNet weights (see the banner)."
    )


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


def _current(exploration, image, model, target):
    """The exploration on screen: the session's, else the explorer's cached one (the first page
    is drawn while the app starts, before any session has an exploration of its own)."""
    if exploration is not None:
        return exploration
    if image is None:
        return None
    explorer = HUB.explorer(model)
    valid = _valid_target(target, explorer.loaded.classes) and target != TOP_CLASS
    return explorer.explore(load_image(image_input(image)), target if valid else None)


@user_errors
def redraw_atlas(exploration, image, model, target, kind, colorscale, opacity, branch) -> AtlasView:
    """Another map kind: the atlas alone, from the cached exploration (no new pass)."""
    exploration = _current(exploration, image, model, target)
    if exploration is None:
        return unchanged(AtlasView)
    branch = branch if branch in exploration.spec.branch_names else None
    return AtlasView(atlas=atlas_html(exploration, kind, colorscale, float(opacity), highlight=branch))


@user_errors
def open_branch(exploration, image, model, target, colorscale, branch) -> BranchView:
    """Another branch: its channels and the summary, from the cached exploration (the atlas
    outline moves in the browser)."""
    exploration = _current(exploration, image, model, target)
    if exploration is None or branch not in exploration.spec.branch_names:
        return unchanged(BranchView)
    return BranchView(channels=channels_html(exploration, branch, 16, colorscale), summary=summary_text(exploration, branch))


def clear_results() -> Cleared:
    return Cleared(attribution=note_html(ATTRIBUTION_HINT), knock_plot=None, knock_table="", scope_plot=None, scope_note=SCOPE_HINT)


def target_choices(model) -> Any:
    """The class list of a newly picked model (the top class stays selected)."""
    try:
        classes = HUB.loaded(model).classes
    except ValueError:
        return gr.skip()
    return gr.update(choices=[TOP_CLASS, *classes], value=TOP_CLASS)


@user_errors
@gpu
def attribute_view(image, model, target, method_label, noise_tunnel, colorscale, opacity, progress=gr.Progress()):
    method = next((m for m in Method if m.label == method_label), None) or Method(method_label)
    explorer = HUB.explorer(model)
    picture = load_image(image_input(image))  # decoded once, for the attribution and the overlay
    result = explorer.attribute(picture, method, chosen_target(target), bool(noise_tunnel), progress=lambda f, msg: progress(f, desc=msg))
    return attribution_html(result, explorer.prepare(picture)[1], colorscale, float(opacity))


@user_errors
@gpu
def knockout_view(image, model, target, branches) -> KnockoutView:
    if not branches:
        raise gr.Error("pick one or more branches (or whole modules) to knock out")
    sets = list(branches) + ([list(branches)] if len(branches) > 1 else [])
    ablation = HUB.explorer(model).ablate(image_input(image), sets, chosen_target(target))
    return KnockoutView(knock_plot=ablation_figure(ablation), knock_table=knockout_table(ablation))


def knockout_table(ablation) -> str:
    """Per head: p(target) before and after each knock-out, and the top class after it."""
    heads = [h for h in HEADS if h in ablation.baseline_probability]
    rows = [f"| knocked out | {' | '.join(heads)} |", "|---|" + "---|" * len(heads)]
    before = [f"p {ablation.baseline_probability[h]:.1%} · top: {ablation.baseline[h][0].label}" for h in heads]
    rows.append("| (nothing) | " + " | ".join(before) + " |")
    for k in ablation.knockouts:
        cells = [f"p {k.target_probability[h]:.1%} ({k.delta[h]:+.1%}) · top: {k.predictions[h][0].label}" for h in heads]
        rows.append(f"| {k.label} | " + " | ".join(cells) + " |")
    return f"p = probability of “{ablation.target_name}” per head (change in brackets); top = the head's top class:\n\n" + "\n".join(rows)


def _scope_roots(model, train_folder) -> list[Path]:
    """Where the Microscope looks (explain.microscope.reference): on a public server the Train tab holds a
    dataset name, turned into the operator's folder; a name it does not know adds nothing."""
    rules = settings()
    folder = train_folder
    if rules.public:
        try:
            folder = rules.dataset(train_folder)
        except ValueError:
            folder = None
    elif not folder:  # an API client that sends no folder: the page's default, the last run's data
        folder = last_data_folder()
    return candidate_roots(HUB.loaded(model), folder)


@user_errors
@gpu
def microscope_branch(model, exploration, image, target, branch, train_folder, progress=gr.Progress()) -> ScopeView:
    """The open branch's most active channels (on this image): visualization + dataset examples."""
    exploration = _current(exploration, image, model, target)
    if exploration is None:
        raise gr.Error("explore an image first: the channels shown are the ones it excites most")
    if branch not in exploration.activations:
        raise gr.Error(f"unknown branch {branch!r} for this model")
    act = exploration.activations[branch].mean(dim=(1, 2))
    channels = act.argsort(descending=True)[:6].tolist()
    scope = HUB.microscope(model, _scope_roots(model, train_folder))
    view = scope.branch_view(branch, channels, progress=lambda f, msg: progress(f, desc=msg))
    return ScopeView(scope_plot=view.figure, scope_note=_note(view.note))


@user_errors
@gpu
def microscope_module(model, exploration, image, target, module, train_folder, progress=gr.Progress()) -> ScopeView:
    scope = HUB.microscope(model, _scope_roots(model, train_folder))
    current = _current(exploration, image, model, target)
    view = scope.module_gallery(
        module, progress=lambda f, msg: progress(f, desc=msg), activations=current.activations if current is not None else None
    )
    return ScopeView(scope_plot=view.figure, scope_note=_note(view.note))


@user_errors
@gpu
def microscope_specialization(model, train_folder, progress=gr.Progress()) -> ScopeView:
    scope = HUB.microscope(model, _scope_roots(model, train_folder))
    try:
        figure = scope.specialization(lambda f, msg: progress(f, desc=msg))
    except ReferenceMissing as missing:  # said on the page, not as an error: nothing is broken
        return ScopeView(scope_plot=None, scope_note=_note(str(missing)))
    return ScopeView(scope_plot=figure, scope_note="")


@user_errors
def get_reference_images(model, progress=gr.Progress(track_tqdm=True)) -> ScopeView:
    """Download the reference set that suits the model (torchvision's checksummed downloaders)."""
    if not settings().downloads:
        note = "Downloads are off on this server (the operator's GOOGLENET_DOWNLOADS): dataset examples need a data folder the operator provides."
        return ScopeView(scope_plot=gr.skip(), scope_note=_note(note))
    try:
        root = fetch_reference(HUB.loaded(model), lambda f, msg: progress(f, desc=msg))
    except ReferenceMissing as missing:
        return ScopeView(scope_plot=gr.skip(), scope_note=_note(str(missing)))
    return ScopeView(
        scope_plot=gr.skip(), scope_note=f"✅ Reference images are in `{root}`: open a branch, a gallery or the specialization again."
    )


def _note(text: str) -> str:
    return f"ℹ️ {text}" if text else ""


# -- layout ------------------------------------------------------------------------------------


@dataclass
class ExploreTab:
    """The components other tabs and the page wire to."""

    image: gr.Image
    target: gr.Dropdown
    exploration: gr.State
    colorscale: gr.Dropdown
    opacity: gr.Slider
    branch: gr.Dropdown
    scope_buttons: dict
    scope_module: gr.Dropdown
    scope_outputs: list
    inputs: list
    outputs: list
    link_outputs: list
    linked_picture: gr.State


def build(model: gr.Dropdown, default: str) -> ExploreTab:
    """The Explore tab's components and events (call inside ``gr.Tab``)."""
    loaded = HUB.loaded(default)
    spec = loaded.spec
    methods = [m.label for m in Method]
    cifar_first = loaded.input_size <= 64
    first = sorted(examples("cifar" if cifar_first else "photos"), key=lambda p: "cat" not in Path(p).name) or [None]
    initial = _initial_view(first[0], default)
    exploration = gr.State(None, time_to_live=1800)
    linked_picture = gr.State(None)  # the example a shared link asks for, set after the link's class and branch
    with gr.Row():
        with gr.Column(scale=1, min_width=300):
            image = gr.Image(
                first[0], label="Image", sources=["upload", "webcam", "clipboard"], type="filepath", height=280, elem_id="input-image"
            )
            galleries = []  # (cached on the default model, plain for any other model)
            for kind_name in ("cifar", "photos") if cifar_first else ("photos", "cifar"):
                if examples(kind_name):
                    label = "CIFAR-10-style examples (32×32)" if kind_name == "cifar" else "Photos"
                    galleries.append((kind_name, label))
            target = open_choices(
                gr.Dropdown(
                    [TOP_CLASS, *loaded.classes],
                    value=TOP_CLASS,
                    label="Explain which class",
                    filterable=True,
                    allow_custom_value=True,
                    elem_id="target-class",
                )  # fmt: skip
            )
            run = gr.Button("Explore", variant="primary", elem_id="explore-button")
            with gr.Accordion("View", open=True):
                info = "; ".join(f"{k}: {v}" for k, v in MAP_KINDS.items())
                kind = gr.Radio(list(MAP_KINDS), value="cam", label="Atlas shows", info=info)
                corner_mode = knockout_corners.corner_control()
                colorscale = gr.Dropdown(
                    list(COLORSCALES), value="Inferno", label="Colour map",
                    info="RdBu, PuOr, PiYG and BrBG are diverging; a signed map uses RdBu unless one of them is chosen",
                )  # fmt: skip
                opacity = gr.Slider(0, 1, value=0.6, step=0.05, label="Map opacity over the image")
                branch = gr.Dropdown(list(spec.branch_names), value=DEFAULT_BRANCH, label="Branch to open", filterable=True)
                share = gr.Button("Link to this view", size="sm", elem_id="share-view")
                link = gr.Textbox(label="Link to this view", buttons=["copy"], visible=False, elem_id="share-link")
                link_note = gr.Markdown(elem_id="share-note", label="Link note")
        with gr.Column(scale=3):
            caution = gr.Markdown(initial.caution if initial else "", label="Caution", elem_id="photo-caution")
            heads = gr.HTML(
                _value(initial, "heads"),
                label="Predictions: main head and the two auxiliary classifiers",
                elem_id="heads-plot",
                js_on_load=None,
            )
            summary = gr.Markdown(_value(initial, "summary"), label="Summary", elem_id="explore-summary")
            atlas = gr.HTML(_value(initial, "atlas"), label="Branch atlas: modules × branches", elem_id="atlas-plot", js_on_load=None)
            contributions = gr.HTML(
                _value(initial, "contributions"), label="Contribution per branch", elem_id="contributions-plot", js_on_load=None
            )
            channels = gr.HTML(_value(initial, "channels"), label="Channels of the open branch", elem_id="channels-plot", js_on_load=None)
            with gr.Accordion("Microscope: what do these channels look for?", open=False, elem_id="microscope"):
                gr.Markdown(
                    "Feature visualization (activation maximisation, Olah et al. 2017) of the open branch's most active channels, "
                    "each followed by the dataset images that excite it most; a gallery per module; and how the four branches "
                    "specialise. Feature visualization needs no data. Dataset examples come from the first of: the data folder "
                    f"the app was started with (`--data`, now `{data_root()}`), the folder the model was trained on, the Train tab's "
                    "folder, or the reference images downloaded with the button below. The first call indexes them (seconds on "
                    "a CPU, then cached)."
                )
                with gr.Row():
                    scope_branch = gr.Button("Open branch: top channels", elem_id="scope-branch")
                    scope_module = gr.Dropdown(list(spec.module_names), value="inception4c", label="Module", scale=1)
                    scope_gallery = gr.Button("Module gallery", elem_id="scope-gallery")
                    scope_special = gr.Button("Branch specialization", elem_id="scope-special")
                    scope_fetch = gr.Button("Get reference images", elem_id="scope-fetch")
                scope_note = gr.Markdown("", label="Microscope note", elem_id="scope-note")
                scope_plot = gr.Plot(show_label=False, label="Microscope", elem_id="microscope-plot")
    with gr.Row():
        with gr.Column():
            gr.Markdown("### Which pixels matter? (captum input attribution)")
            method = gr.Radio(
                [(f"{label} (caution: edges more than the model)" if label == Method.GUIDED_GRADCAM.label else label, label) for label in methods],
                value=methods[0], label="Method", info="“Can I trust this map?” below tests the map you see",
            )  # fmt: skip
            noise = gr.Checkbox(False, label="Smooth with NoiseTunnel (SmoothGrad; slower)")
            attribute_button = gr.Button("Attribute", elem_id="attribute-button")
            attribution = gr.HTML(note_html(ATTRIBUTION_HINT), label="Attribution", elem_id="attribution-panel", js_on_load=None)
        with gr.Column():
            gr.Markdown("### Knock branches out (a causal check)")
            knock = gr.Dropdown(
                list(spec.branch_names) + list(spec.module_names), multiselect=True, label="Branches or whole modules to zero",
                elem_id="knock-choice",
            )  # fmt: skip
            knock_button = gr.Button("Knock out", elem_id="knock-button")
            knock_plot = gr.Plot(show_label=False, label="Change of the target's probability", elem_id="knock-plot")
            knock_table = gr.Markdown(label="Knock-out table", elem_id="knock-table")
    trust_panel.build(image, model, target, method)  # full width: its curves need the room

    components = dict(
        exploration=exploration, heads=heads, atlas=atlas, contributions=contributions, channels=channels,
        summary=summary, target=target, branch=branch, caution=caution, attribution=attribution,
        knock_plot=knock_plot, knock_table=knock_table, scope_plot=scope_plot, scope_note=scope_note,
    )  # fmt: skip
    explore_inputs = [image, model, target, kind, colorscale, opacity, branch]
    explore_outputs = outputs(ExploreView, components)
    cleared = outputs(Cleared, components)
    quiet = dict(api_visibility="private", queue=False, show_progress="hidden")
    run.click(
        cached(explore_view), explore_inputs, explore_outputs, api_name="explore", preprocess=False, concurrency_limit=2,
        concurrency_id="explore",
    )  # fmt: skip
    # A new image (whatever set it), model or class: everything drawn for the old one goes.
    for trigger in (image.change, model.change, target.input):
        trigger(clear_results, None, cleared, **quiet)
    model.change(target_choices, model, target, **quiet)
    # The visitor's own picture (upload, webcam, paste, clear), another model or class explore again.
    # Pictures the app sets (examples, a shared link) are explored by their own events, so a cached
    # example is drawn once, not twice.
    for trigger in (image.input, model.change, target.input):
        trigger(
            cached(explore_on_change), explore_inputs, explore_outputs, api_visibility="private", preprocess=False,
            concurrency_id="explore", trigger_mode="always_last", show_progress="minimal",
        )  # fmt: skip
    _example_galleries(galleries, image, default, model, components, explore_inputs, explore_outputs)
    share.click(links.share_view, explore_inputs, [link, link_note], api_visibility="private").then(
        None, link, link, js="(q) => ({value: window.location.origin + window.location.pathname + q, visible: true, __type__: 'update'})"
    )
    # View controls: colours and opacity in the browser, the kind and branch from the cached pass.
    js_colours = JS_COLOURS.replace("DIVERGING", json.dumps(list(DIVERGING))).replace("SIGNED", json.dumps(DEFAULT_SIGNED))
    colorscale.input(None, colorscale, None, js=js_colours)
    opacity.input(None, opacity, None, js=JS_OPACITY)
    seen = [exploration, image, model, target]
    # Redraws from the cached pass take milliseconds: a plain request (queue=False) answers them
    # without the queue's join/stream round trips.
    redraw = dict(api_visibility="private", preprocess=False, show_progress="hidden", queue=False)
    kind.input(redraw_atlas, [*seen, kind, colorscale, opacity, branch], outputs(AtlasView, components), **redraw)
    branch.input(None, branch, None, js=JS_OUTLINE)
    knockout_corners.wire(atlas, contributions, corner_mode, seen, [kind, colorscale, opacity, branch])
    branch.input(open_branch, [*seen, colorscale, branch], outputs(BranchView, components), **redraw)
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

    # classify has no button of its own: an API endpoint for scripts and agents
    hidden_image = gr.Image(visible=False, type="filepath", label="image")
    topk = gr.Number(5, visible=False, precision=0, label="topk")
    classify_json = gr.JSON(visible=False, label="predictions")
    gr.Button(visible=False).click(
        classify, [hidden_image, model, topk], classify_json, api_name="classify", preprocess=False, concurrency_limit=4
    )
    return ExploreTab(
        image=image, target=target, exploration=exploration, colorscale=colorscale, opacity=opacity, branch=branch,
        scope_buttons=dict(branch=scope_branch, gallery=scope_gallery, special=scope_special, fetch=scope_fetch),
        scope_module=scope_module, scope_outputs=outputs(ScopeView, components), inputs=explore_inputs, outputs=explore_outputs,
        link_outputs=outputs(links.LinkedView, dict(picture=linked_picture, model=model, target=target, kind=kind,
                                                    colorscale=colorscale, opacity=opacity, branch=branch, link_note=link_note)),
        linked_picture=linked_picture,
    )  # fmt: skip


def wire_microscope(tab: ExploreTab, model: gr.Dropdown, train_folder: gr.Textbox) -> None:
    """The Microscope's events; called once the Train tab (whose data folder it reads) exists."""
    image, target, exploration, branch = tab.image, tab.target, tab.exploration, tab.branch
    buttons, out = tab.scope_buttons, tab.scope_outputs
    scope = dict(concurrency_limit=1, concurrency_id="microscope", preprocess=False)
    buttons["branch"].click(
        microscope_branch, [model, exploration, image, target, branch, train_folder], out, api_name="microscope_branch", **scope
    )
    buttons["gallery"].click(
        microscope_module, [model, exploration, image, target, tab.scope_module, train_folder], out, api_name="microscope_module", **scope
    )
    buttons["special"].click(microscope_specialization, [model, train_folder], out, api_name="branch_specialization", **scope)
    buttons["fetch"].click(get_reference_images, model, out, api_name="get_reference_images", concurrency_limit=1)


def _initial_view(picture: str | None, model: str) -> ExploreView | None:
    """The first example explored while the page is built: every visitor sees the network at work
    at once, with no request (the first request after a cold start costs most)."""
    if picture is None:
        return None
    try:
        return cached(explore_view)(picture, model, *EXAMPLE_VIEW)  # the content cache the page load reads
    except gr.Error:
        return None


def _value(view: ExploreView | None, field: str):
    return getattr(view, field) if view is not None else None


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
                    postprocess=True, elem_id=f"examples-{kind_name}",
                )
            )  # fmt: skip
        plain.append(
            gr.Examples(pictures, inputs=image, label=label, examples_per_page=12, visible=False, elem_id=f"examples-{kind_name}-plain")
        )
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
