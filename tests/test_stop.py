"""Stop answers within the step in flight (issue 13: it took 15–21 s). Timings are in
``python -m bench.stop``; here the order of events: once Stop is pressed during a step, that step
is the last, the state leaves "running", and the training threads get their priority back."""

import os
import threading
import time

import pytest

from googlenet.model import GoogLeNet
from googlenet.training.trainer import EndEvent, StepEvent, TrainConfig
from googlenet.weights import read_meta, runs_dir
from server.jobs import TrainingJob, _lower_priority, _restore_priority


def test_stop_pressed_during_a_step_ends_the_run_after_that_step(cifar_dir, monkeypatch):
    job = TrainingJob()
    stop_at, calls = 3, []
    forward = GoogLeNet.forward

    def slow_forward(self, *args, **kwargs):
        # one forward per training step (evaluation comes only at the epoch's end): press Stop
        # while step `stop_at` is in flight, as a user would during a slow step
        calls.append(1)
        if self.training and len(calls) == stop_at:
            assert job.stop()
            assert job.status().state == "stopping"
            time.sleep(0.3)  # a slow step: Stop must wait for it, and for nothing after it
        return forward(self, *args, **kwargs)

    monkeypatch.setattr(GoogLeNet, "forward", slow_forward)
    job.start(TrainConfig(data=str(cifar_dir), epochs=1, width=0.125, batch_size=32, log_every=1, out="stop-test"))
    assert job.wait(300)
    status = job.status()
    steps = [e.step for e in status.events if isinstance(e, StepEvent)]
    end = [e for e in status.events if isinstance(e, EndEvent)]
    assert steps == list(range(1, stop_at + 1))  # the step in flight finished; none after it
    assert len(end) == 1 and end[0].status == "stopped" and end[0].step == stop_at
    assert status.state == "stopped" and not status.running
    _, meta = read_meta(runs_dir() / "stop-test" / "last.safetensors")
    assert meta.training["step"] == stop_at and meta.training["batch"] == stop_at


def test_stop_gives_the_training_threads_their_priority_back():
    try:  # raising priority needs CAP_SYS_NICE or RLIMIT_NICE
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
    except (AttributeError, OSError):
        pytest.skip("per-thread priorities are Linux-only")
    lowered, release, seen = threading.Event(), threading.Event(), {}

    def trainer():
        _lower_priority()
        seen["tid"] = threading.get_native_id()
        seen["before"] = os.getpriority(os.PRIO_PROCESS, seen["tid"])
        lowered.set()
        release.wait(30)
        seen["after"] = os.getpriority(os.PRIO_PROCESS, seen["tid"])

    thread = threading.Thread(target=trainer)
    thread.start()
    lowered.wait(30)
    try:
        raised = _restore_priority()
    finally:
        release.set()
        thread.join(30)
    if seen["before"] != 10:
        pytest.skip("lowering the priority was not permitted here")
    if raised == 0:
        pytest.skip("raising the priority back is not permitted here (no CAP_SYS_NICE / RLIMIT_NICE)")
    assert seen["after"] == 0
