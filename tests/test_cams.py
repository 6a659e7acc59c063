"""The four extra CAMs of explain.cams equal pytorch-grad-cam's on branches of a random and of the
bundled model, and come from the exploration's one pass."""

import numpy as np
import pytest
import torch
from pytorch_grad_cam import GradCAM, GradCAMPlusPlus, HiResCAM, LayerCAM, XGradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from explain import Explorer
from explain.cams import CamMethod, branch_cams, layer_cams
from explain.render.figures import MAP_KINDS, branch_map
from googlenet.weights import load_model
from tests.conftest import make_loaded

REFERENCES = {
    CamMethod.GRADCAM: GradCAM,
    CamMethod.GRADCAM_PLUS_PLUS: GradCAMPlusPlus,
    CamMethod.XGRADCAM: XGradCAM,
    CamMethod.LAYERCAM: LayerCAM,
    CamMethod.HIRESCAM: HiResCAM,
}
BRANCHES = ["inception3a.branch1", "inception4a.branch2", "inception4c.branch4", "inception4e.branch3", "inception5b.branch2"]


@pytest.fixture(scope="module", params=["random", "bundled"])
def explorer(request):
    return Explorer(load_model("bundled", "cpu") if request.param == "bundled" else make_loaded("cifar", width=0.125))


def reference_raw(model, layer, x, target, method) -> torch.Tensor:
    """pytorch-grad-cam's map before its ReLU and min-max scaling (its get_cam_image)."""
    cam = REFERENCES[method](model=model, target_layers=[model.get_submodule(layer)])
    raw = []
    original = cam.get_cam_image
    cam.get_cam_image = lambda *a, **k: raw.append(original(*a, **k)) or raw[-1]
    cam(input_tensor=x.clone().requires_grad_(True), targets=[ClassifierOutputTarget(target)])  # the weights are frozen
    cam.activations_and_grads.release()
    return torch.from_numpy(np.asarray(raw[0][0], dtype=np.float64))


@pytest.mark.parametrize("method", list(CamMethod))
def test_every_cam_equals_pytorch_grad_cam(explorer, method):
    picture = "assets/examples/cifar/cat-1.png"
    exploration = explorer.explore(picture)
    maps = branch_cams(exploration, method)
    assert set(maps) == set(exploration.spec.branch_names)
    for name in BRANCHES:
        reference = reference_raw(explorer.loaded.model, name, exploration.input, exploration.target, method)
        ours = maps[name].double()
        scale = float(reference.abs().max()) or 1.0
        assert float((ours - reference).abs().max()) / scale <= 1e-5, (method, name)
        assert float(reference.abs().max()) > 0  # a map of zeros would pass trivially
    # the atlas shows them, ReLU'd
    if method is not CamMethod.GRADCAM:
        assert torch.equal(branch_map(exploration, BRANCHES[0], method.value), maps[BRANCHES[0]].clamp(min=0))
        assert method.value in MAP_KINDS


def test_no_extra_pass(monkeypatch, passes):
    explorer = Explorer(make_loaded("cifar", width=0.125))
    exploration = explorer.explore("assets/examples/cifar/dog-1.png")
    calls = passes["n"]
    monkeypatch.setattr(torch.autograd, "grad", lambda *a, **k: pytest.fail("no new backward pass"))
    for method in CamMethod:
        assert len(branch_cams(exploration, method)) == 36
    assert passes["n"] == calls
    assert branch_cams(exploration, "layercam") is branch_cams(exploration, CamMethod.LAYERCAM)  # cached


def test_hirescam_sums_to_the_contribution(explorer):
    exploration = explorer.explore("assets/examples/cifar/ship-1.png")
    maps = branch_cams(exploration, CamMethod.HIRESCAM)
    for name in BRANCHES:
        assert abs(float(maps[name].sum()) - exploration.contributions[name]) <= 1e-4 * max(1.0, abs(exploration.contributions[name]))


def test_layer_cams_of_a_model_copy_equal_the_exploration(explorer):
    exploration = explorer.explore("assets/examples/cifar/cat-1.png")
    for method in (CamMethod.GRADCAM_PLUS_PLUS, CamMethod.LAYERCAM):
        single = layer_cams(explorer.loaded.model, "inception4c", exploration.input, exploration.target, method)[0]
        module = torch.zeros_like(single)
        for b in exploration.spec.module("inception4c").branches:
            if method is CamMethod.LAYERCAM:  # additive over channels, so the branches sum to the module
                module += branch_cams(exploration, method)[b.name]
        if method is CamMethod.LAYERCAM:
            assert torch.allclose(single, module, atol=1e-5 * float(single.abs().max()))
        assert single.shape == exploration.activations["inception4c"].shape[1:]


@pytest.mark.parametrize("method", ["gradcam++", "xgradcam", "layercam", "hirescam"])
def test_the_trust_checks_take_every_cam(method):
    import torch.nn.functional as F

    from explain.trust.report import METHODS, method_label, random_baseline, trust_report

    assert method in METHODS and random_baseline(method) == "random_regions"
    explorer = Explorer(load_model("bundled", "cpu"))
    picture = "assets/examples/cifar/cat-1.png"
    report = trust_report(explorer, picture, method, independent=False, faithfulness=False, road=False, contributions=False)
    exploration = explorer.explore(picture)
    module = sum(branch_cams(exploration, method)[b.name] for b in exploration.spec.module("inception5b").branches)
    if method in ("layercam", "hirescam"):  # channel sums: the module's map is the sum of its branches'
        expected = F.interpolate(module[None, None], size=exploration.input.shape[-2:], mode="bilinear", align_corners=False)[0, 0]
        assert torch.allclose(report.map.float(), expected, atol=1e-5 * float(expected.abs().max()))
    assert report.settings["layer"] == "inception5b" and len(report.to_json()["randomization"]["cascading"]) > 5
    assert method_label(method) in ("Grad-CAM++", "XGrad-CAM", "LayerCAM", "HiResCAM")
