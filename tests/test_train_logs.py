"""What the trainer logs besides losses: per-module weight and gradient norms, and TensorBoard event
files that read back as metrics.jsonl."""

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from googlenet.model import GoogLeNet
from googlenet.training.trainer import EpochEvent, StepEvent, TrainConfig, Trainer, _Run, read_metrics
from tests.conftest import cifar_slice

MODULES = (
    "conv1",
    "conv2",
    "conv3",
    *(f"inception{m}" for m in ("3a", "3b", "4a", "4b", "4c", "4d", "4e", "5a", "5b")),
    "aux1",
    "aux2",
    "fc",
)


@pytest.fixture(scope="module")
def small(cifar):
    return cifar_slice(cifar, 256, 128)


def config(out, **overrides):
    # fp32 and no dropout: the first step can then be recomputed exactly outside the trainer.
    values = dict(out=str(out), epochs=2, batch_size=64, width=0.125, seed=5, lr=0.05, precision="fp32", dropout=0.0, aux_dropout=0.0)
    values.update(overrides)
    return TrainConfig(**values)


def test_module_norms_match_a_manual_step_and_tensorboard_reads_back_as_metrics_jsonl(small, tmp_path, monkeypatch):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    first: dict = {}
    original = _Run._train_step

    def recording(self, x, y):  # the first step's batch and the weights it starts from
        if not first:
            first.update(x=x.clone(), y=y.clone(), state=copy.deepcopy(self.model.state_dict()))
        return original(self, x, y)

    monkeypatch.setattr(_Run, "_train_step", recording)
    out = tmp_path / "logged"
    trainer = Trainer(config(out), data=small)
    end = trainer.run()
    assert end.status == "finished"
    events = read_metrics(out)
    steps = [e for e in events if isinstance(e, StepEvent)]
    epochs = [e for e in events if isinstance(e, EpochEvent)]
    assert len(steps) == 8 and len(epochs) == 2

    # norms: every module, every logged step, finite
    for event in steps:
        assert tuple(event.grad_norm) == MODULES and tuple(event.weight_norm) == MODULES
        assert all(math.isfinite(v) and v > 0 for v in (*event.grad_norm.values(), *event.weight_norm.values()))

    # step 1's gradient norms, recomputed by hand from its batch and starting weights
    model = GoogLeNet(num_classes=10, stem="cifar", width=0.125, dropout=0.0, aux_dropout=0.0).to(memory_format=torch.channels_last)
    model.load_state_dict(first["state"])
    model.train()
    outputs = model(first["x"])
    smoothing = config(out).label_smoothing  # the fast preset's 0.1
    loss = F.cross_entropy(outputs.logits, first["y"], label_smoothing=smoothing) + 0.3 * (
        F.cross_entropy(outputs.aux1, first["y"], label_smoothing=smoothing)
        + F.cross_entropy(outputs.aux2, first["y"], label_smoothing=smoothing)
    )
    loss.backward()
    assert steps[0].loss == pytest.approx(loss.item(), rel=1e-5)
    for name in MODULES:
        grads = [p.grad.flatten() for p in model.get_submodule(name).parameters()]
        assert steps[0].grad_norm[name] == pytest.approx(torch.cat(grads).norm().item(), rel=1e-4), name
    # the last step's weight norms are those of the trained model
    for name in MODULES:
        weights = torch.cat([p.detach().flatten() for p in trainer.model.get_submodule(name).parameters()])
        assert steps[-1].weight_norm[name] == pytest.approx(weights.norm().item(), rel=1e-5), name

    # TensorBoard: the same numbers at the same steps
    files = list(out.glob("events.out.tfevents.*"))
    assert len(files) == 1
    board = EventAccumulator(str(out), size_guidance={"scalars": 0, "histograms": 0, "images": 0}).Reload()
    for tag, key in (
        ("loss/total", "loss"),
        ("loss/main", "loss_main"),
        ("loss/aux1", "loss_aux1"),
        ("lr", "lr"),
        ("images_per_s", "images_per_s"),
    ):
        read = board.Scalars(tag)
        assert [s.step for s in read] == [e.step for e in steps], tag
        assert [s.value for s in read] == pytest.approx([getattr(e, key) for e in steps], rel=1e-6), tag
    assert [s.value for s in board.Scalars("grad_norm/inception4c")] == pytest.approx([e.grad_norm["inception4c"] for e in steps], rel=1e-6)
    for head in ("main", "aux1", "aux2"):
        read = board.Scalars(f"accuracy/{head}")
        assert [(s.step, s.value) for s in read] == [(e.step, pytest.approx(getattr(e, f"acc_{head}"), rel=1e-6)) for e in epochs]
    tags = board.Tags()
    assert {"weights/inception4c", "gradients/aux1", "weights/fc"} <= set(tags["histograms"])
    assert len(board.Histograms("weights/inception4c")) == 2
    assert "probe/image" in tags["images"]


def test_no_tensorboard_writes_no_event_files(small, tmp_path):
    out = tmp_path / "quiet"
    Trainer(config(out, max_steps=1, tensorboard=False), data=small).run()
    assert not list(out.glob("events.out.tfevents.*"))
    assert read_metrics(out)[1].grad_norm is not None  # the norms are in metrics.jsonl all the same
