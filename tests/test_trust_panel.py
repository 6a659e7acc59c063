"""The "Can I trust this map?" panel's handlers without a server (ui/trust_panel.py)."""

import gradio as gr
import pytest

from explain import Method
from googlenet.training.trainer import TrainConfig, Trainer
from googlenet.weights import runs_dir
from tests.conftest import cifar_slice
from ui import trust_panel
from ui.shared import TOP_CLASS

CAT = "assets/examples/cifar/cat-1.png"


def test_the_panel_checks_the_map_on_screen_and_says_what_it_means():
    view = trust_panel.trust_view(CAT, "bundled", TOP_CLASS, "saliency", [])
    assert view.trust_verdict.startswith("**Saliency for “") and "randomised" in view.trust_verdict
    rows = view.trust_scores["value"].to_dict("records")
    checks = [row["check"] for row in rows]
    assert any(c.startswith("Randomisation, cascading") for c in checks) and "Deletion AUC" in checks and "Insertion AUC" in checks
    assert any(c.startswith("Branch contribution vs knock-out") for c in checks)
    deletion = next(row for row in rows if row["check"] == "Deletion AUC")
    assert 0 <= float(deletion["this map"]) <= 1 and float(deletion["random pixels"]) >= 0
    assert next(row for row in rows if row["check"].startswith("Branch contribution"))["random pixels"] == "–"
    assert all(getattr(view, f)["visible"] for f in ("trust_scores", "trust_randomization", "trust_faithfulness", "trust_contributions"))
    steps = [t for t in view.trust_randomization["value"].data if t.type == "scatter"]
    assert steps and len(steps[0].x) >= 10  # fc, inception5b … conv1
    assert view.trust_road["visible"] is False  # ROAD only when asked


def test_guided_gradcam_carries_its_caution_and_roads_run_when_asked():
    shown = dict((value, label) for label, value in trust_panel.method_choices())
    assert "caution" in shown[Method.GUIDED_GRADCAM.value] and "caution" not in shown[Method.SALIENCY.value]
    view = trust_panel.trust_view(CAT, "bundled", "cat", "guided_gradcam", ["ROAD"])
    assert "Adebayo" in view.trust_verdict and "“cat”" in view.trust_verdict
    assert view.trust_road["visible"] is True and view.trust_road["value"] is not None
    assert any(row["check"].startswith("ROAD") for row in view.trust_scores["value"].to_dict("records"))


def test_clearing_leaves_the_hint():
    view = trust_panel.cleared()
    assert view.trust_verdict == trust_panel.HINT and view.trust_shuffled_note == ""
    assert all(not part["visible"] and part["value"] is None for part in view[1:-1])


def test_bad_input_is_a_message_not_a_traceback():
    with pytest.raises(gr.Error, match="no image given"):
        trust_panel.trust_view(None, "bundled", TOP_CLASS, "saliency", [])
    with pytest.raises(gr.Error, match="method"):
        trust_panel.trust_view(CAT, "bundled", TOP_CLASS, "edges", [])
    with pytest.raises(gr.Error, match="shuffled labels"):
        trust_panel.shuffled_view(CAT, "bundled", None, TOP_CLASS, "saliency")
    with pytest.raises(gr.Error, match="not a shuffled-label run"):
        trust_panel.shuffled_view(CAT, "bundled", "bundled", TOP_CLASS, "saliency")


def test_a_shuffled_label_run_is_offered_and_compared(cifar):
    assert trust_panel.shuffled_choices() == []
    small = cifar_slice(cifar, 128, 64)
    config = TrainConfig(out=str(runs_dir() / "shuffled"), epochs=1, batch_size=64, width=0.125, max_steps=1, shuffle_labels=True)
    Trainer(config, data=small).run()
    Trainer(TrainConfig(out=str(runs_dir() / "true"), epochs=1, batch_size=64, width=0.125, max_steps=1), data=small).run()
    choices = trust_panel.shuffled_choices()
    assert [value for _, value in choices] == ["runs:shuffled/last.safetensors"]  # the true-label run is not offered
    view = trust_panel.shuffled_view(CAT, "bundled", choices[0][1], TOP_CLASS, "saliency")
    assert "Data randomisation" in view.trust_shuffled_note and "rank correlation" in view.trust_shuffled_note
    assert view.trust_shuffled_plot["visible"] is True and len(view.trust_shuffled_plot["value"].data) == 2
