"""One forward and one backward pass → every Inception branch's activations and Grad-CAM,
the three heads' predictions and each branch's contribution to the target class.

Grad-CAM (Selvaraju et al. 2017, https://arxiv.org/abs/1610.02391) of branch ``b`` for class
``c`` is ``ReLU(Σ_k α_k A_k)`` with ``α_k = mean_{h,w} ∂y_c/∂A_k[h,w]``: the branch's channels
weighted by their average gradient. It equals captum's
``LayerGradCam(model, branch).attribute(x, c, relu_attributions=True)``; the signed map (captum's
default ``relu_attributions=False``) is kept as ``cams_signed`` because negative evidence is
worth showing.

The four branches of a module are concatenated on channels, so one hook on each module's output
and one ``torch.autograd.grad`` to those 9 tensors give the activations and gradients of all 36
branches as channel slices: 9 hooks, one forward, one backward, where captum would run 36
forward+backward passes.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from googlenet.model import GoogLeNet
from googlenet.spec import NetworkSpec
from googlenet.weights import Loaded

from .attributions import Attribution, Method, attribute, private_copy
from .images import prepare

__all__ = [
    "HEADS",
    "Prediction",
    "Exploration",
    "Knockout",
    "Ablation",
    "Explorer",
    "explore",
    "ablate",
    "classify",
    "as_loaded",
]

HEADS = ("main", "aux1", "aux2")


class Prediction(NamedTuple):
    label: str
    index: int
    probability: float


@dataclass(frozen=True, eq=False)
class Exploration:
    """Everything one pass tells about one image; figures are drawn from this without recomputing.

    Attributes:
        image: the H×W×3 uint8 picture the model saw (resized and centre-cropped).
        input: the normalised 1×3×H×W input tensor (CPU).
        target: class index the gradients are taken for; ``target_name`` its label.
        spec: the network's modules, branches and heads (:class:`googlenet.spec.NetworkSpec`).
        activations: ``"inception4c.branch3"`` → C×H×W for every branch (36 in GoogLeNet), and
            ``"inception4c"`` → the module's concatenated output (branches are views into it).
        cams: branch → H×W Grad-CAM with ReLU; ``cams_signed`` without.
        predictions: ``"main" | "aux1" | "aux2"`` → top-k :class:`Prediction` (aux heads absent when
            the model has none).
        probabilities: head → softmax over all classes.
        contributions: branch → ``Σ ∂y_c/∂A ⊙ A`` over the branch's channels and positions, the
            first-order (Taylor) estimate of how much the target logit would fall if the branch
            output were zeroed; the four branches of a module sum to the module's total.
        shares: branch → its contribution divided by the sum of |contributions| of its module's
            four branches, in [-1, 1].
        kernels: branch → what it computes, e.g. ``"1×1→3×3"``.
        gradients: module → C×H×W ``∂y_c/∂A`` of its output (the other CAMs of
            :mod:`explain.cams` are drawn from these and the activations, with no new pass).
    """

    key: tuple
    spec: NetworkSpec
    model_name: str
    image: np.ndarray
    input: Tensor
    target: int
    target_name: str
    activations: dict[str, Tensor]
    cams: dict[str, Tensor]
    cams_signed: dict[str, Tensor]
    predictions: dict[str, list[Prediction]]
    probabilities: dict[str, Tensor]
    contributions: dict[str, float]
    shares: dict[str, float]
    kernels: dict[str, str]
    notes: tuple[str, ...] = ()
    gradients: dict[str, Tensor] = field(default_factory=dict)

    @property
    def branches(self) -> tuple[str, ...]:
        return self.spec.branch_names


@dataclass(frozen=True)
class Knockout:
    """The heads' predictions with ``branches`` zeroed, and the change of the target's probability."""

    branches: tuple[str, ...]
    label: str  # what was knocked out, in words: whole modules by name ("inception4c.branch2 + inception4e")
    predictions: dict[str, list[Prediction]]
    target_probability: dict[str, float]
    delta: dict[str, float]  # knocked-out minus baseline probability of the target
    top_changed: dict[str, bool]


@dataclass(frozen=True)
class Ablation:
    target: int
    target_name: str
    baseline: dict[str, list[Prediction]]
    baseline_probability: dict[str, float]
    knockouts: list[Knockout] = field(default_factory=list)


def as_loaded(model_or_loaded: Loaded | GoogLeNet) -> Loaded:
    if isinstance(model_or_loaded, Loaded):
        return model_or_loaded
    if isinstance(model_or_loaded, GoogLeNet):
        return Loaded.from_model(model_or_loaded)
    raise TypeError(f"expected a googlenet Loaded or GoogLeNet, got {type(model_or_loaded).__name__}")


class Explorer:
    """Explores images with one model; keeps the last ``cache_size`` explorations.

    Safe to share between threads: hooks record only the pass of the thread that placed them,
    so a concurrent ``classify`` never sees them.
    """

    def __init__(self, model_or_loaded: Loaded | GoogLeNet, cache_size: int = 16) -> None:
        self.loaded = as_loaded(model_or_loaded)
        self.cache_size = cache_size
        self._cache: OrderedDict[tuple, Exploration] = OrderedDict()
        self._lock = threading.Lock()
        self._captum_lock = threading.Lock()
        self._captum_model: nn.Module | None = None
        self.spec = self.loaded.spec
        self.kernels = {b.name: b.kernel for m in self.spec.modules for b in m.branches}
        # Channel ranges of each branch inside its module's concatenated output.
        self.slices = {b.name: b.channels for m in self.spec.modules for b in m.branches}
        self._membership = {}  # module → B×C, 1 where channel k belongs to branch b
        for module in self.spec.modules:
            membership = torch.zeros(len(module.branches), module.channels)
            for b, branch in enumerate(module.branches):
                membership[b, branch.channels] = 1.0
            self._membership[module.name] = membership

    # -- inputs --

    def prepare(self, image: object) -> tuple[Tensor, np.ndarray]:
        return prepare(image, self.loaded.preprocess, self.loaded.device)

    def resolve_target(self, target: int | str | None, logits: Tensor | None = None) -> int:
        classes = self.loaded.classes
        if target is None or target == "":
            if logits is None:
                raise ValueError("no target and no logits to take the top class from")
            return int(logits.argmax())
        if isinstance(target, str) and not target.lstrip("-").isdigit():
            if target not in classes:
                raise ValueError(f"unknown class {target!r} for {self.loaded.name}")
            return classes.index(target)
        index = int(target)
        if not 0 <= index < len(classes):
            raise ValueError(f"target {index} is out of range: this model has {len(classes)} classes (0…{len(classes) - 1})")
        return index

    # -- passes --

    @torch.inference_mode()
    def classify(self, image: object, topk: int = 5) -> dict[str, list[Prediction]]:
        """Top-k of each head, one forward pass, no hooks."""
        x, _ = self.prepare(image)
        outputs = self.loaded.model.eval()(x, aux=True)
        return {head: self._topk(logits[0], topk) for head, logits in zip(HEADS, outputs) if logits is not None}

    def explore(self, image: object, target: int | str | None = None, topk: int = 5) -> Exploration:
        """All 36 branches' activations and Grad-CAMs, the heads' top-k and the contributions.

        Cached by (weights, image pixels, target, topk): asking again is free.
        """
        x, shown = self.prepare(image)
        digest = hashlib.sha1(shown.tobytes()).hexdigest()
        key = (self.loaded.key, digest, shown.shape, None if target in (None, "") else str(target), topk)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        exploration = self._explore(x, shown, target, topk, key)
        with self._lock:
            self._cache[key] = exploration
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return exploration

    def _explore(self, x: Tensor, shown: np.ndarray, target, topk: int, key: tuple) -> Exploration:
        model = self.loaded.model
        outputs_by_module: dict[str, Tensor] = {}
        owner = threading.get_ident()

        def record(name: str):
            def hook(_module, _inputs, output):
                if threading.get_ident() == owner:
                    outputs_by_module[name] = output

            return hook

        def start_graph(_module, inputs):
            # Gradients are needed from inception3a up only: the stem runs without a graph.
            if threading.get_ident() == owner:
                return (inputs[0].detach().requires_grad_(True),)
            return None

        modules = self.spec.module_names
        handles = [model.get_submodule(name).register_forward_hook(record(name)) for name in modules]
        handles.append(model.get_submodule(modules[0]).register_forward_pre_hook(start_graph))
        was_training = model.training
        if was_training:  # .eval() walks all 200+ modules: 4 ms per call on CPU, so only when needed
            model.eval()
        try:
            with torch.enable_grad():
                outputs = model(x.detach(), aux=True)
                logits = outputs.logits[0]
                target_index = self.resolve_target(target, logits)
                tensors = [outputs_by_module[name] for name in modules]
                grads = torch.autograd.grad(logits[target_index], tensors)
        finally:
            for handle in handles:
                handle.remove()
            if was_training:
                model.train()

        activations: dict[str, Tensor] = {}
        gradients: dict[str, Tensor] = {}
        cams: dict[str, Tensor] = {}
        cams_signed: dict[str, Tensor] = {}
        contributions: dict[str, float] = {}
        with torch.no_grad():
            for module, act, grad in zip(self.spec.modules, tensors, grads):
                name = module.name
                act = act.detach()[0].float().cpu()  # C×H×W (channels_last memory is fine for views)
                grad = grad[0].float().cpu()
                activations[name] = act
                gradients[name] = grad
                channels, height, width = act.shape
                # One matmul per module: row b of membership·α holds α_k for branch b's channels.
                membership = self._membership[name]
                alpha = grad.mean(dim=(1, 2))
                maps = (membership * alpha) @ act.reshape(channels, -1)  # B×HW: Σ_k α_k A_k per branch
                evidence = membership @ (grad * act).sum(dim=(1, 2))  # Σ_hw ∂y/∂A ⊙ A per branch
                for b, branch in enumerate(module.branches):
                    full = branch.name
                    activations[full] = act[branch.channels]
                    signed = maps[b].reshape(height, width)
                    cams_signed[full] = signed
                    cams[full] = signed.clamp(min=0)
                    contributions[full] = float(evidence[b])
        shares = {}
        for module in self.spec.modules:
            total = sum(abs(contributions[b.name]) for b in module.branches) or 1.0
            for b in module.branches:
                shares[b.name] = contributions[b.name] / total
        probabilities = {head: out[0].detach().float().softmax(0).cpu() for head, out in zip(HEADS, outputs) if out is not None}
        return Exploration(
            key=key,
            spec=self.spec,
            model_name=self.loaded.name,
            image=shown,
            input=x.detach().cpu(),
            target=target_index,
            target_name=self.loaded.classes[target_index],
            activations=activations,
            cams=cams,
            cams_signed=cams_signed,
            predictions={head: self._topk_from_probs(p, topk) for head, p in probabilities.items()},
            probabilities=probabilities,
            contributions=contributions,
            shares=shares,
            kernels=self.kernels,
            notes=self.loaded.notes,
            gradients=gradients,
        )

    @torch.inference_mode()
    def ablate(
        self,
        image: object,
        branches: Sequence[str | Sequence[str]],
        target: int | str | None = None,
        topk: int = 5,
    ) -> Ablation:
        """Zero branches and see what each head predicts: a causal check beside Grad-CAM.

        ``branches`` lists knock-outs; each is a branch name (``"inception4c.branch3"``), a module
        name (all four of its branches) or a list of those zeroed together. All knock-outs and the
        baseline run as one batch.
        """
        sets = [self._expand(item) for item in branches]
        if not sets:
            raise ValueError("name at least one branch to knock out, e.g. 'inception4c.branch3'")
        x, _ = self.prepare(image)
        batch = x.expand(len(sets) + 1, -1, -1, -1).contiguous(memory_format=torch.channels_last)
        keep: dict[str, Tensor] = {}
        for row, names in enumerate(sets, start=1):
            for name in names:
                mask = keep.setdefault(name, torch.ones(len(sets) + 1, device=x.device))
                mask[row] = 0
        owner = threading.get_ident()
        model = self.loaded.model

        def zero(name: str):
            def hook(_module, _inputs, output):
                if threading.get_ident() == owner:
                    return output * keep[name].view(-1, 1, 1, 1).to(output.dtype)
                return None

            return hook

        handles = [model.get_submodule(name).register_forward_hook(zero(name)) for name in keep]
        was_training = model.training
        model.eval()
        try:
            outputs = model(batch, aux=True)
        finally:
            for handle in handles:
                handle.remove()
            model.train(was_training)
        probabilities = {head: out.float().softmax(1).cpu() for head, out in zip(HEADS, outputs) if out is not None}
        target_index = self.resolve_target(target, probabilities["main"][0])
        base = {head: float(p[0, target_index]) for head, p in probabilities.items()}
        knockouts = []
        for row, names in enumerate(sets, start=1):
            knockouts.append(
                Knockout(
                    branches=names,
                    label=self.spec.describe_set(names),
                    predictions={h: self._topk_from_probs(p[row], topk) for h, p in probabilities.items()},
                    target_probability={h: float(p[row, target_index]) for h, p in probabilities.items()},
                    delta={h: float(p[row, target_index]) - base[h] for h, p in probabilities.items()},
                    top_changed={h: int(p[row].argmax()) != int(p[0].argmax()) for h, p in probabilities.items()},
                )
            )
        return Ablation(
            target=target_index,
            target_name=self.loaded.classes[target_index],
            baseline={h: self._topk_from_probs(p[0], topk) for h, p in probabilities.items()},
            baseline_probability=base,
            knockouts=knockouts,
        )

    def attribute(
        self,
        image: object,
        method: Method | str,
        target: int | str | None = None,
        noise_tunnel: bool = False,
        progress=None,
        **options,
    ) -> Attribution:
        """An input attribution with captum (see :mod:`explain.attributions`).

        ``image`` may be an :class:`Exploration`, whose input and target are reused. Calls are
        serialised on a private copy of the model, so captum's hooks never meet other passes.
        """
        if isinstance(image, Exploration):
            x = image.input.to(self.loaded.device)
            target = image.target if target in (None, "") else target
        else:
            x, _ = self.prepare(image)
        with self._captum_lock:
            if self._captum_model is None:
                self._captum_model = private_copy(self.loaded.model)
            model = self._captum_model
            if target in (None, ""):
                with torch.inference_mode():
                    target = int(model(x).argmax(1)[0])
            index = self.resolve_target(target)
            return attribute(model, x, method, index, self.loaded.classes[index], noise_tunnel, progress, **options)

    def _expand(self, item: str | Sequence[str]) -> tuple[str, ...]:
        names = [item] if isinstance(item, str) else list(item)
        return tuple(dict.fromkeys(branch for name in names for branch in self.spec.expand(name)))

    def _topk(self, logits: Tensor, k: int) -> list[Prediction]:
        return self._topk_from_probs(logits.float().softmax(0).cpu(), k)

    def _topk_from_probs(self, probabilities: Tensor, k: int) -> list[Prediction]:
        k = max(1, min(int(k), len(self.loaded.classes)))
        top = probabilities.topk(k)
        return [Prediction(self.loaded.classes[int(i)], int(i), float(p)) for p, i in zip(top.values, top.indices)]


def explore(model_or_loaded: Loaded | GoogLeNet, image: object, target: int | str | None = None, topk: int = 5) -> Exploration:
    """:meth:`Explorer.explore` without a cache: see :class:`Exploration`."""
    return Explorer(model_or_loaded, cache_size=0).explore(image, target, topk)


def ablate(model_or_loaded, image, branches, target=None, topk: int = 5) -> Ablation:
    """:meth:`Explorer.ablate` for a one-off call."""
    return Explorer(model_or_loaded, cache_size=0).ablate(image, branches, target, topk)


def classify(model_or_loaded, image, topk: int = 5) -> dict[str, list[Prediction]]:
    """:meth:`Explorer.classify` for a one-off call."""
    return Explorer(model_or_loaded, cache_size=0).classify(image, topk)
