"""Tools for agents: what an assistant calls over MCP (``python app.py --mcp`` or
``GRADIO_MCP_SERVER=True``; the server is at ``/gradio_api/mcp``) and scripts call by API name.

MCP passes images through and turns every other output into text, so these tools answer with a
PNG and a small JSON summary, never plotly JSON. Each docstring is the tool's description: it
tells the agent what the tool does and what each argument means (Gradio reads the ``Args:``
section). The UI's own endpoints (plotly figures, training, uploads) stay in the API but are kept
out of the MCP tool list by :func:`keep_to_agent_tools`.

Tools: ``classify`` (the Explore tab's, ``/classify``), ``explore`` (``/explore_atlas``),
``attribute`` (``/attribute_map``), ``knock_out`` (``/knock_out``), ``trust_map`` (``/trust_map``:
explain/trust/report.py's sanity checks and faithfulness scores), ``train_status``.
"""

from __future__ import annotations

import json
import threading
from typing import Any, NamedTuple

import gradio as gr

from explain import Method
from explain.images import load_image
from explain.render.snapshot import ablation_summary, atlas_image, attribution_summary, exploration_summary, overlay_image
from explain.trust.report import trust_report

from .shared import HUB, chosen_target, gpu, image_input, outputs, user_errors

__all__ = ["explore", "attribute", "knock_out", "trust_map", "build", "keep_to_agent_tools", "AGENT_ENDPOINTS"]

# API names of the endpoints listed as MCP tools.
AGENT_ENDPOINTS = ("/classify", "/explore_atlas", "/attribute_map", "/knock_out", "/trust_map")
# Gradio 6.31's MCP server hands a queued tool's outputs over as one text (``[result]`` in
# gradio/mcp.py ``_execute_tool_without_progress``), which would turn the PNG into a file path:
# these tools run outside the queue, and this bounds them as the queue would (2 passes at a time,
# the UI's explore limit on 2 cores).
_PASSES = threading.BoundedSemaphore(2)


class Picture(NamedTuple):
    picture: Any
    summary: Any


@user_errors
@gpu
def explore(image, model: str = "", target: str = "", kind: str = "cam") -> Picture:
    """See inside GoogLeNet (Inception v1) for one image: the predictions of its main head and of its two auxiliary heads, and where each of the 36 Inception branches (9 modules x 4 branches) finds evidence for a class.

    Args:
        image: the picture to explore (a URL or an uploaded file).
        model: which weights: "" for the server's default, or a value from the app's model list such as "bundled" (a small CIFAR-10 model), "imagenet" or "random".
        target: the class to explain, by name (e.g. "cat") or index; "" explains the main head's top class.
        kind: what the atlas maps show: "cam" (Grad-CAM, positive evidence for the class), "signed" (red for, blue against) or "activation" (mean activation, whatever the class).

    Returns:
        a PNG of the branch atlas (modules inception3a..inception5b left to right, branch1..branch4 top to bottom, each cell's corner giving the branch's share of its module's evidence) and a JSON summary (text): top-5 per head, the class explained, the strongest branches and every branch's share.
    """
    explorer = HUB.explorer(model or None)
    with _PASSES:
        exploration = explorer.explore(image_input(image), chosen_target(target))
    return Picture(picture=atlas_image(exploration, kind), summary=_json(exploration_summary(exploration)))


@user_errors
@gpu
def attribute(image, model: str = "", target: str = "", method: str = "Integrated Gradients", noise_tunnel: bool = False) -> Picture:
    """Which pixels of the image made GoogLeNet's main head choose a class, with captum's input attribution methods.

    Args:
        image: the picture (a URL or an uploaded file).
        model: "" for the server's default, or a value from the app's model list ("bundled", "imagenet", "random", ...).
        target: the class to explain, by name or index; "" for the main head's top class.
        method: "Integrated Gradients", "Saliency", "Occlusion" or "Guided Grad-CAM".
        noise_tunnel: average the attribution over noisy copies of the image (SmoothGrad): smoother, about 10 times slower.

    Returns:
        a PNG of the attribution over the picture (red: pixels that raise the class's score, blue: lower it) and a JSON summary (method, class, where it peaks, how concentrated it is, seconds taken).
    """
    chosen = next((m for m in Method if m.label == method), None)
    if chosen is None:
        chosen = Method(method) if method in {m.value for m in Method} else None
    if chosen is None:
        raise ValueError(f"unknown method {method!r}; expected one of {[m.label for m in Method]}")
    explorer = HUB.explorer(model or None)
    picture = load_image(image_input(image))
    with _PASSES:
        result = explorer.attribute(picture, chosen, chosen_target(target), bool(noise_tunnel))
    overlay = overlay_image(explorer.prepare(picture)[1], result.map.float(), signed=True)
    return Picture(picture=overlay, summary=_json(attribution_summary(result)))


@user_errors
@gpu
def knock_out(image, model: str = "", target: str = "", branches: list[str] | None = None) -> str:
    """Zero Inception branches or whole modules and report how GoogLeNet's three heads (main, aux1, aux2) change: a causal check of what the branches contribute.

    Args:
        image: the picture (a URL or an uploaded file).
        model: "" for the server's default, or a value from the app's model list.
        target: the class whose probability is followed, by name or index; "" for the main head's top class.
        branches: what to knock out, each a branch such as "inception4c.branch2" or a whole module such as "inception5a"; each is removed on its own, and all of them together when there are several.

    Returns:
        JSON: the class's probability and top class per head before, and after each knock-out, with the change.
    """
    if not branches:
        raise ValueError("name one or more branches (e.g. 'inception4c.branch2') or modules (e.g. 'inception5a') to knock out")
    branches = [branches] if isinstance(branches, str) else list(branches)
    sets = branches + ([branches] if len(branches) > 1 else [])
    explorer = HUB.explorer(model or None)
    with _PASSES:
        ablation = explorer.ablate(image_input(image), sets, chosen_target(target))
    return _json(ablation_summary(ablation))


@user_errors
@gpu
def trust_map(image, model: str = "", target: str = "", method: str = "integrated_gradients", road: bool = False) -> str:
    """Can an attribution map be trusted? Runs sanity checks and faithfulness scores for one image, class and method on GoogLeNet.

    Args:
        image: the picture (a URL or an uploaded file).
        model: "" for the server's default, or a value from the app's model list.
        target: the class whose map is checked, by name or index; "" for the main head's top class.
        method: "integrated_gradients", "saliency", "occlusion", "guided_gradcam" or "gradcam" (Grad-CAM at inception5b, upsampled).
        road: also run ROAD (noisy linear imputation; about doubles the time).

    Returns:
        JSON with the keys of `python -m explain.trust`: the model-parameter randomisation test (Adebayo et al. 2018; Spearman rank correlation and SSIM after each cascading step from fc down to conv1: a map that stays similar does not depend on what the model learned), deletion and insertion AUCs against random pixels, random regions and a centre blob (Petsiuk et al. 2018; lower deletion and higher insertion are better; `beats_random_baseline` says whether the map beat the random map of its own resolution), ROAD when asked, the rank correlation of the branches' first-order contributions with real knock-outs, and a one-line verdict in plain words.
    """
    explorer = HUB.explorer(model or None)
    picture = load_image(image_input(image))
    with _PASSES:
        report = trust_report(explorer, picture, method, chosen_target(target), independent=False, road=bool(road))
    return _json(report.to_json())


def _json(summary: dict) -> str:
    """JSON text: MCP turns a non-image output into text, and Gradio's JSON component would arrive as a Python repr."""
    return json.dumps(summary, ensure_ascii=False, indent=1)


def build(spec) -> None:
    """Hidden components and the agent endpoints (call inside ``gr.Blocks``; nothing is shown)."""
    image = gr.Image(visible=False, type="filepath", label="image")
    model = gr.Textbox("", visible=False, label="model")
    target = gr.Textbox("", visible=False, label="target")
    kind = gr.Radio(["cam", "signed", "activation"], value="cam", visible=False, label="kind")
    method = gr.Radio([m.label for m in Method], value=Method.INTEGRATED_GRADIENTS.label, visible=False, label="method")
    noise = gr.Checkbox(False, visible=False, label="noise_tunnel")
    names = list(spec.branch_names) + list(spec.module_names)
    branches = gr.Dropdown(names, value=[], multiselect=True, visible=False, label="branches")
    picture = gr.Image(visible=False, type="numpy", format="png", label="picture")
    summary = gr.Textbox(visible=False, label="summary")
    components = dict(picture=picture, summary=summary)
    gr.Button(visible=False).click(
        explore, [image, model, target, kind], outputs(Picture, components),
        api_name="explore_atlas", preprocess=False, queue=False,
    )  # fmt: skip
    gr.Button(visible=False).click(
        attribute, [image, model, target, method, noise], outputs(Picture, components),
        api_name="attribute_map", preprocess=False, queue=False,
    )  # fmt: skip
    gr.Button(visible=False).click(
        knock_out, [image, model, target, branches], summary, api_name="knock_out", preprocess=False, queue=False
    )
    method_name = gr.Textbox("integrated_gradients", visible=False, label="method")
    road = gr.Checkbox(False, visible=False, label="road")
    gr.Button(visible=False).click(
        trust_map, [image, model, target, method_name, road], summary, api_name="trust_map", preprocess=False, queue=False
    )


def keep_to_agent_tools(demo: gr.Blocks, endpoints: tuple[str, ...] = AGENT_ENDPOINTS) -> list[str]:
    """Keep every other endpoint out of the MCP tool list (they stay in the API): Gradio lists as
    tools only functions without an ``_mcp_type`` other than ``"tool"`` (gradio/mcp.py, 6.x), so
    the UI's functions get ``"ui"``. Returns the endpoints left as tools."""
    kept = []
    for block_fn in demo.fns.values():
        if block_fn.fn is None or block_fn.api_visibility != "public" or not block_fn.api_name:
            continue
        if f"/{block_fn.api_name}" in endpoints:
            kept.append(f"/{block_fn.api_name}")
        elif getattr(block_fn.fn, "_mcp_type", None) is None:
            block_fn.fn._mcp_type = "ui"
    return kept
