"""Fast first impressions, measured: an example clicked for the first time against the same example
clicked again (answered from Gradio's lazily cached examples), through the example's own endpoint
(the answer's round trip) and in headless Chromium (until the atlas shows it: the round trip plus
drawing the four HTML panels, the same work both times); and the same /explore call twice through
the API (the content cache, answered before the queue).

    python -m bench.space [--data DIR] [--examples 4]

Starts ``python app.py --public`` on a free port with a fresh runs folder and examples cache, so
every "first" is a real first. Prints ``name=value`` lines; the last is the re-click's share of the
first-time round trip (the issue's bar: ≤ 0.5).
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# The atlas panel (explain.render.panels) by its content signature, once its 36 maps are decoded.
ATLAS = """() => {
    const p = document.querySelector('#atlas-plot [data-sig]');
    if (!p) return null;
    const maps = Array.from(p.querySelectorAll('img.gx-map'));
    return maps.length && maps.every(m => m.complete && m.naturalWidth) ? p.dataset.sig : null;
}"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(workdir: Path, data: str, weights: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {
        **os.environ, "GOOGLENET_RUNS": str(workdir / "runs"), "GOOGLENET_DATA": data, "GOOGLENET_OFFLINE": "1",
        "GOOGLENET_EXAMPLES_CACHE": str(workdir / "examples"), "GOOGLENET_PUBLIC": "1",
    }  # fmt: skip
    log = open(workdir / "app.log", "w")
    command = [sys.executable, "app.py", "--port", str(port), "--weights", weights]
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 180
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, f"http://127.0.0.1:{port}/"
        except OSError:
            if proc.poll() is not None:
                raise SystemExit(f"the app exited: {(workdir / 'app.log').read_text()[-2000:]}") from None
            time.sleep(0.5)
    raise SystemExit("the app did not start in 180 s")


def click_and_wait(page, gallery: int, index: int) -> float:
    """Click an example; seconds until the atlas shows its maps."""
    before = page.evaluate(ATLAS)
    item = page.locator("div:has(> button.gallery-item):visible").nth(gallery).locator("button.gallery-item").nth(index)
    start = time.perf_counter()
    item.click()
    page.wait_for_function(f"(before) => {{ const s = ({ATLAS})(); return s !== null && s !== before; }}", arg=before, timeout=120_000)
    return time.perf_counter() - start


def browser_clicks(url: str, count: int) -> tuple[list[float], list[float]]:
    """The second gallery's first examples (the page explored a picture of the first on load)."""
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(url)
        page.wait_for_function(f"() => ({ATLAS})() !== null", timeout=120_000)  # the page's own first picture
        page.wait_for_timeout(1000)
        picks = range(min(count, page.locator("div:has(> button.gallery-item):visible").nth(1).locator("button.gallery-item").count()))
        first = [click_and_wait(page, 1, i) for i in picks]
        again = [click_and_wait(page, 1, i) for i in picks]
        browser.close()
    return first, again


def example_calls(url: str, indices: list[int]) -> tuple[list[float], list[float]]:
    """The first cached gallery's endpoint (what a click on one of its examples asks), each twice."""
    from gradio_client import Client

    client = Client(url, verbose=False)
    first, again = [], []
    for times in (first, again):
        for index in indices:
            start = time.perf_counter()
            client.predict(index, api_name="/load_example")
            times.append(time.perf_counter() - start)
    return first, again


def api_calls(url: str) -> tuple[float, float]:
    from gradio_client import Client, handle_file

    client = Client(url, verbose=False)
    picture = handle_file(str(ROOT / "assets" / "examples" / "cifar" / "ship-1.png"))
    args = (picture, None, "(top class)", "activation", "Viridis", 0.5, "inception4e.branch3")
    start = time.perf_counter()
    client.predict(*args, api_name="/explore")
    first = time.perf_counter() - start
    again = []
    for _ in range(5):
        start = time.perf_counter()
        client.predict(*args, api_name="/explore")
        again.append(time.perf_counter() - start)
    return first, statistics.median(again)


def _median(times: list[float]) -> str:
    return f"{statistics.median(times) * 1000:.0f}"


def _list(times: list[float]) -> str:
    return f"median of {len(times)}: " + ", ".join(f"{t * 1000:.0f}" for t in times)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=os.environ.get("GOOGLENET_DATA", str(ROOT.parent / "shared" / "data")))
    parser.add_argument("--examples", type=int, default=4, help="how many examples to click (each twice)")
    parser.add_argument(
        "--weights", default="random",
        help="the default model the examples are cached for: random (default) is the full-width 224-px network of the ImageNet "
        "weights a Space serves (same cost, no download); bundled is the small CIFAR model of an offline machine",
    )  # fmt: skip
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        proc, url = launch(Path(scratch), args.data, args.weights)
        try:
            print(f"weights={args.weights} device=the app's choice (GOOGLENET_DEVICE)")
            api_first, api_again = api_calls(url)
            print(f"explore_api_first_ms={api_first * 1000:.0f}  (a new picture: one pass + four figures, through the queue)")
            print(
                f"explore_api_cached_ms={api_again * 1000:.0f}  (the same call again, median of 5: answered from the content cache before the queue)"
            )
            shown_first, shown_again = browser_clicks(url, args.examples)
            print(f"example_first_click_shown_ms={_median(shown_first)}  (Chromium, click until the atlas shows it; {_list(shown_first)})")
            share = statistics.median(shown_again) / statistics.median(shown_first)
            print(f"example_reclick_shown_ms={_median(shown_again)}  ({_list(shown_again)}; share {share:.2f})")
            # the first gallery's examples but the page's own first picture (its first one, cat, by name)
            first, again = example_calls(url, [0, 2, 3])
            print(f"example_first_click_ms={_median(first)}  (the example's endpoint, first time: computed and cached; {_list(first)})")
            print(f"example_reclick_ms={_median(again)}  (the same, again: read from the cache; {_list(again)})")
            print(f"reclick_share_of_first={statistics.median(again) / statistics.median(first):.2f}")
        finally:
            proc.terminate()
            proc.wait(30)


if __name__ == "__main__":
    main()
