"""``python -m bench.gpu``: every GPU path of the project measured in one run that fits the time
box of a lent GPU machine (15 minutes of device time in all, its start included).

Phases, in this order (the figures the README's goals are held against come first, the slow and
optional ``torch.compile`` last):

* ``device``: the GPU, PyTorch, CUDA, cuDNN, whether cuDNN may use TF32 for "fp32" convolutions.
* ``inference``: batch-1 latency and batch-256 throughput, the app's prepared model (BN folded,
  channels_last, ``inference_mode``) against torchvision's googlenet, fp32 and bf16 autocast.
* ``explore``: one ``Explorer.explore`` against the naive 36-call captum loop, ``classify`` as the
  app calls it, Integrated Gradients and Occlusion (``python -m bench.explore``'s measurement).
* ``training``: ``python -m googlenet bench``: the guide's pipeline as written against the
  engine's ``guide`` preset at 224 px and its ``fast`` preset at 32 px.
* ``accuracy``: the ``fast`` preset at full width on the CIFAR subset for as many epochs (up to
  the preset's 40) as the measured images/s fit in the phase's budget; every head's test accuracy
  and the projected time of one full 50,000-image CIFAR-10 epoch.
* ``ddp``: ``torchrun --nproc_per_node=<GPUs> -m googlenet train`` for a few steps (NCCL on a GPU,
  gloo on a CPU; one process still goes through the process group and DDP).
* ``compile``: training images/s with ``--compile`` off and on, then the inference variants
  compiled, each only while its compilation fits in what is left.
* ``zerogpu``: says why it cannot be measured here.

Each phase prints ``name=value`` lines prefixed with its name, then ``<phase>_status``,
``<phase>_seconds`` and ``<phase>_peak_gpu_mb`` (``torch.cuda.max_memory_allocated``, reset per
phase); the device name is the first line. The JSON (``$OUT/gpu.json`` when ``$OUT`` is set, or
``--json``) is rewritten after every phase, so a run cut short still returns what it measured. A
phase that raises prints ``phase_error=<phase>: …`` and the next one goes on; one that would not
fit in what is left of ``--limit`` is skipped with the reason. GPU timings synchronise the device
around every timed call.

``--smoke`` runs every phase with tiny sizes on the CPU (``tests/test_gpu_bench.py``), so the
script is known to work before any device is lent. How to run it on a lent machine: README,
Performance.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import math
import os
import pickle
import platform
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
FULL_CIFAR10_TRAIN, FULL_CIFAR10_TEST = 50_000, 10_000

__all__ = ["Sizes", "FULL", "SMOKE", "PHASES", "main"]


@dataclass(frozen=True)
class Sizes:
    """What each phase runs; :data:`FULL` on a GPU, :data:`SMOKE` to prove the script on a CPU."""

    limit_s: float = 420.0  # the whole run; README gives the device call 60 s more (timeout_s=480)
    image: int = 224  # inference input side
    big_batch: int = 256
    latency_runs: int = 50
    throughput_runs: int = 10
    warmup: int = 3  # untimed calls before each timed series
    tiny_explore: bool = False  # a width-0.125 CIFAR model instead of the full ImageNet one
    explore_runs: int = 15
    naive_runs: int = 5
    attribution_runs: int = 3
    width: float = 1.0  # of every trained network
    guide_size: int = 224  # the guide's Resize(224)
    train_steps: int = 30  # timed steps per pipeline (googlenet bench's default on a GPU)
    train_batch: int = 64  # the guide's
    accuracy_epochs: int = 40  # the fast preset's; fewer only when they would not fit
    accuracy_batch: int | None = None  # None: the preset's 128
    subset: tuple[int, int] | None = None  # (train, test) images kept, for smoke runs
    ddp_steps: int = 20
    ddp_batch: int = 128
    compile_steps: int = 30
    compile_batch: int = 128
    compile_backend: str | None = None  # None: inductor; "eager" traces with dynamo and generates nothing
    compile_guess_s: float = 60.0  # expected cost of a compilation before one was measured
    compile_variants: tuple[tuple[str, str], ...] = (
        ("app", "bf16"), ("app", "fp32"), ("torchvision", "fp32"), ("torchvision", "bf16"),
    )  # fmt: skip


FULL = Sizes()
SMOKE = Sizes(
    limit_s=600.0,  # no skipping on a busy 2-core CPU: the test wants every phase to run
    image=32, big_batch=4, latency_runs=2, throughput_runs=1, warmup=1,
    tiny_explore=True, explore_runs=1, naive_runs=1, attribution_runs=1,
    width=0.125, guide_size=96, train_steps=1, train_batch=4,  # 96: the plain aux heads' 5×5 pool needs ≥ 80 px
    accuracy_epochs=1, accuracy_batch=32, subset=(256, 128),
    ddp_steps=2, ddp_batch=16, compile_steps=1, compile_batch=8,
    compile_backend="eager", compile_guess_s=10.0,
    compile_variants=(("app", "bf16"),),  # the other variants run the same lines
)  # fmt: skip


@dataclass(frozen=True)
class Phase:
    name: str
    budget_s: float  # its own cap; it also never runs past the whole run's limit
    minimum_s: float  # skipped when less than this is left of the whole run; 0: always runs (it takes no time)
    run: Callable[[Context], None]


class PhaseOverrun(TimeoutError):
    """A phase ran past its budget and a grace period; raised by an interval timer."""


@dataclass
class Context:
    """What phases share: the device, sizes, data, and the lines and values they report."""

    device: torch.device
    sizes: Sizes
    smoke: bool
    data_dir: Path | None
    report: dict[str, Any]
    json_path: Path | None = None
    phase: str = ""
    deadline: float = math.inf  # time.monotonic() at which the current phase's budget ends
    shared: dict[str, Any] = field(default_factory=dict)  # figures a later phase uses
    _data: Any = None

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def emit(self, name: str, value: Any, note: str = "") -> None:
        """Print ``<phase>_<name>=value  (note)`` and keep ``value`` in the JSON."""
        values = self.report["phases"][self.phase].setdefault("values", {})
        values[name] = value
        if note:
            values[name + "_note"] = note
        print(f"{self.phase}_{name}={_format(value)}" + (f"  ({note})" if note else ""), flush=True)
        _write_json(self.report, self.json_path)  # a run killed mid-phase keeps what it measured

    @property
    def data(self):
        """The CIFAR-10 folder read once (cut to ``sizes.subset`` in smoke runs)."""
        if self._data is None:
            from googlenet.datasets.cifar10 import read_cifar10

            data = read_cifar10(self.data_dir if self.data_dir is not None else "data")
            if self.sizes.subset is not None:
                train, test = self.sizes.subset
                data = replace(
                    data,
                    train_images=data.train_images[:train], train_labels=data.train_labels[:train],
                    test_images=data.test_images[:test], test_labels=data.test_labels[:test],
                )  # fmt: skip
            self._data = data
        return self._data


# -- timing ---------------------------------------------------------------------------------


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def seconds_per_call(fn: Callable[[], Any], runs: int, warmup: int, device: torch.device) -> float:
    """Median seconds of ``fn``, the device synchronised before and after each timed call."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _autocast(device: torch.device, dtype: str):
    if dtype == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


@contextlib.contextmanager
def _compile_backend(backend: str | None) -> Iterator[None]:
    """Make every ``torch.compile`` call use ``backend``: the trainer's ``compile=True`` takes no
    backend, and inductor's code generation takes minutes on a 2-core CPU where a smoke run has
    seconds. ``None`` leaves ``torch.compile`` as it is (inductor)."""
    if backend is None:
        yield
        return
    original = torch.compile
    torch.compile = functools.partial(original, backend=backend)
    try:
        yield
    finally:
        torch.compile = original


# -- phases ---------------------------------------------------------------------------------


def phase_device(ctx: Context) -> None:
    d = ctx.device
    ctx.emit("torch", torch.__version__)
    ctx.emit("python", platform.python_version())
    ctx.emit("cpu_count", os.cpu_count() or 0)
    if d.type == "cuda":
        props = torch.cuda.get_device_properties(d)
        ctx.emit("name", props.name)
        ctx.emit("gpus", torch.cuda.device_count())
        ctx.emit("capability", f"{props.major}.{props.minor}")
        ctx.emit("multiprocessors", props.multi_processor_count)
        ctx.emit("memory_gb", props.total_memory / 2**30)
        ctx.emit("cuda", torch.version.cuda or "")
        ctx.emit("cudnn", torch.backends.cudnn.version() or 0)
        ctx.emit("nccl", _nccl_version())
        ctx.emit("cudnn_allow_tf32", torch.backends.cudnn.allow_tf32, "PyTorch's default: 'fp32' convolutions run in TF32")
    else:
        ctx.emit("threads", torch.get_num_threads())
        ctx.emit("note", "no GPU: CPU figures only prove the script runs" if ctx.smoke else "no GPU: these are CPU figures")
    for package in ("torchvision", "captum", "plotly"):  # the explore phase needs the last two
        try:
            module = __import__(package)
            ctx.emit(package, getattr(module, "__version__", "present"))
        except ImportError as error:
            ctx.emit(package, "missing", f"{error}; carry it as a wheel: README, Performance")


def _nccl_version() -> str:
    import torch.distributed as dist

    if not dist.is_available() or not dist.is_nccl_available():
        return "absent"
    version = torch.cuda.nccl.version()  # a tuple in recent PyTorch, an int in older ones
    return ".".join(map(str, version)) if isinstance(version, tuple) else str(version)


def phase_inference(ctx: Context) -> None:
    from bench.engine import inference_models

    s, d = ctx.sizes, ctx.device
    reference, app = inference_models(d)
    results: dict[tuple[str, str, int], float] = {}
    for batch in (1, s.big_batch):
        x = torch.rand(batch, 3, s.image, s.image, device=d)
        x_cl = x.contiguous(memory_format=torch.channels_last)
        for dtype in ("fp32", "bf16"):
            for name in ("torchvision", "app"):
                if ctx.left() <= 0:
                    ctx.emit(f"{name}_{dtype}_b{batch}", "skipped", "the phase's budget is spent")
                    continue
                call = _inference_call(ctx, name, reference if name == "torchvision" else app, x, x_cl, dtype)
                results[name, dtype, batch] = seconds = seconds_per_call(call, _runs(s, batch), warmup=s.warmup, device=d)
                _emit_inference(ctx, name, dtype, batch, seconds, "")
    for dtype in ("fp32", "bf16"):
        if ("app", dtype, 1) in results and ("torchvision", dtype, 1) in results:
            ratio = results["app", dtype, 1] / results["torchvision", dtype, 1]
            ctx.emit(f"app_vs_torchvision_{dtype}_b1", ratio, "latency ratio, lower is better")
    app_b1 = [seconds for (name, _, batch), seconds in results.items() if name == "app" and batch == 1]
    if app_b1:
        ctx.emit("app_b1_best_ms", min(app_b1) * 1000, "goal on one H100: ≤ 3 ms")


def _inference_call(ctx: Context, name: str, model, x, x_cl, dtype: str) -> Callable[[], Any]:
    """torchvision as users run it (contiguous input, no_grad); the app's model as the app does."""
    grad_mode = torch.no_grad if name == "torchvision" else torch.inference_mode
    inp = x if name == "torchvision" else x_cl

    def call():
        with grad_mode(), _autocast(ctx.device, dtype):
            return model(inp)

    return call


def _runs(s: Sizes, batch: int) -> int:
    return s.latency_runs if batch == 1 else s.throughput_runs


def _emit_inference(ctx: Context, name: str, dtype: str, batch: int, seconds: float, prefix: str) -> None:
    if batch == 1:
        ctx.emit(f"{prefix}{name}_{dtype}_b1_ms", seconds * 1000)
    else:
        ctx.emit(f"{prefix}{name}_{dtype}_b{batch}_images_per_s", batch / seconds)


def phase_explore(ctx: Context) -> None:
    from bench.explore import EXAMPLE, measure_explore
    from explain.attributions import Method
    from explain.explorer import Explorer
    from explain.images import load_image
    from googlenet.model import GoogLeNet
    from googlenet.weights import Loaded, load_model, prepare_for_inference

    s, d = ctx.sizes, ctx.device
    if s.tiny_explore:
        torch.manual_seed(0)
        loaded = Loaded.from_model(prepare_for_inference(GoogLeNet(num_classes=10, stem="cifar", width=0.125), d))
    else:
        loaded = load_model("random", device=d)  # the full ImageNet architecture, as the app runs it
    ctx.emit("model", f"{loaded.config.stem} stem, width {loaded.config.width}, {loaded.input_size} px")
    picture = load_image(EXAMPLE)
    explorer = Explorer(loaded, cache_size=0)
    classify_s = seconds_per_call(lambda: explorer.classify(picture), s.latency_runs, warmup=s.warmup, device=d)
    ctx.emit(
        "classify_ms", classify_s * 1000, "Explorer.classify as the app calls it: resize, centre crop, normalise, forward, top-5 of 3 heads"
    )
    target = int(explorer.classify(picture)["main"][0].index)
    t = measure_explore(explorer, picture, target, s.explore_runs, s.naive_runs)
    ctx.emit("explore_ms", t.explore * 1000, "36 activations + 36 Grad-CAMs + 3 heads + contributions; goal on one H100: ≤ 10 ms")
    ctx.emit("naive_captum_ms", t.naive * 1000, "36 LayerGradCam calls on GoogLeNet as built")
    ctx.emit("naive_captum_same_model_ms", t.naive_same_model * 1000, "the same calls on the app's model")
    ctx.emit("forward_backward_ms", t.forward_backward * 1000, "one plain forward + input-gradient backward")
    ctx.emit("speedup", t.naive / t.explore, "naive captum / explore; goal on one H100: ≥ 50")
    ctx.emit("speedup_same_model", t.naive_same_model / t.explore)
    exploration = explorer.explore(picture, target)
    made: list = []  # the attributions, for the settings they used
    for method in (Method.INTEGRATED_GRADIENTS, Method.OCCLUSION):
        seconds = seconds_per_call(lambda m=method: made.append(explorer.attribute(exploration, m)), s.attribution_runs, warmup=1, device=d)
        ctx.emit(f"{method.value}_ms", seconds * 1000, ", ".join(f"{k}={v}" for k, v in made[-1].settings.items()))


def phase_training(ctx: Context) -> None:
    from bench.engine import measure_training

    s = ctx.sizes
    speeds = measure_training(ctx.data, ctx.device, s.train_steps, s.train_batch, s.width, s.guide_size)
    ctx.shared["fast_images_per_s"] = speeds.engine_fast
    size = f"Resize({s.guide_size})"
    ctx.emit(
        "guide_pipeline_images_per_s", speeds.guide, f"the guide as written: PIL transforms with {size}, DataLoader, plain network, fp32"
    )
    ctx.emit("engine_guide_preset_images_per_s", speeds.engine_224, f"guide preset at {s.guide_size} px, on-device data")
    ctx.emit("engine_fast_preset_images_per_s", speeds.engine_fast, f"fast preset, width {s.width}, 32 px, batch {s.train_batch}")
    ctx.emit("speedup_guide_preset", speeds.engine_224 / speeds.guide, "goal on one H100: ≥ 3")
    ctx.emit("speedup", speeds.engine_fast / speeds.guide, "fast preset / guide's pipeline; goal on one H100: ≥ 20")


def phase_accuracy(ctx: Context) -> None:
    from bench.engine import engine_speed
    from googlenet.training.trainer import PRESETS, EndEvent, EpochEvent, StepEvent, TrainConfig, Trainer

    s, d, data = ctx.sizes, ctx.device, ctx.data
    batch = s.accuracy_batch or PRESETS["fast"]["batch_size"]
    rate = ctx.shared.get("fast_images_per_s")
    if rate is None:  # the training phase did not run: a short measurement instead
        rate = engine_speed(data, d, max(1, s.train_steps // 3), batch, preset="fast", width=s.width).images_per_s
    n_train, n_test = len(data.train_labels), len(data.test_labels)
    # Per epoch: the training images, the test images (a forward pass only: about a third of a
    # training step's arithmetic) and a checkpoint (model and optimizer state: about 50 MB at full width).
    per_epoch = n_train / rate + n_test / (3 * rate) + (0.5 if d.type == "cuda" else 0.2)
    setup = 10.0 if d.type == "cuda" else 2.0
    fit = max(1, int((ctx.left() - setup) / per_epoch))
    epochs = min(s.accuracy_epochs, fit)
    why = (
        f"the preset's {s.accuracy_epochs}"
        if epochs == s.accuracy_epochs
        else f"{s.accuracy_epochs} would need about {setup + s.accuracy_epochs * per_epoch:.0f} s"
    )
    ctx.emit("epochs", epochs, f"{why}; about {per_epoch:.2f} s an epoch from {rate:.0f} images/s")
    stop = threading.Event()
    timer = threading.Timer(max(1.0, ctx.left()), stop.set)  # stops at the phase's end with a checkpoint
    timer.daemon = True
    steps: list[StepEvent] = []
    epoch_events: list[EpochEvent] = []

    def on_event(event) -> None:
        if isinstance(event, StepEvent):
            steps.append(event)
        elif isinstance(event, EpochEvent):
            epoch_events.append(event)

    with tempfile.TemporaryDirectory() as out:
        config = TrainConfig(
            preset="fast", width=s.width, epochs=epochs, batch_size=batch, out=str(Path(out) / "accuracy"), device=str(d), seed=0
        )
        timer.start()
        try:
            end: EndEvent = Trainer(config, data=data).run(on_event, stop)
        finally:
            timer.cancel()
    ctx.emit("end", end.status, end.message)
    accuracy = end.accuracy or {}
    for head in ("main", "aux1", "aux2"):
        if accuracy.get(head) is not None:
            ctx.emit(
                f"{head}",
                accuracy[head],
                f"test accuracy on {n_test} images" + ("; goal on one H100, full subset: ≥ 0.80" if head == "main" else ""),
            )
    ctx.emit("epochs_done", len(epoch_events))
    ctx.emit("wall_s", end.seconds, "the Trainer's run: setup, training, every epoch's evaluation and checkpoint")
    images, seconds = 0, 0.0
    for before, after in zip(steps, steps[1:]):  # the first interval holds warm-up
        n = (after.step - before.step) * batch
        images, seconds = images + n, seconds + n / after.images_per_s
    if seconds > 0:
        trained = images / seconds
        ctx.emit("train_images_per_s", trained, f"batch {batch}, evaluation and checkpoints excluded")
        ctx.emit("full_cifar10_epoch_s", FULL_CIFAR10_TRAIN / trained, "50,000 training images at this rate; goal on one H100: ≤ 3 s")
    if epoch_events:
        end_of_epoch = statistics.mean(e.seconds for e in epoch_events)
        ctx.emit("epoch_end_s", end_of_epoch, f"evaluation of {n_test} test images + checkpoint, per epoch")


def phase_ddp(ctx: Context) -> None:
    from googlenet.training.trainer import EndEvent, StepEvent, read_metrics

    s, d = ctx.sizes, ctx.device
    cuda = d.type == "cuda"
    procs = torch.cuda.device_count() if cuda else 1
    if ctx.data_dir is None:
        raise ValueError("no CIFAR-10 folder for the torchrun workers: pass --data")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "ddp"
        cmd = [
            sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={procs}",
            "--master_addr=127.0.0.1", f"--master_port={_free_port()}",
            "-m", "googlenet", "train", "--data", str(ctx.data_dir), "--out", str(out), "--preset", "fast",
            "--width", str(s.width), "--batch-size", str(s.ddp_batch * procs), "--max-steps", str(s.ddp_steps),
            "--log-every", str(max(1, s.ddp_steps // 4)), "--epochs", "1", "--device", "cuda" if cuda else "cpu",
        ]  # fmt: skip
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])), "OMP_NUM_THREADS": "1"}
        if cuda:
            env["NCCL_DEBUG"] = "INFO"  # its "NCCL version" line is the proof that NCCL carried the all-reduce
        if cuda:
            torch.cuda.empty_cache()  # hand the workers what earlier phases left cached
        started = time.perf_counter()
        output, code, worker_mb = _run_watching_gpu(cmd, env, timeout=max(5.0, ctx.left()), poll=cuda)
        wall = time.perf_counter() - started
        if code != 0:
            raise RuntimeError(f"torchrun exited with {code}: …{output[-2000:]}")
        events = read_metrics(out)
    steps = [e for e in events if isinstance(e, StepEvent)]
    end = next((e for e in events if isinstance(e, EndEvent)), None)
    nccl = re.search(r"NCCL version ([0-9][0-9.]*)", output)
    backend = f"nccl {nccl.group(1)}" if nccl else ("gloo" if not cuda else "unknown: no NCCL log line")
    ctx.emit("processes", procs)
    ctx.emit("backend", backend)
    ctx.emit("steps", steps[-1].step if steps else 0, end.message if end else "no end event")
    ctx.emit("wall_s", wall, "torchrun start, imports, process group, data, steps, checkpoint")
    if len(steps) > 1:
        ctx.emit("images_per_s", statistics.median(e.images_per_s for e in steps[1:]), f"global batch {s.ddp_batch * procs}")
    if worker_mb is not None:
        ctx.emit("worker_gpu_mb", worker_mb, "largest nvidia-smi reading of one worker, CUDA context included")


def _run_watching_gpu(cmd: list[str], env: dict[str, str], timeout: float, poll: bool) -> tuple[str, int, float | None]:
    """Run ``cmd``; with ``poll``, read the GPU memory of its processes from nvidia-smi twice a second."""
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
        peak: float | None = None
        deadline = time.monotonic() + timeout
        try:
            while proc.poll() is None:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"torchrun did not finish within {timeout:.0f} s")
                if poll:
                    reading = _nvidia_smi_process_mb()
                    if reading is not None:
                        peak = max(peak or 0.0, reading)
                time.sleep(0.5)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(30)
        log.seek(0)
        return log.read(), proc.returncode, peak


def _nvidia_smi_process_mb() -> float | None:
    """The most GPU memory any other process holds (this one keeps its cached blocks from earlier phases)."""
    try:
        result = subprocess.run(
            ["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=5,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    values = []
    for line in result.stdout.splitlines():
        pid, _, used = (part.strip() for part in line.partition(","))
        if pid.isdigit() and int(pid) != os.getpid() and used.isdigit():
            values.append(float(used))
    return max(values) if values else None


def phase_compile(ctx: Context) -> None:
    from bench.engine import engine_speed, inference_models

    s, d = ctx.sizes, ctx.device
    backend = s.compile_backend or "inductor"
    ctx.emit("backend", backend, "dynamo only, no code generation: a smoke run" if s.compile_backend else "torch.compile's default")
    with _compile_backend(s.compile_backend):
        off = engine_speed(ctx.data, d, s.compile_steps, s.compile_batch, preset="fast", width=s.width)
        ctx.emit("train_off_images_per_s", off.images_per_s, f"fast preset, width {s.width}, batch {s.compile_batch}")
        guess = s.compile_guess_s
        if ctx.left() < guess + 10:
            ctx.emit("train_on", "skipped", f"a compilation may take {guess:.0f} s; {ctx.left():.0f} s left")
        else:
            torch._dynamo.reset()
            on = engine_speed(ctx.data, d, s.compile_steps, s.compile_batch, preset="fast", width=s.width, compile=True)
            ctx.emit("train_on_images_per_s", on.images_per_s, "--compile")
            ctx.emit("train_on_warmup_s", on.warmup_s, "setup + first interval: the compilation of forward and backward")
            ctx.emit("train_speedup", on.images_per_s / off.images_per_s)
            guess = max(s.compile_guess_s / 2, on.warmup_s / 2)  # an inference graph is forward only
        reference, app = inference_models(d)
        for name, dtype in s.compile_variants:
            key = f"inference_{name}_{dtype}"
            if ctx.left() < 2 * guess + 5:  # two shapes, two compilations
                ctx.emit(key, "skipped", f"two compilations of about {guess:.0f} s each; {ctx.left():.0f} s left")
                continue
            torch._dynamo.reset()
            compiled = torch.compile(reference if name == "torchvision" else app, dynamic=False)
            compile_s = 0.0
            for batch in (1, s.big_batch):
                x = torch.rand(batch, 3, s.image, s.image, device=d)
                x_cl = x.contiguous(memory_format=torch.channels_last)
                call = _inference_call(ctx, name, compiled, x, x_cl, dtype)
                started = time.perf_counter()
                call()  # compiles for this shape
                sync(d)
                compile_s += time.perf_counter() - started
                seconds = seconds_per_call(call, _runs(s, batch), warmup=s.warmup, device=d)
                _emit_inference(ctx, name, dtype, batch, seconds, "inference_")
            ctx.emit(f"{key}_compile_s", compile_s, "the first call of each shape, which compiles it")
            guess = max(guess, compile_s / 2)


def phase_zerogpu(ctx: Context) -> None:
    ctx.emit(
        "measured",
        "no",
        "ZeroGPU exists only on Hugging Face Spaces, where spaces.GPU lends a GPU per call; app.py decorates its GPU "
        "functions with it and is a no-op elsewhere. The code those functions run is what the phases above measure",
    )
    raise _Skipped("not measurable on a lent machine")


class _Skipped(Exception):
    """A phase that ran but measures nothing here, with the reason."""


PHASES: tuple[Phase, ...] = (
    Phase("device", 20, 0, phase_device),
    Phase("inference", 45, 10, phase_inference),
    Phase("explore", 45, 10, phase_explore),
    Phase("training", 60, 15, phase_training),
    Phase("accuracy", 100, 20, phase_accuracy),
    Phase("ddp", 50, 15, phase_ddp),
    Phase("compile", 240, 20, phase_compile),
    Phase("zerogpu", 5, 0, phase_zerogpu),
)


# -- the run --------------------------------------------------------------------------------


def run(ctx: Context, phases: tuple[Phase, ...], grace_s: float = 30.0) -> int:
    """Run ``phases`` in order inside ``ctx.sizes.limit_s``; return the number that failed."""
    limit = ctx.sizes.limit_s
    end = time.monotonic() + limit
    failed = 0
    for phase in phases:
        ctx.phase = phase.name
        entry = ctx.report["phases"][phase.name] = {"budget_s": phase.budget_s, "values": {}}
        left = end - time.monotonic()
        if phase.minimum_s > 0 and left < phase.minimum_s:
            entry["status"] = reason = (
                f"skipped: needs at least {phase.minimum_s:.0f} s, {max(left, 0):.0f} s left of the {limit:.0f} s limit"
            )
            print(f"{phase.name}_status={reason}", flush=True)
            _write_json(ctx.report, ctx.json_path)
            continue
        ctx.deadline = time.monotonic() + min(phase.budget_s, left)
        if ctx.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(ctx.device)
        started = time.perf_counter()
        status = "ok"
        try:
            with _overrun_alarm(ctx.left() + grace_s):
                phase.run(ctx)
        except _Skipped as why:
            status = f"skipped: {why}"
        except Exception as error:  # one phase's failure must not cost the others their figures
            failed += 1
            status = "error"
            entry["error"] = message = f"{type(error).__name__}: {error}"
            print(f"phase_error={phase.name}: {message}", flush=True)
            traceback.print_exc(file=sys.stderr)
        entry["status"] = status
        entry["seconds"] = seconds = time.perf_counter() - started
        print(f"{phase.name}_status={status}", flush=True)
        print(f"{phase.name}_seconds={_format(seconds)}", flush=True)
        if ctx.device.type == "cuda":
            entry["peak_gpu_mb"] = torch.cuda.max_memory_allocated(ctx.device) / 2**20
            print(f"{phase.name}_peak_gpu_mb={entry['peak_gpu_mb']:.0f}", flush=True)
        else:
            entry["peak_gpu_mb"] = None
            print(f"{phase.name}_peak_gpu_mb=n/a (no GPU)", flush=True)
        ctx.report["total_s"] = limit - (end - time.monotonic())
        _write_json(ctx.report, ctx.json_path)
    return failed


@contextlib.contextmanager
def _overrun_alarm(seconds: float) -> Iterator[None]:
    """Interrupt a phase that runs far past its budget (a hung compilation, say); main thread only."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        yield
        return

    def overrun(*_):
        raise PhaseOverrun(f"ran {seconds:.0f} s, past its budget and a grace period")

    previous = signal.signal(signal.SIGALRM, overrun)
    signal.setitimer(signal.ITIMER_REAL, max(1.0, seconds))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _write_json(report: dict[str, Any], path: Path | None) -> None:
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(report, indent=2, default=str))
    os.replace(tmp, path)  # a reader (or a kill) never sees half a file


def _format(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, float):
        return str(value)
    if not math.isfinite(value):
        return str(value)
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def find_data(given: str | None) -> Path | None:
    """``given``, else the first CIFAR-10 folder among the carried ``./cifar10-subset``,
    ``$CIFAR10_SUBSET``, ``$GOOGLENET_DATA``, ``../shared/data/cifar10-subset`` and ``./data``."""
    if given is not None:
        return Path(given)
    candidates = [ROOT / "cifar10-subset", os.environ.get("CIFAR10_SUBSET"), os.environ.get("GOOGLENET_DATA")]
    candidates += [ROOT.parent / "shared" / "data" / "cifar10-subset", ROOT / "data"]
    for candidate in filter(None, candidates):
        path = Path(candidate)
        if (path / "cifar-10-batches-py" / "test_batch").is_file() or (path / "test_batch").is_file():
            return path
    return None


def write_synthetic_cifar(root: Path, train: int = 256, test: int = 128) -> Path:
    """Random images in CIFAR-10's python layout, for a smoke run where no real subset is found
    (pickle protocol 2, as the official files: only what the project's reader allows)."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    for name, n in (("data_batch_1", train), ("test_batch", test)):
        batch = {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), "labels": rng.integers(0, 10, n).tolist()}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": names}, protocol=2))
    return root


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="every phase with tiny sizes (on the CPU unless --device says otherwise)")
    parser.add_argument("--data", default=None, help="CIFAR-10 folder (default: ./cifar10-subset, $CIFAR10_SUBSET, ../shared/data/…)")
    parser.add_argument("--device", default=None, help="default: cpu with --smoke, else CUDA when there is one")
    parser.add_argument("--limit", type=float, default=None, help="seconds for the whole run (default 420; 600 with --smoke)")
    parser.add_argument("--phases", default=None, help=f"comma-separated subset of {','.join(p.name for p in PHASES)} (device always runs)")
    parser.add_argument("--json", default=None, help="where to write the JSON (default: $OUT/gpu.json when $OUT is set)")
    args = parser.parse_args(argv)

    from googlenet.device import pick_device

    sizes = SMOKE if args.smoke else FULL
    if args.limit is not None:
        sizes = replace(sizes, limit_s=args.limit)
    chosen = PHASES
    if args.phases:
        wanted = {name.strip() for name in args.phases.split(",") if name.strip()}
        unknown = wanted - {p.name for p in PHASES}
        if unknown:
            parser.error(f"unknown phases {sorted(unknown)}; expected some of {[p.name for p in PHASES]}")
        chosen = tuple(p for p in PHASES if p.name in wanted or p.name == "device")
    device = pick_device(args.device or ("cpu" if args.smoke else None))
    threads = torch.get_num_threads()
    if args.smoke and device.type == "cpu":
        # On a shared 2-core machine two spinning OpenMP threads per op made tiny models ten
        # times slower (load average 5 during the test suite); one thread keeps the smoke run short.
        torch.set_num_threads(1)
    try:
        return _main(args, sizes, chosen, device)
    finally:
        torch.set_num_threads(threads)  # main() also runs inside the test process


def _main(args: argparse.Namespace, sizes: Sizes, chosen: tuple[Phase, ...], device: torch.device) -> int:
    json_path = Path(args.json) if args.json else (Path(os.environ["OUT"]) / "gpu.json" if os.environ.get("OUT") else None)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    print(f"device={name}", flush=True)
    print(
        f"limit_s={sizes.limit_s:.0f}  ({'smoke: tiny sizes' if args.smoke else 'full sizes'}; phases: {','.join(p.name for p in chosen)})",
        flush=True,
    )

    with tempfile.TemporaryDirectory() as tmp:
        data_dir = find_data(args.data)
        if data_dir is None and args.smoke:
            data_dir = write_synthetic_cifar(Path(tmp) / "synthetic-cifar10")
            print(f"data={data_dir}  (no CIFAR-10 subset found: random images in its layout)", flush=True)
        else:
            print(f"data={data_dir}", flush=True)
        report: dict[str, Any] = {
            "device": name, "smoke": args.smoke, "limit_s": sizes.limit_s, "data": str(data_dir),
            "torch": torch.__version__, "phases": {},
        }  # fmt: skip
        ctx = Context(device=device, sizes=sizes, smoke=args.smoke, data_dir=data_dir, report=report, json_path=json_path)
        failed = run(ctx, chosen)
    print(f"phases_failed={failed}", flush=True)
    if json_path is not None:
        print(f"json={json_path}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
