"""Test-set accuracy of a checkpoint, per head, as the app runs it (BN folded, channels_last)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from .data import read_cifar10
from .weights import Loaded, load_model

__all__ = ["EvalResult", "evaluate", "evaluate_checkpoint"]


@dataclass(frozen=True)
class EvalResult:
    accuracy: dict[str, float | None]  # main, aux1, aux2 (None without aux heads)
    images: int


@torch.inference_mode()
def evaluate(loaded: Loaded, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 250) -> EvalResult:
    """Accuracy of each head on uint8 images N×3×H×W (any size: the model's recipe fits them) with integer labels."""
    if int(labels.max()) >= len(loaded.classes):
        raise ValueError(f"{loaded.name} predicts {len(loaded.classes)} classes; these labels need {int(labels.max()) + 1}")
    device = loaded.device
    correct = torch.zeros(3, dtype=torch.long)
    for start in range(0, len(labels), batch_size):
        x = loaded.preprocess(images[start : start + batch_size].to(device)).contiguous(memory_format=torch.channels_last)
        y = labels[start : start + batch_size].to(device)
        for head, logits in enumerate(loaded.model(x, aux=True)):
            if logits is not None:
                correct[head] += (logits.argmax(1) == y).sum().cpu()
    has_aux = loaded.config.aux_logits
    acc = (correct.double() / len(labels)).tolist()
    return EvalResult({"main": acc[0], "aux1": acc[1] if has_aux else None, "aux2": acc[2] if has_aux else None}, len(labels))


def evaluate_checkpoint(path: str | Path, data: str | Path, device: str | None = None) -> EvalResult:
    """Accuracy of the checkpoint at ``path`` on the ``test_batch`` of the CIFAR-10 folder ``data``."""
    loaded = load_model(path, device=device)
    if len(loaded.classes) != 10:
        raise ValueError(f"{path} has {len(loaded.classes)} classes; eval runs CIFAR-10 (10 classes) checkpoints")
    cifar = read_cifar10(data)
    return evaluate(loaded, cifar.test_images, cifar.test_labels)
