"""Where the Microscope finds reference images, and the "Get reference images" download (faked:
no network in tests)."""

import shutil
from dataclasses import replace

import pytest

from explain.microscope import reference
from explain.microscope.microscope import Microscope
from explain.microscope.reference import ReferenceMissing, candidate_roots, data_root, fetch_reference, find_reference, reference_root
from googlenet.datasets.cifar10 import DataError
from tests.conftest import make_loaded


@pytest.fixture
def cifar_model():
    return make_loaded("cifar", width=0.125)


def copy_test_batch(cifar_dir, root):
    """A CIFAR-10 folder with the subset's batches (what a download leaves behind)."""
    shutil.copytree(cifar_dir / "cifar-10-batches-py", root / "cifar-10-batches-py")
    return root


def test_folders_are_searched_in_the_documented_order(cifar_model, tmp_path, monkeypatch):
    monkeypatch.setenv("GOOGLENET_DATA", str(tmp_path / "configured"))
    trained = replace(cifar_model, training={"data": str(tmp_path / "trained-on")})
    roots = candidate_roots(trained, tmp_path / "train-tab")
    # the data a run trained on is read first by find_reference, and only under these roots
    assert roots == [tmp_path / "configured", tmp_path / "train-tab", reference_root()]
    assert data_root() == tmp_path / "configured" and reference_root().parent.name != "configured"


def test_a_checkpoint_naming_a_folder_outside_the_servers_roots_is_not_read(cifar_model, cifar_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("GOOGLENET_DATA", str(tmp_path / "configured"))
    elsewhere = copy_test_batch(cifar_dir, tmp_path / "elsewhere")  # e.g. metadata of an uploaded checkpoint
    trained = replace(cifar_model, training={"data": str(elsewhere)})
    with pytest.raises(ReferenceMissing):
        find_reference(trained, [tmp_path / "configured"])
    inside = copy_test_batch(cifar_dir, tmp_path / "configured")
    found = find_reference(replace(cifar_model, training={"data": str(inside)}), [tmp_path / "nothing"])
    assert len(found.images) == len(found.labels) == 1017 and "test" in found.description


def test_the_first_folder_holding_the_test_batch_wins(cifar_model, cifar_dir, tmp_path):
    later = copy_test_batch(cifar_dir, tmp_path / "later")
    found = find_reference(cifar_model, [tmp_path / "empty", later])
    assert found.root == later and len(found.images) == len(found.labels) == 1017
    assert "CIFAR-10 test batch (1,017 images)" in found.description


def test_without_data_the_message_names_the_button_and_the_flag(cifar_model, tmp_path):
    with pytest.raises(ReferenceMissing) as missing:
        find_reference(cifar_model, [tmp_path / "nothing"])
    text = str(missing.value)
    assert "Get reference images" in text and "--data DIR" in text and str(reference_root()) in text


def test_get_reference_images_offline_explains_instead_of_failing(cifar_model, monkeypatch):
    def offline(root):
        raise DataError(
            "could not download CIFAR-10 from https://www.cs.toronto.edu/…: <urlopen error [Errno -2] Name or service not known>"
        )

    monkeypatch.setitem(reference._DOWNLOADS, "cifar10", offline)
    with pytest.raises(ReferenceMissing, match="could not be downloaded .*Name or service not known.*Without internet"):
        fetch_reference(cifar_model)


def test_get_reference_images_downloads_into_the_reference_folder_then_it_is_found(cifar_model, cifar_dir, monkeypatch):
    fetched, steps = [], []
    monkeypatch.setitem(reference._DOWNLOADS, "cifar10", lambda root: fetched.append(copy_test_batch(cifar_dir, root)))
    root = fetch_reference(cifar_model, lambda fraction, message: steps.append(fraction))
    assert fetched == [reference_root()] == [root] and steps[0] == 0.0 and steps[-1] == 1.0
    assert find_reference(cifar_model, candidate_roots(cifar_model)).root == reference_root()


def test_microscope_without_data_still_shows_feature_visualizations(cifar_model, tmp_path):
    scope = Microscope(cifar_model, [tmp_path / "no-data"], viz_size=32, steps=4)
    view = scope.branch_view("inception4a.branch1", [0, 1])
    assert "Get reference images" in view.note
    assert list(view.figure.data[1].text) == ["ch 0", "ch 1"]  # one row of visualizations, captioned, no examples
    gallery = scope.module_gallery("inception4a", per_branch=1)
    assert gallery.note and len(gallery.figure.data[1].text) == 4  # one row per branch
    with pytest.raises(ReferenceMissing):
        scope.specialization()
    assert not scope.found


def test_imagenet_weights_find_imagenette_in_the_data_root(tmp_path, monkeypatch):
    # the layout torchvision's Imagenette(split="val") leaves behind, with two of the example photos
    val = tmp_path / "imagenette2-160" / "val"
    for wnid, photo in (("n01440764", "cat.jpg"), ("n03000684", "coffee.jpg")):
        (val / wnid).mkdir(parents=True)
        shutil.copy(f"assets/examples/photos/{photo}", val / wnid / f"{wnid}_1.JPEG")
    monkeypatch.setenv("GOOGLENET_DATA", str(tmp_path))
    imagenet_shaped = make_loaded("imagenet", width=0.125, num_classes=1000)
    found = find_reference(imagenet_shaped, candidate_roots(imagenet_shaped))
    assert found.root == tmp_path and found.images.shape == (2, 3, 224, 224) and "Imagenette" in found.description
    # elsewhere: the example photos shipped with the app, never an error
    assert "example photos" in find_reference(imagenet_shaped, [tmp_path / "nothing"]).description
