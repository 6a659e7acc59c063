"""Dataset examples and branch specialization: one pass over a reference set records, for every
channel of every branch, the images (and the position) of its strongest responses, each class's
mean response and each branch's share of its module's output energy.

Branch specialization follows Voss et al. 2021, "Branch Specialization"
(https://distill.pub/2020/circuits/branch-specialization/): per branch, the class selectivity
index of its channels and the share of the module's output energy ``Σ A²`` that the branch
carries, accumulated by :class:`googlenet.analysis.selectivity.BranchStatistics` (the run timeline uses
the same code).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor

from googlenet.analysis.selectivity import BranchStatistics, selectivity_index
from googlenet.device import amp_dtype
from googlenet.weights import INDEX_SUFFIX, Loaded, atomic_write, runs_dir

__all__ = ["ExampleIndex", "selectivity_index", "build_index", "load_or_build_index", "save_index", "read_index", "crops"]


@dataclass(frozen=True)
class ExampleIndex:
    """Per channel of every module: its ``k`` strongest images; per branch: selectivity and energy.

    Tensors are keyed by module: ``top_images[m]`` C×k image indices, ``top_values[m]`` C×k peak
    activations, ``top_positions[m]`` C×k flat positions of the peak at the module's resolution,
    ``class_means[m]`` n_classes×C class-conditional means of the spatially averaged activation.
    """

    top_images: dict[str, Tensor]
    top_values: dict[str, Tensor]
    top_positions: dict[str, Tensor]
    class_means: dict[str, Tensor]
    energy: dict[str, float]  # branch → mean share of its module's Σ A²
    resolution: dict[str, int]
    labels_from: str  # "dataset labels" or "model predictions"
    fingerprint: str
    seconds: float
    slices: dict[str, slice]  # branch → its channel range inside the module's output

    def selectivity(self, branch: str) -> Tensor:
        """Class selectivity index of each channel of ``branch``."""
        module, _ = branch.split(".")
        return selectivity_index(self.class_means[module][:, self.slices[branch]])


def _weights_id(loaded: Loaded) -> str:
    """The weights' identity for the cache: a checkpoint's content hash (the same file anywhere,
    under any name), else the source and name (imagenet, random)."""
    if loaded.path is None or not loaded.path.is_file():
        return loaded.key
    digest = hashlib.sha1()
    with open(loaded.path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fingerprint(loaded: Loaded, images: Tensor) -> str:
    digest = hashlib.sha1(_weights_id(loaded).encode())
    digest.update(str(tuple(images.shape)).encode())
    digest.update(images[:: max(1, len(images) // 64)].contiguous().numpy().tobytes())
    return digest.hexdigest()


@torch.inference_mode()
def build_index(
    loaded: Loaded,
    images: Tensor,
    labels: Tensor | None = None,
    k: int = 9,
    batch_size: int = 128,
    progress: Callable[[float, str], None] | None = None,
    precision: str = "fp32",
) -> ExampleIndex:
    """One pass over ``images`` (N×3×H×W uint8 at any size; resized to the model's input).

    Labels (CIFAR test batch) give class-conditional means; without them the model's own
    predictions stand in, and ``labels_from`` says so. ``precision="auto"`` runs the pass in
    bf16 where the trainer would (GPUs, CPUs with native bf16): 24.8 s instead of 33.7 s for
    1,017 images at full width on this project's CPU; near-ties among top examples may swap.
    """
    started = time.perf_counter()
    spec = loaded.spec
    model, device = loaded.model, loaded.device
    n, n_classes = len(images), len(loaded.classes)
    modules = spec.module_names
    captured: dict[str, Tensor] = {}
    hooks = [model.get_submodule(m).register_forward_hook(lambda _m, _i, o, m=m: captured.__setitem__(m, o)) for m in modules]
    maxima = {m: [] for m in modules}
    positions = {m: [] for m in modules}
    stats = BranchStatistics(spec, n_classes)
    resolution: dict[str, int] = {}
    predicted = []
    amp = amp_dtype(precision, device)
    try:
        for start in range(0, n, batch_size):
            x = loaded.preprocess(images[start : start + batch_size].to(device))
            with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
                logits = model(x.contiguous(memory_format=torch.channels_last))
            batch_labels = labels[start : start + batch_size] if labels is not None else logits.argmax(1).cpu()
            predicted.append(batch_labels)
            stats.add_labels(batch_labels)
            for m in modules:
                act = captured[m].float()
                flat = act.flatten(2)  # B×C×HW
                value, where = flat.max(dim=2)
                maxima[m].append(value.cpu())
                positions[m].append(where.cpu())
                resolution[m] = act.shape[-1]
                stats.add(m, flat)
            if progress is not None:
                progress(min(1.0, (start + batch_size) / n), f"indexing dataset examples: {min(n, start + batch_size)}/{n}")
    finally:
        for hook in hooks:
            hook.remove()
    k = min(k, n)
    top_images, top_values, top_positions, class_means = {}, {}, {}, {}
    for m in modules:
        value = torch.cat(maxima[m])  # N×C
        where = torch.cat(positions[m])
        best = value.topk(k, dim=0)  # k×C
        top_images[m] = best.indices.T.contiguous()
        top_values[m] = best.values.T.contiguous()
        top_positions[m] = torch.gather(where, 0, best.indices).T.contiguous()
        class_means[m] = stats.class_means(m)
    return ExampleIndex(
        top_images, top_values, top_positions, class_means,
        energy=stats.energy, resolution=resolution,
        labels_from="dataset labels" if labels is not None else "model predictions",
        fingerprint=_fingerprint(loaded, images), seconds=time.perf_counter() - started,
        slices={b.name: b.channels for m in spec.modules for b in m.branches},
    )  # fmt: skip


def _cache_path(loaded: Loaded, fingerprint: str) -> Path:
    """Beside the checkpoint when it is in the runs folder; else in ``runs/.microscope/``, so
    nothing is written outside the runs folder (the bundled model, an operator's file)."""
    root = runs_dir().resolve()
    if loaded.path is not None and loaded.path.resolve().is_relative_to(root):
        return loaded.path.with_name(loaded.path.stem + INDEX_SUFFIX)
    return root / ".microscope" / f"{fingerprint[:20]}{INDEX_SUFFIX}"


def save_index(index: ExampleIndex, path: Path) -> Path:
    tensors: dict[str, Tensor] = {}
    for name, table in (
        ("top_images", index.top_images),
        ("top_values", index.top_values),
        ("top_positions", index.top_positions),
        ("class_means", index.class_means),
    ):
        for m, tensor in table.items():
            tensors[f"{name}.{m}"] = tensor.contiguous()
    metadata = {
        "fingerprint": index.fingerprint,
        "energy": json.dumps(index.energy),
        "resolution": json.dumps(index.resolution),
        "labels_from": index.labels_from,
        "seconds": str(index.seconds),
        "slices": json.dumps({b: [s.start, s.stop] for b, s in index.slices.items()}),
    }
    return atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))


def read_index(path: Path) -> ExampleIndex:
    tables: dict[str, dict[str, Tensor]] = {"top_images": {}, "top_values": {}, "top_positions": {}, "class_means": {}}
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata()
        for key in handle.keys():
            name, module = key.rsplit(".", 1)
            tables[name][module] = handle.get_tensor(key)
    return ExampleIndex(
        **tables, energy=json.loads(metadata["energy"]), resolution=json.loads(metadata["resolution"]),
        labels_from=metadata["labels_from"], fingerprint=metadata["fingerprint"], seconds=float(metadata["seconds"]),
        slices={b: slice(*v) for b, v in json.loads(metadata["slices"]).items()},
    )  # fmt: skip


def load_or_build_index(loaded: Loaded, images: Tensor, labels: Tensor | None = None, progress=None) -> tuple[ExampleIndex, bool]:
    """The cached index when its fingerprint (weights + reference set) matches, else a new one.

    Returns ``(index, from_cache)``.
    """
    fingerprint = _fingerprint(loaded, images)
    path = _cache_path(loaded, fingerprint)
    if path.is_file():
        try:
            index = read_index(path)
            if index.fingerprint == fingerprint:
                return index, True
        except (OSError, KeyError, ValueError, json.JSONDecodeError):
            pass  # a stale or damaged cache is rebuilt below
    index = build_index(loaded, images, labels, progress=progress, precision="auto")
    try:
        save_index(index, path)
    except OSError:
        pass  # a read-only folder: the index still works, it is just not cached
    return index, False


def crops(index: ExampleIndex, images: Tensor, branch: str, channel: int, count: int = 6) -> list[np.ndarray]:
    """The top images of ``channel`` (numbered within ``branch``), cropped around the peak."""
    module = branch.split(".")[0]
    c = index.slices[branch].start + channel
    side = index.resolution[module]
    out = []
    for image_index, position in zip(index.top_images[module][c][:count].tolist(), index.top_positions[module][c][:count].tolist()):
        image = images[image_index].permute(1, 2, 0).numpy()
        h, w = image.shape[:2]
        cy, cx = (position // side + 0.5) / side, (position % side + 0.5) / side
        half = max(4, int(min(h, w) * 0.3))
        y0 = int(np.clip(cy * h - half, 0, h - 2 * half))
        x0 = int(np.clip(cx * w - half, 0, w - 2 * half))
        out.append(image[y0 : y0 + 2 * half, x0 : x0 + 2 * half])
    return out
