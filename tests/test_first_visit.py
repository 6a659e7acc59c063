"""Issue 24.3 and 24.5: what a first visit meets, through the handlers (no server)."""

import json

import torch

from googlenet.weights import runs_dir
from ui import explore_tab, shared


def _fake_run(name: str, data: str) -> None:
    run = runs_dir() / name
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"data": data}))
    (run / "metrics.jsonl").write_text("")


def test_a_fresh_page_offers_the_folder_the_last_run_trained_from(tmp_path):
    """The Train tab's folder (which the Microscope reads) is the last run's data, not ``data``."""
    subset = tmp_path / "data" / "cifar10-subset"
    subset.mkdir(parents=True)
    assert shared.last_data_folder() == str(shared.settings().data_root)  # no run yet: the data root
    _fake_run("fast-w0.25-1", str(subset))
    assert shared.last_data_folder() == str(subset)
    roots = explore_tab._scope_roots("bundled", "")  # an API client sending no folder
    assert subset.resolve() in {p.resolve() for p in roots}
    _fake_run("fast-w0.25-2", str(tmp_path / "gone"))  # a run whose data was deleted since: the root again
    assert shared.last_data_folder() == str(shared.settings().data_root)


def test_the_specialization_title_names_the_pictures_it_used():
    from explain.render.figures import specialization_figure

    loaded = shared.HUB.loaded("bundled")

    names = [f"{m.name}.{b}" for m in loaded.spec.modules for b in loaded.spec.branch_kinds]

    class Index:
        slices, energy, labels_from = dict.fromkeys(names), dict.fromkeys(names, 0.25), "dataset labels"

        def selectivity(self, name):
            return torch.full((4,), 0.5)

    figure = specialization_figure(Index(), loaded.spec, "the val split of image folder fruit (6 pictures)")
    assert "over the val split of image folder fruit (6 pictures)" in figure.layout.title.text
    assert "reference set" not in figure.layout.title.text
