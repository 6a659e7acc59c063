"""Lucid's InceptionV1: the network the Distill Circuits papers (Olah et al. 2020) and OpenAI
Microscope study, as lucent ships it in PyTorch (``lucent.modelzoo.inceptionv1``, converted from
TF's ``inception5h`` by ProGamerGov).

It is TF-slim's GoogLeNet, not the paper's Caffe model nor torchvision's port:

* no BatchNorm: every conv has a bias and a ReLU;
* TF "SAME" padding: conv1 (7×7/2) pads 2 left/top and 3 right/bottom, the 3×3/2 max pools pad
  one ``-inf`` row and column on the right/bottom only;
* local response normalisation (size 9, alpha 1e-4, beta 0.5, k 1) after the first pool and after
  conv3, where the paper has it;
* a true 5×5 kernel in ``branch3`` (torchvision's has 3×3, pytorch/vision#906);
* 204 channels in mixed4a's 3×3 where the paper's Table 1 says 208 (so mixed4a has 508 outputs),
  48 in mixed5a's 5×5 reduce where it says 32;
* no aux heads; 1008 outputs (TF's ImageNet label list: 1000 classes and unused slots).

Here it is ``GoogLeNet(layout="inceptionv1", ...)`` with this project's names (``inception4c``,
``branch3``), so the explorer, Grad-CAMs, knock-outs and the architecture view work on it as on
any other layout; :data:`LUCENT_NAMES` maps lucent's parameter names to ours and back.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import torch.nn.functional as F
from torch import Tensor, nn

from .preprocess import Preprocess

__all__ = [
    "INCEPTIONV1_TABLE",
    "INCEPTIONV1_CLASSES",
    "INCEPTIONV1_PREPROCESS",
    "MIXED",
    "BRANCH_SUFFIX",
    "tf_stem",
    "inceptionv1",
    "is_lucent_state",
    "from_lucent_state",
    "to_lucent_state",
]

INCEPTIONV1_CLASSES = 1008
# lucent feeds this network x * 255 - 117 for x in [0, 1] (lucent.optvis.transform.preprocess_inceptionv1,
# Lucid's image_value_range (-117, 138)): mean 117/255, std 1/255 in this project's recipe.
INCEPTIONV1_PREPROCESS = Preprocess(input_size=224, resize_size=256, mean=(117 / 255,) * 3, std=(1 / 255,) * 3)

# Table 1 of the paper as TF-slim built it: mixed4a's 3×3 has 204 channels, not 208, and mixed5a's
# 5×5 reduce 48, not 32.
INCEPTIONV1_TABLE: dict[str, tuple[int, int, int, int, int, int, int]] = {
    "inception3a": (192, 64, 96, 128, 16, 32, 32),
    "inception3b": (256, 128, 128, 192, 32, 96, 64),
    "inception4a": (480, 192, 96, 204, 16, 48, 64),
    "inception4b": (508, 160, 112, 224, 24, 64, 64),
    "inception4c": (512, 128, 128, 256, 24, 64, 64),
    "inception4d": (512, 112, 144, 288, 32, 64, 64),
    "inception4e": (528, 256, 160, 320, 32, 128, 128),
    "inception5a": (832, 256, 160, 320, 48, 128, 128),
    "inception5b": (832, 384, 192, 384, 48, 128, 128),
}

# The two vocabularies: this project's (the paper's) module and branch names ↔ Lucid's.
MIXED = {f"inception{k}": f"mixed{k}" for k in ("3a", "3b", "4a", "4b", "4c", "4d", "4e", "5a", "5b")}
BRANCH_SUFFIX = {"branch1": "1x1", "branch2": "3x3", "branch3": "5x5", "branch4": "pool_reduce"}


class TFMaxPool(nn.Module):
    """3×3/2 max pool after TF "SAME" padding: one ``-inf`` column and row on the right and bottom
    (112 → 56, 56 → 28, 28 → 14, 14 → 7), where torchvision's ceil mode would pad the same side
    but PyTorch's ``padding=1`` pads both."""

    def forward(self, x: Tensor) -> Tensor:
        return F.max_pool2d(F.pad(x, (0, 1, 0, 1), value=float("-inf")), 3, stride=2)


def _lrn() -> nn.LocalResponseNorm:
    # TF's depth_radius 4 → PyTorch size 9; TF's alpha is per element, PyTorch divides by size,
    # and lucent passes TF's value straight to F.local_response_norm: we match lucent.
    return nn.LocalResponseNorm(size=9, alpha=9.99999974738e-05, beta=0.5, k=1.0)


def tf_stem(ch: Callable[[int], int]) -> tuple[nn.Module, nn.Module, nn.Module, nn.Module, nn.Module, Callable[[], nn.Module]]:
    """conv1, maxpool1 (pool + LRN), conv2, conv3, maxpool2 (LRN + pool) and the pool factory for
    maxpool3/maxpool4. The LRNs sit inside the parameter-free pools so that the layer names of
    :data:`googlenet.model.MAIN_PATH` stay the same for every layout."""
    from .model import BasicConv2d

    conv1 = BasicConv2d(3, ch(64), batch_norm=False, pad=(2, 3, 2, 3), kernel_size=7, stride=2)
    conv2 = BasicConv2d(ch(64), ch(64), batch_norm=False, kernel_size=1)
    conv3 = BasicConv2d(ch(64), ch(192), batch_norm=False, kernel_size=3, padding=1)
    return conv1, nn.Sequential(TFMaxPool(), _lrn()), conv2, conv3, nn.Sequential(_lrn(), TFMaxPool()), TFMaxPool


def inceptionv1(num_classes: int = INCEPTIONV1_CLASSES, width: float = 1.0):
    """A randomly initialised InceptionV1 in this project's model class."""
    from .model import GoogLeNet

    return GoogLeNet(num_classes=num_classes, aux_logits=False, batch_norm=False, width=width, branch3_kernel=5, layout="inceptionv1")


# -- lucent's state dict ----------------------------------------------------------------------

_STEM = {"conv2d0": "conv1", "conv2d1": "conv2", "conv2d2": "conv3"}
_BRANCH_CONV = {
    "1x1": "branch1",
    "3x3_bottleneck": "branch2.0",
    "3x3": "branch2.1",
    "5x5_bottleneck": "branch3.0",
    "5x5": "branch3.1",
    "pool_reduce": "branch4.1",
}
_FC = "softmax2_pre_activation_matmul"
_KEY = re.compile(
    r"^(?:(conv2d[012])|mixed(\d[a-e])_(1x1|3x3_bottleneck|3x3|5x5_bottleneck|5x5|pool_reduce))_pre_relu_conv\.(weight|bias)$"
)


def is_lucent_state(state: dict[str, Tensor]) -> bool:
    """Whether a state dict has lucent's InceptionV1 names (``mixed4c_3x3_pre_relu_conv.weight``)."""
    return f"{_FC}.weight" in state or "mixed3a_1x1_pre_relu_conv.weight" in state


def _ours(key: str) -> str | None:
    if key.startswith(f"{_FC}."):
        return "fc." + key.rsplit(".", 1)[1]
    match = _KEY.match(key)
    if match is None:
        return None
    stem, module, conv, kind = match.groups()
    if stem:
        return f"{_STEM[stem]}.conv.{kind}"
    return f"inception{module}.{_BRANCH_CONV[conv]}.conv.{kind}"


def from_lucent_state(state: dict[str, Tensor], name: str = "state dict") -> dict[str, Tensor]:
    """lucent's InceptionV1 state dict under this project's names; unknown keys raise ValueError
    naming them (a Lucid graph with extra heads is not this network)."""
    out, unknown = {}, []
    for key, tensor in state.items():
        ours = _ours(key)
        if ours is None:
            unknown.append(key)
        else:
            out[ours] = tensor
    if unknown:
        raise ValueError(f"{name}: {len(unknown)} keys that lucent's InceptionV1 does not have (e.g. {', '.join(unknown[:3])})")
    return out


def to_lucent_state(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """This project's InceptionV1 state dict under lucent's names (``lucent.modelzoo.inceptionv1``
    loads it strictly)."""
    back = {}
    for stem, ours in _STEM.items():
        for kind in ("weight", "bias"):
            back[f"{ours}.conv.{kind}"] = f"{stem}_pre_relu_conv.{kind}"
    for module in MIXED:
        for conv, ours in _BRANCH_CONV.items():
            for kind in ("weight", "bias"):
                back[f"{module}.{ours}.conv.{kind}"] = f"mixed{module[-2:]}_{conv}_pre_relu_conv.{kind}"
    back["fc.weight"], back["fc.bias"] = f"{_FC}.weight", f"{_FC}.bias"
    return {back[k]: v for k, v in state.items()}
