import json

import pytest

from googlenet.datasets.cifar10 import DataError
from googlenet.training.trainer import TrainConfig
from googlenet.weights import runs_dir
from server.jobs import JobBusy, TrainingJob, latest_run


def test_bad_data_fails_at_start(tmp_path):
    job = TrainingJob()
    with pytest.raises(DataError, match="not found"):
        job.start(TrainConfig(data=str(tmp_path / "missing")))
    assert not job.running and job.status().state == "idle"


def test_one_run_at_a_time_and_stop(cifar_dir):
    job = TrainingJob()
    job.start(TrainConfig(data=str(cifar_dir), epochs=1, width=0.125, batch_size=64, out="busy"))
    try:
        with pytest.raises(JobBusy, match="already in progress"):
            job.start(TrainConfig(data=str(cifar_dir), epochs=1, width=0.125, out="second"))
    finally:
        assert job.stop()
        assert job.wait(120)
    status = job.status()
    assert status.state == "stopped" and not status.running and status.run == "busy"
    assert (runs_dir() / "busy" / "last.safetensors").is_file()
    assert not job.stop()  # nothing left to stop


def test_a_new_process_shows_the_last_runs_curves():
    run = runs_dir() / "old-run"
    run.mkdir(parents=True)
    lines = [
        {
            "kind": "start",
            "run": "old-run",
            "out": str(run),
            "device": "cpu",
            "steps_per_epoch": 10,
            "total_steps": 20,
            "start_step": 0,
            "params": 1,
            "config": {},
        },
        *(
            {
                "kind": "step",
                "step": i,
                "epoch": i / 10,
                "loss": 2.0,
                "loss_main": 1.5,
                "loss_aux1": 2.1,
                "loss_aux2": 2.2,
                "lr": 0.1,
                "images_per_s": 100.0,
                "elapsed": i,
                "eta": 1.0,
            }
            for i in range(1, 8)
        ),
    ]
    (run / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines) + '{"kind": "step", "ste')  # torn last line
    assert latest_run() == run
    status = TrainingJob().status()
    assert not status.running and status.run == "old-run" and status.step == 7 and status.total_steps == 20
    assert "interrupted" in status.message and "--resume" in status.message
    assert sum(e.kind == "step" for e in status.events) == 7


def test_a_crashing_trainer_is_reported_not_hidden(monkeypatch, cifar_dir):
    from server import jobs

    class Boom:
        def __init__(self, *a, **k):
            pass

        def run(self, on_event, stop):
            raise KeyError("bug")

    monkeypatch.setattr(jobs, "Trainer", Boom)
    job = TrainingJob()
    job.start(TrainConfig(data=str(cifar_dir)))
    job.wait(10)
    status = job.status()
    assert status.state == "failed" and "KeyError" in status.message


def test_a_run_stops_only_for_its_owner_or_an_override(cifar_dir):
    from server.jobs import NotOwner
    from server.owners import Owner, read_owner

    job = TrainingJob()
    owner = Owner("a1" * 10, "visitor amber otter")
    job.start(TrainConfig(data=str(cifar_dir), epochs=1, width=0.125, batch_size=64, out="owned"), owner=owner)
    try:
        with pytest.raises(JobBusy, match="started by visitor amber otter"):
            job.start(TrainConfig(data=str(cifar_dir), epochs=1, width=0.125, out="second"))
        with pytest.raises(NotOwner, match="started by visitor amber otter: only they"):
            job.stop(by="b2" * 10)
        with pytest.raises(NotOwner):
            job.stop()  # nobody in particular
        assert job.status().running and job.status().owner == owner
    finally:
        assert job.stop(by=owner.key)
        assert job.wait(120)
    assert job.status().state == "stopped"
    assert read_owner(runs_dir() / "owned") == owner  # recorded beside the checkpoints
    job.start(TrainConfig(data=str(cifar_dir), epochs=1, width=0.125, batch_size=64, out="owned2"), owner=owner)
    assert job.stop(by="someone else", override=True)  # an operator
    assert job.wait(120)


def test_the_wall_time_limit_stops_the_run_with_a_checkpoint(cifar_dir):
    job = TrainingJob()
    job.start(TrainConfig(data=str(cifar_dir), epochs=5, width=0.125, batch_size=64, out="limited"), max_seconds=0.5)
    assert job.status().deadline is not None
    assert job.wait(120)
    status = job.status()
    assert status.state == "stopped" and "wall-time limit of 0.00833333 min" in status.message
    assert (runs_dir() / "limited" / "last.safetensors").is_file()
