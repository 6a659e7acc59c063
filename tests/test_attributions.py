import numpy as np
import pytest
import torch
from captum.attr import IntegratedGradients

from explain import Explorer, Method
from tests.conftest import make_loaded


@pytest.fixture(scope="module")
def explorer():
    return Explorer(make_loaded("cifar", width=0.25))


@pytest.fixture(scope="module")
def picture():
    return (np.random.default_rng(1).random((40, 40, 3)) * 255).astype(np.uint8)


@pytest.mark.parametrize("method", list(Method))
@pytest.mark.parametrize("noise_tunnel", [False, True])
def test_every_method_gives_a_finite_map_with_progress(explorer, picture, method, noise_tunnel):
    reports = []
    result = explorer.attribute(
        picture, method, target=2, noise_tunnel=noise_tunnel, progress=lambda f, m: reports.append(f), nt_samples=2, n_steps=8
    )
    assert result.map.shape == (32, 32) and result.raw.shape == (3, 32, 32)
    assert torch.isfinite(result.map).all() and result.map.abs().sum() > 0
    assert result.target == 2 and result.target_name == "bird" and result.method is method
    assert reports and reports[-1] == 1.0 and all(0 <= a <= b for a, b in zip(reports, reports[1:]))
    # captum's hooks are gone and in-place ReLUs are restored on the private copy
    model = explorer._captum_model
    assert not model._forward_hooks
    assert all(m.inplace for m in model.modules() if isinstance(m, torch.nn.ReLU))


def test_integrated_gradients_is_captums_and_complete(explorer, picture):
    exploration = explorer.explore(picture)
    result = explorer.attribute(exploration, Method.INTEGRATED_GRADIENTS, n_steps=64)
    assert result.target == exploration.target
    model = explorer._captum_model
    x = exploration.input
    reference, delta = IntegratedGradients(model).attribute(
        x, torch.zeros_like(x), target=result.target, n_steps=64, internal_batch_size=16, return_convergence_delta=True
    )
    assert torch.allclose(result.raw, reference[0], atol=1e-5)
    with torch.no_grad():
        gap = float(model(x)[0, result.target] - model(torch.zeros_like(x))[0, result.target])
    # completeness: attributions sum to f(x) − f(baseline)
    assert abs(float(result.raw.sum()) - gap) <= 0.05 * abs(gap) + 1e-3


def test_occlusion_defaults_scale_with_the_input(explorer, picture):
    result = explorer.attribute(picture, "occlusion", target=0)
    assert result.settings["window"] == 4 and result.settings["stride"] == 2


def test_unknown_method_and_option(explorer, picture):
    with pytest.raises(ValueError, match="unknown attribution method"):
        explorer.attribute(picture, "lime")
    with pytest.raises(ValueError, match="unknown attribution options"):
        explorer.attribute(picture, Method.SALIENCY, steps=3)


def test_signed_methods_keep_their_sign(explorer, picture):
    assert Method.INTEGRATED_GRADIENTS.signed and not Method.SALIENCY.signed
    result = explorer.attribute(picture, Method.SALIENCY, target=1)
    assert (result.map >= 0).all()
