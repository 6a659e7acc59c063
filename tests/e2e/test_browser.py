"""The whole user journey in headless Chromium: explore, train, stop, pick the new model, explore it.

Uses Debian's ``chromium`` through Playwright (``executable_path``); screenshots go to
``screenshots/`` (git-ignored).
"""

import json

import pytest
from playwright.sync_api import expect

from tests.conftest import ROOT, browser_page, require_chromium, serve_app

SHOTS = ROOT / "screenshots"

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture(scope="module")
def server(tmp_path_factory, cifar_dir):
    require_chromium()
    yield from serve_app(tmp_path_factory.mktemp("e2e-log"), tmp_path_factory.mktemp("e2e-runs"), cifar_dir)


@pytest.fixture(scope="module")
def page(server):
    SHOTS.mkdir(exist_ok=True)
    yield from browser_page(server, 1400, 1000)


# The atlas as drawn: its 36 maps' sizes, the first map's data and the title; null while loading.
ATLAS_SIGNATURE = """() => {
    const panel = document.querySelector('#atlas-plot [data-sig]');
    if (!panel) return null;
    const maps = Array.from(panel.querySelectorAll('img.gx-map'));
    if (maps.length !== 36 || !maps.every(m => m.complete && m.naturalWidth)) return null;
    return JSON.stringify([maps[0].naturalWidth, panel.dataset.sig, panel.querySelector('.gx-title').textContent]);
}"""


def upload_and_wait(page, picture: str) -> str:
    """Upload, then wait until the atlas shows 36 maps that differ from what was there before."""
    before = page.evaluate(ATLAS_SIGNATURE)
    page.set_input_files("#input-image input[type=file]", str(ROOT / picture))
    page.wait_for_function(f"() => {{ const s = ({ATLAS_SIGNATURE})(); return s !== null && s !== {json.dumps(before)}; }}", timeout=90_000)
    return page.evaluate(ATLAS_SIGNATURE)


def test_explore_train_stop_and_explore_the_new_model(page):
    # 0. The page arrives with a first example explored
    page.wait_for_function(f"() => ({ATLAS_SIGNATURE})() !== null", timeout=90_000)
    # 1. Explore: upload a photo → three heads' top-5 and the 36-map atlas
    upload_and_wait(page, "assets/examples/photos/coffee.jpg")
    assert page.locator("#heads-plot .gx-head").count() == 3
    assert page.locator("#heads-plot .gx-head").first.locator(".gx-label").count() == 5
    # a photo on the bundled CIFAR model; the caution is its own event, so it may still show Gradio's timer
    expect(page.locator("#photo-caution")).to_contain_text("shrunk to 32×32", timeout=30_000)
    page.screenshot(path=str(SHOTS / "explore.png"), full_page=True)

    # 2. Train tab: a tiny run on the CIFAR-10 subset; the loss plot gets points while it runs
    page.get_by_role("tab", name="Train").click()
    page.click("#train-start")
    page.wait_for_function(
        "() => { const p = document.querySelector('#train-curves .js-plotly-plot'); return p && p._fullData && p._fullData.length && p._fullData[0].x.length >= 2; }",
        timeout=120_000,
    )
    assert "running" in page.inner_text("#train-status")
    assert "images/s" in page.inner_text("#train-status")  # the speed as measured here, not a promise
    page.screenshot(path=str(SHOTS / "train.png"), full_page=True)

    # 3. Stop: a checkpoint is saved and joins the model picker; the "Stopping…" line goes
    page.click("#train-stop")
    page.wait_for_function("() => document.querySelector('#train-status').innerText.includes('stopped')", timeout=120_000)
    page.wait_for_function("() => !document.querySelector('#train-message').innerText.includes('Stopping')", timeout=30_000)
    page.get_by_label("Model", exact=True).first.click()
    option = page.get_by_role("option").filter(has_text="last.safetensors").first
    option.wait_for(timeout=30_000)
    name = option.inner_text()
    option.click()
    page.wait_for_function("() => document.querySelector('#banner').innerText.includes('last.safetensors')", timeout=60_000)
    # saved mid-epoch: labelled with its step, not with an earlier epoch's accuracy
    assert "last.safetensors" in name and "mid-epoch 1 · not evaluated" in name
    assert "not evaluated" in page.inner_text("#banner")

    # 4. Explore with the model just trained (CIFAR input: 32×32)
    page.get_by_role("tab", name="Explore").click()
    signature = upload_and_wait(page, "assets/examples/cifar/horse-1.png")
    assert json.loads(signature)[0] == 32  # inception3a keeps 32×32 in the CIFAR stem
    assert "32×32" in page.inner_text("#banner")
    page.screenshot(path=str(SHOTS / "explore-trained.png"), full_page=True)


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
