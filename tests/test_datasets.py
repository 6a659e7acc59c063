"""Datasets behind one interface: image folders of real CIFAR pictures written as PNG, zips (and
attacks on them), CIFAR-100 in its official format, the decoding guards shared with uploads."""

import os
import pickle
import stat
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import write_png_folder
from PIL import Image

from googlenet.datasets import (
    DataError,
    extract_zip,
    image_folder,
    load_in_memory,
    open_dataset,
    plan_loading,
    stratified_split,
)
from googlenet.datasets.pictures import ImageError, load_image, read_picture, to_pixels
from googlenet.preprocess import CIFAR100, IMAGENET


@pytest.fixture(scope="module")
def png_folder(cifar, tmp_path_factory):
    """300 training and 100 validation pictures of the real subset, as train/ and val/ PNG folders."""
    return write_png_folder(cifar, tmp_path_factory.mktemp("pngs") / "cifar-png", train=300, val=100)


def _index(path: Path) -> int:
    return int(path.stem)


def test_image_folder_reads_the_same_pixels_and_labels_as_cifar(png_folder, cifar):
    dataset = open_dataset(png_folder, input_size=32)
    assert dataset.name == "image folder" and dataset.classes == cifar.classes and dataset.test_name == "val"
    assert (len(dataset.train), len(dataset.test)) == (300, 100)
    assert dataset.recipe == IMAGENET.with_size(32)  # ImageNet statistics, CIFAR-like pictures used whole
    loaded = load_in_memory(dataset, 32, workers=2)
    assert loaded.train_images.shape == (300, 3, 32, 32) and loaded.train_images.dtype == torch.uint8
    for split, images, labels in (
        (loaded.train, cifar.train_images, cifar.train_labels),
        (loaded.test, cifar.test_images, cifar.test_labels),
    ):
        index = torch.tensor([_index(f) for f in split.files])
        assert torch.equal(split.labels, labels[index])  # every picture keeps its own label
        assert torch.equal(split.images, images[index])  # PNG is lossless: the very CIFAR pixels


def test_stratified_split_is_deterministic_and_per_class(cifar, tmp_path):
    root = write_png_folder(cifar, tmp_path / "flat", train=200, val=None)
    first = image_folder(root, input_size=32, val_split=0.2, seed=0)
    again = image_folder(root, input_size=32, val_split=0.2, seed=0)
    other = image_folder(root, input_size=32, val_split=0.2, seed=1)
    assert first.train.files == again.train.files and first.test.files == again.test.files
    assert first.test.files != other.test.files
    assert not set(first.train.files) & set(first.test.files) and len(first.train) + len(first.test) == 200
    counts = torch.bincount(cifar.train_labels[:200], minlength=10)
    assert torch.equal(first.test.counts(10), torch.round(counts * 0.2).long())
    assert any("20% of each class held out" in n for n in first.notes)
    # the split of labels alone: sorted, disjoint, covering
    train, val = stratified_split(torch.tensor([0, 0, 0, 0, 0, 1, 1, 2]), 0.4, seed=3)
    assert sorted(torch.cat([train, val]).tolist()) == list(range(8)) and len(val) == 3  # 2 + 1 + 0 (a class of one stays in train)


def test_unreadable_files_are_skipped_and_counted(cifar, tmp_path):
    root = write_png_folder(cifar, tmp_path / "broken", train=40, val=20)
    cat = root / "train" / "cat"
    good = sorted(cat.glob("*.png"))[0].read_bytes()
    (cat / "truncated.png").write_bytes(good[: len(good) // 2])
    (cat / "text.png").write_bytes(b"not a picture at all")
    (cat / "notes.txt").write_text("ignored")
    dataset = open_dataset(root, input_size=32)
    assert len(dataset.train) == 42 and "1 files that are not pictures ignored" in dataset.notes
    loaded = load_in_memory(dataset, 32, workers=1)
    assert len(loaded.train) == 40 and len(loaded.train.files) == 40
    skipped = [n for n in loaded.notes if "unreadable" in n]
    assert skipped and skipped[0].startswith("2 unreadable train files skipped") and "text.png" in skipped[0]
    assert all(Path(f).name not in ("truncated.png", "text.png") for f in loaded.train.files)


def _picture(mode: str) -> Image.Image:
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 255, (40, 60, 3), dtype=np.uint8))
    if mode == "RGBA":
        return Image.fromarray(rng.integers(0, 255, (40, 60, 4), dtype=np.uint8))
    if mode == "I;16":
        return Image.fromarray(rng.integers(0, 65535, (40, 60), dtype=np.uint16))
    return rgb.convert(mode)


@pytest.mark.parametrize(
    "mode,fmt",
    [("RGB", "PNG"), ("L", "PNG"), ("RGBA", "PNG"), ("P", "PNG"), ("I;16", "PNG"), ("RGB", "JPEG"), ("CMYK", "JPEG"), ("RGB", "WEBP")],
)
def test_dataset_files_decode_exactly_as_uploads_do(tmp_path, mode, fmt):
    path = tmp_path / f"p.{fmt.lower()}"
    _picture(mode).save(path, format=fmt)
    assert torch.equal(read_picture(path), to_pixels(load_image(path)))


def test_a_16_bit_rgb_png_decodes_to_8_bits_as_uploads_do(tmp_path):
    import struct
    import zlib

    height, width = 12, 10
    pixels = np.random.default_rng(2).integers(0, 65535, (height, width, 3)).astype(">u2")
    raw = b"".join(b"\x00" + pixels[i].tobytes() for i in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)  # 16 bits per channel, RGB
    path = tmp_path / "deep.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    decoded = read_picture(path)  # torchvision.io returns uint16 here: PIL's 8 bits are used instead
    assert decoded.dtype == torch.uint8 and torch.equal(decoded, to_pixels(load_image(path)))


def test_exif_rotated_photo_is_upright_in_a_dataset(tmp_path):
    picture = Image.fromarray(np.random.default_rng(1).integers(0, 255, (30, 50, 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    path = tmp_path / "rotated.jpg"
    picture.save(path, exif=exif.tobytes())
    pixels = read_picture(path)
    assert pixels.shape == (3, 50, 30) and torch.equal(pixels, to_pixels(load_image(path)))


def test_bombs_and_tiny_pictures_are_refused_in_datasets_too(tmp_path):
    Image.new("RGB", (4, 4)).save(tmp_path / "tiny.png")
    with pytest.raises(ImageError, match="at least 8×8"):
        read_picture(tmp_path / "tiny.png")
    Image.new("1", (9000, 9000)).save(tmp_path / "bomb.png")  # 81 MP: over the 40 MP limit, 10 KB on disk
    with pytest.raises(ImageError, match="megapixels"):
        read_picture(tmp_path / "bomb.png")


# -- zips -------------------------------------------------------------------------------------


def _zip(path: Path, entries: dict[str, bytes], links: dict[str, str] | None = None) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, target)
    return path


def _pngs(png_folder: Path, count: int = 6) -> dict[str, bytes]:
    files = sorted((png_folder / "train").rglob("*.png"))
    by_class: dict[str, list[Path]] = {}
    for f in files:
        by_class.setdefault(f.parent.name, []).append(f)
    chosen = [f for name in sorted(by_class)[:3] for f in by_class[name][: count // 3]]
    return {f"leaves/{f.parent.name}/{f.name}": f.read_bytes() for f in chosen}


def _outside(tmp_path: Path, allowed: set[Path]) -> list[Path]:
    return [p for p in tmp_path.rglob("*") if not any(p == a or a in p.parents for a in allowed)]


@pytest.mark.parametrize(
    "attack,message",
    [
        ({"../evil.png": b"x"}, "outside the extraction folder"),
        ({"leaves/../../evil.png": b"x"}, "outside the extraction folder"),
        ({"/tmp/absolute-evil.png": b"x"}, "absolute path"),
        ({"C:\\evil.png": b"x"}, "absolute path"),
        ({"leaves/cat/bomb.bmp": bytes(20 * 2**20)}, "zip bomb"),
    ],
)
def test_hostile_zips_are_refused_and_write_nothing_outside(png_folder, tmp_path, attack, message):
    archive = _zip(tmp_path / "upload.zip", {**_pngs(png_folder), **attack})
    target = tmp_path / "extracted" / "upload"
    with pytest.raises(DataError, match=message):
        extract_zip(archive, into=target)
    assert not target.exists() and not (tmp_path / "evil.png").exists() and not Path("/tmp/absolute-evil.png").exists()
    assert _outside(tmp_path, {archive, tmp_path / "extracted"}) == []
    assert not (tmp_path / "extracted").exists()  # refused before anything is written


def test_zip_with_a_symlink_is_refused(png_folder, tmp_path):
    archive = _zip(tmp_path / "links.zip", _pngs(png_folder), links={"leaves/cat/passwd.png": "/etc/passwd"})
    with pytest.raises(DataError, match="symbolic link"):
        extract_zip(archive, into=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_zip_limits_on_size_and_count_are_stated(png_folder, tmp_path):
    archive = _zip(tmp_path / "many.zip", _pngs(png_folder))
    with pytest.raises(DataError, match="6 pictures; the limit is 5 files"):
        extract_zip(archive, into=tmp_path / "a", max_files=5)
    with pytest.raises(DataError, match=r"uncompressed; the limit is 0.00 GiB"):
        extract_zip(archive, into=tmp_path / "b", max_bytes=1000)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_zip_of_a_folder_trains_from_the_runs_area_and_skips_non_pictures(png_folder, tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    monkeypatch.setenv("GOOGLENET_RUNS", str(runs))
    entries = {**_pngs(png_folder, 12), "leaves/README.txt": b"hello", "leaves/cat/notes.docx": b"PK..", "__MACOSX/._x": b""}
    archive = _zip(tmp_path / "leaves.zip", entries)
    dataset = open_dataset(archive, input_size=32)
    assert dataset.root.parent.parent == runs / "datasets" and dataset.root.name == "leaves"
    assert len(dataset.classes) == 3 and len(dataset.train) + len(dataset.test) == 12
    assert any(n.startswith("skipped 2 entries of leaves.zip that are not pictures") for n in dataset.notes)
    assert not list(dataset.root.rglob("*.txt")) and not list(dataset.root.rglob("*.docx"))
    assert all(oct(p.stat().st_mode & 0o777) == "0o644" for p in dataset.root.rglob("*.png"))
    assert open_dataset(archive, input_size=32).root == dataset.root  # extracted once, then reused
    assert _outside(tmp_path, {archive, runs}) == []


# -- CIFAR-100 --------------------------------------------------------------------------------


def _cifar100(root: Path, cifar, per_split: int = 200) -> Path:
    """A small CIFAR-100 in the official python layout: bytes keys, fine and coarse labels."""
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    names = [f"fine{i:02d}" for i in range(100)]
    with open(folder / "meta", "wb") as f:
        pickle.dump({b"fine_label_names": [n.encode() for n in names], b"coarse_label_names": [b"c"] * 20}, f, protocol=2)
    for name, images in (("train", cifar.train_images), ("test", cifar.test_images)):
        fine = [(i * 7) % 100 for i in range(per_split)]
        batch = {
            b"data": images[:per_split].reshape(per_split, -1).numpy(),
            b"fine_labels": fine,
            b"coarse_labels": [f // 5 for f in fine],
            b"filenames": [f"{i}.png".encode() for i in range(per_split)],
        }
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f, protocol=2)
    return folder


def test_cifar100_reads_100_fine_labels(cifar, tmp_path):
    _cifar100(tmp_path, cifar)
    dataset = open_dataset(tmp_path)
    assert dataset.name == "CIFAR-100" and len(dataset.classes) == 100 and dataset.classes[7] == "fine07"
    assert dataset.recipe == CIFAR100 and dataset.train_images.shape == (200, 3, 32, 32)
    assert torch.equal(dataset.train_images, cifar.train_images[:200])
    assert dataset.train_labels.tolist() == [(i * 7) % 100 for i in range(200)] and int(dataset.train_labels.max()) == 99


def test_cifar100_pickles_cannot_run_code(cifar, tmp_path):
    folder = _cifar100(tmp_path, cifar, per_split=10)

    class Evil:
        def __reduce__(self):
            return (os.system, ("touch pwned",))

    with open(folder / "test", "wb") as f:
        pickle.dump({b"data": Evil()}, f)
    with pytest.raises(DataError, match="forbidden object"):
        open_dataset(tmp_path)
    assert not Path("pwned").exists()


def test_cifar100_download_uses_torchvisions_checksums(tmp_path, monkeypatch):
    from torchvision.datasets import CIFAR100, utils

    from googlenet.datasets import download_cifar100

    calls = []

    def fake(url, root, filename, md5):  # a download that delivers the wrong bytes
        calls.append((url, filename, md5))
        (Path(root) / "cifar-100-python").mkdir(parents=True, exist_ok=True)
        for name, _ in CIFAR100.train_list + CIFAR100.test_list:
            (Path(root) / "cifar-100-python" / name).write_bytes(b"tampered")

    monkeypatch.setattr(utils, "download_and_extract_archive", fake)
    with pytest.raises(DataError, match="fails its MD5 check: train, test"):
        download_cifar100(tmp_path)
    assert calls == [(CIFAR100.url, CIFAR100.filename, CIFAR100.tgz_md5)]


def test_unknown_data_gets_the_list_of_formats(tmp_path):
    (tmp_path / "only-one-class").mkdir()
    with pytest.raises(DataError, match="CIFAR-100 python folder"):
        open_dataset(tmp_path / "nowhere")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(DataError, match="not a dataset this trainer reads"):
        open_dataset(tmp_path / "file.txt")


def test_loading_choice_follows_the_budget(png_folder):
    dataset = open_dataset(png_folder, input_size=224)
    cpu = torch.device("cpu")
    need = 400 * 3 * 256 * 256
    small = plan_loading(dataset, 256, cpu, budget_gib=need / 2 / 2**30)
    large = plan_loading(dataset, 256, cpu, budget_gib=need * 2 / 2**30)
    assert small.mode == "stream" and "over the budget" in small.reason and "--in-memory overrides" in small.reason
    assert large.mode == "memory" and "within the budget" in large.reason and small.bytes == need
    assert plan_loading(dataset, 256, cpu, "memory", budget_gib=need / 2 / 2**30).mode == "memory"
    assert plan_loading(dataset, 256, cpu, "stream").mode == "stream"
    with pytest.raises(ValueError, match="loading must be one of"):
        plan_loading(dataset, 256, cpu, "disk")


def test_a_runs_own_test_pictures_for_the_microscope(png_folder, cifar, tmp_path):
    from googlenet.datasets import run_reference_pictures

    training = {"data": str(png_folder), "config": {"val_split": 0.2, "seed": 0}}
    recipe = IMAGENET.with_size(32)
    own = run_reference_pictures(training, cifar.classes, recipe, allowed_roots=[png_folder.parent])
    assert own.images.shape == (100, 3, 32, 32) and own.images.dtype == torch.uint8 and own.classes == cifar.classes
    assert "val split of image folder" in own.description
    index = torch.tensor(sorted(int(f.stem) for f in (png_folder / "val").rglob("*.png")))
    assert sorted(own.labels.tolist()) == sorted(cifar.test_labels[index].tolist())
    # a checkpoint's metadata is not trusted to point anywhere: only under the allowed roots
    assert run_reference_pictures(training, cifar.classes, recipe, allowed_roots=[tmp_path]) is None
    assert run_reference_pictures({"data": str(tmp_path / "gone")}, cifar.classes, recipe, allowed_roots=[tmp_path]) is None
    assert run_reference_pictures(training, ("a", "b"), recipe, allowed_roots=[png_folder.parent]) is None  # other classes
