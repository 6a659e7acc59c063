import pickle
import shutil

import pytest
import torch

from googlenet.datasets.cifar10 import Augment, DataError, DeviceBatches, download_cifar10, find_batches_dir, read_cifar10
from googlenet.preprocess import IMAGENET, Preprocess

RAW = Preprocess(32, 32, (0.0,) * 3, (1 / 255,) * 3)  # pixel values as they are (0…255, up to float rounding)


def test_subset_loads_with_counts_and_classes(cifar, cifar_dir):
    assert cifar.train_images.shape == (4068, 3, 32, 32) and cifar.train_images.dtype == torch.uint8
    assert cifar.test_images.shape == (1017, 3, 32, 32)
    assert cifar.train_labels.shape == (4068,) and cifar.test_labels.dtype == torch.int64
    assert cifar.classes == ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
    assert set(cifar.test_labels.tolist()) == set(range(10))
    # the root and the batches folder itself are both accepted
    assert find_batches_dir(cifar_dir) == find_batches_dir(cifar_dir / "cifar-10-batches-py")


def _copy(cifar_dir, tmp_path):
    target = tmp_path / "cifar-10-batches-py"
    shutil.copytree(cifar_dir / "cifar-10-batches-py", target)
    return target


def test_missing_folder_and_files(tmp_path, cifar_dir):
    with pytest.raises(DataError, match="not found"):
        read_cifar10(tmp_path / "nowhere")
    with pytest.raises(DataError, match="no CIFAR-10 batches"):
        read_cifar10(tmp_path)
    folder = _copy(cifar_dir, tmp_path)
    (folder / "test_batch").unlink()
    with pytest.raises(DataError, match="missing CIFAR-10 file"):
        read_cifar10(tmp_path)


def test_corrupt_batches_are_named(tmp_path, cifar_dir):
    folder = _copy(cifar_dir, tmp_path)
    data = (folder / "data_batch_2").read_bytes()
    (folder / "data_batch_2").write_bytes(data[: len(data) // 3])
    with pytest.raises(DataError, match="corrupt CIFAR-10 file .*data_batch_2"):
        read_cifar10(tmp_path)


def test_wrong_shapes_and_labels(tmp_path, cifar_dir):
    import numpy as np

    folder = _copy(cifar_dir, tmp_path)
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({"data": np.zeros((5, 100), np.uint8), "labels": [0] * 5}, f)
    with pytest.raises(DataError, match="N×3072"):
        read_cifar10(tmp_path)
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({"data": np.zeros((2, 3072), np.uint8), "labels": [3, 12]}, f)
    with pytest.raises(DataError, match="labels must be in 0…9"):
        read_cifar10(tmp_path)


def test_malicious_pickle_is_refused_without_running_it(tmp_path, cifar_dir):
    folder = _copy(cifar_dir, tmp_path)
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    (folder / "test_batch").write_bytes(pickle.dumps({"data": Exploit(), "labels": []}))
    with pytest.raises(DataError, match="forbidden object"):
        read_cifar10(tmp_path)
    assert not marker.exists()


def test_download_uses_torchvisions_checksummed_archive(tmp_path, monkeypatch):
    import torchvision.datasets.utils as utils

    calls = []
    monkeypatch.setattr(utils, "download_and_extract_archive", lambda url, root, filename, md5: calls.append((url, filename, md5)))
    with pytest.raises(DataError, match="fails its MD5 check"):
        download_cifar10(tmp_path)  # the fake download wrote nothing, so the check must fail
    assert calls == [
        ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz", "cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a")
    ]


def test_download_offline_gives_a_clear_error(tmp_path, monkeypatch):
    import urllib.error

    import torchvision.datasets.utils as utils

    def offline(*a, **k):
        raise urllib.error.URLError("no route")

    monkeypatch.setattr(utils, "download_and_extract_archive", offline)
    with pytest.raises(DataError, match="could not download CIFAR-10"):
        download_cifar10(tmp_path)


def test_augmentation_keeps_shapes_dtypes_and_labels(cifar):
    device = torch.device("cpu")
    images, labels = cifar.train_images[:256], cifar.train_labels[:256]
    aug = Augment(Preprocess(32, 32, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)), crop_padding=4, pad_mode="reflect", flip=True)
    batches = DeviceBatches(images, labels, 64, aug, device, train=True, seed=3)
    seen = []
    for x, y in batches.epoch(0):
        assert x.shape == (64, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
        assert x.min() >= -1.0001 and x.max() <= 1.0001
        seen.append(y)
    assert len(seen) == 4
    # the same epoch gives the same batches; another epoch another order
    again = [y for _, y in batches.epoch(0)]
    assert all(torch.equal(a, b) for a, b in zip(seen, again))
    assert not torch.equal(torch.cat(seen), torch.cat([y for _, y in batches.epoch(1)]))
    # labels stay aligned with their images: without augmentation each batch equals the source
    plain = DeviceBatches(images, labels, 64, Augment(RAW, crop_padding=0, flip=False), device, train=True, seed=3)
    for x, y in plain.epoch(0):
        for xi, yi in zip(x[:8], y[:8]):
            matches = ((images.float() - xi).abs() < 1e-3).flatten(1).all(1).nonzero().flatten()
            assert yi in labels[matches]


def test_crop_and_flip_are_real_crops_and_flips(cifar):
    images = cifar.train_images[:32]
    aug = Augment(RAW, crop_padding=4, pad_mode="constant", flip=True)
    batches = DeviceBatches(images, torch.arange(32), 32, aug, torch.device("cpu"), train=True, seed=1)
    x, order = next(batches.epoch(0))
    padded = torch.nn.functional.pad(images.float(), (4, 4, 4, 4))
    for xi, i in zip(x, order):
        found = False
        for flip in (False, True):
            source = padded[i].flip(2) if flip else padded[i]
            windows = source.unfold(1, 32, 1).unfold(2, 32, 1)  # 3×9×9×32×32
            if ((windows - xi[:, None, None]).abs() < 1e-3).all(0).flatten(2).all(2).any():
                found = True
        assert found, "a batch image is not a flipped or unflipped 32×32 window of its padded source"


def test_resize_to_224_for_the_guide(cifar):
    aug = Augment(IMAGENET.with_size(224), crop_padding=4, pad_mode="constant")
    x, _ = next(DeviceBatches(cifar.train_images[:8], cifar.train_labels[:8], 8, aug, torch.device("cpu")).epoch(0))
    assert x.shape == (8, 3, 224, 224)


def test_ddp_shards_are_disjoint(cifar):
    aug = Augment(Preprocess(32, 32, (0.5,) * 3, (0.5,) * 3), crop_padding=0, flip=False)
    idx = torch.arange(100)
    shards = []
    for rank in range(2):
        b = DeviceBatches(cifar.train_images[:100], idx, 10, aug, torch.device("cpu"), seed=5, rank=rank, world=2)
        shards.append(torch.cat([y for _, y in b.epoch(0)]))
    assert len(set(shards[0].tolist()) & set(shards[1].tolist())) == 0
    assert len(shards[0]) == len(shards[1]) == 50


def test_cutout_masks_one_square_of_the_given_side(cifar):
    images = torch.full((16, 3, 32, 32), 200, dtype=torch.uint8)
    aug = Augment(Preprocess(32, 32, (0.5,) * 3, (0.25,) * 3), crop_padding=0, flip=False, cutout=12)
    x, _ = next(DeviceBatches(images, torch.arange(16), 16, aug, torch.device("cpu"), seed=2).epoch(0))
    masked = (x == 0).all(1)  # the mean colour is 0 after normalisation
    for m in masked:
        rows, cols = m.any(1).nonzero().flatten(), m.any(0).nonzero().flatten()
        assert 1 <= len(rows) <= 12 and 1 <= len(cols) <= 12  # clipped at the border, never larger
        assert m.sum() == len(rows) * len(cols)  # one rectangle
    assert masked.sum(dim=(1, 2)).max() == 144  # somewhere a full 12×12 square
