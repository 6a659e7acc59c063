"""One training run's folder: its settings, its event log, its checkpoints and the state to resume.

A run folder (``runs/NAME`` or any ``--out``) holds::

    config.json                  the run's TrainConfig, written when it starts
    metrics.jsonl                one JSON event a line (see googlenet.training.trainer's events)
    epoch-NNN.safetensors        the model after epoch NNN: epoch 1, the powers of two and the
                                 newest few are kept
    last.safetensors             the newest checkpoint (a hard link to the newest epoch file, or a
                                 mid-epoch checkpoint written on stop / max_steps)
    state-SSSSSSSS.pt            optimizer, schedule, RNG and position at step SSSSSSSS: the state
                                 the newest checkpoint names in its metadata (``state_file``)
    epoch-NNN.examples.safetensors  the microscope's cache of a checkpoint, pruned with it
    events.out.tfevents.*        TensorBoard event files (googlenet.training.tensorboard; the timeline adds
                                 the probe's atlas images)
    timeline.json                the run timeline's numbers per epoch (googlenet.analysis.epoch_measures)
    timeline/atlas.safetensors   the probe's branch atlas per epoch (explain.timeline.run_timeline)

The state files are written and read by the trainer only (``torch.save``, read back with
``torch.load(weights_only=True)``, which builds tensors and plain containers and runs no code);
nothing a user uploads is ever read as one. Every file is written atomically, the state file
before the checkpoint that names it, so a crash at any moment leaves the previous pair usable.
"""

from __future__ import annotations

import json
import os
import pickle
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

from googlenet.weights import INDEX_SUFFIX, CheckpointMeta, atomic_write, is_checkpoint_name, read_checkpoint, runs_dir, save_checkpoint

__all__ = ["RunFolder", "Position", "TrainingError", "read_records"]

LAST = "last.safetensors"
CONFIG = "config.json"
METRICS = "metrics.jsonl"
TIMELINE = "timeline.json"  # written by googlenet.analysis.epoch_measures
TIMELINE_ATLAS = Path("timeline") / "atlas.safetensors"  # written by explain.timeline.run_timeline
STATE_SUFFIX = ".pt"


class TrainingError(RuntimeError):
    """Training could not continue; the message says why and what is kept."""


class Position(NamedTuple):
    """Where a checkpoint stands in its run."""

    step: int  # optimizer steps taken
    epoch: int  # epochs completed (batch == 0) or the epoch in progress
    batch: int  # batches of ``epoch`` already trained; 0 at an epoch's end
    accuracy: dict[str, float | None] | None  # the last evaluation's, per head


def read_records(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The JSON objects of a run's ``metrics.jsonl`` (a folder or the file), in order; lines cut
    short by a crash are skipped."""
    path = Path(path)
    if path.is_dir():
        path = path / METRICS
    records: list[dict[str, Any]] = []
    if not path.is_file():
        return records
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            try:
                values = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(values, dict):
                records.append(values)
    return records


class RunFolder:
    """The folder of one run: where it is, what it logs, how it checkpoints, resumes and prunes.

    Build it with :meth:`new` (a run that starts) or :meth:`existing` (a run to resume).
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    @classmethod
    def new(cls, out: str | None, *, preset: str, width: float) -> RunFolder:
        """The folder of a run that starts: ``out`` (a bare NAME lives in the runs folder), or
        ``runs/<preset>-w<width>-<time>``; a folder that already holds a run is refused."""
        if out:
            path = _resolve(out)
        else:
            path = runs_dir() / f"{preset}-w{width}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
        if (path / LAST).exists():
            raise ValueError(f"{path} already holds a run; resume it (--resume) or choose another --out")
        return cls(path)

    @classmethod
    def existing(cls, out: str | None) -> RunFolder:
        """The folder of a run to resume; it must hold a checkpoint."""
        if not out:
            raise ValueError("resume needs the run folder (out=runs/NAME)")
        path = _resolve(out)
        if not (path / LAST).is_file():
            raise ValueError(f"nothing to resume in {path}: no {LAST}")
        return cls(path)

    @property
    def name(self) -> str:
        return self.path.name

    def check_writable(self) -> None:
        """Create the folder and prove a file can be written there, before any training."""
        probe = self.path / ".write-test"
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            probe.write_bytes(b"ok")
            probe.unlink()
        except OSError as error:
            raise TrainingError(
                f"cannot write in the run folder {self.path}: {error}; choose another --out or set GOOGLENET_RUNS"
            ) from None

    # -- settings and events --

    def start(self, config: dict[str, Any]) -> None:
        """A new run: write its settings and start an empty event log. What an earlier run in this
        folder left (one that never reached a checkpoint) goes: its TensorBoard events and timeline
        would otherwise mix into this run's."""
        (self.path / CONFIG).write_text(json.dumps(config, indent=2))
        (self.path / METRICS).unlink(missing_ok=True)
        for stale in (*self.path.glob("events.out.tfevents.*"), self.path / TIMELINE, self.path / TIMELINE_ATLAS):
            stale.unlink(missing_ok=True)

    def read_config(self) -> dict[str, Any]:
        return json.loads((self.path / CONFIG).read_text())

    def log(self, event: Any) -> None:
        """Append one event (a dataclass) to ``metrics.jsonl``."""
        try:
            with open(self.path / METRICS, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(asdict(event)) + "\n")
        except OSError as error:
            raise TrainingError(f"cannot write {self.path / METRICS}: {error}") from None

    def forget_events_after(self, step: int) -> None:
        """On resume: drop the events logged after the checkpoint (they will be logged again) and
        the end of the interrupted session."""
        kept = [r for r in read_records(self.path) if r.get("step", 0) <= step and r.get("kind") != "end"]
        atomic_write(self.path / METRICS, lambda tmp: Path(tmp).write_text("".join(json.dumps(r) + "\n" for r in kept)))

    # -- checkpoints --

    @property
    def last_checkpoint(self) -> Path | None:
        path = self.path / LAST
        return path if path.is_file() else None

    def save(
        self,
        position: Position,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler,
        meta: CheckpointMeta,
        keep: int,
    ) -> Path:
        """Checkpoint the run: the state file first, then the model that names it in
        ``meta.training["state_file"]``, so a crash between the two leaves the old pair valid.

        At an epoch's end (``position.batch == 0``) the model goes to ``epoch-NNN.safetensors``
        and ``last.safetensors`` becomes a second name for it; mid-epoch (stop, ``max_steps``)
        to ``last.safetensors`` only. Then old state files and all but epoch 1 and the ``keep``
        newest epoch files are removed.
        """
        state_name = f"state-{position.step:08d}{STATE_SUFFIX}"
        state = {
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "rng": _rng_state(_device_of(model)),
            "position": position._asdict(),
        }
        epoch_end = position.batch == 0
        target = self.path / (f"epoch-{position.epoch:03d}.safetensors" if epoch_end else LAST)
        try:
            atomic_write(self.path / state_name, lambda tmp: torch.save(state, tmp))
            save_checkpoint(target, model, CheckpointMeta(meta.classes, meta.preprocess, {**meta.training, "state_file": state_name}))
            if epoch_end:
                atomic_write(self.path / LAST, lambda tmp: _link_or_copy(target, Path(tmp)))
        except OSError as error:
            raise TrainingError(
                f"could not write a checkpoint in {self.path}: {error}. "
                + (f"The newest complete checkpoint is still {self.last_checkpoint}." if self.last_checkpoint else "")
            ) from None
        self.prune(keep, state_name)
        return target

    def restore(self, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LRScheduler) -> Position:
        """Load the newest checkpoint's weights and its state file's optimizer, schedule and RNG
        into the given objects; return where the run stands."""
        saved, meta = read_checkpoint(self.path / LAST)
        model.load_state_dict(saved.state_dict())
        state_name = meta.training["state_file"]
        path = self.path / state_name
        if not state_name.endswith(STATE_SUFFIX):
            raise TrainingError(
                f"{path.name} was written by an earlier version of the trainer and cannot be resumed; "
                f"{self.path / LAST} still loads for exploring and evaluation"
            )
        try:
            # The optimizer's load_state_dict moves each state to its parameter's device; the RNG
            # setters take CPU tensors: so everything is read onto the CPU.
            state = torch.load(path, map_location="cpu", weights_only=True)
        except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as error:
            raise TrainingError(f"cannot read the training state {path}: {error}") from None
        position = Position(**state["position"])
        if position.step != meta.training["step"]:
            raise TrainingError(f"{path.name} is for step {position.step}, the checkpoint for {meta.training['step']}")
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        _set_rng_state(state["rng"], _device_of(model))
        return position

    def prune(self, keep: int, current_state: str) -> None:
        """Remove state files other than ``current_state`` and every epoch file but epoch 1, the
        powers of two and the ``keep`` newest, with their microscope caches.

        The powers of two keep the run timeline's early epochs, where branches specialise (Voss
        et al. 2021), measurable after the run at a logarithmic cost: a 40-epoch run keeps 9
        files (1, 2, 4, 8, 16, 32 and the newest 3) instead of 4.
        """
        for old in self.path.glob(f"state-*{STATE_SUFFIX}"):
            if old.name != current_state:
                old.unlink(missing_ok=True)
        epochs = sorted(p for p in self.path.glob("epoch-*.safetensors") if is_checkpoint_name(p.name))
        newest = set(epochs[max(0, len(epochs) - keep) :]) if keep > 0 else set()
        for old in epochs[1:]:
            number = _epoch_number(old)
            if old in newest or (number is not None and number & (number - 1) == 0):
                continue
            old.unlink(missing_ok=True)
            old.with_name(old.stem + INDEX_SUFFIX).unlink(missing_ok=True)


def _epoch_number(path: Path) -> int | None:
    """``epoch-012.safetensors`` → 12 (``None`` for another name)."""
    digits = path.stem.removeprefix("epoch-")
    return int(digits) if digits.isdigit() and int(digits) > 0 else None


def _resolve(out: str) -> Path:
    path = Path(out)
    if not path.is_absolute() and len(path.parts) == 1:
        path = runs_dir() / path  # a bare NAME lives in the runs folder
    return path


def _device_of(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _rng_state(device: torch.device) -> dict[str, torch.Tensor]:
    rng = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        rng["cuda"] = torch.cuda.get_rng_state(device)
    return rng


def _set_rng_state(rng: dict[str, torch.Tensor], device: torch.device) -> None:
    torch.set_rng_state(rng["cpu"])
    if "cuda" in rng and device.type == "cuda":
        torch.cuda.set_rng_state(rng["cuda"], device)


def _link_or_copy(source: Path, target: Path) -> None:
    target.unlink(missing_ok=True)
    try:
        os.link(source, target)
    except OSError:
        target.write_bytes(source.read_bytes())
