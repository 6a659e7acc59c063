"""GoogLeNet (Inception v1) from Szegedy et al. 2015, "Going Deeper with Convolutions",
https://arxiv.org/abs/1409.4842.

Module and parameter names are torchvision's (``conv1`` … ``inception5b.branch4``, ``aux1``,
``aux2``, ``fc``), so ``GoogLeNet().load_state_dict(torchvision_googlenet.state_dict())`` works
with ``strict=True``. Three layouts share this one class:

* ``batch_norm=True`` (default) is torchvision's: conv + BatchNorm(eps=1e-3) + ReLU, ceil-mode
  pooling, a 2×2 ``maxpool4``, a 3×3 kernel in ``branch3`` (pytorch/vision#906: the paper's
  5×5 was ported as 3×3 and the ImageNet weights depend on it) and an adaptive 4×4 average pool
  in the aux heads.
* ``batch_norm=False`` is the paper's plain network, as the guide this project grew from writes
  it (README, "Training"): conv (with bias) + ReLU, 3×3/2 max pools with padding 1, a 5×5
  kernel in ``branch3`` and a 5×5/3 average pool in the aux heads.
* ``layout="inceptionv1"`` is Lucid's InceptionV1, the network of the Distill Circuits papers and
  OpenAI Microscope (lucent's ``modelzoo.inceptionv1``): see :mod:`googlenet.inceptionv1`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

__all__ = [
    "INCEPTION_MODULES",
    "BRANCHES",
    "BRANCH_NAMES",
    "INCEPTION_TABLE",
    "GoogLeNetOutputs",
    "GoogLeNetConfig",
    "GoogLeNet",
    "Inception",
    "InceptionAux",
    "BasicConv2d",
    "fold_batchnorm",
    "AUX_TAPS",
    "MAIN_PATH",
]

INCEPTION_MODULES = (
    "inception3a",
    "inception3b",
    "inception4a",
    "inception4b",
    "inception4c",
    "inception4d",
    "inception4e",
    "inception5a",
    "inception5b",
)
BRANCHES = ("branch1", "branch2", "branch3", "branch4")
BRANCH_NAMES = tuple(f"{module}.{branch}" for module in INCEPTION_MODULES for branch in BRANCHES)
# Which module's output each auxiliary classifier reads (the paper, section 5).
AUX_TAPS = {"aux1": "inception4a", "aux2": "inception4d"}
# The layers of GoogLeNet.forward's main path in order, up to the global pool and fc.
MAIN_PATH = (
    "conv1", "maxpool1", "conv2", "conv3", "maxpool2", "inception3a", "inception3b", "maxpool3",
    "inception4a", "inception4b", "inception4c", "inception4d", "inception4e", "maxpool4", "inception5a", "inception5b",
)  # fmt: skip

# Table 1 of the paper: in_channels, #1×1, #3×3 reduce, #3×3, #5×5 reduce, #5×5, pool proj.
INCEPTION_TABLE: dict[str, tuple[int, int, int, int, int, int, int]] = {
    "inception3a": (192, 64, 96, 128, 16, 32, 32),
    "inception3b": (256, 128, 128, 192, 32, 96, 64),
    "inception4a": (480, 192, 96, 208, 16, 48, 64),
    "inception4b": (512, 160, 112, 224, 24, 64, 64),
    "inception4c": (512, 128, 128, 256, 24, 64, 64),
    "inception4d": (512, 112, 144, 288, 32, 64, 64),
    "inception4e": (528, 256, 160, 320, 32, 128, 128),
    "inception5a": (832, 256, 160, 320, 32, 128, 128),
    "inception5b": (832, 384, 192, 384, 48, 128, 128),
}

Stem = Literal["imagenet", "cifar"]
Layout = Literal["googlenet", "inceptionv1"]


class GoogLeNetOutputs(NamedTuple):
    """Main logits and the two auxiliary heads' logits (``None`` when the model has none)."""

    logits: Tensor
    aux1: Tensor | None
    aux2: Tensor | None


@dataclass(frozen=True)
class GoogLeNetConfig:
    """Everything needed to rebuild a :class:`GoogLeNet`; stored in every checkpoint."""

    num_classes: int = 1000
    aux_logits: bool = True
    batch_norm: bool = True
    stem: Stem = "imagenet"
    width: float = 1.0
    dropout: float = 0.4
    aux_dropout: float = 0.7
    branch3_kernel: int | None = None  # None: 3 with batch_norm (torchvision), 5 without (paper)
    layout: Layout = "googlenet"  # "inceptionv1": Lucid's TF-slim network (googlenet.inceptionv1)

    def __post_init__(self) -> None:
        if not isinstance(self.num_classes, int) or self.num_classes < 1:
            raise ValueError(f"num_classes must be a positive integer, got {self.num_classes!r}")
        if self.stem not in ("imagenet", "cifar"):
            raise ValueError(f"stem must be 'imagenet' or 'cifar', got {self.stem!r}")
        if not (isinstance(self.width, (int, float)) and 0 < self.width <= 4):
            raise ValueError(f"width must be a number in (0, 4], got {self.width!r}")
        for name in ("dropout", "aux_dropout"):
            value = getattr(self, name)
            if not 0 <= value < 1:
                raise ValueError(f"{name} must be in [0, 1), got {value!r}")
        if self.branch3_kernel not in (None, 3, 5):
            raise ValueError(f"branch3_kernel must be 3, 5 or None, got {self.branch3_kernel!r}")
        if self.layout not in ("googlenet", "inceptionv1"):
            raise ValueError(f"layout must be 'googlenet' or 'inceptionv1', got {self.layout!r}")
        if self.layout == "inceptionv1" and (self.batch_norm or self.stem != "imagenet" or self.aux_logits or self.kernel3 != 5):
            raise ValueError("layout 'inceptionv1' has no BatchNorm, no aux heads, the ImageNet stem and a 5×5 branch3")

    @property
    def kernel3(self) -> int:
        """The kernel size ``branch3`` really uses (the paper's "5×5" branch)."""
        if self.branch3_kernel is not None:
            return self.branch3_kernel
        return 3 if self.batch_norm else 5

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> GoogLeNetConfig:
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown model config keys {unknown}; expected some of {sorted(known)}")
        return cls(**values)


class GoogLeNet(nn.Module):
    """GoogLeNet (Inception v1).

    Args:
        num_classes: size of the classifier outputs (1000 for ImageNet, 10 for CIFAR-10).
        aux_logits: build the two auxiliary classifiers ``aux1`` (after inception4a) and
            ``aux2`` (after inception4d). Default ``True``.
        batch_norm: torchvision's BN layout (``True``, default) or the paper's plain
            conv+ReLU network (``False``); see the module docstring for every difference.
        stem: ``"imagenet"`` (7×7/2 conv and two 3×3/2 max pools: 224 → 28 before inception3a)
            or ``"cifar"`` (3×3/1 conv, no pools: 32×32 inputs stay 32×32 until inception3a).
        width: multiplies every channel count (0.25 gives a 16× cheaper model for CPUs).
        dropout: before ``fc``; the paper's 40% (torchvision uses 20%).
        aux_dropout: inside the aux heads, the paper's 70%.
        branch3_kernel: override the kernel of ``branch3`` (3 or 5).
        layout: ``"googlenet"`` (the above) or ``"inceptionv1"``, Lucid's TF-slim network; build
            that one with :func:`googlenet.inceptionv1.inceptionv1`.

    ``model(x)`` returns logits in eval mode; in training mode, or with ``aux=True``, it returns
    :class:`GoogLeNetOutputs` ``(logits, aux1, aux2)``.
    """

    def __init__(
        self,
        num_classes: int = 1000,
        aux_logits: bool = True,
        batch_norm: bool = True,
        stem: Stem = "imagenet",
        width: float = 1.0,
        dropout: float = 0.4,
        aux_dropout: float = 0.7,
        branch3_kernel: int | None = None,
        layout: Layout = "googlenet",
    ) -> None:
        super().__init__()
        self.config = GoogLeNetConfig(num_classes, aux_logits, batch_norm, stem, width, dropout, aux_dropout, branch3_kernel, layout)
        self.aux_logits = aux_logits

        def ch(channels: int) -> int:
            return max(1, round(channels * width))

        conv = _conv_factory(batch_norm)
        pool = _pool_factory(batch_norm)
        if stem == "imagenet":
            self.conv1 = conv(3, ch(64), kernel_size=7, stride=2, padding=3)
            self.maxpool1 = pool()
        else:
            # 32×32 inputs keep their resolution: a 3×3 conv and no early down-sampling.
            self.conv1 = conv(3, ch(64), kernel_size=3, padding=1)
            self.maxpool1 = nn.Identity()
        self.conv2 = conv(ch(64), ch(64), kernel_size=1)
        self.conv3 = conv(ch(64), ch(192), kernel_size=3, padding=1)
        self.maxpool2 = pool() if stem == "imagenet" else nn.Identity()
        table = INCEPTION_TABLE
        if layout == "inceptionv1":
            from .inceptionv1 import INCEPTIONV1_TABLE, tf_stem

            table = INCEPTIONV1_TABLE
            # TF "SAME" padding, local response norm after the stem: the same attribute names, so
            # forward, forward_from and every hook by name work unchanged.
            self.conv1, self.maxpool1, self.conv2, self.conv3, self.maxpool2, pool = tf_stem(ch)

        def inception(name: str) -> Inception:
            in_channels, *branch_channels = table[name]
            return Inception(
                ch(in_channels),
                *(ch(c) for c in branch_channels),
                batch_norm=batch_norm,
                kernel3=self.config.kernel3,
            )

        self.inception3a = inception("inception3a")
        self.inception3b = inception("inception3b")
        self.maxpool3 = pool()

        self.inception4a = inception("inception4a")
        self.inception4b = inception("inception4b")
        self.inception4c = inception("inception4c")
        self.inception4d = inception("inception4d")
        self.inception4e = inception("inception4e")
        # torchvision pools 2×2/2 here where the paper (and the guide) use 3×3/2.
        self.maxpool4 = nn.MaxPool2d(2, stride=2, ceil_mode=True) if batch_norm and layout == "googlenet" else pool()

        self.inception5a = inception("inception5a")
        self.inception5b = inception("inception5b")

        if aux_logits:
            aux = dict(batch_norm=batch_norm, width=width, dropout=aux_dropout)
            self.aux1 = InceptionAux(ch(512), num_classes, **aux)
            self.aux2 = InceptionAux(ch(528), num_classes, **aux)
        else:
            self.aux1 = None
            self.aux2 = None

        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(ch(1024), num_classes)

        if batch_norm:
            # He init suits ReLU+BN networks trained from scratch; the plain network keeps
            # PyTorch's defaults, exactly as the guide's code does.
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor, aux: bool = False) -> Tensor | GoogLeNetOutputs:
        # N x 3 x 224 x 224 (imagenet stem; the cifar stem keeps 32 x 32 through conv3)
        x = self.conv1(x)
        # N x 64 x 112 x 112
        x = self.maxpool1(x)
        # N x 64 x 56 x 56
        x = self.conv2(x)
        # N x 64 x 56 x 56
        x = self.conv3(x)
        # N x 192 x 56 x 56
        x = self.maxpool2(x)
        # N x 192 x 28 x 28
        x = self.inception3a(x)
        # N x 256 x 28 x 28
        x = self.inception3b(x)
        # N x 480 x 28 x 28
        x = self.maxpool3(x)
        # N x 480 x 14 x 14
        x = self.inception4a(x)
        # N x 512 x 14 x 14
        with_aux = self.aux1 is not None and (self.training or aux)
        aux1 = self.aux1(x) if with_aux else None
        x = self.inception4b(x)
        # N x 512 x 14 x 14
        x = self.inception4c(x)
        # N x 512 x 14 x 14
        x = self.inception4d(x)
        # N x 528 x 14 x 14
        aux2 = self.aux2(x) if with_aux else None
        x = self.inception4e(x)
        # N x 832 x 14 x 14
        x = self.maxpool4(x)
        # N x 832 x 7 x 7
        x = self.inception5a(x)
        # N x 832 x 7 x 7
        x = self.inception5b(x)
        # N x 1024 x 7 x 7
        x = self.avgpool(x)
        # N x 1024 x 1 x 1
        x = torch.flatten(x, 1)
        # N x 1024
        x = self.dropout(x)
        x = self.fc(x)
        # N x num_classes
        if self.training or aux:
            return GoogLeNetOutputs(x, aux1, aux2)
        return x

    def forward_from(self, layer: str, x: Tensor) -> Tensor:
        """Main-head logits from the output ``x`` of ``layer`` (a name in :data:`MAIN_PATH`), in
        eval mode: the rest of :meth:`forward` without re-running what comes before ``layer``.

        Knock-outs use it (``googlenet.analysis.epoch_measures``): zeroing a branch of inception4e and running
        on from there costs 10 % of a full pass at the CIFAR stem instead of 100 %.
        """
        if layer not in MAIN_PATH:
            raise ValueError(f"unknown layer {layer!r}: expected one of {', '.join(MAIN_PATH)}")
        for name in MAIN_PATH[MAIN_PATH.index(layer) + 1 :]:
            x = getattr(self, name)(x)
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(self.dropout(x))


class Inception(nn.Module):
    """Four parallel branches concatenated on channels: 1×1 | 1×1→3×3 | 1×1→5×5 | pool→1×1."""

    def __init__(
        self,
        in_channels: int,
        ch1x1: int,
        ch3x3red: int,
        ch3x3: int,
        ch5x5red: int,
        ch5x5: int,
        pool_proj: int,
        batch_norm: bool = True,
        kernel3: int = 3,
    ) -> None:
        super().__init__()
        conv = _conv_factory(batch_norm)
        self.branch1 = conv(in_channels, ch1x1, kernel_size=1)
        self.branch2 = nn.Sequential(
            conv(in_channels, ch3x3red, kernel_size=1),
            conv(ch3x3red, ch3x3, kernel_size=3, padding=1),
        )
        self.branch3 = nn.Sequential(
            conv(in_channels, ch5x5red, kernel_size=1),
            conv(ch5x5red, ch5x5, kernel_size=kernel3, padding=kernel3 // 2),
        )
        self.branch4 = nn.Sequential(
            nn.MaxPool2d(kernel_size=3, stride=1, padding=1, ceil_mode=True),
            conv(in_channels, pool_proj, kernel_size=1),
        )

    def forward(self, x: Tensor) -> Tensor:
        branches = [self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)]
        return torch.cat(branches, 1)


class InceptionAux(nn.Module):
    """Auxiliary classifier: avg pool to 4×4, 1×1 conv to 128, FC 2048→1024, dropout, FC."""

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        batch_norm: bool = True,
        width: float = 1.0,
        dropout: float = 0.7,
    ) -> None:
        super().__init__()
        conv_channels = max(1, round(128 * width))
        hidden = max(1, round(1024 * width))
        # The paper pools 5×5/3 (14×14 → 4×4); the adaptive pool that follows keeps 4×4 at
        # any input size the stems allow. torchvision pools adaptively only.
        self.pool = nn.AvgPool2d(5, stride=3) if not batch_norm else nn.Identity()
        self.conv = _conv_factory(batch_norm)(in_channels, conv_channels, kernel_size=1)
        self.fc1 = nn.Linear(conv_channels * 16, hidden)
        self.relu = nn.ReLU(inplace=True)
        self.dropout = nn.Dropout(p=dropout)
        self.fc2 = nn.Linear(hidden, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        # aux1: N x 512 x 14 x 14, aux2: N x 528 x 14 x 14
        x = F.adaptive_avg_pool2d(self.pool(x), (4, 4))
        # N x 512 x 4 x 4
        x = self.conv(x)
        # N x 128 x 4 x 4
        x = torch.flatten(x, 1)
        # N x 2048
        x = self.relu(self.fc1(x))
        # N x 1024
        x = self.dropout(x)
        return self.fc2(x)
        # N x num_classes


class BasicConv2d(nn.Module):
    """Conv + BatchNorm + ReLU (torchvision) or conv with bias + ReLU (paper).

    ReLU is a module, not ``F.relu``, so captum's guided backprop can find and override it.
    """

    def __init__(
        self, in_channels: int, out_channels: int, batch_norm: bool = True, pad: tuple[int, int, int, int] | None = None, **kwargs: Any
    ):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, bias=not batch_norm, **kwargs)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001) if batch_norm else nn.Identity()
        self.relu = nn.ReLU(inplace=True)
        # (left, right, top, bottom) zeros before the conv: TF's "SAME" padding of a strided conv
        # is asymmetric (2, 3 for conv1 of InceptionV1), which nn.Conv2d's padding cannot express.
        self.pad = pad

    def forward(self, x: Tensor) -> Tensor:
        if self.pad is not None:
            x = F.pad(x, self.pad)
        return self.relu(self.bn(self.conv(x)))


def _conv_factory(batch_norm: bool):
    def conv(in_channels: int, out_channels: int, **kwargs: Any) -> BasicConv2d:
        return BasicConv2d(in_channels, out_channels, batch_norm=batch_norm, **kwargs)

    return conv


def _pool_factory(batch_norm: bool):
    """3×3/2 max pool: torchvision's ceil mode, or the guide's padding of 1."""

    def pool() -> nn.MaxPool2d:
        if batch_norm:
            return nn.MaxPool2d(3, stride=2, ceil_mode=True)
        return nn.MaxPool2d(3, stride=2, padding=1)

    return pool


def fold_batchnorm(model: GoogLeNet) -> GoogLeNet:
    """A copy of ``model`` for inference with every BatchNorm folded into its convolution.

    ``W' = W · γ/σ``, ``b' = β − μ·γ/σ`` with ``σ = sqrt(var + eps)``: the same function in eval
    mode with one op fewer per layer (see
    ``python -m googlenet bench --inference`` for what it saves). The copy is in eval mode and cannot be trained.
    """
    folded = copy.deepcopy(model).eval()
    for module in folded.modules():
        if isinstance(module, BasicConv2d) and isinstance(module.bn, nn.BatchNorm2d):
            module.conv = fuse_conv_bn_eval(module.conv, module.bn)
            module.bn = nn.Identity()
    folded.folded = True
    return folded
