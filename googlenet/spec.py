"""What a live GoogLeNet is made of, read off the model itself: its Inception modules in order,
each branch's channel range in the module's concatenated output and what it computes, and which
heads exist.

Everything downstream (explorer, Grad-CAMs, contributions, atlas, knock-out, microscope,
architecture view) asks the spec instead of assuming 9 modules × 4 branches, 3 heads or a 3×3
``branch3``; so the same code serves torchvision's layout, the paper's plain 5×5 layout, a model
without aux heads, any number of classes, the CIFAR stem and any width.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from torch import nn

from .model import AUX_TAPS, Inception

__all__ = ["BranchSpec", "ModuleSpec", "NetworkSpec", "describe", "kernel_label"]


@dataclass(frozen=True)
class BranchSpec:
    """One branch: ``name`` is its full address, e.g. ``"inception4c.branch2"``."""

    name: str
    module: str
    branch: str
    start: int  # first channel of the branch in the module's output
    stop: int  # one past its last channel
    kernel: str  # what it computes, e.g. "1×1→3×3" or "pool→1×1"

    @property
    def channels(self) -> slice:
        return slice(self.start, self.stop)

    @property
    def width(self) -> int:
        return self.stop - self.start


@dataclass(frozen=True)
class ModuleSpec:
    """One Inception module and its branches, in the order they are concatenated."""

    name: str
    branches: tuple[BranchSpec, ...]

    @property
    def channels(self) -> int:
        return self.branches[-1].stop

    @property
    def short(self) -> str:
        """The paper's short label: ``"4c"`` for ``inception4c``."""
        return self.name.removeprefix("inception")


@dataclass(frozen=True)
class NetworkSpec:
    """The modules and heads of one network (see :func:`describe`).

    ``heads`` lists the heads the model has (``"main"`` first, then ``"aux1"``, ``"aux2"`` when
    built); ``aux_taps`` maps each aux head to the module whose output it reads; ``layers`` are the
    top-level layers with parameters in forward order (``conv1`` … ``fc``), the order in which a
    cascading randomisation walks back from the top.
    """

    modules: tuple[ModuleSpec, ...]
    heads: tuple[str, ...]
    aux_taps: tuple[tuple[str, str], ...]
    layers: tuple[str, ...]
    num_classes: int

    @cached_property
    def _branches(self) -> dict[str, BranchSpec]:
        return {b.name: b for m in self.modules for b in m.branches}

    @cached_property
    def _modules(self) -> dict[str, ModuleSpec]:
        return {m.name: m for m in self.modules}

    @property
    def module_names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.modules)

    @property
    def branch_names(self) -> tuple[str, ...]:
        return tuple(self._branches)

    @property
    def branch_kinds(self) -> tuple[str, ...]:
        """``("branch1", …)``: the branch names every module shares (the atlas's rows)."""
        kinds: dict[str, None] = {}
        for module in self.modules:
            kinds.update(dict.fromkeys(b.branch for b in module.branches))
        return tuple(kinds)

    def module(self, name: str) -> ModuleSpec:
        try:
            return self._modules[name]
        except KeyError:
            raise ValueError(f"unknown module {name!r}: expected one of {', '.join(self.module_names)}") from None

    def branch(self, name: str) -> BranchSpec:
        try:
            return self._branches[name]
        except KeyError:
            example = self.branch_names[len(self.branch_names) // 2] if self.branch_names else "inception4c.branch3"
            raise ValueError(f"unknown branch {name!r}: expected e.g. {example!r}") from None

    def expand(self, item: str) -> tuple[str, ...]:
        """A branch name → itself; a module name → its branches; anything else → ValueError."""
        if item in self._modules:
            return tuple(b.name for b in self._modules[item].branches)
        if item in self._branches:
            return (item,)
        example = self.branch_names[len(self.branch_names) // 2] if self.branch_names else "inception4c.branch3"
        raise ValueError(f"unknown branch {item!r}: expected e.g. {example!r} or a module like {example.split('.')[0]!r}")

    def describe_set(self, names: tuple[str, ...] | list[str]) -> str:
        """Short words for a set of branches: whole modules by name, other branches one by one
        (``"inception4c.branch2 + inception4e"``)."""
        names = list(dict.fromkeys(names))
        parts: list[str] = []
        for module in self.modules:
            mine = [b.name for b in module.branches]
            if all(n in names for n in mine):
                parts.append(module.name)
            else:
                parts.extend(n for n in mine if n in names)
        return " + ".join(parts)


def kernel_label(module: nn.Module) -> str:
    """What a branch computes, read off its layers: ``"1×1→5×5"``, ``"pool→1×1"``."""
    convs = [m for m in module.modules() if isinstance(m, nn.Conv2d)]
    sizes = "→".join(f"{c.kernel_size[0]}×{c.kernel_size[1]}" for c in convs)
    if any(isinstance(m, nn.MaxPool2d | nn.AvgPool2d) for m in module.modules()):
        return f"pool→{sizes}"
    return sizes


def describe(model: nn.Module) -> NetworkSpec:
    """The :class:`NetworkSpec` of a live model (plain, BN-folded, DDP- or compile-wrapped)."""
    model = getattr(model, "module", model)
    model = getattr(model, "_orig_mod", model)
    modules = []
    for name, child in model.named_children():
        if not isinstance(child, Inception):
            continue
        branches, start = [], 0
        for branch_name, branch in child.named_children():
            convs = [m for m in branch.modules() if isinstance(m, nn.Conv2d)]
            if not convs:
                continue
            width = convs[-1].out_channels
            branches.append(BranchSpec(f"{name}.{branch_name}", name, branch_name, start, start + width, kernel_label(branch)))
            start += width
        modules.append(ModuleSpec(name, tuple(branches)))
    if not modules:
        raise TypeError(f"no Inception modules in {type(model).__name__}: expected a googlenet.GoogLeNet")
    taps = tuple((head, tap) for head, tap in AUX_TAPS.items() if getattr(model, head, None) is not None)
    layers = tuple(
        name
        for name, child in model.named_children()
        if child is not None and not name.startswith("aux") and any(True for _ in child.parameters())
    )
    fc = getattr(model, "fc", None)
    num_classes = fc.out_features if isinstance(fc, nn.Linear) else int(getattr(model.config, "num_classes", 0))
    return NetworkSpec(tuple(modules), ("main", *(h for h, _ in taps)), taps, layers, num_classes)
