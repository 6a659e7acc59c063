import io

import numpy as np
import pytest
import torch
from PIL import Image

from explain.images import ImageError, load_image, prepare
from googlenet.preprocess import Preprocess


def png(image: Image.Image, **kw) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=kw.pop("format", "PNG"), **kw)
    return buffer.getvalue()


def test_modes_are_converted_to_rgb():
    for mode in ("L", "LA", "P", "RGBA", "CMYK", "I;16", "I", "F", "1"):
        image = Image.new(mode, (40, 30))
        data = png(image, format="TIFF") if mode in ("CMYK", "F", "I") else png(image)
        assert load_image(data).mode == "RGB", mode


def test_rgba_is_composited_on_white():
    image = Image.new("RGBA", (20, 20), (255, 0, 0, 0))
    assert load_image(png(image)).getpixel((5, 5)) == (255, 255, 255)


def test_16_bit_is_scaled_not_clipped():
    array = np.full((20, 20), 65535 // 2, dtype=np.uint16)
    picture = load_image(png(Image.fromarray(array)))
    assert 120 <= picture.getpixel((0, 0))[0] <= 135


def test_exif_orientation_is_respected():
    image = Image.new("RGB", (60, 20), (0, 0, 255))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    picture = load_image(png(image, format="JPEG", exif=exif))
    assert picture.size == (20, 60)


def test_animated_gif_uses_the_first_frame():
    frames = [Image.new("RGB", (16, 16), c) for c in ((255, 0, 0), (0, 255, 0))]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:])
    r, g, b = load_image(buffer.getvalue()).getpixel((4, 4))
    assert r > 200 and g < 50


@pytest.mark.parametrize(
    "data,message",
    [
        (b"", "empty"),
        (b"%PDF-1.4 not an image at all", "not an image"),
        (png(Image.new("RGB", (1, 1))), "at least 8×8"),
    ],
)
def test_bad_bytes_get_a_clear_message(data, message):
    with pytest.raises(ImageError, match=message):
        load_image(data)


def test_truncated_jpeg():
    data = png(Image.effect_noise((256, 256), 60).convert("RGB"), format="JPEG")
    with pytest.raises(ImageError, match="damaged or truncated"):
        load_image(data[: len(data) // 2])


def test_decompression_bomb_is_refused_before_decoding():
    # 20,000 × 20,000 pixels, a few hundred KB of PNG
    image = Image.new("1", (20000, 20000))
    data = png(image)
    assert len(data) < 2_000_000
    with pytest.raises(ImageError, match="too large|megapixels"):
        load_image(data)
    # just over our 40-megapixel limit, under PIL's own bomb threshold
    with pytest.raises(ImageError, match="limit is 40 megapixels"):
        load_image(png(Image.new("1", (8000, 6000))))


def test_arrays_and_tensors():
    assert load_image(np.zeros((32, 48, 3), np.uint8)).size == (48, 32)
    assert load_image(np.random.rand(32, 32)).mode == "RGB"  # floats in [0, 1]
    assert load_image(torch.rand(3, 32, 40)).size == (40, 32)
    with pytest.raises(ImageError, match="NaN"):
        load_image(np.full((16, 16, 3), np.nan))
    with pytest.raises(ImageError, match="H×W"):
        load_image(np.zeros((4, 16, 16, 3)))
    with pytest.raises(ImageError, match="cannot read an image"):
        load_image(3.5)


def test_prepare_resizes_the_shorter_side_and_centre_crops():
    x, shown = prepare(np.zeros((300, 500, 3), np.uint8), Preprocess(224, 256, (0.5,) * 3, (0.5,) * 3), torch.device("cpu"))
    assert x.shape == (1, 3, 224, 224) and shown.shape == (224, 224, 3)
    assert torch.allclose(x, torch.full_like(x, -1.0))
    x, shown = prepare(np.zeros((1000, 50, 3), np.uint8), Preprocess(32, 32, (0.5,) * 3, (0.5,) * 3), torch.device("cpu"))
    assert shown.shape == (32, 32, 3)
