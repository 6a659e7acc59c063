"""``python -m bench.browser``: click → drawn times of the Explore tab in a real browser.

Starts ``python app.py`` (fresh runs folder, empty data folder, offline) and drives it in headless
Debian Chromium at 1440×900, as a visitor would: page load until the first atlas is drawn, a new
image (a click on an example) until every panel of the exploration is drawn, and each view change
(colour map, opacity, map kind, open branch) until its panel shows it. "Drawn" is the panel's
rendered content changing, then two animation frames (the browser has painted), timed on the
page's clock from the user's pointer-down (or key, or slider input) event.

Prints ``name=value`` lines: medians over ``--repeats`` clicks, the device first and the headline
(the new-image median) last. Goals of issue 13 on a 2-core CPU: new image ≤ 0.8 s, view change
≤ 0.3 s, page load → first atlas ≤ 3 s. Timings on a shared machine are noisy: say so.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.app_api import launch
from bench.chromium import CHROMIUM_ARGS

# A short string describing what a panel shows now (null while it shows nothing): plotly figures
# by title, trace count, first values, colour scale, opacity and outline; HTML panels by the
# server's data-sig plus the computed filter and opacity of their first map.
SIGNATURE = """(id) => {
    const root = document.getElementById(id);
    if (!root) return null;
    const plot = root.querySelector('.js-plotly-plot');
    if (plot && plot._fullData && plot._fullData.length) {
        const d = plot._fullData, l = plot._fullLayout;
        const first = t => t.z ? JSON.stringify(t.z[0]).slice(0, 80) : JSON.stringify([(t.x || []).slice(0, 3), (t.y || []).slice(0, 3)]);
        return JSON.stringify([l.title && l.title.text, d.length, d.slice(0, 3).map(first), l.coloraxis && JSON.stringify(l.coloraxis.colorscale).slice(0, 40),
                               d.map(t => t.opacity).join(','), l.shapes && l.shapes.length ? l.shapes[0].x0 : null]);
    }
    const panel = root.querySelector('[data-sig]');
    if (panel) {
        const map = panel.querySelector('.gx-map');
        const style = map ? getComputedStyle(map) : null;
        return panel.dataset.sig + (style ? '|' + style.filter + '|' + style.opacity : '');
    }
    return null;
}"""

PAINTED = "() => new Promise(done => requestAnimationFrame(() => requestAnimationFrame(() => done(performance.now()))))"
# The clock starts in the page, at the user's first event after arming (pointer down on a button
# or an option, a key, a slider's input): Playwright's own waits before it clicks are not counted.
ARM = """() => {
    if (!window.__benchListening) {
        window.__benchListening = true;
        for (const type of ['pointerdown', 'keydown', 'input']) {
            document.addEventListener(type, () => { if (window.__armed) { window.__armed = false; window.__t0 = performance.now(); } }, true);
        }
    }
    window.__armed = true; window.__t0 = null;
}"""
EXPLORE_PANELS = ("heads-plot", "atlas-plot", "contributions-plot", "channels-plot")


def signature(page, elem_id: str):
    return page.evaluate(SIGNATURE, elem_id)


def wait_changed(page, before: dict[str, str | None], timeout_s: float = 60.0) -> float:
    """Until every panel in ``before`` shows something other than it did, then two frames;
    returns the page's clock (ms) at that paint."""
    page.wait_for_function(
        f"""(before) => Object.entries(before).every(([id, sig]) => {{ const now = ({SIGNATURE})(id); return now !== null && now !== sig; }})""",
        arg=before,
        polling="raf",
        timeout=timeout_s * 1000,
    )
    return page.evaluate(PAINTED)


def timed(page, panels, action, prepare=None) -> float:
    """Seconds from ``action`` (the click that changes something) until ``panels`` are redrawn;
    ``prepare`` (e.g. opening a dropdown) is not timed."""
    if prepare is not None:
        prepare()
    before = {p: signature(page, p) for p in panels}
    page.evaluate(ARM)
    action()
    try:
        painted = wait_changed(page, before)
    except Exception:
        print("timeout; before", before, "now", {p: signature(page, p) for p in panels}, file=sys.stderr)
        raise
    start = page.evaluate("() => window.__t0")
    if start is None:
        raise RuntimeError("no user event reached the page: the action did not click, type or slide")
    return (painted - start) / 1000


def open_list(page, label: str):
    return lambda: (page.get_by_label(label, exact=True).click(), page.get_by_role("option").first.wait_for())


def choose(page, option: str):
    return lambda: page.get_by_role("option", name=option, exact=True).click()


def measure(url: str, repeats: int, shots: Path | None = None) -> dict[str, float]:
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("Debian chromium is not installed (apt install chromium)")
    results: dict[str, list[float]] = {k: [] for k in ("new_image", "colour_map", "opacity", "map_kind", "branch")}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1440, "height": 900})
        start = time.perf_counter()
        page.goto(url)
        page.wait_for_function(f"() => ({SIGNATURE})('atlas-plot') !== null", polling="raf", timeout=120_000)
        page.evaluate(PAINTED)
        first_atlas = time.perf_counter() - start
        page.wait_for_function(f"() => {list(EXPLORE_PANELS)!r}.every(id => ({SIGNATURE})(id) !== null)", polling="raf", timeout=120_000)
        examples = page.locator("#examples-cifar button.gallery-item")
        if examples.count() == 0:  # ImageNet weights: photos first; or before the examples had an id
            examples = page.locator("button.gallery-item")
        slider = page.get_by_label("range slider for Map opacity over the image")
        # The colour map is changed while the atlas shows Grad-CAM (a signed atlas uses a diverging
        # map whichever sequential one is picked), so every change below is visible.
        maps, opacities, branches = ("Viridis", "Inferno"), ("0.3", "0.8"), ("inception4e.branch3", "inception4c.branch2")
        for i in range(repeats):
            results["new_image"].append(timed(page, EXPLORE_PANELS, lambda i=i: examples.nth((i + 1) % examples.count()).click()))
            page.wait_for_timeout(300)
            for kind in ("signed", "cam"):
                results["map_kind"].append(timed(page, ["atlas-plot"], lambda kind=kind: page.get_by_label(kind, exact=True).check()))
            results["colour_map"].append(timed(page, ["atlas-plot"], choose(page, maps[i % 2]), open_list(page, "Colour map")))
            results["opacity"].append(timed(page, ["atlas-plot"], lambda i=i: slider.fill(opacities[i % 2])))
            results["branch"].append(timed(page, ["channels-plot"], choose(page, branches[i % 2]), open_list(page, "Branch to open")))
        if shots is not None:
            shots.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(shots / "bench-explore.png"), full_page=True)
        browser.close()
    return {"page_load_to_first_atlas_s": first_atlas, **{f"{k}_s": statistics.median(v) for k, v in results.items()}}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="measure a running app instead of starting one")
    parser.add_argument("--weights", default="auto", help="weights of the app this starts (default: auto, as a newcomer gets)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--screenshots", type=Path, default=None, help="save a screenshot of the Explore tab here")
    args = parser.parse_args(argv)
    print(f"device=cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)")
    print("viewport=1440x900")
    proc = None
    with tempfile.TemporaryDirectory() as scratch:
        if args.url is None:
            (Path(scratch) / "data").mkdir()
            proc, url = launch(Path(scratch), str(Path(scratch) / "data"), weights=args.weights, extra_env={"GOOGLENET_DEVICE": "cpu"})
        else:
            url = args.url
        try:
            figures = measure(url, args.repeats, args.screenshots)
        finally:
            if proc is not None:
                proc.terminate()
                proc.wait(30)
    for name in ("page_load_to_first_atlas_s", "colour_map_s", "opacity_s", "map_kind_s", "branch_s", "new_image_s"):
        print(f"{name}={figures[name]:.3f}")


if __name__ == "__main__":
    main()
