"""The colour maps a user can pick, and which one a signed map is drawn with.

A signed map (Grad-CAM without ReLU, Integrated Gradients, Saliency…) needs a neutral colour at
zero and two hues for "for" and "against": a sequential map (Inferno, Viridis…) has no middle, so
0 would land on an arbitrary shade and negative evidence would read as weak positive evidence.
So a signed map uses the chosen map when it is diverging and RdBu (red for, blue against) when it
is sequential; every diverging choice puts its first-named colour on the "for" side.
"""

from __future__ import annotations

import plotly.colors

__all__ = ["SEQUENTIAL", "DIVERGING", "COLORSCALES", "DEFAULT_SIGNED", "plotly_scale", "signed_scale", "sample"]

SEQUENTIAL = ("Inferno", "Viridis", "Turbo", "Hot", "Greys", "Jet")
# name shown → plotly scale running from "against" (0) to "for" (1): the first-named colour is "for"
DIVERGING = {"RdBu": "RdBu_r", "PuOr": "PuOr", "PiYG": "PiYG_r", "BrBG": "BrBG_r"}
COLORSCALES = (*SEQUENTIAL, *DIVERGING)
DEFAULT_SIGNED = "RdBu"


def _check(name: str) -> str:
    if name not in COLORSCALES:
        raise ValueError(f"unknown colour map {name!r}; expected one of {', '.join(COLORSCALES)}")
    return name


def plotly_scale(name: str) -> str:
    """The plotly colour scale of a choice for an unsigned map (values 0 … 1)."""
    return DIVERGING.get(_check(name), name)


def signed_scale(name: str) -> str:
    """The choice a signed map (values -1 … 1) is drawn with: ``name`` if diverging, else RdBu."""
    return name if _check(name) in DIVERGING else DEFAULT_SIGNED


def sample(name: str, n: int = 33) -> list[tuple[int, int, int]]:
    """``n`` evenly spaced colours of a choice, as 0-255 RGB triples (low to high)."""
    scale = plotly.colors.get_colorscale(plotly_scale(name))
    colours = plotly.colors.sample_colorscale(scale, [i / (n - 1) for i in range(n)], colortype="rgb")
    return [tuple(round(float(c)) for c in colour[4:-1].split(",")) for colour in colours]
