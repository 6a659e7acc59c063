"""The streaming loader against the in-memory path, on real CIFAR pictures written as PNG files."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from conftest import write_png_folder

from googlenet.datasets import Split, StreamBatches, load_in_memory, open_dataset
from googlenet.datasets.cifar10 import Augment, DeviceBatches, _mix

ROOT = Path(__file__).resolve().parent.parent
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def folder(cifar, tmp_path_factory):
    return write_png_folder(cifar, tmp_path_factory.mktemp("stream") / "pngs", train=160, val=70)


@pytest.fixture(scope="module")
def memory(folder):
    return load_in_memory(open_dataset(folder, input_size=32), 32, workers=2)


def _files_only(split: Split) -> Split:
    return Split(split.labels, files=split.files)


def test_evaluation_batches_are_the_same_from_files_and_from_memory(memory):
    recipe = memory.recipe
    stream = StreamBatches(_files_only(memory.test), recipe, 32, CPU, train=False, workers=0)
    device = DeviceBatches(memory.test.images, memory.test.labels, 32, Augment(recipe), CPU, train=False)
    assert len(stream) == len(device) == 3
    pairs = list(zip(stream.epoch(0), device.epoch(0), strict=True))
    for (xs, ys), (xd, yd) in pairs:
        assert xs.shape == xd.shape and xs.dtype == xd.dtype == torch.float32
        assert torch.equal(ys, yd) and torch.equal(xs, xd)
    assert sum(len(y) for (_, y), _ in pairs) == 70


def test_training_batches_keep_each_picture_with_its_label(memory):
    recipe = memory.recipe
    train = _files_only(memory.train)
    # Without crop or flip a streamed picture is exactly its decoded original: find each one.
    plain = StreamBatches(train, recipe, 16, CPU, train=True, seed=3, workers=0, flip=False, scale=(1.0, 1.0))
    originals = {recipe.to_input(image).numpy().tobytes(): int(label) for image, label in zip(memory.train.images, memory.train.labels)}
    seen = 0
    for x, y in plain.epoch(0):
        assert x.shape == (16, 3, 32, 32)
        assert [originals[image.numpy().tobytes()] for image in x] == y.tolist()
        seen += len(y)
    assert seen == 160
    # With ImageNet's random-resized crop and flips: the labels are those of the sampler's order.
    stream = StreamBatches(train, recipe, 16, CPU, train=True, seed=3, workers=1)
    order = stream.indices(1)
    batches = list(stream.epoch(1))
    assert [y.tolist() for _, y in batches] == [train.labels[order[b * 16 : (b + 1) * 16]].tolist() for b in range(10)]
    again = list(stream.epoch(1, start=4))  # a resumed epoch reads the same batches
    assert all(torch.equal(a[0], b[0]) for a, b in zip(again, batches[4:], strict=True))
    assert order != stream.indices(2)


def test_unreadable_files_leave_their_batch_with_their_labels(memory, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG not really")
    files = list(memory.test.files[:8])
    files[3] = broken
    split = Split(memory.test.labels[:8], files=tuple(files))
    (x, y), = StreamBatches(split, memory.recipe, 8, CPU, train=False, workers=0).epoch(0)  # fmt: skip
    assert x.shape[0] == 7 and y.tolist() == memory.test.labels[[0, 1, 2, 4, 5, 6, 7]].tolist()


DDP_SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    import torch, torch.distributed as dist
    import googlenet.datasets.loading as loading
    from googlenet.datasets import Split, open_dataset

    folder, dump = sys.argv[1], sys.argv[2]
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    log = f"{dump}/read-{rank}.txt"
    original = loading.read_picture

    def logged(path, size_hint=None):  # runs in the DataLoader worker (forked): append to a file
        with open(log, "a") as handle:
            handle.write(f"{path}\\n")
        return original(path, size_hint)

    loading.read_picture = logged
    dataset = open_dataset(folder, input_size=32)
    stream = loading.StreamBatches(dataset.train, dataset.recipe, 8, torch.device("cpu"), train=True, seed=5,
                                   rank=int(os.environ["RANK"]), world=int(os.environ["WORLD_SIZE"]), workers=1)
    labels = [y.tolist() for _, y in stream.epoch(0)]
    expected = [str(dataset.train.files[i]) for i in stream.indices(0)]
    gathered = [None] * world
    dist.all_gather_object(gathered, {"rank": rank, "expected": expected, "labels": labels})
    if rank == 0:
        with open(f"{dump}/ranks.json", "w") as handle:
            json.dump(gathered, handle)
    dist.destroy_process_group()
    """
)


@pytest.mark.slow
def test_ddp_ranks_read_disjoint_shards(folder, tmp_path):
    script = tmp_path / "shards.py"
    script.write_text(DDP_SCRIPT)
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--master_port=29531",
        str(script),
        str(folder),
        str(tmp_path),
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = json.loads((tmp_path / "ranks.json").read_text())
    read = [(tmp_path / f"read-{r}.txt").read_text().split() for r in (0, 1)]
    for r in (0, 1):
        assert sorted(read[r]) == sorted(ranks[r]["expected"]) and len(read[r]) == 80  # 160 files, 2 ranks, 10 batches of 8
    assert not set(read[0]) & set(read[1])  # each rank read its own shard, no file twice
    assert len(set(read[0]) | set(read[1])) == 160


def test_device_batches_crop_pictures_stored_larger_than_the_input(memory):
    from torchvision.transforms.v2 import functional as TF

    from googlenet.preprocess import IMAGENET

    images = TF.resize(memory.train.images[:16], [40], antialias=True)  # a folder decoded with room around the crop
    recipe = IMAGENET.with_size(32, 36)
    batches = DeviceBatches(images, memory.train.labels[:16], 16, Augment(recipe, crop_padding=0, flip=False), CPU, seed=1)
    x, y = next(batches.epoch(0))
    assert x.shape == (16, 3, 32, 32) and batches.crop_range == 9
    order = torch.randperm(16, generator=torch.Generator().manual_seed(_mix(1, 0)))
    for i in range(4):  # each input is some 32×32 window of its own picture, normalised
        source = images[order[i]]
        windows = [recipe.to_input(source[:, r : r + 32, c : c + 32]) for r in range(9) for c in range(9)]
        assert any(torch.equal(x[i], w) for w in windows)
    (xe, _), = DeviceBatches(images, memory.train.labels[:16], 16, Augment(recipe), CPU, train=False).epoch(0)  # fmt: skip
    assert torch.equal(xe, recipe(images))  # evaluation: resize to 36, centre crop 32
