"""The Timeline tab's handlers (ui/timeline_tab.py), in-process, on real 2-epoch runs of a narrow
model trained on the shared CIFAR-10 subset: one column / frame per epoch, the cache (no model
pass the second time), the comparison's differing fields, who sees which run on a public server,
stale panels, and clear messages for runs that cannot be shown."""

from __future__ import annotations

import shutil
from types import SimpleNamespace

import pytest

from googlenet.training.trainer import TrainConfig, Trainer
from tests.conftest import cifar_slice


@pytest.fixture(scope="module")
def small(cifar):
    """256 training and 256 test images of the real subset."""
    return cifar_slice(cifar, 256, 256)


@pytest.fixture(scope="module")
def runs_root(small, tmp_path_factory):
    """A runs folder with two finished runs: ``two`` (2 epochs, lr 0.05) and ``one`` (1 epoch, lr 0.02)."""
    root = tmp_path_factory.mktemp("timeline-ui-runs")
    for name, epochs, lr in (("two", 2, 0.05), ("one", 1, 0.02)):
        config = TrainConfig(out=str(root / name), epochs=epochs, batch_size=64, width=0.125, seed=7, lr=lr, tensorboard=False)
        assert Trainer(config, data=small).run().status == "finished"
    return root


@pytest.fixture
def tab(runs_root, monkeypatch):
    """The tab's module on the runs folder above, measuring 128 test images per epoch (fast)."""
    from ui import timeline_tab

    monkeypatch.setenv("GOOGLENET_RUNS", str(runs_root))
    monkeypatch.setattr(timeline_tab, "MAX_IMAGES", 128)
    return timeline_tab


def session(name: str):
    return SimpleNamespace(session_hash=name)


def test_the_timeline_has_one_column_and_frame_per_epoch_and_the_second_call_is_cached(tab, passes):
    view = tab.timeline_view("two", "selectivity", request=session("t1"))
    assert list(view.heatmap.data[0].x) == ["1", "2"] and len(view.heatmap.frames) == 2
    assert len(view.heatmap.data[0].y) == 36
    assert len(view.atlas.frames) == 2 and [f.name for f in view.atlas.frames] == ["1", "2"]
    assert all(list(trace.x) == [1, 2] for trace in view.heads.data) and len(view.heads.data) == 7
    assert len(view.importance.data) == 9 and all(list(trace.x) == [1, 2] for trace in view.importance.data)
    assert "epochs 1, 2" in view.note and view.shown == tab._listing(tab.runs_dir() / "two")
    assert passes["n"] > 0

    passes["n"] = 0
    again = tab.timeline_view("two", "importance", request=session("t1"))
    assert passes["n"] == 0 and "measured now: 0, from the cache: 2" in again.note
    assert again.heatmap.layout.coloraxis.cmin == -again.heatmap.layout.coloraxis.cmax  # the importance heatmap
    assert len(again.atlas.frames) == 2


def test_panels_never_show_a_run_no_longer_selected(tab):
    picked = tab.select_run("one", request=session("t2"))
    assert (picked.heatmap, picked.heads, picked.importance, picked.atlas) == (None, None, None, None)
    # a measurement of "two" that ends after the visitor picked "one" leaves the panels alone
    late = tab.timeline_view("two", "selectivity", request=session("t2"))
    assert all(isinstance(v, dict) and v.get("__type__") == "update" and len(v) == 1 for v in late)
    assert tab.timeline_view("one", "selectivity", request=session("t2")).heatmap is not None


def test_the_live_poll_asks_for_a_measurement_only_when_the_epoch_files_change(tab):
    listing = tab._listing(tab.runs_dir() / "two")
    skip = tab.timeline_poll("two", True, listing, None, request=session("t3"))
    assert isinstance(skip, dict) and skip.get("__type__") == "update"
    assert tab.timeline_poll("two", True, listing[:1], None, request=session("t3")) == listing  # epoch 2 appeared
    assert tab.timeline_poll("two", True, listing[:1], listing, request=session("t3")) != listing  # already asked
    assert tab.timeline_poll("two", False, listing[:1], None, request=session("t3")) != listing  # Live off


def test_comparison_lists_exactly_the_differing_fields_and_highlights_them(tab):
    view = tab.compare_view(["two", "one"], False, request=session("t4"))
    assert "**2 settings differ**" in view.compare_note and view.compare_note.endswith(": epochs, lr.")
    assert view.table.count("≠ ") == 2 and view.table.count("background:#fef3c7") == 2
    assert "<th>two</th><th>one</th>" in view.table and "accuracy main" in view.table
    assert [t.name for t in view.curves.data if t.name.endswith(" loss")] == ["two loss", "one loss"]
    only = tab.compare_view(["two", "one"], True, request=session("t4"))
    assert only.table.count("<tr") == 1 + 4 + 2  # header, 3 accuracies + epochs, the 2 differing settings
    assert "two or more" in tab.compare_view(["two"], False).compare_note


def test_a_visitor_of_a_public_server_sees_only_their_own_runs(tab, runs_root, tmp_path, monkeypatch):
    from server.owners import Owner, write_owner
    from ui.shared import HUB, visitors

    monkeypatch.setattr(HUB, "private_listing", True)
    alice, bob = visitors().issue(), visitors().issue()
    visitors().remember("alice", alice)
    visitors().remember("bob", bob)
    root = tmp_path / "runs"
    shutil.copytree(runs_root / "one", root / "alices")  # a small run folder, in this test's own runs folder
    write_owner(root / "alices", Owner(alice.key, alice.name))
    shutil.copytree(runs_root / "two", root / "operators", ignore=shutil.ignore_patterns("epoch-*", "last.*", "state-*"))
    monkeypatch.setenv("GOOGLENET_RUNS", str(root))

    def names(who: str) -> set[str]:
        return {value for _, value in tab.run_choices(request=session(who)).run["choices"]}

    assert names("alice") == {"alices", "operators"} and names("bob") == {"operators"}
    assert names("stranger") == {"operators"}
    hidden = tab.timeline_view("alices", request=session("bob"))
    assert hidden.heatmap is None and "no longer exists" in hidden.note
    assert "no longer exists" in tab.compare_view(["alices", "operators"], request=session("bob")).compare_note
    assert tab.timeline_view("alices", request=session("alice")).heatmap is not None


def test_runs_that_cannot_be_shown_give_a_message(tab, runs_root, tmp_path, monkeypatch):
    root = tmp_path / "runs"
    (root / "empty").mkdir(parents=True)
    (root / "empty" / "config.json").write_text((runs_root / "one" / "config.json").read_text())
    (root / "corrupt").mkdir()
    (root / "corrupt" / "config.json").write_text("{ not json")
    (root / "corrupt" / "epoch-001.safetensors").write_bytes(b"\x00garbage" * 100)
    monkeypatch.setenv("GOOGLENET_RUNS", str(root))

    empty = tab.timeline_view("empty", request=session("t6"))
    assert empty.heatmap is None and "no epoch-NNN.safetensors checkpoints yet" in empty.note
    assert str(root) not in empty.note  # the run's name, not the server's folders
    corrupt = tab.timeline_view("corrupt", request=session("t6"))
    assert corrupt.heatmap is None and corrupt.note.startswith("⚠️ **corrupt**") and "Traceback" not in corrupt.note
    for name in ("../one", "/etc", "gone", None, 3):
        view = tab.timeline_view(name, request=session("t6"))
        assert view.heatmap is None and (name in (None,) or "run" in view.note)
    assert "unknown run" in tab.timeline_view("../one", request=session("t6")).note
    assert "no longer exists" in tab.timeline_view("gone", request=session("t6")).note
