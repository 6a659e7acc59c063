"""Training on your own pictures: an image folder of real CIFAR pictures written as PNG files trains,
evaluates per class, and carries its class names; streaming; fine-tuning from ImageNet weights."""

import json
import shutil

import pytest
import torch
from conftest import randomize_bn, write_png_folder

from googlenet.__main__ import main
from googlenet.model import GoogLeNet
from googlenet.preprocess import CAFFE_IMAGENET, IMAGENET
from googlenet.training.trainer import EpochEvent, StartEvent, TrainConfig, Trainer
from googlenet.weights import WeightsUnavailable, load_model, read_meta


@pytest.fixture(scope="module")
def folder(cifar, tmp_path_factory):
    return write_png_folder(cifar, tmp_path_factory.mktemp("own") / "pictures", train=256, val=128)


def test_an_image_folder_trains_evaluates_per_class_and_keeps_its_class_names(folder, cifar, tmp_path, capsys):
    events = []
    config = TrainConfig(data=str(folder), out=str(tmp_path / "run"), epochs=1, batch_size=64, width=0.125, seed=0)
    end = Trainer(config).run(events.append)
    assert end.status == "finished"
    start = next(e for e in events if isinstance(e, StartEvent))
    assert "image folder" in start.data and "in memory on cpu" in start.data and start.classes == list(cifar.classes)
    epoch = next(e for e in events if isinstance(e, EpochEvent))
    val_counts = torch.bincount(cifar.test_labels[:128], minlength=10)
    confusion = torch.tensor(epoch.confusion)
    assert confusion.sum() == 128 and torch.equal(confusion.sum(1), val_counts)
    assert len(epoch.per_class) == 10 and abs(confusion.diagonal().sum() / 128 - epoch.acc_main) < 1e-6

    _, meta = read_meta(end.checkpoint)
    assert meta.classes == cifar.classes and meta.preprocess == IMAGENET.with_size(32)  # a folder trains with ImageNet statistics
    assert meta.training["dataset"] == "image folder" and meta.training["data"] == str(folder)

    capsys.readouterr()
    report = tmp_path / "eval.json"
    assert main(["eval", end.checkpoint, "--data", str(folder), "--json", str(report)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1].startswith("accuracy=") and lines[-2] == "images=128"
    for name in cifar.classes:
        assert any(line.split()[:1] == [name] and len(line.split()) == 4 for line in lines), f"no per-class line for {name}"
    written = json.loads(report.read_text())
    main_head = written["heads"]["main"]
    assert sum(map(sum, main_head["confusion"])) == 128 == written["images"]
    assert [r["images"] for r in main_head["per_class"]] == val_counts.tolist()
    assert [r["name"] for r in main_head["per_class"]] == list(cifar.classes)
    assert abs(written["accuracy"]["main"] - epoch.acc_main) <= 2 / 128  # BN folded for inference: a near-tie may flip

    # the timeline measures the run on its own val split (not CIFAR-10's test batch)
    from googlenet.analysis.epoch_measures import run_timeline

    timeline = run_timeline(tmp_path / "run")
    assert [e.epoch for e in timeline.entries] == [1] and timeline.entries[0].count == 128
    assert abs(timeline.entries[0].accuracy["main"] - epoch.acc_main) <= 4 / 128  # bf16 here, fp32 in training's evaluation

    # the run opens with its own labels, and the microscope's reference set is its own val split
    from explain.microscope.reference import find_reference

    loaded = load_model(end.checkpoint)
    assert loaded.classes == cifar.classes
    images, labels, description, _ = vars(find_reference(loaded, [folder.parent])).values()
    assert images.shape == (128, 3, 32, 32) and "val split of image folder" in description
    assert torch.equal(labels.sort().values, cifar.test_labels[:128].sort().values)


def test_a_streamed_run_trains_and_evaluates_the_same_split(folder, tmp_path):
    events = []
    config = TrainConfig(data=str(folder), out=str(tmp_path / "stream"), epochs=1, batch_size=64, width=0.125, loading="stream", workers=0)
    end = Trainer(config).run(events.append)
    assert end.status == "finished" and end.step == 4
    start = next(e for e in events if isinstance(e, StartEvent))
    assert "streaming from files" in start.data and "--stream" in start.data
    epoch = next(e for e in events if isinstance(e, EpochEvent))
    assert sum(map(sum, epoch.confusion)) == 128


def test_a_run_with_too_few_pictures_per_class_or_a_bad_folder_says_why(tmp_path):
    (tmp_path / "one" / "cats").mkdir(parents=True)
    with pytest.raises(ValueError, match="at least two"):
        Trainer(TrainConfig(data=str(tmp_path / "one"), out=str(tmp_path / "r"), width=0.125)).run()


def _stand_in_imagenet() -> dict[str, torch.Tensor]:
    torch.manual_seed(1)
    return {k: v.clone() for k, v in randomize_bn(GoogLeNet()).state_dict().items()}


def test_fine_tuning_from_imagenet_weights_freezes_the_trunk_and_gives_new_heads(folder, tmp_path, monkeypatch):
    from googlenet import weights

    three = tmp_path / "three"
    for split in ("train", "val"):
        for name in ("airplane", "cat", "ship"):
            shutil.copytree(folder / split / name, three / split / name)
    with pytest.raises(WeightsUnavailable, match="downloads are off"):
        Trainer(TrainConfig(data=str(three), out=str(tmp_path / "offline"), init="imagenet", input_size=64)).run()
    with pytest.raises(ValueError, match="ImageNet stem, width 1, BatchNorm"):
        TrainConfig(init="imagenet", width=0.25)
    with pytest.raises(ValueError, match="freeze_until needs init"):
        TrainConfig(freeze_until="inception4e")

    stand_in = _stand_in_imagenet()
    monkeypatch.setattr(weights, "_fetch_imagenet_state_dict", lambda w, download: stand_in)
    config = TrainConfig(
        data=str(three), out=str(tmp_path / "tuned"), init="imagenet", freeze_until="inception4e",
        input_size=64, epochs=1, batch_size=8, max_steps=2, precision="fp32",
    )  # fmt: skip
    assert (config.stem, config.width, config.batch_norm, config.normalize, config.lr) == ("imagenet", 1.0, True, "init", 0.02)
    events = []
    trainer = Trainer(config)
    end = trainer.run(events.append)
    assert end.status == "finished"
    model = trainer.model
    after = model.state_dict()
    frozen = (
        "conv1",
        "conv2",
        "conv3",
        "inception3a",
        "inception3b",
        "inception4a",
        "inception4b",
        "inception4c",
        "inception4d",
        "inception4e",
    )
    for key, value in stand_in.items():
        module = key.split(".", 1)[0]
        if module in frozen:  # weights and BatchNorm statistics alike
            assert torch.equal(after[key], value), f"frozen {key} changed"
    assert not torch.equal(after["inception5b.branch1.conv.weight"], stand_in["inception5b.branch1.conv.weight"])
    assert model.fc.out_features == model.aux1.fc2.out_features == model.aux2.fc2.out_features == 3
    start = next(e for e in events if isinstance(e, StartEvent))
    assert "new fc, aux1, aux2 heads for 3 classes (the source had 1000)" in start.data and "frozen: conv1 … inception4e" in start.data
    _, meta = read_meta(end.checkpoint)
    assert meta.classes == ("airplane", "cat", "ship")
    assert (meta.preprocess.mean, meta.preprocess.std) == (CAFFE_IMAGENET.mean, CAFFE_IMAGENET.std)  # the weights' own recipe

    # --init CHECKPOINT continues from any checkpoint: same classes, so its heads are kept too
    again = TrainConfig(data=str(three), out=str(tmp_path / "again"), init=end.checkpoint, epochs=1, batch_size=8, max_steps=1)
    assert (again.stem, again.width, again.input_size) == ("imagenet", 1.0, 64)
    events = []
    Trainer(again).run(events.append)
    assert "heads kept (aux1, aux2, fc: same 3 classes)" in next(e for e in events if isinstance(e, StartEvent)).data
