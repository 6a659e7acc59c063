"""From whatever a user hands over to the tensor a model expects.

Accepts PIL images, file paths, bytes, numpy arrays and tensors. Respects EXIF orientation,
takes the first frame of animations, converts RGBA/LA/P/CMYK/16-bit/float/grayscale to RGB, and
rejects non-images, truncated files, decompression bombs and images too small to mean anything
with an :class:`ImageError` that says which.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor

from googlenet.preprocess import Preprocess

__all__ = ["ImageError", "load_image", "prepare", "to_pixels", "MAX_PIXELS", "MIN_SIDE"]

MAX_PIXELS = 40_000_000  # a 40-megapixel photo decodes to 120 MB of RGB; beyond that, refuse
MIN_SIDE = 8  # smaller images carry no structure a convolution can see
MAX_FILE_BYTES = 50 * 2**20


class ImageError(ValueError):
    """An input that is not a usable image, with a message meant for the person who sent it."""


def load_image(image: object) -> Image.Image:
    """An RGB ``PIL.Image`` from a path, bytes, PIL image, H×W(×C) array or (C×)H×W tensor."""
    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        if not path.is_file():
            raise ImageError(f"no such image file: {path.name}")
        if path.stat().st_size == 0:
            raise ImageError(f"{path.name} is empty (0 bytes)")
        if path.stat().st_size > MAX_FILE_BYTES:
            raise ImageError(f"{path.name} is {path.stat().st_size / 2**20:.0f} MB; the limit is {MAX_FILE_BYTES >> 20} MB")
        with open(path, "rb") as handle:
            return _decode(handle.read(), path.name)
    if isinstance(image, (bytes, bytearray)):
        return _decode(bytes(image), "upload")
    if isinstance(image, Image.Image):
        return _to_rgb(_first_frame(image))
    if isinstance(image, Tensor):
        return _from_array(_tensor_to_hwc(image))
    if isinstance(image, np.ndarray):
        return _from_array(image)
    if image is None:
        raise ImageError("no image given: upload one, paste one or pick an example")
    raise ImageError(f"cannot read an image from a {type(image).__name__}")


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


def to_pixels(picture: Image.Image, size_hint: int | None = None) -> Tensor:
    """An RGB picture as a uint8 3×H×W tensor.

    A picture many times larger than ``size_hint`` is first shrunk by an integer factor with
    PIL's box filter (what ``reducing_gap`` does in ``Image.resize``): a 40-megapixel photo then
    costs milliseconds instead of a full-size antialiased resize, and the result differs from
    the direct resize by far less than one grey level.
    """
    if size_hint is not None:
        factor = min(picture.size) // (3 * size_hint)
        if factor >= 2:
            picture = picture.reduce(factor)
    return torch.from_numpy(np.asarray(picture, dtype=np.uint8).copy()).permute(2, 0, 1)


def _decode(data: bytes, name: str) -> Image.Image:
    if not data:
        raise ImageError(f"{name} is empty (0 bytes)")
    if len(data) > MAX_FILE_BYTES:
        raise ImageError(f"{name} is {len(data) / 2**20:.0f} MB; the limit is {MAX_FILE_BYTES >> 20} MB")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            picture = Image.open(io.BytesIO(data))
            _check_size(picture.size, name)
            picture = _first_frame(picture)
            picture.load()
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageError(f"{name} is too large to decode safely ({error}); the limit is {MAX_PIXELS / 1e6:.0f} megapixels") from None
    except UnidentifiedImageError:
        raise ImageError(f"{name} is not an image this app can read (use PNG, JPEG, GIF, WebP, BMP or TIFF)") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageError(f"{name} is damaged or truncated and cannot be decoded ({error})") from None
    return _to_rgb(picture)


def _check_size(size: tuple[int, int], name: str) -> None:
    width, height = size
    if width * height > MAX_PIXELS:
        raise ImageError(f"{name} is {width}×{height} pixels; the limit is {MAX_PIXELS / 1e6:.0f} megapixels")
    if min(width, height) < MIN_SIDE:
        raise ImageError(f"{name} is {width}×{height} pixels; at least {MIN_SIDE}×{MIN_SIDE} is needed")


def _first_frame(picture: Image.Image) -> Image.Image:
    if getattr(picture, "n_frames", 1) > 1:
        picture.seek(0)
    return picture


def _to_rgb(picture: Image.Image) -> Image.Image:
    """Upright RGB: EXIF rotation applied, alpha over white, 16-bit and float scaled to 8 bits."""
    _check_size(picture.size, "the image")
    try:
        picture = ImageOps.exif_transpose(picture)
    except (OSError, SyntaxError, ValueError, KeyError, TypeError):
        pass  # a malformed EXIF block: keep the pixels as stored
    if picture.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        array = np.asarray(picture, dtype=np.float64)
        return _from_array(array)
    if picture.mode in ("RGBA", "LA", "PA") or (picture.mode == "P" and "transparency" in picture.info):
        rgba = picture.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return picture.convert("RGB")


def _tensor_to_hwc(tensor: Tensor) -> np.ndarray:
    array = tensor.detach().cpu()
    if array.ndim == 4 and array.shape[0] == 1:
        array = array[0]
    if array.ndim == 3 and array.shape[0] in (1, 3, 4) and array.shape[-1] not in (1, 3, 4):
        array = array.permute(1, 2, 0)
    return array.numpy()


def _from_array(array: np.ndarray) -> Image.Image:
    array = np.asarray(array)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (3, 4)):
        raise ImageError(f"an image array must be H×W, H×W×3 or H×W×4, got shape {array.shape}")
    _check_size((array.shape[1], array.shape[0]), "the image")
    if array.dtype == np.bool_:
        array = array.astype(np.uint8) * 255
    elif array.dtype != np.uint8:
        array = array.astype(np.float64)
        if not np.isfinite(array).all():
            raise ImageError("the image contains NaN or infinite values")
        low, high = float(array.min()), float(array.max())
        if low >= 0 and high <= 1:
            array = array * 255  # floats in [0, 1]
        elif high > 255:
            array = array / (65535 if high <= 65535 else high) * 255  # 16-bit or wider
        array = np.clip(np.rint(array), 0, 255).astype(np.uint8)
    picture = Image.fromarray(array)
    return _to_rgb(picture) if picture.mode != "RGB" else picture
