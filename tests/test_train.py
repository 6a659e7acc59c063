import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from googlenet.datasets.cifar10 import CIFAR10
from googlenet.training.trainer import EndEvent, EpochEvent, StepEvent, TrainConfig, Trainer, TrainingDiverged, TrainingError, read_metrics
from googlenet.weights import find_checkpoints, load_model, read_checkpoint, save_checkpoint

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def small(cifar):
    """512 training and 256 test images of the real subset: enough to check the mechanics."""
    return CIFAR10(
        cifar.train_images[:512], cifar.train_labels[:512], cifar.test_images[:256], cifar.test_labels[:256], cifar.classes, cifar.root
    )


def tiny(out, **overrides):
    values = dict(out=str(out), epochs=2, batch_size=64, width=0.125, seed=7, lr=0.05)
    values.update(overrides)
    return TrainConfig(**values)


def weights_of(path):
    model, _ = read_checkpoint(path)
    return model.state_dict()


@pytest.mark.slow
def test_width_quarter_learns_well_above_chance(cifar, tmp_path, capsys):
    config = TrainConfig(out=str(tmp_path / "learn"), epochs=2, width=0.25, seed=0)
    events = []
    end = Trainer(config, data=cifar).run(events.append)
    assert end.status == "finished"
    accuracy = end.accuracy["main"]
    with capsys.disabled():
        print(
            f"\n[report] width 0.25, 2 epochs on the 4,068-image subset: test accuracy main={accuracy:.3f} aux1={end.accuracy['aux1']:.3f} aux2={end.accuracy['aux2']:.3f} in {end.seconds:.0f} s"
        )
    assert accuracy >= 0.30
    # what the app and the CLI show: step and epoch events, also in metrics.jsonl
    steps = [e for e in events if isinstance(e, StepEvent)]
    assert len(steps) == 62 and steps[-1].step == 62
    assert all(e.loss_aux1 is not None and e.images_per_s > 0 for e in steps)
    assert [e.epoch for e in events if isinstance(e, EpochEvent)] == [1, 2]
    assert [type(e) for e in read_metrics(tmp_path / "learn")] == [type(e) for e in events]
    # the CLI's eval of the checkpoint (BN folded) agrees with the trainer's own evaluation
    from googlenet.analysis.evaluate import evaluate

    result = evaluate(load_model(end.checkpoint), cifar.test_images, cifar.test_labels)
    assert abs(result.accuracy["main"] - accuracy) < 0.003


def test_stop_then_resume_equals_an_uninterrupted_run(small, tmp_path):
    full = Trainer(tiny(tmp_path / "full"), data=small).run()
    assert full.status == "finished" and full.step == 16

    stop = threading.Event()

    def stop_at_5(event):
        if isinstance(event, StepEvent) and event.step == 5:
            stop.set()

    first = Trainer(tiny(tmp_path / "split"), data=small).run(stop_at_5, stop)
    assert first.status == "stopped" and first.step == 5
    assert json.loads((tmp_path / "split" / "config.json").read_text())["width"] == 0.125
    resumed_events = []
    second = Trainer(tiny(tmp_path / "split", resume=True), data=small).run(resumed_events.append)
    assert second.status == "finished" and second.step == 16
    assert [e.step for e in resumed_events if isinstance(e, StepEvent)][0] == 6  # continues at the next step
    a, b = weights_of(full.checkpoint), weights_of(second.checkpoint)
    for key in a:
        assert torch.equal(a[key], b[key]), f"{key} differs after stop + resume"
    # metrics.jsonl holds each step once
    steps = [e.step for e in read_metrics(tmp_path / "split") if isinstance(e, StepEvent)]
    assert steps == list(range(1, 17))


class _RunsCode:
    """Unpickling this would create the file ``ran``: what a malicious pickle could do."""

    def __init__(self, ran):
        self.ran = ran

    def __reduce__(self):
        return (Path.touch, (self.ran,))


def test_resume_reads_the_state_file_as_tensors_only_and_explains_what_it_cannot_read(small, tmp_path):
    out = tmp_path / "state"
    Trainer(tiny(out, max_steps=2), data=small).run()
    model, meta = read_checkpoint(out / "last.safetensors")
    state = out / meta.training["state_file"]
    assert state.name == "state-00000002.pt" and state.is_file()
    assert find_checkpoints(tmp_path) == [out / "last.safetensors"]  # the app's model picker never lists it
    ran = tmp_path / "ran"
    torch.save({"position": _RunsCode(ran)}, state)
    with pytest.raises(TrainingError, match="cannot read the training state"):
        Trainer(tiny(out, resume=True), data=small).run()
    assert not ran.exists(), "the state file was unpickled with code execution"
    # a run checkpointed by the trainer before state files were torch.save files
    training = {**meta.training, "state_file": "state-00000002.safetensors"}
    save_checkpoint(out / "last.safetensors", model, replace(meta, training=training))
    with pytest.raises(TrainingError, match="earlier version of the trainer"):
        Trainer(tiny(out, resume=True), data=small).run()


def test_a_second_run_into_the_same_folder_is_refused(small, tmp_path):
    Trainer(tiny(tmp_path / "once", max_steps=2), data=small).run()
    with pytest.raises(ValueError, match="already holds a run"):
        Trainer(tiny(tmp_path / "once"), data=small).run()
    with pytest.raises(ValueError, match="nothing to resume"):
        Trainer(tiny(tmp_path / "never", resume=True), data=small).run()


def test_non_finite_loss_stops_with_a_clear_error_and_keeps_the_last_good_checkpoint(small, tmp_path, monkeypatch):
    from googlenet.training import trainer as train

    original = train._Run._loss

    def poisoned(self, outputs, y):
        loss, parts = original(self, outputs, y)
        if self.step >= 10:  # after the first epoch's checkpoint (8 steps)
            loss = loss * float("nan")
            parts = parts * float("nan")
        return loss, parts

    monkeypatch.setattr(train._Run, "_loss", poisoned)
    events = []
    with pytest.raises(TrainingDiverged, match="diverged at step 11.*last good checkpoint"):
        Trainer(tiny(tmp_path / "nan"), data=small).run(events.append)
    end = events[-1]
    assert isinstance(end, EndEvent) and end.status == "diverged"
    model, meta = read_checkpoint(tmp_path / "nan" / "last.safetensors")  # finite weights of step 8
    assert meta.training["step"] == 8


def test_absurd_learning_rate_diverges_with_a_message(small, tmp_path):
    with pytest.raises(TrainingDiverged, match="Lower the learning rate"):
        Trainer(tiny(tmp_path / "lr", lr=1e12, epochs=1), data=small).run()


def test_unwritable_run_folder(small, tmp_path):
    if os.geteuid() == 0:
        target = Path("/proc/googlenet-run")  # even root cannot create files here
    else:
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o500)
        target = locked / "run"
    with pytest.raises((TrainingError, OSError)) as error:
        Trainer(tiny(target), data=small).run()
    assert str(target) in str(error.value) or "not writable" in str(error.value) or "No such file" in str(error.value)


def test_guide_preset_is_the_guides_recipe(small, tmp_path):
    config = TrainConfig(preset="guide", out=str(tmp_path / "g"), max_steps=1, batch_size=8)
    assert (config.lr, config.momentum, config.weight_decay, config.nesterov) == (0.05, 0.9, 1e-4, False)
    assert (config.schedule, config.step_size, config.gamma, config.epochs) == ("step", 30, 0.1, 100)
    assert (config.input_size, config.normalize, config.pad_mode, config.crop_padding, config.flip) == (
        224,
        "imagenet",
        "constant",
        4,
        True,
    )
    assert (config.aux_weight, config.label_smoothing, config.stem, config.batch_norm) == (0.3, 0.0, "imagenet", False)
    assert TrainConfig(preset="guide").batch_size == 64
    from googlenet.training.trainer import _Run

    run = _Run(replace(config, width=0.125), small, torch.device("cpu"), 0, 1, None, threading.Event())
    assert isinstance(run.optimizer, torch.optim.SGD)
    group = run.optimizer.param_groups[0]
    assert (group["lr"], group["momentum"], group["weight_decay"], group["nesterov"]) == (0.05, 0.9, 1e-4, False)
    assert isinstance(run.scheduler, torch.optim.lr_scheduler.StepLR) and run.scheduler.step_size == 30 and run.scheduler.gamma == 0.1
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in run.model.modules())
    # loss = main + 0.3 × (aux1 + aux2), each plain cross-entropy
    logits = torch.randn(3, 4, 10)
    y = torch.tensor([1, 2, 3, 4])
    from googlenet.model import GoogLeNetOutputs

    loss, _ = run._loss(GoogLeNetOutputs(*logits), y)
    expected = F.cross_entropy(logits[0], y) + 0.3 * (F.cross_entropy(logits[1], y) + F.cross_entropy(logits[2], y))
    assert torch.allclose(loss, expected)
    # the on-device transform equals the guide's torchvision transforms up to PIL's uint8 rounding
    import torchvision.transforms as T
    from PIL import Image

    from googlenet.datasets.cifar10 import Augment, DeviceBatches

    images = small.train_images[:4]
    plain = Augment(config.preprocess, crop_padding=0, flip=False)
    ours, _ = next(DeviceBatches(images, torch.arange(4), 4, plain, torch.device("cpu"), train=False).epoch(0))
    guide = T.Compose([T.Resize(224), T.ToTensor(), T.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])])
    for image, x in zip(images, ours):
        reference = guide(Image.fromarray(image.permute(1, 2, 0).numpy()))
        assert (reference - x).abs().max() < 0.5 / 255 / 0.224 * 2


def test_bad_config_values_are_rejected():
    with pytest.raises(ValueError, match="unknown preset"):
        TrainConfig(preset="turbo")
    with pytest.raises(ValueError, match="lr must be a positive number"):
        TrainConfig(lr=-1)
    with pytest.raises(ValueError, match="input_size"):
        TrainConfig(stem="imagenet", input_size=32)


KILL_SCRIPT = textwrap.dedent(
    """
    import sys, time
    import torch
    import googlenet.weights as w
    from googlenet.datasets.cifar10 import read_cifar10, CIFAR10
    from googlenet.training.trainer import TrainConfig, Trainer
    out, data, slow_after = sys.argv[1], sys.argv[2], int(sys.argv[3])
    calls = {"n": 0}
    def slowed(real):  # counts every file a checkpoint writes: state files (torch.save), models (save_file)
        def write(obj, path, *args, **kwargs):
            calls["n"] += 1
            if calls["n"] > slow_after:  # write half a file, then hang: the test kills us here
                open(path, "wb").write(b"\\x00" * 1000)
                print("WRITING", flush=True)
                time.sleep(60)
            return real(obj, path, *args, **kwargs)
        return write
    w.save_file = slowed(w.save_file)
    torch.save = slowed(torch.save)
    c = read_cifar10(data)
    small = CIFAR10(c.train_images[:256], c.train_labels[:256], c.test_images[:128], c.test_labels[:128], c.classes, c.root)
    Trainer(TrainConfig(out=out, epochs=3, batch_size=64, width=0.125, seed=1), data=small).run()
    """
)


@pytest.mark.slow
def test_sigkill_during_a_checkpoint_write_never_leaves_a_corrupt_newest_checkpoint(cifar_dir, tmp_path):
    script = tmp_path / "kill_me.py"
    script.write_text(KILL_SCRIPT)
    out = tmp_path / "killed"
    # epoch 1 writes state + model (2 saves); the third save (epoch 2's state file) hangs half-written
    proc = subprocess.Popen(
        [sys.executable, str(script), str(out), str(cifar_dir), "2"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        deadline = time.time() + 240
        line = ""
        while time.time() < deadline and "WRITING" not in line:
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                break
        assert "WRITING" in line, "the training subprocess never reached the checkpoint write"
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert list(out.glob(".*.tmp")), "the half-written temporary file should be what the kill left behind"
    newest = find_checkpoints(out.parent)[0]
    assert newest.parent == out
    loaded = load_model(newest)  # loads: the torn file never replaced a good one
    assert loaded.training["step"] == 4
    from googlenet.datasets.cifar10 import read_cifar10

    c = read_cifar10(cifar_dir)
    small = CIFAR10(c.train_images[:256], c.train_labels[:256], c.test_images[:128], c.test_labels[:128], c.classes, c.root)
    end = Trainer(TrainConfig(out=str(out), resume=True), data=small).run()
    assert end.status == "finished" and end.step == 12


DDP_SCRIPT = textwrap.dedent(
    """
    import os, sys, torch
    from googlenet.datasets.cifar10 import read_cifar10, CIFAR10
    from googlenet.training.trainer import TrainConfig, Trainer
    out, data, dump = sys.argv[1], sys.argv[2], sys.argv[3]
    c = read_cifar10(data)
    small = CIFAR10(c.train_images[:512], c.train_labels[:512], c.test_images[:128], c.test_labels[:128], c.classes, c.root)
    trainer = Trainer(TrainConfig(out=out, epochs=1, batch_size=64, width=0.125, seed=3, device="cpu"), data=small)
    trainer.run()
    rank = os.environ["RANK"]
    torch.save({k: v.detach().clone() for k, v in trainer.model.named_parameters()}, f"{dump}/rank{rank}.pt")
    """
)


@pytest.mark.slow
def test_ddp_with_two_gloo_processes(cifar_dir, tmp_path):
    script = tmp_path / "ddp.py"
    script.write_text(DDP_SCRIPT)
    out = tmp_path / "ddp-run"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--master_port=29517",
        str(script),
        str(out),
        str(cifar_dir),
        str(tmp_path),
    ]
    result = subprocess.run(
        cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    )
    assert result.returncode == 0, result.stderr[-3000:]
    a = torch.load(tmp_path / "rank0.pt", weights_only=True)
    b = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert len(a) == len(b) > 100
    for key in a:  # parameters; BN running statistics stay per rank, as in any DDP run without SyncBatchNorm
        assert torch.equal(a[key], b[key]), f"{key} differs between ranks"
    files = sorted(p.name for p in out.iterdir())
    assert "last.safetensors" in files and "metrics.jsonl" in files
    steps = [e for e in read_metrics(out) if isinstance(e, StepEvent)]
    assert [e.step for e in steps] == list(range(1, 9))  # 512 images / global batch 64, logged once (rank 0)
    assert all(e.images_per_s > 0 for e in steps)


@pytest.mark.parametrize("images", [64, 128, 256, 512])
def test_short_runs_have_a_valid_schedule(cifar, tmp_path, images):
    """One epoch of one to eight steps: one-cycle needs room for its phases (a constant rate otherwise)."""
    data = CIFAR10(
        cifar.train_images[:images], cifar.train_labels[:images], cifar.test_images[:64], cifar.test_labels[:64], cifar.classes, cifar.root
    )
    end = Trainer(TrainConfig(out=str(tmp_path / f"short{images}"), epochs=1, batch_size=64, width=0.125), data=data).run()
    assert end.status == "finished" and end.step == images // 64


def test_resume_refuses_changed_settings_and_lifts_the_step_limit(small, tmp_path):
    first = Trainer(tiny(tmp_path / "cut", max_steps=3), data=small).run()
    assert first.status == "finished" and first.step == 3
    with pytest.raises(ValueError, match=r"cannot change: lr \(0\.05 saved, 0\.5 given\)"):
        Trainer(tiny(tmp_path / "cut", resume=True, lr=0.5), data=small).run()
    again = Trainer(tiny(tmp_path / "cut", resume=True, max_steps=3), data=small).run()
    assert again.status == "finished" and again.step == 3  # already there: not one step more
    # the limit was the first session's: the resumed one runs to the end of the schedule
    end = Trainer(TrainConfig(out=str(tmp_path / "cut"), resume=True), data=small).run()
    assert end.status == "finished" and end.step == 16


def test_pruning_keeps_epoch_one_the_powers_of_two_and_the_newest_and_takes_their_microscope_caches_along(small, tmp_path):
    out = tmp_path / "prune"

    def add_index(event):  # what the app's microscope leaves beside a checkpoint
        if isinstance(event, EpochEvent):
            Path(event.checkpoint).with_name(f"epoch-{event.epoch:03d}.examples.safetensors").write_bytes(b"x")

    # 5 epochs of 4 steps: epoch 3 is the one neither first, a power of two (kept for the run timeline) nor newest
    Trainer(tiny(out, epochs=5, batch_size=128, keep_checkpoints=1, tensorboard=False), data=small).run(add_index)
    assert sorted(p.name for p in out.glob("state-*")) == ["state-00000020.pt"]  # the newest checkpoint's only
    names = sorted(p.name for p in out.glob("*.safetensors"))
    assert names == [
        *(f"epoch-{e:03d}{suffix}" for e in (1, 2, 4, 5) for suffix in (".examples.safetensors", ".safetensors")),
        "last.safetensors",
    ]


def test_presets_fitted_to_the_device_leave_the_guide_as_written():
    from googlenet.training.trainer import PRESETS, preset_for_device

    cpu, gpu = preset_for_device("fast", torch.device("cpu")), preset_for_device("fast", torch.device("cuda"))
    assert (cpu["batch_size"], cpu["lr"], cpu["width"]) == (64, 0.1, 0.25)
    assert (gpu["batch_size"], gpu["lr"], gpu["width"]) == (128, 0.2, 1.0)
    assert preset_for_device("guide", torch.device("cpu")) == PRESETS["guide"]
    assert PRESETS["fast"]["batch_size"] == 128  # the CLI's preset itself is untouched


def test_one_process_under_torchrun_trains_through_a_process_group(small, tmp_path, monkeypatch):
    """``torchrun --nproc_per_node=1`` on a one-GPU machine runs the DDP path (NCCL there, gloo here)."""
    import socket

    import torch.distributed as dist

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    launcher = {"TORCHELASTIC_RUN_ID": "test", "RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1"}
    for name, value in {**launcher, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}.items():
        monkeypatch.setenv(name, value)
    seen = []

    def on_event(event):
        if isinstance(event, StepEvent):
            seen.append(dist.get_backend() if dist.is_initialized() else None)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # two OpenMP threads on two busy cores made these two steps take 24 s instead of 3
    try:
        end = Trainer(tiny(tmp_path / "run", epochs=1, max_steps=2, batch_size=16), data=small).run(on_event)
    finally:
        torch.set_num_threads(threads)
    assert end.status == "finished" and seen == ["gloo", "gloo"]
    assert not dist.is_initialized()  # the trainer ends the group it started
