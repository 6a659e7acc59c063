import numpy as np
import pytest

from explain import Explorer, Method
from explain.render.figures import (
    ablation_figure,
    atlas_figure,
    attribution_figure,
    channels_figure,
    contributions_figure,
    heads_figure,
    map_range,
)
from googlenet.model import BRANCHES, INCEPTION_MODULES
from tests.conftest import make_loaded


@pytest.fixture(scope="module")
def setup():
    explorer = Explorer(make_loaded("imagenet", width=0.25))
    picture = (np.random.default_rng(2).random((260, 300, 3)) * 255).astype(np.uint8)
    return explorer, explorer.explore(picture), picture


def _heatmaps(figure):
    return [t for t in figure.data if t.type == "heatmap"]


def _texts(figure):
    return " ".join(" ".join(map(str, t.text)) for t in figure.data if t.type == "scatter" and t.text is not None)


@pytest.mark.parametrize("kind", ["cam", "signed", "activation"])
def test_atlas_has_36_finite_maps_with_module_and_branch_labels(setup, kind):
    _, exploration, _ = setup
    figure = atlas_figure(exploration, kind, "Viridis", 0.5, highlight="inception4c.branch3")
    maps = _heatmaps(figure)
    assert len(maps) == 36
    assert all(np.isfinite(np.asarray(t.z, dtype=float)).all() for t in maps)
    assert [t.type for t in figure.data].count("image") == 1
    text = _texts(figure)
    for module in INCEPTION_MODULES:
        assert module[9:] in text
    for branch in BRANCHES:
        assert branch in text
    assert "1×1→3×3" in text and "pool→1×1" in text
    assert {tuple(np.asarray(t.z).shape) for t in maps} == {(28, 28), (14, 14), (7, 7)}  # native resolution
    assert all(t.opacity == 0.5 for t in maps)
    assert figure.layout.shapes and figure.layout.title.text
    hover = " ".join(t.hovertemplate for t in maps)
    assert all(name in hover for name in exploration.branches)
    assert len(figure.to_json()) < 1_000_000


def test_shared_value_range_for_comparisons(setup):
    _, exploration, _ = setup
    low, high = map_range([exploration, exploration], "signed")
    assert low == -high and high > 0
    figure = atlas_figure(exploration, "signed", value_range=(low, high))
    assert figure.layout.coloraxis.cmin == low and figure.layout.coloraxis.cmax == high


def test_heads_contributions_channels(setup):
    _, exploration, _ = setup
    heads = heads_figure(exploration)
    assert [t.type for t in heads.data] == ["bar"] * 3
    assert all(len(t.x) == 5 for t in heads.data)
    annotations = " ".join(a.text for a in heads.layout.annotations)
    assert "main head" in annotations and "aux1" in annotations and "aux2" in annotations
    contributions = contributions_figure(exploration)
    z = np.asarray(contributions.data[0].z)
    assert z.shape == (4, 9) and np.isfinite(z).all()
    channels = channels_figure(exploration, "inception4c.branch2", n=9)
    assert len(_heatmaps(channels)) == 9 and "inception4c.branch2" in channels.layout.title.text
    with pytest.raises(ValueError, match="unknown branch"):
        channels_figure(exploration, "inception4c.branch7")


def test_attribution_and_ablation_figures(setup):
    explorer, exploration, picture = setup
    result = explorer.attribute(exploration, Method.SALIENCY)
    figure = attribution_figure(result, exploration.image)
    assert len(_heatmaps(figure)) == 1 and np.isfinite(np.asarray(figure.data[1].z, dtype=float)).all()
    assert "Saliency" in figure.layout.title.text
    ablation = explorer.ablate(picture, ["inception4c.branch1", "inception5b"])
    figure = ablation_figure(ablation)
    assert len(figure.data) == 3 and all(len(t.y) == 2 for t in figure.data)


def test_bad_view_arguments(setup):
    _, exploration, _ = setup
    with pytest.raises(ValueError, match="opacity"):
        atlas_figure(exploration, opacity=2)
    with pytest.raises(ValueError, match="unknown map kind"):
        atlas_figure(exploration, kind="gradients")
