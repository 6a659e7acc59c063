"""Measured knock-outs for the atlas: every branch (36) and every module (9) zeroed on the image on
screen, and what the main head's target logit and probability really do.

The atlas's first-order numbers (``Σ ∂y/∂A ⊙ A``, :attr:`Exploration.contributions`) estimate
``y(A) − y(0)`` from one backward pass. On 12 held-out CIFAR-10 pictures they ranked the bundled
model's 36 real knock-out effects with a median Spearman ρ of 0.52 and its 9 modules' with −0.35
(issue 26), so the atlas shows measured effects by default and the estimate one toggle away.

Cost: the exploration already holds every module's output, so a knock-out of module ``m`` (or of one
of its branches) zeroes channels of that cached output and runs only the layers after ``m``
(:meth:`GoogLeNet.forward_from`): one batch of 5 rows (4 branches + the whole module) per module,
9 batches in all, no stem and no layer before the module.
"""

from __future__ import annotations

import copy
import threading
import time
import weakref
from dataclasses import dataclass

import numpy as np
import torch
from scipy.stats import spearmanr
from torch import Tensor, nn

from googlenet.fastpool import with_fast_pools
from googlenet.model import MAIN_PATH

from .explorer import Exploration, Explorer

__all__ = ["MeasuredKnockouts", "measure_knockouts", "cached_knockouts", "corner_values", "points", "agreement_text", "CORNER_MODES"]

# What the atlas corners and the contribution table can show (the words on screen).
CORNER_MODES = {
    "measured": "measured knock-out: change of p(class) when the branch is zeroed",
    "estimate": "first-order estimate: share of the module's evidence (Σ ∂y/∂A ⊙ A)",
}


@dataclass(frozen=True)
class MeasuredKnockouts:
    """Knock-out effects on the main head for one exploration.

    Attributes:
        key: the :attr:`Exploration.key` these were measured for.
        logit_change / probability_change: name (36 branches and 9 modules) → knocked-out minus
            baseline target logit / softmax probability of the main head.
        estimate: the same names → the first-order estimate of the logit change,
            ``−Σ ∂y/∂A ⊙ A`` (a module's is the sum of its branches').
        rho_branches / rho_modules: Spearman ρ between estimate and measured logit change over the
            36 branches / the 9 modules (``nan`` when either side is constant).
        seconds: wall time of the 9 batches.
    """

    key: tuple
    target: int
    target_name: str
    baseline_logit: float
    baseline_probability: float
    branches: tuple[str, ...]
    modules: tuple[str, ...]
    logit_change: dict[str, float]
    probability_change: dict[str, float]
    estimate: dict[str, float]
    rho_branches: float
    rho_modules: float
    seconds: float

    def to_json(self) -> dict:
        def rows(names):
            return [
                {
                    "name": n,
                    "logit_change": self.logit_change[n],
                    "probability_change": self.probability_change[n],
                    "estimated_logit_change": self.estimate[n],
                }
                for n in names
            ]

        return {
            "target": self.target_name,
            "target_index": self.target,
            "head": "main",
            "baseline": {"logit": self.baseline_logit, "probability": self.baseline_probability},
            "branches": rows(self.branches),
            "modules": rows(self.modules),
            "spearman": {"branches": _finite(self.rho_branches), "modules": _finite(self.rho_modules)},
            "seconds": self.seconds,
        }


def _finite(value: float) -> float | None:
    return None if not np.isfinite(value) else float(value)


# One measurement per exploration object, kept as long as the exploration is (the explorer's cache).
_MEASURED: weakref.WeakKeyDictionary[Exploration, MeasuredKnockouts] = weakref.WeakKeyDictionary()


_COPIES: weakref.WeakKeyDictionary[Explorer, nn.Module] = weakref.WeakKeyDictionary()
_COPY_LOCK = threading.Lock()


def _fast_copy(explorer: Explorer) -> nn.Module:
    """The explorer's model with the separable max pools (googlenet.fastpool: the same values
    exactly, 0.43-0.56 of max_pool2d's time) in eval mode, copied once per explorer."""
    with _COPY_LOCK:
        model = _COPIES.get(explorer)
        if model is None:
            model = with_fast_pools(copy.deepcopy(explorer.loaded.model)).eval()
            _COPIES[explorer] = model
    return model


def cached_knockouts(exploration: Exploration) -> MeasuredKnockouts | None:
    """The measurement of ``exploration`` if it has been made, else ``None`` (never computes)."""
    return _MEASURED.get(exploration)


@torch.inference_mode()
def measure_knockouts(explorer: Explorer, exploration: Exploration) -> MeasuredKnockouts:
    """Zero each branch and each module of ``exploration`` in turn and run on from that module.

    Equal to :meth:`Explorer.ablate` of the same names (main head) within float rounding: zeroing
    a branch's output is zeroing its channel slice of the module's concatenated output.
    """
    known = _MEASURED.get(exploration)
    if known is not None:
        return known
    model = _fast_copy(explorer)
    parameter = next(model.parameters())
    spec = exploration.spec
    target = exploration.target
    start = time.perf_counter()
    # One growing batch down the main path: at each module its 5 rows (4 branches zeroed, then the
    # whole module) join the rows of the modules before it, so the network runs once per layer,
    # not once per module.
    names: list[str] = []
    batch: Tensor | None = None
    path = MAIN_PATH[MAIN_PATH.index(spec.modules[0].name) :]
    modules = {m.name: m for m in spec.modules}
    for layer in path:
        if batch is not None:
            batch = getattr(model, layer)(batch)
        module = modules.get(layer)
        if module is None:
            continue
        out = exploration.activations[module.name].to(parameter.device, parameter.dtype)
        extra = len(module.branches) + 1 + (layer == path[-1])  # the last module adds the baseline row
        rows = out.unsqueeze(0).repeat(extra, 1, 1, 1)
        for row, branch in enumerate(module.branches):
            rows[row, branch.channels] = 0
        rows[len(module.branches)] = 0  # the whole module
        names += [b.name for b in module.branches] + [module.name]
        rows = rows.contiguous(memory_format=torch.channels_last)
        batch = rows if batch is None else torch.cat([batch, rows])
    assert batch is not None
    logits = model.fc(torch.flatten(model.avgpool(batch), 1)).float()  # eval: dropout is the identity
    base_logit = float(logits[-1, target])
    base_probability = float(logits[-1].softmax(0)[target])
    probabilities = logits.softmax(1)[:, target]
    logit_change = {name: float(logits[row, target]) - base_logit for row, name in enumerate(names)}
    probability_change = {name: float(probabilities[row]) - base_probability for row, name in enumerate(names)}
    seconds = time.perf_counter() - start
    estimate = {b: -exploration.contributions[b] for b in spec.branch_names}
    for module in spec.modules:
        estimate[module.name] = sum(estimate[b.name] for b in module.branches)
    branches, modules = spec.branch_names, spec.module_names
    result = MeasuredKnockouts(
        key=exploration.key,
        target=target,
        target_name=exploration.target_name,
        baseline_logit=base_logit,
        baseline_probability=base_probability,
        branches=branches,
        modules=modules,
        logit_change=logit_change,
        probability_change=probability_change,
        estimate=estimate,
        rho_branches=_spearman([estimate[n] for n in branches], [logit_change[n] for n in branches]),
        rho_modules=_spearman([estimate[n] for n in modules], [logit_change[n] for n in modules]),
        seconds=seconds,
    )
    _MEASURED[exploration] = result
    return result


def _spearman(a: list[float], b: list[float]) -> float:
    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(spearmanr(a, b).statistic)


def corner_values(exploration: Exploration, mode: str, measured: MeasuredKnockouts | None) -> dict[str, float] | None:
    """Branch → the number a corner shows in ``mode`` ("estimate": the share in [-1, 1];
    "measured": the change of p(class)), or ``None`` when the measurement is not there yet."""
    if mode == "estimate":
        return dict(exploration.shares)
    if mode != "measured":
        raise ValueError(f"unknown corner mode {mode!r}; expected one of {sorted(CORNER_MODES)}")
    if measured is None or measured.key != exploration.key:
        return None
    return {b: measured.probability_change[b] for b in exploration.spec.branch_names}


def points(change: float) -> str:
    """A change of probability in percentage points as a corner prints it: ``-12pt``, ``+0.4pt``,
    ``0pt`` (below 0.05 points)."""
    value = change * 100
    if abs(value) < 0.05:
        return "0pt"
    return f"{value:+.0f}pt" if abs(value) >= 9.95 else f"{value:+.1f}pt"


def agreement_text(measured: MeasuredKnockouts) -> str:
    """One line under the atlas: how well the first-order estimate ranks the measured effects."""

    def rho(value: float) -> str:
        return "undefined (one side constant)" if not np.isfinite(value) else f"{value:+.2f}"

    return (
        f"Agreement of the first-order estimate (−Σ ∂y/∂A ⊙ A) with the measured knock-outs on this image, "
        f"Spearman ρ of the logit changes: {rho(measured.rho_branches)} over the {len(measured.branches)} branches, "
        f"{rho(measured.rho_modules)} over the {len(measured.modules)} modules "
        f"(p(“{measured.target_name}”) = {measured.baseline_probability:.1%} before; "
        f"{len(measured.branches) + len(measured.modules)} knock-outs measured in {measured.seconds:.2f} s)."
    )
