"""From whatever a user hands over to the tensor a model expects.

The decoding guards (EXIF orientation, modes, animations, bombs, truncated files, tiny images)
live in :mod:`googlenet.datasets.pictures`, shared with the image-folder datasets the trainer reads; this
module re-exports them and adds :func:`prepare`, the step from a picture to a model input.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from googlenet.datasets.pictures import MAX_PIXELS, MIN_SIDE, ImageError, load_image, to_pixels
from googlenet.preprocess import Preprocess

__all__ = ["ImageError", "load_image", "prepare", "to_pixels", "MAX_PIXELS", "MIN_SIDE"]


def prepare(image: object, preprocess: Preprocess, device: torch.device | str = "cpu") -> tuple[Tensor, np.ndarray]:
    """The model input (1×3×S×S, normalised, channels_last on ``device``) and what it shows.

    ``preprocess`` is the model's input recipe (resize the shorter side, centre-crop, normalise);
    the second result is the crop as H×W×3 uint8, the picture every map is drawn over, so the
    input is exactly that picture normalised.
    """
    pixels = to_pixels(load_image(image), preprocess.resize_size)
    shown = preprocess.fit(pixels)
    x = preprocess.to_input(shown.to(device)).unsqueeze(0).contiguous(memory_format=torch.channels_last)
    return x, shown.permute(1, 2, 0).numpy()
