"""The whole user journey in headless Chromium: explore, train, stop, pick the new model, explore it.

Uses Debian's ``chromium`` through Playwright (``executable_path``); screenshots go to
``screenshots/`` (git-ignored).
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "screenshots"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory, cifar_dir):
    if CHROMIUM is None:
        pytest.skip("Debian chromium is not installed (apt install chromium); .ci/run installs it")
    port = free_port()
    runs = tmp_path_factory.mktemp("e2e-runs")
    env = {**os.environ, "GOOGLENET_RUNS": str(runs), "GOOGLENET_DATA": str(cifar_dir), "GOOGLENET_OFFLINE": "1", "GOOGLENET_DEVICE": "cpu"}
    log = open(tmp_path_factory.mktemp("e2e-log") / "app.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "app.py", "--host", "127.0.0.1", "--port", str(port)], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            if proc.poll() is not None:
                pytest.fail(f"the app exited: {Path(log.name).read_text()[-2000:]}")
            time.sleep(0.5)
    yield url
    proc.terminate()
    proc.wait(30)


@pytest.fixture(scope="module")
def page(server):
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(server)
        page.wait_for_selector("#explore-button", timeout=60_000)
        yield page
        browser.close()


def plot_points(page, elem_id: str) -> int:
    return page.evaluate(
        f"""() => {{
            const plot = document.querySelector('#{elem_id} .js-plotly-plot');
            if (!plot || !plot._fullData) return -1;
            return Math.max(0, ...plot._fullData.map(t => (t.x || []).length));
        }}"""
    )


def traces(page, elem_id: str, kind: str) -> int:
    return page.evaluate(
        f"() => {{ const p = document.querySelector('#{elem_id} .js-plotly-plot'); return p && p.data ? p.data.filter(t => t.type === '{kind}').length : -1; }}"
    )


ATLAS_SIGNATURE = """() => {
    const p = document.querySelector('#atlas-plot .js-plotly-plot');
    if (!p || !p._fullData || document.querySelector('#atlas-plot .pending')) return null;
    const maps = p._fullData.filter(t => t.type === 'heatmap');
    return maps.length === 36 ? JSON.stringify([maps[0].z.length, maps[20].z[0], p.layout.title.text]) : null;
}"""


def upload_and_wait(page, picture: str) -> str:
    """Upload, then wait until the atlas shows 36 maps that differ from what was there before."""
    before = page.evaluate(ATLAS_SIGNATURE)
    page.set_input_files("#input-image input[type=file]", str(ROOT / picture))
    page.wait_for_function(f"() => {{ const s = ({ATLAS_SIGNATURE})(); return s !== null && s !== {json.dumps(before)}; }}", timeout=90_000)
    page.wait_for_timeout(500)
    return page.evaluate(ATLAS_SIGNATURE)


def test_explore_train_stop_and_explore_the_new_model(page):
    # 0. The page explores a first example by itself
    page.wait_for_function(f"() => ({ATLAS_SIGNATURE})() !== null", timeout=90_000)
    # 1. Explore: upload a photo → three heads' top-5 and the 36-map atlas
    upload_and_wait(page, "assets/examples/photos/coffee.jpg")
    assert traces(page, "heads-plot", "bar") == 3
    assert plot_points(page, "heads-plot") == 5
    page.screenshot(path=str(SHOTS / "explore.png"), full_page=True)

    # 2. Train tab: a tiny run on the CIFAR-10 subset; the loss plot gets points while it runs
    page.get_by_role("tab", name="Train").click()
    page.click("#train-start")
    page.wait_for_function(
        "() => { const p = document.querySelector('#train-curves .js-plotly-plot'); return p && p._fullData && p._fullData.length && p._fullData[0].x.length >= 2; }",
        timeout=120_000,
    )
    assert "running" in page.inner_text("#train-status")
    page.screenshot(path=str(SHOTS / "train.png"), full_page=True)

    # 3. Stop: a checkpoint is saved and joins the model picker
    page.click("#train-stop")
    page.wait_for_function("() => document.querySelector('#train-status').innerText.includes('stopped')", timeout=120_000)
    page.wait_for_timeout(1500)
    page.get_by_label("Model", exact=True).first.click()
    option = page.get_by_role("option").filter(has_text="last.safetensors").first
    option.wait_for(timeout=30_000)
    name = option.inner_text()
    option.click()
    page.wait_for_function("() => document.querySelector('#banner').innerText.includes('last.safetensors')", timeout=60_000)

    # 4. Explore with the model just trained (CIFAR input: 32×32)
    page.get_by_role("tab", name="Explore").click()
    signature = upload_and_wait(page, "assets/examples/cifar/horse-1.png")
    assert json.loads(signature)[0] == 32  # inception3a keeps 32×32 in the CIFAR stem
    assert "32×32" in page.inner_text("#banner")
    page.screenshot(path=str(SHOTS / "explore-trained.png"), full_page=True)
    assert "last.safetensors" in name


def test_a_shared_link_reopens_the_same_view(page, server):
    """A teacher's link: example picture, class, map kind and open branch come back in a fresh page."""
    view = "?example=cifar/cat-1.png&class=dog&kind=signed&branch=inception5a.branch3"
    context = page.context.browser.new_context(viewport={"width": 1400, "height": 1000})  # another visitor
    fresh = context.new_page()
    fresh.goto(server + view)
    fresh.wait_for_function(f"() => ({ATLAS_SIGNATURE})() !== null", timeout=90_000)
    fresh.wait_for_function("() => document.body.innerText.includes('gradients taken for dog')", timeout=60_000)
    assert fresh.get_by_label("Branch to open").input_value() == "inception5a.branch3"
    assert fresh.get_by_label("Explain which class").input_value() == "dog"
    assert fresh.get_by_label("signed", exact=False).first.is_checked()
    assert "inception5a.branch3" in fresh.inner_text("#share-note") + fresh.inner_text("body")
    fresh.click("#share-view")
    fresh.wait_for_function(
        "() => { const t = document.querySelector('#share-link textarea, #share-link input'); return t && t.value.includes('?'); }",
        timeout=30_000,
    )
    link = fresh.evaluate("() => document.querySelector('#share-link textarea, #share-link input').value")
    assert link.startswith(server) and "example=cifar%2Fcat-1.png" in link and "class=dog" in link and "branch=inception5a.branch3" in link
    fresh.screenshot(path=str(SHOTS / "shared-view.png"), full_page=True)
    again = context.new_page()
    again.goto(link)
    again.wait_for_function("() => document.body.innerText.includes('gradients taken for dog')", timeout=90_000)
    assert again.get_by_label("Branch to open").input_value() == "inception5a.branch3"
    context.close()
