"""``python -m bench.explore``: one ``explore`` against the naive alternative (36 separate captum
``LayerGradCam`` calls) and against one plain forward+backward, at 224×224 on full-width
GoogLeNet; plus the cost of re-drawing every figure from a cached exploration.

``--featureviz`` measures the microscope instead (see ``explain.microscope.featureviz``); ``--trust`` the
trust checks (see ``explain.trust.report``): every cascading randomisation step + deletion + insertion
for one image, on the bundled CIFAR-10 model (32 px) and on full-width GoogLeNet at 224 px.
Lines are ``name=value``; the headline comes last. Each time is the median of ``--runs`` calls
in this process.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from captum.attr import LayerGradCam

from explain.explorer import Explorer
from explain.images import load_image
from explain.microscope.examples import build_index
from explain.microscope.featureviz import visualize
from explain.render.curves import training_figure
from explain.render.figures import atlas_figure, channels_figure, contributions_figure, heads_figure
from googlenet.datasets.cifar10 import DataError, read_cifar10
from googlenet.device import amp_dtype, pick_device
from googlenet.model import GoogLeNet
from googlenet.preprocess import CIFAR10
from googlenet.weights import CIFAR10_CLASSES, Loaded, load_model, prepare_for_inference

EXAMPLE = Path(__file__).resolve().parent.parent / "assets" / "examples" / "photos" / "cat.jpg"


def median_seconds(fn, runs: int, warmup: int = 2, device: torch.device | None = None) -> float:
    """Median wall time of ``fn``; on a GPU each call is bracketed by synchronisations."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _sync(device: torch.device | None) -> None:
    if device is not None and device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass(frozen=True)
class ExploreTimes:
    """Seconds (medians) of one explore and of what it replaces, on the same image and target."""

    explore: float
    naive: float  # 36 LayerGradCam calls on GoogLeNet as built (BN unfolded, contiguous memory)
    naive_same_model: float  # the same 36 calls on the app's BN-folded channels_last model
    forward_backward: float  # one forward + input-gradient backward of GoogLeNet as built
    forward_backward_prepared: float  # the same on the app's model


def measure_explore(explorer: Explorer, picture, target: int, runs: int, naive_runs: int | None = None) -> ExploreTimes:
    loaded = explorer.loaded
    device = loaded.device
    x, _ = explorer.prepare(picture)
    explore_s = median_seconds(lambda: explorer.explore(picture, target), runs, device=device)

    model = loaded.model
    plain = GoogLeNet(**asdict(loaded.config)).eval().to(device)  # a model as users build it: BN unfolded, contiguous memory

    def naive(net, inp):
        inp = inp.detach().clone().requires_grad_(True)
        for name in loaded.spec.branch_names:
            LayerGradCam(net, net.get_submodule(name)).attribute(inp, target, relu_attributions=True)

    naive_runs = naive_runs or max(3, runs // 3)
    naive_s = median_seconds(lambda: naive(plain, x.contiguous()), naive_runs, warmup=1, device=device)
    naive_same_s = median_seconds(lambda: naive(model, x), naive_runs, warmup=1, device=device)

    def forward_backward(net, inp):
        inp = inp.detach().clone().requires_grad_(True)
        net(inp)[0, target].backward()

    plain_s = median_seconds(lambda: forward_backward(plain, x.contiguous()), runs, device=device)
    prepared_s = median_seconds(lambda: forward_backward(model, x), runs, device=device)
    return ExploreTimes(explore_s, naive_s, naive_same_s, plain_s, prepared_s)


def bench_explore(runs: int, device: torch.device) -> float:
    loaded = load_model("random", device=device)  # the ImageNet architecture, as the app runs it
    picture = load_image(EXAMPLE)
    explorer = Explorer(loaded, cache_size=0)
    target = int(explorer.classify(picture)["main"][0].index)
    times = measure_explore(explorer, picture, target, runs)
    explore_s, naive_s, naive_same_s, plain_s, prepared_s = (
        times.explore, times.naive, times.naive_same_model, times.forward_backward, times.forward_backward_prepared,
    )  # fmt: skip

    exploration = explorer.explore(picture, target)

    def figures():
        heads_figure(exploration)
        atlas_figure(exploration, "cam", "Inferno", 0.6, highlight="inception4c.branch2")
        contributions_figure(exploration)
        channels_figure(exploration, "inception4c.branch2")

    figures_s = median_seconds(figures, runs)
    curves_s = median_seconds(_curves_100k(), runs)
    atlas_bytes = len(atlas_figure(exploration).to_json())

    print(f"explore_ms={explore_s * 1000:.1f}  (36 activations + 36 Grad-CAMs + 3 heads + contributions, BN folded, channels_last)")
    print(f"naive_captum_ms={naive_s * 1000:.1f}  (36 LayerGradCam calls on GoogLeNet as built, what a captum script does)")
    print(f"naive_captum_same_model_ms={naive_same_s * 1000:.1f}  (36 LayerGradCam calls on the app's BN-folded channels_last model)")
    print(f"speedup_same_model={naive_same_s / explore_s:.1f}")
    print(f"forward_backward_ms={plain_s * 1000:.1f}  (GoogLeNet as built, eval, input gradient)")
    print(f"forward_backward_prepared_ms={prepared_s * 1000:.1f}  (the same on the app's model)")
    print(f"explore_vs_forward_backward={explore_s / plain_s:.2f}")
    print(f"explore_vs_prepared_forward_backward={explore_s / prepared_s:.2f}")
    print(f"figures_rerender_ms={figures_s * 1000:.1f}  (heads + atlas + contributions + channel grid from a cached exploration)")
    print(f"atlas_json_bytes={atlas_bytes}")
    print(f"curves_100k_steps_ms={curves_s * 1000:.1f}  (training curves of a 100,000-step run re-plotted: EMA + thinning to 2,000 points)")
    print(f"speedup={naive_s / explore_s:.1f}  (naive captum on the model as built / explore)")
    return naive_s / explore_s


def _curves_100k():
    """The Train tab's re-plot of a 100,000-step run (four losses, 100 epochs of accuracies)."""
    rng = np.random.default_rng(0)
    steps = np.arange(1, 100_001)
    loss = 2.3 * np.exp(-steps / 30_000) + rng.normal(0, 0.1, steps.size)
    columns = {"step": steps, "loss": loss, "loss_main": loss * 0.8, "loss_aux1": loss * 1.1, "loss_aux2": loss * 1.05}
    epochs = [{"epoch": e, "acc_main": 0.5 + e / 300, "acc_aux1": 0.45 + e / 300, "acc_aux2": 0.47 + e / 300} for e in range(1, 101)]
    return lambda: training_figure(columns, epochs, smoothing=0.9, log_y=True)


def bench_featureviz(device: torch.device, data: str) -> int:
    """Seconds per channel of feature visualization, and the dataset-example index's time.

    Feature visualization needs no data and always runs; the index needs the CIFAR-10 test batch
    and is skipped, with the reason, when ``data`` does not hold it.
    """
    loaded = load_model("random", device=device)  # full-width ImageNet architecture
    result = visualize(loaded, "inception4c.branch2", list(range(8)), size=128, steps=128)
    per_channel = result.seconds / 8
    print(f"featureviz_seconds_8_channels={result.seconds:.1f}  (inception4c.branch2, 128×128, 128 Adam steps, full width)")
    gain = result.objective[-1] / max(abs(result.objective[0]), 1e-9)
    print(f"featureviz_objective_first={result.objective[0]:.3f} last={result.objective[-1]:.3f} (×{gain:.1f})")
    try:
        cifar = read_cifar10(data)
    except DataError as error:
        print(f"index_skipped=no CIFAR-10 test batch ({error}); pass --data DIR or set GOOGLENET_DATA to time the dataset-example index")
        print(f"seconds_per_channel={per_channel:.2f}")
        return 0
    torch.manual_seed(0)
    model = GoogLeNet(num_classes=10, stem="cifar", width=1.0)
    full = Loaded(prepare_for_inference(model, device), CIFAR10_CLASSES, CIFAR10, "full-width CIFAR GoogLeNet", "random")
    what = f"{len(cifar.test_labels)} CIFAR test images, full-width CIFAR-stem model, every channel of all 36 branches"
    exact = build_index(full, cifar.test_images, cifar.test_labels, precision="fp32")
    print(f"index_seconds_fp32={exact.seconds:.1f}  ({what})")
    index = build_index(full, cifar.test_images, cifar.test_labels, precision="auto")  # what the Microscope runs
    amp = amp_dtype("auto", device)
    print(f"index_seconds={index.seconds:.1f}  ({what}, {'bf16 autocast' if amp is not None else 'float32'}, as the Microscope runs it)")
    print(f"seconds_per_channel={per_channel:.2f}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.explore", description=__doc__)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--device", default=None)
    parser.add_argument("--featureviz", action="store_true", help="feature visualization and dataset-example indexing")
    parser.add_argument(
        "--data",
        default=os.environ.get("GOOGLENET_DATA", "data"),
        help="--featureviz: CIFAR-10 folder for dataset examples ($GOOGLENET_DATA)",
    )
    parser.add_argument("--trust", action="store_true", help="the trust checks of explain.trust.report")
    args = parser.parse_args(argv)
    device = pick_device(args.device)
    print(
        f"device={device}"
        + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else f" ({torch.get_num_threads()} threads)")
    )
    if args.featureviz:
        return bench_featureviz(device, args.data)
    if args.trust:
        bench_trust(max(1, min(args.runs, 3)), device)
        return 0
    bench_explore(args.runs, device)
    return 0


def bench_trust(runs: int, device: torch.device) -> float:
    """Seconds of ``trust_report`` per method: the bar's part (cascade + deletion + insertion) and
    the whole report (+ independent randomisation, ROAD, 45 knock-outs)."""
    from explain.trust.report import trust_report

    picture = load_image(EXAMPLE)
    cases = [
        ("bundled", load_model("bundled", device=device), ("saliency", "gradcam", "guided_gradcam", "integrated_gradients", "occlusion")),
        ("224_full_width", load_model("random", device=device), ("saliency", "gradcam", "guided_gradcam", "integrated_gradients")),
    ]
    headline = 0.0
    for name, loaded, methods in cases:
        explorer = Explorer(loaded, cache_size=4)
        for method in methods:
            core = dict(independent=False, road=False, contributions=False)
            seconds = median_seconds(lambda m=method, e=explorer, c=core: trust_report(e, picture, m, **c), runs, warmup=1)
            print(f"trust_{name}_{method}_s={seconds:.2f}  (13 cascading steps + deletion + insertion, {loaded.input_size} px)")
            if name == "bundled" and method == "integrated_gradients":
                headline = seconds
        for method in ("saliency", "gradcam"):
            report = trust_report(explorer, picture, method)
            parts = "  ".join(f"{k}={v:.2f}" for k, v in report.timings.items())
            print(f"trust_{name}_{method}_full_s={report.seconds:.2f}  (+ independent, ROAD, knock-outs: {parts})")
    print(f"trust_report_s={headline:.2f}  (bundled model, integrated gradients, cascade + deletion + insertion)")
    return headline


if __name__ == "__main__":
    sys.exit(main())
