"""``python -m explain.bench``: one ``explore`` against the naive alternative (36 separate captum
``LayerGradCam`` calls) and against one plain forward+backward, at 224×224 on full-width
GoogLeNet; plus the cost of re-drawing every figure from a cached exploration.

``--featureviz`` measures the microscope instead (see ``explain.featureviz``).
Lines are ``name=value``; the headline comes last. Each time is the median of ``--runs`` calls
in this process.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from captum.attr import LayerGradCam

from googlenet.model import BRANCH_NAMES, GoogLeNet
from googlenet.weights import load_model, pick_device

from .explorer import Explorer
from .figures import atlas_figure, channels_figure, contributions_figure, heads_figure
from .images import load_image

EXAMPLE = Path(__file__).resolve().parent.parent / "assets" / "examples" / "photos" / "cat.jpg"


def median_seconds(fn, runs: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_explore(runs: int, device: torch.device) -> float:
    loaded = load_model("random", device=device)  # the ImageNet architecture, as the app runs it
    picture = load_image(EXAMPLE)
    explorer = Explorer(loaded, cache_size=0)
    x, _ = explorer.prepare(picture)
    target = int(explorer.classify(picture)["main"][0].index)

    explore_s = median_seconds(lambda: explorer.explore(picture, target), runs)

    model = loaded.model
    plain = GoogLeNet().eval().to(device)  # a model as users build it: BN unfolded, contiguous memory

    def naive(net, inp):
        inp = inp.detach().clone().requires_grad_(True)
        for name in BRANCH_NAMES:
            LayerGradCam(net, net.get_submodule(name)).attribute(inp, target, relu_attributions=True)

    naive_s = median_seconds(lambda: naive(plain, x.contiguous()), max(3, runs // 3), warmup=1)
    naive_same_s = median_seconds(lambda: naive(model, x), max(3, runs // 3), warmup=1)

    def forward_backward(net, inp):
        inp = inp.detach().clone().requires_grad_(True)
        net(inp)[0, target].backward()

    plain_s = median_seconds(lambda: forward_backward(plain, x.contiguous()), runs)
    prepared_s = median_seconds(lambda: forward_backward(model, x), runs)

    exploration = explorer.explore(picture, target)

    def figures():
        heads_figure(exploration)
        atlas_figure(exploration, "cam", "Inferno", 0.6, highlight="inception4c.branch2")
        contributions_figure(exploration)
        channels_figure(exploration, "inception4c.branch2")

    figures_s = median_seconds(figures, runs)
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
    print(f"speedup={naive_s / explore_s:.1f}  (naive captum on the model as built / explore)")
    return naive_s / explore_s


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m explain.bench", description=__doc__)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--device", default=None)
    parser.add_argument("--featureviz", action="store_true", help="feature visualization and dataset-example indexing")
    parser.add_argument("--data", default="data", help="--featureviz: CIFAR-10 folder for dataset examples")
    args = parser.parse_args(argv)
    device = pick_device(args.device)
    print(
        f"device={device}"
        + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else f" ({torch.get_num_threads()} threads)")
    )
    if args.featureviz:
        from .featureviz import bench as bench_featureviz

        return bench_featureviz(device, args.data)
    bench_explore(args.runs, device)
    return 0


if __name__ == "__main__":
    sys.exit(main())
