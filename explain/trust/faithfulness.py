"""Does the map point at what the model uses? Deletion and insertion curves (Petsiuk et al.,
RISE, BMVC 2018) and ROAD (Rong et al., ICML 2022) of a relevance map, against random maps and a
centred blob, all in batched forward passes. :func:`explain.trust.report.trust_report` runs them as the
second of its three questions and picks the random map each method is held against.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from explain.trust.metrics import ROAD_NOISE, gaussian_blur, impute_linear, perturbation_batch, removal_ranks, step_counts, trapezoid_auc

__all__ = [
    "BASELINES",
    "BASELINE_NAMES",
    "RANDOM_DRAWS",
    "RANDOM_DRAWS_LARGE",
    "ROAD_FRACTIONS",
    "Curve",
    "RoadCurves",
    "Faithfulness",
    "baseline_maps",
    "image_seed",
    "perturbation_curves",
    "road_curves",
    "faithfulness",
    "probabilities",
    "forward_chunk",
]

# A random map is a distribution, so a map is held against the mean curve of several: one draw's
# deletion AUC varies from draw to draw by a standard deviation of 0.08 for 8×8 random regions and
# 0.02 for per-pixel noise (median over 20 CIFAR test images, bundled model, 4 draws), as large as
# the gaps being judged; the mean of 8 draws varies by 1/√8 of that. Each draw adds 2×66 images to
# a report: 8 draws take the bundled model's Grad-CAM report from 1.0 to 3.4 s at 32 px, but a
# full-width one at 224 px from 6 to 26 s, so inputs above 64×64 draw 2 by default.
RANDOM_DRAWS = 8
RANDOM_DRAWS_LARGE = 2
ROAD_FRACTIONS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)  # the ROAD paper's removal levels
BASELINES = ("random", "random_regions", "centre")
BASELINE_NAMES = {"random": "random pixels", "random_regions": "random regions", "centre": "centre blob"}


@dataclass(frozen=True)
class Curve:
    """Target probability against the fraction of pixels deleted or inserted, and its area."""

    label: str  # "map" | "random" | "random_regions" | "centre"
    kind: str  # "deletion" | "insertion"
    fractions: Tensor
    scores: Tensor
    auc: float


@dataclass(frozen=True)
class RoadCurves:
    """ROAD for one map: the target probability after imputing each fraction of pixels."""

    label: str
    fractions: Tensor
    morf: Tensor  # most relevant first: lower is better
    lerf: Tensor  # least relevant first: higher is better

    @property
    def morf_mean(self) -> float:
        return float(self.morf.mean())

    @property
    def lerf_mean(self) -> float:
        return float(self.lerf.mean())

    @property
    def score(self) -> float:
        """``(LeRF − MoRF) / 2`` averaged over fractions, pytorch-grad-cam's ROADCombined: higher is better."""
        return (self.lerf_mean - self.morf_mean) / 2


@dataclass(frozen=True)
class Faithfulness:
    deletion: dict[str, Curve]  # "map" and the BASELINES
    insertion: dict[str, Curve]
    road: dict[str, RoadCurves] | None
    base_probability: float
    fill: str
    blur_sigma: float
    random_baseline: str = "random"  # the baseline of the map's own resolution (see explain.trust.report.random_baseline)
    grid: tuple[int, int] = (1, 1)  # the random regions' grid: the Grad-CAM layer's output size
    random_draws: int = 1  # random maps per baseline whose curves are averaged

    def beats_random(self, kind: str = "deletion") -> bool:
        """Whether the map's curve beats its own-resolution random map's (lower deletion, higher insertion)."""
        curves = self.deletion if kind == "deletion" else self.insertion
        mine, theirs = curves["map"].auc, curves[self.random_baseline].auc
        return mine < theirs if kind == "deletion" else mine > theirs


@torch.inference_mode()
def probabilities(model: nn.Module, batch: Tensor, target: int, chunk: int) -> Tensor:
    out = [model(part.contiguous(memory_format=torch.channels_last)).float().softmax(1)[:, target] for part in batch.split(chunk)]
    return torch.cat(out).cpu()


def forward_chunk(x: Tensor) -> int:
    # 64 CIFAR images (32 px) per forward; at 224 px 8 keep a full-width pass under ~1 GB
    return max(8, 64 * 32 * 32 // (x.shape[-1] * x.shape[-2]))


def baseline_maps(size: tuple[int, int], seed: int, grid: tuple[int, int] | None = None, draws: int = 1) -> dict[str, Tensor]:
    """Maps that know nothing of the model: ``draws`` maps of uniform noise per pixel
    (``random``, draws×H×W), as many of uniform noise on ``grid`` upsampled bilinearly as
    Grad-CAM's map is (``random_regions``; default grid: the pixels), and a centred Gaussian
    (``centre``, H×W, σ = side / 4).

    Why two random maps: see :func:`explain.trust.report.random_baseline`. Deleting scattered pixels wrecks a 32-px
    picture faster than deleting any contiguous region, so a smooth map is held against random
    values of its own resolution, and a per-pixel map against per-pixel ones.
    """
    h, w = size
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    sigma = min(h, w) / 4
    centre = torch.exp(-(((yy - (h - 1) / 2) ** 2 + (xx - (w - 1) / 2) ** 2) / (2 * sigma**2)))
    generator = torch.Generator().manual_seed(seed)
    noise, regions = [], []
    for _ in range(draws):
        noise.append(torch.rand(h, w, generator=generator))
        coarse = torch.rand(1, 1, *(grid or size), generator=generator)
        regions.append(F.interpolate(coarse, size=size, mode="bilinear", align_corners=False)[0, 0])
    return {"random": torch.stack(noise), "random_regions": torch.stack(regions), "centre": centre}


def perturbation_curves(
    model: nn.Module,
    x: Tensor,
    target: int,
    maps: dict[str, Tensor],
    steps: int = 32,
    blur_sigma: float | None = None,
    seed: int = 0,
) -> tuple[dict[str, Curve], dict[str, Curve], float]:
    """Deletion and insertion curves of each map in ``maps`` for ``model``'s class ``target``.

    A map is H×W, or D×H×W for D draws of a random map, whose curves are averaged (the expected
    curve of a random ordering). Deletion replaces pixels (all channels) with 0, the mean colour
    after normalisation, most relevant first; insertion puts them back into a copy blurred by
    ``blur_sigma`` pixels (default ``input size / 16``). Each curve has ``steps + 1`` points from
    0 to all pixels; each map's two curves run as one batch. Returns (deletion, insertion, the
    blur used).
    """
    h, w = x.shape[-2:]
    generator = torch.Generator().manual_seed(seed + 1)
    counts = step_counts(h * w, steps)
    fractions = counts.double() / (h * w)
    sigma = blur_sigma if blur_sigma is not None else max(1.0, min(h, w) / 16)
    image = x.float()
    blurred = gaussian_blur(image, sigma)
    fill = torch.zeros(1, x.shape[1], 1, 1, device=x.device)
    deletion, insertion = {}, {}
    for label, stack in maps.items():
        draws = stack.reshape(-1, h, w)
        total = torch.zeros(2, len(counts))
        for m in draws:  # one draw at a time: at 224 px its 66 pictures take 40 MB
            ranks = removal_ranks(m, generator)
            batch = torch.cat([perturbation_batch(image, ranks, counts, fill), perturbation_batch(blurred, ranks, counts, image)])
            total += probabilities(model, batch, target, forward_chunk(x)).view(2, len(counts))
        scores = total / len(draws)
        deletion[label] = Curve(label, "deletion", fractions.float(), scores[0], trapezoid_auc(fractions, scores[0]))
        insertion[label] = Curve(label, "insertion", fractions.float(), scores[1], trapezoid_auc(fractions, scores[1]))
    return deletion, insertion, sigma


def road_curves(
    model: nn.Module,
    x: Tensor,
    target: int,
    maps: dict[str, Tensor],
    fractions: Sequence[float] = ROAD_FRACTIONS,
    noise: float = ROAD_NOISE,
    seed: int = 0,
) -> dict[str, RoadCurves]:
    """ROAD of each map: p(target) after imputing the ``round(f·H·W)`` most (MoRF) and least (LeRF)
    relevant pixels for each fraction ``f``, by noisy linear imputation (one batched solve)."""
    h, w = x.shape[-2:]
    generator = torch.Generator().manual_seed(seed + 1)
    counts = torch.tensor([round(f * h * w) for f in fractions])
    if int(counts.max()) >= h * w or int(counts.min()) < 1:
        raise ValueError(f"ROAD fractions must leave at least one pixel and remove at least one, got {list(fractions)}")
    masks = []
    for m in maps.values():
        r = removal_ranks(m, generator).to(x.device)
        masks.append(r.unsqueeze(0) < counts.view(-1, 1, 1).to(x.device))  # most relevant first
        masks.append(r.unsqueeze(0) >= (h * w - counts).view(-1, 1, 1).to(x.device))  # least relevant first
    remove = torch.cat(masks)
    images = x.float().expand(len(remove), -1, -1, -1)
    imputed = impute_linear(images, remove, noise=noise, generator=torch.Generator().manual_seed(seed + 2))
    scores = probabilities(model, imputed, target, forward_chunk(x)).split(len(counts))
    f = torch.tensor(list(fractions), dtype=torch.float32)
    return {label: RoadCurves(label, f, scores[2 * i], scores[2 * i + 1]) for i, label in enumerate(maps)}


def image_seed(x: Tensor, seed: int) -> int:
    """A seed for this picture's random maps: from its pixels and ``seed``. The same picture gets the
    same maps (reproducible reports), different pictures independent ones (one fixed set of maps
    for every picture would bias a count over pictures the same way on each)."""
    digest = hashlib.sha256(x.detach().float().cpu().contiguous().numpy().tobytes() + seed.to_bytes(8, "little", signed=True))
    return int.from_bytes(digest.digest()[:7], "little")


def faithfulness(
    model: nn.Module,
    x: Tensor,
    target: int,
    relevance: Tensor,
    *,
    baseline: str,
    grid: tuple[int, int],
    draws: int | None = None,
    steps: int = 32,
    blur_sigma: float | None = None,
    seed: int = 0,
    road: bool = True,
    step: Callable[[str], None] = lambda message: None,
) -> Faithfulness:
    """Deletion and insertion curves (and ROAD) of ``relevance`` and of the baseline maps, each
    random one the mean of ``draws`` drawn for this picture; ``baseline`` names the random map the
    relevance is held against (see ``explain.trust.report.random_baseline``), ``grid`` the random regions'
    grid; ``draws`` defaults to :data:`RANDOM_DRAWS`, :data:`RANDOM_DRAWS_LARGE` above 64×64 px.
    ``step`` is told when each part is done."""
    if draws is None:
        draws = RANDOM_DRAWS if x.shape[-1] * x.shape[-2] <= 64 * 64 else RANDOM_DRAWS_LARGE
    maps = {"map": relevance} | baseline_maps(tuple(x.shape[-2:]), image_seed(x, seed), grid, draws)
    deletion, insertion, sigma = perturbation_curves(model, x, target, maps, steps, blur_sigma, seed)
    step("deletion and insertion")
    # ROAD against the first draw only: its imputation is the costly part (~2 min a map at 224 px)
    first = {label: m.reshape(-1, *m.shape[-2:])[0] for label, m in maps.items()}
    curves = road_curves(model, x, target, first, seed=seed) if road else None
    step("ROAD" if road else "ROAD skipped")
    return Faithfulness(
        deletion=deletion,
        insertion=insertion,
        road=curves,
        base_probability=float(deletion["map"].scores[0]),
        fill="mean colour (0 after normalisation)",
        blur_sigma=sigma,
        random_baseline=baseline,
        grid=grid,
        random_draws=draws,
    )
