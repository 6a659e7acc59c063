"""One background training run at a time, shared by every user of a server (the app's Train tab).

A run started with an :class:`~server.owners.Owner` belongs to it: :meth:`TrainingJob.stop`
refuses anyone else unless told to override (an operator), and everyone sees who runs it (by
anonymised name) and when the trainer frees up. A wall-time limit stops the run with a checkpoint.

The run happens in a thread of the serving process: PyTorch releases the GIL inside its kernels,
so requests keep being answered (measured in ``python -m bench.app_api``). Events are kept in memory
for live plots and are also in ``runs/NAME/metrics.jsonl``, so a restarted server can show the
curves of the last run.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from googlenet.datasets import Dataset, as_dataset, is_cifar10, open_dataset
from googlenet.datasets.cifar10 import CIFAR10, DataError, read_cifar10
from googlenet.training.trainer import (
    EndEvent,
    EpochEvent,
    Event,
    StartEvent,
    StepEvent,
    TrainConfig,
    Trainer,
    TrainingError,
    fit_batch,
    read_metrics,
)
from googlenet.weights import runs_dir
from server.owners import Owner, read_owner, write_owner

__all__ = ["JobBusy", "NotOwner", "JobStatus", "TrainingJob", "latest_run", "limit_malloc_arenas"]

log = logging.getLogger(__name__)


class JobBusy(RuntimeError):
    """A second Start while a run is in progress."""


class NotOwner(PermissionError):
    """A Stop from someone who does not own the run."""


@dataclass(frozen=True)
class JobStatus:
    """A snapshot of the job for a poll: what runs, how far, and every event so far."""

    running: bool
    run: str | None  # run folder name
    out: str | None
    state: str  # idle | starting | running | stopping | finished | stopped | diverged | failed
    message: str
    step: int
    total_steps: int
    images_per_s: float | None
    eta: float | None
    events: list[Event] = field(default_factory=list)
    started: float | None = None
    version: int = 0  # increases with every event: pollers re-draw only when it changes
    owner: Owner | None = None  # None: the operator's (CLI) or an open server's run
    deadline: float | None = None  # wall-clock time (time.time()) at which the run is stopped

    @property
    def progress(self) -> float:
        return self.step / self.total_steps if self.total_steps else 0.0

    @property
    def frees_at(self) -> float | None:
        """When the trainer is expected to be free: the run's ETA, or its wall-time limit if sooner."""
        if not self.running:
            return None
        ends = [t for t in (time.time() + self.eta if self.eta is not None else None, self.deadline) if t is not None]
        return min(ends) if ends else None


class TrainingJob:
    """Start, stop and watch the one training run of this process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # guards the state below
        self._starting = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._events: list[Event] = []
        self._state, self._message = "idle", "no training run yet"
        self._out: Path | None = None
        self._started: float | None = None
        self._data_cache: dict[tuple, CIFAR10 | Dataset] = {}
        self._probe: tuple[tuple, object] | None = None  # (data key, index) → the probe picture
        self._disk: tuple[tuple, JobStatus] | None = None  # last run read from disk, by file and mtime
        self._owner: Owner | None = None
        self._deadline: float | None = None
        self._limit_message = ""

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, config: TrainConfig, owner: Owner | None = None, max_seconds: float | None = None) -> str:
        """Start ``config`` in the background; raises JobBusy, DataError or ValueError at once.
        Returns a note on what was fitted to the data (a batch larger than the set), or "".

        ``owner``: who may stop it (recorded beside its checkpoints); ``max_seconds``: wall time
        after which the run is stopped with a checkpoint."""
        with self._starting:  # one start at a time; status() does not wait while data is read
            if self.running:
                whose = f", started by {self._owner.name}" if self._owner else ""
                raise JobBusy(
                    f"a training run is already in progress ({self._out.name if self._out else 'starting'}{whose}); "
                    + ("wait for it to finish" if self._owner else "stop it first")
                )
            data = self._data(config)  # read before starting so a bad folder errors right away
            _, note = fit_batch(config.batch_size or 1, len(as_dataset(data).train))  # the trainer fits it the same way
            if len(as_dataset(data).train) < 1:
                raise DataError("the training split has no pictures: add pictures to each class folder, or lower the validation share")
            trainer = Trainer(config, data=data)
            with self._lock:
                self._stop = threading.Event()
                self._events = []
                self._state, self._message = "starting", "reading data and building the model"
                self._out = None
                self._started = time.time()
                self._owner = owner
                self._deadline = self._started + max_seconds if max_seconds else None
                self._limit_message = f"stopped at its wall-time limit of {max_seconds / 60:g} min" if max_seconds else ""
                self._thread = threading.Thread(target=self._run, args=(trainer,), name="googlenet-training", daemon=True)
                self._thread.start()
        return note

    def stop(self, by: str | None = None, override: bool = False) -> bool:
        """Ask the run to stop after its current step (it then saves a checkpoint).

        A run with an owner stops only for ``by == owner.key`` or ``override`` (an operator, or a
        server open to all); anyone else gets :class:`NotOwner` with whose run it is."""
        with self._lock:
            if not self.running or self._state not in ("starting", "running", "stopping"):
                return False
            if self._owner is not None and not override and by != self._owner.key:
                raise NotOwner(
                    f"this run was started by {self._owner.name}: only they (or the server's operator) can stop it. "
                    "It keeps training; its curves stay visible here."
                )
            self._stop.set()
            self._state = "stopping"
            self._message = "stopping after the current step; a checkpoint will be saved"
        _restore_priority()  # the last step and the checkpoint must not wait behind a browser
        return True

    def probe_image(self, index: int = 0):
        """The probe test image (H×W×3 uint8) of the data the last run in this process used (a
        streamed set's picture is decoded from its file once)."""
        for key, data in self._data_cache.items():
            if self._probe is not None and self._probe[0] == (key, index):
                return self._probe[1]
            test = data.test if isinstance(data, Dataset) else None
            if test is not None and test.images is None:
                from googlenet.datasets.pictures import read_picture

                try:
                    picture = read_picture(test.files[index]).permute(1, 2, 0).numpy()
                except (OSError, ValueError, IndexError):  # an unreadable file: no picture, not a failed poll
                    picture = None
            else:
                picture = data.test_images[index].permute(1, 2, 0).numpy()
            self._probe = ((key, index), picture)
            return picture
        return None

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the run ends; True if it did within ``timeout``."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        return not self.running

    def status(self) -> JobStatus:
        with self._lock:
            events = list(self._events)
            state, message, out = self._state, self._message, self._out
        if state == "idle":  # nothing started in this process: show the last run on disk
            return self._last_run_status()
        return _status(events, self.running, state, message, out, self._started, self._owner, self._deadline)

    # -- internals --

    def _data(self, config: TrainConfig) -> CIFAR10 | Dataset:
        """The run's data, whatever its format (CIFAR-10, CIFAR-100, an image folder or a .zip of
        one; see :func:`googlenet.datasets.open_dataset`); the last one is kept for the next run."""
        folder = Path(config.data).expanduser()
        key = (str(folder.resolve()), config.input_size, config.val_split, config.seed)
        if key not in self._data_cache:
            if is_cifar10(folder) or not folder.exists():  # a missing folder: CIFAR-10's message says what to fetch
                data = read_cifar10(folder)
            else:
                data = open_dataset(folder, input_size=config.input_size, val_split=config.val_split, seed=config.seed)
            self._data_cache = {key: data}  # keep one data set in memory
            self._probe = None
        return self._data_cache[key]

    def _run(self, trainer: Trainer) -> None:
        _lower_priority()
        try:
            trainer.run(self._on_event, self._stop)
        except (TrainingError, DataError, ValueError, OSError) as error:
            self._fail(str(error))
        except Exception as error:  # the thread's last line of defence: a bug must not look like "running"
            log.exception("training thread failed")
            self._fail(f"training failed unexpectedly ({type(error).__name__}: {error})")

    def _fail(self, message: str) -> None:
        with self._lock:
            if self._state != "diverged":  # the trainer already reported its own clear message
                self._state, self._message = "failed", message

    def _on_event(self, event: Event) -> None:
        with self._lock:
            self._events.append(event)
            if isinstance(event, StartEvent):
                self._out = Path(event.out)
                self._state, self._message = "running", f"training {event.run} on {event.device}"
                if self._owner is not None:
                    write_owner(self._out, self._owner)  # before the first checkpoint is listed anywhere
            elif isinstance(event, EndEvent):
                limited = event.status == "stopped" and self._deadline is not None and time.time() >= self._deadline
                self._state, self._message = event.status, (f"{self._limit_message}; {event.message}" if limited else event.message)
            elif self._state == "starting":
                self._state = "running"
            if self._deadline is not None and time.time() >= self._deadline and not self._stop.is_set():
                self._stop.set()  # the trainer checks it after every step and saves a checkpoint
                self._state, self._message = "stopping", self._limit_message

    def _last_run_status(self) -> JobStatus:
        """After a restart: the newest run's curves, read back from its metrics.jsonl (cached)."""
        run = latest_run()
        if run is None:
            return JobStatus(False, None, None, "idle", "no training run yet", 0, 0, None, None)
        stat = (run / "metrics.jsonl").stat()
        key = (str(run), stat.st_size, stat.st_mtime_ns)
        if self._disk is not None and self._disk[0] == key:
            return self._disk[1]
        events = read_metrics(run)
        ended = next((e for e in reversed(events) if isinstance(e, EndEvent)), None)
        message = f"last run {run.name}: " + (ended.message if ended else "interrupted (no end recorded); resume it with --resume")
        status = _status(events, False, ended.status if ended else "stopped", message, run, None, read_owner(run))
        self._disk = (key, status)
        return status


def _status(
    events: list[Event],
    running: bool,
    state: str,
    message: str,
    out: Path | None,
    started: float | None,
    owner: Owner | None = None,
    deadline: float | None = None,
) -> JobStatus:
    start = next((e for e in events if isinstance(e, StartEvent)), None)
    last_step = next((e for e in reversed(events) if isinstance(e, StepEvent)), None)
    last_epoch = next((e for e in reversed(events) if isinstance(e, EpochEvent)), None)
    step = max(last_step.step if last_step else 0, last_epoch.step if last_epoch else 0, start.start_step if start else 0)
    return JobStatus(
        running=running,
        run=out.name if out else None,
        out=str(out) if out else None,
        state=state,
        message=message,
        step=step,
        total_steps=start.total_steps if start else 0,
        images_per_s=last_step.images_per_s if last_step else None,
        eta=last_step.eta if (last_step and running) else None,
        events=events,
        started=started,
        version=len(events),
        owner=owner,
        deadline=deadline if running else None,
    )


TRAINING_NICENESS = 10


def _lower_priority(niceness: int = TRAINING_NICENESS) -> None:
    """Let requests go first: on Linux, nice is per thread, and the OpenMP workers this thread
    starts for its kernels inherit it. Serving threads keep their priority; training takes what
    they leave (measured in ``python -m bench.reliability``)."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), niceness)
    except (AttributeError, OSError):
        pass  # not Linux, or not allowed: train at normal priority


def _restore_priority(niceness: int = TRAINING_NICENESS) -> int:
    """Give the training thread and its OpenMP workers normal priority again (on Stop).

    At nice 10 a thread gets about a tenth of a core that something at nice 0 also wants: with a
    browser drawing the curves on the same 2 cores, the step in flight and the checkpoint after
    it took 15–21 s (issue 13; 5.9 s → 72 s in a measurement with two busy processes beside it).
    Raising priority needs CAP_SYS_NICE (root, most containers) or RLIMIT_NICE; where neither is
    given, Stop still ends after the current step, at low priority. Returns the threads raised."""
    raised = 0
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return 0  # not Linux: priorities were never lowered
    for task in tasks:
        try:
            tid = int(task)
            if os.getpriority(os.PRIO_PROCESS, tid) == niceness:
                os.setpriority(os.PRIO_PROCESS, tid, 0)
                raised += 1
        except (ValueError, OSError):
            continue  # the thread ended, or raising is not permitted here
    return raised


def limit_malloc_arenas(arenas: int = 2) -> bool:
    """Cap glibc's per-thread heaps in a process that serves requests from many threads while it
    trains (what ``MALLOC_ARENA_MAX`` does, set from inside). Each thread that allocates under
    contention gets its own heap, and memory freed in one is not reused by another: with the cap,
    the app measured 1.05 GB instead of 1.10 GB serving and 2.0 instead of 2.17 GB at its peak
    (``python -m bench.app_api``), at the same latencies. Call it before threads start; a no-op (False)
    where the C library is not glibc."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(-8, arenas))  # -8: M_ARENA_MAX in glibc's malloc.h
    except (OSError, AttributeError):
        return False


def latest_run(root: Path | None = None) -> Path | None:
    """The run folder whose metrics.jsonl changed last."""
    root = root if root is not None else runs_dir()
    if not root.is_dir():
        return None
    runs = [p.parent for p in root.glob("*/metrics.jsonl")]
    return max(runs, key=lambda p: (p / "metrics.jsonl").stat().st_mtime_ns, default=None)
