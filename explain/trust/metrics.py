"""The numbers behind "Can I trust this map?", in torch and on batches (no scipy at run time).

* :func:`spearman`: Spearman rank correlation with average ranks for ties (Guided Grad-CAM and
  Grad-CAM maps have plateaus of exact zeros), i.e. Pearson's r of the ranks.
* :func:`ssim`: the structural similarity of Wang et al. 2004 on two H×W maps in [0, 1]: an
  11×11 Gaussian window (σ = 1.5), ``C1 = 0.01²``, ``C2 = 0.03²``, averaged over the positions
  where the window fits (skimage's ``structural_similarity(gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False, data_range=1)``, which the tests check against).
* :func:`perturbation_curve`: deletion and insertion (Petsiuk et al., RISE, BMVC 2018,
  https://arxiv.org/abs/1806.07421): pixels are removed (replaced by ``fill``) or inserted (into
  a blurred copy) in the order of a relevance map, every step of the curve in one batch.
* :func:`impute_linear`: ROAD's noisy linear imputation (Rong et al., ICML 2022,
  https://arxiv.org/abs/2202.00449): each removed pixel becomes the weighted mean of its 8
  neighbours (1/6 sideways, 1/12 diagonally), a sparse linear system solved here by conjugate
  gradients on a batch, then Gaussian noise is added.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "average_ranks",
    "spearman",
    "ssim",
    "unit_range",
    "gaussian_blur",
    "removal_ranks",
    "step_counts",
    "perturbation_batch",
    "trapezoid_auc",
    "impute_linear",
]

SSIM_SIGMA = 1.5
SSIM_RADIUS = 5  # int(3.5 σ + 0.5), scipy's truncation at 3.5 σ as skimage uses it: an 11×11 window
ROAD_NOISE = 0.01  # the ROAD paper's noise, added in the model's (normalised) input units


def average_ranks(values: Tensor) -> Tensor:
    """1-D ranks starting at 1; tied values share the mean of their ranks (scipy's ``rankdata``)."""
    unique, inverse, counts = torch.unique(values, sorted=True, return_inverse=True, return_counts=True)
    ends = counts.cumsum(0).to(torch.float64)
    return (ends - (counts - 1) / 2.0)[inverse]


def spearman(a: Tensor, b: Tensor) -> float:
    """Spearman's ρ of two maps of any shape (flattened); NaN when either is constant."""
    if a.numel() != b.numel():
        raise ValueError(f"maps of {a.numel()} and {b.numel()} values cannot be compared")
    ra = average_ranks(a.detach().reshape(-1).double().cpu())
    rb = average_ranks(b.detach().reshape(-1).double().cpu())
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denominator = float(ra.norm() * rb.norm())
    if denominator == 0.0:
        return math.nan
    return float((ra * rb).sum()) / denominator


def unit_range(m: Tensor) -> Tensor:
    """``(m − min) / (max − min)``; a constant map becomes zeros."""
    m = m.detach().float()
    low, high = m.min(), m.max()
    span = float(high - low)
    return (m - low) / span if span > 0 else torch.zeros_like(m)


def _gaussian_kernel(sigma: float, radius: int, dtype=torch.float64) -> Tensor:
    x = torch.arange(-radius, radius + 1, dtype=dtype)
    kernel = torch.exp(-(x**2) / (2 * sigma**2))
    return kernel / kernel.sum()


def ssim(a: Tensor, b: Tensor, sigma: float = SSIM_SIGMA, radius: int = SSIM_RADIUS) -> float:
    """Mean SSIM of two H×W maps already in [0, 1] (see the module docstring)."""
    if a.shape != b.shape or a.dim() != 2:
        raise ValueError(f"ssim needs two H×W maps of one shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    if min(a.shape) < 2 * radius + 1:
        raise ValueError(f"maps of {tuple(a.shape)} are smaller than the {2 * radius + 1}×{2 * radius + 1} SSIM window")
    g = _gaussian_kernel(sigma, radius)
    # The window only at positions where it fits: skimage crops the same border after filtering.
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    stack = torch.stack([a, b, a * a, b * b, a * b]).unsqueeze(1)  # 5×1×H×W
    blurred = F.conv2d(F.conv2d(stack, g.view(1, 1, -1, 1)), g.view(1, 1, 1, -1))[:, 0]
    mu_a, mu_b, aa, bb, ab = blurred
    var_a, var_b, cov = aa - mu_a**2, bb - mu_b**2, ab - mu_a * mu_b
    c1, c2 = 0.01**2, 0.03**2  # K1, K2 of Wang et al. with a data range of 1
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return float(s.mean())


def gaussian_blur(x: Tensor, sigma: float) -> Tensor:
    """Blur N×C×H×W images channel by channel (reflected borders, radius 3σ)."""
    radius = max(1, min(int(3 * sigma + 0.5), x.shape[-1] - 1, x.shape[-2] - 1))
    g = _gaussian_kernel(sigma, radius, x.dtype).to(x.device)
    n, c, h, w = x.shape
    flat = x.reshape(n * c, 1, h, w)
    flat = F.conv2d(F.pad(flat, (0, 0, radius, radius), mode="reflect"), g.view(1, 1, -1, 1))
    flat = F.conv2d(F.pad(flat, (radius, radius, 0, 0), mode="reflect"), g.view(1, 1, 1, -1))
    return flat.reshape(n, c, h, w)


def removal_ranks(relevance: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Rank of each pixel of an H×W map, 0 for the most relevant; ties in random order.

    Occlusion maps come in plateaus (one value per window position) and Grad-CAM in exact zeros:
    a fixed tie order would remove pixels row by row, which tests the scan order, not the map.
    """
    flat = relevance.detach().reshape(-1).float().cpu()
    shuffle = torch.randperm(flat.numel(), generator=generator)
    order = shuffle[torch.argsort(flat[shuffle], descending=True, stable=True)]
    ranks = torch.empty_like(order)
    ranks[order] = torch.arange(order.numel())
    return ranks.reshape(relevance.shape)


def step_counts(pixels: int, steps: int) -> Tensor:
    """How many pixels are perturbed at each of ``steps + 1`` points, 0 … all, evenly spaced."""
    return torch.round(torch.arange(steps + 1, dtype=torch.float64) * pixels / steps).long()


def perturbation_batch(x: Tensor, ranks: Tensor, counts: Tensor, replacement: Tensor) -> Tensor:
    """``len(counts)`` copies of ``x`` (1×C×H×W) with the first ``counts[k]`` pixels by rank taken
    from ``replacement`` (1×C×H×W or C×1×1).

    Deletion: ``replacement`` = the fill value, in relevance order. Insertion: ``x`` = the blurred
    image and ``replacement`` = the real one.
    """
    mask = (ranks.to(x.device).reshape(1, 1, *ranks.shape) < counts.to(x.device).view(-1, 1, 1, 1)).to(x.dtype)
    return x * (1 - mask) + replacement.to(x.dtype) * mask


def trapezoid_auc(fractions: Tensor, scores: Tensor) -> float:
    """Area under ``scores`` over ``fractions`` (0 … 1) by the trapezoid rule."""
    return float(torch.trapezoid(scores.double().cpu(), fractions.double().cpu()))


# -- ROAD ------------------------------------------------------------------------------------


def impute_linear(
    x: Tensor,
    remove: Tensor,
    noise: float = ROAD_NOISE,
    generator: torch.Generator | None = None,
    rtol: float = 1e-3,
    max_iterations: int = 200,
) -> Tensor:
    """ROAD's noisy linear imputation of the pixels ``remove`` marks.

    Args:
        x: N×C×H×W images.
        remove: N×H×W (or H×W for all) booleans, true where a pixel is to be imputed.
        noise: standard deviation of the Gaussian noise added to imputed values (0: none).
        rtol: stop when every system's residual norm is below ``rtol`` × its right-hand side's;
            1e-3 leaves imputed values within about 1e-3 of the exact solve at 32 and 224 px,
            ten times below the noise ROAD adds.

    For an imputed pixel ``i`` with in-image neighbours ``j`` of weight ``w_ij``:
    ``(Σ_j w_ij) x_i − Σ_{j imputed} w_ij x_j = Σ_{j kept} w_ij x_j``. The matrix is the weighted
    graph Laplacian restricted to the imputed pixels: symmetric and positive definite whenever
    some pixel is kept, so conjugate gradients converge; a multigrid V-cycle as preconditioner
    keeps the iterations at about 10 at any size (see :func:`_solve_harmonic`).
    """
    if x.dim() != 4:
        raise ValueError(f"impute_linear needs N×C×H×W images, got {tuple(x.shape)}")
    n, c, h, w = x.shape
    remove = remove.to(device=x.device, dtype=torch.bool).expand(n, h, w)
    if bool(remove.all(dim=(1, 2)).any()):
        raise ValueError("cannot impute an image with every pixel removed: nothing to interpolate from")
    dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    values = x.to(dtype)
    unknown = remove.to(dtype).unsqueeze(1).expand(n, c, h, w).reshape(n * c, 1, h, w)
    solved = _solve_harmonic(values.reshape(n * c, 1, h, w), unknown, rtol, max_iterations)
    if noise > 0:
        solved = solved + unknown * noise * torch.randn(solved.shape, generator=generator, dtype=dtype).to(x.device)
    return solved.reshape(n, c, h, w).to(x.dtype)


def _neighbours(z: Tensor) -> Tensor:
    """``Σ_j w_ij z_j`` over the 8 neighbours (zero outside the image): the kernel is
    ``[1, 2, 1]ᵀ[1, 2, 1] / 12`` without its centre, done as two 1-D passes, which is several times
    faster on a CPU than a one-channel ``conv2d``."""
    p = F.pad(z, (1, 1, 1, 1))
    v = p[..., :-2, :] + 2 * p[..., 1:-1, :] + p[..., 2:, :]
    return (v[..., :-2] + 2 * v[..., 1:-1] + v[..., 2:] - 4 * z) / 12


def _solve_harmonic(values: Tensor, unknown: Tensor, rtol: float, max_iterations: int) -> Tensor:
    """``values`` with the ``unknown`` pixels replaced by the solution of the ROAD system.

    Conjugate gradients preconditioned by one multigrid V-cycle (damped Jacobi smoothing, sum
    restriction, piecewise-constant prolongation): about 10 iterations whatever the image size,
    where Jacobi-preconditioned CG needed several hundred for a 90 % hole at 224×224.
    """
    known = 1 - unknown
    levels = _levels(unknown)
    a = levels[0]
    rhs = unknown * _neighbours(known * values)
    z = torch.zeros_like(values)
    residual = rhs.clone()
    scale = rhs.flatten(1).norm(dim=1).clamp_min(1e-12)
    p = y = _vcycle(residual, levels, 0)
    rz = (residual * y).flatten(1).sum(1)
    for _ in range(max_iterations):
        if bool((residual.flatten(1).norm(dim=1) <= rtol * scale).all()):
            break
        q = _apply(p, a)
        pq = (p * q).flatten(1).sum(1)
        alpha = torch.where(pq > 0, rz / pq.clamp_min(1e-30), torch.zeros_like(pq)).view(-1, 1, 1, 1)
        z = z + alpha * p
        residual = residual - alpha * q
        y = _vcycle(residual, levels, 0)
        rz_next = (residual * y).flatten(1).sum(1)
        beta = torch.where(rz > 0, rz_next / rz.clamp_min(1e-30), torch.zeros_like(rz)).view(-1, 1, 1, 1)
        p = y + beta * p
        rz = rz_next
    return known * values + unknown * z


_OMEGA = 0.8  # damped Jacobi: the diagonal is the neighbours' total weight, off-diagonals sum to it at most
_SWEEPS = 2


def _levels(unknown: Tensor) -> list[tuple[Tensor, Tensor]]:
    """(unknown mask, 1 / diagonal) from fine to coarse; a coarse cell is unknown if any of its pixels is."""
    levels = []
    while True:
        h, w = unknown.shape[-2:]
        degree = _neighbours(torch.ones(1, 1, h, w, dtype=unknown.dtype, device=unknown.device))
        levels.append((unknown, 1 / degree))
        if min(h, w) <= 4:
            return levels
        unknown = F.max_pool2d(unknown, 2, ceil_mode=True)


def _apply(v: Tensor, level: tuple[Tensor, Tensor]) -> Tensor:
    unknown, inverse_degree = level
    return unknown * (v / inverse_degree - _neighbours(unknown * v))


def _vcycle(r: Tensor, levels: list[tuple[Tensor, Tensor]], depth: int) -> Tensor:
    """An approximate solve of ``A e = r`` on the imputed pixels (symmetric, so CG may use it)."""
    level = levels[depth]
    unknown, inverse_degree = level
    sweeps = _SWEEPS if depth + 1 < len(levels) else 8  # the ≤4×4 coarsest grid: a few more sweeps stand in for a solve
    e = _OMEGA * unknown * r * inverse_degree
    for _ in range(sweeps - 1):
        e = e + _OMEGA * unknown * (r - _apply(e, level)) * inverse_degree
    if depth + 1 < len(levels):
        h, w = r.shape[-2:]
        coarse = F.avg_pool2d(r - _apply(e, level), 2, ceil_mode=True, divisor_override=1)  # sum: the transpose of the prolongation
        correction = _vcycle(coarse * levels[depth + 1][0], levels, depth + 1)
        e = e + unknown * F.interpolate(correction, scale_factor=2, mode="nearest")[..., :h, :w]
    for _ in range(sweeps):
        e = e + _OMEGA * unknown * (r - _apply(e, level)) * inverse_degree
    return e
