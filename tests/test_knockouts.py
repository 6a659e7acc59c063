"""Measured knock-outs (explain.knockouts): equal to Explorer.ablate, and the downstream-only pass
equals a full forward pass."""

import math

import numpy as np
import pytest
import torch

from explain import Explorer
from explain.knockouts import corner_values, measure_knockouts
from googlenet.weights import load_model
from tests.conftest import make_loaded


@pytest.fixture(scope="module")
def photo():
    rng = np.random.default_rng(1)
    return rng.integers(0, 256, (48, 40, 3), dtype=np.uint8)


@pytest.fixture(scope="module", params=["cifar-random", "bundled"])
def explorer(request):
    if request.param == "bundled":
        return Explorer(load_model("bundled", "cpu"))
    return Explorer(make_loaded("cifar", width=0.125))


def test_downstream_pass_equals_a_full_forward_pass(explorer, photo):
    exploration = explorer.explore(photo)
    model = explorer.loaded.model
    with torch.inference_mode():
        full = model(exploration.input)[0]
        for module in exploration.spec.module_names:
            out = exploration.activations[module].unsqueeze(0).contiguous(memory_format=torch.channels_last)
            rest = model.forward_from(module, out)[0]
            assert (rest - full).abs().max() <= 1e-5 * max(1.0, float(full.abs().max())), module


@pytest.mark.parametrize("target", [None, 3])
def test_every_corner_equals_explorer_ablate(explorer, photo, target):
    exploration = explorer.explore(photo, target)
    measured = measure_knockouts(explorer, exploration)
    names = list(exploration.spec.branch_names) + list(exploration.spec.module_names)
    ablation = explorer.ablate(photo, names, exploration.target)
    assert abs(measured.baseline_probability - ablation.baseline_probability["main"]) <= 1e-5
    for name, knockout in zip(names, ablation.knockouts):
        assert abs(measured.probability_change[name] - knockout.delta["main"]) <= 1e-5, name
    corners = corner_values(exploration, "measured", measured)
    assert set(corners) == set(exploration.spec.branch_names)
    assert all(corners[b] == measured.probability_change[b] for b in corners)
    # something really changes: a test on a network where nothing moves could not fail
    assert max(abs(v) for v in measured.logit_change.values()) > 1e-3


def test_logit_changes_against_a_hooked_full_pass(photo):
    explorer = Explorer(make_loaded("cifar", width=0.125))
    exploration = explorer.explore(photo)
    measured = measure_knockouts(explorer, exploration)
    model = explorer.loaded.model
    name = "inception4b.branch2"
    handle = model.get_submodule(name).register_forward_hook(lambda _m, _i, out: out * 0)
    try:
        with torch.inference_mode():
            knocked = model(exploration.input)[0, exploration.target]
    finally:
        handle.remove()
    with torch.inference_mode():
        base = model(exploration.input)[0, exploration.target]
    assert abs(float(knocked - base) - measured.logit_change[name]) <= 1e-4


def test_estimate_and_rho(photo):
    explorer = Explorer(make_loaded("cifar", width=0.125))
    exploration = explorer.explore(photo)
    measured = measure_knockouts(explorer, exploration)
    assert measure_knockouts(explorer, exploration) is measured  # cached per exploration
    for module in exploration.spec.modules:
        total = sum(-exploration.contributions[b.name] for b in module.branches)
        assert math.isclose(measured.estimate[module.name], total, rel_tol=1e-9, abs_tol=1e-12)
    assert -1 <= measured.rho_branches <= 1 and -1 <= measured.rho_modules <= 1
    payload = measured.to_json()
    assert len(payload["branches"]) == 36 and len(payload["modules"]) == 9
    assert corner_values(exploration, "estimate", None) == exploration.shares
    assert corner_values(exploration, "measured", None) is None
    with pytest.raises(ValueError, match="corner mode"):
        corner_values(exploration, "guess", measured)


def test_atlas_and_table_print_the_measured_changes(photo):
    import re

    from explain.knockouts import points
    from explain.render.knockout_panels import knockout_table_html
    from explain.render.panels import atlas_html

    explorer = Explorer(load_model("bundled", "cpu"))  # a trained model: corners far from 0
    exploration = explorer.explore("assets/examples/cifar/cat-1.png")
    measured = measure_knockouts(explorer, exploration)
    page = atlas_html(exploration, measured=measured, agreement="ρ line")
    corners = dict(re.findall(r'data-branch="([^"]+)".*?<span class="gx-tag">([^<]+)</span>', page, re.S))
    assert corners == {b: points(measured.probability_change[b]) for b in exploration.spec.branch_names}
    assert sum(text != "0pt" for text in corners.values()) >= 18
    assert 'data-corners="measured"' in page and "measured change of p" in page and "ρ line" in page
    estimate = atlas_html(exploration)
    assert 'data-corners="estimate"' in estimate and "first-order estimate" in estimate
    table = knockout_table_html(exploration, measured)
    assert all(f'data-name="{n}">{points(measured.probability_change[n])}<' in table for n in measured.modules)
    other = explorer.explore(photo)
    with pytest.raises(ValueError, match="another image"):
        atlas_html(other, measured=measured)
    assert points(0.0004) == "0pt" and points(-0.123) == "-12pt" and points(0.012) == "+1.2pt"


def test_the_ui_redraws_once_and_the_api_returns_the_same_numbers():
    from ui import knockout_corners
    from ui.shared import HUB, TOP_CLASS

    picture = "assets/examples/cifar/cat-1.png"
    view = knockout_corners.measured_view(None, picture, "bundled", TOP_CLASS, "cam", "Inferno", 0.6, None, "measured", None, None)
    assert 'data-corners="measured"' in view.atlas and "Spearman ρ" in view.atlas
    again = knockout_corners.measured_view(
        None, picture, "bundled", TOP_CLASS, "cam", "Inferno", 0.6, None, "measured", view.atlas, view.contributions
    )
    assert not isinstance(again.atlas, str) and not isinstance(again.contributions, str)  # already drawn: skipped, no loop
    estimate = knockout_corners.measured_view(
        None, picture, "bundled", TOP_CLASS, "cam", "Inferno", 0.6, None, "estimate", view.atlas, view.contributions
    )
    assert 'data-corners="estimate"' in estimate.atlas and "Spearman ρ" in estimate.atlas
    api = knockout_corners.knockout_effects(picture, "bundled", TOP_CLASS)
    explorer = HUB.explorer("bundled")
    ablation = explorer.ablate(picture, [row["name"] for row in api["branches"]])
    for row, knockout in zip(api["branches"], ablation.knockouts):
        assert abs(row["probability_change"] - knockout.delta["main"]) <= 1e-5
