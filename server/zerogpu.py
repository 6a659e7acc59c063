"""Hugging Face ZeroGPU: a GPU is lent to a decorated function for at most ``duration`` seconds.

Elsewhere (a CPU, a dedicated GPU, no ``spaces`` package) the decorator changes nothing. A shorter
duration puts the visitor earlier in ZeroGPU's queue, so each function asks for what fits it: a
classify or an explore pass is milliseconds on a GPU (47 ms on a 2-core CPU), attributions run
tens of passes (Integrated Gradients 50 steps, ×10 with NoiseTunnel), the microscope optimises
images for 128 steps per channel and indexes a dataset. Training cannot run on ZeroGPU: it runs in
a background thread, which cannot hold a ZeroGPU slot; the Train tab refuses it there with a message.
"""

from __future__ import annotations

import os
from collections.abc import Callable

__all__ = ["DURATIONS", "gpu", "on_zero_gpu"]

# seconds per function name; unknown names get ZeroGPU's own default of 60 s
DURATIONS = {
    "classify": 10,
    "explore": 15,
    "explore_view": 15,
    "example_view": 15,
    "compare_view": 20,
    "knockout_view": 20,
    "knock_out": 20,
    "attribute": 90,
    "attribute_view": 90,
    "microscope_branch": 120,
    "microscope_module": 120,
    "microscope_specialization": 180,
}

try:
    import spaces
except ImportError:  # not on a Space: nothing to declare
    spaces = None


def on_zero_gpu() -> bool:
    """Whether this process runs on ZeroGPU hardware."""
    if spaces is None:
        return False
    try:
        from spaces.config import Config

        return bool(Config.zero_gpu)
    except (ImportError, AttributeError):
        return os.environ.get("SPACES_ZERO_GPU", "").lower() in ("1", "true")


def gpu(fn: Callable | None = None, *, duration: int | None = None):
    """``@gpu`` or ``@gpu(duration=S)``: ``spaces.GPU`` with the duration of :data:`DURATIONS` for
    the function's name (or ``duration``); the function itself where there is no ``spaces``."""

    def decorate(function: Callable) -> Callable:
        if spaces is None:
            return function
        seconds = duration or DURATIONS.get(function.__name__, 60)
        return spaces.GPU(duration=seconds)(function)

    return decorate(fn) if fn is not None else decorate
