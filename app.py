"""GoogLeNet Explorer: see inside GoogLeNet (Inception v1). Gradio layout and wiring only.

The work is done by ``googlenet`` (model, weights, training) and ``explain`` (explorations,
attributions, figures); each tab lives in ``ui/`` as plain handler functions (importable and
testable without a server) and one builder that creates and wires its components.
``python app.py [--weights SOURCE] [--data DIR] [--host 127.0.0.1 --port 7860] [--public] [--mcp] [--training off|owner|open] …``
(the operator's settings: ``server/settings.py`` and the README's table).
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

import gradio as gr

from explain.render.panels import PANEL_CSS, colormap_defs
from server.jobs import limit_malloc_arenas
from server.settings import Settings, add_arguments, from_environment
from ui import agents, architecture_tab, compare_tab, explore_tab, links, timeline_tab, train_tab
from ui.caching import cached
from ui.shared import (
    ASSETS,
    HUB,
    JOB,
    banner,
    configure,
    current_visitor,
    model_choices_update,
    open_choices,
    outputs,
    settings,
    user_errors,
    visitors,
)  # fmt: skip

__all__ = ["build", "main", "launch_options", "ASSETS", "HUB", "JOB", "CSS"]

log = logging.getLogger("googlenet-explorer")

# 32×32 CIFAR pictures would show as stamps: draw them large, with crisp pixels. The map panels'
# styles (explain.render.panels) are the page's once, not re-sent with every atlas.
CSS = "#input-image img, #compare-image img { image-rendering: pixelated; min-width: 70%; object-fit: contain; }\n" + PANEL_CSS

INTRO = """# GoogLeNet Explorer
See inside GoogLeNet (Inception v1, [Szegedy et al. 2015](https://arxiv.org/abs/1409.4842)): what each of the 9 Inception modules × 4 branches responds to, how it pushes the decision, and what the two auxiliary classifiers would have said. Train your own on CIFAR-10, CIFAR-100 or your own pictures, watch how it learned, check which explanations to trust."""


@user_errors
def upload_checkpoint(file, request: gr.Request = None):
    """A checkpoint from the visitor: this project's .safetensors or a torchvision state dict. On a
    public server it is this visitor's (listed to them only, within their quota)."""
    if file is None:
        return gr.skip(), gr.skip()
    path = file if isinstance(file, str) else file.get("path") if isinstance(file, dict) else getattr(file, "name", None)
    name = Path(file.get("orig_name") or path).name if isinstance(file, dict) else Path(path).name
    owner = current_visitor(request)[0].key if settings().public else None
    choice = HUB.add_upload(path, name, owner=owner)
    return model_choices_update(choice), banner(choice)


def build(rules: Settings | None = None) -> gr.Blocks:
    """The page. ``rules``: the operator's settings (default: those configured, else the environment)."""
    rules = configure(rules) if rules is not None else settings()
    default = HUB.default()
    # Gradio's cache (uploaded pictures, drawn figures): swept every 10 minutes of what is older than
    # the retention (a day locally); run history off unless the operator turns it on (README).
    hours = rules.retention_hours or 24
    with gr.Blocks(title="GoogLeNet Explorer", delete_cache=(600, int(min(hours, 24) * 3600))) as demo:
        # The visitor's signed identity, kept in the browser (server/visitors.py); the key that encrypts
        # it in localStorage is derived from the server's secret so it survives restarts.
        token = gr.BrowserState(None, storage_key="googlenet-explorer-visitor", secret=visitors().browser_secret())
        gr.HTML(colormap_defs(), elem_id="colormap-defs", js_on_load=None)  # the colouring filters every map panel uses
        gr.Markdown(INTRO)
        with gr.Row(equal_height=True):
            model = open_choices(
                gr.Dropdown(
                    HUB.choices(), value=default, label="Model", scale=3, interactive=True, elem_id="model-picker", allow_custom_value=True
                )
            )
            refresh = gr.Button("↻ Refresh list", scale=0, min_width=120)
            upload = gr.UploadButton(
                "⬆ Upload a checkpoint (.safetensors, or a torchvision .pth/.pt/.bin state dict)",
                file_types=[".safetensors", ".pth", ".pt", ".bin"], scale=2, elem_id="upload-checkpoint",
            )  # fmt: skip
        live = gr.Markdown(banner(default), elem_id="banner", label="Live weights")

        with gr.Tabs():
            with gr.Tab("Explore", id="explore"):
                explore = explore_tab.build(model, default)
            with gr.Tab("Compare", id="compare"):
                compare_models = list(compare_tab.build(default))
            with gr.Tab("Train", id="train"):
                whoami, train_folder = train_tab.build(model, token)
            with gr.Tab("Timeline", id="timeline") as timeline_page:
                timeline = timeline_tab.build()
            with gr.Tab("Architecture", id="architecture"):
                architecture = architecture_tab.build(default)
        explore_tab.wire_microscope(explore, model, train_folder)

        model.change(banner, model, live, api_visibility="private", queue=False).then(
            architecture_tab.architecture_view, model, architecture, api_visibility="private"
        )
        refresh.click(model_choices_update, model, model, api_visibility="private").then(
            compare_tab.visitor_choices, compare_models, compare_models, api_visibility="private", queue=False
        )
        # the run lists, as this visitor may see them, whenever the Timeline tab opens
        timeline_page.select(timeline_tab.run_choices, timeline.lists, timeline.lists, api_visibility="private", queue=False)
        upload.upload(upload_checkpoint, upload, [model, live], api_name="upload_checkpoint")
        agents.build(HUB.loaded(default).spec)
        # Who is here (their own runs and uploads join the model list), then the shared view of the
        # address if any, then the exploration it asks for (the first example is drawn with the page).
        demo.load(
            train_tab.identify, token, outputs(train_tab.Identity, dict(token=token, whoami=whoami)), api_visibility="private", queue=False
        ).then(model_choices_update, model, model, api_visibility="private", queue=False).then(
            compare_tab.visitor_choices, compare_models, compare_models, api_visibility="private", queue=False
        ).then(timeline_tab.run_choices, timeline.lists, timeline.lists, api_visibility="private", queue=False)
        demo.load(links.open_link, None, explore.link_outputs, api_visibility="private", queue=False).then(
            links.show_picture, explore.linked_picture, explore.image, api_visibility="private", queue=False
        ).then(
            cached(explore_tab.explore_on_change),
            explore.inputs,
            explore.outputs,
            api_visibility="private",
            preprocess=False,
            concurrency_id="explore",
        )
        agents.keep_to_agent_tools(demo)  # the UI's endpoints stay in the API, not in an agent's tool list
    return demo


def launch_options(rules: Settings) -> dict:
    """``demo.launch`` arguments that follow the operator's settings (``main`` and tests use them).

    A public server turns Gradio's monitoring off, which is what the API page reads its per-endpoint
    request counts and success rates from (``/monitoring/summary``): strangers no longer see them."""
    return dict(
        run_history=rules.run_history,
        enable_monitoring=False if rules.public else None,
        mcp_server=True if rules.mcp else None,
        max_file_size="50mb",
        allowed_paths=[str(ASSETS)],
    )


def log_live_weights() -> None:
    """The startup log says which weights are live and why (and why not ImageNet's)."""
    choice = HUB.default()
    loaded = HUB.loaded(choice)
    if HUB.preferred is not None:
        why = "picked with --weights / GOOGLENET_WEIGHTS"
    else:
        why = "the first available of: ImageNet weights, the newest checkpoint in the runs folder, the bundled model, random weights"
    log.info("live weights: %s (%s; %d classes, input %d×%d)", loaded.name, why, len(loaded.classes), loaded.input_size, loaded.input_size)
    missing = HUB.imagenet_note()
    for note in ([missing] if missing and loaded.source != "imagenet" else []) + [n for n in loaded.notes if n != missing]:
        log.info("weights note: %s", note)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="GoogLeNet Explorer")
    parser.add_argument(
        "--weights", default=None, help="imagenet | inceptionv1 | bundled | random | a .safetensors checkpoint (default: auto)"
    )
    parser.add_argument("--host", default=None, help="default: $GRADIO_SERVER_NAME or 127.0.0.1")
    parser.add_argument("--port", type=int, default=None, help="default: $GRADIO_SERVER_PORT or 7860")
    add_arguments(parser)
    args = parser.parse_args(argv)
    limit_malloc_arenas()  # serving threads + a training thread in one process: see its docstring
    logging.basicConfig(level=logging.INFO)
    try:
        rules = from_environment(args, on_gpu=HUB.device.type == "cuda")
    except ValueError as error:
        parser.error(str(error))
    # The data root (--data / GOOGLENET_DATA) is also where the Microscope looks first (explain.microscope.reference).
    os.environ["GOOGLENET_DATA"] = str(rules.data_root)
    try:
        HUB.prefer(args.weights or os.environ.get("GOOGLENET_WEIGHTS", "auto"))
    except (ValueError, FileNotFoundError) as error:
        parser.error(str(error))
    log_live_weights()
    demo = build(rules)
    demo.queue(default_concurrency_limit=2, max_size=128)
    log.info("settings: public=%s training=%s limits: %s", rules.public, rules.training, rules.limits_text() or "none")
    demo.launch(server_name=args.host, server_port=args.port, theme=gr.themes.Soft(), css=CSS, **launch_options(rules))


if __name__ == "__main__":
    main()
