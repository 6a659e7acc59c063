"""A newcomer's first visit, in headless Chromium at 1440×900: a fresh runs folder and an empty
data folder (issue 13). Every tab's main action renders without an "Error" badge, panels follow
the model, image and class they were drawn for, key texts are not clipped, and the Architecture
table shows in the page the numbers its data holds. Screenshots go to ``screenshots/``
(git-ignored). The tests share one app and one page and run in file order.
"""

import re

import pytest

from tests.conftest import ROOT, browser_page, require_chromium, serve_app

SHOTS = ROOT / "screenshots"

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    require_chromium()
    empty = tmp_path_factory.mktemp("no-data")  # a fresh clone: no data folder anywhere
    yield from serve_app(tmp_path_factory.mktemp("newcomer-log"), tmp_path_factory.mktemp("newcomer-runs"), empty)


@pytest.fixture(scope="module")
def page(server):
    SHOTS.mkdir(exist_ok=True)
    yield from browser_page(server)


# Visible leaf elements reading "Error": Gradio's red badge on a component and its toast's title.
ERROR_BADGES = """() => Array.from(document.querySelectorAll('body *')).filter(e =>
    e.children.length === 0 && e.textContent.trim() === 'Error' && e.getClientRects().length > 0).length"""

# Texts under `selector` whose box leaves an ancestor that clips (overflow not visible), or that
# overflow their own clipping box: what a reader sees cut off ("ranch1", "Click to Uplo"). It finds
# the old contribution heatmap's clipped row labels (issue 13) and none of the new panels'.
CLIPPED = """(selector) => {
    const out = [];
    for (const el of document.querySelectorAll(selector)) {
        if (!el.getClientRects().length || !el.textContent.trim()) continue;
        const r = el.getBoundingClientRect();
        const own = getComputedStyle(el);
        let cut = own.overflow !== 'visible' && (el.scrollWidth > el.clientWidth + 1 || el.scrollHeight > el.clientHeight + 1);
        for (let a = el.parentElement; a && !cut; a = a.parentElement) {
            const s = getComputedStyle(a);
            if (s.overflowX === 'visible' && s.overflowY === 'visible') continue;
            const q = a.getBoundingClientRect();
            cut = r.left < q.left - 1 || r.right > q.right + 1 || r.top < q.top - 1 || r.bottom > q.bottom + 1;
        }
        if (cut) out.push(el.textContent.trim().slice(0, 60));
    }
    return out;
}"""


def clipped(page, *selectors: str) -> list[str]:
    return [text for selector in selectors for text in page.evaluate(CLIPPED, selector)]


def sig(page, elem_id: str) -> str | None:
    return page.evaluate(f"() => {{ const p = document.querySelector('#{elem_id} [data-sig]'); return p ? p.dataset.sig : null; }}")


def wait_new(page, elem_id: str, before: str | None, timeout: int = 90_000) -> str:
    page.wait_for_function(
        f"(before) => {{ const p = document.querySelector('#{elem_id} [data-sig]'); return p && p.dataset.sig !== before; }}",
        arg=before,
        timeout=timeout,
    )
    return sig(page, elem_id)


def pick(page, label: str, option: str) -> None:
    page.get_by_label(label, exact=True).click()
    page.get_by_role("option", name=option, exact=True).click()


def test_architecture_table_in_the_page_shows_the_numbers_of_its_data(page):
    from ui.architecture_tab import architecture_view

    page.get_by_role("tab", name="Architecture").click()
    page.wait_for_selector("#architecture-table [data-testid='cell-0-0']")
    expected = architecture_view("bundled").table  # the page's default model in a fresh clone
    data = expected.data
    shown = page.evaluate(
        """() => Array.from(document.querySelectorAll('#architecture-table [role=gridcell]')).map(c =>
            [Number(c.dataset.row), Number(c.dataset.col), c.innerText.trim()])"""
    )
    cells = {(row, col): text for row, col, text in shown}
    assert {row for row, _ in cells} == set(range(len(data))), "every row is rendered at once"
    from ui.architecture_tab import COUNT_COLUMNS, count

    for r, record in enumerate(data.to_dict("records")):
        for c, column in enumerate(data.columns):
            want = count(record[column]) if column in COUNT_COLUMNS else str(record[column])
            assert cells[(r, c)] == want, (record["layer"], column, cells[(r, c)], want)
    assert cells[(list(data["layer"]).index("inception4e"), 4)] == "12,828,672"  # issue 13 saw 0 here
    assert not clipped(page, "#architecture-table [role=gridcell]", "#architecture-caption")
    assert page.evaluate(ERROR_BADGES) == 0
    page.screenshot(path=str(SHOTS / "newcomer-architecture.png"), full_page=True)


def test_compare_examples_run_and_read_cleanly(page):
    page.get_by_role("tab", name="Compare").click()
    page.locator("#compare-examples button.gallery-item").nth(5).click()
    page.wait_for_function(
        "() => ['a', 'b'].every(s => document.querySelectorAll(`#compare-atlas-${s} .gx-cell`).length === 36)", timeout=120_000
    )
    assert "untrained twin" in page.inner_text("#compare-atlas-b .gx-title")  # not random ImageNet weights
    assert page.locator("#compare-heads-a .gx-head").count() == 3
    assert not clipped(
        page, "#compare-atlas-a .gx-title", "#compare-atlas-b .gx-row", "#compare-atlas-a .gx-col", "#compare-heads-b .gx-label"
    )
    assert page.evaluate(ERROR_BADGES) == 0
    page.screenshot(path=str(SHOTS / "newcomer-compare.png"), full_page=True)


def test_train_tab_without_data_says_what_to_press(page):
    page.get_by_role("tab", name="Train").click()
    page.wait_for_selector("#train-curves .js-plotly-plot")
    assert "No steps yet" in page.inner_text("#train-curves")
    assert page.locator("#train-curves .xtick").count() == 0  # no empty axes running over −1…6
    page.click("#train-start")
    page.wait_for_function("() => document.querySelector('#train-message').innerText.includes('Not started')", timeout=60_000)
    message = page.inner_text("#train-message")
    assert "Download CIFAR-10" in message and "--download" not in message
    assert not clipped(page, "#train-stem label", "#upload-checkpoint")
    assert page.evaluate(ERROR_BADGES) == 0
    page.screenshot(path=str(SHOTS / "newcomer-train.png"), full_page=True)


def test_explore_tab_works_out_of_the_box_and_stays_current(page):
    page.get_by_role("tab", name="Explore").click()
    assert page.locator("#atlas-plot .gx-cell").count() == 36  # drawn with the page: no data, no click
    assert "ImageNet weights unavailable" in page.inner_text("#banner")

    # a new image explores at once; choosing a class redraws at once (no Explore press)
    atlas = sig(page, "atlas-plot")
    page.locator("#examples-cifar button.gallery-item").nth(8).click()
    atlas = wait_new(page, "atlas-plot", atlas)
    pick(page, "Explain which class", "airplane")
    atlas = wait_new(page, "atlas-plot", atlas)
    assert "“airplane”" in page.inner_text("#atlas-plot .gx-title") and "“airplane”" in page.inner_text("#contributions-plot")
    assert "airplane" in page.inner_text("#heads-plot .gx-target .gx-label")

    # the colour map changes in the browser, on every map at once
    before = page.evaluate("() => getComputedStyle(document.querySelector('#atlas-plot .gx-map')).filter")
    pick(page, "Colour map", "Viridis")
    page.wait_for_function("() => getComputedStyle(document.querySelector('#channels-plot .gx-map')).filter.includes('gx-Viridis')")
    assert before != page.evaluate("() => getComputedStyle(document.querySelector('#atlas-plot .gx-map')).filter")

    # the other main actions: attribution, knock-out, microscope (no data: visualizations + a note)
    page.click("#attribute-button")
    page.wait_for_selector("#attribution-panel .gx-attribution", timeout=120_000)
    pick(page, "Branches or whole modules to zero", "inception4c.branch2")
    pick(page, "Branches or whole modules to zero", "inception4e")
    page.keyboard.press("Escape")
    page.click("#knock-button")
    page.wait_for_selector("#knock-plot .xtick", timeout=60_000)
    ticks = page.evaluate("() => Array.from(document.querySelectorAll('#knock-plot .xtick text')).map(t => t.textContent)")
    assert ticks == ["inception4c.branch2", "inception4e", "inception4c.branch2 +inception4e"]  # what was knocked out, by name
    assert "| inception4c.branch2 + inception4e |" not in page.inner_text("#knock-table")  # rendered as a table
    assert "inception4c.branch2 + inception4e" in page.inner_text("#knock-table")
    page.get_by_text("Microscope: what do these channels look for?").click()
    page.click("#scope-branch")
    page.wait_for_selector("#microscope-plot .js-plotly-plot", timeout=300_000)
    assert "Get reference images" in page.inner_text("#scope-note")
    assert page.evaluate(ERROR_BADGES) == 0
    assert not clipped(
        page, "#atlas-plot .gx-title", "#atlas-plot .gx-row", "#atlas-plot .gx-col", "#atlas-plot .gx-tag", "#contributions-plot th",
        "#heads-plot .gx-label", "#knock-plot .xtick text", "#knock-plot .ytick text", "#upload-checkpoint",
    )  # fmt: skip
    page.screenshot(path=str(SHOTS / "newcomer-explore.png"), full_page=True)

    # another model: every result panel is redrawn for it or cleared
    panels = {p: sig(page, p) for p in ("heads-plot", "atlas-plot", "contributions-plot", "channels-plot")}
    pick(page, "Model", "random init (untrained)")
    for panel, before in panels.items():
        wait_new(page, panel, before)
    page.wait_for_function("() => document.querySelector('#banner').innerText.includes('random init')")
    assert "Press “Attribute”" in page.inner_text("#attribution-panel")
    assert page.inner_text("#knock-table").strip() == "" and page.locator("#knock-plot .xtick").count() == 0
    assert page.locator("#microscope-plot .js-plotly-plot").count() == 0 and page.inner_text("#scope-note").strip() == ""
    assert page.input_value("#target-class input") == "(top class)"
    page.get_by_role("tab", name="Architecture").click()
    page.wait_for_function("() => document.querySelector('#architecture-caption').innerText.includes('1000 classes')")
    assert re.search(r"\b13,004,888 parameters", page.inner_text("#architecture-caption"))
    assert page.evaluate(ERROR_BADGES) == 0
