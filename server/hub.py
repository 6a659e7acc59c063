"""The models an app or a notebook can pick from, loaded lazily and cached as Explorers.

A choice is a short string: ``"imagenet"``, ``"bundled"``, ``"random"`` or ``"runs:NAME/FILE"``
for a checkpoint under the runs folder, and ``"untrained:CHOICE"`` for a freshly initialised twin
of CHOICE (same layout, classes and input; what training changed, seen side by side). Only those
are accepted, so a client cannot make the server open an arbitrary path.

On a public server (``private_listing``) a visitor's runs and uploads are listed to, and loadable
by, that visitor only (the operator's runs and the bundled model are everyone's): the app tells the
hub who is asking through :attr:`ModelHub.viewer`. Uploads live in ``runs/uploads/<visitor key>/``
under an :class:`UploadPolicy`: a per-visitor quota (refused past it), a total cap (oldest uploads
evicted first; runs are never touched) and a retention time.
"""

from __future__ import annotations

import dataclasses
import filecmp
import os
import re
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torchvision.models import GoogLeNet_Weights

from explain.explorer import Explorer
from explain.microscope.microscope import Microscope
from googlenet.convert import import_checkpoint, is_project_checkpoint
from googlenet.model import GoogLeNet
from googlenet.weights import (
    BUNDLED_MODEL,
    CheckpointError,
    Loaded,
    WeightsUnavailable,
    atomic_write,
    find_checkpoints,
    imagenet_unavailable_note,
    load_model,
    pick_device,
    prepare_for_inference,
    read_meta,
    runs_dir,
)
from server.owners import read_owner

__all__ = ["ModelHub", "UploadPolicy", "UPLOAD_LIMIT_BYTES", "EVERYONE", "accuracy_summary"]

UPLOAD_LIMIT_BYTES = 200 * 2**20  # a full-width fp32 checkpoint is 52 MB
EVERYONE = "*"  # a viewer who sees every run and upload (an operator)
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")
_VISITOR_KEY = re.compile(r"[0-9a-f]{8,64}")


@dataclass(frozen=True)
class UploadPolicy:
    """Storage rules for uploaded checkpoints (``None``: no limit).

    Attributes:
        quota_bytes: one visitor's uploads together; an upload past it is refused.
        total_bytes: all uploads together; past it the oldest uploads are deleted (never runs).
        retention_s: uploads older than this are deleted (checked on upload and listing).
    """

    quota_bytes: int | None = None
    total_bytes: int | None = None
    retention_s: float | None = None


class ModelHub:
    """Lists, validates and loads model choices; keeps the last ``max_models`` loaded."""

    def __init__(self, device: str | torch.device | None = None, max_models: int = 3) -> None:
        self.device = pick_device(device)
        self.max_models = max_models
        self.preferred: str | None = None  # set by the operator (app.py --weights), never by clients
        self._operator_file: Path | None = None
        self._explorers: OrderedDict[str, Explorer] = OrderedDict()
        self._microscopes: dict[str, Microscope] = {}  # keyed like _explorers, dropped with them
        self._loading: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()
        self._imagenet_checked: tuple[float, bool] = (0.0, False)
        self._imagenet_reason = ""
        self.private_listing = False  # public server: runs and uploads are their visitor's
        self.viewer: Callable[[], str | None] = lambda: None  # the visitor key of the request being served
        self.policy = UploadPolicy()
        self._swept = 0.0

    # -- what can be picked --

    def choices(self, viewer: str | None = None) -> list[tuple[str, str]]:
        """(label, value) pairs, best first: ImageNet if obtainable, runs, bundled, random. On a
        public server only what ``viewer`` may see (``None``: what everyone sees)."""
        items: list[tuple[str, str]] = []
        if self._operator_file is not None:
            items.append((f"{self._operator_file.name} (--weights)", "file"))
        if self.imagenet_available():
            items.append(("ImageNet weights (torchvision)", "imagenet"))
        if self._inceptionv1_offered():
            items.append(("InceptionV1 (Lucid / lucent, the Circuits network)", "inceptionv1"))
        root = runs_dir()
        self._sweep_uploads()
        found = find_checkpoints(root)
        if self.private_listing and viewer is not None and viewer != EVERYONE and _VISITOR_KEY.fullmatch(viewer):
            found += [p for p in (root / "uploads" / viewer).glob("*.safetensors") if p.is_file()]
        elif not self.private_listing or viewer == EVERYONE:
            found += [p for p in root.glob("uploads/*/*.safetensors") if p.is_file()]
        for path in sorted(found, key=_mtime, reverse=True):
            if self.visible(path, viewer):
                items.append((_checkpoint_label(path, root), "runs:" + path.relative_to(root).as_posix()))
        if BUNDLED_MODEL.exists():
            items.append(("bundled small CIFAR-10 model", "bundled"))
        items.append(("random init (untrained)", "random"))
        return items

    def prefer(self, source: str) -> None:
        """The operator's choice of default (``imagenet``, ``bundled``, ``random`` or a file path)."""
        if source in ("imagenet", "bundled", "random", "auto"):
            self.preferred = None if source == "auto" else source
            return
        if source == "inceptionv1":
            from googlenet.inceptionv1_weights import fetch_inceptionv1_state_dict

            try:  # fetched (and checked) now, so a server never starts on weights it cannot load
                fetch_inceptionv1_state_dict()
            except WeightsUnavailable as error:
                raise ValueError(f"--weights inceptionv1: lucent's InceptionV1 weights are unavailable: {error}") from None
            self.preferred = source
            return
        path = Path(source).expanduser().resolve()
        if not path.is_file():
            raise FileNotFoundError(f"--weights: no such checkpoint {source}")
        read_meta(path)
        self._operator_file, self.preferred = path, "file"

    def default(self) -> str:
        """The operator's preference, else the best choice everyone may see."""
        values = [value for _, value in self.choices()]
        if self.preferred in values or self.preferred in ("imagenet", "bundled", "random", "inceptionv1"):
            return self.preferred
        return values[0]

    def imagenet_available(self) -> bool:
        """Cached or downloadable; the (fast-failing) network probe is repeated at most every 10 minutes."""
        checked_at, ok = self._imagenet_checked
        if time.monotonic() - checked_at < 600:
            return ok
        cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(GoogLeNet_Weights.IMAGENET1K_V1.url)
        ok, reason = cached.exists(), ""
        if not ok and os.environ.get("GOOGLENET_OFFLINE", "") not in ("", "0"):
            reason = f"they are not in the torch hub cache and downloads are off (GOOGLENET_OFFLINE={os.environ['GOOGLENET_OFFLINE']})"
        elif not ok:
            import urllib.error
            import urllib.request

            try:
                urllib.request.urlopen(urllib.request.Request(GoogLeNet_Weights.IMAGENET1K_V1.url, method="HEAD"), timeout=5).close()
                ok = True
            except (urllib.error.URLError, OSError) as error:
                reason = f"they are not in the torch hub cache and {GoogLeNet_Weights.IMAGENET1K_V1.url} could not be reached ({getattr(error, 'reason', error)})"
        self._imagenet_checked, self._imagenet_reason = (time.monotonic(), ok), reason
        return ok

    def _inceptionv1_offered(self) -> bool:
        """Listed when the operator picked it or its file is cached: a visitor's pick never starts a download."""
        from googlenet.inceptionv1_weights import cached_path

        return self.preferred == "inceptionv1" or cached_path().is_file()

    def imagenet_note(self) -> str | None:
        """Why the ImageNet weights are not offered, and how to get them; ``None`` when they are."""
        if self.imagenet_available():
            return None
        return imagenet_unavailable_note(WeightsUnavailable(self._imagenet_reason or "not available"))

    # -- loading --

    def explorer(self, choice: str | None) -> Explorer:
        """The Explorer for ``choice`` (loaded once, then cached); ValueError for unknown choices."""
        return self._entry(choice)[1]

    def _entry(self, choice: str | None) -> tuple[str, Explorer]:
        choice = choice or self.default()
        source = self.resolve(choice)
        key = f"{choice}:{_stamp(source)}"
        with self._lock:
            loading = self._loading.setdefault(key, threading.Lock())
        with loading:  # concurrent first requests for one model load it once
            with self._lock:
                if key in self._explorers:
                    self._explorers.move_to_end(key)
                    return key, self._explorers[key]
            try:
                loaded = self._untrained(choice) if choice.startswith("untrained:") else load_model(source, device=self.device)
            except WeightsUnavailable as error:
                what = "lucent's InceptionV1 weights" if source == "inceptionv1" else "the ImageNet weights"
                raise ValueError(f"{what} cannot be loaded right now: {error}") from None
            explorer = Explorer(loaded, cache_size=8)
            with self._lock:
                self._explorers[key] = explorer
                while len(self._explorers) > self.max_models:
                    gone, _ = self._explorers.popitem(last=False)
                    self._loading.pop(gone, None)
                    self._microscopes.pop(gone, None)
            return key, explorer

    def loaded(self, choice: str | None) -> Loaded:
        return self.explorer(choice).loaded

    def microscope(self, choice: str | None, roots: str | Path | list[Path]) -> Microscope:
        """The :class:`~explain.microscope.microscope.Microscope` of a choice (kept while its model is cached);
        ``roots`` are where its reference images are looked for, until some are found."""
        key, explorer = self._entry(choice)
        with self._lock:
            if key not in self._microscopes:
                self._microscopes[key] = Microscope(explorer.loaded, roots)
            scope = self._microscopes[key]
            if not scope.found:  # not found yet: look where the caller says now
                scope.roots = [Path(roots)] if isinstance(roots, (str, Path)) else [Path(r) for r in roots]
            return scope

    def _untrained(self, choice: str) -> Loaded:
        """A fresh initialisation (seed 0) of the layout, classes and input recipe of ``untrained:CHOICE``."""
        trained = self.loaded(choice[len("untrained:") :])
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = GoogLeNet(**dataclasses.asdict(trained.config))
        return Loaded(
            model=prepare_for_inference(model, self.device),
            classes=trained.classes,
            preprocess=trained.preprocess,
            name=f"{trained.name}, untrained twin (random init, same layout)",
            source="random",
            notes=("untrained: random weights of the same layout; its predictions mean nothing, its maps show the architecture alone",),
        )

    def untrained_label(self, choice: str) -> str:
        """The picker's label of ``untrained:CHOICE``."""
        label = dict((v, k) for k, v in self.choices()).get(choice, choice)
        return f"{label} — untrained twin (random init)"

    def resolve(self, choice: str) -> str | Path:
        """The ``load_model`` source for a choice; refuses anything outside the runs folder."""
        if isinstance(choice, str) and choice.startswith("untrained:"):
            inner = choice[len("untrained:") :]
            if inner.startswith("untrained:"):
                raise ValueError(f"unknown model {choice!r}; pick one from the list")
            return f"untrained:{self.resolve(inner)}"
        if choice in ("imagenet", "bundled", "random"):
            return choice
        if choice == "inceptionv1" and self._inceptionv1_offered():
            return choice
        if choice == "file" and self._operator_file is not None:
            return self._operator_file
        if not isinstance(choice, str) or not choice.startswith("runs:"):
            raise ValueError(f"unknown model {choice!r}; pick one from the list")
        root = runs_dir().resolve()
        path = (root / choice[len("runs:") :]).resolve()
        if not path.is_relative_to(root) or path.suffix != ".safetensors":
            raise ValueError("checkpoints can only be loaded from the runs folder")
        # Another visitor's run reads exactly like a missing one: names are not an oracle.
        if not path.is_file() or not self.visible(path, self.viewer()):
            raise ValueError(f"checkpoint {choice[5:]} no longer exists; refresh the model list")
        return path

    def stamp(self, choice: str | None) -> str:
        """The choice with its file's size and time: changes when a checkpoint is rewritten."""
        choice = choice or self.default()
        return f"{choice}:{_stamp(self.resolve(choice))}"

    def visible(self, path: Path, viewer: str | None) -> bool:
        """Whether ``viewer`` may list and load the checkpoint at ``path`` (always, off a public server)."""
        if not self.private_listing or viewer == EVERYONE:
            return True
        root = runs_dir().resolve()
        relative = path.resolve().relative_to(root).parts
        if relative[0] == "uploads":  # uploads/FILE: the operator's; uploads/KEY/FILE: that visitor's
            return len(relative) == 2 or (viewer is not None and relative[1] == viewer)
        owner = read_owner(root / relative[0])
        return owner is None or owner.operator or owner.key == viewer

    def add_upload(self, path: str | Path, name: str | None = None, owner: str | None = None) -> str:
        """Validate an uploaded checkpoint and keep it under ``runs/uploads/`` (``uploads/OWNER/``
        for a visitor of a public server); returns its choice.

        This project's checkpoints are kept as they are; a torchvision-layout state dict
        (``.pth``/``.pt``/``.bin``, or safetensors without this project's metadata) is converted
        (see :mod:`googlenet.convert`). Nothing is kept unless the whole file is valid and fits
        the visitor's quota; past the total cap the oldest uploads are deleted.
        """
        path = Path(path)
        size = path.stat().st_size
        if size > UPLOAD_LIMIT_BYTES:
            raise CheckpointError(f"{name or path.name}: {size / 2**20:.0f} MB is over the {UPLOAD_LIMIT_BYTES >> 20} MB upload limit")
        if owner is not None and not _VISITOR_KEY.fullmatch(owner):
            raise ValueError(f"upload owner must be a visitor key (hex), got {owner!r}")
        self._sweep_uploads(force=True)
        with tempfile.TemporaryDirectory() as scratch:
            if is_project_checkpoint(path):
                read_meta(path)  # header and metadata first: cheap, and raises CheckpointError with the reason
                load_model(path, device="cpu")  # then tensors and shapes, before anything is kept
            else:
                path = import_checkpoint(path, Path(scratch) / "imported.safetensors")
            folder = runs_dir() / "uploads" / (owner if owner is not None and self.private_listing else "")
            self._check_quota(folder, path.stat().st_size, owner is not None and self.private_listing)
            choice = self._keep_upload(path, name, folder)
        self._evict_uploads(keep=runs_dir() / choice[len("runs:") :])
        return choice

    def uploads(self) -> list[Path]:
        """Every kept upload, oldest first."""
        return sorted((p for p in (runs_dir() / "uploads").rglob("*.safetensors") if p.is_file()), key=_mtime)

    def _check_quota(self, folder: Path, size: int, per_visitor: bool) -> None:
        quota = self.policy.quota_bytes
        if not per_visitor or quota is None:
            return
        used = sum(p.stat().st_size for p in folder.glob("*.safetensors") if p.is_file()) if folder.is_dir() else 0
        if used + size > quota:
            raise CheckpointError(
                f"upload refused: your uploads would take {(used + size) / 2**20:.1f} MB, over the per-visitor quota of "
                f"{quota / 2**20:g} MB (GOOGLENET_UPLOAD_QUOTA_MB); uploads are kept {self._retention_text()}"
            )

    def _evict_uploads(self, keep: Path | None = None) -> list[Path]:
        """Past the total cap, delete the oldest uploads (never ``keep``, never a run)."""
        cap = self.policy.total_bytes
        if cap is None:
            return []
        uploads = self.uploads()
        total, gone = sum(p.stat().st_size for p in uploads), []
        for path in uploads:
            if total <= cap:
                break
            if keep is not None and path.resolve() == keep.resolve():
                continue
            total -= path.stat().st_size
            path.unlink(missing_ok=True)
            gone.append(path)
        return gone

    def _sweep_uploads(self, force: bool = False) -> None:
        """Delete uploads older than the retention time (at most once a minute unless forced)."""
        if self.policy.retention_s is None or (not force and time.monotonic() - self._swept < 60):
            return
        self._swept = time.monotonic()
        limit = time.time() - self.policy.retention_s
        for path in self.uploads():
            if path.stat().st_mtime < limit:
                path.unlink(missing_ok=True)

    def _retention_text(self) -> str:
        hours = self.policy.retention_s / 3600 if self.policy.retention_s else None
        return f"{hours:g} hours" if hours else "until the operator removes them"

    def _keep_upload(self, path: Path, name: str | None, target_dir: Path | None = None) -> str:
        stem = _SAFE_NAME.sub("-", Path(name or path.name).stem).strip("-.")[:60] or "upload"
        target_dir = target_dir if target_dir is not None else runs_dir() / "uploads"
        target_dir.mkdir(parents=True, exist_ok=True)
        target, n = target_dir / f"{stem}.safetensors", 1
        while target.exists() and not filecmp.cmp(target, path, shallow=False):  # never overwrite
            n += 1
            target = target_dir / f"{stem}-{n}.safetensors"
        if not target.exists():
            atomic_write(target, lambda tmp: shutil.copyfile(path, tmp))
        return "runs:" + target.relative_to(runs_dir()).as_posix()


def _mtime(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return 0


def _stamp(source: str | Path) -> str:
    if isinstance(source, Path):
        stat = source.stat()
        return f"{stat.st_size}:{stat.st_mtime_ns}"
    return ""


def _checkpoint_label(path: Path, root: Path) -> str:
    relative = path.relative_to(root).as_posix()
    try:
        _, meta = read_meta(path)
    except (CheckpointError, OSError):
        return f"{relative} (unreadable)"
    summary = accuracy_summary(meta.training)
    return f"{relative} · {summary}" if summary else relative


def accuracy_summary(training: dict) -> str:
    """What a checkpoint's accuracy figure is about: "epoch 3 · 61.2% test", or for weights saved
    mid-epoch (Stop, max_steps) "step 84, mid-epoch 2 · not evaluated (epoch 1: 41.2%)":
    the accuracy in the metadata was measured on the previous epoch's weights, not these."""
    accuracy = (training.get("accuracy") or {}).get("main") if isinstance(training.get("accuracy"), dict) else None
    text = f"{accuracy:.1%} test" if isinstance(accuracy, (int, float)) and 0 <= accuracy <= 1 else ""
    epoch, batch, step = training.get("epoch"), training.get("batch"), training.get("step")
    if not isinstance(epoch, int) or not isinstance(batch, int):
        return text
    if batch == 0:
        return f"epoch {epoch} · {text}" if text else f"epoch {epoch}"
    before = f" (epoch {epoch}: {text.removesuffix(' test')})" if text and epoch > 0 else ""
    return f"step {step}, mid-epoch {epoch + 1} · not evaluated{before}"
