"""The "Can I trust this map?" panel beside "Which pixels matter?" (issue 17).

It runs :func:`explain.trust.report.trust_report` for the image, class and method on screen: the
model-parameter randomisation test (Adebayo et al. 2018), deletion and insertion curves (RISE),
optionally ROAD and the independent randomisation, and the branch contributions against real
knock-outs; then a one-line verdict in plain words, the scores table and the figures. A model
trained on shuffled labels (``--shuffle-labels`` or the Train tab's checkbox) gives Adebayo's
second test, data randomisation. All work happens on a private copy of the model.

The panel's results belong to one (image, model, class, method): any change clears them.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import gradio as gr
import pandas as pd

from explain import Method
from explain.images import load_image
from explain.trust.faithfulness import RANDOM_DRAWS, RANDOM_DRAWS_LARGE
from explain.trust.report import (
    CAM_VARIANTS,
    CHANGED_BELOW,
    GRADCAM,
    GRADCAM_LAYER,
    GUIDED_GRADCAM_CAUTION,
    UNCHANGED_FROM,
    compare_models,
    method_label,
    shuffled_label_runs,
    trust_report,
)
from explain.trust.trust_figures import (
    contributions_figure,
    data_randomization_figure,
    faithfulness_figure,
    randomization_figure,
    road_figure,
)
from explain.trust.verdict import Band, randomization_decision
from googlenet.weights import runs_dir

from .shared import HUB, chosen_target, gpu, image_input, outputs, user_errors, viewer_key

HINT = "Press “Check this map” to test the map of the method chosen here on the image and class above."
GRADCAM_LABEL = f"Grad-CAM ({GRADCAM_LAYER}, upsampled)"
NO_SHUFFLED = (
    "No model trained on shuffled labels yet: tick “Shuffle labels” in the Train tab (or `python -m googlenet train "
    "--shuffle-labels`), then pick it here."
)
EXPLAINED = (
    "**Randomisation** (Adebayo et al. 2018): the model's layers are re-initialised from the top (`fc`, `inception5b`, …, `conv1`) "
    f"and the map is compared with the original after each step. Rank correlation below {CHANGED_BELOW} after the whole cascade "
    f"passes (the map depends on what the model learned); {UNCHANGED_FROM} or more fails. **Deletion / insertion** (Petsiuk et al. "
    "2018): the class's probability as the pixels the map marks are deleted (lower area is better) or put back into a blurred "
    "copy (higher is better), against random pixels, random regions (the Grad-CAM layer's grid) and a centre blob; a map is "
    f"held against random maps of its own resolution (Grad-CAM and occlusion: regions, the others: pixels; the mean of {RANDOM_DRAWS} "
    f"draws, {RANDOM_DRAWS_LARGE} above 64×64 px). **Contributions vs knock-outs**: the atlas "
    "corners' cheap estimate against zeroing each branch for real. Grad-CAM and Guided Grad-CAM are checked at inception5b, the "
    "Grad-CAM paper's last block (the attribution above takes Guided Grad-CAM at inception4e)."
)


def method_choices() -> list[tuple[str, str]]:
    """(shown, value) pairs: the attribution methods and Grad-CAM; Guided Grad-CAM carries its caution."""
    shown = [(f"{m.label} — caution: edges more than the model" if m is Method.GUIDED_GRADCAM else m.label, m.value) for m in Method]
    cams = [(f"{method_label(m)} ({GRADCAM_LAYER}, upsampled)", m) for m in CAM_VARIANTS]  # explain.cams
    return [*shown, (GRADCAM_LABEL, GRADCAM), *cams]


class TrustView(NamedTuple):
    trust_verdict: Any
    trust_scores: Any
    trust_randomization: Any
    trust_faithfulness: Any
    trust_contributions: Any
    trust_road: Any


class ShuffledView(NamedTuple):
    trust_shuffled_plot: Any
    trust_shuffled_note: Any


def _hidden():
    return gr.update(value=None, visible=False)


def _shown(value):
    return gr.update(value=value, visible=True)


# Everything drawn for an image, model, class or method that is no longer on screen: both views' outputs.
Cleared = NamedTuple("Cleared", [(name, Any) for name in (*TrustView._fields, *ShuffledView._fields)])


def cleared() -> Cleared:
    """The hint, and the results hidden (empty tables and plots read as something that failed)."""
    results = {name: _hidden() for name in Cleared._fields}
    return Cleared(**results | {"trust_verdict": HINT, "trust_shuffled_note": ""})


@user_errors
@gpu
def trust_view(image, model, target, method, extras, progress=gr.Progress()) -> TrustView:
    """Run the checks and draw them; ``extras`` may hold "ROAD" and "independent randomisation"."""
    explorer = HUB.explorer(model)
    picture = load_image(image_input(image))
    extras = set(extras or ())
    report = explorer_report(explorer, picture, method, chosen_target(target), extras, lambda f, msg: progress(f, desc=msg))
    verdict = f"**{report.label} for “{report.target_name}”: {report.verdict.line}**\n\n" + "\n".join(
        f"- {d}" for d in report.verdict.details
    )
    if method == Method.GUIDED_GRADCAM.value:
        verdict += f"\n\n{GUIDED_GRADCAM_CAUTION}"
    verdict += f"\n\n<small>{report.seconds:.1f} s on {explorer.loaded.device}.</small>"
    road = report.faithfulness is not None and report.faithfulness.road is not None
    return TrustView(
        trust_verdict=verdict,
        trust_scores=_shown(scores_table(report.records())),
        trust_randomization=_shown(randomization_figure(report)),
        trust_faithfulness=_shown(faithfulness_figure(report)),
        trust_contributions=_shown(contributions_figure(report)),
        trust_road=_shown(road_figure(report)) if road else _hidden(),
    )


def scores_table(records: list[dict]) -> pd.DataFrame:
    """The scores as the table shows them: three decimals, "–" where a baseline does not apply."""
    table = pd.DataFrame.from_records(records)
    for column in table.columns:
        if column not in ("check", "reading", "decision"):
            table[column] = table[column].map(lambda v: "–" if v is None or v != v else f"{v:.3f}")
    return table


def explorer_report(explorer, picture, method: str, target, extras: set[str], progress):
    """The report the panel draws: cascading randomisation, deletion/insertion and contributions
    always; ROAD and the independent randomisation when asked (each adds about as much again)."""
    return trust_report(
        explorer, picture, method, target, cascading=True, independent="independent randomisation" in extras,
        faithfulness=True, road="ROAD" in extras, contributions=True, progress=progress,
    )  # fmt: skip


def shuffled_choices() -> list[tuple[str, str]]:
    """The models this visitor may pick that were trained on shuffled labels."""
    root = runs_dir()
    shuffled = set()
    for path in shuffled_label_runs(root):
        try:
            shuffled.add("runs:" + path.relative_to(root).as_posix())
        except ValueError:
            continue
    return [(label, value) for label, value in HUB.choices(viewer_key()) if value in shuffled]


def refresh_shuffled():
    choices = shuffled_choices()
    return gr.update(choices=choices, value=choices[0][1] if choices else None), ("" if choices else NO_SHUFFLED)


@user_errors
@gpu
def shuffled_view(image, model, shuffled, target, method) -> ShuffledView:
    if not shuffled:
        raise gr.Error(NO_SHUFFLED, print_exception=False)
    if shuffled not in {value for _, value in shuffled_choices()}:
        raise gr.Error("that model is not a shuffled-label run you can open; pick one from the list", print_exception=False)
    real, other = HUB.explorer(model), HUB.explorer(shuffled)
    if tuple(real.loaded.classes) != tuple(other.loaded.classes):
        raise gr.Error(
            f"the shuffled-label model has other classes than {real.loaded.name}: the two maps would explain different things",
            print_exception=False,
        )
    result = compare_models(real, other, load_image(image_input(image)), method, chosen_target(target))
    band = randomization_decision(result.spearman_abs).band  # the same thresholds as the parameter test
    verdict = {
        Band.PASS: "the maps differ: this method depends on what the model learned from the labels",
        Band.PARTLY: "the maps are partly alike: part of this method's map comes from the image itself",
        Band.FAIL: "the maps stay alike although one model learned nothing true about the labels: this method shows the image more "
        "than the model",
    }[band]
    return ShuffledView(
        _shown(data_randomization_figure(result, dict(method_choices()).get(method, method))),
        f"Data randomisation (Adebayo et al. 2018): rank correlation {result.spearman_abs:.2f}, {band.value} "
        f"(pass < {CHANGED_BELOW}, fail ≥ {UNCHANGED_FROM}): {verdict}.",
    )


def build(image, model, target, attribution_method: gr.Radio) -> dict[str, Any]:
    """The panel (call inside the attribution column); returns its components by name."""
    with gr.Accordion("Can I trust this map?", open=False, elem_id="trust-panel") as panel:
        gr.Markdown(EXPLAINED)
        choices = method_choices()
        with gr.Row():
            method = gr.Dropdown(choices, value=choices[0][1], label="Map to check", elem_id="trust-method", scale=2)
            extras = gr.CheckboxGroup(
                ["ROAD", "independent randomisation"],
                label="Also run (slower; ROAD much slower at 224 px)",
                elem_id="trust-extras",
                scale=2,
            )
        button = gr.Button("Check this map", elem_id="trust-button")
        verdict = gr.Markdown(HINT, label="Verdict", elem_id="trust-verdict")
        # results hidden until a check is drawn
        scores = gr.Dataframe(label="Scores", elem_id="trust-scores", interactive=False, wrap=True, visible=False)
        randomization = gr.Plot(show_label=False, label="Randomisation", elem_id="trust-randomization", visible=False)
        faithfulness = gr.Plot(show_label=False, label="Deletion and insertion", elem_id="trust-faithfulness", visible=False)
        contributions = gr.Plot(show_label=False, label="Contributions vs knock-outs", elem_id="trust-contributions", visible=False)
        road = gr.Plot(show_label=False, label="ROAD", elem_id="trust-road", visible=False)
        gr.Markdown("**Data randomisation**: the same map on a model trained on shuffled labels.")
        with gr.Row():
            shuffled = gr.Dropdown([], label="Model trained on shuffled labels", elem_id="trust-shuffled", scale=3)
            shuffled_button = gr.Button("Compare", elem_id="trust-shuffled-button", scale=1)
        shuffled_note = gr.Markdown("", label="Data randomisation note", elem_id="trust-shuffled-note")
        # hidden until a comparison is drawn: an empty plot reads as something that failed
        shuffled_plot = gr.Plot(show_label=False, label="Data randomisation", elem_id="trust-shuffled-plot", visible=False)
    components = dict(
        trust_verdict=verdict, trust_scores=scores, trust_randomization=randomization, trust_faithfulness=faithfulness,
        trust_contributions=contributions, trust_road=road, trust_shuffled_plot=shuffled_plot, trust_shuffled_note=shuffled_note,
    )  # fmt: skip
    view = outputs(TrustView, components)
    button.click(
        trust_view, [image, model, target, method, extras], view, api_name="trust", preprocess=False, concurrency_limit=1,
        concurrency_id="trust",
    )  # fmt: skip
    shuffled_button.click(
        shuffled_view, [image, model, shuffled, target, method], outputs(ShuffledView, components), api_name="data_randomization",
        preprocess=False, concurrency_limit=1, concurrency_id="trust",
    )  # fmt: skip
    quiet = dict(api_visibility="private", queue=False, show_progress="hidden")
    # Results belong to one image, model, class and method: any change clears them.
    clear = outputs(Cleared, components)
    for trigger in (image.change, model.change, target.input, method.input):
        trigger(cleared, None, clear, **quiet)
    # The attribution's method picker sets the map to check (Grad-CAM is only here); a value set
    # by an event fires no .input, so the clearing follows in the same chain.
    attribution_method.input(
        lambda label: next((m.value for m in Method if m.label == label), gr.skip()), attribution_method, method, **quiet
    ).then(cleared, None, clear, **quiet)
    panel.expand(refresh_shuffled, None, [shuffled, shuffled_note], **quiet)
    return components
