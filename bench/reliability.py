"""``python -m bench.reliability``: load, soak, faults and hostile input against the real app.

Prints figures as ``name=value`` and ends with ``ok=true`` only when every one holds:
``hostile_inputs_tried ≥ 12``, ``tracebacks=0``, ``requests_sent ≥ 100``,
``requests_failed=0``, ``rss_growth_pct < 10``, ``checkpoint_corruptions=0``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from bench.app_api import PHOTO, ROOT, launch, rss_mb

from .hostile import checkpoint_cases, image_cases, write

EXPLORE_ARGS = ("(top class)", "cam", "Inferno", 0.6, "inception4c.branch2")


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def load_test(url: str, data: str, report: dict) -> None:
    """20 concurrent classifies and 5 concurrent explores, 4 rounds, while a run trains."""
    from gradio_client import Client, handle_file

    client = Client(url, verbose=False)
    client.predict(handle_file(str(PHOTO)), "random", 5, api_name="/classify")
    client.predict("fast", 5, 128, 0.2, 0.25, "cifar", 0.3, data, api_name="/train_start")
    deadline = time.time() + 120
    while time.time() < deadline and client.predict(api_name="/train_status")["steps_logged"] < 3:
        time.sleep(0.5)
    time.sleep(3)
    quiet_rate = client.predict(api_name="/train_status")["images_per_s"]
    classify_ms, explore_ms, failures = [], [], []
    lock = threading.Lock()

    def classify(_):
        c = Client(url, verbose=False)
        started = time.perf_counter()
        try:
            result = c.predict(handle_file(str(PHOTO)), "random", 5, api_name="/classify")
            ok = set(result["predictions"]) == {"main", "aux1", "aux2"} and len(result["predictions"]["main"]) == 5
        except Exception as error:  # counted as a failed request
            ok, result = False, f"{type(error).__name__}: {str(error)[:200]}"
        with lock:
            (classify_ms if ok else failures).append((time.perf_counter() - started) * 1000 if ok else f"classify: {str(result)[:200]}")

    def explore(i):
        c = Client(url, verbose=False)
        started = time.perf_counter()
        try:
            heads, atlas, *_ = c.predict(handle_file(str(PHOTO)), "random", str(i), *EXPLORE_ARGS[1:], api_name="/explore")
            maps = [t for t in json.loads(atlas["plot"])["data"] if t["type"] == "heatmap"]
            ok, problem = len(maps) == 36, f"{len(maps)} maps in the atlas"
        except Exception as error:
            ok, problem = False, f"{type(error).__name__}: {str(error)[:200]}"
        with lock:
            (explore_ms if ok else failures).append((time.perf_counter() - started) * 1000 if ok else f"explore: {problem}")

    rates = []
    with ThreadPoolExecutor(max_workers=25) as pool:
        for round_ in range(4):
            jobs = [pool.submit(classify, i) for i in range(20)] + [pool.submit(explore, round_ * 5 + i) for i in range(5)]
            for job in jobs:
                job.result(timeout=300)
            rates.append(client.predict(api_name="/train_status")["images_per_s"] or 0)
    status = client.predict(api_name="/train_status")
    client.predict(api_name="/train_stop")
    report["requests_sent"] += 100
    report["requests_failed"] += len(failures)
    report["failures"] += failures
    print(f"load_classify_p50_ms={percentile(classify_ms, 50):.0f} p95_ms={percentile(classify_ms, 95):.0f}  (20 concurrent, 4 rounds)")
    print(f"load_explore_p50_ms={percentile(explore_ms, 50):.0f} p95_ms={percentile(explore_ms, 95):.0f}  (5 concurrent, 4 rounds)")
    print(
        f"load_training_images_per_s_quiet={quiet_rate:.0f} under_load={statistics.median(rates):.0f}  (training kept running: {status['running']})"
    )
    print("load_queue=default_concurrency_limit=2, classify concurrency_limit=4, explore 2 (shared id), max_size=128")
    deadline = time.time() + 120
    while time.time() < deadline and client.predict(api_name="/train_status")["running"]:
        time.sleep(0.5)


def hostile(url: str, workdir: Path, report: dict) -> None:
    """Every hostile image through /classify and /explore, every bad checkpoint through the upload."""
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    client = Client(url, verbose=False)
    tried = 0
    for case, path in write(image_cases(), workdir / "hostile"):
        for endpoint, args in (("/classify", ("random", 3)), ("/explore", ("random", *EXPLORE_ARGS))):
            tried += 1
            report["requests_sent"] += 1
            try:
                client.predict(handle_file(str(path)), *args, api_name=endpoint)
                outcome = "ok"
            except AppError as error:
                outcome = str(error)
            except Exception as error:  # transport-level failure: not a clear message
                outcome = f"TRANSPORT {type(error).__name__}: {error}"
            _judge(case, outcome, report)
    from googlenet.model import GoogLeNet
    from googlenet.preprocess import Preprocess
    from googlenet.weights import CIFAR10_CLASSES, CheckpointMeta, save_checkpoint

    good = save_checkpoint(
        workdir / "good.safetensors",
        GoogLeNet(num_classes=10, stem="cifar", width=0.125),
        CheckpointMeta(CIFAR10_CLASSES, Preprocess(32, 32, (0.5,) * 3, (0.25,) * 3)),
    )
    big = workdir / "huge.safetensors"
    with open(big, "wb") as f:
        f.truncate(210 * 2**20)  # over the 200 MB upload limit (sparse file)
    cases = [(c, p) for c, p in write(checkpoint_cases(good.read_bytes()), workdir / "hostile-ckpt")]
    for case, path in cases + [(type(cases[0][0])("huge.safetensors", b"", "over the", "210 MB upload"), big)]:
        renamed = path.with_name(case.name)
        if renamed != path:
            path.rename(renamed)
        tried += 1
        report["requests_sent"] += 1
        try:
            client.predict(handle_file(str(renamed)), api_name="/upload_checkpoint")
            outcome = "ok"
        except AppError as error:
            outcome = str(error)
        except Exception as error:
            outcome = f"TRANSPORT {type(error).__name__}: {error}"
        _judge(case, outcome, report)
    for choice in ("runs:../../etc/passwd", "/etc/passwd", "runs:../app.py", "file"):
        tried += 1
        report["requests_sent"] += 1
        try:
            client.predict(handle_file(str(PHOTO)), choice, 3, api_name="/classify")
            _judge_fail(report, f"model choice {choice!r} was accepted")
        except AppError as error:
            if "runs folder" not in str(error) and "unknown model" not in str(error):
                _judge_fail(report, f"model choice {choice!r}: unclear message {error}")
    report["hostile_inputs_tried"] = tried
    alive = client.predict(handle_file(str(PHOTO)), "random", 1, api_name="/classify")
    report["crashes"] += 0 if alive["predictions"]["main"] else 1


def _judge(case, outcome: str, report: dict) -> None:
    if "Traceback" in outcome or outcome.startswith("TRANSPORT") and case.expected != "over the":
        report["tracebacks"] += 1
        report["failures"].append(f"{case.name}: {outcome[:200]}")
    elif case.expected == "ok" and outcome != "ok":
        _judge_fail(report, f"{case.name} ({case.what}) should convert, got: {outcome[:200]}")
    elif case.expected != "ok" and case.expected not in outcome and not outcome.startswith("TRANSPORT"):
        _judge_fail(report, f"{case.name} ({case.what}) expected '{case.expected}', got: {outcome[:200]}")


def _judge_fail(report: dict, message: str) -> None:
    report["requests_failed"] += 1
    report["failures"].append(message)


def soak(url: str, pid: int, report: dict, count: int = 200) -> None:
    """Sequential explores of different images; resident memory after warm-up vs at the end."""
    from gradio_client import Client, handle_file

    client = Client(url, verbose=False)
    rng = np.random.default_rng(0)
    base = np.asarray(Image.open(PHOTO).convert("RGB"), dtype=np.float64)
    folder = Path(tempfile.mkdtemp())
    warm, samples = None, []
    for i in range(count):
        noisy = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
        path = folder / f"soak-{i}.jpg"
        Image.fromarray(noisy).save(path, quality=85)
        client.predict(handle_file(str(path)), "random", *EXPLORE_ARGS, api_name="/explore")
        path.unlink()
        report["requests_sent"] += 1
        if i == 29:
            warm = rss_mb(pid)
        if i >= 29 and i % 10 == 9:
            samples.append(rss_mb(pid))
    growth = (samples[-1] - warm) / warm * 100
    report["rss_growth_pct"] = growth
    print(f"soak_explores={count} rss_after_warmup_mb={warm:.0f} rss_end_mb={samples[-1]:.0f} rss_max_mb={max(samples):.0f}")


KILL_SCRIPT = textwrap.dedent(
    """
    import sys, time
    import torch
    import googlenet.weights as w
    from googlenet.training.trainer import TrainConfig, Trainer
    out, data, mode = sys.argv[1], sys.argv[2], sys.argv[3]
    if mode == "write":  # the third file written (epoch 2's state file, torch.save) hangs half-written
        calls = {"n": 0}
        def slowed(real):
            def write(obj, path, *args, **kwargs):
                calls["n"] += 1
                if calls["n"] > 2:
                    open(path, "wb").write(b"\\x00" * 4096)
                    print("WRITING", flush=True)
                    time.sleep(600)
                return real(obj, path, *args, **kwargs)
            return write
        w.save_file = slowed(w.save_file)
        torch.save = slowed(torch.save)
    def report(event):
        if getattr(event, "kind", "") == "epoch":
            print("EPOCH", flush=True)
        if getattr(event, "kind", "") == "step":
            print("STEP", event.step, flush=True)
    Trainer(TrainConfig(data=data, out=out, epochs=2, width=0.125, batch_size=128, seed=1, resume=len(sys.argv) > 4)).run(report)
    """
)


def faults(data: str, workdir: Path, report: dict) -> None:
    """SIGKILL mid-epoch and mid-checkpoint-write; full disk; unwritable folder; NaN config."""
    from googlenet.weights import find_checkpoints, load_model

    script = workdir / "victim.py"
    script.write_text(KILL_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for mode, wait_for in (("epoch", "STEP 40"), ("write", "WRITING")):
        out = workdir / f"killed-{mode}"
        proc = subprocess.Popen([sys.executable, str(script), str(out), data, mode], stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT)
        seen_epoch = False
        deadline = time.time() + 300
        while time.time() < deadline:
            line = proc.stdout.readline()
            seen_epoch |= line.startswith("EPOCH")
            if (line.strip() == wait_for and (seen_epoch or mode == "write")) or not line:
                break
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        newest = find_checkpoints(out.parent)
        newest = [p for p in newest if p.parent == out]
        try:
            load_model(newest[0])
            resumed = subprocess.run(
                [sys.executable, str(script), str(out), data, "resume", "1"], capture_output=True, text=True, env=env, cwd=ROOT, timeout=600
            )
            if resumed.returncode != 0:
                raise RuntimeError(resumed.stderr[-500:])
            print(f"fault_sigkill_mid_{mode}=newest checkpoint {newest[0].name} loads; resume finished")
        except Exception as error:
            report["checkpoint_corruptions"] += 1
            report["failures"].append(f"after SIGKILL mid-{mode}: {error}")

    from googlenet.datasets.cifar10 import CIFAR10, read_cifar10
    from googlenet.training.trainer import TrainConfig, Trainer, TrainingDiverged, TrainingError

    c = read_cifar10(data)
    small = CIFAR10(c.train_images[:512], c.train_labels[:512], c.test_images[:128], c.test_labels[:128], c.classes, c.root)
    # a full disk: the first epoch's checkpoint is written, the second fails with ENOSPC
    import errno

    import googlenet.weights as weights

    out = workdir / "full-disk"
    real, calls = weights.save_file, {"n": 0}

    def full_disk(tensors, path, metadata=None):
        calls["n"] += 1
        if calls["n"] > 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(tensors, path, metadata=metadata)

    weights.save_file = full_disk
    try:
        Trainer(TrainConfig(out=str(out), epochs=2, width=0.125, batch_size=128), data=small).run()
        report["failures"].append("full disk: no error raised")
        report["requests_failed"] += 1
    except TrainingError as error:
        ok = "No space left" in str(error) and "newest complete checkpoint" in str(error)
        print(f"fault_full_disk=clear error: {str(error)[:120]}…")
        if not ok:
            report["failures"].append(f"full disk: unclear message {error}")
    finally:
        weights.save_file = real
    try:
        load_model(out / "last.safetensors")  # still epoch 1's: the failed write left nothing behind
        if list(out.glob(".*.tmp")):
            raise RuntimeError("a temporary file was left behind")
    except Exception as error:
        report["checkpoint_corruptions"] += 1
        report["failures"].append(f"after full disk: {error}")
    try:
        Trainer(TrainConfig(out="/proc/googlenet-runs/x", epochs=1, width=0.125), data=small).run()
        report["failures"].append("unwritable folder accepted")
    except (TrainingError, OSError) as error:
        print(f"fault_unwritable_runs_folder=clear error: {str(error)[:100]}")
    try:
        Trainer(TrainConfig(out=str(workdir / "nan"), epochs=1, width=0.125, lr=1e12), data=small).run()
        report["failures"].append("absurd lr did not stop")
    except TrainingDiverged as error:
        print(f"fault_nan_config=clear error: {str(error)[:100]}…")


def restart_shows_curves(data: str, workdir: Path, report: dict) -> None:
    """Kill the app mid-run, start it again: the run's curves come back from metrics.jsonl."""
    from gradio_client import Client

    runs = workdir / "restart-runs"
    runs.mkdir()
    proc, url = launch(runs, data)
    client = Client(url, verbose=False)
    client.predict("fast", 3, 128, 0.2, 0.125, "cifar", 0.3, data, api_name="/train_start")
    deadline = time.time() + 120
    while time.time() < deadline and client.predict(api_name="/train_status")["steps_logged"] < 5:
        time.sleep(0.5)
    before = client.predict(api_name="/train_status")["steps_logged"]
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    proc, url = launch(runs, data)
    try:
        status = Client(url, verbose=False).predict(api_name="/train_status")
        print(
            f"fault_app_restart=curves back: {status['steps_logged']} steps (had {before}); state {status['state']}: {status['message'][:80]}"
        )
        if status["steps_logged"] < before - 1:
            report["failures"].append(f"after restart only {status['steps_logged']} of {before} steps")
            report["requests_failed"] += 1
    finally:
        proc.terminate()
        proc.wait(30)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.reliability", description=__doc__)
    parser.add_argument("--data", default=os.environ.get("GOOGLENET_DATA", str(ROOT.parent / "shared" / "data" / "cifar10-subset")))
    parser.add_argument("--soak", type=int, default=200)
    args = parser.parse_args(argv)
    report = {
        "hostile_inputs_tried": 0,
        "tracebacks": 0,
        "requests_sent": 0,
        "requests_failed": 0,
        "rss_growth_pct": float("nan"),
        "checkpoint_corruptions": 0,
        "crashes": 0,
        "failures": [],
    }
    print(f"device=cpu ({os.cpu_count()} cores)")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        runs = work / "runs"
        runs.mkdir()
        tracked_before = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True).stdout
        proc, url = launch(runs, args.data)
        try:
            load_test(url, args.data, report)
            hostile(url, work, report)
            soak(url, proc.pid, report, args.soak)
        finally:
            proc.terminate()
            proc.wait(30)
        faults(args.data, work, report)
        restart_shows_curves(args.data, work, report)
        tracked_after = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True).stdout
        if tracked_after != tracked_before:
            report["failures"].append(f"files changed outside the runs folder: {tracked_after}")
    for message in report["failures"]:
        print(f"failure: {message[:300]}")
    ok = (
        report["hostile_inputs_tried"] >= 12 and report["tracebacks"] == 0 and report["requests_sent"] >= 100
        and report["requests_failed"] == 0 and report["rss_growth_pct"] < 10 and report["checkpoint_corruptions"] == 0
        and report["crashes"] == 0 and not report["failures"]
    )  # fmt: skip
    for key in ("hostile_inputs_tried", "tracebacks", "requests_sent", "requests_failed"):
        print(f"{key}={report[key]}")
    print(f"rss_growth_pct={report['rss_growth_pct']:.1f}")
    print(f"checkpoint_corruptions={report['checkpoint_corruptions']}")
    print(f"ok={'true' if ok else 'false'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
