"""Pictures from whatever a user hands over: the decoding guards for uploads and dataset files.

Accepts PIL images, file paths, bytes, numpy arrays and tensors. Respects EXIF orientation,
takes the first frame of animations, converts RGBA/LA/P/CMYK/16-bit/float/grayscale to RGB, and
rejects non-images, truncated files, decompression bombs and images too small to mean anything
with an :class:`ImageError` that says which.

An upload in the app (``explain.images`` re-exports these) and every file of an image-folder
dataset (:func:`read_picture`) pass the same checks, so a picture the explorer refuses is never
trained on either.
"""

from __future__ import annotations

import io
import os
import warnings
from functools import cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor

__all__ = [
    "ImageError",
    "load_image",
    "to_pixels",
    "read_picture",
    "image_suffixes",
    "MAX_PIXELS",
    "MIN_SIDE",
    "MAX_FILE_BYTES",
]

MAX_PIXELS = 40_000_000  # a 40-megapixel photo decodes to 120 MB of RGB; beyond that, refuse
MIN_SIDE = 8  # smaller images carry no structure a convolution can see
MAX_FILE_BYTES = 50 * 2**20
_ORIENTATION = 0x0112  # the EXIF tag that says how the camera was held


class ImageError(ValueError):
    """An input that is not a usable image, with a message meant for the person who sent it."""


def load_image(image: object) -> Image.Image:
    """An RGB ``PIL.Image`` from a path, bytes, PIL image, H×W(×C) array or (C×)H×W tensor."""
    if isinstance(image, (str, os.PathLike)):
        return _decode(_read_file(Path(image)), Path(image).name)
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


def read_picture(path: str | os.PathLike, size_hint: int | None = None) -> Tensor:
    """A picture file as uint8 3×H×W RGB, through the same checks as an upload.

    The header is read by PIL first (size limits, bombs, mode, EXIF orientation). Plain RGB or
    grey PNG and JPEG files, nearly all of a photo folder, are then decoded by ``torchvision.io``
    (148 µs against 345 µs for PIL on a 32×32 PNG, measured on a shared 2-core CPU); a JPEG at least
    four times larger than ``size_hint`` is decoded by PIL at a reduced DCT scale instead (0.14 s
    against 0.26 s for a 12-megapixel photo), and every other case (alpha, palettes, 16 bits,
    rotated by EXIF, other formats) takes :func:`load_image`'s path, so the pixels are the same
    whichever decoder ran.
    """
    path = Path(path)
    data = _read_file(path)
    header = _open(data, path.name)
    width, height = header.size
    if size_hint is not None and header.format == "JPEG" and min(width, height) >= 4 * size_hint:
        header.draft("RGB", (size_hint, size_hint))  # DCT scaling keeps at least size_hint on each side
        return to_pixels(_load(header, path.name), size_hint)
    if _plain(header) and (decode := _torchvision_decoder()) is not None:
        try:
            pixels = decode(torch.frombuffer(bytearray(data), dtype=torch.uint8))
            if pixels.dtype == torch.uint8:  # a 16-bit PNG comes back as uint16: PIL's 8 bits instead
                return pixels
        except RuntimeError:
            pass  # let PIL say what is wrong with it
    return to_pixels(_decode(data, path.name), size_hint)


@cache
def _torchvision_decoder():
    """``torchvision.io.decode_image`` to RGB, or None where it is gone (deprecated since
    torchvision 0.29 in favour of TorchCodec): PIL then decodes everything, to the same pixels."""
    try:
        from torchvision.io import ImageReadMode, decode_image
    except ImportError:
        return None
    return lambda data: decode_image(data, mode=ImageReadMode.RGB)


@cache
def image_suffixes() -> frozenset[str]:
    """File name endings PIL can open (``.png``, ``.jpg``, ``.webp``, ``.tif``, …), lower case."""
    Image.init()
    return frozenset(suffix.lower() for suffix in Image.registered_extensions())


def _read_file(path: Path) -> bytes:
    if not path.is_file():
        raise ImageError(f"no such image file: {path.name}")
    size = path.stat().st_size
    if size == 0:
        raise ImageError(f"{path.name} is empty (0 bytes)")
    if size > MAX_FILE_BYTES:
        raise ImageError(f"{path.name} is {size / 2**20:.0f} MB; the limit is {MAX_FILE_BYTES >> 20} MB")
    with open(path, "rb") as handle:
        return handle.read(MAX_FILE_BYTES + 1)


def _plain(header: Image.Image) -> bool:
    """Whether ``torchvision.io``'s RGB decoding gives exactly what :func:`_to_rgb` would."""
    if header.format not in ("PNG", "JPEG") or header.mode not in ("RGB", "L"):
        return False
    if "transparency" in header.info or getattr(header, "n_frames", 1) > 1:
        return False
    return "exif" not in header.info or header.getexif().get(_ORIENTATION, 1) == 1


def _open(data: bytes, name: str) -> Image.Image:
    """PIL's lazy open (the header only) with the size checks; bombs are refused here."""
    if not data:
        raise ImageError(f"{name} is empty (0 bytes)")
    if len(data) > MAX_FILE_BYTES:
        raise ImageError(f"{name} is {len(data) / 2**20:.0f} MB; the limit is {MAX_FILE_BYTES >> 20} MB")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            picture = Image.open(io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageError(f"{name} is too large to decode safely ({error}); the limit is {MAX_PIXELS / 1e6:.0f} megapixels") from None
    except UnidentifiedImageError:
        raise ImageError(f"{name} is not an image this app can read (use PNG, JPEG, GIF, WebP, BMP or TIFF)") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageError(f"{name} is damaged or truncated and cannot be decoded ({error})") from None
    _check_size(picture.size, name)
    return picture


def _load(picture: Image.Image, name: str) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            picture = _first_frame(picture)
            picture.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageError(f"{name} is too large to decode safely ({error}); the limit is {MAX_PIXELS / 1e6:.0f} megapixels") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageError(f"{name} is damaged or truncated and cannot be decoded ({error})") from None
    return _to_rgb(picture)


def _decode(data: bytes, name: str) -> Image.Image:
    return _load(_open(data, name), name)


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
