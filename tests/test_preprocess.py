"""One input recipe: the same picture gives the same tensor through every path that makes inputs."""

import numpy as np
import pytest
import torch
from PIL import Image

from explain.explorer import Explorer
from explain.microscope.examples import build_index
from googlenet.analysis.evaluate import evaluate
from googlenet.datasets.cifar10 import Augment, DeviceBatches
from googlenet.preprocess import CIFAR10, IMAGENET, Preprocess
from tests.conftest import make_loaded


@pytest.fixture(scope="module")
def picture() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(40, 52, 3), dtype=np.uint8)


def test_every_path_gives_the_same_input(picture):
    recipe = Preprocess(32, 36, (0.4, 0.45, 0.5), (0.2, 0.25, 0.3))
    pixels = torch.from_numpy(picture).permute(2, 0, 1)
    expected = recipe(pixels)
    assert expected.shape == (3, 32, 32)

    # torchvision's v2 pipeline on the PIL image (what a notebook would write)
    assert torch.equal(recipe.transforms()(Image.fromarray(picture)), expected)

    # the explorer (an uploaded picture), through a model that carries the recipe
    loaded = make_loaded("cifar", width=0.125)
    loaded = type(loaded)(loaded.model, loaded.classes, recipe, loaded.name, loaded.source)
    x, shown = Explorer(loaded).prepare(Image.fromarray(picture))
    assert torch.equal(x[0], expected)
    assert torch.equal(torch.from_numpy(shown).permute(2, 0, 1), recipe.fit(pixels))

    # a uint8 batch of pictures (evaluation, dataset examples)
    batch = pixels[None].repeat(3, 1, 1, 1)
    assert torch.equal(recipe(batch)[1], expected)
    assert torch.equal(recipe.to_input(recipe.fit(batch))[1], expected)

    # training: un-augmented device batches of the picture
    batches = DeviceBatches(
        batch, torch.zeros(3, dtype=torch.long), 3, Augment(recipe, crop_padding=0, flip=False), torch.device("cpu"), train=False
    )
    x_train, _ = next(batches.epoch(0))
    assert torch.equal(x_train[2], expected)

    # feature visualization normalises pixels in [0, 1] with the same statistics
    pixels01 = recipe.fit(pixels).float() / 255
    assert torch.allclose(recipe.normalize(pixels01), expected, atol=1e-6)
    assert torch.allclose(recipe.denormalize(expected), pixels01, atol=1e-6)


def test_evaluation_and_the_index_use_the_recipe(picture):
    """Evaluation and the dataset-example index accept pictures of any size and fit them."""
    loaded = make_loaded("cifar", width=0.125)
    images = torch.from_numpy(picture).permute(2, 0, 1)[None].repeat(4, 1, 1, 1)  # 40×52, not 32×32
    result = evaluate(loaded, images, torch.tensor([0, 1, 2, 3]))
    assert result.images == 4
    fitted = loaded.preprocess.fit(images)
    assert evaluate(loaded, fitted, torch.tensor([0, 1, 2, 3])).accuracy == result.accuracy
    index = build_index(loaded, images, torch.tensor([0, 1, 2, 3]), k=2)
    assert index.top_images["inception3a"].shape[1] == 2


def test_recipes_validate_and_scale():
    assert IMAGENET.with_size(32) == Preprocess(32, 32, IMAGENET.mean, IMAGENET.std)
    assert (CIFAR10.input_size, CIFAR10.resize_size) == (32, 32)
    with pytest.raises(ValueError, match="resize_size"):
        Preprocess(224, 200, IMAGENET.mean, IMAGENET.std)
    with pytest.raises(ValueError, match="std"):
        Preprocess(32, 32, (0.5,) * 3, (0.0, 1.0, 1.0))
    with pytest.raises(TypeError, match="uint8"):
        CIFAR10.fit(torch.zeros(3, 32, 32))
    # a 224-px photo recipe: shorter side to 256, centre crop 224
    assert IMAGENET.fit(torch.zeros(3, 300, 500, dtype=torch.uint8)).shape == (3, 224, 224)
