"""Can I trust this map? Sanity checks and faithfulness scores for an input attribution.

Three questions, each answered on a private copy of the model (the shared one keeps serving):

1. **Does the map depend on what the model learned?** The model-parameter randomisation test of
   Adebayo et al., "Sanity Checks for Saliency Maps" (NeurIPS 2018,
   https://arxiv.org/abs/1810.03292). Layers are re-initialised from the top (``fc``,
   ``inception5b`` … ``conv1``), cascading (each step keeps the earlier ones random) and
   independently (one layer at a time). After each step the map is compared with the original
   one: Spearman's ρ of the absolute maps (``Σ_c |a_c|``) and of the signed maps (``Σ_c a_c``),
   and SSIM of the absolute maps scaled to [0, 1]. A map that stays similar after the whole
   network is random cannot be explaining the model. **Verdict**: after full cascading
   randomisation, ρ(|map|) < :data:`CHANGED_BELOW` passes, ≥ :data:`UNCHANGED_FROM` fails, in
   between is "partly". Adebayo et al. found Guided Backprop and Guided Grad-CAM fail and
   gradients and Grad-CAM pass; :func:`trust_report` reproduces that ordering on the bundled model.
2. **Does the map point at what the model uses?** Deletion and insertion curves (Petsiuk et al.,
   RISE, BMVC 2018): the target's softmax probability as the most relevant pixels are deleted
   (set to the mean colour, 0 after normalisation) or inserted into a blurred copy; the area
   under each curve, against the same curve for random maps and for a centred Gaussian blob.
   Each map is held against a random map of its own resolution (:func:`random_baseline`):
   per-pixel noise for the per-pixel methods, noise on the layer's grid for Grad-CAM.
   ROAD (Rong et al., ICML 2022) does the same with noisy linear imputation instead of a
   constant, most-relevant-first (MoRF, lower is better) and least-relevant-first (LeRF, higher).
3. **Does the cheap branch estimate hold?** Each of the 36 branches' first-order contribution
   ``Σ ∂y/∂A ⊙ A`` (what the atlas corners show) against the measured drop of the target logit
   when the branch is zeroed, and the same for the 9 modules: Spearman's ρ over the points.

The data-randomisation test (Adebayo's second) needs a model trained on permuted labels:
``python -m googlenet train --shuffle-labels``; :func:`compare_models` compares a method's maps
on two models and :func:`shuffled_label_runs` finds such runs.

``python -m explain.trust IMAGE --model SOURCE --method NAME --json OUT`` runs it all. The
curves of question 2 live in :mod:`explain.trust.faithfulness`, the metrics in
:mod:`explain.trust.metrics`.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from captum.attr import GuidedGradCam, IntegratedGradients, LayerGradCam, Occlusion, Saliency
from torch import Tensor, nn

from explain.attributions import DEFAULTS, Method
from explain.cams import CamMethod, layer_cams
from explain.explorer import Explorer, as_loaded
from explain.trust.faithfulness import (
    BASELINE_NAMES,
    BASELINES,
    ROAD_FRACTIONS,
    Curve,
    Faithfulness,
    RoadCurves,
    baseline_maps,
    forward_chunk,
    perturbation_curves,
    road_curves,
)
from explain.trust.faithfulness import faithfulness as faithfulness_check  # trust_report has a flag of that name
from explain.trust.metrics import spearman, ssim, unit_range
from explain.trust.verdict import (
    CENTRE_BIASED,
    CHANGED_BELOW,
    FAITHFULNESS,
    RANDOMIZATION,
    UNCHANGED_FROM,
    Band,
    Verdict,
    faithfulness_decision,
    randomization_decision,
)
from googlenet.model import BRANCHES, INCEPTION_MODULES, BasicConv2d, GoogLeNet, fold_batchnorm
from googlenet.weights import CheckpointError, Loaded, find_checkpoints, read_meta

__all__ = [
    "METHODS",
    "GRADCAM",
    "CAM_VARIANTS",
    "CHANGED_BELOW",
    "UNCHANGED_FROM",
    "CENTRE_BIASED",
    "GRADCAM_LAYER",
    "GUIDED_GRADCAM_CAUTION",
    "Similarity",
    "Randomization",
    "Curve",
    "RoadCurves",
    "Faithfulness",
    "ContributionCheck",
    "Verdict",
    "TrustReport",
    "DataRandomization",
    "trust_report",
    "randomization_layers",
    "randomize",
    "reinitialize",
    "perturbation_curves",
    "road_curves",
    "compare_models",
    "trained_on_shuffled_labels",
    "shuffled_label_runs",
    "method_label",
]

GRADCAM = "gradcam"  # Grad-CAM of one module or branch, upsampled to the input (not a captum input method)
# Grad-CAM++, XGrad-CAM, LayerCAM, HiResCAM (explain.cams): checked at GRADCAM_LAYER like Grad-CAM.
CAM_VARIANTS: tuple[str, ...] = tuple(m.value for m in CamMethod if m is not CamMethod.GRADCAM)
METHODS: tuple[str, ...] = (*(m.value for m in Method), GRADCAM, *CAM_VARIANTS)
# Grad-CAM and Guided Grad-CAM are taken at the last block, as in the Grad-CAM paper and in
# Adebayo et al.'s code (Inception v3's Mixed_7c). The app's Guided Grad-CAM uses inception4e;
# with it the published ordering does not show on the bundled model (mean ρ of |map| after the
# full cascade 0.23 against saliency's 0.24 over 20 CIFAR test images; 0.49 at inception5b).
GRADCAM_LAYER = "inception5b"
GUIDED_GRADCAM_CAUTION = (
    "Caution: Guided Grad-CAM barely changes when the model's weights are randomised "
    "(Adebayo et al. 2018): it shows the image's edges more than what the model learned."
)


def random_baseline(method: str) -> str:
    """The random map a method's deletion and insertion curves are held against: one of its own
    resolution. Grad-CAM's map is its layer's grid (8×8 at 32 px) upsampled, so deleting along it
    removes contiguous regions; a per-pixel random map scatters the deletions instead, and that
    speckle measures something else: on the bundled model, mean-colour speckle over 25 % of the
    pixels makes 22 of 40 CIFAR test pictures "frog" (31 of 40 at 50 %; random regions of the same
    area: 3 and 1), so per-pixel random deletion wrecks every other class's score whatever order it
    deletes in. Its random twin is therefore random values on the same grid, upsampled the same way
    (``random_regions``). Occlusion's map is as coarse (one value per window position: 15×15 at
    32 px) and is held against random values on its window grid; the per-pixel methods (IG,
    saliency, Guided Grad-CAM) against per-pixel random maps."""
    return "random_regions" if method in (GRADCAM, *CAM_VARIANTS, Method.OCCLUSION.value) else "random"


def method_label(method: str) -> str:
    if method == GRADCAM or method in CAM_VARIANTS:
        return CamMethod(method).label
    return Method(method).label


# -- results ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Similarity:
    """The map after one randomisation step against the original one.

    ``map`` is the randomised absolute map scaled to [0, 1] (for thumbnails); NaN means one of the
    two maps was constant, where a rank correlation is undefined.
    """

    layer: str
    spearman_abs: float
    spearman: float
    ssim: float
    map: Tensor
    target: int | None = None  # the class the randomised model's map was taken for

    def scores(self) -> dict[str, Any]:
        return {
            "layer": self.layer,
            "spearman_abs": _finite(self.spearman_abs),
            "spearman": _finite(self.spearman),
            "ssim": _finite(self.ssim),
            "target": self.target,
        }


@dataclass(frozen=True)
class Randomization:
    original: Tensor  # the absolute map of the trained model, scaled to [0, 1]
    cascading: tuple[Similarity, ...]
    independent: tuple[Similarity, ...]
    seed: int
    target: str = "predicted"  # "predicted": each randomised model explains its own top class; "fixed"
    centre_similarity: float = math.nan  # ρ of the original |map| with a centred Gaussian blob


@dataclass(frozen=True)
class ContributionCheck:
    """First-order contributions (logit units) against measured logit drops when zeroed."""

    branches: tuple[str, ...]
    estimated: tuple[float, ...]
    measured: tuple[float, ...]
    spearman: float
    modules: tuple[str, ...]
    module_estimated: tuple[float, ...]
    module_measured: tuple[float, ...]
    module_spearman: float
    base_logit: float


@dataclass(frozen=True, eq=False)
class TrustReport:
    """Everything the checks found for one (model, image, target, method)."""

    method: str
    label: str
    target: int
    target_name: str
    model_name: str
    image: np.ndarray  # H×W×3 uint8, what the model saw
    map: Tensor  # H×W relevance of the trained model (what deletion ranks by)
    randomization: Randomization | None
    faithfulness: Faithfulness | None
    contributions: ContributionCheck | None
    verdict: Verdict
    seconds: float
    timings: dict[str, float] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The scores as plain JSON types (NaN → ``None``); keys as ``python -m explain.trust`` writes them."""
        out: dict[str, Any] = {"method": self.method, "target": self.target, "target_name": self.target_name, "model": self.model_name}
        if self.randomization is not None:
            out["randomization"] = {
                "cascading": [s.scores() for s in self.randomization.cascading],
                "independent": [s.scores() for s in self.randomization.independent],
            }
        f = self.faithfulness
        if f is not None:
            for kind, curves in (("deletion", f.deletion), ("insertion", f.insertion)):
                out[f"{kind}_auc"] = round(curves["map"].auc, 5)
                for label in BASELINES:
                    out[f"{label}_{kind}_auc"] = round(curves[label].auc, 5)
                out[f"{kind}_curve"] = [round(float(v), 5) for v in curves["map"].scores]
            out["random_baseline"] = f.random_baseline
            out["random_regions_grid"] = list(f.grid)
            out["random_draws"] = f.random_draws
            out["beats_random_baseline"] = {"deletion": f.beats_random("deletion"), "insertion": f.beats_random("insertion")}
            out["base_probability"] = round(f.base_probability, 5)
            if f.road is not None:
                out["road"] = {"fractions": list(ROAD_FRACTIONS)} | {
                    label: {
                        "morf": [round(float(v), 5) for v in r.morf],
                        "lerf": [round(float(v), 5) for v in r.lerf],
                        "morf_mean": round(r.morf_mean, 5),
                        "lerf_mean": round(r.lerf_mean, 5),
                        "score": round(r.score, 5),
                    }
                    for label, r in f.road.items()
                }
        if self.contributions is not None:
            out["contributions_vs_knockout_spearman"] = _finite(self.contributions.spearman)
            out["modules_contributions_vs_knockout_spearman"] = _finite(self.contributions.module_spearman)
        out["verdict"] = {
            "randomization": self.verdict.state(RANDOMIZATION),
            "faithfulness": self.verdict.state(FAITHFULNESS),
            "faithfulness_baseline": self.verdict.faithfulness.baseline if self.verdict.faithfulness else None,
            "line": self.verdict.line,
        }
        out["seconds"] = round(self.seconds, 3)
        out["timings"] = {k: round(v, 3) for k, v in self.timings.items()}
        out["settings"] = self.settings
        return out

    def records(self) -> list[dict[str, Any]]:
        """The scores table, one row per check (for a ``gr.Dataframe`` or a printout)."""
        rows: list[dict[str, Any]] = []
        r = self.randomization
        if r is not None and r.cascading:
            last = r.cascading[-1]
            decided = self.verdict.randomization.table_cell if self.verdict.randomization else ""
            rows.append(_row("Randomisation, cascading to conv1: ρ(|map|)", last.spearman_abs, None, f"< {CHANGED_BELOW} passes", decided))
            rows.append(_row("Randomisation, cascading to conv1: SSIM", last.ssim, None, "lower: changed more"))
        if r is not None and r.independent:
            top = r.independent[0]
            rows.append(_row(f"Randomisation of {top.layer} alone: ρ(|map|)", top.spearman_abs, None, "lower: changed more"))
        f = self.faithfulness
        if f is not None:
            against = f"against {BASELINE_NAMES[f.random_baseline]}"
            for name, curves, note in (
                ("Deletion AUC", f.deletion, f"lower is better; {against}"),
                ("Insertion AUC", f.insertion, f"higher is better; {against}"),
            ):
                decided = self.verdict.faithfulness.table_cell if self.verdict.faithfulness else ""
                rows.append(_row(name, curves["map"].auc, {b: curves[b].auc for b in BASELINES}, note, decided))
            if f.road is not None:
                road = f.road
                rows.append(_row("ROAD MoRF (mean)", road["map"].morf_mean, {b: road[b].morf_mean for b in BASELINES}, "lower is better"))
                rows.append(_row("ROAD LeRF (mean)", road["map"].lerf_mean, {b: road[b].lerf_mean for b in BASELINES}, "higher is better"))
        c = self.contributions
        if c is not None:
            rows.append(_row("Branch contribution vs knock-out: ρ (36)", c.spearman, None, "1: the estimate ranks right"))
            rows.append(_row("Module contribution vs knock-out: ρ (9)", c.module_spearman, None, "1: the estimate ranks right"))
        return rows


@dataclass(frozen=True)
class DataRandomization:
    """One method's map on a model trained on true labels and on one trained on permuted labels."""

    method: str
    target: int
    real: Tensor
    shuffled: Tensor
    spearman_abs: float
    spearman: float
    ssim: float


def _finite(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else round(float(value), 5)


def _row(check: str, value: float, baselines: dict[str, float] | None, note: str, decision: str = "") -> dict[str, Any]:
    row = {"check": check, "this map": _finite(value)}
    row |= {BASELINE_NAMES[b]: _finite(baselines[b]) if baselines else None for b in BASELINES}
    return row | {"reading": note, "decision": decision}


# -- maps ------------------------------------------------------------------------------------


class _Explainer:
    """One captum algorithm for one model copy, reused for every randomisation step.

    ``raw(x, target)`` gives the signed attribution C×H×W: saliency's plain gradient (its sign is
    needed for the signed comparison; the app shows ``max_c |∂y/∂x_c|``), Grad-CAM's signed map
    (no ReLU) upsampled bilinearly, 1×H×W.
    """

    def __init__(self, model: nn.Module, method: str, settings: dict[str, Any]) -> None:
        self.method, self.settings = method, settings
        self.last_target: int | None = None
        if method == Method.GUIDED_GRADCAM:
            for m in model.modules():  # guided backprop hooks ReLUs, which in-place ReLUs forbid
                if isinstance(m, nn.ReLU):
                    m.inplace = False
        layer = settings.get("layer")
        self.model = model
        if method in CAM_VARIANTS:
            self.algorithm = None  # explain.cams.layer_cams: one forward and backward at the layer
        elif method == GRADCAM:
            self.algorithm = LayerGradCam(model, model.get_submodule(layer))
        elif method == Method.GUIDED_GRADCAM:
            self.algorithm = GuidedGradCam(model, model.get_submodule(layer))
        elif method == Method.INTEGRATED_GRADIENTS:
            self.algorithm = IntegratedGradients(model)
        elif method == Method.SALIENCY:
            self.algorithm = Saliency(model)
        else:
            self.algorithm = Occlusion(model)

    def raw(self, x: Tensor, target: int) -> Tensor:
        s = self.settings
        self.last_target = target
        with torch.enable_grad():
            if self.method in CAM_VARIANTS:
                cam = layer_cams(self.model, s["layer"], x, target, self.method).unsqueeze(0)
                out = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)
            elif self.method == GRADCAM:
                cam = self.algorithm.attribute(x, target=target, relu_attributions=False)
                out = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)
            elif self.method == Method.INTEGRATED_GRADIENTS:
                out = self.algorithm.attribute(
                    x, baselines=torch.zeros_like(x), target=target, n_steps=s["n_steps"], internal_batch_size=s["internal_batch_size"]
                )
            elif self.method == Method.SALIENCY:
                out = self.algorithm.attribute(x, target=target, abs=False)
            elif self.method == Method.OCCLUSION:
                w, st = s["window"], s["stride"]
                out = self.algorithm.attribute(
                    x, sliding_window_shapes=(3, w, w), strides=(3, st, st), baselines=0.0, target=target,
                    perturbations_per_eval=s["perturbations_per_eval"],
                )  # fmt: skip
            else:
                out = self.algorithm.attribute(x, target=target)
        return out.detach()[0].float().cpu()


def _relevance(method: str, raw: Tensor) -> Tensor:
    """The H×W map the app shows (and deletion ranks by): ``max_c |g_c|`` for saliency, else ``Σ_c a_c``."""
    return raw.abs().amax(0) if method == Method.SALIENCY else raw.sum(0)


def _compare(layer: str, original: Tensor, raw: Tensor) -> Similarity:
    abs_a, abs_b = original.abs().sum(0), raw.abs().sum(0)
    scaled = unit_range(abs_b)
    return Similarity(
        layer=layer,
        spearman_abs=spearman(abs_a, abs_b),
        spearman=spearman(original.sum(0), raw.sum(0)),
        ssim=ssim(unit_range(abs_a), scaled) if min(abs_a.shape) >= 11 else math.nan,
        map=scaled,
    )


# -- randomisation ---------------------------------------------------------------------------


def randomization_layers(model: nn.Module) -> tuple[str, ...]:
    """The cascade's steps, top first: ``fc``, ``inception5b`` … ``inception3a``, ``conv3``, ``conv2``, ``conv1``.

    The aux heads are left out: they do not feed the main logits any map is taken for.
    """
    names = ("fc", *reversed(INCEPTION_MODULES), "conv3", "conv2", "conv1")
    present = {name for name, _ in model.named_children()}
    return tuple(n for n in names if n in present)


def reinitialize(module: nn.Module, generator: torch.Generator, folded_batchnorm: bool = True) -> None:
    """Re-initialise every conv and linear layer in ``module`` as :class:`GoogLeNet` is before training.

    With ``folded_batchnorm`` (the app's models: BatchNorm folded into the convs) a conv of a
    ``BasicConv2d`` gets He-normal weights and a zero bias: a fresh conv + BatchNorm(γ=1, β=0,
    μ=0, σ²=1), folded. He's fan-in mode, not the fan-out of the model's ``__init__``: without
    BatchNorm to rescale them, fan-out weights let activations grow layer by layer (mean
    |activation| 84 at inception5b of the fully randomised bundled model, 1.1 with fan-in).
    Other convs (the paper's plain network) and linear layers get PyTorch's default init. Every
    draw comes from ``generator``, never from the global RNG that other threads use.
    """
    he = {id(b.conv) for b in module.modules() if isinstance(b, BasicConv2d)} if folded_batchnorm else set()
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d) and id(layer) in he:
            with torch.no_grad():
                nn.init.kaiming_normal_(layer.weight, mode="fan_in", nonlinearity="relu", generator=generator)
                if layer.bias is not None:
                    layer.bias.zero_()
        elif isinstance(layer, (nn.Conv2d, nn.Linear)):
            _default_init(layer, generator)


def _default_init(layer: nn.Conv2d | nn.Linear, generator: torch.Generator) -> None:
    """PyTorch's ``reset_parameters`` (Kaiming-uniform, a=√5; bias U(±1/√fan_in)) with a generator."""
    with torch.no_grad():
        nn.init.kaiming_uniform_(layer.weight, a=math.sqrt(5), generator=generator)
        if layer.bias is not None:
            fan_in = layer.weight[0].numel()
            bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0
            layer.bias.uniform_(-bound, bound, generator=generator)


def randomize(
    model: nn.Module,
    explain: Callable[[], Tensor],
    layers: Sequence[str],
    order: str = "cascading",
    seed: int = 0,
    reinit: Callable[[nn.Module, int], None] | None = None,
    original: Tensor | None = None,
    progress: Callable[[str], None] | None = None,
) -> tuple[Tensor, list[Similarity]]:
    """Randomise ``layers`` of ``model`` in place, one after the other, and compare maps.

    Args:
        model: a private copy. ``"cascading"`` leaves it fully randomised; ``"independent"``
            restores each layer after its step, so the model ends as it began.
        explain: returns the current model's signed attribution C×H×W.
        layers: submodule names in the order they are randomised (top first for Adebayo's cascade).
        reinit: ``reinit(module, seed)`` re-initialises a submodule; default :func:`reinitialize`
            with a generator seeded ``seed + step``, so a layer gets the same weights in both orders.
        original: the trained model's attribution if already computed.

    Returns the original attribution and one :class:`Similarity` per layer.
    """
    if order not in ("cascading", "independent"):
        raise ValueError(f"order must be 'cascading' or 'independent', got {order!r}")
    if reinit is None:
        folded = not isinstance(model, GoogLeNet) or model.config.batch_norm

        def reinit(module: nn.Module, layer_seed: int) -> None:
            reinitialize(module, torch.Generator().manual_seed(layer_seed), folded)

    original = explain() if original is None else original
    results = []
    for step, name in enumerate(layers):
        module = model.get_submodule(name)
        saved = {k: v.detach().clone() for k, v in module.state_dict().items()} if order == "independent" else None
        reinit(module, seed + step)
        results.append(_compare(name, original, explain()))
        if saved is not None:
            module.load_state_dict(saved)
        if progress is not None:
            progress(name)
    return original, results


# -- the report ------------------------------------------------------------------------------


def trust_report(
    source: Explorer | Loaded | GoogLeNet,
    image: object,
    method: Method | str,
    target: int | str | None = None,
    *,
    cascading: bool = True,
    independent: bool = True,
    faithfulness: bool = True,
    road: bool = True,
    contributions: bool = True,
    steps: int = 32,
    blur_sigma: float | None = None,
    seed: int = 0,
    random_draws: int | None = None,
    randomized_target: str = "predicted",
    progress: Callable[[float, str], None] | None = None,
    **options: Any,
) -> TrustReport:
    """Run the checks for one image, target and method (see the module docstring).

    Args:
        source: the app's :class:`Explorer` (its cached exploration gives the contributions), a
            :class:`Loaded` or a model. Nothing of it is changed: all work happens on a copy.
        method: one of :data:`METHODS`.
        target: class index or name; ``None``: the main head's top class.
        steps: points of the deletion/insertion curves after 0 (32: one batch of 33 images each).
        blur_sigma: insertion's starting blur in pixels; default ``input size / 16``: 2 px at
            32, which leaves the bundled model 15 % accurate on 300 CIFAR test images (chance 10 %,
            75 % unblurred), and 14 px at 224 (RISE used 5 px there: pass ``blur_sigma=5``).
        seed: of the re-initialised weights, the random maps and ROAD's noise.
        random_draws: random maps per baseline; their deletion and insertion curves are
            averaged. Default :data:`RANDOM_DRAWS`, :data:`RANDOM_DRAWS_LARGE` above 64×64 px.
        randomized_target: which class a randomised model's map is taken for: ``"predicted"``
            (default, Adebayo et al.'s code: the randomised model's own top class, whose logit is
            the largest, as the trained model's is for its map) or ``"fixed"`` (``target``, as
            quantus' MPRT does). With ``"fixed"`` a ReLU'd Grad-CAM (inside Guided Grad-CAM) is
            often all zeros on the random network, because its logit for that class is negative.
        progress: called with (fraction done, message).
        options: ``layer`` of Grad-CAM and Guided Grad-CAM (default ``"inception5b"``, see
            :data:`GRADCAM_LAYER`; any module or branch), ``n_steps``, ``internal_batch_size``
            (IG), ``window``, ``stride``, ``perturbations_per_eval`` (occlusion); the app's
            defaults otherwise.
    """
    started = time.perf_counter()
    method = _method(method)
    if randomized_target not in ("predicted", "fixed"):
        raise ValueError(f"randomized_target must be 'predicted' or 'fixed', got {randomized_target!r}")
    explorer = source if isinstance(source, Explorer) else Explorer(as_loaded(source), cache_size=0)
    settings = _settings(method, options, explorer.loaded.input_size)
    if steps < 2:
        raise ValueError(f"steps must be at least 2, got {steps}")
    if random_draws is not None and random_draws < 1:
        raise ValueError(f"random_draws must be at least 1, got {random_draws}")
    report = _Progress(progress, method_label(method))
    timings: dict[str, float] = {}

    exploration = explorer.explore(image, target)
    x = exploration.input.to(explorer.loaded.device).contiguous(memory_format=torch.channels_last)
    target = exploration.target
    model = _private_copy(explorer.loaded.model)
    layers = randomization_layers(model)
    report.total = 2 + (len(layers) if independent else 0) + (len(layers) if cascading else 0) + 2 * faithfulness + 2 * road + contributions

    clock = time.perf_counter()
    explainer = _Explainer(model, method, settings)
    original = explainer.raw(x, target)
    relevance = _relevance(method, original)
    timings["map_s"] = time.perf_counter() - clock
    report.step("map of the trained model")

    check = None
    if contributions:
        clock = time.perf_counter()
        check = _contribution_check(model, explorer, x, target, exploration.contributions)
        timings["contributions_s"] = time.perf_counter() - clock
        report.step("36 + 9 knock-outs")

    faith = None
    if faithfulness:
        clock = time.perf_counter()
        faith = faithfulness_check(
            model, x, target, relevance, baseline=random_baseline(method), grid=_regions_grid(model, x, method, settings), draws=random_draws,
            steps=steps, blur_sigma=blur_sigma, seed=seed, road=road, step=report.step,
        )  # fmt: skip
        timings["faithfulness_s"] = time.perf_counter() - clock

    randomization = None
    if independent or cascading:

        def explain() -> Tensor:
            if randomized_target == "fixed":
                return explainer.raw(x, target)
            with torch.inference_mode():
                predicted = int(model(x).argmax(1)[0])
            return explainer.raw(x, predicted)

        randomised: dict[str, tuple[Similarity, ...]] = {"independent": (), "cascading": ()}
        # independent first, while the copy is intact: each of its steps restores its layer
        for order, wanted, done in (("independent", independent, "{} alone randomised"), ("cascading", cascading, "randomised down to {}")):
            if not wanted:
                continue
            clock = time.perf_counter()
            targets: list[int] = []  # the class each randomised map was taken for
            _, similarities = randomize(
                model, explain, layers, order, seed, original=original,
                progress=lambda n, done=done, targets=targets: (targets.append(explainer.last_target), report.step(done.format(n))),
            )  # fmt: skip
            randomised[order] = tuple(replace(s, target=t) for s, t in zip(similarities, targets))
            timings[f"{order}_s"] = time.perf_counter() - clock
        scaled = unit_range(original.abs().sum(0))
        centre = spearman(scaled, baseline_maps(tuple(scaled.shape), seed)["centre"])
        randomization = Randomization(scaled, randomised["cascading"], randomised["independent"], seed, randomized_target, centre)

    draws = faith.random_draws if faith is not None else random_draws  # the default depends on the input size
    seconds = time.perf_counter() - started
    report.done()
    return TrustReport(
        method=method,
        label=method_label(method),
        target=target,
        target_name=exploration.target_name,
        model_name=explorer.loaded.name,
        image=exploration.image,
        map=relevance,
        randomization=randomization,
        faithfulness=faith,
        contributions=check,
        verdict=_verdict(method, randomization, faith),
        seconds=seconds,
        timings=timings,
        settings=settings | {"steps": steps, "seed": seed, "random_draws": draws, "randomized_target": randomized_target},
    )


def _method(method: Method | str) -> str:
    value = method.value if isinstance(method, Method) else str(method)
    if value not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {list(METHODS)}")
    return value


def _settings(method: str, options: dict[str, Any], size: int) -> dict[str, Any]:
    known = {"layer", "n_steps", "internal_batch_size", "window", "stride", "perturbations_per_eval"}
    unknown = set(options) - known
    if unknown:
        raise ValueError(f"unknown options {sorted(unknown)}; known: {sorted(known)}")
    s = {k: DEFAULTS[k] for k in known} | {k: v for k, v in options.items() if v is not None}
    if method in (GRADCAM, *CAM_VARIANTS, Method.GUIDED_GRADCAM.value) and options.get("layer") is None:
        s["layer"] = GRADCAM_LAYER
    s["window"] = s["window"] or max(2, size // 7)  # the app's occlusion defaults (attributions.attribute)
    s["stride"] = s["stride"] or max(1, s["window"] // 2)
    used = {
        GRADCAM: ("layer",),
        **dict.fromkeys(CAM_VARIANTS, ("layer",)),
        Method.GUIDED_GRADCAM.value: ("layer",),
        Method.INTEGRATED_GRADIENTS.value: ("n_steps", "internal_batch_size"),
        Method.SALIENCY.value: (),
        Method.OCCLUSION.value: ("window", "stride", "perturbations_per_eval"),
    }[method]
    return {k: s[k] for k in used}


def _private_copy(model: nn.Module) -> nn.Module:
    """A deep copy to randomise: eval mode, parameters without gradients, BatchNorm folded (a
    randomised conv under the trained BN statistics would be rescaled towards the trained one)."""
    if isinstance(model, GoogLeNet) and any(isinstance(m, nn.BatchNorm2d) for m in model.modules()):
        copied = fold_batchnorm(model)
    else:
        copied = copy.deepcopy(model).eval()
    return copied.requires_grad_(False)


class _Progress:
    def __init__(self, callback, label: str) -> None:
        self.callback, self.label, self.total, self.count = callback, label, 1, 0

    def step(self, message: str) -> None:
        self.count += 1
        if self.callback is not None:
            self.callback(min(0.99, self.count / max(1, self.total)), f"{self.label}: {message}")

    def done(self) -> None:
        if self.callback is not None:
            self.callback(1.0, f"{self.label}: done")


def _regions_grid(model: nn.Module, x: Tensor, method: str, settings: dict[str, Any]) -> tuple[int, int]:
    """The grid of the random regions: occlusion's window positions, else the output size of the
    Grad-CAM layer (the chosen one, default :data:`GRADCAM_LAYER`; the pixels when the model has no
    such layer), found by one forward pass."""
    if method == Method.OCCLUSION:
        w, st = settings["window"], settings["stride"]
        return tuple((side - w) // st + 1 for side in x.shape[-2:])
    try:
        module = model.get_submodule(settings.get("layer", GRADCAM_LAYER))
    except AttributeError:
        return tuple(x.shape[-2:])
    sizes: list[tuple[int, int]] = []
    handle = module.register_forward_hook(lambda _m, _i, out: sizes.append(tuple(out.shape[-2:])))
    try:
        with torch.inference_mode():
            model(x)
    finally:
        handle.remove()
    return sizes[0]


def _contribution_check(model, explorer: Explorer, x: Tensor, target: int, contributions: dict[str, float]) -> ContributionCheck:
    """Zero each branch and each module on the private copy, all 46 rows in batches of the same input."""
    modules = [m for m in INCEPTION_MODULES if m in dict(model.named_children())]
    branches = [f"{m}.{b}" for m in modules for b in BRANCHES]
    sets = [[b] for b in branches] + [[f"{m}.{b}" for b in BRANCHES] for m in modules]
    rows = 1 + len(sets)
    keep = {}
    for m in modules:
        channels = explorer.slices[f"{m}.branch4"].stop
        keep[m] = torch.ones(rows, channels, device=x.device)
    for row, names in enumerate(sets, start=1):
        for name in names:
            module, _ = name.split(".")
            keep[module][row, explorer.slices[name]] = 0
    chunk = forward_chunk(x)
    window = {"rows": slice(0, rows)}

    def zero(name: str):
        def hook(_module, _inputs, output):
            mask = keep[name][window["rows"]]
            return output * mask.view(*mask.shape, 1, 1).to(output.dtype)

        return hook

    handles = [model.get_submodule(m).register_forward_hook(zero(m)) for m in modules]
    logits = []
    try:
        with torch.inference_mode():
            for start in range(0, rows, chunk):
                window["rows"] = slice(start, min(rows, start + chunk))
                n = window["rows"].stop - start
                batch = x.expand(n, -1, -1, -1).contiguous(memory_format=torch.channels_last)
                logits.append(model(batch)[:, target].float().cpu())
    finally:
        for handle in handles:
            handle.remove()
    logits = torch.cat(logits)
    drop = (logits[0] - logits[1:]).tolist()  # how far the target logit fell with each set zeroed
    estimated = [contributions[b] for b in branches]
    module_estimated = [sum(contributions[f"{m}.{b}"] for b in BRANCHES) for m in modules]
    measured, module_measured = drop[: len(branches)], drop[len(branches) :]
    return ContributionCheck(
        branches=tuple(branches),
        estimated=tuple(estimated),
        measured=tuple(measured),
        spearman=spearman(torch.tensor(estimated), torch.tensor(measured)),
        modules=tuple(modules),
        module_estimated=tuple(module_estimated),
        module_measured=tuple(module_measured),
        module_spearman=spearman(torch.tensor(module_estimated), torch.tensor(module_measured)),
        base_logit=float(logits[0]),
    )


def _verdict(method: str, randomization: Randomization | None, faith: Faithfulness | None) -> Verdict:
    """One decision per check (explain.trust.verdict), from the numbers the table shows."""
    details = []
    rand = faithful = None
    if randomization is not None and randomization.cascading:
        rho = randomization.cascading[-1].spearman_abs
        rand = randomization_decision(rho)
        details.append(
            f"Full cascading randomisation: rank correlation with the original map {rho:.2f}: {rand.band.value} "
            f"(passes below {CHANGED_BELOW}, fails from {UNCHANGED_FROM}; Adebayo et al. 2018)."
        )
        centre = randomization.centre_similarity
        if rand.band is not Band.PASS and math.isfinite(centre) and centre >= CENTRE_BIASED:
            details.append(
                f"The map ranks like a plain centre blob (ρ = {centre:.2f} ≥ {CENTRE_BIASED}): any map with a centre bias stays "
                "alike under randomisation, so this test says little about it."
            )
    if faith is not None:
        d, i = faith.deletion, faith.insertion
        own = faith.random_baseline
        faithful = faithfulness_decision(own, d["map"].auc, d[own].auc, i["map"].auc, i[own].auc, tuple(faith.grid))
        regions = replace(faithful, baseline="random_regions").baseline_words
        details.append(
            f"Deletion AUC {d['map'].auc:.3f} (lower is better) and insertion AUC {i['map'].auc:.3f} (higher is better) against "
            f"{d[own].auc:.3f} and {i[own].auc:.3f} for {faithful.baseline_words}: {faithful.band.value} (Petsiuk et al. 2018); "
            f"a map is held against the random map of its own resolution, here {BASELINE_NAMES[own]}. For reference, "
            f"random pixels: {d['random'].auc:.3f} / {i['random'].auc:.3f}; {regions}: {d['random_regions'].auc:.3f} / "
            f"{i['random_regions'].auc:.3f}."
        )
    return Verdict(rand, faithful, tuple(details))


# -- data randomisation ----------------------------------------------------------------------


def trained_on_shuffled_labels(loaded: Loaded) -> bool:
    """Whether ``loaded`` was trained with ``--shuffle-labels`` (its checkpoint's summary says so)."""
    config = loaded.training.get("config") if isinstance(loaded.training, dict) else None
    return bool(isinstance(config, dict) and config.get("shuffle_labels"))


def shuffled_label_runs(root: str | Path | None = None) -> list[Path]:
    """Checkpoints under the runs folder trained on permuted labels, newest first."""
    found = []
    for path in find_checkpoints(root):
        try:
            _, meta = read_meta(path)
        except (CheckpointError, OSError):
            continue
        config = meta.training.get("config")
        if isinstance(config, dict) and config.get("shuffle_labels"):
            found.append(path)
    return found


def compare_models(
    real: Explorer | Loaded | GoogLeNet,
    shuffled: Explorer | Loaded | GoogLeNet,
    image: object,
    method: Method | str,
    target: int | str | None = None,
    **options: Any,
) -> DataRandomization:
    """Adebayo's data-randomisation test for one image: ``method``'s map on a model trained on the
    true labels against the map on one trained on permuted labels (same target). A map that
    stays similar does not depend on the relation between images and labels the model learned."""
    method = _method(method)
    explorers = [s if isinstance(s, Explorer) else Explorer(as_loaded(s), cache_size=0) for s in (real, shuffled)]
    exploration = explorers[0].explore(image, target)
    raws = []
    for explorer in explorers:
        settings = _settings(method, options, explorer.loaded.input_size)
        model = _private_copy(explorer.loaded.model)
        x, _ = explorer.prepare(image)
        raws.append(_Explainer(model, method, settings).raw(x, exploration.target))
    similarity = _compare("shuffled labels", raws[0], raws[1])
    return DataRandomization(
        method=method,
        target=exploration.target,
        real=unit_range(raws[0].abs().sum(0)),
        shuffled=similarity.map,
        spearman_abs=similarity.spearman_abs,
        spearman=similarity.spearman,
        ssim=similarity.ssim,
    )


# -- command line ----------------------------------------------------------------------------


# ``python -m explain.trust``: the command line lives in explain/trust/cli.py, which imports this
# module; run as a script, this module hands over to it (no import back from here).
if __name__ == "__main__":
    import runpy

    runpy.run_module("explain.trust.cli", run_name="__main__", alter_sys=True)
