"""Timing of the atlas's measured knock-outs (explain.knockouts): 36 branches + 9 modules, each run
on from its module's cached output. Prints medians; asserts nothing.

    python -m bench.knockouts [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from explain import Explorer
from explain.knockouts import measure_knockouts
from googlenet.weights import load_model


def _time(explorer: Explorer, picture: np.ndarray, repeats: int) -> tuple[float, float, float]:
    seconds, explore_seconds, forward_seconds = [], [], []
    x, _ = explorer.prepare(picture)
    for i in range(repeats):
        with torch.inference_mode():
            start = time.perf_counter()
            explorer.loaded.model(x)
            forward_seconds.append(time.perf_counter() - start)
        start = time.perf_counter()
        exploration = explorer.explore(picture, target=i % 3)  # a new target: no cached exploration
        explore_seconds.append(time.perf_counter() - start)
        start = time.perf_counter()
        measure_knockouts(explorer, exploration)
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds), statistics.median(explore_seconds), statistics.median(forward_seconds)


def _report(what: str, knock: float, explore: float, forward: float, repeats: int) -> None:
    print(
        f"{what}: 45 measured knock-outs {knock * 1000:.0f} ms, one explore pass {explore * 1000:.0f} ms, "
        f"one plain forward {forward * 1000:.1f} ms (medians of {repeats}; knock-outs = {knock / forward:.1f} forwards)"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    picture = rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    bundled = Explorer(load_model("bundled", "cpu"), cache_size=0)
    _report("bundled model (32 px)", *_time(bundled, picture, args.repeats), args.repeats)
    full = Explorer(load_model("random", "cpu"), cache_size=0)  # full width, 224 px, random weights
    _report("full width at 224 px", *_time(full, picture, args.repeats), args.repeats)


if __name__ == "__main__":
    main()
