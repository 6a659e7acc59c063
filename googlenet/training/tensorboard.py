"""TensorBoard event files for a training run, written into the run folder beside ``metrics.jsonl``,
so ``tensorboard --logdir runs`` shows every run.

What goes in (the trainer's own numbers, nothing recomputed):

* scalars per logged step: ``loss/total``, ``loss/main``, ``loss/aux1``, ``loss/aux2``, ``lr``,
  ``images_per_s``, and per module ``grad_norm/<module>`` and ``weight_norm/<module>``;
* scalars per epoch: ``accuracy/main``, ``accuracy/aux1``, ``accuracy/aux2``, ``test/loss``;
* histograms per epoch and module: ``weights/<module>`` (its parameters) and ``gradients/<module>``
  (their gradients at the epoch's last step);
* the probe test image once (``probe/image``) and its per-head top-3 each epoch (``probe/predictions``, text).

The probe's branch atlas needs the explain package, which this package does not import: the run
timeline (``explain.timeline.run_timeline``) adds it as ``timeline/atlas`` images to the same folder.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["TensorBoardLog", "tensorboard_available"]

_LOSSES = {"loss": "loss/total", "loss_main": "loss/main", "loss_aux1": "loss/aux1", "loss_aux2": "loss/aux2"}
_ACCURACY = {"acc_main": "accuracy/main", "acc_aux1": "accuracy/aux1", "acc_aux2": "accuracy/aux2"}


def tensorboard_available() -> bool:
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return False
    return True


class TensorBoardLog:
    """One run's TensorBoard writer. ``purge_step`` (on resume): TensorBoard hides what an earlier
    session logged from that step on, as ``metrics.jsonl`` drops it."""

    def __init__(self, folder: Path, purge_step: int | None = None) -> None:
        from torch.utils.tensorboard import SummaryWriter  # imported only when a run logs to TensorBoard

        self.writer = SummaryWriter(log_dir=str(folder), purge_step=purge_step, flush_secs=30)

    @classmethod
    def open(cls, folder: Path, enabled: bool, purge_step: int | None = None) -> TensorBoardLog | None:
        """The log, or ``None`` when off or when the ``tensorboard`` package is missing (with a warning)."""
        if not enabled:
            return None
        if not tensorboard_available():
            warnings.warn(
                "tensorboard is not installed: no TensorBoard event files (pip install tensorboard, or --no-tensorboard)", stacklevel=2
            )
            return None
        return cls(folder, purge_step)

    def event(self, event: Any) -> None:
        """A trainer event (StepEvent, EpochEvent, EndEvent…) as scalars, text or a flush."""
        kind = getattr(event, "kind", None)
        if kind == "step":
            for key, tag in _LOSSES.items():
                if getattr(event, key) is not None:
                    self.writer.add_scalar(tag, getattr(event, key), event.step)
            self.writer.add_scalar("lr", event.lr, event.step)
            self.writer.add_scalar("images_per_s", event.images_per_s, event.step)
            for name, value in (getattr(event, "grad_norm", None) or {}).items():
                if value is not None:
                    self.writer.add_scalar(f"grad_norm/{name}", value, event.step)
            for name, value in (getattr(event, "weight_norm", None) or {}).items():
                self.writer.add_scalar(f"weight_norm/{name}", value, event.step)
        elif kind == "epoch":
            for key, tag in _ACCURACY.items():
                if getattr(event, key) is not None:
                    self.writer.add_scalar(tag, getattr(event, key), event.step)
            self.writer.add_scalar("test/loss", event.test_loss, event.step)
            if event.probe:
                lines = [f"epoch {event.epoch}, true class **{event.probe.get('label')}**", ""]
                for head in ("main", "aux1", "aux2"):
                    if head in event.probe:
                        lines.append(f"* {head}: " + ", ".join(f"{label} {p:.1%}" for label, p in event.probe[head]))
                self.writer.add_text("probe/predictions", "\n".join(lines), event.step)
            self.writer.flush()
        elif kind == "end":
            self.writer.add_text("run/end", f"{event.status}: {event.message}", event.step)
            self.close()

    def probe_image(self, image: Tensor, label: str, step: int = 0) -> None:
        """The probe test image (3×H×W uint8), once per run."""
        self.writer.add_image("probe/image", image.cpu(), step, dataformats="CHW")
        self.writer.add_text("probe/label", label, step)

    @torch.no_grad()
    def histograms(self, model: nn.Module, step: int) -> None:
        """Per top-level module: its parameters' values and their current gradients."""
        model = getattr(model, "module", model)
        model = getattr(model, "_orig_mod", model)
        for name, child in model.named_children():
            params = [p for p in child.parameters()] if child is not None else []
            if not params:
                continue
            self.writer.add_histogram(f"weights/{name}", torch.cat([p.detach().float().flatten() for p in params]).cpu(), step)
            grads = [p.grad.float().flatten() for p in params if p.grad is not None]
            if grads:
                self.writer.add_histogram(f"gradients/{name}", torch.cat(grads).cpu(), step)

    def close(self) -> None:
        self.writer.flush()
        self.writer.close()
