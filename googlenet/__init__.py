"""GoogLeNet (Inception v1): model, weights and checkpoints, CIFAR-10 data, training, summary."""

from .model import BRANCH_NAMES, BRANCHES, INCEPTION_MODULES, GoogLeNet, GoogLeNetConfig, GoogLeNetOutputs
from .training.trainer import TrainConfig, Trainer
from .weights import CheckpointError, CheckpointMeta, Loaded, load_model, save_checkpoint

__all__ = [
    "GoogLeNet",
    "GoogLeNetConfig",
    "GoogLeNetOutputs",
    "INCEPTION_MODULES",
    "BRANCHES",
    "BRANCH_NAMES",
    "Loaded",
    "CheckpointMeta",
    "CheckpointError",
    "load_model",
    "save_checkpoint",
    "Trainer",
    "TrainConfig",
]
