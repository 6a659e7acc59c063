"""The Timeline tab: watch a run learn, epoch by epoch, and compare runs.

Pick a run of the runs folder (on a public server only the runs this visitor may see, by the model
list's rule: their own, the operator's and those without an owner) and the tab shows, per epoch
checkpoint, the (branch × epoch) heatmap of selectivity / energy share / knock-out importance,
the three heads over time, each module's knock-out importance over time and the probe image's
atlas as an animation (:mod:`explain.timeline.run_timeline`, :mod:`explain.timeline.timeline_figures`). Measuring is
incremental: the engines cache every epoch beside the run, so only new epoch files cost a model
pass.

Live: a timer looks at the selected run's epoch files every few seconds (a directory listing, no
model); when one appears, that epoch alone is measured, in the queue like any request, never in
the training thread. Live is on by default on a GPU and off on a CPU: on the 2-core development
CPU one epoch's measurement of the 1,017 test images took 16–138 s (by the machine's load), about as long
as training the epoch at width 0.125, and serving threads outrank the niced trainer; there the
user presses "Measure new epochs" when they want them.

Panels never show a run that is no longer selected: picking another run clears them at once, and
a measurement that ends after the pick changed is dropped. Runs are named by the list the server
builds; a name is checked against the same rule before any file is opened, and a run of another
visitor reads exactly like a missing one.
"""

from __future__ import annotations

import logging
import re
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any, NamedTuple

import gradio as gr

from explain.timeline.compare_runs import compare_runs
from explain.timeline.run_timeline import RunTimeline, timeline
from explain.timeline.timeline_figures import (
    atlas_animation,
    heads_timeline_figure,
    importance_timeline_figure,
    specialization_timeline_figure,
)
from googlenet.analysis.epoch_measures import epoch_files, run_data
from googlenet.datasets.cifar10 import CIFAR10, DataError, read_cifar10
from googlenet.weights import runs_dir
from server.hub import EVERYONE
from server.owners import read_owner

from .shared import HUB, JOB, USER_ERRORS, outputs, session_hash, settings, unchanged, visitors

__all__ = [
    "TimelineView",
    "RunLists",
    "ComparisonView",
    "visible_runs",
    "run_choices",
    "select_run",
    "timeline_view",
    "timeline_poll",
    "compare_view",
    "build",
    "TABLE_CSS",
]

log = logging.getLogger("googlenet-explorer")

RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,199}")  # what a run folder's name may be (no separators, no "..")
MAX_IMAGES = 2000  # test images measured per epoch (the engine's default: ±1 % on an accuracy)
POLL_S = 5.0
METRICS = [("class selectivity", "selectivity"), ("energy share", "energy"), ("knock-out importance", "importance")]
HINT = "Pick a run above: its epochs are measured once (then cached beside the run) and drawn here."
LIVE_INFO = (
    "Measure each new epoch of the selected run as its checkpoint appears. Off by default on a CPU: there, measuring an "
    "epoch takes about as long as training one and slows the run; press Measure new epochs instead."
)
TABLE_CSS = """
.run-comparison-wrap { max-height: 560px; overflow: auto; }
table.run-comparison { border-collapse: collapse; width: 100%; font-size: 14px; line-height: 1.4; }
table.run-comparison th, table.run-comparison td { border: 1px solid #d1d5db; padding: 4px 10px; text-align: left; vertical-align: top; }
table.run-comparison td { word-break: break-word; }
table.run-comparison td:first-child { white-space: nowrap; }
table.run-comparison thead th { position: sticky; top: 0; background: #e5e7eb; color: #111827; font-weight: 700; }
table.run-comparison tbody tr[style] td { color: #111827; }
table.run-comparison tbody tr[style] td:first-child { box-shadow: inset 4px 0 0 #f59e0b; }
table.run-comparison tbody tr:nth-child(-n+4) td { font-variant-numeric: tabular-nums; font-weight: 600; }
"""

_SELECTED: OrderedDict[str, str | None] = OrderedDict()  # session → the run its page shows now
_SELECTED_LOCK = threading.Lock()
_DATA: dict[str, CIFAR10] = {}  # one test set kept in memory (the runs of a server share one, mostly)
_DATA_LOCK = threading.Lock()


class TimelineView(NamedTuple):
    heatmap: Any
    heads: Any
    importance: Any
    atlas: Any
    note: Any
    shown: Any  # the epoch files the panels show (the live poll compares the folder with it)


class RunLists(NamedTuple):
    run: Any
    compared: Any


class ComparisonView(NamedTuple):
    curves: Any
    table: Any
    compare_note: Any


# -- which runs a visitor may see ------------------------------------------------------------


def viewer(request: gr.Request | None = None) -> str | None:
    """Whom the lists are for (as the model list): a visitor key, everyone for an operator, None
    for a session that never showed a token (it sees what everyone sees)."""
    visitor = visitors().of_session(session_hash(request))
    if visitor is None:
        return None
    return EVERYONE if visitor.operator else visitor.key


def may_see(folder: Path, who: str | None) -> bool:
    """The model list's rule (:meth:`server.hub.ModelHub.visible`) for a run folder."""
    if not HUB.private_listing or who == EVERYONE:
        return True
    owner = read_owner(folder)
    return owner is None or owner.operator or (who is not None and owner.key == who)


def _is_run(folder: Path) -> bool:
    return folder.is_dir() and (any((folder / name).is_file() for name in ("config.json", "metrics.jsonl")) or bool(epoch_files(folder)))


def visible_runs(who: str | None) -> list[Path]:
    """The run folders ``who`` may see, the most recently changed first."""
    root = runs_dir()
    if not root.is_dir():
        return []
    found = [f for f in root.iterdir() if f.name != "uploads" and RUN_NAME.fullmatch(f.name) and _is_run(f) and may_see(f, who)]
    return sorted(found, key=_changed, reverse=True)


def _changed(folder: Path) -> int:
    try:
        return max((folder / name).stat().st_mtime_ns for name in ("metrics.jsonl", ".") if (folder / name).exists())
    except (OSError, ValueError):
        return 0


def _run_folder(name: object, who: str | None) -> Path:
    """The folder of a run picked from the list, checked by the list's rule; another visitor's run
    reads exactly like a missing one (names are not an oracle)."""
    if not isinstance(name, str) or not RUN_NAME.fullmatch(name):
        raise ValueError("unknown run: pick one from the list")
    folder = runs_dir() / name
    if not _is_run(folder) or not may_see(folder, who):
        raise ValueError(f"the run “{name}” no longer exists: press ↻ to refresh the list")
    return folder


def _training(folder: Path) -> bool:
    status = JOB.status()
    return bool(status.running and status.out and Path(status.out).resolve() == folder.resolve())


def _label(folder: Path) -> str:
    count = len(epoch_files(folder))
    label = f"{folder.name} · {count} epoch checkpoint{'s' if count != 1 else ''}"
    return label + " · training now" if _training(folder) else label


def run_choices(current=None, compared=None, request: gr.Request = None) -> RunLists:
    """Both run lists as this visitor may see them, keeping the picks that are still there."""
    runs = visible_runs(viewer(request))
    choices = [(_label(f), f.name) for f in runs]
    names = {f.name for f in runs}
    kept = [name for name in (compared or []) if name in names]
    return RunLists(
        run=gr.update(choices=choices, value=current if current in names else None),
        compared=gr.update(choices=choices, value=kept),
    )


# -- the timeline of one run -----------------------------------------------------------------


def _remember(request: gr.Request | None, run: str | None) -> None:
    session = session_hash(request)
    if session is None:
        return
    with _SELECTED_LOCK:
        _SELECTED[session] = run
        _SELECTED.move_to_end(session)
        while len(_SELECTED) > 10_000:
            _SELECTED.popitem(last=False)


def _still_selected(request: gr.Request | None, run: str | None) -> bool:
    session = session_hash(request)
    if session is None:
        return True
    with _SELECTED_LOCK:
        return _SELECTED.get(session, run) == run


def _listing(folder: Path) -> tuple:
    """The run's epoch files now (names and times): what a live page compares, cheaply."""
    found = []
    for epoch, path in epoch_files(folder).items():
        try:
            found.append((epoch, path.stat().st_mtime_ns))
        except OSError:
            continue
    return tuple(found)


def cleared(note: str, shown: Any = None) -> TimelineView:
    """Every panel empty, and a note saying why."""
    return TimelineView(heatmap=None, heads=None, importance=None, atlas=None, note=note, shown=shown)


def select_run(run, request: gr.Request = None) -> TimelineView:
    """A run was picked (or its pick cleared): empty every panel at once, so nothing of the run
    shown before stays on the page while the new one is measured."""
    _remember(request, run or None)
    return cleared(f"Reading **{run}**…" if run else HINT)


def _test_set(folder: Path) -> CIFAR10 | None:
    """The run's test set, read once and kept (the timeline reads only its test images); None
    when there is nothing to measure or it cannot be read (the engine then says why, or shows
    what its cache holds)."""
    where = (run_data(folder) or str(settings().data_root)) if epoch_files(folder) else None
    if not where:
        return None
    key = str(Path(where).expanduser().resolve())
    with _DATA_LOCK:
        if key not in _DATA:
            try:
                data = read_cifar10(where)
            except (DataError, OSError):
                return None
            _DATA.clear()
            _DATA[key] = data
        return _DATA[key]


def _measure(folder: Path, progress=None) -> RunTimeline:
    return timeline(folder, data=_test_set(folder), max_images=MAX_IMAGES, progress=progress)


def _problem(run: str, folder: Path | None, error: BaseException) -> str:
    """An expected failure as one line, naming the run rather than the server's folders."""
    text = str(error)
    if folder is not None:
        for where in {str(folder.resolve()), str(folder)}:
            text = text.replace(where, f"run “{run}”")
    if folder is not None and "no epoch-NNN.safetensors" in text and _training(folder):
        return f"**{run}** is training: its first epoch checkpoint is not written yet. It appears here when epoch 1 ends."
    return f"⚠️ **{run}**: {text}"


def timeline_view(run, metric="selectivity", request: gr.Request = None, progress=gr.Progress()) -> TimelineView:
    """The run's timeline: new epochs measured (with progress), cached ones read, every panel drawn.
    Expected failures (no epochs yet, a run gone, unreadable files) are a message in the note."""
    if not run:
        return cleared(HINT)
    folder, shown = None, ()
    try:
        folder = _run_folder(run, viewer(request))
        shown = _listing(folder)
        progress(0, desc=f"{run}: reading the cache")
        result = _measure(folder, lambda fraction, message: progress(fraction, desc=f"{run}: {message}"))
        log.info(
            "timeline of %s: %d epochs measured now, %d cached",
            run,
            result.numbers.computed,
            len(result.numbers.entries) - result.numbers.computed,
        )
        view = _draw(run, folder, result, metric, shown)
    except (*USER_ERRORS, OSError) as error:
        view = cleared(_problem(run, folder, error), shown)
    except Exception as error:  # a bug: log it in full, tell the user briefly
        log.exception("unexpected error in the timeline of %s", run)
        view = cleared(f"⚠️ Something went wrong ({type(error).__name__}). The app is still running.", shown)
    if not _still_selected(request, run):  # another run was picked meanwhile: its panels are not ours
        return unchanged(TimelineView)
    return view


def _draw(run: str, folder: Path, result: RunTimeline, metric: str, shown: tuple) -> TimelineView:
    numbers = result.numbers
    if not numbers.entries:
        return cleared(f"⚠️ **{run}**: no epoch could be measured ({'; '.join(numbers.notes) or 'no readable epoch checkpoint'}).", shown)
    epochs = ", ".join(str(e) for e in numbers.epochs)
    fresh = numbers.computed
    parts = [
        f"**{run}**: epochs {epochs} · measured now: {fresh}, from the cache: {len(numbers.entries) - fresh} · "
        f"probe: test image #{result.probe_index} (a **{result.probe_label}**)"
    ]
    if _training(folder):
        parts.append("🟢 training now: with Live on, new epochs appear as their checkpoints are written; else press Measure new epochs")
    parts += [f"⚠️ {note}" for note in numbers.notes]
    return TimelineView(
        heatmap=specialization_timeline_figure(numbers, metric if metric in {v for _, v in METRICS} else "selectivity"),
        heads=heads_timeline_figure(numbers),
        importance=importance_timeline_figure(numbers),
        atlas=atlas_animation(result),
        note="<br>".join(parts),
        shown=shown,
    )


def timeline_poll(run, live, shown, pending, request: gr.Request = None):
    """Timer tick: the selected run's epoch files (a listing, no model). When they differ from what
    the panels show, returns the new listing for the ``pending`` state, whose change measures it."""
    if not run or not live or shown is None:
        return gr.skip()
    try:
        listing = _listing(_run_folder(run, viewer(request)))
    except (ValueError, OSError):
        return gr.skip()
    if listing == tuple(shown) or listing == pending:
        return gr.skip()
    log.info("timeline of %s: epoch files changed, measuring", run)
    return listing


# -- runs compared ---------------------------------------------------------------------------


def compare_view(runs, only_differing=False, request: gr.Request = None) -> ComparisonView:
    """Two or more runs: loss and accuracy curves overlaid, the config table with the differing
    settings highlighted, and each run's final per-head accuracy."""
    names = [r for r in (runs or []) if isinstance(r, str)]
    if len(names) < 2:
        return ComparisonView(curves=None, table="", compare_note="Pick two or more runs to compare them.")
    try:
        who = viewer(request)
        comparison = compare_runs([_run_folder(name, who) for name in names])
    except (*USER_ERRORS, OSError) as error:
        return ComparisonView(curves=None, table="", compare_note=f"⚠️ {error}")
    differing = comparison.differing
    note = (
        f"**{len(differing)} setting{'s' if len(differing) != 1 else ''} differ** (highlighted, marked ≠): {', '.join(differing)}."
        if differing
        else "The runs' settings are the same (only the seed of chance differs, if anything)."
    )
    table = f'<div class="run-comparison-wrap">{comparison.html(bool(only_differing))}</div>'
    return ComparisonView(curves=comparison.figure, table=table, compare_note=note)


# -- the tab ---------------------------------------------------------------------------------


class TimelineTab(NamedTuple):
    """What app.py wires: the two run lists (filled on page load and when the tab opens)."""

    lists: list


def build() -> TimelineTab:
    """The Timeline tab's components and events (call inside ``gr.Tab``)."""
    gr.Markdown(
        "How did the network get there? Per epoch checkpoint of a run: which branches specialise (Voss et al. 2021), "
        "how the three heads learn, which modules the decision leans on, and how the probe image's atlas changes."
    )
    with gr.Row(equal_height=True):
        run = gr.Dropdown([], value=None, label="Run", scale=4, elem_id="timeline-run", allow_custom_value=True)
        refresh = gr.Button("↻ Refresh list", scale=0, min_width=130)
        measure = gr.Button("Measure new epochs", variant="primary", scale=1, min_width=180, elem_id="timeline-measure")
        live = gr.Checkbox(HUB.device.type != "cpu", label="Live", info=LIVE_INFO, scale=3, elem_id="timeline-live")
    note = gr.Markdown(HINT, label="Timeline note", elem_id="timeline-note")
    metric = gr.Radio(METRICS, value="selectivity", label="Heatmap shows", elem_id="timeline-metric")
    heatmap = gr.Plot(show_label=False, label="Branches × epochs", elem_id="timeline-heatmap")
    # one above the other, full width: side by side their titles and the nine modules' legend were cut off at 1440 px
    heads = gr.Plot(show_label=False, label="Heads over time", elem_id="timeline-heads")
    importance = gr.Plot(show_label=False, label="Module importance over time", elem_id="timeline-importance")
    atlas = gr.Plot(show_label=False, label="The probe's atlas per epoch", elem_id="timeline-atlas")
    shown = gr.State(None)
    pending = gr.State(None)

    gr.Markdown("### Compare runs\nLoss and accuracy curves overlaid; the settings that differ are highlighted in the table.")
    with gr.Row(equal_height=True):
        compared = gr.Dropdown([], value=[], multiselect=True, label="Runs to compare (two or more)", scale=4, elem_id="compare-runs")
        only = gr.Checkbox(False, label="Only the settings that differ", scale=1)
        compare = gr.Button("Compare", variant="primary", scale=0, min_width=120, elem_id="compare-runs-button")
    compare_note = gr.Markdown(label="Comparison note", elem_id="compare-runs-note")
    curves = gr.Plot(show_label=False, label="Runs compared", elem_id="compare-runs-curves")
    table = gr.HTML("", label="Settings and final accuracy", elem_id="compare-runs-table", css_template=TABLE_CSS, js_on_load=None)

    panels = dict(heatmap=heatmap, heads=heads, importance=importance, atlas=atlas, note=note, shown=shown)
    view_outputs = outputs(TimelineView, panels)
    view = dict(fn=timeline_view, inputs=[run, metric], outputs=view_outputs, concurrency_id="timeline", concurrency_limit=1)
    run.change(select_run, run, view_outputs, api_visibility="private", queue=False).then(**view, api_visibility="private")
    measure.click(**view, api_name="timeline")
    pending.change(**view, api_visibility="private", show_progress="minimal")
    metric.input(**view, api_visibility="private")  # from the cache: only epochs written since are measured
    gr.Timer(POLL_S).tick(
        timeline_poll, [run, live, shown, pending], pending, api_visibility="private", show_progress="hidden",
        concurrency_id="timeline-poll", concurrency_limit=None,
    )  # fmt: skip

    lists = outputs(RunLists, dict(run=run, compared=compared))
    refresh.click(run_choices, [run, compared], lists, api_visibility="private", queue=False)
    comparison = outputs(ComparisonView, dict(curves=curves, table=table, compare_note=compare_note))
    compare.click(compare_view, [compared, only], comparison, api_name="compare_runs")
    # a changed pick re-draws at once (it reads logs, no model): never a table of runs no longer picked
    for trigger in (compared.change, only.input):
        trigger(compare_view, [compared, only], comparison, api_visibility="private", trigger_mode="always_last")
    return TimelineTab(lists=[run, compared])
