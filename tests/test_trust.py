"""The trust checks: each metric against an independent implementation on a tiny model (quantus
0.6 for MPRT and pixel flipping, pytorch-grad-cam for ROAD, scipy/skimage for ρ and SSIM), then
the published findings on the bundled CIFAR-10 model and real test images."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from captum.attr import LayerGradCam, Saliency
from torch import nn

from explain import Explorer
from explain.trust.faithfulness import baseline_maps, image_seed
from explain.trust.metrics import impute_linear, spearman, ssim
from explain.trust.report import (
    CAM_VARIANTS,
    GRADCAM,
    METHODS,
    compare_models,
    perturbation_curves,
    random_baseline,
    randomization_layers,
    randomize,
    road_curves,
    shuffled_label_runs,
    trained_on_shuffled_labels,
    trust_report,
)
from explain.trust.trust_figures import contributions_figure, faithfulness_figure, randomization_figure, road_figure
from googlenet.weights import load_model
from tests.conftest import cifar_slice


class Tiny(nn.Module):
    """conv → ReLU → conv → ReLU → mean → fc: small enough that quantus' numpy loops are instant.

    ``scale`` multiplies the default-initialised weights so that perturbing pixels moves the
    probabilities by tenths, not thousandths, and a wrong pixel order cannot pass for a right one.
    """

    def __init__(self, channels: int = 3, scale: float = 1.0) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, 8, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 4)
        with torch.no_grad():
            for m in (self.conv1, self.conv2, self.fc):
                m.weight.mul_(scale)

    def forward(self, x):
        return self.fc(self.pool(self.relu2(self.conv2(self.relu1(self.conv1(x))))).flatten(1))


@pytest.fixture()
def tiny():
    torch.manual_seed(0)
    return Tiny().eval(), torch.randn(3, 3, 16, 16), np.array([0, 1, 2])


@pytest.fixture(scope="module")
def bundled():
    return Explorer(load_model("bundled", device="cpu"), cache_size=64)


# -- metrics against independent implementations ------------------------------------------------


def test_spearman_and_ssim_agree_with_scipy_and_skimage():
    from scipy.stats import spearmanr
    from skimage.metrics import structural_similarity

    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        a = torch.rand(32, 32, generator=g)
        b = (a + 0.5 * torch.rand(32, 32, generator=g)).clamp(max=1.0)
        a[a < 0.3] = 0  # plateaus of exact zeros, like a ReLU'd Grad-CAM: ties need average ranks
        assert spearman(a, b) == pytest.approx(spearmanr(a.flatten(), b.flatten())[0], abs=1e-9)
        reference = structural_similarity(
            a.double().numpy(), b.double().numpy(), gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0
        )
        assert ssim(a, b) == pytest.approx(reference, abs=1e-9)
    assert np.isnan(spearman(torch.ones(4, 4), torch.rand(4, 4)))


@pytest.mark.parametrize("order", ["top_down", "independent"])
def test_model_parameter_randomisation_agrees_with_quantus(tiny, order):
    """Same layers, same re-initialisation (quantus: manual_seed(seed + 1), reset_parameters):
    the per-layer Spearman ρ of |saliency| must match quantus.MPRT to 1e-6."""
    quantus = pytest.importorskip("quantus")
    model, x, y = tiny

    def explain_func(model, inputs, targets, **_):
        x_ = torch.as_tensor(inputs).float()
        return Saliency(model).attribute(x_, target=torch.as_tensor(targets).long(), abs=True).sum(1, keepdim=True).detach().numpy()

    metric = quantus.MPRT(layer_order=order, seed=42, abs=True, normalise=False, disable_warnings=True, display_progressbar=False)
    theirs = metric(model=model, x_batch=x.numpy(), y_batch=y, a_batch=None, explain_func=explain_func, device="cpu", softmax=False)

    def quantus_reinit(module, _seed):
        torch.manual_seed(43)
        module.reset_parameters()

    for i in range(len(x)):
        copy_ = copy.deepcopy(model)
        saliency = Saliency(copy_)

        def explain(copy_=copy_, saliency=saliency, i=i):
            return saliency.attribute(x[i : i + 1].clone(), target=int(y[i]), abs=False).detach()[0]

        mode = "cascading" if order == "top_down" else "independent"
        _, ours = randomize(copy_, explain, ["fc", "conv2", "conv1"], mode, reinit=quantus_reinit)
        for step in ours:
            assert step.spearman_abs == pytest.approx(theirs[step.layer][i], abs=1e-6), step.layer


def _quantus_curve(model, x, y, a, steps, perturb_func=None):
    quantus = pytest.importorskip("quantus")
    h, w = x.shape[-2:]
    kwargs = dict(perturb_func=perturb_func) if perturb_func is not None else dict(perturb_baseline=0.0)
    metric = quantus.PixelFlipping(
        features_in_step=h * w // steps, normalise=False, disable_warnings=True, display_progressbar=False, **kwargs
    )
    return np.array(metric(model=model, x_batch=x.numpy(), y_batch=y, a_batch=a.numpy(), device="cpu", softmax=True))


def test_deletion_and_insertion_agree_with_quantus_pixel_flipping():
    """Deletion = quantus' PixelFlipping with a 0 baseline; insertion = the same loop started from
    the blurred image, putting back the true pixels. Curves agree to 1e-5, AUCs to 1e-6.

    One input channel: quantus steps over features (pixels × channels) in sizes that must divide
    H·W, so with 3 channels a step could split a pixel's colours."""
    torch.manual_seed(0)
    model, x, y = Tiny(channels=1, scale=4).eval(), torch.randn(3, 1, 16, 16), np.array([0, 1, 2])
    steps = 16  # 256 pixels: 16 per step
    g = torch.Generator().manual_seed(1)
    maps = [torch.rand(16, 16, generator=g) for _ in range(len(x))]  # distinct values: one order
    a = torch.stack(maps).unsqueeze(1)
    theirs_deletion = _quantus_curve(model, x, y, a, steps)
    for i in range(len(x)):
        deletion, insertion, sigma = perturbation_curves(model, x[i : i + 1], int(y[i]), {"map": maps[i]}, steps=steps)
        ours = deletion["map"].scores.numpy()
        assert ours.max() - ours.min() > 0.05
        assert np.allclose(ours[1:], theirs_deletion[i], atol=1e-5)
        # quantus' AUC is np.trapz over its points at dx=1; ours adds the unperturbed point and spans [0, 1]
        auc = (np.trapezoid(theirs_deletion[i], dx=1) + (ours[0] + ours[1]) / 2) / steps
        assert deletion["map"].auc == pytest.approx(auc, abs=1e-6)

        from explain.trust.metrics import gaussian_blur

        original = x[i : i + 1].numpy().reshape(1, -1)

        def put_back(arr, indices, original=original, **_):
            out = arr.copy()
            out[np.arange(len(arr))[:, None], indices] = original[np.arange(len(arr))[:, None], indices]
            return out

        blurred = gaussian_blur(x[i : i + 1], sigma)
        theirs_insertion = _quantus_curve(model, blurred, y[i : i + 1], a[i : i + 1], steps, put_back)[0]
        assert np.allclose(insertion["map"].scores.numpy()[1:], theirs_insertion, atol=1e-5)


def test_draws_of_a_random_map_average_their_curves():
    """A D×H×W stack of random maps gives the mean of its D curves (the expected curve of a random order)."""
    torch.manual_seed(0)
    model, x = Tiny(scale=4).eval(), torch.randn(1, 3, 16, 16)
    stack = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(3))
    deletion, insertion, _ = perturbation_curves(model, x, 1, {"random": stack}, steps=8)
    singles = [perturbation_curves(model, x, 1, {"random": m}, steps=8) for m in stack]
    for kind, curve in ((0, deletion["random"]), (1, insertion["random"])):
        each = torch.stack([s[kind]["random"].scores for s in singles])
        assert (each.max(0).values - each.min(0).values).max() > 0.01  # the draws differ, so the mean is a real check
        assert torch.allclose(curve.scores, each.mean(0), atol=1e-6)
        assert curve.auc == pytest.approx(np.mean([s[kind]["random"].auc for s in singles]), abs=1e-6)


def test_road_agrees_with_pytorch_grad_cam():
    """Noise-free imputation equals pytorch-grad-cam's sparse direct solve (to 1e-5); MoRF and LeRF
    scores equal its ROADMostRelevantFirst / ROADLeastRelevantFirst (softmax target, noise 0) to
    1e-5, where the scores themselves move by 1e-3 or more (weights × 4 make the tiny model react)."""
    pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam.metrics.perturbation_confidence import (
        PerturbationConfidenceMetric,
        RemoveLeastRelevantFirst,
        RemoveMostRelevantFirst,
    )
    from pytorch_grad_cam.metrics.road import NoisyLinearImputer
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

    torch.manual_seed(0)
    model, x, y = Tiny(scale=4).eval(), torch.randn(3, 3, 16, 16), np.array([0, 1, 2])
    g = torch.Generator().manual_seed(2)
    remove = torch.rand(16, 16, generator=g) < 0.6
    ours = impute_linear(x[:1], remove, noise=0.0, rtol=1e-9)
    theirs = NoisyLinearImputer(noise=0.0)(x[0], (~remove).float())
    assert torch.allclose(ours[0], theirs, atol=1e-5)

    cam = torch.rand(16, 16, generator=g)
    c, n, target = cam.numpy(), cam.numel(), int(y[0])
    targets = [ClassifierOutputSoftmaxTarget(target)]
    with torch.no_grad():
        base = float(model(x[:1]).softmax(1)[0, target])
    for percentile in (30, 70):
        # how many pixels their percentile thresholds remove, so both sides remove the same set
        most = int((c >= np.percentile(c, percentile)).sum())
        least = int(((1 - c) >= np.percentile(1 - c, percentile)).sum())
        morf = road_curves(model, x[:1], target, {"map": cam}, fractions=[most / n], noise=0.0)["map"].morf[0]
        lerf = road_curves(model, x[:1], target, {"map": cam}, fractions=[least / n], noise=0.0)["map"].lerf[0]
        their_morf = PerturbationConfidenceMetric(RemoveMostRelevantFirst(percentile, NoisyLinearImputer(noise=0.0)))
        their_lerf = PerturbationConfidenceMetric(RemoveLeastRelevantFirst(percentile, NoisyLinearImputer(noise=0.0)))
        expected_morf = float(their_morf(x[:1], c[None], targets, model)[0])
        expected_lerf = float(their_lerf(x[:1], c[None], targets, model)[0])
        assert min(abs(expected_morf), abs(expected_lerf)) > 5e-4  # the check can tell a wrong removal set
        assert float(morf) - base == pytest.approx(expected_morf, abs=1e-5)
        assert float(lerf) - base == pytest.approx(expected_lerf, abs=1e-5)


# -- the bundled model on real CIFAR-10 test images ---------------------------------------------


def test_guided_gradcam_stays_more_similar_than_saliency_after_full_randomisation(bundled, cifar, capsys):
    """Adebayo et al. 2018: Guided Grad-CAM barely changes when the weights are randomised,
    saliency does. Mean Spearman ρ of |map| after the full cascade, over 8 test images."""
    final = {Method: [] for Method in ("saliency", "guided_gradcam")}
    for index in range(8):
        for method in final:
            report = trust_report(bundled, cifar.test_images[index], method, independent=False, faithfulness=False, contributions=False)
            final[method].append(report.randomization.cascading[-1].spearman_abs)
    guided, saliency = np.nanmean(final["guided_gradcam"]), np.nanmean(final["saliency"])
    above = sum(g > s for g, s in zip(final["guided_gradcam"], final["saliency"]))
    with capsys.disabled():
        print(
            f"\n[report] full cascade, mean ρ(|map|) over 8 CIFAR test images: guided_gradcam={guided:.3f} saliency={saliency:.3f}; guided above saliency on {above}/8"
        )
    assert guided > saliency


def test_deletion_beats_a_random_map_on_most_images(bundled, cifar, capsys):
    counts = {}
    images = range(100, 108)  # other test images than the randomisation test's
    for method in METHODS:
        wins = {"random": 0, "random_regions": 0, "own": 0}
        for index in images:
            report = trust_report(
                bundled, cifar.test_images[index], method, cascading=False, independent=False, road=False, contributions=False, n_steps=16
            )
            d = report.faithfulness.deletion
            for baseline in ("random", "random_regions"):
                wins[baseline] += d["map"].auc < d[baseline].auc
            wins["own"] += report.faithfulness.beats_random("deletion")
        counts[method] = wins
    with capsys.disabled():
        print(
            f"\n[report] deletion AUC below random pixels' / random regions' / its own-resolution random map's on {len(images)} CIFAR test images: {counts}"
        )
    # Each map against the random map of its own resolution (random_baseline): IG's per-pixel map
    # against per-pixel noise (the bar: on at least 70 % of images), Grad-CAM's 8×8 map against
    # 8×8 noise upsampled alike, on most images. Saliency, occlusion and Guided Grad-CAM are
    # reported, not asserted.
    n = len(images)
    assert counts["integrated_gradients"]["own"] >= 0.7 * n and counts["gradcam"]["own"] > n / 2, counts


def test_each_map_is_held_against_a_random_map_of_its_own_resolution(bundled, cifar):
    maps = {k: m[0] for k, m in baseline_maps((32, 32), 0, (8, 8), draws=2).items() if k != "centre"}

    def neighbours_rho(m):  # rank correlation of each pixel with its right-hand neighbour
        return spearman(m[:, :-1].flatten(), m[:, 1:].flatten())

    assert neighbours_rho(maps["random_regions"]) > 0.8 and abs(neighbours_rho(maps["random"])) < 0.2
    assert torch.equal(baseline_maps((32, 32), 0, (8, 8), draws=2)["random"][0], maps["random"])  # seeded
    assert baseline_maps((32, 32), 0, (8, 8), draws=3)["random_regions"].shape == (3, 32, 32)
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    # each picture its own random maps, the same ones each time (channels_last or not)
    assert image_seed(x, 0) == image_seed(x.contiguous(memory_format=torch.channels_last), 0)
    assert len({image_seed(x, 0), image_seed(x, 1), image_seed(x.flip(-1), 0)}) == 3
    assert [random_baseline(m) for m in METHODS] == [
        "random_regions" if m in (GRADCAM, "occlusion", *CAM_VARIANTS) else "random" for m in METHODS
    ]  # every CAM lives on the 8×8 grid

    image = cifar.test_images[7]
    exploration = bundled.explore(image)
    model = bundled.loaded.model
    cam = LayerGradCam(model, model.inception5b).attribute(exploration.input, target=exploration.target)
    for method in (GRADCAM, "integrated_gradients"):
        report = trust_report(bundled, image, method, cascading=False, independent=False, road=False, contributions=False, n_steps=8)
        f = report.faithfulness
        assert f.grid == tuple(cam.shape[-2:]) and f.grid != (32, 32)  # the Grad-CAM layer's grid, not the pixels
        data = report.to_json()
        assert data["random_baseline"] == random_baseline(method) and data["random_regions_grid"] == list(f.grid)
        own = data[f"{data['random_baseline']}_deletion_auc"]
        assert data["beats_random_baseline"]["deletion"] == (data["deletion_auc"] < own)
        assert (f"random regions on the {f.grid[0]}×{f.grid[1]} grid" in report.verdict.details[-1]) and (
            f"here {'random regions' if method == GRADCAM else 'random pixels'}" in report.verdict.details[-1]
        )
    occlusion = trust_report(bundled, image, "occlusion", cascading=False, independent=False, road=False, contributions=False)
    assert occlusion.faithfulness.grid == (15, 15)  # 4-px windows every 2 px over 32 px: (32 − 4) / 2 + 1 positions
    assert occlusion.to_json()["random_baseline"] == "random_regions"


def test_randomisation_never_touches_the_shared_model(bundled, cifar):
    image = cifar.test_images[3]
    state = {k: v.clone() for k, v in bundled.loaded.model.state_dict().items()}
    before = bundled.explore(image)
    bundled._cache.clear()
    report = trust_report(bundled, image, GRADCAM, faithfulness=False, contributions=False)  # the cheapest map
    bundled._cache.clear()
    after = bundled.explore(image)
    assert report.randomization.cascading[-1].layer == "conv1"
    assert all(torch.equal(state[k], v) for k, v in bundled.loaded.model.state_dict().items())
    assert after.target == before.target and after.contributions == before.contributions
    assert all(torch.equal(before.cams[b], after.cams[b]) for b in before.cams)
    assert not any(m._forward_hooks for m in bundled.loaded.model.modules())


def test_report_json_figures_and_knockouts(bundled, cifar):
    image = cifar.test_images[5]
    seen = []
    report = trust_report(bundled, image, GRADCAM, progress=lambda f, m: seen.append(f))
    assert seen[-1] == 1.0 and all(0 <= a <= b for a, b in zip(seen, seen[1:]))
    data = report.to_json()
    layers = list(randomization_layers(bundled.loaded.model))
    assert layers[0] == "fc" and layers[1] == "inception5b" and layers[-1] == "conv1"
    assert [s["layer"] for s in data["randomization"]["cascading"]] == layers
    assert [s["layer"] for s in data["randomization"]["independent"]] == layers
    assert set(data["randomization"]["cascading"][0]) == {"layer", "spearman_abs", "spearman", "ssim", "target"}
    assert all(isinstance(s["target"], int) for s in data["randomization"]["cascading"])  # the randomised model's top class
    for key in (
        "deletion_auc",
        "insertion_auc",
        "random_deletion_auc",
        "random_insertion_auc",
        "road",
        "contributions_vs_knockout_spearman",
    ):
        assert key in data, key
    json.dumps(data, allow_nan=False)
    assert report.verdict.line.endswith(".") and report.records()
    for figure in (
        randomization_figure(report),
        randomization_figure(report, "independent"),
        faithfulness_figure(report),
        road_figure(report),
    ):
        assert len(figure.to_json()) < 150_000
    contributions_figure(report)

    # the knock-out is a real one: zeroing inception4c.branch2 by replacing its output agrees
    c = report.contributions
    model = copy.deepcopy(bundled.loaded.model)
    x = bundled.explore(image).input
    with torch.no_grad():
        base = float(model(x)[0, report.target])
        handle = model.inception4c.branch2.register_forward_hook(lambda m, i, o: torch.zeros_like(o))
        knocked = float(model(x)[0, report.target])
        handle.remove()
    assert c.measured[c.branches.index("inception4c.branch2")] == pytest.approx(base - knocked, abs=1e-4)
    assert c.estimated[c.branches.index("inception4c.branch2")] == pytest.approx(
        bundled.explore(image).contributions["inception4c.branch2"]
    )


def test_bad_method_and_options_are_refused(bundled, cifar):
    with pytest.raises(ValueError, match="unknown method"):
        trust_report(bundled, cifar.test_images[0], "lime")
    with pytest.raises(ValueError, match="unknown options"):
        trust_report(bundled, cifar.test_images[0], "saliency", windw=3)


def test_cli_writes_the_json(tmp_path, cifar, capsys):
    from PIL import Image

    from explain.trust.cli import run as main

    path = tmp_path / "frog.png"
    Image.fromarray(cifar.test_images[7].permute(1, 2, 0).numpy()).save(path)
    out = tmp_path / "scores.json"
    assert main([str(path), "--model", "bundled", "--method", "gradcam", "--json", str(out), "--no-independent"]) == 0
    data = json.loads(out.read_text())
    assert data["method"] == "gradcam" and len(data["randomization"]["cascading"]) == 13
    assert "verdict" in capsys.readouterr().out
    assert main([str(path), "--model", "bundled", "--method", "lime"]) == 2


def test_data_randomisation_compares_two_models_and_finds_shuffled_runs(bundled, cifar, tmp_path):
    from googlenet.training.trainer import TrainConfig, Trainer

    small = cifar_slice(cifar, 128, 64)
    end = Trainer(
        TrainConfig(out=str(tmp_path / "shuffled"), epochs=1, batch_size=64, width=0.125, max_steps=1, shuffle_labels=True), data=small
    ).run()
    shuffled = load_model(end.checkpoint, device="cpu")
    assert trained_on_shuffled_labels(shuffled) and not trained_on_shuffled_labels(bundled.loaded)
    assert shuffled_label_runs(tmp_path) == [Path(end.checkpoint)]
    result = compare_models(bundled, shuffled, cifar.test_images[0], "saliency")
    assert result.real.shape == result.shuffled.shape == (32, 32) and -1 <= result.spearman_abs <= 1


def test_shuffled_labels_are_a_seeded_permutation_of_the_training_labels(cifar, tmp_path):
    from googlenet.training.trainer import TrainConfig, _Run

    small = cifar_slice(cifar, 256, 64)
    config = TrainConfig(out=str(tmp_path / "s"), epochs=1, batch_size=64, width=0.125, shuffle_labels=True, seed=3)
    run = _Run(config, small, torch.device("cpu"), 0, 1, None, None)
    labels = run.train_batches.labels.cpu()
    assert not torch.equal(labels, small.train_labels) and torch.equal(labels.sort().values, small.train_labels.sort().values)
    assert torch.equal(run.test_batches.labels.cpu(), small.test_labels)
    again = _Run(TrainConfig(**{**config.__dict__, "out": str(tmp_path / "t")}), small, torch.device("cpu"), 0, 1, None, None)
    assert torch.equal(again.train_batches.labels.cpu(), labels)
