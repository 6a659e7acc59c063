"""``python -m bench.stop``: how long Stop takes, with the CPU shared as on a laptop with a browser.

Trains the Train tab's CPU defaults (width 0.25, batch 64, CIFAR stem) through
:class:`server.jobs.TrainingJob` (so at the training thread's lowered priority) while
``--busy`` processes at normal priority keep the cores busy (a browser drawing the curves did
this in issue 13), presses Stop after a few steps and prints ``name=value`` lines: the step time,
the time from Stop to the state leaving "stopping", and the part of it after the step in flight
(the checkpoint and the end). ``--compare`` repeats it without giving the training threads their
priority back on Stop (the behaviour before issue 13). Headline last: ``stop_to_stopped_s``.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

ROOT = Path(__file__).resolve().parent.parent


def measure(data: str, busy: int, restore: bool, warm_steps: int = 6) -> dict[str, float]:
    from googlenet.training.trainer import EndEvent, StepEvent, TrainConfig
    from server import jobs

    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(busy)]
    job = jobs.TrainingJob()
    stamps: list[tuple[float, object]] = []
    record = job._on_event

    def on_event(event):
        stamps.append((time.perf_counter(), event))
        record(event)

    job._on_event = on_event
    try:
        with mock.patch.object(jobs, "_restore_priority", jobs._restore_priority if restore else (lambda *a: 0)):
            config = TrainConfig(data=data, epochs=3, batch_size=64, lr=0.1, width=0.25, stem="cifar", log_every=1)
            job.start(config)
            while job.status().step < warm_steps and job.running:
                time.sleep(0.05)
            steps = [t for t, e in stamps if isinstance(e, StepEvent)]
            step_s = (steps[-1] - steps[-4]) / 3
            pressed = time.perf_counter()
            job.stop()
            job.wait(600)
            ended = time.perf_counter()
    finally:
        for hog in hogs:
            hog.kill()
    last_step = max(t for t, e in stamps if isinstance(e, StepEvent))
    end = next(t for t, e in stamps if isinstance(e, EndEvent))
    return {"step_s": step_s, "stop_to_stopped_s": ended - pressed, "after_last_step_s": end - last_step}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.environ.get("GOOGLENET_DATA", str(ROOT.parent / "shared" / "data" / "cifar10-subset")))
    parser.add_argument("--busy", type=int, default=2, help="processes at normal priority keeping the CPU busy (default 2)")
    parser.add_argument("--compare", action="store_true", help="also measure without the priority restore on Stop")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as runs:
        os.environ["GOOGLENET_RUNS"] = runs
        os.environ.setdefault("GOOGLENET_DEVICE", "cpu")
        print(f"device=cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores), busy_processes={args.busy}")
        if args.compare:
            before = measure(args.data, args.busy, restore=False)
            for name, value in before.items():
                print(f"without_restore_{name}={value:.2f}")
        after = measure(args.data, args.busy, restore=True)
        print(f"step_s={after['step_s']:.2f}")
        print(f"after_last_step_s={after['after_last_step_s']:.2f}")
        print(f"stop_to_stopped_s={after['stop_to_stopped_s']:.2f}")


if __name__ == "__main__":
    main()
