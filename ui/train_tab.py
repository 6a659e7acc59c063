"""The Train tab: a training run in the background with live curves and per-module weight and
gradient norms, per-epoch accuracy per head and per class with the confusion matrix, the probe
image's predictions, Stop, and the new checkpoint joining the model picker.

The data is CIFAR-10, CIFAR-100, an image folder on the server, or a .zip of an image folder the
visitor uploads (checked and extracted by :func:`googlenet.datasets.extract_zip` into the runs
area). A run may start from the ImageNet weights (when they can be had) with part of the trunk
frozen, or train on shuffled labels (Adebayo et al. 2018's data-randomisation sanity check).

On a shared server the run belongs to the visitor who started it (see ``server/visitors.py``): only
they or an operator can stop it, everyone else watches it read-only with its owner's anonymised
name and when the trainer frees up; the operator's limits (``server/settings.py``) bound what a visitor
may ask for, and a public server offers named datasets instead of a folder path.
"""

from __future__ import annotations

import hmac
import time
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import gradio as gr

from explain import HEADS
from explain.render.classes_figures import confused_pairs_text, confusion_figure, per_class_figure
from explain.render.curves import norms_figure, training_figure
from googlenet.datasets import MAX_BYTES, MAX_FILES, download_cifar100, extract_zip, open_dataset
from googlenet.datasets.cifar10 import DataError, download_cifar10
from googlenet.training.finetune import TRUNK
from googlenet.training.trainer import FINETUNE, PRESETS, EndEvent, EpochEvent, StartEvent, StepEvent, TrainConfig, preset_for_device
from server.owners import Owner
from server.zerogpu import on_zero_gpu

from .shared import (
    HUB,
    JOB,
    current_visitor,
    last_data_folder,
    model_choices_update,
    outputs,
    reserve_dataset,
    settings,
    unchanged,
    user_errors,
    visitors,
)

ENDED = ("finished", "stopped", "diverged", "failed")
FOLDER, ZIP = "folder", "zip"  # the data sources (values of the Data radio)
NO_FREEZE = "nothing (train every layer)"
# A public server extracts a visitor's archive onto its own disk: a quarter of the command line's limit.
PUBLIC_ZIP_BYTES = MAX_BYTES // 4
NORMS_RECORDS = 600  # the live norms plot smooths and draws at most this many logged steps
SHUFFLE_INFO = (
    "Adebayo et al. 2018's data randomisation: train on a seeded shuffle of the labels, then compare this model's maps "
    "with a real run's in Explore's trust panel."
)
ZERO_GPU_REFUSAL = (
    "Training is not offered on ZeroGPU hardware: a run trains in a background thread, and a background thread "
    "cannot hold a ZeroGPU slot. Train with `python -m googlenet train` on your own GPU, or duplicate this Space "
    "onto dedicated GPU hardware."
)


class PresetForm(NamedTuple):
    epochs: Any
    batch: Any
    lr: Any
    width: Any
    stem: Any


class Started(NamedTuple):
    message: Any
    token: Any


class Identity(NamedTuple):
    token: Any
    whoami: Any


class OwnerView(NamedTuple):
    owner_note: Any
    start: Any
    stop: Any
    owner_seen: Any


class TrainPoll(NamedTuple):
    curves: Any
    status: Any
    train_log: Any
    probe: Any
    seen: Any
    model: Any
    probe_picture: Any
    message: Any
    norms: Any
    per_class: Any
    confusion: Any
    pairs: Any


class ZipUpload(NamedTuple):
    message: Any
    uploaded: Any
    zip_note: Any


class SourceView(NamedTuple):
    data: Any
    zip_row: Any


class FineTuneForm(NamedTuple):
    stem: Any
    width: Any
    lr: Any
    freeze_until: Any


def preset_defaults(preset: str) -> PresetForm:
    """A preset's epochs, batch, lr, width and stem for the form, fitted to the device."""
    values = preset_for_device(preset, HUB.device)
    return PresetForm(values["epochs"], values["batch_size"], values["lr"], values["width"], values["stem"])


@user_errors
def train_start(
    preset, epochs, batch_size, lr, width, stem, aux_weight, data, minutes=None, token=None,
    source=FOLDER, finetune=False, freeze_until=None, shuffle_labels=False, val_split=0.2, uploaded=None,
    request: gr.Request = None,
) -> Started:  # fmt: skip
    """Start a run for this visitor, within the operator's limits. Returns the message and the
    visitor's signed token (an API client passes it to /train_stop from another connection).

    ``source``: ``"folder"`` (``data``: a path locally, a dataset's name on a public server) or
    ``"zip"`` (the archive this session uploaded with /train_upload_zip; ``uploaded`` is that
    session's state, never a path from the client). ``finetune``: start from the ImageNet weights,
    freezing the trunk up to ``freeze_until``; ``shuffle_labels``: the data-randomisation check."""
    rules = settings()
    visitor, _ = current_visitor(request, token)
    if on_zero_gpu():
        raise ValueError(ZERO_GPU_REFUSAL)
    if rules.training == "off" and not visitor.operator:
        raise ValueError("Refused: training from the app is off on this server (GOOGLENET_TRAINING=off).")
    input_size = 32 if stem == "cifar" else 224
    minutes = float(minutes) if minutes not in (None, "") and float(minutes) > 0 else None
    finetune = bool(finetune)
    freeze = freeze_until if finetune and freeze_until not in (None, "", NO_FREEZE) else None
    if freeze is not None and freeze not in TRUNK:
        raise ValueError(f"freeze until must be one of {', '.join(TRUNK)} (or {NO_FREEZE!r}), got {freeze!r}")
    if finetune and (note := HUB.imagenet_note()):
        raise ValueError(f"Fine-tuning is not offered here: {note}")
    if not visitor.operator:
        rules.check_run(epochs=int(epochs), width=float(width), input_size=input_size, batch_size=int(batch_size), minutes=minutes)
    folder = data_folder(source, data, uploaded, rules.public)
    wall = minutes if minutes is not None or visitor.operator else rules.max_minutes
    config = TrainConfig(
        data=str(folder), preset=preset, epochs=int(epochs), batch_size=int(batch_size), lr=float(lr),
        width=float(width), stem=stem, aux_weight=float(aux_weight), input_size=input_size,
        normalize="init" if finetune else "cifar" if stem == "cifar" else "imagenet",
        init="imagenet" if finetune else None, freeze_until=freeze, shuffle_labels=bool(shuffle_labels),
        val_split=float(val_split if val_split not in (None, "") else 0.2),
    )  # fmt: skip
    owner = Owner(visitor.key, visitor.name, visitor.operator) if rules.training == "owner" else None
    try:
        fitted = JOB.start(config, owner=owner, max_seconds=wall * 60 if wall else None)
    except DataError as error:  # a fresh clone has no data: say what to press, not a command-line flag
        if source == ZIP:
            raise
        return Started(message=not_started(str(folder), error, rules.public), token=visitor.token)
    whose = f" It is yours ({visitor.name}): only you or the operator can stop it." if owner else ""
    limit = f" It stops by itself after {wall:g} min." if wall else ""
    how = "".join(
        [
            f", fine-tuning the ImageNet weights (frozen up to {freeze})"
            if freeze
            else ", fine-tuning the ImageNet weights"
            if finetune
            else "",
            ", on shuffled labels (sanity check)" if shuffle_labels else "",
        ]
    )
    fitted = f" Your pictures are few: {fitted[0].upper()}{fitted[1:]}." if fitted else ""
    message = (
        f"Started: {preset} preset, {int(epochs)} epochs, width {width}{how}, on {HUB.device}.{fitted} The curves update every second; "
        f"the speed and the time left are measured from the first steps.{whose}{limit}"
    )
    return Started(message=message, token=visitor.token)


def data_folder(source, data, uploaded, public: bool) -> Path:
    """The folder a run reads: the session's extracted .zip, a dataset the operator offers (public
    server: one message for any name not offered, whatever it is), or the path typed (local)."""
    if source == ZIP:
        if not uploaded:
            raise ValueError("upload a .zip of an image folder first (one subfolder per class), or pick a folder as the data")
        return Path(uploaded)
    if source not in (None, "", FOLDER):
        raise ValueError(f"the data source must be {FOLDER!r} or {ZIP!r}, got {source!r}")
    rules = settings()
    return rules.dataset(data) if public else Path(str(data or rules.data_root))


def not_started(folder: str, error: DataError, public: bool = False) -> str:
    """Why Start did nothing, for a page: the folder, what is missing and which button fetches it."""
    reason = str(error).split(" (expected")[0].split("; use --download")[0]
    where = (
        "pick another dataset"
        if public
        else "enter a folder holding CIFAR-10 (`cifar-10-batches-py/`), CIFAR-100 (`cifar-100-python/`) or an image folder"
    )
    return f"⚠️ **Not started:** {reason}. Press **Download CIFAR-10 (170 MB)** to fetch it into `{folder}`, or {where}."


@user_errors
def train_stop(token=None, request: gr.Request = None) -> str:
    """Stop the run (its owner, an operator, or anyone on a server open to all)."""
    visitor, _ = current_visitor(request, token)
    override = visitor.operator or settings().training == "open"
    stopped = JOB.stop(by=visitor.key, override=override)
    return "Stopping after the current step; a checkpoint will be saved." if stopped else "No run in progress."


@user_errors
def train_download(data, token=None, request: gr.Request = None):
    """Download CIFAR-10. On a public server only where the operator said (inside the data root),
    whatever the form holds; locally into the folder typed."""
    return _download("CIFAR-10", data, token, request)


@user_errors
def train_download_cifar100(data, token=None, request: gr.Request = None):
    """Download CIFAR-100: on a public server into the data root's ``cifar100`` (it then appears in
    the list); locally into the folder typed (then pointed at by the folder field)."""
    return _download("CIFAR-100", data, token, request)


def _download(name: str, data, token, request) -> str:
    rules = settings()
    visitor, _ = current_visitor(request, token)
    if rules.public or rules.download_dir is not None:
        if not rules.downloads and not visitor.operator:
            raise ValueError("Refused: downloads are off on this server (GOOGLENET_DOWNLOADS); pick a dataset from the list.")
        target = rules.download_dir or rules.data_root / "cifar10"
        if name == "CIFAR-100":  # beside CIFAR-10's, inside the data root: its own entry in the list
            target = target.parent / "cifar100"
    else:
        target = Path(str(data or rules.data_root))
        if Path(target).name in ("cifar-10-batches-py", "cifar-100-python"):
            target = Path(target).parent
    fetch = download_cifar10 if name == "CIFAR-10" else download_cifar100
    try:
        folder = fetch(target)
    except DataError as error:  # "<urlopen error …>" would be read as an HTML tag and vanish from the toast
        raise DataError(str(error).replace("<", "(").replace(">", ")")) from None
    where = f"dataset “{target.name}”" if rules.public else str(folder)
    return f"{name} downloaded and checked: {where}"


def downloaded_folder(message: str, data):
    """Locally, after a download: the folder field points at what was fetched (a folder holding
    both would train on CIFAR-10)."""
    if isinstance(message, str) and message.startswith("CIFAR-100 downloaded and checked: "):
        return message.split("downloaded and checked: ", 1)[1]
    return gr.skip()


@user_errors
def train_upload_zip(file, token=None, request: gr.Request = None) -> ZipUpload:
    """A .zip of an image folder from the visitor: checked entry by entry and extracted into the
    runs area (:func:`googlenet.datasets.extract_zip`; an archive with a ``..`` entry, a link, a
    bomb or too many bytes is refused as a whole, naming the entry). The extracted folder is kept in
    this session's state for Start; nothing the client sends later can name another folder.
    A refusal is said beside the upload button (and the previous upload is forgotten)."""
    visitor, _ = current_visitor(request, token)
    try:
        return _upload_zip(_upload_path(file), visitor.key)
    except (DataError, ValueError) as error:
        text = str(error)
        refusal = f"⚠️ **Refused:** {text.removeprefix('refused ')}"
        return ZipUpload(message=refusal, uploaded=None, zip_note=refusal)


def _upload_zip(path: Path | None, owner: str) -> ZipUpload:
    rules = settings()
    if path is None:
        raise ValueError("no .zip received: upload a .zip of an image folder (one subfolder per class)")
    if rules.public and not _in_upload_folder(path):  # an API client naming a server file: the same words
        raise ValueError("upload the .zip with the upload button; this server does not accept file paths")
    if path.suffix.lower() != ".zip":
        raise ValueError(f"{path.name} is not a .zip: upload a .zip of an image folder (one subfolder per class)")
    limit = PUBLIC_ZIP_BYTES if rules.public else MAX_BYTES
    admit = partial(reserve_dataset, owner=owner, what=path.name)  # a public server's quota, before anything is written
    extracted = extract_zip(path, max_bytes=limit, max_files=MAX_FILES, admit=admit)
    dataset = open_dataset(extracted.folder)  # class folders checked now, not when Start is pressed
    classes = ", ".join(dataset.classes[:6]) + (", …" if dataset.num_classes > 6 else "")
    note = (
        f"**{path.name}**: {extracted.pictures:,} pictures, {dataset.num_classes} classes ({classes}); "
        f"{len(dataset.train):,} to train on, {len(dataset.test):,} to {'test' if dataset.test_name == 'test' else 'validate'} on."
    )
    skipped = [*extracted.skipped, *(n for n in dataset.notes if "held out" in n)]
    if skipped:
        note += " " + "; ".join(skipped).replace(str(extracted.folder), path.stem) + "."
    return ZipUpload(message=f"Uploaded and checked {path.name}: press Start to train on it.", uploaded=str(dataset.root), zip_note=note)


def _upload_path(file) -> Path | None:
    if file is None:
        return None
    if isinstance(file, (list, tuple)):
        file = file[0] if file else None
    path = file if isinstance(file, str) else file.get("path") if isinstance(file, dict) else getattr(file, "name", None)
    return Path(path) if path else None


def _in_upload_folder(path: Path) -> bool:
    from gradio.utils import get_upload_folder

    return path.resolve().is_relative_to(Path(get_upload_folder()).resolve())


def source_view(source) -> SourceView:
    """The data field for a folder; the upload button and its note for a .zip."""
    folder = source != ZIP
    return SourceView(data=gr.update(visible=folder), zip_row=gr.update(visible=not folder))


def finetune_form(finetune) -> FineTuneForm:
    """Fine-tuning ImageNet's weights means their network: ImageNet stem, width 1, and a tenth
    of the from-scratch learning rate (``googlenet.training.trainer.FINETUNE``); the freeze list opens."""
    if finetune:
        return FineTuneForm(stem="imagenet", width=1.0, lr=FINETUNE["lr"], freeze_until=gr.update(interactive=True))
    return FineTuneForm(stem=gr.skip(), width=gr.skip(), lr=gr.skip(), freeze_until=gr.update(interactive=False, value=NO_FREEZE))


def finetune_note() -> str | None:
    """Why fine-tuning from ImageNet is not offered here (None when it is)."""
    note = HUB.imagenet_note()
    if note is None:
        return None
    reason = note.split(". To use them", 1)[0].replace("ImageNet weights unavailable: ", "", 1)
    return f"Not offered here: the ImageNet weights are unavailable ({reason}). The banner above says how to get them."


def train_status(token=None, request: gr.Request = None) -> dict:
    """The job for scripts: state, progress, last metrics, the per-epoch accuracies, and who runs it."""
    status = JOB.status()
    epochs = [e for e in status.events if isinstance(e, EpochEvent)]
    last = next((e for e in reversed(status.events) if isinstance(e, StepEvent)), None)
    visitor, _ = current_visitor(request, token)
    frees_at = status.frees_at
    return {
        "running": status.running, "state": status.state, "message": status.message, "run": status.run,
        "step": status.step, "total_steps": status.total_steps, "images_per_s": status.images_per_s, "eta_s": status.eta,
        "loss": last.loss if last else None, "steps_logged": sum(isinstance(e, StepEvent) for e in status.events),
        "epochs": [{"epoch": e.epoch, "main": e.acc_main, "aux1": e.acc_aux1, "aux2": e.acc_aux2} for e in epochs],
        "owner": status.owner.name if status.owner else None,
        "yours": bool(status.owner and status.owner.key == visitor.key),
        "frees_in_s": round(frees_at - time.time(), 1) if frees_at else None,
    }  # fmt: skip


def ownership_view(token, seen, request: gr.Request = None) -> OwnerView:
    """Timer tick: who runs the trainer, and whether this visitor may stop it (others watch read-only)."""
    status = JOB.status()
    visitor, _ = current_visitor(request, token)
    rules = settings()
    owner = status.owner if status.running else None
    mine = owner is not None and owner.key == visitor.key
    may_stop = status.running and (owner is None or mine or visitor.operator or rules.training == "open")
    frees_at = status.frees_at
    # re-drawn when who or what changes, and once a minute for the "in about N min"
    key = (status.running, owner, mine, may_stop, int(frees_at // 30) if frees_at else None, visitor.operator, int(time.time() // 60))
    if seen == key:
        return unchanged(OwnerView)
    return OwnerView(
        owner_note=owner_text(status, owner, mine, frees_at),
        start=gr.update(interactive=not status.running),
        stop=gr.update(interactive=bool(may_stop)),
        owner_seen=key,
    )


def owner_text(status, owner: Owner | None, mine: bool, frees_at: float | None) -> str:
    if not status.running:
        return ""
    when = ""
    if frees_at:
        minutes = max(0, round((frees_at - time.time()) / 60))
        when = f"; expected to free up in about {minutes} min (≈ {time.strftime('%H:%M', time.gmtime(frees_at))} UTC)"
    if owner is None:
        return f"The trainer is busy{when}."
    if mine:
        return f"This is your run ({owner.name}): only you or the operator can stop it{when}."
    return f"The trainer is busy with **{owner.name}**'s run. You are watching it read-only{when}."


@user_errors
def operator_sign_in(admin, token=None, request: gr.Request = None) -> Started:
    """The operator's token lifts the limits for this browser (for 12 hours) and may stop any run."""
    rules = settings()
    visitor, _ = current_visitor(request, token)
    if not rules.admin_token or not isinstance(admin, str) or not hmac.compare_digest(admin.encode(), rules.admin_token.encode()):
        time.sleep(1.0)  # a wrong guess costs a second: no quick brute force
        raise ValueError("that is not this server's operator token")
    operator = visitors().issue(operator=True, visitor_id=visitor.id)
    current_visitor(request, operator.token)  # this session is now the operator
    return Started(message=f"Signed in as operator ({operator.name}): no limits, and you can stop any run.", token=operator.token)


def dataset_choices():
    """The named datasets a public server offers now (a finished download appears at once)."""
    names = sorted(settings().datasets())
    return gr.update(choices=names, value=names[0] if names else None)


def train_poll(smoothing, log_y, seen, model) -> TrainPoll:
    """Timer tick: re-draw only when something happened; refresh the model list when a run ends
    (keeping each user's pick: the job is shared by every open page). The per-class figures are
    re-drawn only when an epoch ends or another run is shown (their key names the run, so a new
    run clears the last one's)."""
    status = JOB.status()
    # What the page shows is a function of these: a tick that finds them unchanged returns before
    # walking the run's events (every second, on every open page).
    key = (status.version, status.state, round(float(smoothing), 2), bool(log_y), (status.run, status.started))
    if isinstance(seen, tuple) and seen[:5] == key:
        return unchanged(TrainPoll)
    epochs = [e.__dict__ for e in status.events if isinstance(e, EpochEvent)]
    class_key = (status.run, status.started, len(epochs))
    steps = [e.__dict__ for e in status.events if isinstance(e, StepEvent)]
    ended = not status.running and status.state in ENDED
    just_ended = ended and (seen is None or seen[1] != status.state)
    picture = JOB.probe_image(epochs[-1]["probe"].get("index", 0)) if epochs and epochs[-1].get("probe") else None
    classes_changed = not isinstance(seen, tuple) or len(seen) < 6 or seen[5] != class_key
    per_class, confusion, pairs = class_views(status.events) if classes_changed else (gr.skip(),) * 3
    return TrainPoll(
        curves=training_figure(steps, epochs, float(smoothing), bool(log_y)),
        status=status_text(status),
        train_log=log_text(status.events),
        probe=probe_text(epochs),
        seen=(*key, class_key),
        model=model_choices_update(model) if just_ended else gr.skip(),
        probe_picture=picture if picture is not None else gr.skip(),
        # "Stopping after the current step…" (or "Started…") must not outlive the run: the status
        # line now says how it ended
        message="" if just_ended and seen is not None else gr.skip(),
        norms=norms_figure(steps, float(smoothing), max_records=NORMS_RECORDS, trace_type="scatter"),
        per_class=per_class,
        confusion=confusion,
        pairs=pairs,
    )


def class_views(events) -> tuple:
    """Accuracy per class, the confusion matrix and the most confused pairs of the last epoch of
    these events (placeholders before the first epoch)."""
    start = next((e for e in events if isinstance(e, StartEvent)), None)
    last = next((e for e in reversed(events) if isinstance(e, EpochEvent)), None)
    matrix = last.confusion if last is not None else None
    classes = list(start.classes) if start is not None and start.classes else []
    if matrix is not None and len(classes) != len(matrix):  # a run logged before class names were
        classes = [str(i) for i in range(len(matrix))]
    epoch = last.epoch if last is not None else None
    return per_class_figure(matrix, classes, epoch), confusion_figure(matrix, classes, epoch), confused_pairs_text(matrix, classes)


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


def intro_text() -> str:
    rules = settings()
    text = (
        "Train GoogLeNet on CIFAR-10, CIFAR-100 or your own pictures (an image folder, or a .zip of one) in the background; "
        "the rest of the app keeps working, and a finished run opens in Explore with its own class names. One run at a time for the whole "
        "server. On a CPU use width 0.25; full width is for GPUs. The status line shows the speed and the time left, "
        "measured on this machine from the first steps."
    )
    if rules.training == "owner":
        text += " A run belongs to the visitor who started it: only they (or the operator) can stop it; everyone sees its curves."
    if rules.limits_text():
        text += f" This server allows {rules.limits_text()} per run."
    if rules.training == "off":
        text += " **Training from the app is off on this server.**"
    return text


def identify(token, request: gr.Request = None) -> Identity:
    """Page load: the visitor behind this browser (a new one on a first visit), its token to keep."""
    visitor, _ = current_visitor(request, token)
    rules = settings()
    note = ""
    if rules.public or visitor.operator:  # a single user at their own machine needs no name
        note = f"You are **{visitor.name}** on this server" + (" (operator)." if visitor.operator else ".")
    if rules.public:
        note += " Your runs and uploaded checkpoints are listed to you only; this browser keeps your identity."
    return Identity(token=visitor.token, whoami=note)


def build(model: gr.Dropdown, token: gr.BrowserState) -> tuple[gr.Markdown, gr.Component]:
    """The Train tab's components and events (call inside ``gr.Tab``); ``token`` is the visitor's
    signed identity kept in the browser (see ``server/visitors.py``). Returns the "who am I" line that
    :func:`identify` fills on page load, and the data field (the Microscope looks there too)."""
    rules = settings()
    gr.Markdown(intro_text())
    whoami = gr.Markdown(elem_id="train-whoami")
    with gr.Row():
        form = preset_defaults("fast")
        # narrow number boxes leave the Stem radio room for both of its options on one line
        preset = gr.Dropdown(sorted(PRESETS), value="fast", label="Preset", min_width=120)
        epochs = gr.Number(10, label="Epochs", precision=0, minimum=1, maximum=1000, min_width=100)
        batch = gr.Number(form.batch, label="Batch size", precision=0, minimum=1, maximum=4096, min_width=100)
        lr = gr.Number(form.lr, label="Learning rate (peak)", minimum=1e-6, min_width=120)
        width = gr.Slider(0.125, 1.0, value=form.width, step=0.125, label="Width")
        stem = gr.Radio(["cifar", "imagenet"], value="cifar", label="Stem", min_width=260, elem_id="train-stem")
        aux_weight = gr.Number(0.3, label="Aux loss weight", minimum=0, min_width=100)
    with gr.Row(equal_height=True):
        source = gr.Radio(
            [("Dataset on this server" if rules.public else "Folder on this server", FOLDER), ("Upload a .zip", ZIP)],
            value=FOLDER, label="Data", min_width=200, scale=1, elem_id="train-source",
        )  # fmt: skip
        with gr.Column(scale=4):
            if rules.public:  # never a free path on a shared server: the operator's named datasets
                names = sorted(rules.datasets())
                data = gr.Dropdown(
                    names, value=names[0] if names else None, label="Dataset", elem_id="train-data", allow_custom_value=True
                )  # checked by the handler, whose message is the same for any unknown name
            else:
                data = gr.Textbox(
                    last_data_folder, label="Data folder: CIFAR-10, CIFAR-100, an image folder (one subfolder per class) or a .zip",
                    elem_id="train-data",
                )  # fmt: skip
            with gr.Row(visible=False, equal_height=True) as zip_row:
                upload_zip = gr.UploadButton(
                    "⬆ Upload a .zip of an image folder", file_types=[".zip"], scale=1, min_width=180, elem_id="train-upload-zip"
                )
                zip_note = gr.Markdown(
                    "No .zip uploaded yet: one subfolder per class, optionally under train/ and val/.",
                    label="Zip note",
                    elem_id="train-zip-note",
                    scale=3,
                )
        val_split = gr.Number(
            0.2, label="Held out for validation", info="folders without val/", minimum=0.01, maximum=0.9, step=0.05,
            min_width=170, scale=0, elem_id="train-val-split",
        )  # fmt: skip
    with gr.Row(equal_height=True):
        not_offered = finetune_note()
        finetune = gr.Checkbox(
            False, label="Fine-tune from ImageNet weights", interactive=not_offered is None, scale=2, elem_id="train-finetune",
            info=not_offered or "Starts from torchvision's ImageNet GoogLeNet (ImageNet stem, width 1) with new heads for these classes.",
        )  # fmt: skip
        freeze_until = gr.Dropdown(
            [NO_FREEZE, *TRUNK], value=NO_FREEZE, label="Freeze up to (fine-tuning)", interactive=False, scale=1, min_width=200,
            elem_id="train-freeze",
        )  # fmt: skip
        shuffle_labels = gr.Checkbox(False, label="Shuffle labels (sanity check)", info=SHUFFLE_INFO, scale=2, elem_id="train-shuffle")
    with gr.Row(equal_height=True):
        minutes = gr.Number(
            rules.max_minutes or 0, label="Stop after (min; 0: when done)", minimum=0, precision=0, elem_id="train-minutes", scale=1
        )
        downloads = rules.downloads or not rules.public
        download = gr.Button("Download CIFAR-10 (170 MB)", scale=1, visible=downloads)
        download100 = gr.Button("Download CIFAR-100 (160 MB)", scale=1, visible=downloads)
        start = gr.Button("Start", variant="primary", scale=1, elem_id="train-start")
        stop = gr.Button("Stop", variant="stop", scale=1, elem_id="train-stop")
    uploaded = gr.State(None)  # this session's extracted .zip (server-side: a client cannot name a folder)
    message = gr.Markdown(label="Message", elem_id="train-message")
    status = gr.Markdown(label="Status", elem_id="train-status")
    owner_note = gr.Markdown(label="Whose run", elem_id="train-owner")
    with gr.Row():
        smoothing = gr.Slider(0, 0.99, value=0.6, step=0.01, label="Smoothing (EMA)")
        log_y = gr.Checkbox(False, label="Log-scale loss")
    with gr.Row():
        curves = gr.Plot(show_label=False, label="Loss and test accuracy per head", elem_id="train-curves", scale=1)
        norms = gr.Plot(show_label=False, label="Gradient and weight norm per module", elem_id="train-norms", scale=1)
    with gr.Row():
        probe_picture = gr.Image(show_label=False, height=128, width=128, interactive=False, scale=0, min_width=140, buttons=[])
        probe = gr.Markdown(label="Probe image per epoch")
        train_log = gr.Textbox(label="Log", lines=8, max_lines=12, autoscroll=True)
    with gr.Row():
        per_class = gr.Plot(show_label=False, label="Test accuracy per class", elem_id="train-per-class", scale=2)
        confusion = gr.Plot(show_label=False, label="Confusion matrix", elem_id="train-confusion", scale=3)
        pairs = gr.Markdown(confused_pairs_text(None, []), label="Most confused pairs", elem_id="train-pairs")
    if rules.admin_token:
        with gr.Accordion("Operator", open=False):
            admin = gr.Textbox(label="Operator token", type="password")
            sign_in = gr.Button("Sign in as operator")
        sign_in.click(operator_sign_in, [admin, token], outputs(Started, dict(message=message, token=token)), api_name="operator_sign_in")
    seen = gr.State(None)
    owner_seen = gr.State(None)
    timer = gr.Timer(1.0)

    form_outputs = outputs(PresetForm, dict(epochs=epochs, batch=batch, lr=lr, width=width, stem=stem))
    preset.change(preset_defaults, preset, form_outputs, api_visibility="private")
    start.click(
        train_start,
        [preset, epochs, batch, lr, width, stem, aux_weight, data, minutes, token, source, finetune, freeze_until, shuffle_labels,
         val_split, uploaded],
        outputs(Started, dict(message=message, token=token)),
        api_name="train_start",
    )  # fmt: skip
    stop.click(train_stop, token, message, api_name="train_stop", queue=False)  # never waits behind other events
    downloaded = download.click(train_download, [data, token], message, api_name="download_cifar10")
    downloaded100 = download100.click(train_download_cifar100, [data, token], message, api_name="download_cifar100")
    if rules.public:
        downloaded.then(dataset_choices, None, data, api_visibility="private")
        downloaded100.then(dataset_choices, None, data, api_visibility="private")
    else:
        downloaded100.then(downloaded_folder, [message, data], data, api_visibility="private")
    source.change(source_view, source, outputs(SourceView, dict(data=data, zip_row=zip_row)),
                  api_visibility="private", queue=False)  # fmt: skip
    upload_zip.upload(
        train_upload_zip, [upload_zip, token], outputs(ZipUpload, dict(message=message, uploaded=uploaded, zip_note=zip_note)),
        api_name="train_upload_zip",
    )  # fmt: skip
    finetune.change(
        finetune_form, finetune, outputs(FineTuneForm, dict(stem=stem, width=width, lr=lr, freeze_until=freeze_until)),
        api_visibility="private", queue=False,
    )  # fmt: skip
    status_json = gr.JSON(visible=False, label="status")
    gr.Button(visible=False).click(train_status, token, status_json, api_name="train_status", queue=False)
    poll_outputs = outputs(
        TrainPoll,
        dict(
            curves=curves,
            status=status,
            train_log=train_log,
            probe=probe,
            seen=seen,
            model=model,
            probe_picture=probe_picture,
            message=message,
            norms=norms,
            per_class=per_class,
            confusion=confusion,
            pairs=pairs,
        ),
    )
    timer.tick(train_poll, [smoothing, log_y, seen, model], poll_outputs, api_visibility="private", show_progress="hidden", queue=False)
    owner_outputs = outputs(OwnerView, dict(owner_note=owner_note, start=start, stop=stop, owner_seen=owner_seen))
    timer.tick(ownership_view, [token, owner_seen], owner_outputs, api_visibility="private", show_progress="hidden", queue=False)
    return whoami, data
