"""The atlas's corner numbers: measured knock-outs (explain.knockouts) by default, the first-order
estimate one toggle away, and their agreement (Spearman ρ) under the atlas.

The explore event draws the atlas at once with the estimate (one pass, no wait); every new atlas
then triggers :func:`measured_view`, which measures the 45 knock-outs from the cached exploration
and redraws the atlas and the table with them. A panel already drawn in the chosen mode for the
same exploration is left alone, so the redraw does not trigger itself again.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import gradio as gr

from explain.images import load_image
from explain.knockouts import CORNER_MODES, agreement_text, measure_knockouts
from explain.render.knockout_panels import knockout_table_html
from explain.render.panels import _signature, atlas_html, contributions_html

from .shared import HUB, chosen_target, gpu, image_input, outputs, unchanged, user_errors

__all__ = ["CORNER_CHOICES", "MeasuredView", "measured_view", "knockout_effects", "corner_control", "wire"]

CORNER_CHOICES = [("measured knock-out (change of p)", "measured"), ("first-order estimate (share)", "estimate")]


class MeasuredView(NamedTuple):
    atlas: Any
    contributions: Any


def _current(exploration, image, model, target):
    if exploration is not None:
        return exploration
    if image is None:
        return None
    explorer = HUB.explorer(model)
    wanted = chosen_target(target)
    valid = wanted is not None and (wanted in explorer.loaded.classes or (isinstance(wanted, str) and wanted.isdigit()))
    return explorer.explore(load_image(image_input(image)), wanted if valid else None)


def _drawn(panel: str | None, mode: str, exploration, kind: str | None = None) -> bool:
    """Whether ``panel`` (the HTML on the page) already shows ``exploration`` in ``mode``."""
    if not isinstance(panel, str):
        return False
    if kind is not None:  # the atlas: its signature names the exploration and the kind
        same = f'data-sig="{_signature(exploration.key, kind, None, None)}"' in panel
        return same and f'data-corners="{mode}"' in panel and 'data-agreement="1"' in panel
    measured_sig = f'data-sig="{_signature(exploration.key, "measured")}"'
    return (measured_sig in panel) if mode == "measured" else (f'data-sig="{_signature(exploration.key)}"' in panel)


@user_errors
@gpu
def measured_view(exploration, image, model, target, kind, colorscale, opacity, branch, mode, atlas, contributions) -> MeasuredView:
    """The atlas and table in the chosen corner mode, and the agreement line (measures lazily)."""
    exploration = _current(exploration, image, model, target)
    if exploration is None:
        return unchanged(MeasuredView)
    if mode not in CORNER_MODES:
        raise gr.Error(f"unknown corner mode {mode!r}; expected one of {', '.join(CORNER_MODES)}")
    measured = measure_knockouts(HUB.explorer(model), exploration)
    branch = branch if branch in exploration.spec.branch_names else None
    skip = gr.skip()
    new_atlas = skip
    if not _drawn(atlas, mode, exploration, kind):
        new_atlas = atlas_html(
            exploration, kind, colorscale, float(opacity), highlight=branch,
            measured=measured if mode == "measured" else None, agreement=agreement_text(measured),
        )  # fmt: skip
    new_table = skip
    if not _drawn(contributions, mode, exploration):
        new_table = knockout_table_html(exploration, measured) if mode == "measured" else contributions_html(exploration)
    return MeasuredView(atlas=new_atlas, contributions=new_table)


@user_errors
@gpu
def knockout_effects(image, model: str | None = None, target: str | None = None) -> dict:
    """Measured knock-outs of every Inception branch (36) and module (9) on one image: the change of the main head's logit and probability of the class when each is zeroed, beside the first-order estimate (minus the sum of gradient times activation) and the Spearman rank correlation between the two.

    Args:
        image: the picture (a URL or an uploaded file).
        model: which weights from the app's model list; empty for the server's default.
        target: the class, by name or index; empty or "(top class)" for the main head's top class.

    Returns:
        JSON with the model, the class, the baseline logit and probability, per branch and per module the measured logit_change and probability_change and the estimated_logit_change, the Spearman rho over branches and over modules, and the seconds the knock-outs took.
    """
    explorer = HUB.explorer(model or None)
    exploration = explorer.explore(load_image(image_input(image)), chosen_target(target))
    payload = measure_knockouts(explorer, exploration).to_json()
    return {"model": explorer.loaded.name, **payload}


def corner_control() -> gr.Radio:
    """The toggle (call inside the View accordion)."""
    return gr.Radio(
        CORNER_CHOICES, value="measured", label="Atlas corners and table show", elem_id="corner-mode",
        info="measured: the change of p(class) when the branch is zeroed (45 knock-outs, run after the atlas); "
        "estimate: the first-order share Σ ∂y/∂A ⊙ A of the module's evidence",
    )  # fmt: skip


def wire(atlas: gr.HTML, contributions: gr.HTML, mode: gr.Radio, seen: list, view: list) -> None:
    """``seen``: [exploration, image, model, target]; ``view``: [kind, colorscale, opacity, branch]."""
    image, model, target = seen[1], seen[2], seen[3]
    inputs = [*seen, *view, mode, atlas, contributions]
    out = outputs(MeasuredView, dict(atlas=atlas, contributions=contributions))
    quiet = dict(api_visibility="private", preprocess=False, show_progress="hidden")
    # The page arrives with the first example's atlas already drawn (no change event): the page load measures it.
    page = gr.context.Context.root_block
    triggers = [atlas.change, mode.input] + ([page.load] if page is not None else [])
    gr.on(triggers, measured_view, inputs, out, trigger_mode="always_last", concurrency_id="knockouts", concurrency_limit=2, **quiet)
    hidden = gr.JSON(visible=False, label="measured knock-outs")
    gr.Button(visible=False).click(
        knockout_effects, [image, model, target], hidden, api_name="knockout_effects", preprocess=False, concurrency_limit=2
    )
