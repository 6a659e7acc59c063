"""Fine-tuning: start from ImageNet weights or any checkpoint, new heads, a frozen trunk.

``--init imagenet`` loads torchvision's ``GoogLeNet_Weights.IMAGENET1K_V1`` (cached, else
downloaded and hash-checked) into every trunk layer and gives the model new ``fc``, ``aux1`` and
``aux2`` heads for the dataset's classes: torchvision's aux heads were never trained (its weights
were ported from Caffe without them), and its ``fc`` knows ImageNet's 1,000 classes. Training
then uses the weights' own input recipe (Caffe's (x − 0.5) / 0.5 normalisation, 224 px).

``--init CHECKPOINT`` does the same from a checkpoint this project can read; when its class
names are the dataset's, its heads are kept too, so a run continues where another ended.

``--freeze-until inception4e`` freezes every trunk module from ``conv1`` to that one: their
weights take no gradient and their BatchNorm layers keep the statistics they came with (eval
mode), so only what follows, and the new heads, learn.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

from torch import Tensor, nn

from googlenet import weights
from googlenet.model import INCEPTION_MODULES, GoogLeNet, GoogLeNetConfig
from googlenet.preprocess import CAFFE_IMAGENET, Preprocess

__all__ = ["InitWeights", "read_init", "initialise", "freeze", "keep_frozen_in_eval", "TRUNK", "HEAD_MODULES"]

# The modules with weights, in the order the input meets them; the heads read the trunk.
TRUNK = ("conv1", "conv2", "conv3", *INCEPTION_MODULES)
HEAD_MODULES = ("fc", "aux1", "aux2")


@dataclass(frozen=True, eq=False)
class InitWeights:
    """Where a run's first weights come from."""

    name: str  # "imagenet" or the checkpoint's path
    config: GoogLeNetConfig  # the architecture the weights belong to
    state: dict[str, Tensor]
    classes: tuple[str, ...]
    recipe: Preprocess  # the input recipe those weights were trained with

    def model_config(self, num_classes: int, aux_logits: bool, dropout: float, aux_dropout: float) -> GoogLeNetConfig:
        """The source's architecture with the new run's classes, heads and dropout."""
        return replace(self.config, num_classes=num_classes, aux_logits=aux_logits, dropout=dropout, aux_dropout=aux_dropout)


def read_init(init: str) -> InitWeights:
    """``"imagenet"`` or a checkpoint path → its weights, architecture, classes and recipe.

    Raises ``weights.WeightsUnavailable`` when the ImageNet weights are neither cached nor
    downloadable, ``CheckpointError``/``FileNotFoundError`` for a bad checkpoint path.
    """
    if init == "imagenet":
        state = weights.imagenet_state_dict()
        categories = tuple(weights.GoogLeNet_Weights.IMAGENET1K_V1.meta["categories"])
        return InitWeights("imagenet", GoogLeNetConfig(num_classes=len(categories)), state, categories, CAFFE_IMAGENET)
    path = Path(os.fspath(init)).expanduser()
    model, meta = weights.read_checkpoint(path)
    return InitWeights(str(path), model.config, model.state_dict(), meta.classes, meta.preprocess)


def initialise(model: GoogLeNet, source: InitWeights, classes: tuple[str, ...]) -> list[str]:
    """Copy ``source``'s trunk into ``model`` (same architecture but for the heads) and, when the
    classes are the same and the source is not ImageNet, its heads too. Returns what was done."""
    own = model.state_dict()
    trunk = {k: v for k, v in source.state.items() if k.split(".", 1)[0] not in HEAD_MODULES}
    missing = sorted(k for k in own if k.split(".", 1)[0] not in HEAD_MODULES and k not in trunk)
    wrong = [f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in trunk.items() if k in own and v.shape != own[k].shape]
    unknown = sorted(k for k in trunk if k not in own)
    if missing or wrong or unknown:
        detail = "; ".join(
            f"{len(items)} {label} (e.g. {', '.join(items[:2])})"
            for label, items in (("missing", missing), ("of another shape", wrong), ("unexpected", unknown))
            if items
        )
        raise ValueError(f"the weights of {source.name} do not fit this model's trunk: {detail}")
    state = {**own, **{k: v.to(own[k].dtype) for k, v in trunk.items()}}
    same_heads = source.name != "imagenet" and tuple(source.classes) == tuple(classes)
    if same_heads:
        heads = {k: v for k, v in source.state.items() if k.split(".", 1)[0] in HEAD_MODULES and k in own and v.shape == own[k].shape}
        state.update(heads)
        kept = sorted({k.split(".", 1)[0] for k in heads})
        note = f"weights from {source.name}, heads kept ({', '.join(kept) or 'none'}: same {len(classes)} classes)"
    else:
        heads = [h for h in HEAD_MODULES if getattr(model, h, None) is not None]
        note = (
            f"weights from {source.name} ({len(trunk)} trunk tensors); new {', '.join(heads)} heads for {len(classes)} classes "
            f"(the source had {len(source.classes)})"
        )
    model.load_state_dict(state, strict=True)
    return [note]


def freeze(model: GoogLeNet, until: str) -> tuple[str, ...]:
    """Freeze the trunk from ``conv1`` to ``until`` (a name of :data:`TRUNK`); return their names."""
    if until not in TRUNK:
        raise ValueError(f"--freeze-until must name a trunk module ({', '.join(TRUNK)}), got {until!r}")
    frozen = TRUNK[: TRUNK.index(until) + 1]
    for name in frozen:
        getattr(model, name).requires_grad_(False)
    keep_frozen_in_eval(model, frozen)
    return frozen


def keep_frozen_in_eval(model: nn.Module, frozen: tuple[str, ...]) -> None:
    """Put the frozen modules back in eval mode after ``model.train()``: their BatchNorm layers
    then normalise with, and keep, the statistics they were trained with."""
    model = getattr(model, "module", model)
    for name in frozen:
        getattr(model, name).eval()
