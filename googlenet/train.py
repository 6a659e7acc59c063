"""Training GoogLeNet on CIFAR-10: one Trainer for the CLI, the app and the tests.

``Trainer(config).run(on_event, stop)`` trains, evaluates every epoch, checkpoints every epoch and
on stop, and reports typed events (also appended to ``runs/NAME/metrics.jsonl``). Multi-GPU runs
use the same code under ``torchrun`` (DistributedDataParallel).
"""

from __future__ import annotations

import json
import math
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from .data import CIFAR10, Augment, DeviceBatches, read_cifar10
from .device import amp_dtype
from .model import GoogLeNet, GoogLeNetOutputs
from .preprocess import CIFAR10 as CIFAR10_RECIPE
from .preprocess import IMAGENET, Preprocess
from .weights import (
    INDEX_SUFFIX,
    CheckpointMeta,
    atomic_write,
    is_checkpoint_name,
    pick_device,
    read_checkpoint,
    runs_dir,
    save_checkpoint,
)

__all__ = [
    "PRESETS",
    "amp_dtype",
    "preset_for_device",
    "TrainConfig",
    "Trainer",
    "StartEvent",
    "StepEvent",
    "EpochEvent",
    "EndEvent",
    "TrainingError",
    "TrainingDiverged",
    "read_metrics",
]

# What each preset sets; explicit TrainConfig arguments (or CLI flags) override these.
PRESETS: dict[str, dict[str, Any]] = {
    # reference/googlenet-guide.md, section 5, as written: the paper's plain network at 224×224.
    "guide": dict(
        epochs=100, batch_size=64, lr=0.05, momentum=0.9, nesterov=False, weight_decay=1e-4,
        schedule="step", step_size=30, gamma=0.1, warmup=0.0, label_smoothing=0.0,
        width=1.0, stem="imagenet", batch_norm=False, dropout=0.4, input_size=224,
        pad_mode="constant", normalize="imagenet", precision="fp32", channels_last=False, cutout=0,
    ),
    # CIFAR stem at 32×32, BN, one-cycle SGD-Nesterov, label smoothing, data on the device.
    # At width 0.25 on the 4,068-image subset: see README "Training" for the measured accuracy.
    "fast": dict(
        epochs=40, batch_size=128, lr=0.2, momentum=0.9, nesterov=True, weight_decay=5e-4,
        schedule="onecycle", step_size=30, gamma=0.1, warmup=0.25, label_smoothing=0.1,
        width=None, stem="cifar", batch_norm=True, dropout=0.4, input_size=32,
        pad_mode="reflect", normalize="cifar", precision="auto", channels_last=True, cutout=0,
    ),
}  # fmt: skip
SCHEDULES = ("onecycle", "step", "constant")


def preset_for_device(preset: str, device: torch.device) -> dict[str, Any]:
    """A preset's values with the device-dependent ones filled in, as the app's Train tab offers
    them: width 1.0 on a GPU and 0.25 on a CPU, and on a CPU the fast preset at batch 64 / lr 0.1,
    which measured as accurate and as fast as 128 / 0.2 (73.8 % both after 40 epochs) with half
    the activation memory in the app's process."""
    values = dict(PRESETS[preset])
    if values["width"] is None:
        values["width"] = 1.0 if device.type == "cuda" else 0.25
    if preset == "fast" and device.type == "cpu":
        values.update(batch_size=64, lr=0.1)
    return values


@dataclass(frozen=True)
class TrainConfig:
    """A training run. Fields left ``None`` take the value of ``preset`` (see :data:`PRESETS`).

    ``width=None`` (the fast preset) means 1.0 on a GPU and 0.25 on a CPU, where full width trains
    at about 10 images/s (2-core CPU) against about 130 for width 0.25.
    """

    data: str = "data"
    preset: str = "fast"
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None  # peak lr for onecycle, initial lr for step
    momentum: float | None = None
    nesterov: bool | None = None
    weight_decay: float | None = None
    schedule: str | None = None  # onecycle | step | constant
    warmup: float | None = None  # onecycle: fraction of steps rising to lr
    anneal: str = "linear"  # onecycle: "linear" or "cos" descent after the warm-up
    final_div: float = 1e3  # onecycle: the last lr is lr / 25 / final_div
    step_size: int | None = None  # step: epochs between lr drops
    gamma: float | None = None  # step: lr factor at each drop
    label_smoothing: float | None = None
    aux_weight: float = 0.3  # loss = main + aux_weight × (aux1 + aux2), the paper's 0.3
    width: float | None = None
    stem: str | None = None
    batch_norm: bool | None = None
    aux_logits: bool = True
    dropout: float | None = None
    aux_dropout: float = 0.7
    input_size: int | None = None
    crop_padding: int = 4
    cutout: int | None = None  # side of the Cutout square in pixels (0: none)
    pad_mode: str | None = None
    flip: bool = True
    normalize: str | None = None  # cifar | imagenet statistics
    precision: str | None = None  # auto (bf16 on CUDA and on CPUs with native bf16, else fp32) | fp32 | bf16
    channels_last: bool | None = None
    compile: bool = False
    seed: int = 0
    out: str | None = None  # run folder; default runs/<preset>-w<width>-<time>
    device: str | None = None
    max_steps: int | None = None  # stop (with a checkpoint) after this many steps in total
    log_every: int | None = None  # steps between step events; default 1 on CPU, 20 on GPU
    keep_checkpoints: int = 3  # newest epoch-NNN files kept, besides epoch 1 and last
    resume: bool = False
    probe_index: int = 0  # test image whose per-head predictions are reported every epoch

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise ValueError(f"unknown preset {self.preset!r}; expected one of {sorted(PRESETS)}")
        for name, value in PRESETS[self.preset].items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, value)
        self._validate()

    def _validate(self) -> None:
        checks = [
            (self.epochs >= 1, f"epochs must be ≥ 1, got {self.epochs}"),
            (self.batch_size >= 1, f"batch_size must be ≥ 1, got {self.batch_size}"),
            (self.lr > 0 and math.isfinite(self.lr), f"lr must be a positive number, got {self.lr}"),
            (self.weight_decay >= 0, f"weight_decay must be ≥ 0, got {self.weight_decay}"),
            (self.schedule in SCHEDULES, f"schedule must be one of {SCHEDULES}, got {self.schedule!r}"),
            (0 <= self.warmup < 1, f"warmup must be in [0, 1), got {self.warmup}"),
            (self.anneal in ("linear", "cos"), f"anneal must be linear or cos, got {self.anneal!r}"),
            (self.final_div >= 1, f"final_div must be ≥ 1, got {self.final_div}"),
            (0 <= self.label_smoothing < 1, f"label_smoothing must be in [0, 1), got {self.label_smoothing}"),
            (self.aux_weight >= 0, f"aux_weight must be ≥ 0, got {self.aux_weight}"),
            (self.stem in ("cifar", "imagenet"), f"stem must be 'cifar' or 'imagenet', got {self.stem!r}"),
            (self.width is None or 0 < self.width <= 4, f"width must be in (0, 4], got {self.width}"),
            (16 <= self.input_size <= 512, f"input_size must be in [16, 512], got {self.input_size}"),
            (self.pad_mode in ("reflect", "constant"), f"pad_mode must be reflect or constant, got {self.pad_mode!r}"),
            (self.normalize in ("cifar", "imagenet"), f"normalize must be cifar or imagenet, got {self.normalize!r}"),
            (self.precision in ("auto", "fp32", "bf16"), f"precision must be auto, fp32 or bf16, got {self.precision!r}"),
            (self.max_steps is None or self.max_steps >= 1, f"max_steps must be ≥ 1, got {self.max_steps}"),
            (0 <= self.crop_padding <= 16, f"crop_padding must be in [0, 16], got {self.crop_padding}"),
            (0 <= self.cutout <= self.input_size, f"cutout must be in [0, input_size], got {self.cutout}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        if self.stem == "imagenet" and self.input_size < 64:
            raise ValueError(
                f"the imagenet stem down-samples 8× before inception3a; use input_size ≥ 64 (got {self.input_size}) or stem='cifar'"
            )

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})

    @property
    def preprocess(self) -> Preprocess:
        """The input recipe the run trains with and its checkpoints carry: the chosen statistics at
        ``input_size`` (pictures are used whole: resize to the input size, no crop)."""
        return (CIFAR10_RECIPE if self.normalize == "cifar" else IMAGENET).with_size(self.input_size)


# -- events ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class StartEvent:
    run: str
    out: str
    device: str
    steps_per_epoch: int
    total_steps: int
    start_step: int
    params: int
    config: dict[str, Any]
    kind: str = "start"


@dataclass(frozen=True)
class StepEvent:
    step: int
    epoch: float  # fractional: 2.5 is half-way through the third epoch
    loss: float
    loss_main: float
    loss_aux1: float | None
    loss_aux2: float | None
    lr: float
    images_per_s: float
    elapsed: float
    eta: float
    kind: str = "step"


@dataclass(frozen=True)
class EpochEvent:
    epoch: int  # epochs completed
    step: int
    acc_main: float
    acc_aux1: float | None
    acc_aux2: float | None
    test_loss: float
    seconds: float
    checkpoint: str | None
    probe: dict[str, Any] = field(default_factory=dict)  # label and top-3 per head of one test image
    kind: str = "epoch"


@dataclass(frozen=True)
class EndEvent:
    status: str  # finished | stopped | diverged | failed
    message: str
    step: int
    epoch: float
    checkpoint: str | None
    accuracy: dict[str, float | None] | None
    seconds: float
    kind: str = "end"


Event = StartEvent | StepEvent | EpochEvent | EndEvent
_EVENT_TYPES = {cls.__dataclass_fields__["kind"].default: cls for cls in (StartEvent, StepEvent, EpochEvent, EndEvent)}


class TrainingError(RuntimeError):
    """Training could not continue; the message says why and what is kept."""


class TrainingDiverged(TrainingError):
    """The loss became NaN or infinite."""


def read_metrics(path: str | os.PathLike) -> list[Event]:
    """Events from a run's ``metrics.jsonl`` (a folder or the file); unreadable lines are skipped."""
    path = Path(path)
    if path.is_dir():
        path = path / "metrics.jsonl"
    events: list[Event] = []
    if not path.is_file():
        return events
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            try:
                values = json.loads(line)
                events.append(_EVENT_TYPES[values["kind"]](**values))
            except (json.JSONDecodeError, KeyError, TypeError):
                continue  # a line cut short by a crash
    return events


# -- the trainer ----------------------------------------------------------------------------


class Trainer:
    """Trains one run described by a :class:`TrainConfig`.

    Args:
        config: the run.
        data: already-read CIFAR-10 (tests and the app pass it to skip re-reading); default reads
            ``config.data``.
    """

    def __init__(self, config: TrainConfig, data: CIFAR10 | None = None) -> None:
        self.config = config
        self._data = data
        self.model: GoogLeNet | None = None  # the trained model once run() returns (train mode)

    def run(self, on_event: Callable[[Event], None] | None = None, stop: threading.Event | None = None) -> EndEvent:
        """Train until the last epoch, ``max_steps`` or ``stop``; return the final event.

        Raises :class:`TrainingDiverged` on a non-finite loss (after the end event; the last
        good checkpoint stays the newest) and ``DataError``/``ValueError`` on bad data or config.
        """
        rank, world, local_rank = _distributed_env()
        # Under torchrun even one process joins a process group and trains through DDP, so that a
        # one-GPU machine runs the NCCL path that several GPUs will (``python -m bench.gpu``).
        distributed = world > 1 or "TORCHELASTIC_RUN_ID" in os.environ
        if distributed and not dist.is_initialized():
            backend = "nccl" if torch.cuda.is_available() and self.config.device != "cpu" else "gloo"
            dist.init_process_group(backend)
        device = pick_device(self.config.device)
        if device.type == "cuda" and distributed:
            device = torch.device("cuda", local_rank)
            torch.cuda.set_device(device)
        run = _Run(self.config, self._data, device, rank, world, on_event, stop or threading.Event())
        self.model = run.model
        return run.train()


# What a resumed session may set anew; everything else continues as the run was configured.
_SESSION_FIELDS = ("data", "out", "resume", "device", "max_steps", "log_every")


def _resumed_config(given: TrainConfig, saved: TrainConfig, out: Path) -> TrainConfig:
    """The saved config, with this session's device, step limit, logging and data folder.

    A setting given anew that differs from the saved one is refused rather than ignored; a step
    limit applies to this session only (resuming a run cut by ``max_steps`` runs it to the end).
    """
    default = TrainConfig(preset=given.preset)  # what `given` holds where nothing was set
    changed = [
        f"{f.name} ({getattr(saved, f.name)!r} saved, {getattr(given, f.name)!r} given)"
        for f in fields(TrainConfig)
        if f.name not in _SESSION_FIELDS
        and getattr(given, f.name) not in (f.default if f.name == "preset" else getattr(default, f.name), getattr(saved, f.name))
    ]
    if changed:
        raise ValueError(f"--resume continues {out} with its saved settings; these cannot change: {'; '.join(changed)}")
    overrides = {k: getattr(given, k) for k in ("device", "log_every") if getattr(given, k) is not None}
    if given.data != TrainConfig.data:  # a data folder given for the resume wins over the saved one
        overrides["data"] = given.data
    return replace(saved, **overrides, max_steps=given.max_steps, resume=True)


def _distributed_env() -> tuple[int, int, int]:
    return (int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0)))


class _Run:
    """The state of one run; ``Trainer.run`` builds one and calls ``train``."""

    def __init__(self, config, data, device, rank, world, on_event, stop) -> None:
        self.device, self.rank, self.world, self.stop = device, rank, world, stop
        self.out = self._out_dir(config)
        if config.resume:
            config = _resumed_config(config, TrainConfig.from_dict(json.loads((self.out / "config.json").read_text())), self.out)
        if config.width is None:
            config = replace(config, width=1.0 if device.type == "cuda" else 0.25)
        self.config = config
        self.user_callback = on_event
        self.is_main = rank == 0
        self.started = time.perf_counter()

        self.data = data if data is not None else read_cifar10(config.data)
        torch.manual_seed(config.seed)
        self.model = GoogLeNet(
            num_classes=len(self.data.classes), aux_logits=config.aux_logits, batch_norm=config.batch_norm,
            stem=config.stem, width=config.width, dropout=config.dropout, aux_dropout=config.aux_dropout,
        ).to(device)  # fmt: skip
        if config.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.amp_dtype = amp_dtype(config.precision, device)
        augment = Augment(config.preprocess, config.crop_padding, config.pad_mode, config.flip, config.cutout)
        if config.batch_size % world:
            raise ValueError(f"batch_size {config.batch_size} must divide evenly over {world} processes")
        self.train_batches = DeviceBatches(
            self.data.train_images, self.data.train_labels, config.batch_size // world, augment, device,
            train=True, seed=config.seed, rank=rank, world=world, channels_last=config.channels_last,
        )  # fmt: skip
        # no_grad evaluation holds far less per image than a training step, but a 500-image batch
        # of the width-0.25 CIFAR model still took 880 MB at once on a CPU: twice the training batch
        eval_batch = min(500 if config.input_size <= 64 else 50, 2 * (config.batch_size // world))
        self.test_batches = DeviceBatches(
            self.data.test_images, self.data.test_labels, eval_batch, augment, device,
            train=False, channels_last=config.channels_last,
        )  # fmt: skip
        self.steps_per_epoch = len(self.train_batches)
        self.total_steps = config.epochs * self.steps_per_epoch
        if config.max_steps is not None:
            self.total_steps = min(self.total_steps, config.max_steps)
        self.optimizer = torch.optim.SGD(
            self.model.parameters(), lr=config.lr, momentum=config.momentum,
            nesterov=config.nesterov and config.momentum > 0, weight_decay=config.weight_decay,
        )  # fmt: skip
        self.scheduler = self._scheduler()
        self.step = 0
        self.accuracy: dict[str, float | None] | None = None
        self.log_every = config.log_every or (1 if device.type == "cpu" else 20)

        self.net: nn.Module = self.model
        self.ddp = dist.is_available() and dist.is_initialized()
        if self.ddp:
            ids = [device.index] if device.type == "cuda" else None
            self.net = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        if config.compile:
            self.net = torch.compile(self.net)

    # -- setup --

    def _out_dir(self, config: TrainConfig) -> Path:
        if config.out:
            out = Path(config.out)
            if not out.is_absolute() and len(out.parts) == 1:
                out = runs_dir() / out  # a bare NAME lives in the runs folder
        elif config.resume:
            raise ValueError("resume needs the run folder (out=runs/NAME)")
        else:
            stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
            width = config.width if config.width is not None else ("1.0" if self.device.type == "cuda" else "0.25")
            out = runs_dir() / f"{config.preset}-w{width}-{stamp}"
        if config.resume and not (out / "last.safetensors").is_file():
            raise ValueError(f"nothing to resume in {out}: no last.safetensors")
        if not config.resume and (out / "last.safetensors").exists():
            raise ValueError(f"{out} already holds a run; resume it (--resume) or choose another --out")
        return out

    def _scheduler(self):
        c = self.config
        total = c.epochs * self.steps_per_epoch
        if c.schedule == "onecycle" and total >= 4:
            # At least two steps per phase: OneCycleLR divides by the length of each phase.
            warmup = min(max(c.warmup, 2 / total), 1 - 2 / total)
            return torch.optim.lr_scheduler.OneCycleLR(
                self.optimizer, max_lr=c.lr, total_steps=total,
                pct_start=warmup, anneal_strategy=c.anneal, div_factor=25, final_div_factor=c.final_div,
            )  # fmt: skip
        if c.schedule == "step":
            return torch.optim.lr_scheduler.StepLR(self.optimizer, step_size=c.step_size, gamma=c.gamma)
        return torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda _: 1.0)

    # -- the loop --

    def train(self) -> EndEvent:
        c = self.config
        start_epoch, start_batch = 0, 0
        if self.is_main:
            _check_writable(self.out)
        if c.resume:
            start_epoch, start_batch = self._restore()
        elif self.is_main:
            (self.out / "config.json").write_text(json.dumps(asdict(c), indent=2))
            (self.out / "metrics.jsonl").unlink(missing_ok=True)
        self.emit(
            StartEvent(
                run=self.out.name, out=str(self.out), device=str(self.device), steps_per_epoch=self.steps_per_epoch,
                total_steps=self.total_steps, start_step=self.step,
                params=sum(p.numel() for p in self.model.parameters()), config=asdict(c),
            )
        )  # fmt: skip
        self.session_start, self.session_step = time.perf_counter(), self.step
        try:
            if c.max_steps is not None and self.step >= c.max_steps:
                return self._end("finished", f"already at step {self.step}, max_steps={c.max_steps}", self.last_checkpoint)
            for epoch in range(start_epoch, c.epochs):
                status = self._train_epoch(epoch, start_batch)
                start_batch = 0
                if status is not None:
                    return status
            return self._end("finished", f"finished {c.epochs} epochs", self.last_checkpoint)
        finally:
            if self.ddp and dist.is_initialized():
                dist.destroy_process_group()

    def _train_epoch(self, epoch: int, start_batch: int) -> EndEvent | None:
        c = self.config
        self.net.train()
        sums = torch.zeros(4, device=self.device)
        count, interval_start, interval_images = 0, time.perf_counter(), 0
        for batch, (x, y) in enumerate(self.train_batches.epoch(epoch, start_batch), start=start_batch):
            with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
                outputs = self.net(x)
                loss, parts = self._loss(outputs, y)
            lr = self.optimizer.param_groups[0]["lr"]  # the rate this step uses
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            if isinstance(self.scheduler, torch.optim.lr_scheduler.OneCycleLR):
                self.scheduler.step()
            self.step += 1
            sums += parts.detach()
            count += 1
            interval_images += x.shape[0] * self.world
            done = batch + 1 == self.steps_per_epoch
            at_limit = c.max_steps is not None and self.step >= c.max_steps
            logged = self.step % self.log_every == 0 or done or at_limit
            if logged:
                means = (sums / count).tolist()  # the one host sync per log interval
                if not all(math.isfinite(v) for v in means):
                    return self._diverged(means[0])
                now = time.perf_counter()
                rate = interval_images / max(now - interval_start, 1e-9)
                self.emit(self._step_event(epoch, batch, means, rate, lr))
                sums.zero_()
                count, interval_start, interval_images = 0, now, 0
            if (logged or self.world == 1) and self._should_stop():  # DDP: one all-reduce per log interval
                path = self._checkpoint(epoch, batch + 1)
                return self._end("stopped", f"stopped at step {self.step}; checkpoint saved", path)
            if at_limit:
                path = self._checkpoint(epoch, batch + 1)
                return self._end("finished", f"reached max_steps={c.max_steps}", path)
        if c.schedule == "step":
            self.scheduler.step()
        epoch_started = time.perf_counter()
        self.accuracy, test_loss, probe = self._evaluate()
        path = self._checkpoint(epoch + 1, 0)
        self.emit(
            EpochEvent(
                epoch=epoch + 1, step=self.step, acc_main=self.accuracy["main"], acc_aux1=self.accuracy["aux1"],
                acc_aux2=self.accuracy["aux2"], test_loss=test_loss, seconds=time.perf_counter() - epoch_started,
                checkpoint=str(path) if path else None, probe=probe,
            )
        )  # fmt: skip
        return None

    def _loss(self, outputs: GoogLeNetOutputs, y: Tensor) -> tuple[Tensor, Tensor]:
        smoothing = self.config.label_smoothing
        main = F.cross_entropy(outputs.logits, y, label_smoothing=smoothing)
        if outputs.aux1 is None:
            zero = torch.zeros((), device=main.device)
            return main, torch.stack([main, main, zero, zero])
        aux1 = F.cross_entropy(outputs.aux1, y, label_smoothing=smoothing)
        aux2 = F.cross_entropy(outputs.aux2, y, label_smoothing=smoothing)
        total = main + self.config.aux_weight * (aux1 + aux2)
        return total, torch.stack([total, main, aux1, aux2]).float()

    def _step_event(self, epoch: int, batch: int, means: list[float], rate: float, lr: float) -> StepEvent:
        elapsed = time.perf_counter() - self.started
        session_steps = self.step - self.session_step
        per_step = (time.perf_counter() - self.session_start) / max(session_steps, 1)
        has_aux = self.model.aux1 is not None
        return StepEvent(
            step=self.step, epoch=epoch + (batch + 1) / self.steps_per_epoch, loss=means[0], loss_main=means[1],
            loss_aux1=means[2] if has_aux else None, loss_aux2=means[3] if has_aux else None,
            lr=lr, images_per_s=rate, elapsed=elapsed,
            eta=per_step * (self.total_steps - self.step),
        )  # fmt: skip

    def _should_stop(self) -> bool:
        flag = self.stop.is_set()
        if self.world > 1:  # every rank must stop at the same step or the others hang in all-reduce
            t = torch.tensor([float(flag)], device=self.device)
            dist.all_reduce(t, op=dist.ReduceOp.MAX)
            flag = bool(t.item())
        return flag

    @torch.no_grad()
    def _evaluate(self) -> tuple[dict[str, float | None], float, dict[str, Any]]:
        model = self.model.eval()
        correct = torch.zeros(3, device=self.device)
        loss_sum = torch.zeros((), device=self.device)
        probe: dict[str, Any] = {}
        # Evaluation stays in float32: its accuracy is then exactly what `python -m googlenet eval` measures.
        for i, (x, y) in enumerate(self.test_batches.epoch(0)):
            out = model(x, aux=True)
            loss_sum += F.cross_entropy(out.logits.float(), y, reduction="sum")
            for h, logits in enumerate(out):
                if logits is not None:
                    correct[h] += (logits.argmax(1) == y).sum()
            if i == self.config.probe_index // self.test_batches.batch_size:
                probe = self._probe(out, y, self.config.probe_index % self.test_batches.batch_size)
        model.train()
        n = len(self.test_batches.labels)
        acc = (correct / n).tolist()
        has_aux = self.model.aux1 is not None
        accuracy = {"main": acc[0], "aux1": acc[1] if has_aux else None, "aux2": acc[2] if has_aux else None}
        return accuracy, loss_sum.item() / n, probe

    def _probe(self, out: GoogLeNetOutputs, y: Tensor, i: int) -> dict[str, Any]:
        classes = self.data.classes
        probe: dict[str, Any] = {"index": self.config.probe_index, "label": classes[int(y[i])]}
        for head, logits in zip(("main", "aux1", "aux2"), out):
            if logits is not None:
                p = logits[i].float().softmax(0)
                top = p.topk(3)
                probe[head] = [[classes[int(c)], float(v)] for v, c in zip(top.values, top.indices)]
        return probe

    def _diverged(self, loss: float) -> EndEvent:
        message = (
            f"training diverged at step {self.step}: the loss is {loss}. Lower the learning rate "
            f"(lr={self.config.lr}) or check the data. "
            + (f"The last good checkpoint is {self.last_checkpoint}." if self.last_checkpoint else "No checkpoint was written.")
        )
        self._end("diverged", message, self.last_checkpoint)
        raise TrainingDiverged(message)

    def _end(self, status: str, message: str, path: Path | None) -> EndEvent:
        event = EndEvent(
            status=status, message=message, step=self.step, epoch=self.step / self.steps_per_epoch,
            checkpoint=str(path) if path else None, accuracy=self.accuracy, seconds=time.perf_counter() - self.started,
        )  # fmt: skip
        self.emit(event)
        return event

    def emit(self, event: Event) -> None:
        if not self.is_main:
            return
        try:
            with open(self.out / "metrics.jsonl", "a", encoding="utf-8") as handle:
                handle.write(json.dumps(asdict(event)) + "\n")
        except OSError as error:
            raise TrainingError(f"cannot write {self.out / 'metrics.jsonl'}: {error}") from None
        if self.user_callback is not None:
            self.user_callback(event)

    # -- checkpoints and resume --

    @property
    def last_checkpoint(self) -> Path | None:
        path = self.out / "last.safetensors"
        return path if path.is_file() else None

    def _checkpoint(self, epoch: int, batch: int) -> Path | None:
        """State file first, then the model: a crash between the two leaves the old pair valid."""
        if not self.is_main:
            return None
        c = self.config
        state_name = f"state-{self.step:08d}.safetensors"
        try:
            self._save_state(self.out / state_name, epoch, batch)
            meta = CheckpointMeta(self.data.classes, c.preprocess, self._summary(epoch, batch, state_name))
            epoch_end = batch == 0
            target = self.out / (f"epoch-{epoch:03d}.safetensors" if epoch_end else "last.safetensors")
            save_checkpoint(target, self.model, meta)
            if epoch_end:  # last.safetensors is a second name for the newest epoch file
                atomic_write(self.out / "last.safetensors", lambda tmp: _link_or_copy(target, Path(tmp)))
        except OSError as error:
            raise TrainingError(
                f"could not write a checkpoint in {self.out}: {error}. "
                + (f"The newest complete checkpoint is still {self.last_checkpoint}." if self.last_checkpoint else "")
            ) from None
        self._prune(state_name)
        return target

    def _summary(self, epoch: int, batch: int, state_name: str) -> dict[str, Any]:
        c = self.config
        return {
            "run": self.out.name,
            "preset": c.preset,
            "step": self.step,
            "epoch": epoch,
            "batch": batch,
            "epochs": c.epochs,
            "state_file": state_name,
            "accuracy": self.accuracy,
            "data": str(self.data.root),
            "train_images": len(self.data.train_labels),
            "test_images": len(self.data.test_labels),
            "seconds": round(time.perf_counter() - self.started, 1),
            "device": str(self.device),
            "command": _command_line(),
            "config": asdict(c),
        }

    def _save_state(self, path: Path, epoch: int, batch: int) -> None:
        opt = self.optimizer.state_dict()
        tensors: dict[str, Tensor] = {}
        scalars: dict[str, dict[str, Any]] = {}
        for index, state in opt["state"].items():
            for key, value in state.items():
                if isinstance(value, Tensor):
                    tensors[f"optimizer.{index}.{key}"] = value.detach().cpu().contiguous()
                else:
                    scalars.setdefault(str(index), {})[key] = value
        tensors["rng.cpu"] = torch.get_rng_state()
        if self.device.type == "cuda":
            tensors["rng.cuda"] = torch.cuda.get_rng_state(self.device)
        metadata = {
            "param_groups": json.dumps(opt["param_groups"]),
            "optimizer_scalars": json.dumps(scalars),
            "scheduler": json.dumps(self.scheduler.state_dict(), default=_json_default),
            "position": json.dumps({"step": self.step, "epoch": epoch, "batch": batch, "accuracy": self.accuracy}),
        }
        atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))

    def _restore(self) -> tuple[int, int]:
        """Load model, optimizer, schedule, RNG and position from the run's newest checkpoint."""
        model, meta = read_checkpoint(self.out / "last.safetensors")
        self.model.load_state_dict(model.state_dict())
        state_path = self.out / meta.training["state_file"]
        from safetensors import safe_open

        tensors = load_file(str(state_path))
        with safe_open(str(state_path), framework="pt") as handle:
            metadata = handle.metadata()
        position = json.loads(metadata["position"])
        if position["step"] != meta.training["step"]:
            raise TrainingError(f"{state_path.name} is for step {position['step']}, the checkpoint for {meta.training['step']}")
        opt_state: dict[int, dict[str, Any]] = {}
        for name, tensor in tensors.items():
            if name.startswith("optimizer."):
                _, index, key = name.split(".", 2)
                opt_state.setdefault(int(index), {})[key] = tensor.to(self.device)
        for index, values in json.loads(metadata["optimizer_scalars"]).items():
            opt_state.setdefault(int(index), {}).update(values)
        self.optimizer.load_state_dict({"state": opt_state, "param_groups": json.loads(metadata["param_groups"])})
        self.scheduler.load_state_dict(json.loads(metadata["scheduler"]))
        torch.set_rng_state(tensors["rng.cpu"])
        if "rng.cuda" in tensors and self.device.type == "cuda":
            torch.cuda.set_rng_state(tensors["rng.cuda"], self.device)
        self.step, self.accuracy = position["step"], position["accuracy"]
        if self.is_main:  # drop events logged after the checkpoint: they will be logged again
            kept = [e for e in read_metrics(self.out) if getattr(e, "step", 0) <= self.step and e.kind not in ("end",)]
            atomic_write(
                self.out / "metrics.jsonl",
                lambda tmp: Path(tmp).write_text("".join(json.dumps(asdict(e)) + "\n" for e in kept)),
            )
        epoch, batch = position["epoch"], position["batch"]
        return epoch, batch

    def _prune(self, current_state: str) -> None:
        for old in self.out.glob("state-*.safetensors"):
            if old.name != current_state:
                old.unlink(missing_ok=True)
        epochs = sorted(p for p in self.out.glob("epoch-*.safetensors") if is_checkpoint_name(p.name))
        for old in epochs[1 : max(1, len(epochs) - self.config.keep_checkpoints)]:
            old.unlink(missing_ok=True)
            old.with_name(old.stem + INDEX_SUFFIX).unlink(missing_ok=True)  # its microscope cache


def _command_line() -> str:
    """How this process was started, as a user would type it (``python -m googlenet train …``)."""
    if not sys.argv or not sys.argv[0]:
        return ""
    if sys.argv[0].endswith(os.path.join("googlenet", "__main__.py")):
        return " ".join(["python -m googlenet", *sys.argv[1:]])
    return " ".join(sys.argv)


def _check_writable(folder: Path) -> None:
    probe = folder / ".write-test"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as error:
        raise TrainingError(f"cannot write in the run folder {folder}: {error}; choose another --out or set GOOGLENET_RUNS") from None


def _link_or_copy(source: Path, target: Path) -> None:
    target.unlink(missing_ok=True)
    try:
        os.link(source, target)
    except OSError:
        target.write_bytes(source.read_bytes())


def _json_default(value: Any) -> Any:
    if isinstance(value, Tensor):
        return value.tolist()
    raise TypeError(f"cannot store {type(value).__name__} in a checkpoint's metadata")
