"""GoogLeNet Explorer: see inside GoogLeNet (Inception v1). Gradio layout and wiring only.

The work is done by ``googlenet`` (model, weights, training) and ``explain`` (explorations,
attributions, figures); each tab lives in ``ui/`` as plain handler functions (importable and
testable without a server) and one builder that creates and wires its components.
``python app.py [--weights SOURCE] [--host 127.0.0.1 --port 7860]``.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

import gradio as gr

from googlenet.jobs import limit_malloc_arenas
from ui import architecture_tab, compare_tab, explore_tab, train_tab
from ui.shared import ASSETS, HUB, JOB, banner, model_choices_update, user_errors

__all__ = ["build", "main", "ASSETS", "HUB", "JOB", "CSS"]

log = logging.getLogger("googlenet-explorer")

# 32×32 CIFAR pictures would show as stamps: draw them large, with crisp pixels.
CSS = "#input-image img { image-rendering: pixelated; min-width: 70%; object-fit: contain; }"

INTRO = """# GoogLeNet Explorer
See inside GoogLeNet (Inception v1, [Szegedy et al. 2015](https://arxiv.org/abs/1409.4842)): what each of the 9 Inception modules × 4 branches responds to, how it pushes the decision, and what the two auxiliary classifiers would have said. Train your own on CIFAR-10 and explore it."""


@user_errors
def upload_checkpoint(file):
    """A checkpoint from the visitor: this project's .safetensors or a torchvision state dict."""
    if file is None:
        return gr.skip(), gr.skip()
    path = file if isinstance(file, str) else file.get("path") if isinstance(file, dict) else getattr(file, "name", None)
    name = Path(file.get("orig_name") or path).name if isinstance(file, dict) else Path(path).name
    choice = HUB.add_upload(path, name)
    return model_choices_update(choice), banner(choice)


def build() -> gr.Blocks:
    default = HUB.default()
    with gr.Blocks(title="GoogLeNet Explorer") as demo:
        gr.Markdown(INTRO)
        with gr.Row(equal_height=True):
            model = gr.Dropdown(HUB.choices(), value=default, label="Model", scale=3, interactive=True)
            refresh = gr.Button("↻ Refresh list", scale=0, min_width=120)
            upload = gr.File(
                label="Upload a checkpoint (.safetensors, or a torchvision .pth/.pt/.bin state dict)",
                file_types=[".safetensors", ".pth", ".pt", ".bin"], scale=2, height=90,
            )  # fmt: skip
        live = gr.Markdown(banner(default), elem_id="banner")

        with gr.Tabs():
            with gr.Tab("Explore", id="explore"):
                explore = explore_tab.build(model, default)
            with gr.Tab("Compare", id="compare"):
                compare_tab.build(default, explore.colorscale)
            with gr.Tab("Train", id="train"):
                train_tab.build(model)
            with gr.Tab("Architecture", id="architecture"):
                architecture = architecture_tab.build()

        model.change(banner, model, live, api_visibility="private").then(
            architecture_tab.architecture_view, model, architecture, api_visibility="private"
        )
        refresh.click(model_choices_update, model, model, api_visibility="private")
        upload.upload(upload_checkpoint, upload, [model, live], api_name="upload_checkpoint")
        demo.load(architecture_tab.architecture_view, model, architecture, api_visibility="private")
        demo.load(
            explore_tab.explore_on_change,
            explore.inputs,
            explore.outputs,
            api_visibility="private",
            preprocess=False,
            concurrency_id="explore",
        )
    return demo


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="GoogLeNet Explorer")
    parser.add_argument("--weights", default=None, help="imagenet | bundled | random | a .safetensors checkpoint (default: auto)")
    parser.add_argument("--host", default=None, help="default: $GRADIO_SERVER_NAME or 127.0.0.1")
    parser.add_argument("--port", type=int, default=None, help="default: $GRADIO_SERVER_PORT or 7860")
    args = parser.parse_args(argv)
    limit_malloc_arenas()  # serving threads + a training thread in one process: see its docstring
    logging.basicConfig(level=logging.INFO)
    HUB.prefer(args.weights or os.environ.get("GOOGLENET_WEIGHTS", "auto"))
    demo = build()
    demo.queue(default_concurrency_limit=2, max_size=128)
    demo.launch(
        server_name=args.host, server_port=args.port, max_file_size="50mb", theme=gr.themes.Soft(), css=CSS, allowed_paths=[str(ASSETS)]
    )


if __name__ == "__main__":
    main()
