"""Training GoogLeNet on CIFAR-10/100 or your own pictures: one Trainer for the CLI, the app and
the tests.

``Trainer(config).run(on_event, stop)`` trains, evaluates every epoch, checkpoints every epoch and
on stop, and reports typed events (also appended to ``runs/NAME/metrics.jsonl``). Multi-GPU runs
use the same code under ``torchrun`` (DistributedDataParallel). The run's files (settings, events,
checkpoints, the state to resume) are kept by :class:`googlenet.training.runs.RunFolder`. The data is any
:mod:`googlenet.datasets` format, held on the device or streamed (:func:`plan_loading` decides and
the start event says which); ``init`` and ``freeze_until`` fine-tune (:mod:`googlenet.training.finetune`).
"""

from __future__ import annotations

import math
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from googlenet.datasets import LOADING, Dataset, LoadingPlan, StreamBatches, as_dataset, load_in_memory, open_dataset, plan_loading
from googlenet.datasets.cifar10 import CIFAR10, Augment, DeviceBatches
from googlenet.device import amp_dtype, pick_device
from googlenet.model import GoogLeNet, GoogLeNetOutputs
from googlenet.preprocess import CAFFE_IMAGENET, IMAGENET, Preprocess
from googlenet.preprocess import CIFAR10 as CIFAR10_RECIPE
from googlenet.training.finetune import InitWeights, freeze, initialise, keep_frozen_in_eval, read_init
from googlenet.training.norms import ModuleNorms
from googlenet.training.runs import Position, RunFolder, TrainingError, read_records
from googlenet.training.tensorboard import TensorBoardLog
from googlenet.weights import CheckpointMeta, read_meta

__all__ = [
    "PRESETS",
    "amp_dtype",
    "default_width",
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
    # The recipe of the guide this project grew from, as written (README, Training): the paper's
    # plain network at 224×224 (resize, no BN), SGD lr 0.05 momentum 0.9 wd 1e-4, StepLR 30/0.1, batch 64.
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
        pad_mode="reflect", normalize="dataset", precision="auto", channels_last=True, cutout=0,
    ),
}  # fmt: skip
SCHEDULES = ("onecycle", "step", "constant")
NORMALIZE = ("dataset", "cifar", "imagenet", "init")  # init: the statistics the initial weights were trained with
# What --init sets where nothing was given, before the preset: the architecture of the weights, their
# input recipe, and a tenth of the from-scratch peak learning rate (pretrained features need small
# steps; a common fine-tuning choice, not measured here: the ImageNet weights were not reachable).
FINETUNE: dict[str, Any] = dict(lr=0.02, normalize="init")


def default_width(device: torch.device) -> float:
    """What ``width=None`` (the fast preset) means on ``device``: 1.0 on a GPU and 0.25 elsewhere,
    where full width trains at about 10 images/s (2-core CPU) against about 130 for width 0.25."""
    return 1.0 if device.type == "cuda" else 0.25


def preset_for_device(preset: str, device: torch.device) -> dict[str, Any]:
    """A preset's values with the device-dependent ones filled in, as the app's Train tab offers
    them: :func:`default_width`, and on a CPU the fast preset at batch 64 / lr 0.1, which measured
    as accurate and as fast as 128 / 0.2 (73.8 % both after 40 epochs) with half the activation
    memory in the app's process."""
    values = dict(PRESETS[preset])
    if values["width"] is None:
        values["width"] = default_width(device)
    if preset == "fast" and device.type == "cpu":
        values.update(batch_size=64, lr=0.1)
    return values


def fit_batch(batch_size: int, train_pictures: int, world: int = 1) -> tuple[int, str]:
    """The batch a run can take from ``train_pictures`` training pictures, and a note when it had to
    be made smaller. A batch is never larger than a process's share of the set (every epoch drops
    the last incomplete batch, so a larger one gives zero steps): the defaults' 64 on a 36-picture
    folder (30 for training after the 20 % validation split: 2 of each class's 12 held out) becomes 30, one step per epoch."""
    per_rank = train_pictures // max(world, 1)
    if batch_size // max(world, 1) <= per_rank or per_rank < 1:
        return batch_size, ""
    fitted = per_rank * max(world, 1)
    return fitted, (
        f"batch size {batch_size} is more than the {train_pictures} training pictures: using batches of {fitted} "
        f"(one step per epoch){'' if world == 1 else f' over {world} processes'}"
    )


@dataclass(frozen=True)
class TrainConfig:
    """A training run. Fields left ``None`` take the value of ``preset`` (see :data:`PRESETS`).

    ``width=None`` (the fast preset) is resolved on the run's device by :func:`default_width`.
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
    normalize: str | None = None  # dataset | cifar | imagenet | init statistics (see NORMALIZE)
    precision: str | None = None  # auto (bf16 on CUDA and on CPUs with native bf16, else fp32) | fp32 | bf16
    channels_last: bool | None = None
    compile: bool = False
    seed: int = 0
    out: str | None = None  # run folder; default runs/<preset>-w<width>-<time>
    device: str | None = None
    max_steps: int | None = None  # stop (with a checkpoint) after this many steps in total
    log_every: int | None = None  # steps between step events; default 1 on CPU, 20 on GPU
    keep_checkpoints: int = 3  # newest epoch-NNN files kept, besides epoch 1, the powers of two and last
    tensorboard: bool = True  # event files in the run folder (when the tensorboard package is installed)
    resume: bool = False
    probe_index: int = 0  # test image whose per-head predictions are reported every epoch
    val_split: float = 0.2  # image folders without val/: the share of each class held out
    loading: str = "auto"  # auto | memory | stream (see googlenet.datasets.plan_loading)
    memory_budget: float | None = None  # GiB the in-memory set may take; default a quarter of the device's
    workers: int | None = None  # decoding threads / streaming DataLoader workers
    init: str | None = None  # "imagenet" or a checkpoint to start from (new heads for other classes)
    freeze_until: str | None = None  # train only what follows this trunk module (e.g. inception4e)
    # Adebayo et al. 2018's data-randomisation test: train on one seeded permutation of the
    # training labels (test labels stay true), so explanations can be compared with a real run
    shuffle_labels: bool = False

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise ValueError(f"unknown preset {self.preset!r}; expected one of {sorted(PRESETS)}")
        if self.init is not None:
            for name, value in _init_defaults(self).items():
                if getattr(self, name) is None:
                    object.__setattr__(self, name, value)
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
            (self.normalize in NORMALIZE, f"normalize must be one of {NORMALIZE}, got {self.normalize!r}"),
            (0 < self.val_split < 1, f"val_split must be in (0, 1), got {self.val_split}"),
            (self.loading in LOADING, f"loading must be one of {LOADING}, got {self.loading!r}"),
            (self.memory_budget is None or self.memory_budget > 0, f"memory_budget must be positive, got {self.memory_budget}"),
            (self.workers is None or self.workers >= 0, f"workers must be ≥ 0, got {self.workers}"),
            (self.normalize != "init" or self.init is not None, "normalize='init' needs init (imagenet or a checkpoint)"),
            (self.freeze_until is None or self.init is not None, "freeze_until needs init: a frozen random trunk learns nothing"),
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
        if self.init == "imagenet" and (self.stem, self.width, self.batch_norm) != ("imagenet", 1.0, True):
            raise ValueError(
                "init='imagenet' is torchvision's network: ImageNet stem, width 1, BatchNorm; "
                f"got stem={self.stem!r}, width={self.width}, batch_norm={self.batch_norm}"
            )

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})

    @property
    def preprocess(self) -> Preprocess:
        """The input recipe for CIFAR-10 data: the chosen statistics at ``input_size``, pictures
        used whole. The trainer uses :meth:`recipe` with its dataset."""
        return self.recipe()

    def recipe(self, dataset: Dataset | None = None, init: Preprocess | None = None) -> Preprocess:
        """The input recipe the run trains with and its checkpoints carry: the statistics
        ``normalize`` names (the dataset's own by default, CIFAR-10's without a dataset; ``init``:
        those of the initial weights) at ``input_size``, with the dataset's margin (see
        :meth:`googlenet.datasets.Dataset.recipe_for`)."""
        if self.normalize == "init" and init is None:
            raise ValueError("normalize='init' needs the initial weights' recipe")
        statistics = {"cifar": CIFAR10_RECIPE, "imagenet": IMAGENET, "init": init}.get(self.normalize)
        if dataset is None:
            return (statistics or CIFAR10_RECIPE).with_size(self.input_size)
        return dataset.recipe_for(self.input_size, statistics)


def _init_defaults(config: TrainConfig) -> dict[str, Any]:
    """Architecture and recipe of the initial weights (``config.init``), read from the checkpoint's
    header (no tensors) when it is a file."""
    if config.init == "imagenet":
        return dict(FINETUNE, stem="imagenet", width=1.0, batch_norm=True, input_size=CAFFE_IMAGENET.input_size)
    model_config, meta = read_meta(config.init)
    return dict(
        FINETUNE, stem=model_config.stem, width=model_config.width, batch_norm=model_config.batch_norm,
        input_size=meta.preprocess.input_size,
    )  # fmt: skip


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
    data: str = ""  # the dataset, how it is loaded and why, and what was skipped
    classes: list[str] = field(default_factory=list)
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
    grad_norm: dict[str, float | None] | None = None  # per module: L2 norm of its gradients at this step
    weight_norm: dict[str, float] | None = None  # per module: L2 norm of its weights after this step
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
    per_class: list[float | None] | None = None  # main head's accuracy per class (None: no test image of it)
    confusion: list[list[int]] | None = None  # main head, rows true class, columns predicted (up to 100 classes)
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


class TrainingDiverged(TrainingError):
    """The loss became NaN or infinite."""


def read_metrics(path: str | os.PathLike) -> list[Event]:
    """Events from a run's ``metrics.jsonl`` (a folder or the file); unreadable lines are skipped."""
    events: list[Event] = []
    for values in read_records(path):
        try:
            events.append(_EVENT_TYPES[values["kind"]](**values))
        except (KeyError, TypeError):
            continue  # not one of these events: a line cut short by a crash
    return events


# -- the trainer ----------------------------------------------------------------------------


class Trainer:
    """Trains one run described by a :class:`TrainConfig`.

    Args:
        config: the run.
        data: an already-read :class:`~googlenet.datasets.Dataset` or CIFAR-10 (tests and the app
            pass it to skip re-reading); default opens ``config.data``.
    """

    def __init__(self, config: TrainConfig, data: Dataset | CIFAR10 | None = None) -> None:
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
_SESSION_FIELDS = ("data", "out", "resume", "device", "max_steps", "log_every", "loading", "memory_budget", "workers", "tensorboard")


def _open_run(config: TrainConfig, device: torch.device) -> tuple[TrainConfig, RunFolder]:
    """This session's settings and its run folder: a resumed run continues with its saved
    settings; a new run's ``width=None`` becomes :func:`default_width` (also in its folder name)."""
    if config.resume:
        folder = RunFolder.existing(config.out)
        config = _resumed_config(config, TrainConfig.from_dict(folder.read_config()), folder.path)
    if config.width is None:
        config = replace(config, width=default_width(device))
    if not config.resume:
        folder = RunFolder.new(config.out, preset=config.preset, width=config.width)
    return config, folder


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
    overrides = {k: getattr(given, k) for k in ("device", "log_every", "memory_budget", "workers") if getattr(given, k) is not None}
    overrides["loading"] = given.loading
    overrides["tensorboard"] = given.tensorboard
    if given.data != TrainConfig.data:  # a data folder given for the resume wins over the saved one
        overrides["data"] = given.data
    return replace(saved, **overrides, max_steps=given.max_steps, resume=True)


def _distributed_env() -> tuple[int, int, int]:
    return (int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0)))


class _Run:
    """One session of one run; ``Trainer.run`` builds one and calls ``train``.

    Setup (``__init__``): settings and run folder, data, model, batches, optimizer, schedule.
    The loop: ``train`` → ``_train_epoch`` (each batch through ``_train_step``: forward, loss,
    backward, optimizer step) → ``_end_epoch`` (schedule, evaluation, checkpoint). A StepEvent
    goes out every ``log_every`` steps and an EpochEvent after each epoch; every event passes
    through ``emit``. Files (settings, events, checkpoints, resume) belong to ``self.folder``.
    """

    def __init__(self, config, data, device, rank, world, on_event, stop) -> None:
        self.device, self.rank, self.world, self.stop = device, rank, world, stop
        config, self.folder = _open_run(config, device)
        self.config = config
        self.user_callback = on_event
        self.is_main = rank == 0
        self.started = time.perf_counter()

        self.init: InitWeights | None = read_init(config.init) if config.init and not config.resume else None
        self.notes: list[str] = []  # what the start event and the checkpoints say about data and weights
        self.data, self.recipe, self.plan = self._data(data)
        if config.shuffle_labels:  # the same permutation on every rank and on resume: seeded once
            labels = self.data.train.labels
            permutation = torch.randperm(len(labels), generator=torch.Generator().manual_seed(config.seed))
            self.data = replace(self.data, train=replace(self.data.train, labels=labels[permutation]))
            self.notes.append("labels shuffled: the training labels are a seeded permutation (Adebayo et al. 2018's data randomisation)")
        batch, note = fit_batch(config.batch_size, len(self.data.train), world)
        if note:  # a small own-pictures set must train at the defaults, and say so in the log
            self.config = config = replace(config, batch_size=batch)
            self.notes.append(note)
        torch.manual_seed(config.seed)  # the model's initial weights
        self.frozen: tuple[str, ...] = ()
        self.model = self._model()
        self.amp_dtype = amp_dtype(config.precision, device)
        self.train_batches, self.test_batches = self._batches()
        self.steps_per_epoch = len(self.train_batches)
        self.total_steps = config.epochs * self.steps_per_epoch
        if config.max_steps is not None:
            self.total_steps = min(self.total_steps, config.max_steps)
        self.optimizer = torch.optim.SGD(
            [p for p in self.model.parameters() if p.requires_grad], lr=config.lr, momentum=config.momentum,
            nesterov=config.nesterov and config.momentum > 0, weight_decay=config.weight_decay,
        )  # fmt: skip
        self.scheduler = self._scheduler()
        self.step = 0
        self.accuracy: dict[str, float | None] | None = None
        self.log_every = config.log_every or (1 if device.type == "cpu" else 20)
        self.norms = ModuleNorms(self.model)
        self.tensorboard: TensorBoardLog | None = None  # opened in train(), once the folder is ready

        self.net: nn.Module = self.model  # what the loop calls: the model, wrapped for DDP / compile
        self.ddp = dist.is_available() and dist.is_initialized()
        if self.ddp:
            ids = [device.index] if device.type == "cuda" else None
            self.net = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        if config.compile:
            self.net = torch.compile(self.net)

    # -- setup --

    def _data(self, given: Dataset | CIFAR10 | None) -> tuple[Dataset, Preprocess, LoadingPlan]:
        """The dataset, the recipe to train it with, and how it is read (decoded into memory here
        when the plan says so). A resumed run keeps the recipe its checkpoints carry."""
        c = self.config
        if given is not None:
            dataset = as_dataset(given)
        else:
            dataset = open_dataset(c.data, input_size=c.input_size, val_split=c.val_split, seed=c.seed)
        if c.resume:
            recipe = read_meta(self.folder.last_checkpoint)[1].preprocess
        else:
            recipe = c.recipe(dataset, self.init.recipe if self.init else None)
        plan = plan_loading(dataset, recipe.resize_size, self.device, c.loading, c.memory_budget)
        if plan.in_memory:
            dataset = load_in_memory(dataset, plan.size, c.workers)
        self.notes += [dataset.describe(), plan.reason, *dataset.notes]
        return dataset, recipe, plan

    def _model(self) -> GoogLeNet:
        c = self.config
        classes = tuple(self.data.classes)
        if self.init is not None:
            arch = self.init.model_config(len(classes), c.aux_logits, c.dropout, c.aux_dropout)
            if (arch.stem, arch.width, arch.batch_norm) != (c.stem, c.width, c.batch_norm):
                raise ValueError(
                    f"{self.init.name} is a {arch.stem}-stem network of width {arch.width:g} "
                    f"{'with' if arch.batch_norm else 'without'} BatchNorm; the run asks for stem={c.stem}, width={c.width:g}, "
                    f"batch_norm={c.batch_norm}: leave those out to take the checkpoint's"
                )
            model = GoogLeNet(**asdict(arch))
            self.notes += initialise(model, self.init, classes)
        else:
            model = GoogLeNet(
                num_classes=len(classes), aux_logits=c.aux_logits, batch_norm=c.batch_norm,
                stem=c.stem, width=c.width, dropout=c.dropout, aux_dropout=c.aux_dropout,
            )  # fmt: skip
        if c.freeze_until:
            self.frozen = freeze(model, c.freeze_until)
            self.notes.append(f"frozen: {self.frozen[0]} … {self.frozen[-1]} ({len(self.frozen)} modules, BatchNorm statistics kept)")
        model = model.to(self.device)
        return model.to(memory_format=torch.channels_last) if c.channels_last else model

    def _batches(self) -> tuple[DeviceBatches | StreamBatches, DeviceBatches | StreamBatches]:
        """This process's share of the training set (augmented) and the whole test set (not):
        uint8 on the device, or streamed from the files."""
        c, world = self.config, self.world
        if c.batch_size % world:
            raise ValueError(f"batch_size {c.batch_size} must divide evenly over {world} processes")
        # no_grad evaluation holds far less per image than a training step, but a 500-image batch
        # of the width-0.25 CIFAR model still took 880 MB at once on a CPU: twice the training batch
        eval_batch = min(500 if c.input_size <= 64 else 50, 2 * (c.batch_size // world))
        if not self.plan.in_memory:
            if c.cutout:
                self.notes.append("cutout applies to the in-memory path only; streaming uses random-resized crops and flips")
            train = StreamBatches(
                self.data.train, self.recipe, c.batch_size // world, self.device, train=True, seed=c.seed,
                rank=self.rank, world=world, workers=c.workers, flip=c.flip, channels_last=c.channels_last,
            )  # fmt: skip
            test = StreamBatches(
                self.data.test, self.recipe, eval_batch, self.device, train=False, workers=c.workers, channels_last=c.channels_last
            )
            return train, test
        augment = Augment(self.recipe, c.crop_padding, c.pad_mode, c.flip, c.cutout)
        train = DeviceBatches(
            self.data.train_images, self.data.train_labels, c.batch_size // world, augment, self.device,
            train=True, seed=c.seed, rank=self.rank, world=world, channels_last=c.channels_last,
        )  # fmt: skip
        test = DeviceBatches(
            self.data.test_images, self.data.test_labels, eval_batch, augment, self.device,
            train=False, channels_last=c.channels_last,
        )  # fmt: skip
        return train, test

    def _scheduler(self) -> torch.optim.lr_scheduler.LRScheduler:
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
            self.folder.check_writable()
        if c.resume:
            start_epoch, start_batch = self._restore()
        elif self.is_main:
            self.folder.start(asdict(c))
        if self.is_main:
            # A resumed session hides what the interrupted one logged after its checkpoint, as metrics.jsonl does.
            self.tensorboard = TensorBoardLog.open(self.folder.path, c.tensorboard, purge_step=self.step if c.resume else None)
            # A streamed set has no test pictures in memory: its probe's predictions are logged, its picture not.
            streamed = getattr(getattr(self.data, "test", None), "images", True) is None
            if self.tensorboard is not None and not c.resume and not streamed and 0 <= c.probe_index < len(self.data.test_labels):
                label = self.data.classes[int(self.data.test_labels[c.probe_index])]
                self.tensorboard.probe_image(self.data.test_images[c.probe_index], label)
        self.emit(
            StartEvent(
                run=self.folder.name, out=str(self.folder.path), device=str(self.device), steps_per_epoch=self.steps_per_epoch,
                total_steps=self.total_steps, start_step=self.step,
                params=sum(p.numel() for p in self.model.parameters()), config=asdict(c),
                data="\n".join(self.notes), classes=list(self.data.classes),
            )
        )  # fmt: skip
        self.session_start, self.session_step = time.perf_counter(), self.step
        try:
            if c.max_steps is not None and self.step >= c.max_steps:
                return self._end("finished", f"already at step {self.step}, max_steps={c.max_steps}", self.folder.last_checkpoint)
            for epoch in range(start_epoch, c.epochs):
                status = self._train_epoch(epoch, start_batch)
                start_batch = 0
                if status is not None:
                    return status
            return self._end("finished", f"finished {c.epochs} epochs", self.folder.last_checkpoint)
        finally:
            if self.tensorboard is not None:
                self.tensorboard.close()
            if self.ddp and dist.is_initialized():
                dist.destroy_process_group()

    def _train_epoch(self, epoch: int, start_batch: int) -> EndEvent | None:
        """Train ``epoch`` from ``start_batch`` on; the end event if the run ends inside it."""
        c = self.config
        self.net.train()
        keep_frozen_in_eval(self.model, self.frozen)
        sums = torch.zeros(4, device=self.device)
        count, interval_start, interval_images = 0, time.perf_counter(), 0
        for batch, (x, y) in enumerate(self.train_batches.epoch(epoch, start_batch), start=start_batch):
            lr, parts = self._train_step(x, y)
            sums += parts
            count += 1
            interval_images += x.shape[0] * self.world
            done = batch + 1 == self.steps_per_epoch
            at_limit = c.max_steps is not None and self.step >= c.max_steps
            logged = self.step % self.log_every == 0 or done or at_limit
            if logged:
                # Losses and the modules' weight and gradient norms in the one host sync per log interval.
                values = torch.cat([sums / count, self.norms.measure().flatten()]).tolist()
                means, modules = values[:4], len(self.norms.names)
                if not all(math.isfinite(v) for v in means):
                    return self._diverged(means[0])
                now = time.perf_counter()
                rate = interval_images / max(now - interval_start, 1e-9)
                norms = self.norms.as_dicts([values[4 : 4 + modules], values[4 + modules :]])
                self.emit(self._step_event(epoch, batch, means, rate, lr, norms))
                sums.zero_()
                count, interval_start, interval_images = 0, now, 0
            if (logged or self.world == 1) and self._should_stop():  # DDP: one all-reduce per log interval
                path = self._checkpoint(epoch, batch + 1)
                return self._end("stopped", f"stopped at step {self.step}; checkpoint saved", path)
            if at_limit:
                path = self._checkpoint(epoch, batch + 1)
                return self._end("finished", f"reached max_steps={c.max_steps}", path)
        self._end_epoch(epoch)
        return None

    def _train_step(self, x: Tensor, y: Tensor) -> tuple[float, Tensor]:
        """One optimizer step on one batch: the learning rate it used and its loss parts
        ``[total, main, aux1, aux2]``, left on the device (read once per log interval)."""
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
        return lr, parts.detach()

    def _end_epoch(self, epoch: int) -> None:
        """After the last batch of ``epoch``: schedule, evaluation, checkpoint, epoch event."""
        if self.config.schedule == "step":
            self.scheduler.step()
        if self.tensorboard is not None:  # the last step's gradients are still on the parameters
            self.tensorboard.histograms(self.model, self.step)
        epoch_started = time.perf_counter()
        self.accuracy, test_loss, probe, confusion = self._evaluate()
        path = self._checkpoint(epoch + 1, 0)
        totals = confusion.sum(1)
        per_class = [c / n if n else None for c, n in zip(confusion.diagonal().tolist(), totals.tolist())]
        self.emit(
            EpochEvent(
                epoch=epoch + 1, step=self.step, acc_main=self.accuracy["main"], acc_aux1=self.accuracy["aux1"],
                acc_aux2=self.accuracy["aux2"], test_loss=test_loss, seconds=time.perf_counter() - epoch_started,
                checkpoint=str(path) if path else None, probe=probe, per_class=per_class,
                confusion=confusion.tolist() if len(confusion) <= 100 else None,
            )
        )  # fmt: skip

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

    def _step_event(self, epoch: int, batch: int, means: list[float], rate: float, lr: float, norms: tuple[dict, dict]) -> StepEvent:
        elapsed = time.perf_counter() - self.started
        session_steps = self.step - self.session_step
        per_step = (time.perf_counter() - self.session_start) / max(session_steps, 1)
        has_aux = self.model.aux1 is not None
        return StepEvent(
            step=self.step, epoch=epoch + (batch + 1) / self.steps_per_epoch, loss=means[0], loss_main=means[1],
            loss_aux1=means[2] if has_aux else None, loss_aux2=means[3] if has_aux else None,
            lr=lr, images_per_s=rate, elapsed=elapsed,
            eta=per_step * (self.total_steps - self.step), weight_norm=norms[0], grad_norm=norms[1],
        )  # fmt: skip

    def _should_stop(self) -> bool:
        flag = self.stop.is_set()
        if self.world > 1:  # every rank must stop at the same step or the others hang in all-reduce
            t = torch.tensor([float(flag)], device=self.device)
            dist.all_reduce(t, op=dist.ReduceOp.MAX)
            flag = bool(t.item())
        return flag

    @torch.no_grad()
    def _evaluate(self) -> tuple[dict[str, float | None], float, dict[str, Any], Tensor]:
        """Accuracy per head, mean test loss, the probe, and the main head's confusion matrix
        (K×K on the CPU, rows true class)."""
        model = self.model.eval()
        k = len(self.data.classes)
        correct = torch.zeros(3, device=self.device)
        confusion = torch.zeros(k * k, dtype=torch.long, device=self.device)
        loss_sum = torch.zeros((), device=self.device)
        probe: dict[str, Any] = {}
        # Evaluation stays in float32: its accuracy is then exactly what `python -m googlenet eval` measures.
        for i, (x, y) in enumerate(self.test_batches.epoch(0)):
            out = model(x, aux=True)
            loss_sum += F.cross_entropy(out.logits.float(), y, reduction="sum")
            confusion += torch.bincount(y * k + out.logits.argmax(1), minlength=k * k)
            for h, logits in enumerate(out):
                if logits is not None:
                    correct[h] += (logits.argmax(1) == y).sum()
            if i == self.config.probe_index // self.test_batches.batch_size:
                probe = self._probe(out, y, self.config.probe_index % self.test_batches.batch_size)
        model.train()
        keep_frozen_in_eval(self.model, self.frozen)
        confusion = confusion.view(k, k).cpu()
        n = max(int(confusion.sum()), 1)  # a streamed test set may have skipped unreadable files
        acc = (correct / n).tolist()
        has_aux = self.model.aux1 is not None
        accuracy = {"main": acc[0], "aux1": acc[1] if has_aux else None, "aux2": acc[2] if has_aux else None}
        return accuracy, loss_sum.item() / n, probe, confusion

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
        last = self.folder.last_checkpoint
        message = (
            f"training diverged at step {self.step}: the loss is {loss}. Lower the learning rate "
            f"(lr={self.config.lr}) or check the data. "
            + (f"The last good checkpoint is {last}." if last else "No checkpoint was written.")
        )
        self._end("diverged", message, last)
        raise TrainingDiverged(message)

    def _end(self, status: str, message: str, path: Path | None) -> EndEvent:
        event = EndEvent(
            status=status, message=message, step=self.step, epoch=self.step / self.steps_per_epoch,
            checkpoint=str(path) if path else None, accuracy=self.accuracy, seconds=time.perf_counter() - self.started,
        )  # fmt: skip
        self.emit(event)
        return event

    def emit(self, event: Event) -> None:
        """Where every event goes (main process only): ``metrics.jsonl``, TensorBoard, then the caller."""
        if not self.is_main:
            return
        self.folder.log(event)
        if self.tensorboard is not None:
            self.tensorboard.event(event)
        if self.user_callback is not None:
            self.user_callback(event)

    # -- checkpoints and resume (the files are the run folder's) --

    def _checkpoint(self, epoch: int, batch: int) -> Path | None:
        if not self.is_main:
            return None
        position = Position(self.step, epoch, batch, self.accuracy)
        meta = CheckpointMeta(tuple(self.data.classes), self.recipe, self._summary(epoch, batch))
        return self.folder.save(position, self.model, self.optimizer, self.scheduler, meta, keep=self.config.keep_checkpoints)

    def _summary(self, epoch: int, batch: int) -> dict[str, Any]:
        """What a checkpoint tells about its run (its ``training`` metadata)."""
        c = self.config
        return {
            "run": self.folder.name,
            "preset": c.preset,
            "step": self.step,
            "epoch": epoch,
            "batch": batch,
            "epochs": c.epochs,
            "accuracy": self.accuracy,
            "data": str(self.data.root),
            "dataset": self.data.name,
            "train_images": len(self.data.train_labels),
            "test_images": len(self.data.test_labels),
            "data_notes": self.notes,
            "shuffle_labels": c.shuffle_labels,  # trained on permuted labels: the trust panel's data-randomisation run
            "seconds": round(time.perf_counter() - self.started, 1),
            "device": str(self.device),
            "command": _command_line(),
            "config": asdict(c),
        }

    def _restore(self) -> tuple[int, int]:
        """Model, optimizer, schedule, RNG and position from the newest checkpoint; the epoch and
        batch to continue at."""
        position = self.folder.restore(self.model, self.optimizer, self.scheduler)
        self.step, self.accuracy = position.step, position.accuracy
        if self.is_main:
            self.folder.forget_events_after(self.step)
        return position.epoch, position.batch


def _command_line() -> str:
    """How this process was started, as a user would type it (``python -m googlenet train …``)."""
    if not sys.argv or not sys.argv[0]:
        return ""
    if sys.argv[0].endswith(os.path.join("googlenet", "__main__.py")):
        return " ".join(["python -m googlenet", *sys.argv[1:]])
    return " ".join(sys.argv)
