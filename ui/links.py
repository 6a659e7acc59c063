"""Shareable views: a link that reopens the Explore tab on the same model, example picture, class,
map kind, colours and open branch, so a teacher can send "look at inception4c.branch2 on this cat".

The view travels in the page's query string (``?example=cifar/cat-1.png&class=cat&branch=…``),
read on page load: a link works for days, after restarts, for anyone, and needs no server memory
(Gradio's ``gr.DeepLinkButton`` instead snapshots a session on the server, which a restart or an
expired session loses). Every value is checked against what the app offers (an example is one of
the bundled pictures, a model one the visitor may see); anything else is ignored, and a visitor's
own upload is never put in a link (the link says so).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlencode

import gradio as gr

from explain.render.figures import COLORSCALES, MAP_KINDS

from .shared import HUB, TOP_CLASS, examples, model_choices_update

__all__ = ["LinkedView", "link_query", "open_link", "share_view", "example_id"]


class LinkedView(NamedTuple):
    picture: Any  # the example's file, put in the image only after the rest (see ``show_picture``)
    model: Any
    target: Any
    kind: Any
    colorscale: Any
    opacity: Any
    branch: Any
    link_note: Any


def _examples() -> dict[str, str]:
    """``"cifar/cat-1.png"`` → file, for every bundled example picture."""
    return {f"{kind}/{Path(p).name}": p for kind in ("cifar", "photos") for p in examples(kind)}


def _digest(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


_DIGESTS: dict[str, str] = {}


def example_id(payload) -> str | None:
    """The example a shown picture is (by content: Gradio serves examples from its own cache), or None."""
    path = payload if isinstance(payload, str) else payload.get("path") if isinstance(payload, dict) else None
    if not path or not Path(path).is_file():
        return None
    if not _DIGESTS:
        _DIGESTS.update({_digest(p): name for name, p in _examples().items()})
    return _DIGESTS.get(_digest(path))


def link_query(image, model, target, kind, colorscale, opacity, branch) -> str:
    """The query string of this view (the page adds its own address in front)."""
    params: dict[str, str] = {}
    example = example_id(image)
    if example:
        params["example"] = example
    if model and model != HUB.default():
        params["model"] = model
    if target and target != TOP_CLASS:
        params["class"] = target
    params.update(kind=kind, branch=branch)
    if colorscale != "Inferno":
        params["colors"] = colorscale
    if opacity is not None and float(opacity) != 0.6:
        params["opacity"] = f"{float(opacity):g}"
    return "?" + urlencode(params)


def open_link(request: gr.Request = None) -> LinkedView:
    """Page load: apply the view in the address's query string; leave everything else as it is."""
    query = dict(getattr(request, "query_params", None) or {})
    skip = gr.skip()
    if not any(k in query for k in ("example", "model", "class", "kind", "branch", "colors", "opacity")):
        return LinkedView(None, *[skip] * (len(LinkedView._fields) - 1))
    notes = []
    image = None
    if "example" in query:
        file = _examples().get(query["example"])
        image = file
        if not file:
            notes.append(f"no example called “{query['example']}”")
    model = skip
    choice = query.get("model")
    if choice:
        values = [v for _, v in HUB.choices(HUB.viewer())]
        if choice in values:
            model = model_choices_update(choice)
        else:
            notes.append("the model of this link is not available here")
            choice = None
    classes = HUB.loaded(choice or HUB.default()).classes
    target = skip
    if "class" in query:
        wanted = query["class"]
        if wanted in classes:
            target = gr.update(choices=[TOP_CLASS, *classes], value=wanted)
        else:
            notes.append(f"this model has no class “{wanted}”")
    branch_names = HUB.loaded(choice or HUB.default()).spec.branch_names
    kind = query["kind"] if query.get("kind") in MAP_KINDS else skip
    colors = query["colors"] if query.get("colors") in COLORSCALES else skip
    branch = query["branch"] if query.get("branch") in branch_names else skip
    opacity = skip
    try:
        if "opacity" in query and 0 <= float(query["opacity"]) <= 1:
            opacity = float(query["opacity"])
    except ValueError:
        notes.append("the opacity of this link is not a number")
    note = "Opened a shared view" + (f" ({'; '.join(notes)})" if notes else "") + "."
    return LinkedView(image, model, target, kind, colors, opacity, branch, note)


def show_picture(picture):
    """Second step of opening a link: the picture changes only once the class and branch are in
    place, so the exploration its change starts reads them (one step would race them)."""
    return picture if picture else gr.skip()


def share_view(image, model, target, kind, colorscale, opacity, branch) -> tuple[str, str]:
    """The "Link to this view" button: (query string, note). The page puts its address in front."""
    query = link_query(image, model, target, kind, colorscale, opacity, branch)
    note = "Copy the link: it reopens this model, picture, class, map kind and open branch."
    if image is not None and example_id(image) is None:
        note = "Your own picture is not put in links (it stays yours): the link opens the view on the first example. Pick an example to share a picture."
    return query, note
