"""The Train tab: a training run in the background with live curves, per-epoch accuracy per head,
the probe image's predictions, Stop, and the new checkpoint joining the model picker."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, NamedTuple

import gradio as gr

from explain import HEADS
from explain.curves import training_figure
from googlenet.data import download_cifar10
from googlenet.train import PRESETS, EndEvent, EpochEvent, StepEvent, TrainConfig, preset_for_device

from .shared import HUB, JOB, model_choices_update, outputs, unchanged, user_errors

DEFAULT_DATA = os.environ.get("GOOGLENET_DATA", "data")


class PresetForm(NamedTuple):
    epochs: Any
    batch: Any
    lr: Any
    width: Any
    stem: Any


class TrainPoll(NamedTuple):
    curves: Any
    status: Any
    train_log: Any
    probe: Any
    seen: Any
    model: Any
    probe_picture: Any


def preset_defaults(preset: str) -> PresetForm:
    """A preset's epochs, batch, lr, width and stem for the form, fitted to the device."""
    values = preset_for_device(preset, HUB.device)
    return PresetForm(values["epochs"], values["batch_size"], values["lr"], values["width"], values["stem"])


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


def train_poll(smoothing, log_y, seen, model) -> TrainPoll:
    """Timer tick: re-draw only when something happened; refresh the model list when a run ends
    (keeping each user's pick: the job is shared by every open page)."""
    status = JOB.status()
    key = (status.version, status.state, round(float(smoothing), 2), bool(log_y))
    if seen == key:
        return unchanged(TrainPoll)
    steps = [e.__dict__ for e in status.events if isinstance(e, StepEvent)]
    epochs = [e.__dict__ for e in status.events if isinstance(e, EpochEvent)]
    ended = not status.running and status.state in ("finished", "stopped", "diverged", "failed")
    picture = JOB.probe_image(epochs[-1]["probe"].get("index", 0)) if epochs and epochs[-1].get("probe") else None
    return TrainPoll(
        curves=training_figure(steps, epochs, float(smoothing), bool(log_y)),
        status=status_text(status),
        train_log=log_text(status.events),
        probe=probe_text(epochs),
        seen=key,
        model=model_choices_update(model) if ended and (seen is None or seen[1] != status.state) else gr.skip(),
        probe_picture=picture if picture is not None else gr.skip(),
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


def build(model: gr.Dropdown) -> None:
    """The Train tab's components and events (call inside ``gr.Tab``)."""
    gr.Markdown(
        "Train GoogLeNet on CIFAR-10 in the background; the rest of the app keeps working. One run at a time for the whole "
        "server. On a CPU use width 0.25 (about 150–200 images/s on 2 cores); full width is for GPUs."
    )
    with gr.Row():
        form = preset_defaults("fast")
        preset = gr.Dropdown(sorted(PRESETS), value="fast", label="Preset")
        epochs = gr.Number(10, label="Epochs", precision=0, minimum=1, maximum=1000)
        batch = gr.Number(form.batch, label="Batch size", precision=0, minimum=1, maximum=4096)
        lr = gr.Number(form.lr, label="Learning rate (peak)", minimum=1e-6)
        width = gr.Slider(0.125, 1.0, value=form.width, step=0.125, label="Width")
        stem = gr.Radio(["cifar", "imagenet"], value="cifar", label="Stem")
        aux_weight = gr.Number(0.3, label="Aux loss weight", minimum=0)
    with gr.Row():
        data = gr.Textbox(DEFAULT_DATA, label="CIFAR-10 folder (holding cifar-10-batches-py/)", scale=3)
        download = gr.Button("Download CIFAR-10 (170 MB)", scale=1)
        start = gr.Button("Start", variant="primary", scale=1, elem_id="train-start")
        stop = gr.Button("Stop", variant="stop", scale=1, elem_id="train-stop")
    message = gr.Markdown()
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

    form_outputs = outputs(PresetForm, dict(epochs=epochs, batch=batch, lr=lr, width=width, stem=stem))
    preset.change(preset_defaults, preset, form_outputs, api_visibility="private")
    start.click(train_start, [preset, epochs, batch, lr, width, stem, aux_weight, data], message, api_name="train_start")
    stop.click(train_stop, None, message, api_name="train_stop")
    download.click(train_download, data, message, api_name="download_cifar10")
    status_json = gr.JSON(visible=False)
    gr.Button(visible=False).click(train_status, None, status_json, api_name="train_status", queue=False)
    poll_outputs = outputs(
        TrainPoll,
        dict(curves=curves, status=status, train_log=train_log, probe=probe, seen=seen, model=model, probe_picture=probe_picture),
    )
    timer.tick(train_poll, [smoothing, log_y, seen, model], poll_outputs, api_visibility="private", show_progress="hidden", queue=False)
