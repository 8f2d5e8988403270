"""Decoding only a crop (the C module ``_jpegcrop``): the same pixels as a whole decode."""

from __future__ import annotations

import os

import numpy as np
import pytest
import simplejpeg
from PIL import Image
from tests.helpers import encode

from imagenet_prep.loaders.cropdecode import available, make_crop_decoder
from imagenet_prep.loaders.decode import make_decoder
from imagenet_prep.loaders.rng import CropRandom
from imagenet_prep.loaders.transforms import make_transform

# The package builds the module wherever libjpeg-turbo's headers are (as on this project's
# machines); only without them may it be missing, and then these tests have nothing to test.
HEADERS = any(
    os.path.exists(os.path.join(d, "jpeglib.h")) for d in ("/usr/include", "/usr/local/include")
)
pytestmark = pytest.mark.skipif(
    not HEADERS and not available(), reason="built without libjpeg-turbo's headers"
)


def test_the_module_is_built_where_the_headers_are() -> None:
    assert available()


def _photo(height: int, width: int, seed: int = 0) -> Image.Image:
    """Smooth gradients with noise: chroma that fancy upsampling actually interpolates."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 // max(width - 1, 1), y * 255 // max(height - 1, 1), (x + y) % 256])
    noisy = base.transpose(1, 2, 0) + rng.integers(-40, 40, (height, width, 3))
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8), "RGB")


def _jpeg(image: Image.Image, **options: object) -> bytes:
    return encode(image, "JPEG", **options)


KINDS = {
    "4:2:0": {"quality": 90, "subsampling": 2},
    "4:2:2": {"quality": 90, "subsampling": 1},
    "4:4:4": {"quality": 90, "subsampling": 0},
    "progressive": {"quality": 85, "progressive": True},
    "restart markers": {"quality": 90, "restart_marker_blocks": 3},
}


@pytest.mark.parametrize("kind", list(KINDS))
def test_crops_have_the_pixels_of_a_whole_decode(kind: str) -> None:
    from imagenet_prep.loaders import _jpegcrop

    for height, width in ((97, 131), (64, 48), (333, 500)):
        data = _jpeg(_photo(height, width), **KINDS[kind])
        whole = simplejpeg.decode_jpeg(data, colorspace="RGB")
        assert _jpegcrop.size(data) == (height, width)
        rng = np.random.default_rng(height)
        crops = [(0, 0, height, width), (height - 1, width - 1, 1, 1), (0, width - 5, height, 5)]
        for _ in range(40):
            h, w = int(rng.integers(1, height + 1)), int(rng.integers(1, width + 1))
            crops.append(
                (int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w)
            )
        for top, left, h, w in crops:
            pixels, x, cw = _jpegcrop.decode(data, top, left, h, w)
            assert x <= left and x + cw >= left + w
            region = np.frombuffer(pixels, np.uint8).reshape(h, cw, 3)[:, left - x : left - x + w]
            assert np.array_equal(region, whole[top : top + h, left : left + w]), (top, left, h, w)


def test_grayscale_comes_out_as_rgb() -> None:
    from imagenet_prep.loaders import _jpegcrop

    data = _jpeg(_photo(40, 56).convert("L"), quality=90)
    whole = simplejpeg.decode_jpeg(data, colorspace="RGB")
    pixels, x, w = _jpegcrop.decode(data, 5, 9, 20, 30)
    region = np.frombuffer(pixels, np.uint8).reshape(20, w, 3)[:, 9 - x : 9 - x + 30]
    assert np.array_equal(region, whole[5:25, 9:39])


def test_what_libjpeg_cannot_decode_raises_value_error() -> None:
    from imagenet_prep.loaders import _jpegcrop

    data = _jpeg(_photo(64, 64), quality=90)
    cmyk = _jpeg(_photo(64, 64).convert("CMYK"))
    for bad, args in (
        (b"\xff\xd8 no JPEG", (0, 0, 1, 1)),
        (data[: len(data) // 2], (0, 0, 64, 64)),  # truncated: libjpeg warns, we refuse
        (cmyk, (0, 0, 8, 8)),  # no CMYK to RGB in libjpeg
        (data, (60, 0, 8, 8)),  # outside the image
        (data, (0, 0, 0, 8)),
    ):
        with pytest.raises(ValueError):
            _jpegcrop.decode(bad, *args)
    with pytest.raises(ValueError):
        _jpegcrop.size(b"\xff\xd8 no JPEG")


@pytest.mark.parametrize("name", ["train", "train-inception", "eval"])
def test_the_crop_decoder_matches_decode_then_transform(name: str) -> None:
    """Every kind of image, including those it hands to the whole-image decoder."""
    photo = _photo(120, 160, seed=3)
    images = {
        "jpeg": _jpeg(photo, quality=90),
        "gray": _jpeg(photo.convert("L")),
        "cmyk": _jpeg(photo.convert("CMYK")),
        "png": encode(photo, "PNG"),
        "progressive": _jpeg(photo, progressive=True),
    }
    transform = make_transform(name, 32)
    decode = make_decoder("simplejpeg")
    crop_decode = make_crop_decoder(transform, decode)
    assert transform is not None and crop_decode is not None
    boxes = [(0.1, 0.2, 0.6, 0.9)]
    for kind, data in images.items():
        for i in range(10):
            expected = transform(decode(data), boxes, CropRandom(f"crop/0/0/{i}"))
            out = np.empty((32, 32, 3), np.uint8)
            got = crop_decode(data, boxes, CropRandom(f"crop/0/0/{i}"), out)
            assert got is out and np.array_equal(got, expected), (kind, i)
    assert make_crop_decoder(None, decode) is None
