"""Test-set accuracy of a checkpoint, per head and per class, as the app runs it (BN folded,
channels_last), with each head's confusion matrix."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import Tensor

from googlenet.weights import Loaded, load_model

__all__ = ["EvalResult", "ClassResult", "evaluate", "evaluate_batches", "evaluate_checkpoint", "HEADS"]

HEADS = ("main", "aux1", "aux2")
_MATRIX_MAX_CLASSES = 20  # wider matrices go to --json only: 100 columns do not fit a terminal


class ClassResult(NamedTuple):
    name: str
    images: int
    correct: int
    accuracy: float | None  # None for a class without test images


@dataclass(frozen=True)
class EvalResult:
    """Accuracy per head, and per head the confusion matrix (rows: true class, columns: predicted)."""

    accuracy: dict[str, float | None]  # main, aux1, aux2 (None without aux heads)
    images: int
    classes: tuple[str, ...] = ()
    confusion: dict[str, Tensor] = field(default_factory=dict)  # head → K×K int64
    notes: tuple[str, ...] = ()

    def per_class(self, head: str = "main") -> list[ClassResult]:
        """Images, correct predictions and accuracy of each class for ``head``."""
        matrix = self.confusion[head]
        totals, correct = matrix.sum(1).tolist(), matrix.diagonal().tolist()
        return [ClassResult(name, n, c, c / n if n else None) for name, n, c in zip(self.classes, totals, correct)]

    def most_confused(self, head: str = "main", k: int = 5) -> list[tuple[str, str, int]]:
        """The ``k`` largest off-diagonal cells: (true class, predicted class, images)."""
        matrix = self.confusion[head].clone()
        matrix.fill_diagonal_(0)
        values, flat = matrix.flatten().topk(min(k, matrix.numel()))
        n = len(self.classes)
        return [(self.classes[i // n], self.classes[i % n], v) for v, i in zip(values.tolist(), flat.tolist()) if v > 0]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values (what ``eval --json`` writes)."""
        heads = {}
        for head, matrix in self.confusion.items():
            heads[head] = {
                "accuracy": self.accuracy[head],
                "per_class": [r._asdict() for r in self.per_class(head)],
                "confusion": matrix.tolist(),
                "most_confused": [{"true": t, "predicted": p, "images": n} for t, p, n in self.most_confused(head)],
            }
        return {"images": self.images, "classes": list(self.classes), "accuracy": self.accuracy, "heads": heads, "notes": list(self.notes)}

    def report(self) -> str:
        """Per head: accuracy, a line per class, the confusion matrix (up to 20 classes) and the
        most confused pairs."""
        lines = [*(f"note: {n}" for n in self.notes)]
        width = max([5, *(len(c) for c in self.classes)])
        for head, matrix in self.confusion.items():
            lines.append(f"{head} head: accuracy {self.accuracy[head]:.4f} on {self.images:,} images")
            lines.append(f"  {'class':<{width}}  images  correct  accuracy")
            for r in self.per_class(head):
                acc = f"{r.accuracy:.4f}" if r.accuracy is not None else "     -"
                lines.append(f"  {r.name:<{width}}  {r.images:>6}  {r.correct:>7}  {acc:>8}")
            if len(self.classes) <= _MATRIX_MAX_CLASSES:
                lines.append(f"  confusion matrix ({head}; rows: true class, columns: predicted; sums to {int(matrix.sum()):,})")
                cell = max(4, len(str(int(matrix.max()))) + 1)
                lines.append(f"  {'':<{width}} " + "".join(f"{c[: cell - 1]:>{cell}}" for c in self.classes))
                for name, row in zip(self.classes, matrix.tolist()):
                    lines.append(f"  {name:<{width}} " + "".join(f"{v:>{cell}}" for v in row))
            else:
                lines.append(f"  confusion matrix ({head}): {len(self.classes)}×{len(self.classes)}, written by --json")
            pairs = self.most_confused(head)
            if pairs:
                lines.append("  most confused: " + ", ".join(f"{t} → {p} {n}" for t, p, n in pairs))
        return "\n".join(lines)


@torch.inference_mode()
def evaluate(loaded: Loaded, images: Tensor, labels: Tensor, batch_size: int = 250) -> EvalResult:
    """Accuracy of each head on uint8 images N×3×H×W (any size: the model's recipe fits them) with integer labels."""
    if len(labels) == 0:
        raise ValueError("no test images to evaluate")
    if int(labels.max()) >= len(loaded.classes):
        raise ValueError(f"{loaded.name} predicts {len(loaded.classes)} classes; these labels need {int(labels.max()) + 1}")
    device = loaded.device

    def batches():
        for start in range(0, len(labels), batch_size):
            x = loaded.preprocess(images[start : start + batch_size].to(device)).contiguous(memory_format=torch.channels_last)
            yield x, labels[start : start + batch_size].to(device)

    return evaluate_batches(loaded, batches())


@torch.inference_mode()
def evaluate_batches(loaded: Loaded, batches: Iterable[tuple[Tensor, Tensor]], notes: tuple[str, ...] = ()) -> EvalResult:
    """The same from batches of model inputs (normalised) and labels, e.g. a streaming loader."""
    k = len(loaded.classes)
    heads = HEADS if loaded.config.aux_logits else HEADS[:1]
    confusion = torch.zeros(len(HEADS), k * k, dtype=torch.long)
    for x, y in batches:
        if len(y) and int(y.max()) >= k:
            raise ValueError(f"{loaded.name} predicts {k} classes; these labels need {int(y.max()) + 1}")
        for h, logits in enumerate(loaded.model(x, aux=True)):
            if logits is not None:
                confusion[h] += torch.bincount(y * k + logits.argmax(1), minlength=k * k).cpu()
    images = int(confusion[0].sum())
    if images == 0:
        raise ValueError("no test images to evaluate")
    matrices = {head: confusion[h].view(k, k) for h, head in enumerate(heads)}
    accuracy = {head: (matrices[head].diagonal().sum().item() / images if head in matrices else None) for head in HEADS}
    return EvalResult(accuracy, images, tuple(loaded.classes), matrices, notes)


def evaluate_checkpoint(
    path: str | Path,
    data: str | Path,
    device: str | None = None,
    loading: str = "auto",
    val_split: float | None = None,
    seed: int | None = None,
    workers: int | None = None,
) -> EvalResult:
    """Accuracy of the checkpoint at ``path`` on the test (or validation) split of ``data``:
    CIFAR-10, CIFAR-100, an image folder or a zip of one.

    A folder without ``val/`` is split as the run that wrote the checkpoint split it (its
    ``val_split`` and ``seed``, unless given), so the held-out pictures are the same.
    """
    from googlenet.datasets import StreamBatches, open_dataset, plan_loading, read_split

    loaded = load_model(path, device=device)
    trained = dict(loaded.training.get("config") or {})
    dataset = open_dataset(
        data,
        input_size=loaded.input_size,
        val_split=val_split if val_split is not None else float(trained.get("val_split") or 0.2),
        seed=seed if seed is not None else int(trained.get("seed") or 0),
        statistics=loaded.preprocess,
    )
    notes = list(dataset.notes)
    if len(dataset.classes) != len(loaded.classes):
        raise ValueError(
            f"{Path(path).name} predicts {len(loaded.classes)} classes but {dataset.describe()}; evaluate it on the data it was trained for"
        )
    if tuple(dataset.classes) != tuple(loaded.classes):
        different = [f"{a}/{b}" for a, b in zip(loaded.classes, dataset.classes) if a != b]
        notes.append(f"class names differ from the checkpoint's ({', '.join(different[:3])}); labels are matched by index")
    size = loaded.preprocess.resize_size
    plan = plan_loading(dataset, size, loaded.device, loading, splits=(dataset.test,))
    if plan.in_memory:
        test, skipped = read_split(dataset.test, size, dataset.test_name, workers)
        return _with_notes(evaluate(loaded, test.images, test.labels), [*notes, *skipped])
    stream = StreamBatches(dataset.test, loaded.preprocess, 100, loaded.device, train=False, workers=workers, channels_last=True)
    result = evaluate_batches(loaded, stream.epoch(0))
    if stream.skipped:
        notes.append(f"{len(stream.skipped)} unreadable files skipped: {'; '.join(stream.skipped[:3])}")
    return _with_notes(result, [f"streamed: {plan.reason}", *notes])


def _with_notes(result: EvalResult, notes: list[str]) -> EvalResult:
    return EvalResult(result.accuracy, result.images, result.classes, result.confusion, tuple(notes))
