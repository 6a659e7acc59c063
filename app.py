"""GoogLeNet Explorer: see inside GoogLeNet (Inception v1). Gradio layout and wiring only.

The work is done by ``googlenet`` (model, weights, training) and ``explain`` (explorations,
attributions, figures); every handler below is a plain function, importable and testable without
a server. ``python app.py [--weights SOURCE] [--host 127.0.0.1 --port 7860]``.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import functools
import logging
import os
from pathlib import Path

import gradio as gr
import pandas as pd

from explain import HEADS, ImageError, Method
from explain.architecture import architecture_figure
from explain.curves import training_figure
from explain.figures import (
    COLORSCALES,
    MAP_KINDS,
    ablation_figure,
    atlas_figure,
    attribution_figure,
    channels_figure,
    contributions_figure,
    heads_figure,
    map_range,
)
from explain.hub import ModelHub
from explain.images import load_image
from googlenet.data import DataError, download_cifar10
from googlenet.jobs import JobBusy, TrainingJob, limit_malloc_arenas
from googlenet.model import BRANCH_NAMES, INCEPTION_MODULES, GoogLeNet
from googlenet.summary import summarize
from googlenet.train import PRESETS, EndEvent, EpochEvent, StepEvent, TrainConfig, TrainingError, preset_for_device
from googlenet.weights import CheckpointError

try:  # Hugging Face ZeroGPU: functions that use the GPU must be decorated; a no-op elsewhere.
    import spaces

    gpu = spaces.GPU
except ImportError:

    def gpu(fn):
        return fn


log = logging.getLogger("googlenet-explorer")
ASSETS = Path(__file__).resolve().parent / "assets"
HUB = ModelHub()
JOB = TrainingJob()
USER_ERRORS = (ImageError, CheckpointError, DataError, TrainingError, JobBusy, ValueError, FileNotFoundError)
TOP_CLASS = "(top class)"
DEFAULT_DATA = os.environ.get("GOOGLENET_DATA", "data")


def user_errors(fn):
    """Turn expected failures into a clear message for the UI and API; never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except USER_ERRORS as error:
            raise gr.Error(str(error), print_exception=False) from None
        except Exception as error:  # a bug: log it in full, tell the user briefly
            log.exception("unexpected error in %s", fn.__name__)
            raise gr.Error(
                f"Something went wrong ({type(error).__name__}: {error}). The app is still running.", print_exception=False
            ) from None

    return wrapper


def image_input(payload) -> object:
    """The raw upload (events use ``preprocess=False``, so Gradio's own decoder never sees it)."""
    if payload is None:
        raise ImageError("no image given: upload one, paste one, use the webcam or pick an example")
    if isinstance(payload, str):
        payload = {"path": payload}
    path = payload.get("path") if isinstance(payload, dict) else getattr(payload, "path", None)
    url = payload.get("url") if isinstance(payload, dict) else getattr(payload, "url", None)
    if path:
        return path
    if url and url.startswith("data:"):
        try:
            return base64.b64decode(url.split(",", 1)[1], validate=False)
        except (ValueError, IndexError):
            raise ImageError("the pasted image could not be decoded") from None
    raise ImageError("the upload arrived without a file")


def banner(choice: str | None) -> str:
    loaded = HUB.loaded(choice)
    notes = "".join(f"<br>⚠️ {note}" for note in loaded.notes)
    acc = (loaded.training.get("accuracy") or {}).get("main") if loaded.training else None
    acc_text = f" · test accuracy {acc:.1%}" if isinstance(acc, float) and acc <= 1 else ""
    return f"**Live weights:** {loaded.name} · {len(loaded.classes)} classes · input {loaded.input_size}×{loaded.input_size} · device `{loaded.device}`{acc_text}{notes}"


# -- Explore ---------------------------------------------------------------------------------


@user_errors
@gpu
def classify(image, model: str | None = None, topk: int = 5) -> dict:
    """Top-k of the main head and both aux heads for one image."""
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
def explore_view(image, model, target, kind, colorscale, opacity, branch):
    """One pass, then every view of it: heads, atlas, contributions, the chosen branch's channels."""
    explorer = HUB.explorer(model)
    target = target if _valid_target(target, explorer.loaded.classes) else None  # e.g. an ImageNet class after switching to CIFAR
    exploration = explorer.explore(image_input(image), target)
    if branch not in BRANCH_NAMES:
        branch = max(exploration.shares, key=exploration.shares.get)
    classes = [TOP_CLASS, *explorer.loaded.classes]
    return (
        exploration,
        heads_figure(exploration),
        atlas_figure(exploration, kind, colorscale, opacity, highlight=branch),
        contributions_figure(exploration),
        channels_figure(exploration, branch, 16, colorscale),
        summary_text(exploration, branch),
        gr.update(choices=classes, value=exploration.target_name if target else TOP_CLASS),
        gr.update(value=branch),
    )


def _valid_target(target, classes) -> bool:
    """A class name of this model, or its index as text (API callers)."""
    if target in classes:
        return True
    return isinstance(target, str) and target.isdigit() and int(target) < len(classes)


def explore_on_change(image, *args):
    """The image changed (upload, webcam, paste, example): explore it; a cleared image is no error."""
    if image is None:
        return (gr.skip(),) * 8
    return explore_view(image, *args)


def preset_defaults(preset: str):
    """A preset's epochs, batch, lr, width and stem for the form, fitted to the device."""
    values = preset_for_device(preset, HUB.device)
    return values["epochs"], values["batch_size"], values["lr"], values["width"], values["stem"]


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
def rerender(exploration, kind, colorscale, opacity, branch):
    """New colours, opacity or branch: drawn from the cached exploration, no new pass."""
    if exploration is None:
        return gr.skip(), gr.skip(), gr.skip()
    branch = branch if branch in BRANCH_NAMES else "inception4c.branch2"
    return (
        atlas_figure(exploration, kind, colorscale, opacity, highlight=branch),
        channels_figure(exploration, branch, 16, colorscale),
        summary_text(exploration, branch),
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
def knockout_view(image, model, target, branches):
    if not branches:
        raise gr.Error("pick one or more branches (or whole modules) to knock out")
    sets = list(branches) + ([list(branches)] if len(branches) > 1 else [])
    ablation = HUB.explorer(model).ablate(image_input(image), sets, None if target in (None, "", TOP_CLASS) else target)
    rows = [
        f"| knocked out | {' | '.join(h for h in HEADS if h in ablation.baseline_probability)} |",
        "|---|" + "---|" * len(ablation.baseline_probability),
    ]
    rows.append(
        "| (nothing) | " + " | ".join(f"{ablation.baseline[h][0].label} {p:.1%}" for h, p in ablation.baseline_probability.items()) + " |"
    )
    for k in ablation.knockouts:
        rows.append(
            f"| {' + '.join(k.branches) if len(k.branches) < 4 else f'{len(k.branches)} branches'} | "
            + " | ".join(f"{k.predictions[h][0].label} ({k.delta[h]:+.1%})" for h in ablation.baseline_probability)
            + " |"
        )
    return ablation_figure(ablation), f"p(“{ablation.target_name}”) per head; top class and change after the knock-out:\n\n" + "\n".join(
        rows
    )


# -- Microscope ------------------------------------------------------------------------------


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


# -- Compare ---------------------------------------------------------------------------------


@user_errors
@gpu
def compare_view(image, model_a, model_b, kind, colorscale):
    """Two models on one image; both atlases on one colour scale."""
    picture = image_input(image)
    a = HUB.explorer(model_a).explore(picture)
    b = HUB.explorer(model_b).explore(picture)
    shared = map_range([a, b], kind)
    return heads_figure(a), atlas_figure(a, kind, colorscale, 0.6, shared), heads_figure(b), atlas_figure(b, kind, colorscale, 0.6, shared)


# -- Models ----------------------------------------------------------------------------------


def model_choices_update(value: str | None = None):
    choices = HUB.choices()
    values = [v for _, v in choices]
    return gr.update(choices=choices, value=value if value in values else values[0])


@user_errors
def upload_checkpoint(file):
    if file is None:
        return gr.skip(), gr.skip()
    path = file if isinstance(file, str) else file.get("path") if isinstance(file, dict) else getattr(file, "name", None)
    name = Path(file.get("orig_name") or path).name if isinstance(file, dict) else Path(path).name
    choice = HUB.add_upload(path, name)
    return model_choices_update(choice), banner(choice)


@functools.lru_cache(maxsize=8)
def architecture_of(config, input_size: int):
    """Summary and diagram of a configuration, as trained (the live copy has BN folded away)."""
    model = GoogLeNet(**dataclasses.asdict(config))
    return summarize(model, input_size), architecture_figure(model)


@user_errors
def architecture_view(model):
    loaded = HUB.loaded(model)
    summary, diagram = architecture_of(loaded.config, loaded.input_size)
    caption = f"{summary.total_params:,} parameters · {summary.main_macs / 1e9:.3f} G multiply-adds per {summary.input_size}×{summary.input_size} image (paper: ~6.8 M, ~1.5 G)"
    return diagram, pd.DataFrame(summary.records()), caption


# -- Train -----------------------------------------------------------------------------------


@user_errors
def train_start(preset, epochs, batch_size, lr, width, stem, aux_weight, data):
    config = TrainConfig(
        data=str(data or DEFAULT_DATA), preset=preset, epochs=int(epochs), batch_size=int(batch_size), lr=float(lr),
        width=float(width), stem=stem, aux_weight=float(aux_weight),
        input_size=32 if stem == "cifar" else 224, normalize="cifar" if stem == "cifar" else "imagenet",
    )  # fmt: skip
    JOB.start(config)
    return f"Started: {preset} preset, {int(epochs)} epochs, width {width}, on {HUB.device}. The curves update every second."


def train_stop() -> str:
    return "Stopping after the current step; a checkpoint will be saved." if JOB.stop() else "No run in progress."


@user_errors
def train_download(data):
    return f"CIFAR-10 downloaded and checked: {download_cifar10(data or DEFAULT_DATA)}"


def train_status() -> dict:
    """The job for scripts: state, progress, last metrics and the per-epoch accuracies."""
    status = JOB.status()
    epochs = [e for e in status.events if isinstance(e, EpochEvent)]
    last = next((e for e in reversed(status.events) if isinstance(e, StepEvent)), None)
    return {
        "running": status.running, "state": status.state, "message": status.message, "run": status.run,
        "step": status.step, "total_steps": status.total_steps, "images_per_s": status.images_per_s, "eta_s": status.eta,
        "loss": last.loss if last else None, "steps_logged": sum(isinstance(e, StepEvent) for e in status.events),
        "epochs": [{"epoch": e.epoch, "main": e.acc_main, "aux1": e.acc_aux1, "aux2": e.acc_aux2} for e in epochs],
    }  # fmt: skip


def train_poll(smoothing, log_y, seen, model):
    """Timer tick: re-draw only when something happened; refresh the model list when a run ends
    (keeping each user's pick: the job is shared by every open page)."""
    status = JOB.status()
    key = (status.version, status.state, round(float(smoothing), 2), bool(log_y))
    if seen == key:
        return gr.skip(), gr.skip(), gr.skip(), gr.skip(), seen, gr.skip(), gr.skip()
    steps = [e.__dict__ for e in status.events if isinstance(e, StepEvent)]
    epochs = [e.__dict__ for e in status.events if isinstance(e, EpochEvent)]
    figure = training_figure(steps, epochs, float(smoothing), bool(log_y))
    ended = not status.running and status.state in ("finished", "stopped", "diverged", "failed")
    refresh = model_choices_update(model) if ended and (seen is None or seen[1] != status.state) else gr.skip()
    picture = JOB.probe_image(epochs[-1]["probe"].get("index", 0)) if epochs and epochs[-1].get("probe") else None
    return (
        figure,
        status_text(status),
        log_text(status.events),
        probe_text(epochs),
        key,
        refresh,
        picture if picture is not None else gr.skip(),
    )


def status_text(status) -> str:
    bar = "█" * int(20 * status.progress) + "░" * (20 - int(20 * status.progress))
    parts = [f"**{status.state}** · {status.message}"]
    if status.total_steps:
        parts.append(f"`{bar}` step {status.step}/{status.total_steps}")
    if status.images_per_s:
        parts.append(f"{status.images_per_s:.0f} images/s")
    if status.eta:
        parts.append(f"ETA {int(status.eta // 60)} min {int(status.eta % 60)} s")
    return " · ".join(parts)


def log_text(events) -> str:
    lines = []
    for e in events:
        if isinstance(e, EpochEvent):
            aux = "".join(f" {h} {a:.1%}" for h, a in (("aux1", e.acc_aux1), ("aux2", e.acc_aux2)) if a is not None)
            lines.append(
                f"epoch {e.epoch}: test accuracy main {e.acc_main:.1%}{aux} (checkpoint {Path(e.checkpoint).name if e.checkpoint else '-'})"
            )
        elif isinstance(e, EndEvent):
            lines.append(f"{e.status}: {e.message}")
        elif getattr(e, "kind", "") == "start":
            lines.append(f"start {e.run} on {e.device}: {e.params:,} parameters, {e.total_steps} steps")
    return "\n".join(lines[-200:])


def probe_text(epochs: list[dict]) -> str:
    """The fixed probe image's predictions per head after every epoch: watch the heads learn."""
    rows = [e for e in epochs if e.get("probe")]
    if not rows:
        return "The probe image's predictions appear after the first epoch."
    label = rows[0]["probe"].get("label", "?")
    lines = [
        f"Probe: test image #{rows[0]['probe'].get('index', 0)} (a **{label}**)",
        "",
        "| epoch | main | aux1 | aux2 |",
        "|---|---|---|---|",
    ]
    for e in rows[-12:]:
        cells = []
        for head in HEADS:
            top = e["probe"].get(head)
            cells.append(f"{top[0][0]} {top[0][1]:.0%}" if top else "—")
        lines.append(f"| {e['epoch']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# -- Layout ----------------------------------------------------------------------------------


def examples(kind: str) -> list[str]:
    folder = ASSETS / "examples" / kind
    return sorted(str(p) for p in folder.glob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".webp")) if folder.is_dir() else []


# 32×32 CIFAR pictures would show as stamps: draw them large, with crisp pixels.
CSS = "#input-image img { image-rendering: pixelated; min-width: 70%; object-fit: contain; }"

INTRO = """# GoogLeNet Explorer
See inside GoogLeNet (Inception v1, [Szegedy et al. 2015](https://arxiv.org/abs/1409.4842)): what each of the 9 Inception modules × 4 branches responds to, how it pushes the decision, and what the two auxiliary classifiers would have said. Train your own on CIFAR-10 and explore it."""


def build() -> gr.Blocks:
    default = HUB.default()
    methods = [m.label for m in Method]
    with gr.Blocks(title="GoogLeNet Explorer") as demo:
        gr.Markdown(INTRO)
        with gr.Row(equal_height=True):
            model = gr.Dropdown(HUB.choices(), value=default, label="Model", scale=3, interactive=True)
            refresh = gr.Button("↻ Refresh list", scale=0, min_width=120)
            upload = gr.File(label="Upload a .safetensors checkpoint", file_types=[".safetensors"], scale=2, height=90)
        live = gr.Markdown(banner(default), elem_id="banner")
        exploration = gr.State(None, time_to_live=1800)

        with gr.Tabs():
            with gr.Tab("Explore", id="explore"):
                with gr.Row():
                    with gr.Column(scale=1, min_width=300):
                        cifar_first = HUB.loaded(default).input_size <= 64
                        first = sorted(examples("cifar" if cifar_first else "photos"), key=lambda p: "cat" not in Path(p).name) or [None]
                        # A first picture, explored on page load: a newcomer sees the network at work at once.
                        image = gr.Image(
                            first[0],
                            label="Image",
                            sources=["upload", "webcam", "clipboard"],
                            type="filepath",
                            height=280,
                            elem_id="input-image",
                        )
                        for kind in ("cifar", "photos") if cifar_first else ("photos", "cifar"):
                            if examples(kind):
                                gr.Examples(
                                    examples(kind),
                                    inputs=image,
                                    label="CIFAR-10-style examples (32×32)" if kind == "cifar" else "Photos",
                                    examples_per_page=12,
                                )
                        target = gr.Dropdown(
                            [TOP_CLASS], value=TOP_CLASS, label="Explain which class", allow_custom_value=False, filterable=True
                        )
                        run = gr.Button("Explore", variant="primary", elem_id="explore-button")
                        with gr.Accordion("View", open=True):
                            kind = gr.Radio(
                                list(MAP_KINDS), value="cam", label="Atlas shows", info="; ".join(f"{k}: {v}" for k, v in MAP_KINDS.items())
                            )
                            colorscale = gr.Dropdown(list(COLORSCALES), value="Inferno", label="Colour map")
                            opacity = gr.Slider(0, 1, value=0.6, step=0.05, label="Map opacity over the image")
                            branch = gr.Dropdown(list(BRANCH_NAMES), value="inception4c.branch2", label="Branch to open", filterable=True)
                    with gr.Column(scale=3):
                        heads = gr.Plot(
                            show_label=False, label="Predictions: main head and the two auxiliary classifiers", elem_id="heads-plot"
                        )
                        summary = gr.Markdown()
                        atlas = gr.Plot(show_label=False, label="Branch atlas: 9 modules × 4 branches", elem_id="atlas-plot")
                        contributions = gr.Plot(show_label=False, label="Contribution per branch", elem_id="contributions-plot")
                        channels = gr.Plot(show_label=False, label="Channels of the open branch", elem_id="channels-plot")
                        with gr.Accordion("Microscope: what do these channels look for?", open=False):
                            gr.Markdown(
                                "Feature visualization (activation maximisation, Olah et al. 2017) of the open branch's most active channels, each followed by the dataset images that excite it most; a gallery per module; and how the four branches specialise. The first call indexes the reference set (seconds on CPU, then cached beside the checkpoint)."
                            )
                            with gr.Row():
                                scope_branch = gr.Button("Open branch: top channels")
                                scope_module = gr.Dropdown(list(INCEPTION_MODULES), value="inception4c", label="Module", scale=1)
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
                            list(BRANCH_NAMES) + list(INCEPTION_MODULES), multiselect=True, label="Branches or whole modules to zero"
                        )
                        knock_button = gr.Button("Knock out")
                        knock_plot = gr.Plot(show_label=False, label="Change of the target's probability")
                        knock_table = gr.Markdown()

            with gr.Tab("Compare", id="compare"):
                with gr.Row():
                    compare_image = gr.Image(label="Image", sources=["upload", "clipboard"], type="filepath", height=220)
                    with gr.Column():
                        model_a = gr.Dropdown(HUB.choices(), value=default, label="Model A")
                        model_b = gr.Dropdown(HUB.choices(), value=HUB.choices()[-1][1], label="Model B")
                        compare_kind = gr.Radio(list(MAP_KINDS), value="cam", label="Atlas shows")
                        compare_button = gr.Button("Compare", variant="primary")
                if examples("photos") or examples("cifar"):
                    gr.Examples(examples("cifar") + examples("photos"), inputs=compare_image, examples_per_page=12)
                with gr.Row():
                    with gr.Column():
                        heads_a, atlas_a = (
                            gr.Plot(show_label=False, label="A: predictions"),
                            gr.Plot(show_label=False, label="A: atlas (shared colour scale)"),
                        )
                    with gr.Column():
                        heads_b, atlas_b = (
                            gr.Plot(show_label=False, label="B: predictions"),
                            gr.Plot(show_label=False, label="B: atlas (shared colour scale)"),
                        )

            with gr.Tab("Train", id="train"):
                gr.Markdown(
                    "Train GoogLeNet on CIFAR-10 in the background; the rest of the app keeps working. One run at a time for the whole server. On a CPU use width 0.25 (about 150–200 images/s on 2 cores); full width is for GPUs."
                )
                with gr.Row():
                    _, batch_default, lr_default, width_default, _ = preset_defaults("fast")
                    preset = gr.Dropdown(sorted(PRESETS), value="fast", label="Preset")
                    epochs = gr.Number(10, label="Epochs", precision=0, minimum=1, maximum=1000)
                    batch = gr.Number(batch_default, label="Batch size", precision=0, minimum=1, maximum=4096)
                    lr = gr.Number(lr_default, label="Learning rate (peak)", minimum=1e-6)
                    width = gr.Slider(0.125, 1.0, value=width_default, step=0.125, label="Width")
                    stem = gr.Radio(["cifar", "imagenet"], value="cifar", label="Stem")
                    aux_weight = gr.Number(0.3, label="Aux loss weight", minimum=0)
                with gr.Row():
                    data = gr.Textbox(DEFAULT_DATA, label="CIFAR-10 folder (holding cifar-10-batches-py/)", scale=3)
                    download = gr.Button("Download CIFAR-10 (170 MB)", scale=1)
                    start = gr.Button("Start", variant="primary", scale=1, elem_id="train-start")
                    stop = gr.Button("Stop", variant="stop", scale=1, elem_id="train-stop")
                train_message = gr.Markdown()
                status = gr.Markdown(elem_id="train-status")
                with gr.Row():
                    smoothing = gr.Slider(0, 0.99, value=0.6, step=0.01, label="Smoothing (EMA)")
                    log_y = gr.Checkbox(False, label="Log-scale loss")
                curves = gr.Plot(show_label=False, label="Loss and test accuracy per head", elem_id="train-curves")
                with gr.Row():
                    probe_picture = gr.Image(show_label=False, height=128, width=128, interactive=False, scale=0, min_width=140, buttons=[])
                    probe = gr.Markdown()
                    train_log = gr.Textbox(label="Log", lines=8, max_lines=12, autoscroll=True)
                seen = gr.State(None)
                timer = gr.Timer(1.0)

            with gr.Tab("Architecture", id="architecture"):
                arch_caption = gr.Markdown()
                diagram = gr.Plot(show_label=False, label="The network")
                table = gr.Dataframe(label="Per layer, beside the paper's Table 1", wrap=True)

        # -- wiring --
        view = [kind, colorscale, opacity, branch]
        explore_outputs = [exploration, heads, atlas, contributions, channels, summary, target, branch]
        explore_inputs = [image, model, target, *view]
        run.click(
            explore_view,
            explore_inputs,
            explore_outputs,
            api_name="explore",
            preprocess=False,
            concurrency_limit=2,
            concurrency_id="explore",
        )
        image.change(
            explore_on_change,
            explore_inputs,
            explore_outputs,
            api_visibility="private",
            preprocess=False,
            concurrency_id="explore",
            trigger_mode="always_last",
        )
        for control in (kind, colorscale, opacity, branch):
            control.change(rerender, [exploration, *view], [atlas, channels, summary], api_visibility="private", show_progress="hidden")
        attribute_button.click(
            attribute_view,
            [image, model, target, method, noise, colorscale, opacity],
            attribution,
            api_name="attribute",
            preprocess=False,
            concurrency_limit=1,
        )
        knock_button.click(
            knockout_view,
            [image, model, target, knock],
            [knock_plot, knock_table],
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
            microscope_module,
            [model, scope_module],
            scope_plot,
            api_name="microscope_module",
            concurrency_limit=1,
            concurrency_id="microscope",
        )
        scope_special.click(
            microscope_specialization, model, scope_plot, api_name="branch_specialization", concurrency_limit=1, concurrency_id="microscope"
        )
        compare_button.click(
            compare_view,
            [compare_image, model_a, model_b, compare_kind, colorscale],
            [heads_a, atlas_a, heads_b, atlas_b],
            api_name="compare",
            preprocess=False,
            concurrency_limit=1,
        )

        hidden_image = gr.Image(visible=False, type="filepath")
        topk = gr.Number(5, visible=False, precision=0)
        classify_json = gr.JSON(visible=False)
        gr.Button(visible=False).click(
            classify, [hidden_image, model, topk], classify_json, api_name="classify", preprocess=False, concurrency_limit=4
        )

        model.change(banner, model, live, api_visibility="private").then(
            architecture_view, model, [diagram, table, arch_caption], api_visibility="private"
        )
        refresh.click(lambda m: model_choices_update(m), model, model, api_visibility="private")
        upload.upload(upload_checkpoint, upload, [model, live], api_name="upload_checkpoint")
        demo.load(architecture_view, model, [diagram, table, arch_caption], api_visibility="private")
        demo.load(explore_on_change, explore_inputs, explore_outputs, api_visibility="private", preprocess=False, concurrency_id="explore")

        preset.change(preset_defaults, preset, [epochs, batch, lr, width, stem], api_visibility="private")
        start.click(train_start, [preset, epochs, batch, lr, width, stem, aux_weight, data], train_message, api_name="train_start")
        stop.click(train_stop, None, train_message, api_name="train_stop")
        download.click(train_download, data, train_message, api_name="download_cifar10")
        train_json = gr.JSON(visible=False)
        gr.Button(visible=False).click(train_status, None, train_json, api_name="train_status", queue=False)
        timer.tick(
            train_poll,
            [smoothing, log_y, seen, model],
            [curves, status, train_log, probe, seen, model, probe_picture],
            api_visibility="private",
            show_progress="hidden",
            queue=False,
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
