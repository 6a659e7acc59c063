"""One description of the network: everything downstream works on every layout the spec describes."""

import numpy as np
import pytest
import torch

from explain.explorer import Explorer
from explain.microscope.examples import build_index
from explain.microscope.featureviz import visualize
from explain.render.architecture import architecture_figure
from explain.render.figures import ablation_figure, atlas_figure, channels_figure, contributions_figure, heads_figure, specialization_figure
from googlenet.model import GoogLeNet
from googlenet.spec import describe
from tests.conftest import make_loaded

VARIANTS = {
    # name: (stem, num_classes, model options, expected branch3 kernel, expected heads)
    "torchvision": ("imagenet", 7, {}, "1×1→3×3", ("main", "aux1", "aux2")),
    "paper-plain": ("imagenet", 10, {"batch_norm": False}, "1×1→5×5", ("main", "aux1", "aux2")),
    "no-aux-cifar": ("cifar", 10, {"aux_logits": False}, "1×1→3×3", ("main",)),
    "three-classes-cifar": ("cifar", 3, {}, "1×1→3×3", ("main", "aux1", "aux2")),
}


def test_describe_reads_the_live_model():
    spec = describe(GoogLeNet(num_classes=5, width=0.25))
    assert spec.module_names[0] == "inception3a" and spec.module_names[-1] == "inception5b" and len(spec.modules) == 9
    assert len(spec.branch_names) == 36 and spec.branch_kinds == ("branch1", "branch2", "branch3", "branch4")
    branch = spec.branch("inception4c.branch2")
    model = GoogLeNet(num_classes=5, width=0.25)
    assert branch.width == model.inception4c.branch2[1].conv.out_channels
    assert spec.module("inception4c").channels == sum(b.width for b in spec.module("inception4c").branches)
    assert spec.heads == ("main", "aux1", "aux2") and dict(spec.aux_taps) == {"aux1": "inception4a", "aux2": "inception4d"}
    assert spec.layers[0] == "conv1" and spec.layers[-1] == "fc" and spec.num_classes == 5
    assert spec.expand("inception4e") == tuple(f"inception4e.branch{i}" for i in range(1, 5))
    assert spec.describe_set(["inception4c.branch2", *spec.expand("inception4e")]) == "inception4c.branch2 + inception4e"
    with pytest.raises(ValueError, match="unknown branch"):
        spec.expand("inception9z")
    assert describe(GoogLeNet(aux_logits=False, width=0.125)).heads == ("main",)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_view_works_on_every_layout(variant):
    stem, num_classes, options, kernel3, heads = VARIANTS[variant]
    loaded = make_loaded(stem, width=0.125, num_classes=num_classes, **options)
    spec = loaded.spec
    assert spec.branch("inception4c.branch3").kernel == kernel3 and spec.heads == heads and spec.num_classes == num_classes
    explorer = Explorer(loaded)
    rng = np.random.default_rng(1)
    picture = rng.integers(0, 256, size=(loaded.input_size, loaded.input_size, 3), dtype=np.uint8)

    e = explorer.explore(picture)
    assert set(e.cams) == set(spec.branch_names) and len(e.cams) == 36
    assert tuple(e.predictions) == heads and len(e.probabilities["main"]) == num_classes
    for module in spec.modules:
        assert abs(sum(abs(e.shares[b.name]) for b in module.branches) - 1) < 1e-4 or all(
            e.contributions[b.name] == 0 for b in module.branches
        )

    atlas = atlas_figure(e, "signed")
    assert sum(t.type == "heatmap" for t in atlas.data) == 36
    assert len(heads_figure(e).data) == len(heads)
    assert np.asarray(contributions_figure(e).data[0].z).shape == (4, 9)
    assert channels_figure(e, "inception4c.branch3").data

    ablation = explorer.ablate(picture, ["inception4c.branch2", "inception5b"])
    assert [k.label for k in ablation.knockouts] == ["inception4c.branch2", "inception5b"]
    assert set(ablation.baseline_probability) == set(heads)
    assert len(ablation_figure(ablation).data) == len(heads)

    viz = visualize(loaded, "inception4c.branch3", [0, None], size=32, steps=2)
    assert viz.images.shape == (2, 32, 32, 3)
    images = torch.from_numpy(rng.integers(0, 256, size=(12, 3, 32, 32), dtype=np.uint8))
    index = build_index(loaded, images, torch.arange(12) % num_classes, k=2)
    assert set(index.slices) == set(spec.branch_names)
    assert np.asarray(specialization_figure(index, spec).data[0].z).shape == (4, 9)

    diagram = architecture_figure(GoogLeNet(num_classes=num_classes, stem=stem, width=0.125, **options))
    labels = " ".join(diagram.data[0].text)
    assert kernel3.split("→")[-1] in labels and ("aux1" in labels) == ("aux1" in heads)
