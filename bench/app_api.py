"""``python -m bench.app_api``: launch the app and measure it through its API, as users meet it.

Prints ``name=value`` lines: classify and explore round trips (median), the explore payload,
the time from Start to the first loss point, and the app's peak resident memory while serving
and training. Everything runs on this machine in one go; the device is printed first.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PHOTO = ROOT / "assets" / "examples" / "photos" / "cat.jpg"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(runs: Path, data: str, weights: str = "random", extra_env: dict | None = None) -> tuple[subprocess.Popen, str]:
    """Start ``python app.py`` on a free port; return the process and its URL once it answers."""
    port = free_port()
    env = {**os.environ, "GOOGLENET_RUNS": str(runs), "GOOGLENET_DATA": data, "GOOGLENET_OFFLINE": "1", **(extra_env or {})}
    log = open(runs / f"app-{port}.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "app.py", "--host", "127.0.0.1", "--port", str(port), "--weights", weights],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 180
    import httpx

    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the app exited; see {log.name}")
        try:
            if httpx.get(url + "gradio_api/info", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise RuntimeError("the app did not answer within 180 s")


def peak_rss_mb(pid: int) -> float:
    """VmHWM: the highest resident set size the process has had."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def explore_payload_bytes(url: str, image_path: str, model: str) -> int:
    """Bytes of the explore result as it travels (the SSE stream of the REST API)."""
    import httpx
    from gradio_client import Client, handle_file

    client = Client(url, verbose=False)
    uploaded = client.predict(handle_file(image_path), model, 1, api_name="/classify")  # warm the model
    del uploaded
    with open(image_path, "rb") as f:
        up = httpx.post(url + "gradio_api/upload", files={"files": (Path(image_path).name, f)}).json()[0]
    body = {
        "data": [{"path": up, "meta": {"_type": "gradio.FileData"}}, model, "(top class)", "cam", "Inferno", 0.6, "inception4c.branch2"]
    }
    event = httpx.post(url + "gradio_api/call/explore", json=body).json()["event_id"]
    stream = httpx.get(url + f"gradio_api/call/explore/{event}", timeout=60)
    return len(stream.content)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.app_api", description=__doc__)
    parser.add_argument("--data", default=os.environ.get("GOOGLENET_DATA", str(ROOT.parent / "shared" / "data" / "cifar10-subset")))
    parser.add_argument("--runs", type=int, default=20, help="timed calls per endpoint")
    args = parser.parse_args(argv)
    import torch
    from gradio_client import Client, handle_file

    from googlenet.training.trainer import preset_for_device
    from googlenet.weights import pick_device

    print(
        f"device=cpu ({os.cpu_count()} cores, torch {torch.__version__})"
        if not torch.cuda.is_available()
        else f"device={torch.cuda.get_device_name()}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = launch(Path(tmp), args.data)
        try:
            client = Client(url, verbose=False)
            photo = handle_file(str(PHOTO))
            for _ in range(3):
                client.predict(photo, "random", 5, api_name="/classify")
            times = []
            for _ in range(args.runs):
                start = time.perf_counter()
                client.predict(handle_file(str(PHOTO)), "random", 5, api_name="/classify")
                times.append(time.perf_counter() - start)
            print(
                f"classify_round_trip_ms={statistics.median(times) * 1000:.0f}  (median of {args.runs}; 224×224 from a {PHOTO.stat().st_size // 1024} KB JPEG, all three heads)"
            )
            explore_args = ("random", "(top class)", "cam", "Inferno", 0.6, "inception4c.branch2")
            for _ in range(2):
                client.predict(handle_file(str(PHOTO)), *explore_args, api_name="/explore")
            times = []
            for i in range(max(5, args.runs // 2)):
                start = time.perf_counter()
                # a different target each time, so the exploration cache never answers
                client.predict(
                    handle_file(str(PHOTO)), "random", str(i * 7), "cam", "Inferno", 0.6, "inception4c.branch2", api_name="/explore"
                )
                times.append(time.perf_counter() - start)
            print(
                f"explore_round_trip_ms={statistics.median(times) * 1000:.0f}  (median; one pass + heads, atlas, contributions and channel figures)"
            )
            print(f"explore_payload_bytes={explore_payload_bytes(url, str(PHOTO), 'random')}")
            rss_serving = rss_mb(proc.pid)

            start = time.perf_counter()
            form = preset_for_device("fast", pick_device())  # the Train tab's defaults on this device
            batch = form["batch_size"]
            message, _token = client.predict("fast", 2, batch, form["lr"], 0.25, "cifar", 0.3, args.data, api_name="/train_start")
            first = None
            while time.perf_counter() - start < 120:
                status = client.predict(api_name="/train_status")
                if status["steps_logged"] >= 1:
                    first = time.perf_counter() - start
                    break
                time.sleep(0.05)
            print(f"start_to_first_loss_point_s={first:.2f}  ({message.split(', on ')[0]}; the page polls once a second on top)")
            during = []
            for _ in range(10):
                t = time.perf_counter()
                client.predict(handle_file(str(PHOTO)), "random", 5, api_name="/classify")
                during.append(time.perf_counter() - t)
            status = client.predict(api_name="/train_status")
            print(
                f"classify_round_trip_while_training_ms={statistics.median(during) * 1000:.0f}  (training at {status['images_per_s'] or 0:.0f} images/s)"
            )
            deadline = time.time() + 300  # through the first epoch's end: its test-set evaluation counts too
            while time.time() < deadline and not client.predict(api_name="/train_status")["epochs"]:
                time.sleep(0.5)
            client.predict(api_name="/train_stop")
            deadline = time.time() + 120
            while time.time() < deadline and client.predict(api_name="/train_status")["running"]:
                time.sleep(0.5)
            print(f"rss_serving_mb={rss_serving:.0f}")
            print(
                f"peak_rss_mb={peak_rss_mb(proc.pid):.0f}  (VmHWM of the app process after serving and training an epoch, test-set evaluation included, batch {batch})"
            )
        finally:
            proc.terminate()
            proc.wait(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
