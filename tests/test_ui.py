"""The tabs' handlers without a server: what each returns for the panels a newcomer reads."""

from PIL import Image

from explain import Explorer
from googlenet.weights import runs_dir
from tests.conftest import make_loaded, small_checkpoint
from ui import architecture_tab, compare_tab, explore_tab, train_tab
from ui.shared import HUB, TOP_CLASS, banner


def test_banner_says_why_there_are_no_imagenet_weights_even_when_another_model_was_picked():
    text = banner("bundled")
    # the reason depends on the machine (downloads turned off, or no network): say one, and how to fix it
    assert "ImageNet weights unavailable" in text and "googlenet-1378be20.pth" in text
    assert "GOOGLENET_OFFLINE" in text or "download" in text.lower()


def test_a_photo_on_a_cifar_model_gets_one_line_of_caution():
    cifar = HUB.loaded("bundled")
    assert "shrunk to 32×32" in explore_tab.caution_text(cifar, Image.new("RGB", (640, 480)))
    assert explore_tab.caution_text(cifar, Image.new("RGB", (32, 32))) == ""
    assert explore_tab.caution_text(HUB.loaded("random"), Image.new("RGB", (640, 480))) == ""


def test_a_class_of_another_model_falls_back_to_the_top_class():
    view = explore_tab.explore_view("assets/examples/cifar/cat-1.png", "bundled", "tabby cat", "cam", "Inferno", 0.6, "inception4c.branch2")
    assert view.target == TOP_CLASS and view.caution == ""
    chosen = explore_tab.explore_view("assets/examples/cifar/cat-1.png", "bundled", "dog", "signed", "PuOr", 0.3, "nope.branch9")
    assert chosen.target == "dog" and "“dog”" in chosen.atlas and chosen.branch in chosen.exploration.spec.branch_names
    assert "--gx-opacity:0.3;" in chosen.atlas and "url(#gx-PuOr)" in chosen.atlas  # drawn as asked (API callers)


def test_clearing_leaves_a_hint_not_the_previous_result():
    cleared = explore_tab.clear_results()
    assert "Attribute" in cleared.attribution and cleared.knock_plot is None and cleared.scope_plot is None and cleared.knock_table == ""


def test_knockout_table_names_what_was_knocked_out_and_keeps_columns_apart():
    explorer = Explorer(make_loaded("cifar", width=0.125))
    ablation = explorer.ablate(
        "assets/examples/cifar/cat-1.png", ["inception4c.branch2", "inception4e", ["inception4c.branch2", "inception4e"]]
    )
    table = explore_tab.knockout_table(ablation)
    lines = table.splitlines()
    nothing = next(line for line in lines if line.startswith("| (nothing)"))
    assert nothing.count("p ") == 3 and nothing.count("top: ") == 3  # p(target) and the top class, each named
    assert any(line.startswith("| inception4c.branch2 + inception4e |") for line in lines)
    assert not any("branches)" in line for line in lines)


def test_compare_starts_with_a_partner_that_means_something():
    choices, value = compare_tab.default_partner("bundled")
    assert value == "untrained:bundled" and ("bundled small CIFAR-10 model — untrained twin (random init)", value) in choices
    twin = HUB.loaded(value)
    assert twin.classes == HUB.loaded("bundled").classes and not twin.trained
    small_checkpoint(runs_dir() / "mine" / "last.safetensors")
    assert compare_tab.default_partner("bundled")[1] == "runs:mine/last.safetensors"


def test_architecture_table_shows_thousands_separators_and_dashes():
    view = architecture_tab.architecture_view("bundled")
    shown = view.table.data.set_index("layer")
    assert architecture_tab.count(12828672) == "12,828,672" and architecture_tab.count(None) == "—"
    assert shown.loc["inception4e", "multiply-adds"] == 12828672  # the numbers stay numbers
    html = view.table.to_html()
    assert "12,828,672" in html and "—" in html and "12828672" not in html


def test_starting_without_data_says_which_button_fetches_it(tmp_path):
    message = train_tab.train_start("fast", 1, 64, 0.1, 0.125, "cifar", 0.3, str(tmp_path / "none")).message
    assert message.startswith("⚠️ **Not started:**") and "Download CIFAR-10" in message and "--download" not in message


def test_a_checkpoint_saved_mid_epoch_is_not_labelled_with_an_older_accuracy():
    from server.hub import accuracy_summary

    mid = {"accuracy": {"main": 0.412, "aux1": None, "aux2": None}, "epoch": 1, "batch": 20, "step": 84}
    assert accuracy_summary(mid) == "step 84, mid-epoch 2 · not evaluated (epoch 1: 41.2%)"
    assert accuracy_summary({**mid, "accuracy": None, "epoch": 0, "step": 20}) == "step 20, mid-epoch 1 · not evaluated"
    assert accuracy_summary({**mid, "accuracy": {"main": 0.612}, "epoch": 3, "batch": 0}) == "epoch 3 · 61.2% test"


def test_architecture_diagram_keeps_the_aux_heads_clear_of_branch4():
    from explain.render.architecture import architecture_figure
    from googlenet.model import GoogLeNet

    figure = architecture_figure(GoogLeNet(num_classes=10, stem="cifar", width=0.25))
    rects = [s for s in figure.layout.shapes if s.type == "rect"]
    aux = [s for s in rects if s.fillcolor == "#fde68a"]
    branch4 = [s for s in rects if s.fillcolor == "#ec4899"]
    assert len(aux) == 2 and len(branch4) == 9
    assert max(s.y1 for s in aux) < min(s.y0 for s in branch4)  # below, not over, the branch4 boxes
    lines = [s for s in figure.layout.shapes if s.type == "line"]
    assert all(line.y0 <= min(s.y0 for s in branch4) for line in lines)  # connectors start below branch4's label
    assert "1×1→5×5" in figure.layout.annotations[0].text  # the paper's kernel, said where the diagram shows 3×3


def test_compare_lists_a_visitors_own_runs_and_not_anothers(monkeypatch):
    from server.owners import Owner, write_owner

    alice, bob = "a1" * 10, "b2" * 10
    small_checkpoint(runs_dir() / "alice-run" / "last.safetensors")
    write_owner(runs_dir() / "alice-run", Owner(alice, "visitor amber otter"))
    monkeypatch.setattr(HUB, "private_listing", True)
    for viewer, sees in ((alice, True), (bob, False)):
        monkeypatch.setattr(compare_tab, "viewer_key", lambda viewer=viewer: viewer)
        monkeypatch.setattr("ui.shared.viewer_key", lambda viewer=viewer: viewer)
        a, b = compare_tab.visitor_choices("bundled", "untrained:bundled")
        for update in (a, b):
            assert ("runs:alice-run/last.safetensors" in [v for _, v in update["choices"]]) is sees
        assert a["value"] == "bundled" and b["value"] == "untrained:bundled"  # the current choices stay
