"""A table of hostile and odd uploads, written to a folder, with what the app must answer.

Each case is ``(file name, bytes, expected)`` where ``expected`` is ``"ok"`` (converted and
classified) or a fragment of the clear error message. Used by ``tests/test_app.py`` and
``python -m bench.reliability``.
"""

from __future__ import annotations

import io
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

__all__ = ["Case", "image_cases", "checkpoint_cases", "write"]


@dataclass(frozen=True)
class Case:
    name: str
    data: bytes
    expected: str  # "ok" or a fragment of the error message
    what: str


def _encode(image: Image.Image, fmt: str, **kw) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kw)
    return buffer.getvalue()


def _photo(size=(96, 64)) -> Image.Image:
    rng = np.random.default_rng(0)
    gradient = np.linspace(0, 255, size[0] * size[1] * 3).reshape(size[1], size[0], 3)
    return Image.fromarray(np.clip(gradient + rng.normal(0, 30, gradient.shape), 0, 255).astype(np.uint8))


def image_cases() -> list[Case]:
    photo = _photo()
    exif = Image.Exif()
    exif[0x0112] = 6
    frames = [Image.new("RGB", (32, 32), c) for c in ((255, 0, 0), (0, 0, 255))]
    gif = io.BytesIO()
    frames[0].save(gif, format="GIF", save_all=True, append_images=frames[1:], loop=0)
    jpeg = _encode(_photo((256, 256)), "JPEG")
    palette = photo.convert("P", palette=Image.Palette.ADAPTIVE)
    palette.info["transparency"] = 0
    return [
        Case("notes.png", b"these are my lecture notes, not a picture\n" * 20, "not an image", "text file with an image extension"),
        Case("empty.jpg", b"", "empty", "zero bytes"),
        Case("dot.png", _encode(Image.new("RGB", (1, 1), (9, 9, 9)), "PNG"), "at least 8×8", "1×1 image"),
        Case("bomb.png", _encode(Image.new("1", (20000, 20000)), "PNG"), "too large", "decompression bomb, 20,000×20,000"),
        Case("truncated.jpg", jpeg[: len(jpeg) // 2], "damaged or truncated", "JPEG cut in half"),
        Case("page.html.jpg", b"<html><script>alert(1)</script></html>", "not an image", "HTML with an image extension"),
        Case("vector.svg", b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>', "not an image", "SVG"),
        Case("rgba.png", _encode(photo.convert("RGBA"), "PNG"), "ok", "RGBA"),
        Case("cmyk.jpg", _encode(photo.convert("CMYK"), "JPEG"), "ok", "CMYK JPEG"),
        Case("deep.png", _encode(Image.fromarray(np.asarray(photo.convert("L"), np.uint16) * 257), "PNG"), "ok", "16-bit grayscale"),
        Case("gray.png", _encode(photo.convert("L"), "PNG"), "ok", "grayscale"),
        Case("palette.png", _encode(palette, "PNG"), "ok", "palette with transparency"),
        Case("rotated.jpg", _encode(photo, "JPEG", exif=exif), "ok", "EXIF orientation 6"),
        Case("animated.gif", gif.getvalue(), "ok", "animated GIF"),
        Case("..%2F..%2Fetc%2Fpasswd.png", _encode(photo, "PNG"), "ok", "file name with encoded path separators"),
        Case("tiny-but-ok.png", _encode(Image.new("RGB", (8, 8), (200, 10, 10)), "PNG"), "ok", "8×8, the smallest accepted"),
    ]


def checkpoint_cases(good: bytes) -> list[Case]:
    """Uploads for the checkpoint picker; ``good`` is a valid checkpoint's bytes."""
    resnet = io.BytesIO()
    torch.save({"layer1.0.conv1.weight": torch.zeros(4, 4, 3, 3), "fc.weight": torch.zeros(10, 4)}, resnet)
    return [
        Case("weights.safetensors", pickle.dumps({"fc.weight": [1.0, 2.0]}), "not loaded", "a plain pickle renamed .safetensors"),
        Case("code.pth", pickle.dumps(_RunsCode()), "could run code", "a pickle that would call a function"),
        Case("model.safetensors", b"PK\x03\x04" + b"\x00" * 200, "damaged or truncated PyTorch", "a broken torch.save zip"),
        Case("cut.safetensors", good[: len(good) // 3], "truncated", "half a checkpoint"),
        Case("resnet.pth", resnet.getvalue(), "looks like a ResNet", "another network's state dict"),
        Case("empty.safetensors", b"", "empty", "zero bytes"),
    ]


class _RunsCode:
    """Unpickling this would call ``print``: a stand-in for code a hostile file would run."""

    def __reduce__(self):
        return (print, ("a hostile pickle ran code",))


def write(cases: list[Case], folder: Path) -> list[tuple[Case, Path]]:
    """Write each case to ``folder`` (names made safe for the file system) and return the paths."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for i, case in enumerate(cases):
        path = folder / f"{i:02d}-{case.name.replace('/', '_')}"
        path.write_bytes(case.data)
        written.append((case, path))
    return written
