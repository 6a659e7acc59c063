"""The microscope: what a channel or branch wants to see, which images excite it, and how the four
branches of each module differ.

* Feature visualization by activation maximisation, after Olah et al. 2017, "Feature
  Visualization" (https://distill.pub/2017/feature-visualization/): the image is parameterised
  in Fourier space with a 1/f spectrum scale and decorrelated colour (lucid's recipe), and each
  Adam step sees a randomly padded, jittered, scaled and rotated copy. Several channels are
  optimised at once as one batch; the forward pass stops at the target layer.
* Dataset examples: one pass over a reference set records, for every channel of every branch,
  the images (and the position) of its strongest responses.
* Branch specialization, after Voss et al. 2021, "Branch Specialization"
  (https://distill.pub/2020/circuits/branch-specialization/): per branch, the class selectivity
  index of its channels (Morcos et al. 2018, https://arxiv.org/abs/1803.06959)
  ``SI = (μ_max − μ_rest) / (μ_max + μ_rest)`` (``μ_max`` the highest class-conditional mean of
  the channel's spatially averaged activation, ``μ_rest`` the mean of the other classes' means;
  0: responds to all classes alike, 1: to one class only), and the share of the module's output
  energy ``Σ A²`` that the branch carries.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor

from googlenet.model import BRANCH_NAMES, BRANCHES, INCEPTION_MODULES
from googlenet.weights import INDEX_SUFFIX, Loaded, atomic_write, runs_dir

from .attributions import private_copy

__all__ = [
    "FourierImage",
    "Visualization",
    "visualize",
    "ExampleIndex",
    "build_index",
    "load_or_build_index",
    "selectivity_index",
    "specialization_figure",
    "gallery_figure",
    "Cancelled",
]

# lucid's colour correlation (square root of the ImageNet colour covariance, from its SVD)
_COLOR_SQRT = torch.tensor([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]])
_COLOR = _COLOR_SQRT / _COLOR_SQRT.norm(dim=0).max()


class Cancelled(RuntimeError):
    """A visualization stopped by its caller."""


class _Reached(Exception):
    """Raised by a hook to stop the forward pass once the target layer has run."""


class FourierImage(torch.nn.Module):
    """``batch`` RGB images parameterised as decorrelated-colour Fourier spectra.

    ``image = sigmoid(C · irfft2(scale ⊙ spectrum) / 4)`` with ``scale = 1 / max(|f|, 1/side)``
    (``decay_power=1``) times ``sqrt(h·w)``, and ``C`` lucid's normalised colour matrix. The
    1/f scale gives low frequencies a larger learning rate, which is what keeps the result
    free of high-frequency noise.
    """

    def __init__(self, batch: int, size: int, sd: float = 0.01, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.size = size
        fy = torch.fft.fftfreq(size)[:, None]
        fx = torch.fft.rfftfreq(size)[None, :]
        freqs = torch.sqrt(fx * fx + fy * fy)
        scale = 1.0 / torch.clamp(freqs, min=1.0 / size)
        self.register_buffer("scale", (scale * size)[None, None])  # sqrt(h·w) = size
        shape = (batch, 3, size, size // 2 + 1, 2)
        self.spectrum = torch.nn.Parameter(torch.randn(shape, generator=generator) * sd)

    def forward(self) -> Tensor:
        spectrum = torch.view_as_complex(self.spectrum) * self.scale
        raw = torch.fft.irfft2(spectrum, s=(self.size, self.size)) / 4.0
        colored = torch.einsum("ij,bjhw->bihw", _COLOR.to(raw.device), raw)
        return torch.sigmoid(colored)

    @torch.no_grad()
    def set_image(self, image: Tensor) -> None:
        """The parameters whose ``forward()`` gives ``image`` (B×3×S×S in (0, 1)): the inverse map."""
        colored = torch.logit(image.clamp(1e-4, 1 - 1e-4))
        raw = torch.einsum("ij,bjhw->bihw", torch.linalg.inv(_COLOR).to(image.device), colored) * 4.0
        spectrum = torch.fft.rfft2(raw) / self.scale
        self.spectrum.copy_(torch.view_as_real(spectrum))


def _transform(images: Tensor, generator: torch.Generator) -> Tensor:
    """lucid's standard transforms: pad 12 (grey), jitter 8, scale ±5 %, rotate ±10°, jitter 4."""

    def randint(low: int, high: int) -> int:
        return int(torch.randint(low, high + 1, (1,), generator=generator))

    x = F.pad(images, (12, 12, 12, 12), value=0.5)
    dx, dy = randint(0, 8), randint(0, 8)
    x = x[..., dy : x.shape[-2] - (8 - dy), dx : x.shape[-1] - (8 - dx)]
    factor = 1 + (randint(0, 10) - 5) / 50
    x = F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)
    angle = math.radians(randint(-10, 10))
    cos, sin = math.cos(angle), math.sin(angle)
    theta = torch.tensor([[cos, -sin, 0.0], [sin, cos, 0.0]], dtype=x.dtype, device=x.device).expand(x.shape[0], 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    dx, dy = randint(0, 4), randint(0, 4)
    return x[..., dy : x.shape[-2] - (4 - dy), dx : x.shape[-1] - (4 - dx)]


@dataclass(frozen=True)
class Visualization:
    """Images (N×S×S×3 uint8) that maximise ``targets`` of ``layer``, with the objective's history."""

    layer: str
    targets: tuple[int | None, ...]  # channel per image (None: the whole layer, or a class logit)
    images: np.ndarray
    objective: list[float]  # mean objective per step
    seconds: float


def visualize(
    loaded: Loaded,
    layer: str,
    channels: list[int | None],
    size: int = 128,
    steps: int = 128,
    lr: float = 0.05,
    seed: int = 0,
    progress: Callable[[float, str], None] | None = None,
    stop: threading.Event | None = None,
) -> Visualization:
    """Activation maximisation of several channels at once (one batch element per channel).

    Args:
        layer: a branch (``"inception4c.branch3"``), a module (``"inception4c"``) or ``"logits"``.
        channels: a channel index of ``layer`` per image; ``None`` maximises the mean over all of
            the layer's channels. For ``"logits"`` the index is a class.
        size, steps, lr: image side, Adam steps and learning rate (lucid's 0.05).
        seed: fixes the initial spectrum and every random transform (CPU runs repeat exactly).
        stop: set it to cancel; :class:`Cancelled` is raised within a step.
    """
    if not channels:
        raise ValueError("give at least one channel to visualise")
    model = loaded.model
    device = loaded.device
    if layer != "logits" and layer not in BRANCH_NAMES and layer not in INCEPTION_MODULES:
        raise ValueError(f"unknown layer {layer!r}: use a branch like 'inception4c.branch3', a module or 'logits'")
    generator = torch.Generator().manual_seed(seed)
    param = FourierImage(len(channels), size, generator=generator).to(device)
    optimizer = torch.optim.Adam(param.parameters(), lr=lr)
    mean = torch.tensor(loaded.mean, device=device).view(1, 3, 1, 1)
    std = torch.tensor(loaded.std, device=device).view(1, 3, 1, 1)
    captured: dict[str, Tensor] = {}

    def grab(_module, _inputs, output):
        captured["out"] = output
        raise _Reached

    handle = None if layer == "logits" else model.get_submodule(layer).register_forward_hook(grab)
    index = torch.arange(len(channels), device=device)
    picked = torch.tensor([c if c is not None else -1 for c in channels], device=device)
    history: list[float] = []
    started = time.perf_counter()
    was_training = model.training
    model.eval()
    try:
        for step in range(steps):
            if stop is not None and stop.is_set():
                raise Cancelled(f"stopped after {step} of {steps} steps")
            x = (_transform(param(), generator) - mean) / std
            try:
                out = model(x.contiguous(memory_format=torch.channels_last))
            except _Reached:
                out = captured.pop("out")
            if out.ndim == 4:  # B×C×H×W: mean over positions of the chosen channel
                per_channel = out.mean(dim=(2, 3))
            else:
                per_channel = out
            whole = per_channel.mean(1)
            chosen = per_channel[index, picked.clamp(min=0)]
            objective = torch.where(picked >= 0, chosen, whole)
            optimizer.zero_grad(set_to_none=True)
            (-objective.sum()).backward()
            optimizer.step()
            history.append(float(objective.detach().mean()))
            if progress is not None:
                progress((step + 1) / steps, f"feature visualization: step {step + 1}/{steps}")
    finally:
        if handle is not None:
            handle.remove()
        model.train(was_training)
    with torch.no_grad():
        images = (param().permute(0, 2, 3, 1).cpu().numpy() * 255).round().astype(np.uint8)
    return Visualization(layer, tuple(channels), images, history, time.perf_counter() - started)


# -- dataset examples and branch specialization ------------------------------------------------


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


def selectivity_index(class_means: Tensor) -> Tensor:
    """``(μ_max − μ_rest) / (μ_max + μ_rest)`` per channel from an n_classes × C table of means."""
    if class_means.shape[0] < 2:
        raise ValueError("selectivity needs at least two classes")
    means = class_means.clamp(min=0)  # post-ReLU activations; guards against rounding below 0
    top, _ = means.max(dim=0)
    rest = (means.sum(dim=0) - top) / (means.shape[0] - 1)
    return torch.where(top + rest > 0, (top - rest) / (top + rest), torch.zeros_like(top))


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
    from googlenet.train import amp_dtype

    from .explorer import Explorer

    started = time.perf_counter()
    explorer = Explorer(loaded, cache_size=0)
    model, device = loaded.model, loaded.device
    n, n_classes = len(images), len(loaded.classes)
    mean = torch.tensor(loaded.mean, device=device).view(1, 3, 1, 1)
    std = torch.tensor(loaded.std, device=device).view(1, 3, 1, 1)
    captured: dict[str, Tensor] = {}
    hooks = [model.get_submodule(m).register_forward_hook(lambda _m, _i, o, m=m: captured.__setitem__(m, o)) for m in INCEPTION_MODULES]
    maxima = {m: [] for m in INCEPTION_MODULES}
    positions = {m: [] for m in INCEPTION_MODULES}
    sums = {m: None for m in INCEPTION_MODULES}
    counts = torch.zeros(n_classes)
    energy_sums = {b: 0.0 for b in BRANCH_NAMES}
    resolution: dict[str, int] = {}
    predicted = []
    amp = amp_dtype(precision, device)
    try:
        for start in range(0, n, batch_size):
            x = images[start : start + batch_size].to(device).float().div_(255)
            if x.shape[-1] != loaded.input_size or x.shape[-2] != loaded.input_size:
                x = F.interpolate(x, size=(loaded.input_size,) * 2, mode="bilinear", align_corners=False, antialias=True)
            with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
                logits = model(((x - mean) / std).contiguous(memory_format=torch.channels_last))
            batch_labels = labels[start : start + batch_size] if labels is not None else logits.argmax(1).cpu()
            predicted.append(batch_labels)
            one_hot = F.one_hot(batch_labels.long(), n_classes).float()
            counts += one_hot.sum(0)
            for m in INCEPTION_MODULES:
                act = captured[m].float()
                flat = act.flatten(2)  # B×C×HW
                value, where = flat.max(dim=2)
                maxima[m].append(value.cpu())
                positions[m].append(where.cpu())
                resolution[m] = act.shape[-1]
                spatial_mean = flat.mean(dim=2).cpu()  # B×C
                sums[m] = one_hot.T @ spatial_mean + (sums[m] if sums[m] is not None else 0)
                squares = flat.pow(2).sum(dim=2).cpu()  # B×C
                total = squares.sum(1).clamp(min=1e-12)
                for b in BRANCHES:
                    part = explorer.slices[f"{m}.{b}"]
                    energy_sums[f"{m}.{b}"] += float((squares[:, part].sum(1) / total).sum())
            if progress is not None:
                progress(min(1.0, (start + batch_size) / n), f"indexing dataset examples: {min(n, start + batch_size)}/{n}")
    finally:
        for hook in hooks:
            hook.remove()
    k = min(k, n)
    top_images, top_values, top_positions, class_means = {}, {}, {}, {}
    for m in INCEPTION_MODULES:
        value = torch.cat(maxima[m])  # N×C
        where = torch.cat(positions[m])
        best = value.topk(k, dim=0)  # k×C
        top_images[m] = best.indices.T.contiguous()
        top_values[m] = best.values.T.contiguous()
        top_positions[m] = torch.gather(where, 0, best.indices).T.contiguous()
        class_means[m] = sums[m] / counts.clamp(min=1)[:, None]
    return ExampleIndex(
        top_images, top_values, top_positions, class_means,
        energy={b: v / n for b, v in energy_sums.items()}, resolution=resolution,
        labels_from="dataset labels" if labels is not None else "model predictions",
        fingerprint=_fingerprint(loaded, images), seconds=time.perf_counter() - started,
        slices=dict(explorer.slices),
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


def specialization_figure(index: ExampleIndex) -> go.Figure:
    """Per module (columns) and branch (rows): mean class selectivity and share of output energy."""
    selectivity = [[float(index.selectivity(f"{m}.{b}").mean()) for m in INCEPTION_MODULES] for b in BRANCHES]
    energy = [[index.energy[f"{m}.{b}"] for m in INCEPTION_MODULES] for b in BRANCHES]
    x = [m[9:] for m in INCEPTION_MODULES]
    data = [
        dict(type="heatmap", z=np.round(selectivity, 3), x=x, y=list(BRANCHES), colorscale="Viridis", zmin=0, zmax=1, texttemplate="%{z:.2f}",
             colorbar=dict(x=0.455, thickness=8, len=0.9), hovertemplate="inception%{x} %{y}<br>mean selectivity %{z:.3f}<extra></extra>"),
        dict(type="heatmap", z=np.round(energy, 3), x=x, y=list(BRANCHES), xaxis="x2", yaxis="y2", colorscale="Blues", zmin=0, zmax=1,
             texttemplate="%{z:.0%}", colorbar=dict(x=1.0, thickness=8, len=0.9), hovertemplate="inception%{x} %{y}<br>share of output energy %{z:.1%}<extra></extra>"),
    ]  # fmt: skip
    layout = dict(
        template="none",  # plotly's default template adds 6.5 KB of JSON to every figure
        xaxis=dict(domain=[0.07, 0.43]), yaxis=dict(autorange="reversed"),
        xaxis2=dict(domain=[0.58, 0.975], anchor="y2"), yaxis2=dict(autorange="reversed", anchor="x2", showticklabels=False),
        annotations=[
            dict(text="<b>class selectivity</b> (mean)", x=0.25, y=1.02, xref="paper", yref="paper", yanchor="bottom", showarrow=False),
            dict(text="<b>share of output energy</b> Σ A²", x=0.78, y=1.02, xref="paper", yref="paper", yanchor="bottom", showarrow=False),
        ],
        title=dict(text=f"Branch specialization over the reference set (classes from {index.labels_from})", x=0.5, y=0.98, font=dict(size=13)),
        height=300, margin=dict(l=70, r=30, t=70, b=30), paper_bgcolor="white",
    )  # fmt: skip
    return go.Figure(data=data, layout=layout)


def gallery_figure(rows: list[tuple[str, list[np.ndarray]]], tile: int = 64) -> go.Figure:
    """A grid of pictures: one row per (title, images), e.g. a channel's visualization and its examples."""
    from PIL import Image

    from .figures import _jpeg_uri

    cols = max(len(images) for _, images in rows) if rows else 1
    gap = 4
    sheet = Image.new("RGB", (cols * (tile + gap), len(rows) * (tile + gap)), (255, 255, 255))
    for r, (_, images) in enumerate(rows):
        for c, image in enumerate(images):
            sheet.paste(
                Image.fromarray(image).resize(
                    (tile, tile), Image.Resampling.NEAREST if image.shape[0] < tile else Image.Resampling.BILINEAR
                ),
                (c * (tile + gap), r * (tile + gap)),
            )
    data = [
        dict(type="image", source=_jpeg_uri(sheet), x0=0, y0=0, dx=1, dy=1, hoverinfo="skip"),
        dict(
            type="scatter",
            mode="text",
            x=[-4] * len(rows),
            y=[r * (tile + gap) + tile / 2 for r in range(len(rows))],
            text=[title for title, _ in rows],
            textposition="middle left",
            hoverinfo="skip",
        ),
    ]
    layout = dict(
        template="none",  # plotly's default template adds 6.5 KB of JSON to every figure
        xaxis=dict(visible=False, range=[-150, sheet.width], fixedrange=True), yaxis=dict(visible=False, range=[sheet.height, -4], scaleanchor="x", fixedrange=True),
        height=min(900, 40 + len(rows) * (tile + gap) * 1.3), margin=dict(l=4, r=4, t=30, b=4), paper_bgcolor="white", plot_bgcolor="white", showlegend=False,
    )  # fmt: skip
    return go.Figure(data=data, layout=layout)


def bench(device: torch.device, data: str) -> int:
    """``python -m explain.bench --featureviz``: seconds per channel and indexing time."""
    from googlenet.data import read_cifar10
    from googlenet.model import GoogLeNet
    from googlenet.train import amp_dtype
    from googlenet.weights import CIFAR10_CLASSES, CIFAR10_MEAN, CIFAR10_STD, load_model, prepare_for_inference

    loaded = load_model("random", device=device)  # full-width ImageNet architecture
    result = visualize(loaded, "inception4c.branch2", list(range(8)), size=128, steps=128)
    per_channel = result.seconds / 8
    print(f"featureviz_seconds_8_channels={result.seconds:.1f}  (inception4c.branch2, 128×128, 128 Adam steps, full width)")
    gain = result.objective[-1] / max(abs(result.objective[0]), 1e-9)
    print(f"featureviz_objective_first={result.objective[0]:.3f} last={result.objective[-1]:.3f} (×{gain:.1f})")
    cifar = read_cifar10(data)
    torch.manual_seed(0)
    model = GoogLeNet(num_classes=10, stem="cifar", width=1.0)
    full = Loaded(
        prepare_for_inference(model, device), CIFAR10_CLASSES, CIFAR10_MEAN, CIFAR10_STD, 32, 32,
        "full-width CIFAR GoogLeNet", "random", (), device, model.config,
    )  # fmt: skip
    what = f"{len(cifar.test_labels)} CIFAR test images, full-width CIFAR-stem model, every channel of all 36 branches"
    exact = build_index(full, cifar.test_images, cifar.test_labels, precision="fp32")
    print(f"index_seconds_fp32={exact.seconds:.1f}  ({what})")
    index = build_index(full, cifar.test_images, cifar.test_labels, precision="auto")  # what the Microscope runs
    amp = amp_dtype("auto", device)
    print(f"index_seconds={index.seconds:.1f}  ({what}, {'bf16 autocast' if amp is not None else 'float32'}, as the Microscope runs it)")
    print(f"seconds_per_channel={per_channel:.2f}")
    return 0


# -- the microscope an app holds per model -------------------------------------------------------


class Microscope:
    """Feature visualizations, dataset examples and specialization for one model, cached.

    The reference set is the CIFAR-10 test batch for CIFAR models (from ``data_dir``) and, for
    other models, the example photos in ``assets/examples/photos`` plus any images in
    ``data_dir/reference/`` (a folder the operator chooses).
    """

    def __init__(self, loaded: Loaded, data_dir: str | Path, viz_size: int | None = None, steps: int = 128) -> None:
        # its own copy of the model: the forward hooks below must not meet other threads' passes
        self.loaded = replace(loaded, model=private_copy(loaded.model))
        self.data_dir = Path(data_dir)
        self.viz_size = viz_size or (64 if loaded.input_size <= 64 else 128)
        self.steps = steps
        self._lock = threading.Lock()
        self._index: ExampleIndex | None = None
        self._reference: tuple[Tensor, Tensor | None, str] | None = None
        self._viz: dict[tuple, np.ndarray] = {}

    def reference(self) -> tuple[Tensor, Tensor | None, str]:
        if self._reference is None:
            self._reference = reference_set(self.loaded, self.data_dir)
        return self._reference

    def index(self, progress=None) -> ExampleIndex:
        with self._lock:
            if self._index is None:
                images, labels, _ = self.reference()
                self._index, _ = load_or_build_index(self.loaded, images, labels, progress)
            return self._index

    def visualizations(self, layer: str, channels: list[int | None], progress=None, stop=None) -> list[np.ndarray]:
        """One image per channel; computed together for the channels not cached yet."""
        missing = [c for c in channels if (layer, c) not in self._viz]
        if missing:
            result = visualize(self.loaded, layer, missing, self.viz_size, self.steps, progress=progress, stop=stop)
            for c, image in zip(missing, result.images):
                self._viz[(layer, c)] = image
            while len(self._viz) > 256:
                self._viz.pop(next(iter(self._viz)))
        return [self._viz[(layer, c)] for c in channels]

    def branch_view(self, branch: str, channels: list[int], progress=None, stop=None) -> go.Figure:
        """Per channel: what maximises it, then its strongest dataset examples (cropped at the peak)."""
        index = self.index(lambda f, m: progress(0.3 * f, m) if progress else None)
        images, _, description = self.reference()
        pictures = self.visualizations(branch, channels, (lambda f, m: progress(0.3 + 0.7 * f, m)) if progress else None, stop)
        rows = []
        for channel, picture in zip(channels, pictures):
            examples = crops(index, images, branch, channel, count=5)
            rows.append((f"ch {channel}", [picture, *examples]))
        figure = gallery_figure(rows)
        figure.update_layout(
            title=dict(text=f"{branch}: feature visualization, then top examples from {description}", x=0.5, font=dict(size=13))
        )
        return figure

    def module_gallery(self, module: str, per_branch: int = 4, progress=None, stop=None) -> go.Figure:
        """Each branch of ``module``: its whole-branch visualization and its most active channels."""
        index = self.index(lambda f, m: progress(0.2 * f, m) if progress else None)
        rows = []
        for b, branch in enumerate(BRANCHES):
            name = f"{module}.{branch}"
            part = index.slices[name]
            strongest = index.top_values[module][part, 0].argsort(descending=True)[:per_branch].tolist()
            report = (lambda f, m, b=b: progress(0.2 + 0.8 * (b + f) / 4, m)) if progress else None
            pictures = self.visualizations(name, [None, *strongest], report, stop)
            rows.append((f"{branch} (all, ch {', '.join(map(str, strongest))})", pictures))
        figure = gallery_figure(rows)
        figure.update_layout(title=dict(text=f"{module}: each branch as a whole, then its strongest channels", x=0.5, font=dict(size=13)))
        return figure


def reference_set(loaded: Loaded, data_dir: Path) -> tuple[Tensor, Tensor | None, str]:
    """(images N×3×S×S uint8, labels or None, description) for indexing dataset examples."""
    from googlenet.data import DataError, read_cifar10
    from googlenet.weights import CIFAR10_CLASSES

    from .images import ImageError, load_image, prepare

    if tuple(loaded.classes) == CIFAR10_CLASSES:
        try:
            cifar = read_cifar10(data_dir)
            return cifar.test_images, cifar.test_labels, f"the CIFAR-10 test batch ({len(cifar.test_labels)} images)"
        except DataError as error:
            raise ValueError(f"dataset examples need the CIFAR-10 test batch: {error}") from None
    folders = [Path(__file__).resolve().parent.parent / "assets" / "examples" / "photos", data_dir / "reference"]
    pictures = []
    for folder in folders:
        for path in sorted(folder.glob("*")) if folder.is_dir() else []:
            try:
                _, shown = prepare(load_image(path), loaded.input_size, loaded.resize_size, loaded.mean, loaded.std, torch.device("cpu"))
            except ImageError:
                continue
            pictures.append(torch.from_numpy(shown).permute(2, 0, 1))
    if not pictures:
        raise ValueError("no reference images: add some to <data>/reference/")
    return torch.stack(pictures), None, f"{len(pictures)} reference photos"
