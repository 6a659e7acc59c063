"""The GoogLeNet checkpoints people already have, in and out.

In: a torchvision-layout ``state_dict`` saved with ``torch.save`` (``.pth``/``.pt``/``.bin``, read
only with ``torch.load(..., weights_only=True)``), also wrapped in a dict under ``state_dict`` /
``model`` / ``model_state_dict`` as training scripts write it, or a bare safetensors file. The
network (classes, BatchNorm, aux heads, ``branch3`` kernel, stem, width) is inferred from the keys
and shapes, and the result is this project's checkpoint with class names and an input recipe.
lucent's ``modelzoo.inceptionv1`` state dict (``mixed4c_3x3_pre_relu_conv.weight`` …
``softmax2_pre_activation_matmul``) is recognised too and becomes the ``inceptionv1`` layout.

Out: a plain state dict that ``torchvision.models.googlenet(num_classes=N, aux_logits=…,
init_weights=False).load_state_dict(...)`` loads strictly, for models in torchvision's layout.
"""

from __future__ import annotations

import json
import os
import pickle
import warnings
import zipfile
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from torch import Tensor

from .inceptionv1 import INCEPTIONV1_PREPROCESS, from_lucent_state, is_lucent_state
from .model import GoogLeNet, GoogLeNetConfig
from .preprocess import CAFFE_IMAGENET, CIFAR10, IMAGENET, Preprocess
from .weights import MAX_CHECKPOINT_BYTES, CheckpointError, CheckpointMeta, atomic_write, load_weights, read_checkpoint, save_checkpoint

__all__ = [
    "is_project_checkpoint",
    "read_state_dict",
    "infer_config",
    "read_class_names",
    "import_checkpoint",
    "export_torchvision",
    "IMPORT_SUFFIXES",
]

IMPORT_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors")
_WRAPPERS = ("state_dict", "model_state_dict", "model", "net")
_PREFIXES = ("module.", "_orig_mod.", "model.")  # DistributedDataParallel, torch.compile, Lightning
_OTHER_NETWORKS = {  # a key that gives another network away → its name, for the message
    "layer1.0.conv1.weight": "a ResNet",
    "Mixed_5b.branch1x1.conv.weight": "Inception v3",
    "Mixed_6a.branch3x3.conv.weight": "Inception v3",
    "features.0.weight": "a VGG / AlexNet-style network",
    "features.0.0.weight": "a MobileNet / EfficientNet-style network",
    "stem.0.weight": "a ConvNeXt-style network",
    "encoder.layers.encoder_layer_0.ln_1.weight": "a Vision Transformer",
}


def is_project_checkpoint(path: str | os.PathLike) -> bool:
    """Whether ``path`` is (or claims to be) a checkpoint of this project: a safetensors file with
    its metadata. Anything else is a candidate for :func:`import_checkpoint`."""
    with open(path, "rb") as handle:
        head = handle.read(9)
    if head.startswith(b"PK\x03\x04") or head[:1] == b"\x80" or head[8:9] != b"{":
        return False
    try:
        with safe_open(str(path), framework="pt") as handle:
            return "config" in (handle.metadata() or {})
    except (SafetensorError, OSError, ValueError):
        return True  # a damaged safetensors file: read_meta says precisely what is wrong


def read_state_dict(path: str | os.PathLike) -> dict[str, Tensor]:
    """The tensors of a ``torch.save`` file or a safetensors file, without running any code."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    size = path.stat().st_size
    if size > MAX_CHECKPOINT_BYTES:
        raise CheckpointError(
            f"{path.name}: {size / 2**20:,.0f} MiB is over the {MAX_CHECKPOINT_BYTES >> 20} MiB limit (a full-width GoogLeNet is 52 MB)"
        )
    if size == 0:
        raise CheckpointError(f"{path.name}: empty file (0 bytes)")
    with open(path, "rb") as handle:
        head = handle.read(9)
    if head.startswith(b"PK\x03\x04") or head[:1] == b"\x80":
        state = _torch_load(path)
    elif len(head) == 9 and head[8:9] == b"{":
        try:
            state = load_file(str(path))
        except (SafetensorError, OSError, ValueError) as error:
            raise CheckpointError(f"{path.name}: not a readable safetensors file ({error})") from None
    else:
        raise CheckpointError(f"{path.name}: neither a PyTorch file (torch.save) nor a safetensors file")
    return _unwrap(state, path.name)


def _torch_load(path: Path) -> object:
    try:
        with warnings.catch_warnings():  # files pickled with protocol 4/5 (plain pickle.dump) warn but load
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            # a file object, not the path: torch.load would take a name ending in .safetensors for one
            with open(path, "rb") as handle:
                return torch.load(handle, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        detail = str(error).split("WeightsUnpickler error:", 1)[-1].strip().splitlines()
        reason = next((line.strip() for line in detail if line.strip()), "")[:160]
        raise CheckpointError(
            f"{path.name}: a pickle that holds (or may hold) Python objects besides tensors, which could run code, "
            f"so it is not loaded ({reason}). Save the weights alone: torch.save(model.state_dict(), path)"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as error:
        raise CheckpointError(f"{path.name}: damaged or truncated PyTorch (torch.save) file ({str(error).splitlines()[0][:200]})") from None


def _unwrap(state: object, name: str) -> dict[str, Tensor]:
    """The state dict itself: under a training script's wrapper key, prefixes removed."""
    if isinstance(state, dict):
        for key in _WRAPPERS:
            inner = state.get(key)
            if isinstance(inner, dict) and any(isinstance(v, Tensor) for v in inner.values()):
                state = inner
                break
    if not isinstance(state, dict) or not state:
        raise CheckpointError(f"{name}: expected a state dict (names → tensors), found {type(state).__name__}")
    not_tensors = [k for k, v in state.items() if not isinstance(v, Tensor)]
    if not_tensors:
        raise CheckpointError(
            f"{name}: expected a state dict of tensors; {len(not_tensors)} entries are not tensors (e.g. {not_tensors[:3]})"
        )
    for prefix in _PREFIXES:
        if all(str(k).startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items()}
    return {str(k): v for k, v in state.items()}


def infer_config(state: dict[str, Tensor], name: str = "state dict") -> GoogLeNetConfig:
    """Classes, BatchNorm, aux heads, ``branch3`` kernel, stem and width, read off keys and shapes."""
    if is_lucent_state(state):
        return _lucent_config(state, name)
    conv1 = state.get("conv1.conv.weight")
    fc = state.get("fc.weight")
    if conv1 is None or fc is None or "inception3a.branch1.conv.weight" not in state:
        other = next((label for key, label in _OTHER_NETWORKS.items() if key in state), None)
        found = ", ".join(list(state)[:4])
        what = f"it looks like {other}" if other else f"its keys start {found}"
        raise CheckpointError(
            f"{name}: not a GoogLeNet state dict ({what}); expected torchvision's names such as conv1.conv.weight, "
            "inception3a.branch1.conv.weight and fc.weight, or lucent's InceptionV1 names such as mixed3a_1x1_pre_relu_conv.weight"
        )
    if conv1.ndim != 4 or fc.ndim != 2:
        raise CheckpointError(
            f"{name}: conv1.conv.weight {tuple(conv1.shape)} / fc.weight {tuple(fc.shape)} do not have GoogLeNet's shapes"
        )
    kernel = int(conv1.shape[-1])
    if kernel not in (3, 7):
        raise CheckpointError(f"{name}: conv1 has a {kernel}×{kernel} kernel; GoogLeNet's stems use 7×7 (ImageNet) or 3×3 (CIFAR)")
    width = int(fc.shape[1]) / 1024  # fc reads ch(1024) features: the finest reading of the width
    batch_norm = "conv1.bn.running_mean" in state
    branch3 = state.get("inception3a.branch3.1.conv.weight")
    kernel3 = int(branch3.shape[-1]) if branch3 is not None and branch3.ndim == 4 else None
    default3 = 3 if batch_norm else 5
    try:
        return GoogLeNetConfig(
            num_classes=int(fc.shape[0]),
            aux_logits="aux1.fc2.weight" in state,
            batch_norm=batch_norm,
            stem="imagenet" if kernel == 7 else "cifar",
            width=width,
            branch3_kernel=None if kernel3 in (None, default3) else kernel3,
        )
    except ValueError as error:
        raise CheckpointError(f"{name}: {error}") from None


def _lucent_config(state: dict[str, Tensor], name: str) -> GoogLeNetConfig:
    fc = state.get("softmax2_pre_activation_matmul.weight")
    if fc is None or fc.ndim != 2:
        raise CheckpointError(f"{name}: lucent InceptionV1 names but no 2-D softmax2_pre_activation_matmul.weight")
    try:
        return GoogLeNetConfig(
            num_classes=int(fc.shape[0]), aux_logits=False, batch_norm=False, width=int(fc.shape[1]) / 1024,
            branch3_kernel=5, layout="inceptionv1",
        )  # fmt: skip
    except ValueError as error:
        raise CheckpointError(f"{name}: {error}") from None


def build_from_state(state: dict[str, Tensor], name: str = "state dict") -> GoogLeNet:
    """A GoogLeNet with ``state`` loaded strictly; a mismatch names the offending keys and shapes."""
    config = infer_config(state, name)
    if config.layout == "inceptionv1":
        try:
            state = from_lucent_state(state, name)
        except ValueError as error:
            raise CheckpointError(str(error)) from None
    what = f"{name}: does not match the GoogLeNet its shapes describe ({config.stem} stem, width {config.width:g})"
    return load_weights(GoogLeNet(**asdict(config)), state, what)


def read_class_names(source: str | os.PathLike | list[str] | tuple[str, ...], count: int) -> tuple[str, ...]:
    """Class names from a list, a ``.txt`` file (one a line) or a ``.json`` list; ``count`` must match."""
    if isinstance(source, list | tuple):
        names = [str(n) for n in source]
        where = "the class list"
    else:
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"class-name file not found: {path}")
        if path.stat().st_size > 10 * 2**20:
            raise ValueError(f"{path.name}: a class-name file over 10 MB is not a list of names")
        text = path.read_text(encoding="utf-8", errors="replace")
        where = path.name
        if path.suffix.lower() == ".json":
            try:
                names = json.loads(text)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path.name}: not valid JSON ({error})") from None
            if not isinstance(names, list):
                raise ValueError(f"{path.name}: expected a JSON list of class names, got {type(names).__name__}")
            names = [str(n) for n in names]
        else:
            names = [line.strip() for line in text.splitlines() if line.strip()]
    if len(names) != count:
        raise ValueError(f"{where}: {len(names)} class names for a model with {count} outputs")
    return tuple(names)


def import_checkpoint(
    path: str | os.PathLike,
    out: str | os.PathLike,
    classes: str | os.PathLike | list[str] | None = None,
    transform_input: bool = False,
) -> Path:
    """Turn a torchvision-layout checkpoint into this project's safetensors checkpoint at ``out``.

    Args:
        classes: the class names (list or file); default ``class 0 … class N-1``, with a note.
        transform_input: the model was built with torchvision's ``transform_input=True`` (what
            ``googlenet(weights="DEFAULT")`` sets), so it expects Caffe's (x − 0.5)/0.5 inputs.

    Nothing is written unless the whole file is valid.
    """
    path = Path(path)
    state = read_state_dict(path)
    model = build_from_state(state, path.name)
    n = model.config.num_classes
    notes = []
    if classes is None:
        names = tuple(f"class {i}" for i in range(n))
        notes.append(f"class names unknown: shown as class 0 … class {n - 1} (import with --classes FILE to name them)")
    else:
        names = read_class_names(classes, n)
    preprocess: Preprocess = (CAFFE_IMAGENET if transform_input else IMAGENET) if model.config.stem == "imagenet" else CIFAR10
    training = {"imported_from": path.name, "format": "torchvision state dict"}
    if model.config.layout == "inceptionv1":
        # lucent feeds x·255 − 117; torchvision's transform_input does not apply to this network.
        preprocess = INCEPTIONV1_PREPROCESS
        training["format"] = "lucent InceptionV1 state dict"
    if notes:
        training["note"] = " ".join(notes)
    return save_checkpoint(out, model, CheckpointMeta(names, preprocess, training))


def export_torchvision(checkpoint: str | os.PathLike, out: str | os.PathLike) -> Path:
    """Write a checkpoint's weights as a plain state dict for ``torchvision.models.googlenet``."""
    model, _ = read_checkpoint(checkpoint)
    c = model.config
    differences = [
        reason
        for ok, reason in (
            (c.batch_norm, "it has no BatchNorm (the paper's plain layout)"),
            (c.stem == "imagenet", "it has the CIFAR stem (3×3 conv1, no early pooling)"),
            (c.width == 1.0, f"its width is {c.width:g}, not 1"),
            (c.kernel3 == 3, f"its branch3 uses {c.kernel3}×{c.kernel3} kernels, torchvision's 3×3"),
            (c.layout == "googlenet", "it is Lucid's InceptionV1 (TF padding, local response norm, 1008 outputs)"),
        )
        if not ok
    ]
    if differences:
        raise CheckpointError(f"{Path(checkpoint).name}: torchvision has no such network: {'; '.join(differences)}")
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    return atomic_write(Path(out), lambda tmp: torch.save(state, tmp))
