import threading

import numpy as np
import pytest
import torch
from captum.attr import LayerGradCam

from explain import Explorer, explore
from explain.explorer import HEADS
from googlenet.model import BRANCH_NAMES, INCEPTION_MODULES, GoogLeNet
from googlenet.weights import CIFAR10_CLASSES
from tests.conftest import make_loaded


@pytest.fixture(scope="module")
def imagenet_stem():
    return make_loaded("imagenet")


@pytest.fixture(scope="module")
def cifar_stem():
    return make_loaded("cifar")


@pytest.fixture(scope="module")
def photo():
    rng = np.random.default_rng(0)
    base = np.linspace(0, 255, 300 * 400 * 3).reshape(300, 400, 3)
    return np.clip(base + rng.normal(0, 40, base.shape), 0, 255).astype(np.uint8)


BRANCHES_TO_CHECK = [
    "inception3a.branch1",
    "inception3b.branch3",
    "inception4a.branch2",
    "inception4c.branch4",
    "inception4e.branch3",
    "inception5b.branch2",
]


@pytest.mark.parametrize("stem", ["imagenet", "cifar"])
@pytest.mark.parametrize("explicit_target", [False, True])
def test_grad_cams_equal_captums_layer_grad_cam(stem, explicit_target, imagenet_stem, cifar_stem, photo):
    loaded = imagenet_stem if stem == "imagenet" else cifar_stem
    target = 3 if explicit_target else None
    exploration = Explorer(loaded).explore(photo, target)
    if explicit_target:
        assert exploration.target == 3 and exploration.target_name == CIFAR10_CLASSES[3]
    x = exploration.input.clone().requires_grad_(True)
    for name in BRANCHES_TO_CHECK:
        layer = loaded.model.get_submodule(name)
        reference = LayerGradCam(loaded.model, layer).attribute(x, exploration.target, relu_attributions=True)[0, 0].detach()
        scale = reference.abs().max().clamp(min=1e-12)
        assert ((exploration.cams[name] - reference).abs().max() / scale) <= 1e-5, name
        signed = LayerGradCam(loaded.model, layer).attribute(x, exploration.target)[0, 0].detach()
        assert ((exploration.cams_signed[name] - signed).abs().max() / signed.abs().max()) <= 1e-5, name


def test_one_forward_and_one_backward(imagenet_stem, photo, monkeypatch):
    model = imagenet_stem.model
    forwards = []
    handle = model.register_forward_hook(lambda *a: forwards.append(1))
    grads = []
    real_grad = torch.autograd.grad
    monkeypatch.setattr(torch.autograd, "grad", lambda *a, **k: grads.append(1) or real_grad(*a, **k))
    monkeypatch.setattr(torch.Tensor, "backward", lambda *a, **k: pytest.fail("explore must not call backward()"))
    try:
        exploration = explore(imagenet_stem, photo)
    finally:
        handle.remove()
    assert len(forwards) == 1 and len(grads) == 1
    assert len(exploration.cams) == 36 and set(exploration.cams) == set(BRANCH_NAMES)
    assert all(name in exploration.activations for name in INCEPTION_MODULES)
    # the hooks are gone
    for name in INCEPTION_MODULES:
        assert not model.get_submodule(name)._forward_hooks


def test_activations_are_views_of_the_module_output_and_shaped(imagenet_stem, photo):
    e = explore(imagenet_stem, photo)
    assert e.activations["inception3a.branch1"].shape[1:] == (28, 28)
    assert e.activations["inception4c.branch3"].shape[1:] == (14, 14)
    assert e.activations["inception5b.branch4"].shape[1:] == (7, 7)
    module = e.activations["inception4c"]
    parts = [e.activations[f"inception4c.branch{i}"] for i in range(1, 5)]
    assert torch.equal(torch.cat(parts), module)
    assert e.image.shape == (224, 224, 3) and e.image.dtype == np.uint8


def test_predictions_equal_the_heads_run_directly(imagenet_stem, photo):
    e = explore(imagenet_stem, photo, topk=3)
    model = imagenet_stem.model
    with torch.no_grad():
        feats = {}
        hooks = [
            getattr(model, n).register_forward_hook(lambda m, i, o, n=n: feats.__setitem__(n, o)) for n in ("inception4a", "inception4d")
        ]
        logits = model(e.input)
        for h in hooks:
            h.remove()
        direct = {"main": logits, "aux1": model.aux1(feats["inception4a"]), "aux2": model.aux2(feats["inception4d"])}
    for head in HEADS:
        p = direct[head][0].softmax(0)
        top = p.topk(3)
        assert [q.index for q in e.predictions[head]] == top.indices.tolist()
        assert np.allclose([q.probability for q in e.predictions[head]], top.values.numpy(), atol=1e-5)
    assert e.target == e.predictions["main"][0].index


def test_contributions_sum_per_module_and_shares(imagenet_stem, photo):
    e = explore(imagenet_stem, photo)
    for module in INCEPTION_MODULES:
        shares = [e.shares[f"{module}.branch{i}"] for i in range(1, 5)]
        assert abs(sum(abs(s) for s in shares) - 1) < 1e-6
    assert all(np.isfinite(v) for v in e.contributions.values())


def test_ablation_equals_zeroing_the_branch_in_the_model(imagenet_stem, photo):
    explorer = Explorer(imagenet_stem)
    ablation = explorer.ablate(photo, ["inception4c.branch3", "inception4a", ["inception3a.branch1", "inception5b.branch2"]], topk=3)
    model = imagenet_stem.model
    x, _ = explorer.prepare(photo)
    for knockout in ablation.knockouts:
        hooks = [model.get_submodule(n).register_forward_hook(lambda m, i, o: torch.zeros_like(o)) for n in knockout.branches]
        with torch.no_grad():
            out = model(x, aux=True)
        for h in hooks:
            h.remove()
        for head, logits in zip(HEADS, out):
            p = logits[0].softmax(0)
            assert abs(knockout.target_probability[head] - float(p[ablation.target])) < 1e-5
            assert knockout.predictions[head][0].index == int(p.argmax())
    # knocking out after inception4a cannot change aux1 (it reads inception4a's output)
    late = ablation.knockouts[0]
    assert abs(late.delta["aux1"]) < 1e-6
    assert len(ablation.knockouts[1].branches) == 4


def test_ablation_runs_as_one_batch(imagenet_stem, photo):
    calls = []
    handle = imagenet_stem.model.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    try:
        Explorer(imagenet_stem).ablate(photo, ["inception4c.branch1", "inception4c.branch2", "inception4c.branch3"])
    finally:
        handle.remove()
    assert calls == [4]


def test_bad_names_and_targets(imagenet_stem, photo):
    explorer = Explorer(imagenet_stem)
    with pytest.raises(ValueError, match="unknown branch"):
        explorer.ablate(photo, ["inception9z.branch1"])
    with pytest.raises(ValueError, match="out of range"):
        explorer.explore(photo, target=10)
    with pytest.raises(ValueError, match="unknown class"):
        explorer.explore(photo, target="unicorn")
    assert explorer.explore(photo, target="frog").target == CIFAR10_CLASSES.index("frog")


def test_cache_reuses_explorations_and_is_bounded(imagenet_stem, photo):
    explorer = Explorer(imagenet_stem, cache_size=2)
    first = explorer.explore(photo)
    assert explorer.explore(photo) is first
    assert explorer.explore(photo, target=2) is not first
    explorer.explore(photo[::-1].copy())
    assert len(explorer._cache) == 2


def test_a_bare_model_works_too(photo):
    model = GoogLeNet(num_classes=10, stem="cifar", width=0.125)
    e = explore(model, photo)
    assert e.image.shape == (32, 32, 3) and e.activations["inception5b.branch1"].shape[1:] == (8, 8)
    assert model.training  # explore restored the mode it found


def test_classify_in_another_thread_never_sees_the_hooks(imagenet_stem, photo):
    explorer = Explorer(imagenet_stem, cache_size=0)
    expected = explorer.classify(photo)
    errors = []

    def classify_many():
        try:
            for _ in range(5):
                assert explorer.classify(photo) == expected
        except Exception as error:  # collected and re-raised in the main thread
            errors.append(error)

    thread = threading.Thread(target=classify_many)
    thread.start()
    for _ in range(3):
        e = explorer.explore(photo)
        assert len(e.cams) == 36
    thread.join()
    assert not errors
