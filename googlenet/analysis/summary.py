"""Per-layer shapes, parameters and multiply-adds of a live GoogLeNet, beside the paper's Table 1.

Multiply-adds come from ``torch.utils.flop_counter.FlopCounterMode`` (FLOPs / 2) over one
forward pass of a single image, so they describe the model that is really there (its width,
stem and kernels), not a formula. Each layer's share is the counter's running total read by
hooks on that layer alone: the counter's own per-module table relies on process-wide module
hooks, so a forward pass in another thread (the app explores while it summarises) moved FLOPs
between rows — inception4e once showed 0 multiply-adds — and this way it cannot.

The paper's figures are for the full network at 224×224 with 1,000 classes. Beside a narrower,
smaller or CIFAR network they are scaled to it (see :func:`paper_scale`), so that the
difference column compares like with like.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from googlenet.model import BasicConv2d, GoogLeNet, Inception, InceptionAux

__all__ = ["LayerRow", "Summary", "summarize", "paper_scale", "PAPER_TABLE", "PAPER_NOTES", "PAPER_SIDES"]

# Table 1 of Szegedy et al. 2015: (params, multiply-adds) per row. The paper's single
# "convolution 3×3" row covers conv2 (its 1×1 reduce) and conv3; it is shown on conv3.
PAPER_TABLE: dict[str, tuple[int, int]] = {
    "conv1": (2_700, 34_000_000),
    "conv3": (112_000, 360_000_000),
    "inception3a": (159_000, 128_000_000),
    "inception3b": (380_000, 304_000_000),
    "inception4a": (364_000, 73_000_000),
    "inception4b": (437_000, 88_000_000),
    "inception4c": (463_000, 100_000_000),
    "inception4d": (580_000, 119_000_000),
    "inception4e": (840_000, 170_000_000),
    "inception5a": (1_072_000, 54_000_000),
    "inception5b": (1_388_000, 71_000_000),
    "fc": (1_000_000, 1_000_000),
}
PAPER_GROUPS = {"conv3": ("conv2", "conv3")}
# Output side of each paper row at 224×224 (Table 1's "output size" column).
PAPER_SIDES = {"conv1": 112, "conv3": 56, "inception3a": 28, "inception3b": 28, "fc": 1}
PAPER_SIDES |= {f"inception4{c}": 14 for c in "abcde"} | {"inception5a": 7, "inception5b": 7}

PAPER_NOTES = (
    "Paper: Szegedy et al. 2015, Table 1 (about 6.8 M parameters, 1.5 G multiply-adds at 224×224).",
    "BatchNorm (torchvision layout) adds 2 parameters per channel and drops conv biases; the paper's network had biases and no BN.",
    "torchvision's branch3 uses a 3×3 kernel where the paper has 5×5 (pytorch/vision#906): fewer "
    "parameters in every inception module. batch_norm=False builds the paper's 5×5.",
    "The paper's conv1 figures (2.7K, 34M) do not match a 7×7×3→64 convolution (9.4K, 118M at 112×112); the paper gives no reason.",
    "The aux heads run only in training (or with aux=True): their multiply-adds are not in the total.",
    "Paper columns are scaled to the live network: parameters by width² (conv1: by width, its input has 3 channels; "
    "fc: by width × classes / 1000), multiply-adds also by the live output area over the paper's. "
    "A CIFAR stem's 3×3/1 conv1 has no paper counterpart (the paper's is 7×7/2).",
)


@dataclass(frozen=True)
class LayerRow:
    name: str
    kind: str
    output_shape: tuple[int, ...]
    params: int
    macs: int
    paper_params: int | None = None  # the paper's figure scaled to this network (see paper_scale)
    paper_macs: int | None = None
    group_params: int | None = None  # our figures over the paper row's layers (conv2+conv3)
    group_macs: int | None = None

    @property
    def params_diff(self) -> float | None:
        ours = self.group_params if self.group_params is not None else self.params
        return None if self.paper_params is None else ours / self.paper_params - 1

    @property
    def macs_diff(self) -> float | None:
        ours = self.group_macs if self.group_macs is not None else self.macs
        return None if self.paper_macs is None else ours / self.paper_macs - 1


@dataclass(frozen=True)
class Summary:
    rows: tuple[LayerRow, ...]
    input_size: int
    total_params: int
    main_macs: int  # one image through the main path (what inference costs)
    aux_macs: int  # the two aux heads together

    def table(self) -> str:
        """A plain-text table for the terminal."""
        header = f"{'layer':<12} {'kind':<22} {'output':<16} {'params':>11} {'MACs':>14} {'paper params':>13} {'Δ':>7} {'paper MACs':>11} {'Δ':>7}"
        lines = [header, "-" * len(header)]
        for row in self.rows:
            shape = "×".join(str(s) for s in row.output_shape)
            lines.append(
                f"{row.name:<12} {row.kind:<22} {shape:<16} {row.params:>11,} {row.macs:>14,} "
                f"{_fmt_count(row.paper_params):>13} {_fmt_pct(row.params_diff):>7} "
                f"{_fmt_count(row.paper_macs):>11} {_fmt_pct(row.macs_diff):>7}"
            )
        lines.append("-" * len(header))
        lines.append(f"total params      {self.total_params:>14,}   (paper: ~6.8 M without aux heads, unscaled)")
        lines.append(
            f"main-path MACs    {self.main_macs:>14,}   ({self.main_macs / 1e9:.3f} G at {self.input_size}×{self.input_size}; paper: ~1.5 G)"
        )
        lines.append(f"aux-head MACs     {self.aux_macs:>14,}   (training only)")
        return "\n".join(lines + [""] + [f"* {note}" for note in PAPER_NOTES])

    def records(self) -> list[dict]:
        """Rows as plain dicts (for a dataframe in the app); counts are ints, ``None`` where the
        paper has no such row."""
        return [
            {
                "layer": r.name,
                "kind": r.kind,
                "output": "×".join(str(s) for s in r.output_shape),
                "params": r.params,
                "multiply-adds": r.macs,
                "paper params (scaled)": r.paper_params,
                "Δ params": _fmt_pct(r.params_diff),
                "paper multiply-adds (scaled)": r.paper_macs,
                "Δ multiply-adds": _fmt_pct(r.macs_diff),
            }
            for r in self.rows
        ]


def summarize(model: GoogLeNet, input_size: int | None = None) -> Summary:
    """Shapes, parameters and multiply-adds of every top-level layer of ``model``.

    Args:
        model: any :class:`GoogLeNet` (not changed; a copy is not needed).
        input_size: side of the square input; default 224 for the ImageNet stem, 32 for CIFAR.
    """
    if input_size is None:
        input_size = 224 if model.config.stem == "imagenet" else 32
    device = next(model.parameters()).device
    x = torch.zeros(1, 3, input_size, input_size, device=device)
    shapes: dict[str, tuple[int, ...]] = {}
    flops: dict[str, int] = {}
    counter = FlopCounterMode(display=False)
    started: dict[str, int] = {}

    def enter(name):
        return lambda _m, _i: started.__setitem__(name, counter.get_total_flops())

    def leave(name):
        def hook(_m, _i, out):
            shapes[name] = tuple(out.shape[1:])
            flops[name] = counter.get_total_flops() - started[name]  # top-level children never nest

        return hook

    # Hooks on this model's own children: the counter's total counts this thread's operations
    # only (dispatch modes are thread-local), where its per-module table does not (see above).
    hooks = [
        h
        for name, child in model.named_children()
        for h in (child.register_forward_pre_hook(enter(name)), child.register_forward_hook(leave(name)))
    ]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), counter:
            model(x, aux=True)
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()

    def macs(name: str) -> int:
        return flops.get(name, 0) // 2

    def params(module: nn.Module) -> int:
        return sum(p.numel() for p in module.parameters())

    rows = []
    for name, child in model.named_children():
        if child is None or name not in shapes:
            continue
        group = PAPER_GROUPS.get(name)
        scale = paper_scale(model, name, shapes[name])
        paper = PAPER_TABLE.get(name) if scale is not None else None
        rows.append(
            LayerRow(
                name=name,
                kind=_describe(child),
                output_shape=shapes[name],
                params=params(child),
                macs=macs(name),
                paper_params=round(paper[0] * scale[0]) if paper else None,
                paper_macs=round(paper[1] * scale[1]) if paper else None,
                group_params=sum(params(model.get_submodule(g)) for g in group) if group else None,
                group_macs=sum(macs(g) for g in group) if group else None,
            )
        )
    total_params = sum(p.numel() for p in model.parameters())
    if sum(r.params for r in rows) != total_params:  # every parameter lives in a top-level child
        raise RuntimeError("summary rows do not account for every parameter")
    aux_macs = sum(r.macs for r in rows if r.name.startswith("aux"))
    return Summary(tuple(rows), input_size, total_params, sum(r.macs for r in rows) - aux_macs, aux_macs)


def paper_scale(model: GoogLeNet, name: str, output_shape: tuple[int, ...]) -> tuple[float, float] | None:
    """Factors (parameters, multiply-adds) that carry the paper's row ``name`` to ``model``.

    Channel counts scale with the width on both sides of a convolution, so parameters go with
    width² (conv1 reads 3 colour channels: width; fc maps 1024·width features to the model's
    classes: width × classes / 1000). Multiply-adds are parameters × output positions, so they
    also go with the live output area over the paper's (e.g. (32/28)² for inception3a of a CIFAR
    network). All factors are 1 for the paper's own network. ``None`` where the layouts differ
    (a CIFAR stem's 3×3/1 conv1 against the paper's 7×7/2) or the paper has no such row.
    """
    if name not in PAPER_TABLE:
        return None
    config = model.config
    width = config.width
    if name == "conv1":
        if config.stem != "imagenet":
            return None
        channels = width
    elif name == "fc":
        channels = width * config.num_classes / 1000
    else:
        channels = width * width
    side = output_shape[-1] if len(output_shape) == 3 else 1
    return channels, channels * (side / PAPER_SIDES[name]) ** 2


def _describe(module: nn.Module) -> str:
    if isinstance(module, BasicConv2d):
        c = module.conv
        return f"conv {c.kernel_size[0]}×{c.kernel_size[1]}/{c.stride[0]}" + (" +BN" if isinstance(module.bn, nn.BatchNorm2d) else "")
    if isinstance(module, nn.MaxPool2d):
        return f"max pool {module.kernel_size}×{module.kernel_size}/{module.stride}"
    if isinstance(module, Inception):
        return "inception (4 branches)"
    if isinstance(module, InceptionAux):
        return "aux classifier"
    if isinstance(module, nn.AdaptiveAvgPool2d):
        return "global avg pool"
    if isinstance(module, nn.Dropout):
        return f"dropout {module.p:.0%}"
    if isinstance(module, nn.Linear):
        return "linear"
    if isinstance(module, nn.Identity):
        return "identity (cifar stem)"
    return type(module).__name__


def _fmt_count(value: int | None) -> str:
    if value is None:
        return "—"
    if value >= 1_000_000:
        return f"{value / 1e6:.0f}M" if value % 1_000_000 == 0 else f"{value / 1e6:.3g}M"
    return f"{value / 1e3:.3g}K"


def _fmt_pct(value: float | None) -> str:
    if value is None:
        return "—"
    return "0%" if abs(value) < 0.005 else f"{value:+.0%}"  # never "-0%"
