"""How a picture becomes a model input: one recipe per model, the way torchvision's weights carry
``transforms()``.

Every path that turns pixels into an input tensor goes through a :class:`Preprocess`: the
explorer (an uploaded photo), evaluation and the microscope's dataset examples (uint8 batches),
feature visualization (images in [0, 1]) and training (augmented uint8 batches on the device). So
the same picture gives the same tensor everywhere (``tests/test_preprocess.py``), and a model
saved here carries its recipe in its checkpoint.

The steps are torchvision's evaluation transform: resize the shorter side to ``resize_size``
(bilinear, antialiased), centre-crop ``input_size``, scale uint8 to [0, 1], normalise with
``mean``/``std``. They are ``torchvision.transforms.v2`` functionals applied to tensors, batched
and on any device.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

__all__ = [
    "Preprocess",
    "IMAGENET",
    "CAFFE_IMAGENET",
    "CIFAR10",
    "CIFAR100",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "CIFAR100_MEAN",
    "CIFAR100_STD",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)


@dataclass(frozen=True)
class Preprocess:
    """Resize, crop and normalise: the input recipe a model was trained with.

    Args:
        input_size: side of the square input the model sees (224 for ImageNet, 32 for CIFAR).
        resize_size: the shorter side before the centre crop (256 for ImageNet: the crop keeps
            87.5 % of the picture); equal to ``input_size`` for pictures that are used whole.
        mean, std: per-channel statistics of the training pixels in [0, 1].
    """

    input_size: int
    resize_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def __post_init__(self) -> None:
        if len(self.mean) != 3 or len(self.std) != 3:
            raise ValueError(f"mean and std need 3 values each, got {self.mean!r} and {self.std!r}")
        if any(s <= 0 for s in self.std):
            raise ValueError(f"std values must be positive, got {self.std!r}")
        if not isinstance(self.input_size, int) or not 8 <= self.input_size <= 1024:
            raise ValueError(f"input_size must be an integer in [8, 1024], got {self.input_size!r}")
        if not isinstance(self.resize_size, int) or self.resize_size < self.input_size:
            raise ValueError(f"resize_size must be an integer ≥ input_size ({self.input_size}), got {self.resize_size!r}")

    def fit(self, images: Tensor) -> Tensor:
        """uint8 C×H×W or N×C×H×W at any size → the centre crop the model sees, still uint8.

        A no-op for images already at ``input_size`` when ``resize_size == input_size`` (a CIFAR
        batch for a CIFAR model), so batches pay nothing for the recipe they already follow.
        """
        if images.dtype != torch.uint8:
            raise TypeError(f"fit expects uint8 pixels, got {images.dtype}")
        height, width = images.shape[-2:]
        if min(height, width) != self.resize_size:
            images = TF.resize(images, [self.resize_size], interpolation=v2.InterpolationMode.BILINEAR, antialias=True)
        if images.shape[-2:] != (self.input_size, self.input_size):
            images = TF.center_crop(images, [self.input_size, self.input_size])
        return images

    def normalize(self, x: Tensor) -> Tensor:
        """Pixels in [0, 1] (float, any batch shape) → the normalised input: ``(x − mean) / std``."""
        return TF.normalize(x, list(self.mean), list(self.std))

    def denormalize(self, x: Tensor) -> Tensor:
        """The inverse of :meth:`normalize`: a model input back to pixels in [0, 1] (unclipped)."""
        mean = torch.tensor(self.mean, device=x.device, dtype=x.dtype).view(3, 1, 1)
        std = torch.tensor(self.std, device=x.device, dtype=x.dtype).view(3, 1, 1)
        return x * std + mean

    def to_input(self, fitted: Tensor) -> Tensor:
        """uint8 pixels already at the input size (what :meth:`fit` returns) → normalised float32."""
        return self.normalize(TF.to_dtype(fitted, torch.float32, scale=True))

    def __call__(self, images: Tensor) -> Tensor:
        """uint8 pictures (C×H×W or N×C×H×W, any size, any device) → normalised float32 input."""
        return self.to_input(self.fit(images))

    def transforms(self) -> v2.Compose:
        """The same recipe as a ``torchvision.transforms.v2`` pipeline for PIL images or tensors,
        e.g. for a ``torchvision.datasets.ImageFolder`` in a notebook."""
        return v2.Compose(
            [
                v2.ToImage(),
                v2.Resize(self.resize_size, interpolation=v2.InterpolationMode.BILINEAR, antialias=True),
                v2.CenterCrop(self.input_size),
                v2.ToDtype(torch.float32, scale=True),
                v2.Normalize(list(self.mean), list(self.std)),
            ]
        )

    def with_size(self, input_size: int, resize_size: int | None = None) -> Preprocess:
        """The same statistics at another input size (e.g. CIFAR pictures upsampled to 224)."""
        return Preprocess(input_size, resize_size or input_size, self.mean, self.std)


IMAGENET = Preprocess(224, 256, IMAGENET_MEAN, IMAGENET_STD)
# torchvision's GoogLeNet weights were ported from Caffe and expect (x − 0.5) / 0.5; torchvision
# reaches that with transform_input=True on ImageNet-normalised input. Normalising with 0.5/0.5
# directly is the same function.
CAFFE_IMAGENET = Preprocess(224, 256, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
CIFAR10 = Preprocess(32, 32, CIFAR10_MEAN, CIFAR10_STD)
CIFAR100 = Preprocess(32, 32, CIFAR100_MEAN, CIFAR100_STD)
