"""The run timeline (googlenet.analysis.epoch_measures, explain.timeline.run_timeline), its figures and run comparison, on a
real 3-epoch run of a narrow model on the shared CIFAR-10 subset."""

import json
import math

import numpy as np
import pytest
import torch

from googlenet.model import GoogLeNet
from googlenet.training.trainer import EpochEvent, TrainConfig, Trainer, read_metrics
from googlenet.weights import load_model, prepare_for_inference
from tests.conftest import cifar_slice


@pytest.fixture(scope="module")
def small(cifar):
    """256 training and 256 test images of the real subset: three epochs take seconds."""
    return cifar_slice(cifar, 256, 256)


@pytest.fixture(scope="module")
def run3(small, tmp_path_factory):
    """A finished 3-epoch run of a width-0.125 model (4 steps per epoch)."""
    out = tmp_path_factory.mktemp("timeline") / "three"
    end = Trainer(TrainConfig(out=str(out), epochs=3, batch_size=64, width=0.125, seed=7, lr=0.05), data=small).run()
    assert end.status == "finished"
    return out


def test_forward_from_any_layer_equals_the_full_pass():
    torch.manual_seed(0)
    model = prepare_for_inference(GoogLeNet(num_classes=10, stem="cifar", width=0.125), torch.device("cpu"))
    x = torch.randn(4, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    outputs = {}
    hooks = [
        model.get_submodule(m).register_forward_hook(lambda _m, _i, o, m=m: outputs.__setitem__(m, o))
        for m in ("conv1", "inception3a", "inception4e", "inception5b")
    ]
    with torch.inference_mode():
        logits = model(x)
        for hook in hooks:
            hook.remove()
        for layer, out in outputs.items():
            torch.testing.assert_close(model.forward_from(layer, out), logits, msg=layer)
    with pytest.raises(ValueError, match="unknown layer 'aux1'"):
        model.forward_from("aux1", x)


def test_timeline_of_a_three_epoch_run_is_measured_once_and_cached(run3, small, passes):
    from googlenet.analysis.epoch_measures import run_timeline

    first = run_timeline(run3, data=small, precision="fp32")
    assert first.epochs == (1, 2, 3) and first.computed == 3
    assert len(first.branches) == 36 and len(first.modules) == 9
    trainer_accuracy = {e.epoch: e for e in read_metrics(run3) if isinstance(e, EpochEvent)}
    for entry in first.entries:
        for table in (entry.selectivity, entry.energy, entry.preferred):
            assert set(table) == set(first.branches)
        assert set(entry.importance) == set(first.branches) | set(first.modules)
        assert all(0 <= v <= 1 for v in entry.selectivity.values())
        assert all(math.isfinite(v) and -1 <= v <= 1 for v in entry.importance.values())
        for module in first.modules:  # the four branches share their module's energy
            assert sum(entry.energy[f"{module}.branch{i}"] for i in range(1, 5)) == pytest.approx(1, abs=1e-4)
        assert set(entry.agreement) == {"main=aux1", "main=aux2", "aux1=aux2", "all"}
        assert entry.agreement["all"] <= min(entry.agreement["main=aux1"], entry.agreement["main=aux2"])
        # the trainer evaluated the same 256 test images (unfolded BN: at most a near-tie apart)
        assert entry.accuracy["main"] == pytest.approx(trainer_accuracy[entry.epoch].acc_main, abs=1 / 256 + 1e-9)
        assert len(entry.probe["main"]) == 10 and entry.probe["label"] == small.classes[int(small.test_labels[0])]
    assert passes["n"] > 0

    passes["n"] = 0
    again = run_timeline(run3, data=small, precision="fp32")
    assert passes["n"] == 0 and again.computed == 0 and again.entries == first.entries

    # a pruned epoch keeps its cached entry
    (run3 / "epoch-002.safetensors").rename(run3 / "pruned.bak")
    try:
        pruned = run_timeline(run3, data=small, precision="fp32")
        assert passes["n"] == 0 and pruned.epochs == (1, 2, 3)
    finally:
        (run3 / "pruned.bak").rename(run3 / "epoch-002.safetensors")


def test_knockout_importance_equals_zeroing_the_branch_in_the_full_network(run3, small):
    from googlenet.analysis.epoch_measures import read_timeline

    entry = read_timeline(run3).entries[-1]
    loaded = load_model(run3 / "epoch-003.safetensors")
    x = loaded.preprocess(small.test_images).contiguous(memory_format=torch.channels_last)

    def accuracy_without(*branches: str) -> float:
        hooks = [loaded.model.get_submodule(b).register_forward_hook(lambda _m, _i, o: torch.zeros_like(o)) for b in branches]
        try:
            with torch.inference_mode():
                return float((loaded.model(x).argmax(1) == small.test_labels).float().mean())
        finally:
            for hook in hooks:
                hook.remove()

    base = accuracy_without()
    assert entry.accuracy["main"] == pytest.approx(base, abs=1e-9)
    assert entry.importance["inception4c.branch2"] == pytest.approx(base - accuracy_without("inception4c.branch2"), abs=1e-6)
    whole = [f"inception3b.branch{i}" for i in range(1, 5)]
    assert entry.importance["inception3b"] == pytest.approx(base - accuracy_without(*whole), abs=1e-6)


def test_atlas_animation_has_a_frame_per_epoch_on_one_colour_scale(run3, small, passes):
    from explain.render.figures import map_range
    from explain.timeline.run_timeline import cached_timeline, timeline
    from explain.timeline.timeline_figures import (
        atlas_animation,
        heads_timeline_figure,
        importance_timeline_figure,
        specialization_timeline_figure,
    )

    result = timeline(run3, data=small, precision="fp32")
    assert [f.epoch for f in result.frames] == [1, 2, 3] and result.computed == 3
    assert result.probe_label == small.classes[int(small.test_labels[0])]
    figure = atlas_animation(result, kind="cam")
    assert len(figure.frames) == 3
    low, high = map_range([result.exploration(f) for f in result.frames], "cam")
    assert (figure.layout.coloraxis.cmin, figure.layout.coloraxis.cmax) == (low, high)
    for frame in figure.frames:  # every map of every epoch is drawn on the layout's one colour axis
        maps = [t for t in frame.data if t.type == "heatmap"]
        assert len(maps) == 36 and {t.coloraxis for t in maps} == {"coloraxis"}
        assert frame.layout.coloraxis.cmin is None
    totals = {round(sum(float(np.sum(t.z)) for t in f.data if t.type == "heatmap"), 3) for f in figure.frames}
    assert high > 0 and len(totals) == 3  # the maps change over the epochs

    # the run keeps a TensorBoard log (the trainer's default): the atlas of each new epoch joins it
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    board = EventAccumulator(str(run3), size_guidance={"images": 0}).Reload()
    assert [i.step for i in board.Images("timeline/atlas")] == [f.step for f in result.frames]

    passes["n"] = 0
    again = cached_timeline(run3)
    assert passes["n"] == 0 and [f.epoch for f in again.frames] == [1, 2, 3] and again.computed == 0
    torch.testing.assert_close(
        again.frames[-1].cams_signed["inception4c.branch3"], result.frames[-1].cams_signed["inception4c.branch3"], atol=1e-2, rtol=1e-2
    )  # fp16 cache

    heatmap = specialization_timeline_figure(result.numbers, "energy")
    assert len(heatmap.frames) == 3 and len(heatmap.data[0].y) == 36 and list(heatmap.data[0].x) == ["1", "2", "3"]
    assert heatmap.layout.sliders[0].active == 2
    importance = specialization_timeline_figure(result.numbers, "importance")
    assert importance.layout.coloraxis.cmin == -importance.layout.coloraxis.cmax
    assert len(heads_timeline_figure(result.numbers).data) == 7  # 3 accuracies + 4 agreements
    assert len(importance_timeline_figure(result.numbers).data) == 9
    with pytest.raises(ValueError, match="unknown metric"):
        specialization_timeline_figure(result.numbers, "loss")


def test_cli_writes_the_numbers_from_the_cache(run3, small, cifar_dir, tmp_path, capsys, passes):
    from googlenet.__main__ import main
    from googlenet.analysis.epoch_measures import run_timeline

    run_timeline(run3, data=small, precision="fp32")  # cached (measured by the test above, or now)
    passes["n"] = 0
    out = tmp_path / "timeline.json"
    assert main(["timeline", str(run3), "--data", str(cifar_dir), "--images", "256", "--precision", "fp32", "--json", str(out)]) == 0
    assert passes["n"] == 0  # the same 256 test images: every epoch comes from the cache
    lines = capsys.readouterr().out.splitlines()
    assert "epochs=3" in lines and "branches=36" in lines and "computed=0 cached=3" in lines
    numbers = json.loads(out.read_text())
    assert [e["epoch"] for e in numbers["epochs"]] == [1, 2, 3]
    assert all(len(e["selectivity"]) == len(e["energy"]) == 36 and len(e["importance"]) == 45 for e in numbers["epochs"])


def test_timeline_errors_are_clear(tmp_path):
    from googlenet.__main__ import main
    from googlenet.analysis.epoch_measures import run_timeline

    with pytest.raises(ValueError, match="no run folder"):
        run_timeline(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="no epoch-NNN.safetensors"):
        run_timeline(tmp_path)
    assert main(["timeline", str(tmp_path / "nowhere")]) == 1


def test_comparison_lists_exactly_the_fields_that_differ(run3, small, tmp_path):
    from explain.timeline.compare_runs import compare_runs

    other = tmp_path / "other"
    Trainer(TrainConfig(out=str(other), epochs=1, batch_size=64, width=0.125, seed=3, lr=0.02), data=small).run()
    comparison = compare_runs([run3, other])
    assert comparison.runs == ("three", "other")
    assert comparison.differing == ("epochs", "lr", "seed")
    assert comparison.values["lr"] == (0.05, 0.02) and "out" not in comparison.fields
    last = [e for e in read_metrics(run3) if isinstance(e, EpochEvent)][-1]
    assert comparison.accuracy["three"] == {"main": last.acc_main, "aux1": last.acc_aux1, "aux2": last.acc_aux2}
    assert comparison.epochs == {"three": 3, "other": 1}
    assert [row[0] for row in comparison.rows(only_differing=True)][-3:] == ["epochs", "lr", "seed"]
    table = comparison.html()
    assert table.count("≠ ") == 3 and "<td>0.02</td>" in table
    losses = [t for t in comparison.figure.data if t.name.endswith(" loss")]
    assert [t.name for t in losses] == ["three loss", "other loss"]
    with pytest.raises(ValueError, match="two or more runs"):
        compare_runs([run3])


def test_the_fast_pool_branch_gives_the_same_outputs_exactly():
    import copy

    from googlenet.fastpool import ShiftedMaxPool3x3, with_fast_pools
    from tests.conftest import make_loaded

    loaded = make_loaded("cifar", width=0.125)
    fast = with_fast_pools(copy.deepcopy(loaded.model))
    assert sum(isinstance(m, ShiftedMaxPool3x3) for m in fast.modules()) == 9  # one pool branch per Inception module
    assert not any(isinstance(m, ShiftedMaxPool3x3) for m in loaded.model.modules())  # the original keeps its pools
    x = torch.randn(4, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        for dtype in (torch.float32, torch.bfloat16):
            with torch.autocast("cpu", dtype=dtype, enabled=dtype is torch.bfloat16):
                assert torch.equal(loaded.model(x), fast(x))
