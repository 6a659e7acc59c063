"""The HTML panels: maps as grayscale PNGs at native resolution, coloured by the page's SVG filters."""

import base64
import io
import re

import numpy as np
import pytest
from PIL import Image

from explain import Explorer
from explain.render.colormaps import COLORSCALES, DEFAULT_SIGNED, DIVERGING, sample, signed_scale
from explain.render.panels import atlas_html, channels_html, colormap_defs, contributions_html, filter_id, heads_html, note_html
from tests.conftest import make_loaded

PICTURE = "assets/examples/cifar/cat-1.png"


@pytest.fixture(scope="module")
def exploration():
    return Explorer(make_loaded("cifar", width=0.125)).explore(PICTURE)


def pngs(html: str) -> list[np.ndarray]:
    return [np.array(Image.open(io.BytesIO(base64.b64decode(data)))) for data in re.findall(r'src="data:image/png;base64,([^"]+)"', html)]


def test_atlas_holds_each_branch_map_at_its_native_resolution(exploration):
    html = atlas_html(exploration, "cam", "Viridis", 0.4, highlight="inception4c.branch2")
    maps = pngs(html)
    assert len(maps) == 36 and html.count('class="gx-cell') == 36
    assert {m.shape for m in maps} == {(32, 32), (16, 16), (8, 8)}  # CIFAR stem: 3x at 32, 4x at 16, 5x at 8
    order = [f"{m}.{b}" for b in exploration.spec.branch_kinds for m in exploration.spec.module_names]
    first = exploration.cams[order[0]].numpy()
    expected = np.round(np.clip(first / max(float(np.abs(first).max()), 1e-12), 0, 1) * 255)
    assert np.abs(maps[0].astype(float) - expected).max() <= 1  # each cell scaled to its own peak
    assert html.count("gx-open") == 1 and 'data-branch="inception4c.branch2"' in html
    assert "--gx-opacity:0.4;" in html and "url(#gx-Viridis)" in html and f"url(#gx-{DEFAULT_SIGNED})" in html
    for share in list(exploration.shares.values())[:3]:
        assert ("0%" if abs(share) < 0.005 else f"{share:+.0%}") in html


def test_signed_maps_put_zero_in_the_middle_and_use_a_diverging_map(exploration):
    html = atlas_html(exploration, "signed", None, None, value_range=(-2.0, 2.0))
    assert "gx-signed" in html and "--gx-seq" not in html  # no colours of its own: the page's
    value = exploration.cams_signed["inception3a.branch1"].numpy()
    expected = np.round(np.clip((value + 2) / 4, 0, 1) * 255)
    assert np.abs(pngs(html)[0].astype(float) - expected).max() <= 1
    assert ">against<" in html and ">for<" in html


def test_colour_maps_a_signed_map_honours_a_diverging_choice():
    assert signed_scale("PuOr") == "PuOr" and signed_scale("Inferno") == DEFAULT_SIGNED
    assert filter_id("Viridis", signed=True) == f"gx-{DEFAULT_SIGNED}" and filter_id("BrBG", signed=True) == "gx-BrBG"
    defs = colormap_defs()
    assert all(f'id="gx-{name}"' in defs for name in COLORSCALES)
    # the filter's table runs through the colour map's own colours, low to high
    table = re.search(r'id="gx-Inferno".*?feFuncR type="table" tableValues="([^"]+)"', defs).group(1).split()
    colours = sample("Inferno")
    assert float(table[0]) == pytest.approx(colours[0][0] / 255, abs=1e-3) and float(table[-1]) == pytest.approx(
        colours[-1][0] / 255, abs=1e-3
    )
    assert set(DIVERGING) <= set(COLORSCALES)
    with pytest.raises(ValueError, match="unknown colour map"):
        signed_scale("Rainbow")


def test_heads_contributions_and_channels(exploration):
    heads = heads_html(exploration)
    assert heads.count('class="gx-head"') == 3
    main = heads.split('class="gx-head"')[1]
    assert main.index("gx-bar-row gx-target") == main.index("gx-bar-row")  # the explained class (top class) in orange
    contributions = contributions_html(exploration)
    assert contributions.count("<td") == 36
    assert all(f'class="gx-rowhead">{b}' in contributions for b in ("branch1", "branch2", "branch3", "branch4"))  # row labels
    channels = channels_html(exploration, "inception4c.branch2", 16)
    assert len(pngs(channels)) == 16 and "gx-solid" in channels
    with pytest.raises(ValueError, match="unknown branch"):
        channels_html(exploration, "inception9z.branch1")


def test_text_from_a_checkpoint_is_escaped(exploration):
    hostile = "<img src=x onerror=alert(1)>"
    odd = type(exploration)(**{**exploration.__dict__, "target_name": hostile})
    for html in (atlas_html(odd), contributions_html(odd), note_html(hostile)):
        assert hostile not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
