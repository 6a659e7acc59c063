"""Watch a run learn: :mod:`googlenet.analysis.epoch_measures`'s numbers per epoch (heads, branch selectivity,
energy share, knock-out importance) plus the probe image's branch atlas per epoch — the Grad-CAM of
all 36 branches for the probe's true class — cached beside the run, so a finished epoch is never
explored twice.

The atlas cache is ``runs/NAME/timeline/atlas.safetensors`` (inside a folder so that the model
picker, which lists ``runs/*/*.safetensors``, never takes it for a checkpoint): per checkpoint
content hash, every branch's signed Grad-CAM in float16 and, in the metadata, the branches'
contributions and the heads' probabilities. The figures are in :mod:`explain.timeline.timeline_figures`.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import plotly.colors
import torch
from PIL import Image
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import Tensor

from explain.explorer import Exploration, Explorer, Prediction
from googlenet.analysis.epoch_measures import (
    EpochEntry,
    Timeline,
    epoch_files,
    file_digest,
    read_timeline,
    resolve_run,
    run_data,
    run_timeline,
)
from googlenet.datasets.cifar10 import CIFAR10, read_cifar10
from googlenet.model import GoogLeNet
from googlenet.spec import NetworkSpec, describe
from googlenet.training.runs import TIMELINE_ATLAS
from googlenet.weights import CheckpointError, atomic_write, is_checkpoint_name, load_model, read_meta

__all__ = ["AtlasFrame", "RunTimeline", "timeline", "cached_timeline", "atlas_image", "ATLAS_FILE"]

ATLAS_FILE = TIMELINE_ATLAS
ATLAS_FORMAT = "googlenet-timeline-atlas/1"
_LOCK = threading.Lock()


@dataclass(frozen=True)
class AtlasFrame:
    """The probe image's 36 Grad-CAMs (for its true class) under one epoch's weights."""

    epoch: int
    step: int
    sha1: str  # of the checkpoint file
    cams_signed: dict[str, Tensor]  # branch → H×W, float32
    contributions: dict[str, float]  # branch → Σ grad ⊙ activation
    shares: dict[str, float]  # branch → its share of the module's |evidence|
    probabilities: dict[str, list[float]]  # head → softmax over the classes


@dataclass(frozen=True)
class RunTimeline:
    """A run's numbers per epoch and its probe atlas per epoch (epochs whose file is gone keep theirs)."""

    numbers: Timeline
    frames: tuple[AtlasFrame, ...]
    spec: NetworkSpec
    classes: tuple[str, ...]
    kernels: dict[str, str]
    probe_index: int
    probe_target: int
    image: np.ndarray  # the probe as the model sees it, H×W×3 uint8
    computed: int  # atlas frames made by this call

    @property
    def probe_label(self) -> str:
        return self.classes[self.probe_target]

    def exploration(self, frame: AtlasFrame) -> Exploration:
        """The frame as an :class:`Exploration` (Grad-CAMs, shares and predictions; no activations),
        so :func:`explain.render.figures.atlas_figure` draws it as it draws a live one."""
        predictions = {}
        probabilities = {}
        for head, values in frame.probabilities.items():
            p = torch.tensor(values)
            probabilities[head] = p
            top = p.topk(min(5, len(values)))
            predictions[head] = [Prediction(self.classes[int(i)], int(i), float(v)) for v, i in zip(top.values, top.indices)]
        return Exploration(
            key=("timeline", frame.sha1, self.probe_index), spec=self.spec, model_name=f"epoch {frame.epoch}", image=self.image,
            input=torch.empty(0), target=self.probe_target, target_name=self.probe_label, activations={},
            cams={b: m.clamp(min=0) for b, m in frame.cams_signed.items()}, cams_signed=frame.cams_signed,
            predictions=predictions, probabilities=probabilities, contributions=frame.contributions, shares=frame.shares,
            kernels=self.kernels,
        )  # fmt: skip

    def to_json(self) -> dict:
        values = self.numbers.to_json()
        values["probe"] = {"index": self.probe_index, "label": self.probe_label}
        values["atlas_epochs"] = [f.epoch for f in self.frames]
        return values


def timeline(
    run: str | os.PathLike,
    data: CIFAR10 | str | os.PathLike | None = None,
    max_images: int | None = 2000,
    device: str | torch.device | None = None,
    precision: str = "auto",
    progress: Callable[[float, str], None] | None = None,
    on_entry: Callable[[EpochEntry], None] | None = None,
) -> RunTimeline:
    """Measure what is new in ``run`` (numbers and atlas of each new epoch file), return it all.

    Arguments as :func:`googlenet.analysis.epoch_measures.run_timeline`; the atlas needs the test set's probe image.
    """
    numbers = run_timeline(run, data, max_images, device, precision, _part(progress, 0.0, 0.9), on_entry)
    path = resolve_run(run)
    return _with_atlas(path, numbers, data, device, compute=True, progress=_part(progress, 0.9, 1.0))


def cached_timeline(run: str | os.PathLike, data: CIFAR10 | str | os.PathLike | None = None) -> RunTimeline:
    """What the caches hold, measuring nothing (a live view shows this at once, then updates)."""
    path = resolve_run(run)
    return _with_atlas(path, read_timeline(path), data, None, compute=False)


def _part(progress: Callable[[float, str], None] | None, low: float, high: float) -> Callable[[float, str], None] | None:
    """``progress`` for one stage of the work: its 0 … 1 mapped to ``low`` … ``high`` of the whole."""
    if progress is None:
        return None
    return lambda fraction, message: progress(low + (high - low) * fraction, message)


# -- the atlas per epoch --------------------------------------------------------------------


def _with_atlas(path: Path, numbers: Timeline, data, device, compute: bool, progress=None) -> RunTimeline:
    config = _run_config(path)
    probe_index = int(config.get("probe_index", 0))
    spec, classes, kernels = _network(path)
    stored = _read_atlas(path, probe_index)
    image, target = stored.pop("__probe__", (None, None))
    files = epoch_files(path)
    digests = {epoch: file_digest(p) for epoch, p in files.items()}
    new: list[AtlasFrame] = []
    missing = {e: p for e, p in files.items() if digests[e] not in stored} if compute else {}
    if missing:
        picture, target = _probe(data if data is not None else run_data(path), probe_index)
        for i, (epoch, file) in enumerate(missing.items()):
            if progress is not None:
                progress(i / len(missing), f"epoch {epoch}: the probe's atlas")
            try:
                loaded = load_model(file, device=device)
            except (CheckpointError, OSError):
                continue  # pruned while we looked
            exploration = Explorer(loaded, cache_size=0).explore(picture, target=target)
            image = exploration.image
            new.append(_frame(epoch, int(loaded.training.get("step", 0)), digests[epoch], exploration))
            stored[digests[epoch]] = new[-1]
        _write_atlas(path, probe_index, target, image, stored)
    by_epoch: dict[int, AtlasFrame] = {}  # per epoch: the present file's frame, else (pruned) the one cached
    for frame in sorted(stored.values(), key=lambda f: f.epoch):
        if digests.get(frame.epoch, frame.sha1) == frame.sha1:
            by_epoch[frame.epoch] = frame
    if image is None:
        image = np.zeros((8, 8, 3), dtype=np.uint8)
        target = target if target is not None else 0
    frames = tuple(by_epoch[e] for e in sorted(by_epoch))
    result = RunTimeline(numbers, frames, spec, classes, kernels, probe_index, int(target), image, len(new))
    if new:
        _tensorboard_atlas(path, result, new)
    return result


def _tensorboard_atlas(path: Path, run: RunTimeline, frames: list[AtlasFrame]) -> None:
    """The new frames as ``timeline/atlas`` images in the run's TensorBoard log, when the run keeps
    one (the trainer writes ``events.out.tfevents.*`` unless ``--no-tensorboard``)."""
    if not any(path.glob("events.out.tfevents.*")):
        return
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return
    writer = SummaryWriter(log_dir=str(path), filename_suffix=".timeline")
    try:
        for frame in frames:
            writer.add_image("timeline/atlas", atlas_image(run.exploration(frame)), frame.step, dataformats="HWC")
    finally:
        writer.close()


def _frame(epoch: int, step: int, sha1: str, exploration: Exploration) -> AtlasFrame:
    return AtlasFrame(
        epoch=epoch, step=step, sha1=sha1,
        cams_signed={b: exploration.cams_signed[b].float().clone() for b in exploration.branches},
        contributions={b: round(v, 6) for b, v in exploration.contributions.items()},
        shares={b: round(v, 6) for b, v in exploration.shares.items()},
        probabilities={h: [round(v, 5) for v in p.tolist()] for h, p in exploration.probabilities.items()},
    )  # fmt: skip


def _probe(data, index: int) -> tuple[Tensor, int]:
    if data is None:
        raise ValueError("which test set? the run has no config.json naming its data; pass data (--data DIR)")
    if not isinstance(data, CIFAR10):
        data = read_cifar10(data)
    if not 0 <= index < len(data.test_labels):
        raise ValueError(f"probe_index {index} is outside the {len(data.test_labels)} test images")
    return data.test_images[index], int(data.test_labels[index])


def _network(path: Path) -> tuple[NetworkSpec, tuple[str, ...], dict[str, str]]:
    """The run's network, read from a checkpoint's header and built on the meta device (no weights read)."""
    candidates = [*epoch_files(path).values(), *sorted(p for p in path.glob("*.safetensors") if is_checkpoint_name(p.name))]
    for candidate in candidates:
        try:
            config, meta = read_meta(candidate)
        except (CheckpointError, OSError):
            continue
        with torch.device("meta"):
            model = GoogLeNet(**asdict(config))
        spec = describe(model)
        return spec, meta.classes, {b.name: b.kernel for m in spec.modules for b in m.branches}
    raise ValueError(f"{path} holds no readable checkpoint to tell its network")


def _read_atlas(path: Path, probe_index: int) -> dict:
    """sha1 → :class:`AtlasFrame`, plus ``"__probe__"`` → (picture, target); empty when absent,
    damaged or made for another probe image."""
    file = path / ATLAS_FILE
    if not file.is_file():
        return {}
    try:
        with safe_open(str(file), framework="pt") as handle:
            metadata = handle.metadata() or {}
            if metadata.get("format") != ATLAS_FORMAT or int(metadata.get("probe_index", -1)) != probe_index:
                return {}
            info = json.loads(metadata["frames"])
            stored: dict = {"__probe__": (handle.get_tensor("probe").numpy(), int(metadata["target"]))}
            for sha1, values in info.items():
                cams = {b: handle.get_tensor(f"{sha1}.{b}").float() for b in values["contributions"]}
                stored[sha1] = AtlasFrame(
                    values["epoch"], values["step"], sha1, cams, values["contributions"], values["shares"], values["probabilities"]
                )
    except (SafetensorError, OSError, KeyError, ValueError, TypeError, json.JSONDecodeError):
        return {}  # rebuilt from the epoch files still present
    return stored


def _write_atlas(path: Path, probe_index: int, target: int, image: np.ndarray, frames: dict) -> None:
    tensors = {"probe": torch.from_numpy(np.ascontiguousarray(image))}
    info = {}
    for sha1, frame in frames.items():
        for branch, cam in frame.cams_signed.items():
            tensors[f"{sha1}.{branch}"] = cam.to(torch.float16).contiguous()  # maps to a colour: fp16 is plenty, half the bytes
        info[sha1] = {
            "epoch": frame.epoch, "step": frame.step, "contributions": frame.contributions,
            "shares": frame.shares, "probabilities": frame.probabilities,
        }  # fmt: skip
    metadata = {"format": ATLAS_FORMAT, "probe_index": str(probe_index), "target": str(target), "frames": json.dumps(info)}
    with _LOCK:
        try:
            atomic_write(path / ATLAS_FILE, lambda tmp: save_file(tensors, tmp, metadata=metadata))
        except OSError:
            pass  # a read-only run folder: the frames still show, they are just not cached


def _run_config(path: Path) -> dict:
    try:
        return json.loads((path / "config.json").read_text())
    except (OSError, json.JSONDecodeError):
        return {}


# -- the atlas as a picture (TensorBoard) ------------------------------------------------------


def _lut(colorscale: str = "Inferno") -> np.ndarray:
    """256 × 3 uint8 colours interpolated from a plotly sequential colour scale."""
    stops = np.array([plotly.colors.hex_to_rgb(c) for c in getattr(plotly.colors.sequential, colorscale)], dtype=np.float64)
    at = np.linspace(0, 1, len(stops))
    grid = np.linspace(0, 1, 256)
    return np.stack([np.interp(grid, at, stops[:, c]) for c in range(3)], axis=1).round().astype(np.uint8)


def atlas_image(exploration: Exploration, cell: int = 64, opacity: float = 0.6) -> np.ndarray:
    """The 9×4 Grad-CAM atlas as one H×W×3 uint8 picture (modules left to right, branches top to
    bottom, as :func:`explain.render.figures.atlas_figure` lays it out), each map over the picture on
    the atlas's own scale (0 … its largest value), for TensorBoard's image tab."""
    spec = exploration.spec
    rows, cols = spec.branch_kinds, spec.modules
    gap = 2
    sheet = np.full((len(rows) * (cell + gap) - gap, len(cols) * (cell + gap) - gap, 3), 255, dtype=np.uint8)
    picture = np.asarray(Image.fromarray(exploration.image).resize((cell, cell), Image.Resampling.BILINEAR), dtype=np.float64)
    peak = max((float(exploration.cams[b].max()) for b in exploration.branches), default=0.0) or 1.0
    lut = _lut()
    for c, module in enumerate(cols):
        for branch in module.branches:
            r = rows.index(branch.branch)
            m = exploration.cams[branch.name].float().numpy() / peak
            m = np.asarray(Image.fromarray(m.astype(np.float32)).resize((cell, cell), Image.Resampling.BILINEAR))
            color = lut[np.clip(m * 255, 0, 255).astype(np.uint8)].astype(np.float64)
            y, x = r * (cell + gap), c * (cell + gap)
            sheet[y : y + cell, x : x + cell] = ((1 - opacity) * picture + opacity * color).round().astype(np.uint8)
    return sheet
