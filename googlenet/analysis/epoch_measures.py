"""A training run's timeline: what each epoch's checkpoint does, measured on the test set and cached
beside the run, so a finished epoch is never measured twice.

For every ``runs/NAME/epoch-NNN.safetensors`` one :class:`EpochEntry` holds

* the heads: test accuracy of main, aux1 and aux2 and how often they agree;
* branch specialization (Voss et al. 2021, https://distill.pub/2020/circuits/branch-specialization/):
  each branch's mean class selectivity, the class most of its channels prefer, and its share of
  its module's output energy (:mod:`googlenet.analysis.selectivity`, the microscope's statistics);
* knock-out importance: how much the main head's test accuracy falls when a branch's output, or a
  whole module's, is zeroed;
* the probe test image's per-head probabilities.

Entries are stored in ``runs/NAME/timeline.json``, keyed by the checkpoint's content hash and a
fingerprint of the test images, so a renamed or re-read file is recognised, pruned epochs keep
their entry, and a different test set never mixes in. The trainer keeps a thinned set of epoch
files (see ``TrainConfig.keep_checkpoints``); an epoch whose file was pruned before anything
measured it is missing from the timeline, and ``Timeline.notes`` says so.

Cost of one epoch: one pass over the test images records every module's output; each branch
knock-out then re-runs only the layers after its module (:meth:`GoogLeNet.forward_from`), and a
whole module's knock-out needs a single image, because a zeroed module hands every image the
same input. At the CIFAR stem that is about 13 passes' worth of work for 45 knock-outs instead
of 46 passes.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from googlenet.analysis.selectivity import BranchStatistics
from googlenet.datasets import reference_pictures
from googlenet.datasets.cifar10 import CIFAR10, DataError, read_cifar10
from googlenet.device import amp_dtype, pick_device
from googlenet.fastpool import with_fast_pools
from googlenet.training.runs import TIMELINE
from googlenet.weights import CheckpointError, Loaded, atomic_write, is_checkpoint_name, load_model, read_meta, runs_dir

__all__ = ["EpochEntry", "Timeline", "measure", "run_timeline", "read_timeline", "resolve_run", "run_data", "epoch_files", "file_digest"]

CACHE_NAME = TIMELINE
CACHE_FORMAT = "googlenet-timeline/1"
HEAD_PAIRS = (("main", "aux1"), ("main", "aux2"), ("aux1", "aux2"))
_EPOCH_FILE = re.compile(r"^epoch-(\d+)\.safetensors$")
_LOCKS: dict[str, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()

Progress = Callable[[float, str], None]


@dataclass(frozen=True)
class EpochEntry:
    """What one epoch's checkpoint does on the test images (see the module docstring)."""

    epoch: int
    step: int
    checkpoint: str  # the file's name when it was measured
    sha1: str  # of the checkpoint file's bytes
    images: str  # fingerprint of the test images, labels and probe index
    count: int  # number of test images
    accuracy: dict[str, float | None]  # main, aux1, aux2 (None without aux heads)
    agreement: dict[str, float]  # "main=aux1", "main=aux2", "aux1=aux2", "all": share of images with the same top class
    selectivity: dict[str, float]  # branch → mean class selectivity index of its channels
    preferred: dict[str, str]  # branch → the class most of its channels respond to most
    energy: dict[str, float]  # branch → mean share of its module's Σ A²
    importance: dict[str, float]  # branch or module → main-head accuracy drop when zeroed
    probe: dict[str, Any]  # index, label, per-head probabilities of one test image
    seconds: float  # to measure this entry

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> EpochEntry:
        return cls(**{f.name: values[f.name] for f in fields(cls)})


@dataclass(frozen=True)
class Timeline:
    """A run's epochs in order; ``computed`` counts the entries measured by this call (0: all cached)."""

    run: str
    entries: tuple[EpochEntry, ...]
    computed: int
    notes: tuple[str, ...] = ()

    @property
    def epochs(self) -> tuple[int, ...]:
        return tuple(e.epoch for e in self.entries)

    @property
    def branches(self) -> tuple[str, ...]:
        return tuple(self.entries[0].selectivity) if self.entries else ()

    @property
    def modules(self) -> tuple[str, ...]:
        return tuple(name for name in (self.entries[0].importance if self.entries else ()) if "." not in name)

    def series(self, metric: str, name: str) -> list[float | None]:
        """One value per epoch, e.g. ``series("importance", "inception4e.branch2")`` or ``series("accuracy", "aux1")``."""
        if metric not in {f.name for f in fields(EpochEntry)}:
            raise ValueError(f"unknown metric {metric!r}; expected one of selectivity, energy, importance, accuracy, agreement")
        return [getattr(e, metric).get(name) for e in self.entries]

    def to_json(self) -> dict[str, Any]:
        return {
            "run": self.run,
            "epochs": [asdict(e) for e in self.entries],
            "modules": list(self.modules),
            "branches": list(self.branches),
            "computed": self.computed,
            "notes": list(self.notes),
        }


# -- one checkpoint -------------------------------------------------------------------------


# Branch knock-outs are most of an epoch's cost (36 partial passes per image: about 10 full
# passes' worth at the CIFAR stem). Measured on the width-0.25 run of the bar (3 epochs, 2-core
# CPU, bf16): 17.4 s an epoch with all 1,017 test images, see README for the figure with 512. The
# drop is paired (the same images with and without the branch), so it needs fewer images than an
# accuracy: README gives the largest difference from the all-images value on that run.
KNOCKOUT_IMAGES = 512


@torch.inference_mode()
def measure(
    loaded: Loaded,
    images: Tensor,
    labels: Tensor,
    probe_index: int = 0,
    batch_size: int | None = None,
    precision: str = "fp32",
    progress: Progress | None = None,
    knockout_images: int | None = KNOCKOUT_IMAGES,
) -> dict[str, Any]:
    """Heads, branch statistics and knock-out importance of one model on uint8 ``images`` N×3×H×W.

    Returns the measured fields of :class:`EpochEntry` (``accuracy`` … ``probe``). ``precision``
    ``"fp32"`` (default) gives the accuracy ``python -m googlenet eval`` reports; ``"auto"``
    runs in bf16 where the trainer would. ``knockout_images``: a branch's importance is measured
    on the first so many images (``None``: all), against the main head's accuracy on the same
    images (see :data:`KNOCKOUT_IMAGES`); a module's, exact and cheap, on all of them.
    """
    if len(images) != len(labels) or len(images) == 0:
        raise ValueError(f"expected as many labels as images (at least one), got {len(images)} images and {len(labels)} labels")
    if not 0 <= probe_index < len(images):
        raise ValueError(f"probe_index {probe_index} is outside the {len(images)} test images")
    # A private copy with the faster pool branches (same values exactly): the hooks below stay off the caller's model.
    spec, model, device = loaded.spec, with_fast_pools(copy.deepcopy(loaded.model)), loaded.device
    n, classes = len(images), loaded.classes
    if int(labels.max()) >= len(classes):
        raise ValueError(f"{loaded.name} predicts {len(classes)} classes; these labels need {int(labels.max()) + 1}")
    # 128 images at 32 px hold about 200 MB of module outputs at width 0.25 (all nine are kept for the knock-outs).
    batch_size = batch_size or (32 if loaded.input_size <= 64 else 16)  # 32 vs 128: 10.0 vs 10.9 s an epoch (bar run, bf16)
    heads = spec.heads
    stats = BranchStatistics(spec, len(classes))
    correct = torch.zeros(len(heads), dtype=torch.long)
    agree = {f"{a}={b}": 0 for a, b in HEAD_PAIRS if a in heads and b in heads}
    if len(heads) > 2:
        agree["all"] = 0
    knocked = {b: 0 for b in spec.branch_names}
    n_knock = n if knockout_images is None else max(1, min(n, knockout_images))
    knock_base = 0  # main-head correct answers on the knock-out images: each drop is paired
    captured: dict[str, Tensor] = {}
    hooks = [model.get_submodule(m).register_forward_hook(lambda _m, _i, o, m=m: captured.__setitem__(m, o)) for m in spec.module_names]
    amp = amp_dtype(precision, device)
    if amp is not None:  # autocast re-casts weights that need no gradient at every call: cast the copy once
        model = model.to(amp)
    probe: dict[str, Any] = {"index": probe_index, "label": classes[int(labels[probe_index])]}
    try:
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            for start in range(0, n, batch_size):
                y = labels[start : start + batch_size].to(device)
                x = loaded.preprocess(images[start : start + batch_size].to(device)).contiguous(memory_format=torch.channels_last)
                outputs = [o for o in model(x, aux=True) if o is not None]
                # The hooks fire again in the knock-out passes below: keep this pass's outputs.
                baseline = dict(captured)
                predicted = [o.argmax(1) for o in outputs]
                for h, p in enumerate(predicted):
                    correct[h] += int((p == y).sum())
                for a, b in HEAD_PAIRS:
                    if f"{a}={b}" in agree:
                        agree[f"{a}={b}"] += int((predicted[heads.index(a)] == predicted[heads.index(b)]).sum())
                if "all" in agree:
                    agree["all"] += int(((predicted[0] == predicted[1]) & (predicted[0] == predicted[2])).sum())
                if start <= probe_index < start + len(y):
                    for head, o in zip(heads, outputs):
                        probe[head] = [round(v, 5) for v in o[probe_index - start].float().softmax(0).tolist()]
                stats.add_labels(y)
                k = max(0, min(len(y), n_knock - start))  # how many of this batch the knock-outs see
                knock_base += int((predicted[heads.index("main")][:k] == y[:k]).sum())
                for module in spec.modules:
                    out = baseline[module.name]
                    stats.add(module.name, out)
                    if k == 0:
                        continue
                    out = out[:k]
                    for branch in module.branches:
                        # Zero the branch's channels in place and put them back: a copy of the slice
                        # instead of the whole output (a quarter of the memory traffic on average).
                        kept = out[:, branch.channels].clone()
                        out[:, branch.channels] = 0
                        knocked[branch.name] += int((model.forward_from(module.name, out).argmax(1) == y[:k]).sum())
                        out[:, branch.channels] = kept
                if progress is not None:
                    progress(min(1.0, (start + len(y)) / n), f"{min(n, start + len(y))}/{n} test images")
            # A zeroed module hands every image the same input, so one image gives every image's prediction.
            constant = {}
            for module in spec.modules:
                shape = captured[module.name].shape[1:]
                zeros = torch.zeros(1, *shape, device=device).contiguous(memory_format=torch.channels_last)
                constant[module.name] = int(model.forward_from(module.name, zeros).argmax(1))
    finally:
        for hook in hooks:
            hook.remove()
    accuracy = {head: correct[h].item() / n for h, head in enumerate(heads)}
    base = accuracy["main"]
    importance: dict[str, float] = {}
    for module in spec.modules:
        importance[module.name] = round(base - int((labels == constant[module.name]).sum()) / n, 6)
        for branch in module.branches:
            importance[branch.name] = round((knock_base - knocked[branch.name]) / n_knock, 6)
    selectivity, preferred = {}, {}
    for branch in spec.branch_names:
        si = stats.selectivity(branch)
        selectivity[branch] = round(float(si.mean()), 6)
        means = stats.class_means(spec.branch(branch).module)[:, spec.branch(branch).channels]
        preferred[branch] = classes[int(torch.bincount(means.argmax(0), minlength=len(classes)).argmax())]
    return {
        "count": n,
        "accuracy": {head: accuracy.get(head) for head in ("main", "aux1", "aux2")},
        "agreement": {k: round(v / n, 6) for k, v in agree.items()},
        "selectivity": selectivity,
        "preferred": preferred,
        "energy": {b: round(v, 6) for b, v in stats.energy.items()},
        "importance": importance,
        "probe": probe,
    }


# -- a run ----------------------------------------------------------------------------------


def resolve_run(run: str | os.PathLike) -> Path:
    """A run folder: the path as given, or a bare NAME under the runs folder."""
    path = Path(run).expanduser()
    if not path.exists() and len(path.parts) == 1:
        path = runs_dir() / path
    if not path.is_dir():
        raise ValueError(f"no run folder at {run!r}: expected a folder holding epoch-NNN.safetensors (e.g. runs/NAME)")
    return path


def epoch_files(run: Path) -> dict[int, Path]:
    """Epoch number → its checkpoint, for the ``epoch-NNN.safetensors`` files in ``run``."""
    found = {}
    for path in run.glob("epoch-*.safetensors"):
        match = _EPOCH_FILE.match(path.name)
        if match and is_checkpoint_name(path.name) and path.is_file():
            found[int(match.group(1))] = path
    return dict(sorted(found.items()))


def file_digest(path: Path) -> str:
    """SHA-1 of a file's bytes: the same checkpoint under any name, and a rewritten one differs."""
    digest = hashlib.sha1()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def images_fingerprint(
    images: Tensor, labels: Tensor, probe_index: int, precision: str = "fp32", knockout_images: int | None = KNOCKOUT_IMAGES
) -> str:
    """What an entry was measured on: the test images, labels, probe, arithmetic (fp32 / bf16) and
    how many images the branch knock-outs see."""
    digest = hashlib.sha1(f"{tuple(images.shape)}:{probe_index}:{precision}:{knockout_images}".encode())
    digest.update(images.contiguous().numpy().tobytes())
    digest.update(labels.to(torch.int64).contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def read_timeline(run: str | os.PathLike) -> Timeline:
    """What the cache holds, without measuring anything (the newest entry per epoch)."""
    path = resolve_run(run)
    entries: dict[int, EpochEntry] = {}
    for entry in _read_cache(path).values():
        entries[entry.epoch] = entry
    return Timeline(str(path), tuple(entries[e] for e in sorted(entries)), computed=0)


def run_timeline(
    run: str | os.PathLike,
    data: CIFAR10 | str | os.PathLike | None = None,
    max_images: int | None = 2000,
    device: str | torch.device | None = None,
    precision: str = "auto",
    progress: Progress | None = None,
    on_entry: Callable[[EpochEntry], None] | None = None,
) -> Timeline:
    """Every epoch of ``run``: cached entries as they are, new epoch files measured and cached.

    Args:
        run: the run folder (or a NAME in the runs folder).
        data: the CIFAR-10 whose test batch is measured: read already, a folder, or ``None`` for
            the run's own (:func:`run_data`).
        max_images: the first so many test images (2,000 by default: ±1 % on an accuracy; the
            subset's 1,017 are all used).
        precision: ``"auto"`` (default: bf16 where the trainer would use it, as the microscope's
            index does: 1.4–1.7× faster on this project's CPU, and accuracies within a few
            near-ties of float32) or ``"fp32"`` (exactly what ``python -m googlenet eval`` counts).
            Entries of one precision never stand in for the other.
        on_entry: called with each newly measured entry (a live view shows it at once).
    """
    path = resolve_run(run)
    config = _run_config(path)
    files = epoch_files(path)
    cached = _read_cache(path)
    if not files and not cached:
        raise ValueError(f"{path} holds no epoch-NNN.safetensors checkpoints yet (one is written at the end of each epoch)")
    probe_index = int(config.get("probe_index", 0))
    digests = {epoch: file_digest(p) for epoch, p in files.items()}
    arithmetic = _arithmetic(precision, device)
    try:
        test = _test_set(data if data is not None else run_data(path), max_images, path)
        fingerprint = images_fingerprint(*test, probe_index, arithmetic)
        todo = {e: p for e, p in files.items() if f"{digests[e]}/{fingerprint}" not in cached}
    except ValueError:  # DataError too: the data moved away; what is cached can still be shown
        measured = {key.split("/")[0] for key in cached}
        if any(digests[e] not in measured for e in files):
            raise
        test, fingerprint, todo = None, None, {}
    computed = 0
    for i, (epoch, file) in enumerate(todo.items()):
        started = time.perf_counter()

        def step(fraction: float, message: str, i=i, epoch=epoch) -> None:
            if progress is not None:
                progress((i + fraction) / len(todo), f"epoch {epoch}: {message}")

        try:
            loaded = load_model(file, device=device)
        except (CheckpointError, OSError):
            continue  # pruned or replaced while we looked: the other epochs still count
        values = measure(loaded, *test, probe_index=probe_index, precision=precision, progress=step)
        entry = EpochEntry(
            epoch=epoch, step=int(loaded.training.get("step", 0)), checkpoint=file.name, sha1=digests[epoch], images=fingerprint,
            **values, seconds=round(time.perf_counter() - started, 2),
        )  # fmt: skip
        cached = _store(path, entry)
        computed += 1
        if on_entry is not None:
            on_entry(entry)
    return _assemble(path, cached, digests, fingerprint, computed)


def _assemble(path: Path, cached: dict[str, EpochEntry], digests: dict[int, str], fingerprint: str | None, computed: int) -> Timeline:
    """Per epoch: the entry of the file present, else (pruned) the newest cached one for the epoch."""
    if fingerprint is None and cached:  # the test set cannot be read now: the one most entries were measured on
        counts: dict[str, int] = {}
        for entry in cached.values():
            counts[entry.images] = counts.get(entry.images, 0) + 1
        fingerprint = max(counts, key=counts.get)
    by_epoch: dict[int, EpochEntry] = {}
    for key, entry in cached.items():
        if entry.images != fingerprint:
            continue
        present = digests.get(entry.epoch)
        if present is None or key.startswith(present):
            by_epoch[entry.epoch] = entry
    notes = []
    absent = sorted(e for e in digests if e not in by_epoch)
    if absent:
        notes.append(f"epochs {absent} could not be measured (unreadable checkpoints)")
    return Timeline(str(path), tuple(by_epoch[e] for e in sorted(by_epoch)), computed, tuple(notes))


def run_data(run: Path) -> str | None:
    """The data folder a run trained on: what its newest checkpoint records (the folder really
    read, also when the app handed the trainer data already in memory), else ``config.json``'s."""
    for file in reversed(epoch_files(run).values()):
        try:
            data = read_meta(file)[1].training.get("data")
        except (CheckpointError, OSError):
            continue
        if data:
            return str(data)
    return _run_config(run).get("data")


def _arithmetic(precision: str, device: str | torch.device | None) -> str:
    if precision not in ("auto", "fp32", "bf16"):
        raise ValueError(f"precision must be auto, fp32 or bf16, got {precision!r}")
    return "bf16" if amp_dtype(precision, pick_device(device)) is not None else "fp32"


def _run_config(path: Path) -> dict[str, Any]:
    try:
        return json.loads((path / "config.json").read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def _test_set(data: CIFAR10 | str | os.PathLike | None, max_images: int | None, run: Path | None = None) -> tuple[Tensor, Tensor]:
    if data is None:
        raise ValueError("which test set? the run has no config.json naming its data; pass data (--data DIR)")
    if max_images is not None and max_images < 1:
        raise ValueError(f"max_images must be ≥ 1, got {max_images}")
    if not isinstance(data, CIFAR10):
        try:
            data = read_cifar10(data)
        except DataError:
            if run is None or not epoch_files(run):
                raise
            return _own_test_set(data, max_images, run)
    n = len(data.test_labels) if max_images is None else min(max_images, len(data.test_labels))
    return data.test_images[:n], data.test_labels[:n]


def _own_test_set(data: str | os.PathLike, max_images: int | None, run: Path) -> tuple[Tensor, Tensor]:
    """The held-out split of any other dataset the run read (CIFAR-100, an image folder, a zip's
    folder), split as the run split it and fitted to its input recipe."""
    newest = list(epoch_files(run).values())[-1]
    meta = read_meta(newest)[1]
    config = meta.training.get("config") if isinstance(meta.training.get("config"), dict) else _run_config(run)
    pictures = reference_pictures(
        data, meta.preprocess, float(config.get("val_split") or 0.2), int(config.get("seed") or 0), limit=max_images
    )
    if tuple(pictures.classes) != tuple(meta.classes):
        raise ValueError(f"{data} has other classes than the run's checkpoints; pass the data the run trained on (--data)")
    return pictures.images, pictures.labels


def _lock(path: Path) -> threading.Lock:
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(str(path.resolve()), threading.Lock())


def _read_cache(path: Path) -> dict[str, EpochEntry]:
    """``sha1/fingerprint`` → entry; a missing or damaged cache is empty (entries are then re-measured)."""
    try:
        values = json.loads((path / CACHE_NAME).read_text())
        if values.get("format") != CACHE_FORMAT:
            return {}
        return {key: EpochEntry.from_dict(entry) for key, entry in values["entries"].items()}
    except (OSError, json.JSONDecodeError, KeyError, TypeError, AttributeError):
        return {}


def _store(path: Path, entry: EpochEntry) -> dict[str, EpochEntry]:
    """Add ``entry`` to the cache (read again under a lock, so two writers in one process keep both)."""
    with _lock(path):
        cached = _read_cache(path)
        cached[f"{entry.sha1}/{entry.images}"] = entry
        text = json.dumps({"format": CACHE_FORMAT, "entries": {k: asdict(v) for k, v in cached.items()}})
        try:
            atomic_write(path / CACHE_NAME, lambda tmp: Path(tmp).write_text(text))
        except OSError:
            pass  # a read-only run folder: the timeline still works, it is just not cached
        return cached
