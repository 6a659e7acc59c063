"""The Train tab's data sources, fine-tuning, shuffled labels and per-class figures, through its
handlers in-process (no server)."""

from __future__ import annotations

import math
import zipfile
from pathlib import Path

import gradio as gr
import numpy as np
import pytest

from explain.render.classes_figures import FULL_CLASSES, confused_pairs_text, confusion_figure, most_confused, per_class_figure
from googlenet.weights import CIFAR10_CLASSES
from server.settings import Settings
from ui import shared, train_tab

FORM = ("fast", 1, 512, 0.1, 0.125, "cifar", 0.3)


@pytest.fixture
def rules(monkeypatch):
    """Apply settings for one test, restoring the previous ones after."""
    saved = (shared._SETTINGS, shared.HUB.private_listing, shared.HUB.policy, shared.HUB.viewer)

    def apply(**values):
        return shared.configure(Settings(**values))

    yield apply
    shared._SETTINGS, shared.HUB.private_listing, shared.HUB.policy, shared.HUB.viewer = saved


def public_root(tmp_path: Path, cifar_dir: Path | None = None) -> Path:
    root = tmp_path / "data-root"
    root.mkdir()
    if cifar_dir is not None:
        (root / "cifar10-subset").symlink_to(cifar_dir)
    (root / "leaves" / "oak").mkdir(parents=True)
    (root / "leaves" / "maple").mkdir()
    (root / "notes").mkdir()  # a folder holding no dataset is not offered
    (root / "notes" / "readme.txt").write_text("hello")
    return root


def zip_of(path: Path, entries: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return path


def png() -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def test_public_mode_offers_datasets_not_a_path_box_and_refuses_paths(tmp_path, rules, cifar_dir):
    root = public_root(tmp_path, cifar_dir)
    rules(public=True, training="owner", data_root=root, downloads=False)
    assert set(shared.settings().datasets()) == {"cifar10-subset", "leaves"}
    with gr.Blocks():
        model, token = gr.Dropdown(), gr.BrowserState(None)
        _, data = train_tab.build(model, token)
    assert isinstance(data, gr.Dropdown) and not isinstance(data, gr.Textbox)
    assert sorted(data.choices) == [("cifar10-subset", "cifar10-subset"), ("leaves", "leaves")]
    answers = set()
    for typed in ("/etc", str(root / "notes"), str(cifar_dir), "../../etc", "notes", "/no/such/folder"):
        with pytest.raises(gr.Error) as refused:
            train_tab.train_start(*FORM, typed, 0, None, "folder")
        answers.add(refused.value.message)
    assert len(answers) == 1 and "does not accept folder paths" in answers.pop()
    assert not shared.JOB.running


def test_local_mode_keeps_a_path_box(rules, tmp_path):
    rules(public=False, data_root=tmp_path)
    with gr.Blocks():
        _, data = train_tab.build(gr.Dropdown(), gr.BrowserState(None))
    assert isinstance(data, gr.Textbox)


def test_a_zip_with_a_climbing_entry_is_refused_clearly(tmp_path, rules):
    rules(public=False, data_root=tmp_path)
    bad = zip_of(tmp_path / "sneaky.zip", {"cats/a.png": png(), "../../evil.png": png()})
    result = train_tab.train_upload_zip(str(bad))
    message = result.zip_note
    assert result.uploaded is None and message.startswith("⚠️ **Refused:** sneaky.zip: entry")
    assert "'../../evil.png'" in message and "outside the extraction folder" in message
    assert not (tmp_path / "evil.png").exists()
    (tmp_path / "fake.zip").write_text("not an archive")
    assert "fake.zip is not a zip archive" in train_tab.train_upload_zip(str(tmp_path / "fake.zip")).zip_note
    with pytest.raises(gr.Error, match="upload a .zip of an image folder first"):
        train_tab.train_start(*FORM, "", 0, None, "zip")


def test_a_public_server_takes_a_zip_only_from_its_upload_folder(tmp_path, rules, monkeypatch):
    uploads = tmp_path / "gradio-uploads"
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(uploads))
    rules(public=True, training="owner", data_root=tmp_path, downloads=False)
    good = {"oak/1.png": png(), "oak/2.png": png(), "maple/1.png": png(), "maple/2.png": png(), "notes.txt": b"x"}
    elsewhere = zip_of(tmp_path / "leaves.zip", good)
    answers = set()
    for path in (str(elsewhere), "/etc/passwd", "/no/such.zip"):
        result = train_tab.train_upload_zip(path)
        answers.add(result.zip_note)
        assert result.uploaded is None
    assert answers == {"⚠️ **Refused:** upload the .zip with the upload button; this server does not accept file paths"}
    (uploads / "abc").mkdir(parents=True)
    result = train_tab.train_upload_zip(str(zip_of(uploads / "abc" / "leaves.zip", good)))
    assert "2 classes (maple, oak)" in result.zip_note and "skipped 1 entries" in result.zip_note
    assert str(tmp_path) not in result.zip_note and Path(result.uploaded).is_dir()
    bad = zip_of(uploads / "abc" / "sneaky.zip", {"oak/1.png": png(), "../x.png": png()})
    assert "⚠️ **Refused:** sneaky.zip: entry '../x.png' would be written outside" in train_tab.train_upload_zip(str(bad)).zip_note


def test_a_public_server_holds_unpacked_zips_against_the_quota_and_the_cap(tmp_path, rules, monkeypatch):
    """Extracted datasets sit in the runs area, out of reach of Gradio's cache sweep: their unpacked
    bytes count against the visitor's quota and the server's cap, checked before anything is written."""
    from types import SimpleNamespace

    uploads = tmp_path / "gradio-uploads"
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(uploads))
    monkeypatch.setenv("GOOGLENET_RUNS", str(tmp_path / "runs"))
    rules(public=True, training="owner", data_root=tmp_path, downloads=False, upload_quota_mb=0.1, upload_total_mb=0.14)
    (uploads / "u").mkdir(parents=True)
    rng = np.random.default_rng(1)

    def leaves(name: str) -> Path:  # 2 classes × 3 incompressible 8 KB files: 48 KB unpacked
        entries = {f"{c}/{i}.png": rng.bytes(8192) for c in ("oak", "maple") for i in range(3)}
        return zip_of(uploads / "u" / f"{name}.zip", entries)

    def upload(path: Path, who: str):
        return train_tab.train_upload_zip(str(path), None, SimpleNamespace(session_hash=who))

    first, second = leaves("first"), leaves("second")
    assert upload(first, "alice").uploaded is not None
    assert upload(first, "alice").uploaded is not None  # the same archive again: already counted
    assert upload(second, "alice").uploaded is not None  # 96 KB of 102: fits; a third would not
    third = upload(leaves("third"), "alice")
    assert third.uploaded is None and third.zip_note.startswith(
        "⚠️ **Refused:** third.zip unpacks to 48 KB, and with your other uploads (96 KB)"
    )
    assert "over the per-visitor quota of 102 KB" in third.zip_note
    assert not list((tmp_path / "runs" / "datasets").glob("third-*")), "nothing of a refused zip is written"
    late = upload(leaves("fourth"), "bob")  # bob's quota is free, but 96 KB + 48 KB passes the 143 KB cap
    assert late.uploaded is None and "fourth.zip unpacks to 48 KB, and this server's space for uploaded datasets (143 KB" in late.zip_note


def test_finetuning_is_disabled_with_the_reason_when_the_weights_cannot_be_had(rules, tmp_path):
    rules(public=False, data_root=tmp_path)
    note = train_tab.finetune_note()  # offline in tests (GOOGLENET_OFFLINE=1)
    assert note and note.startswith("Not offered here: the ImageNet weights are unavailable (they are not in the torch hub cache")
    with gr.Blocks():
        train_tab.build(gr.Dropdown(), gr.BrowserState(None))
        finetune = next(b for b in gr.context.Context.root_block.blocks.values() if getattr(b, "elem_id", None) == "train-finetune")
    assert finetune.interactive is False and finetune.info == note
    with pytest.raises(gr.Error, match="Fine-tuning is not offered here"):
        train_tab.train_start("fast", 1, 64, 0.02, 1.0, "imagenet", 0.3, str(tmp_path), 0, None, "folder", True, "inception4e")
    form = train_tab.finetune_form(True)
    assert (form.stem, form.width) == ("imagenet", 1.0)


def test_figures_for_many_classes_show_a_readable_selection():
    rng = np.random.default_rng(0)
    classes = [f"class {i:03d}" for i in range(100)]
    matrix = rng.integers(0, 3, (100, 100)) + np.diag(rng.integers(0, 40, 100))
    matrix[7, 42] = 90  # the most confused pair
    bars = per_class_figure(matrix.tolist(), classes, epoch=3)
    assert len(bars.data[0].y) == FULL_CLASSES and "lowest of 100" in bars.layout.title.text
    accuracy = np.diag(matrix) / matrix.sum(1)
    assert list(bars.data[0].y) == [classes[i] for i in np.argsort(accuracy, kind="stable")[:FULL_CLASSES]]
    heat = confusion_figure(matrix.tolist(), classes, epoch=3)
    assert len(heat.data[0].y) <= FULL_CLASSES and {"class 007", "class 042"} <= set(heat.data[0].y)
    assert most_confused(matrix.tolist(), classes, 1)[0][:3] == ("class 007", "class 042", 90)
    assert "class 007 → class 042: 90" in confused_pairs_text(matrix.tolist(), classes)


def test_a_tiny_run_shows_per_class_confusion_and_norms_and_opens_with_its_labels(cifar_dir, rules, tmp_path):
    from googlenet.datasets import cifar10

    rules(public=False, data_root=cifar_dir)
    empty = train_tab.train_poll(0.6, False, None, None)  # before: placeholders, not another run's results
    started = train_tab.train_start(*FORM, str(cifar_dir), 0, None, "folder", False, None, True)
    assert started.message.startswith("Started:") and "shuffled labels" in started.message
    assert shared.JOB.wait(600), "the tiny run did not finish"
    status = shared.JOB.status()
    assert status.state == "finished", status.message
    start = next(e for e in status.events if e.kind == "start")
    assert start.config["shuffle_labels"] is True and start.classes == list(CIFAR10_CLASSES)

    poll = train_tab.train_poll(0.6, False, empty.seen, None)
    tests = len(cifar10(cifar_dir).test)
    bars = poll.per_class.data[0]
    assert list(bars.y) == list(CIFAR10_CLASSES)
    assert sum(total for _, total in bars.customdata) == tests
    assert sum(correct for correct, _ in bars.customdata) == round(next(e for e in status.events if e.kind == "epoch").acc_main * tests)
    heat = poll.confusion.data[0]
    assert list(heat.x) == list(heat.y) == list(CIFAR10_CLASSES)
    assert int(np.sum(heat.customdata)) == tests and f"{tests:,} test images" in poll.confusion.layout.title.text
    assert "Most confused" in poll.pairs or "no test image was misclassified" in poll.pairs
    lines = [t for t in poll.norms.data if len(t.y)]
    assert lines and all(math.isfinite(v) for t in lines for v in t.y)
    assert {t.name for t in lines} >= {"conv1", "inception5b", "fc"}

    again = train_tab.train_poll(0.6, False, poll.seen, None)  # nothing new: nothing re-drawn
    assert all(isinstance(v, dict) and v.get("__type__") == "update" for v in again)

    # The finished run is listed, and opens in Explore with its own class names.
    choices = [value for _, value in shared.HUB.choices()]
    run = next(c for c in choices if status.run in str(c))
    assert tuple(shared.HUB.loaded(run).classes) == tuple(CIFAR10_CLASSES)


def thirty_six_pictures(root: Path) -> Path:
    """A newcomer's own pictures: 3 classes of 12 PNGs each (36 in all), no train/val split."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for c, name in enumerate(("apple", "banana", "cherry")):
        (root / name).mkdir(parents=True)
        for i in range(12):
            picture = rng.integers(0, 80, (40, 40, 3), dtype=np.uint8)
            picture[..., c] += 150  # each class its own colour, so there is something to learn
            Image.fromarray(picture).save(root / name / f"{i:02d}.png")
    return root


@pytest.mark.parametrize("source", ["folder", "zip"])
def test_thirty_six_own_pictures_train_at_the_default_batch_and_say_so(source, rules, tmp_path):
    """Issue 24.2: the defaults' batch 64 on 36 pictures (30 to train on after the 20 % validation split) is fitted to the set before
    "Started", said in the message and the run's log, and the run finishes."""
    rules(public=False, data_root=tmp_path)
    folder = thirty_six_pictures(tmp_path / "fruit")
    defaults = train_tab.preset_defaults("fast")
    assert defaults.batch == 64  # the Train tab's default on a CPU
    form = ("fast", 1, defaults.batch, defaults.lr, 0.125, defaults.stem, 0.3)
    if source == "zip":
        archive = tmp_path / "fruit.zip"
        with zipfile.ZipFile(archive, "w") as z:
            for path in sorted(folder.rglob("*.png")):
                z.write(path, path.relative_to(tmp_path).as_posix())
        uploaded = train_tab.train_upload_zip(str(archive)).uploaded
        assert uploaded, "the zip was refused"
        started = train_tab.train_start(*form, "", 0, None, "zip", uploaded=uploaded)
    else:
        started = train_tab.train_start(*form, str(folder), 0, None, "folder")
    assert started.message.startswith("Started:"), started.message
    assert "batch size 64 is more than the 30 training pictures: using batches of 30" in started.message.lower()
    assert shared.JOB.wait(300), "the run did not finish"
    status = shared.JOB.status()
    assert status.state == "finished", status.message
    start = next(e for e in status.events if e.kind == "start")
    assert start.config["batch_size"] == 30 and "using batches of 30" in start.data


def test_a_set_with_no_training_pictures_is_refused_before_started(rules, tmp_path):
    rules(public=False, data_root=tmp_path)
    (tmp_path / "empty" / "a").mkdir(parents=True)
    (tmp_path / "empty" / "b").mkdir()
    try:
        said = train_tab.train_start(*FORM, str(tmp_path / "empty"), 0, None, "folder").message
    except gr.Error as refused:
        said = str(refused)
    assert not said.startswith("Started") and not shared.JOB.running, said
    assert "Traceback" not in said and "empty" in said
