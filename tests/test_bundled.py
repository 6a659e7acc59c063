"""The small CIFAR-10 model shipped in assets/models/: present, small, described, and as good as it says."""

import torch
from safetensors import safe_open

from googlenet.analysis.evaluate import evaluate
from googlenet.weights import BUNDLED_MODEL, CIFAR10_CLASSES, load_model, read_meta


def test_bundled_file_is_small_fp16_and_fully_described():
    assert BUNDLED_MODEL.is_file(), f"{BUNDLED_MODEL} is missing"
    assert BUNDLED_MODEL.stat().st_size < 2 * 2**20
    with safe_open(str(BUNDLED_MODEL), "pt") as handle:
        dtypes = {handle.get_tensor(k).dtype for k in handle.keys() if "num_batches" not in k}
    assert dtypes == {torch.float16}
    config, meta = read_meta(BUNDLED_MODEL)
    assert config.stem == "cifar" and config.aux_logits and config.batch_norm and config.width == 0.25
    assert meta.classes == CIFAR10_CLASSES and meta.preprocess.input_size == 32
    training = meta.training
    for key in ("command", "data", "epochs", "accuracy", "train_images", "seconds", "device"):
        assert key in training, key
    assert set(training["accuracy"]) == {"main", "aux1", "aux2"}
    assert training["accuracy"]["main"] >= 0.72


def test_bundled_accuracy_matches_its_metadata(cifar):
    loaded = load_model("bundled")
    assert loaded.source == "bundled" and next(loaded.model.parameters()).dtype == torch.float32
    measured = evaluate(loaded, cifar.test_images, cifar.test_labels)
    for head in ("main", "aux1", "aux2"):
        assert abs(measured.accuracy[head] - loaded.training["accuracy"][head]) <= 0.005, head


def test_auto_uses_the_bundled_model_offline_without_runs():
    loaded = load_model("auto")
    assert loaded.source == "bundled"
    assert any("bundled" in note and "Train tab" in note for note in loaded.notes)
