"""Where weights come from and what they carry: ImageNet, checkpoints, the bundled model, random.

Checkpoints are safetensors files whose string metadata holds the model config, class names,
normalisation, input size and a training summary, each JSON-encoded under its own key. Nothing a
user hands us is ever unpickled.
"""

from __future__ import annotations

import json
import os
import struct
import tempfile
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from torchvision.models import GoogLeNet_Weights

from .device import pick_device
from .model import GoogLeNet, GoogLeNetConfig, fold_batchnorm
from .preprocess import CAFFE_IMAGENET, CIFAR10, CIFAR10_MEAN, CIFAR10_STD, IMAGENET, IMAGENET_MEAN, IMAGENET_STD, Preprocess
from .spec import NetworkSpec, describe

__all__ = [
    "Loaded",
    "CheckpointMeta",
    "CheckpointError",
    "WeightsUnavailable",
    "load_model",
    "save_checkpoint",
    "read_checkpoint",
    "read_meta",
    "load_weights",
    "find_checkpoints",
    "is_checkpoint_name",
    "INDEX_SUFFIX",
    "prepare_for_inference",
    "pick_device",
    "imagenet_unavailable_note",
    "imagenet_state_dict",
    "runs_dir",
    "BUNDLED_MODEL",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "CIFAR10_CLASSES",
]

CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip

BUNDLED_MODEL = Path(__file__).resolve().parent.parent / "assets" / "models" / "googlenet-cifar10-small.safetensors"
CHECKPOINT_FORMAT = "googlenet-explorer/1"
INDEX_SUFFIX = ".examples.safetensors"  # the microscope's cache beside a checkpoint
MAX_CHECKPOINT_BYTES = 1 << 30  # a full-width GoogLeNet is 52 MB in fp32; nothing real is near 1 GiB
_META_KEYS = ("config", "classes", "mean", "std", "input_size")

RANDOM_NOTE = "Random weights: the predictions and maps mean nothing; they show the machinery only."
IMAGENET_AUX_NOTE = (
    "torchvision's ImageNet weights were ported from the paper's Caffe model without the aux heads: "
    "aux1/aux2 are untrained here, so their predictions are noise."
)


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used, with the file and the reason in the message."""


class WeightsUnavailable(RuntimeError):
    """The ImageNet weights are neither cached nor downloadable right now."""


@dataclass(frozen=True)
class CheckpointMeta:
    """What a checkpoint carries besides tensors: class names, input recipe, training summary."""

    classes: tuple[str, ...]
    preprocess: Preprocess
    training: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class Loaded:
    """A model ready for inference and everything needed to feed and read it."""

    model: GoogLeNet  # eval mode, BatchNorm folded, channels_last
    classes: tuple[str, ...]
    preprocess: Preprocess  # how a picture becomes this model's input
    name: str  # what the banner shows
    source: str  # "imagenet" | "checkpoint" | "bundled" | "random" | "model"
    notes: tuple[str, ...] = ()  # caveats, and why `auto` picked this source
    path: Path | None = None
    training: dict[str, Any] = field(default_factory=dict)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def config(self) -> GoogLeNetConfig:
        return self.model.config

    @cached_property
    def spec(self) -> NetworkSpec:
        """The network's modules, branches and heads (see :mod:`googlenet.spec`)."""
        return describe(self.model)

    @property
    def mean(self) -> tuple[float, float, float]:
        return self.preprocess.mean

    @property
    def std(self) -> tuple[float, float, float]:
        return self.preprocess.std

    @property
    def input_size(self) -> int:
        return self.preprocess.input_size

    @property
    def resize_size(self) -> int:
        return self.preprocess.resize_size

    @property
    def key(self) -> str:
        """Identity of these weights for caches: the source and, for files, size and mtime."""
        if self.source == "model":
            return f"model:{id(self.model)}"
        if self.path is None:
            return f"{self.source}:{self.name}"
        stat = self.path.stat()
        return f"{self.path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"

    @property
    def trained(self) -> bool:
        return self.source != "random"

    def with_notes(self, *notes: str) -> Loaded:
        """The same weights with ``notes`` put before the existing ones."""
        return replace(self, notes=(*notes, *self.notes))

    @classmethod
    def from_model(cls, model: GoogLeNet, classes: tuple[str, ...] | list[str] | None = None) -> Loaded:
        """Wrap a bare model (as it is: not folded, eval mode at use) with its stem's defaults."""
        cifar = model.config.stem == "cifar"
        n = model.config.num_classes
        if classes is None:
            classes = CIFAR10_CLASSES if cifar and n == 10 else tuple(f"class {i}" for i in range(n))
        if len(classes) != n:
            raise ValueError(f"{len(classes)} class names for a model with {n} outputs")
        from .inceptionv1 import INCEPTIONV1_PREPROCESS

        return cls(
            model=model,
            classes=tuple(classes),
            preprocess=INCEPTIONV1_PREPROCESS if model.config.layout == "inceptionv1" else CIFAR10 if cifar else IMAGENET,
            name=f"in-memory GoogLeNet ({model.config.stem} stem, width {model.config.width})",
            source="model",
        )


# -- device and folders ---------------------------------------------------------------------


def runs_dir() -> Path:
    """Where training runs live: ``$GOOGLENET_RUNS`` or ``./runs``."""
    return Path(os.environ.get("GOOGLENET_RUNS", "runs"))


# -- checkpoints ----------------------------------------------------------------------------


def save_checkpoint(path: str | os.PathLike, model: nn.Module, meta: CheckpointMeta, dtype: torch.dtype | None = None) -> Path:
    """Write ``model``'s weights and ``meta`` to a safetensors file, atomically.

    The file is written beside its target under a temporary name, flushed to disk and renamed
    over the target, so a crash at any moment leaves either the old file or the new one, never a
    torn one. ``dtype`` (e.g. ``torch.float16``) casts floating tensors; loading casts back to
    float32.
    """
    model = getattr(model, "module", model)  # DistributedDataParallel / compiled wrappers
    model = getattr(model, "_orig_mod", model)
    config: GoogLeNetConfig = model.config
    if getattr(model, "folded", False):
        raise ValueError("refusing to save a BatchNorm-folded inference copy; save the trained model")
    if len(meta.classes) != config.num_classes:
        raise ValueError(f"{len(meta.classes)} class names for a model with {config.num_classes} outputs")
    tensors = {}
    for name, tensor in model.state_dict().items():
        tensor = tensor.detach().to("cpu")
        if dtype is not None and tensor.is_floating_point():
            tensor = tensor.to(dtype)
        tensors[name] = tensor.contiguous()
    metadata = {
        "format": CHECKPOINT_FORMAT,
        "config": json.dumps(asdict(config)),
        "classes": json.dumps(list(meta.classes)),
        "mean": json.dumps(list(meta.preprocess.mean)),
        "std": json.dumps(list(meta.preprocess.std)),
        "input_size": json.dumps(meta.preprocess.input_size),
        "resize_size": json.dumps(meta.preprocess.resize_size),
        "training": json.dumps(meta.training),
    }
    return atomic_write(Path(path), lambda tmp: save_file(tensors, tmp, metadata=metadata))


def atomic_write(path: Path, write) -> Path:
    """Call ``write(temp_path)`` and rename the result over ``path`` once it is on disk."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide checkpoints from other users
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_meta(path: str | os.PathLike) -> tuple[GoogLeNetConfig, CheckpointMeta]:
    """Validate a checkpoint's header and metadata without reading its tensors."""
    path = Path(path)
    _sniff(path)
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"{path.name}: not a readable safetensors file ({error})") from None
    missing = [key for key in _META_KEYS if key not in metadata]
    if missing:
        raise CheckpointError(
            f"{path.name}: safetensors file without GoogLeNet metadata (missing {', '.join(missing)}); "
            "checkpoints must be written by googlenet.save_checkpoint"
        )
    try:
        values = {key: json.loads(metadata[key]) for key in (*_META_KEYS, "resize_size", "training") if key in metadata}
        config = GoogLeNetConfig.from_dict(values["config"])
        preprocess = Preprocess(
            input_size=int(values["input_size"]),
            resize_size=int(values.get("resize_size") or values["input_size"]),
            mean=tuple(float(v) for v in values["mean"]),
            std=tuple(float(v) for v in values["std"]),
        )
        meta = CheckpointMeta(tuple(str(c) for c in values["classes"]), preprocess, dict(values.get("training") or {}))
    except (json.JSONDecodeError, TypeError, ValueError) as error:
        raise CheckpointError(f"{path.name}: invalid metadata ({error})") from None
    if len(meta.classes) != config.num_classes:
        raise CheckpointError(
            f"{path.name}: class count mismatch: {len(meta.classes)} class names but the model config has {config.num_classes} outputs"
        )
    return config, meta


def read_checkpoint(path: str | os.PathLike) -> tuple[GoogLeNet, CheckpointMeta]:
    """Build the model a checkpoint describes and load its weights (float32, CPU, train mode)."""
    path = Path(path)
    config, meta = read_meta(path)
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise CheckpointError(f"{path.name}: cannot read tensors ({error})") from None
    model = load_weights(GoogLeNet(**asdict(config)), tensors, f"{path.name}: wrong architecture for its config")
    return model, meta


def load_weights(model: GoogLeNet, tensors: dict[str, Tensor], what: str) -> GoogLeNet:
    """Load ``tensors`` into ``model`` strictly, as float32. A mismatch raises CheckpointError
    starting with ``what`` and naming the offending keys and shapes; non-finite weights are refused."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    wrong_shape = [
        f"{k} {tuple(tensors[k].shape)} (expected {tuple(v.shape)})"
        for k, v in expected.items()
        if k in tensors and tensors[k].shape != v.shape
    ]
    if missing or unexpected or wrong_shape:
        parts = [
            f"{len(items)} {label} (e.g. {', '.join(items[:3])})"
            for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong_shape))
            if items
        ]
        raise CheckpointError(f"{what}: {'; '.join(parts)}")
    bad = [k for k, t in tensors.items() if t.is_floating_point() and not torch.isfinite(t).all()]
    if bad:
        raise CheckpointError(f"{what.split(':')[0]}: non-finite weights in {len(bad)} tensors (e.g. {bad[0]}): a diverged run?")
    model.load_state_dict({k: (t.float() if t.is_floating_point() else t) for k, t in tensors.items()}, strict=True)
    return model


def _sniff(path: Path) -> None:
    """Reject what is not a safetensors file before any parser sees it, with a precise reason."""
    if not path.exists():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if not path.is_file():
        raise CheckpointError(f"{path}: not a file")
    size = path.stat().st_size
    if size > MAX_CHECKPOINT_BYTES:
        raise CheckpointError(f"{path.name}: {size / 2**20:.0f} MiB is over the {MAX_CHECKPOINT_BYTES >> 20} MiB limit")
    with open(path, "rb") as handle:
        head = handle.read(9)
    if head.startswith(b"PK\x03\x04"):
        raise CheckpointError(
            f"{path.name}: a zip / PyTorch .pt file; only .safetensors checkpoints are accepted "
            "(pickle-based files can run code and are never loaded)"
        )
    # A pickle starts with 0x80 (its PROTO opcode); so does a safetensors file whose header length
    # is 128 modulo 256 (a real checkpoint hit this): the JSON brace at byte 8 tells them apart.
    if head[:1] == b"\x80" and head[8:9] != b"{":
        raise CheckpointError(f"{path.name}: a pickle file; only .safetensors checkpoints are accepted (pickles can run code)")
    if size < 8 + 2:
        raise CheckpointError(f"{path.name}: {size} bytes is too short to be a safetensors file (empty or truncated)")
    (header_len,) = struct.unpack("<Q", head[:8])
    if head[8:9] != b"{" or header_len > 100 * 2**20:
        raise CheckpointError(f"{path.name}: not a safetensors file (no JSON header at the start)")
    if header_len > size - 8:
        raise CheckpointError(f"{path.name}: truncated: the header alone claims {header_len} bytes of a {size}-byte file")
    with open(path, "rb") as handle:
        handle.seek(8)
        try:
            header = json.loads(handle.read(header_len))
            end = max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"), default=0)
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError, IndexError):
            raise CheckpointError(f"{path.name}: not a safetensors file (unreadable header)") from None
    if 8 + header_len + end > size:
        raise CheckpointError(f"{path.name}: truncated: its tensors need {8 + header_len + end:,} bytes, the file has {size:,}")


def is_checkpoint_name(name: str) -> bool:
    """Temporary files of a write in progress, optimizer-state files and the microscope's
    dataset-example indexes (``*.examples.safetensors``) share the suffix but are not checkpoints."""
    return name.endswith(".safetensors") and not name.startswith((".", "state-")) and not name.endswith(INDEX_SUFFIX)


def find_checkpoints(root: str | os.PathLike | None = None) -> list[Path]:
    """Checkpoints under the runs folder (``root/NAME/*.safetensors``), newest first."""
    root = Path(root) if root is not None else runs_dir()
    if not root.is_dir():
        return []
    found = [p for p in root.glob("*/*.safetensors") if p.is_file() and is_checkpoint_name(p.name)]
    return sorted(found, key=lambda p: p.stat().st_mtime_ns, reverse=True)


# -- inference ------------------------------------------------------------------------------


def prepare_for_inference(model: GoogLeNet, device: torch.device) -> GoogLeNet:
    """Eval mode, BatchNorm folded, channels_last, on ``device``.

    Measured on the 2-core CPU this project is developed on (batch 1, 224×224, full width):
    torchvision 74 ms, this model 58 ms, BN folded 51 ms, folded + channels_last 28 ms.
    """
    model = fold_batchnorm(model.eval()) if model.config.batch_norm else model.eval()
    model.requires_grad_(False)
    return model.to(device=device, memory_format=torch.channels_last)


def load_model(source: str | os.PathLike = "auto", device: str | torch.device | None = None) -> Loaded:
    """Load GoogLeNet weights for inference.

    Args:
        source: ``"imagenet"`` (torchvision ``GoogLeNet_Weights.IMAGENET1K_V1``, from the torch
            hub cache or downloaded), a path to a ``.safetensors`` checkpoint, ``"bundled"`` (the
            small CIFAR-10 model shipped in ``assets/models/``), ``"random"``, or ``"auto"``
            (default): ImageNet if cached or downloadable, else the newest checkpoint in the runs
            folder, else the bundled model, else random — ``notes`` says why. ``"inceptionv1"``:
            lucent's InceptionV1 (Lucid's, the Circuits papers'), cached or downloaded and checked.
        device: see :func:`pick_device`.
    """
    device = pick_device(device)
    source = os.fspath(source)
    if source == "auto":
        return _load_auto(device)
    if source == "imagenet":
        return _load_imagenet(device, download=True)
    if source == "random":
        return _load_random(device)
    if source == "inceptionv1":
        return _load_inceptionv1(device)
    if source == "bundled":
        return _load_file(BUNDLED_MODEL, device, origin="bundled")
    return _load_file(Path(source), device, origin="checkpoint")


def _load_auto(device: torch.device) -> Loaded:
    reasons = []
    try:
        return _load_imagenet(device, download=os.environ.get("GOOGLENET_OFFLINE", "") in ("", "0"))
    except WeightsUnavailable as error:
        reasons.append(imagenet_unavailable_note(error))
    for path in find_checkpoints():
        try:
            loaded = _load_file(path, device, origin="checkpoint")
        except (CheckpointError, OSError) as error:
            reasons.append(f"skipped {path}: {error}")
            continue
        return loaded.with_notes(*reasons, f"newest checkpoint in {runs_dir()}")
    if BUNDLED_MODEL.exists():
        loaded = _load_file(BUNDLED_MODEL, device, origin="bundled")
        note = "no checkpoint in the runs folder, so the small bundled CIFAR-10 model is live; train a better one in the Train tab"
        return loaded.with_notes(*reasons, note)
    return _load_random(device).with_notes(*reasons, "no checkpoint and no bundled model")


def imagenet_unavailable_note(error: Exception) -> str:
    """Why the ImageNet weights are not live, and how to get them (banner and startup log)."""
    url = GoogLeNet_Weights.IMAGENET1K_V1.url
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    return (
        f"ImageNet weights unavailable: {error}. To use them, run once with internet access "
        f"(they are downloaded and hash-checked automatically), or put {os.path.basename(url)} from {url} into {folder}."
    )


def _load_imagenet(device: torch.device, download: bool) -> Loaded:
    weights = GoogLeNet_Weights.IMAGENET1K_V1
    state = _fetch_imagenet_state_dict(weights, download)
    model = GoogLeNet(num_classes=len(weights.meta["categories"]), aux_logits=True, batch_norm=True)
    model.load_state_dict(state, strict=True)
    return Loaded(
        model=prepare_for_inference(model, device),
        classes=tuple(weights.meta["categories"]),
        preprocess=CAFFE_IMAGENET,
        name="ImageNet (torchvision GoogLeNet_Weights.IMAGENET1K_V1)",
        source="imagenet",
        notes=(IMAGENET_AUX_NOTE,),
        training={"accuracy": weights.meta["_metrics"]["ImageNet-1K"]},
    )


def imagenet_state_dict(download: bool | None = None) -> dict[str, Tensor]:
    """torchvision's ImageNet GoogLeNet weights as a state dict of this model (``fine-tuning``
    starts from it): the cached file, else a hash-checked download unless ``GOOGLENET_OFFLINE=1``.
    Raises :class:`WeightsUnavailable` when neither works."""
    if download is None:
        download = os.environ.get("GOOGLENET_OFFLINE", "") in ("", "0")
    return _fetch_imagenet_state_dict(GoogLeNet_Weights.IMAGENET1K_V1, download)


def _fetch_imagenet_state_dict(weights, download: bool) -> dict[str, Tensor]:
    """The ImageNet state dict from the torch hub cache, else downloaded (hash-checked)."""
    filename = os.path.basename(weights.url)
    cached = Path(torch.hub.get_dir()) / "checkpoints" / filename
    if not cached.exists():
        if not download:
            raise WeightsUnavailable("not cached, and downloads are off (GOOGLENET_OFFLINE=1)")
        try:  # fail in seconds when offline, instead of inside a long download
            urllib.request.urlopen(urllib.request.Request(weights.url, method="HEAD"), timeout=5).close()
        except (urllib.error.URLError, OSError) as error:
            raise WeightsUnavailable(f"not cached and {weights.url} is unreachable: {error}") from None
    try:
        return weights.get_state_dict(progress=True, check_hash=True, weights_only=True)
    except (urllib.error.URLError, OSError, RuntimeError) as error:
        raise WeightsUnavailable(f"could not read or download {filename}: {error}") from None


def _load_inceptionv1(device: torch.device) -> Loaded:
    """lucent's InceptionV1 weights (googlenet.inceptionv1_weights): cached or downloaded, checked."""
    from .convert import build_from_state
    from .inceptionv1 import INCEPTIONV1_PREPROCESS
    from .inceptionv1_weights import fetch_inceptionv1_state_dict

    model = build_from_state(fetch_inceptionv1_state_dict(), "inception5h.pth")
    n = model.config.num_classes
    return Loaded(
        model=prepare_for_inference(model, device),
        classes=tuple(f"class {i}" for i in range(n)),
        preprocess=INCEPTIONV1_PREPROCESS,
        name="InceptionV1 (Lucid / lucent, the Circuits network)",
        source="inceptionv1",
        notes=(f"class names are not shipped with lucent's weights: shown as class 0 … class {n - 1} (TF's 1008-label list)",),
    )


def _load_random(device: torch.device) -> Loaded:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = GoogLeNet()
    return Loaded(
        model=prepare_for_inference(model, device),
        classes=tuple(GoogLeNet_Weights.IMAGENET1K_V1.meta["categories"]),
        preprocess=IMAGENET,
        name="random init (untrained)",
        source="random",
        notes=(RANDOM_NOTE,),
    )


def _load_file(path: Path, device: torch.device, origin: str) -> Loaded:
    model, meta = read_checkpoint(path)
    return Loaded(
        model=prepare_for_inference(model, device),
        classes=meta.classes,
        preprocess=meta.preprocess,
        name="bundled CIFAR-10 GoogLeNet (small)" if origin == "bundled" else _display_name(path),
        source=origin,
        notes=(str(meta.training["note"]),) if meta.training.get("note") else (),
        path=path,
        training=meta.training,
    )


def _display_name(path: Path) -> str:
    runs = runs_dir().resolve()
    try:
        return str(path.resolve().relative_to(runs))
    except ValueError:
        return path.name
