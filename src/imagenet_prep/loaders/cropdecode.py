"""Decode only the crop a transform keeps, then resize it: the loaders' fast path for JPEGs.

A training crop keeps about half of an image. libjpeg-turbo can skip the rows above it
without the IDCT and colour conversion, work only on the columns that hold it and stop after
its last row (``_jpegcrop``, a small C module built with the package when libjpeg-turbo's
headers are there): a RandomResizedCrop then costs about 3/4 of a whole decode
(bench/loaders.py). The crop is placed from the JPEG header's size with the same draws as
on a decoded image, and its pixels equal a whole decode's, so the result is the same as
decoding the whole image and cutting the crop out of it.

Anything that is not a JPEG libjpeg can turn into RGB (the PNGs an ImageFolder build keeps,
CMYK, a damaged stream) goes through the whole-image decoder, with the same crop. So does a
JPEG libjpeg warns about at all: the C module does not judge warnings; the whole-image
decoder applies the one rule (``imagefix.jpeg_damage``), and a harmless complaint (stray
bytes before a marker) still gets libjpeg-turbo's pixels of the intact stream.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from types import ModuleType

import numpy as np

from .decode import Decoder, ImageBytes
from .rng import Rng
from .transforms import Box, Crop, CropResize, Transform, crop_resize

CropDecode = Callable[[ImageBytes, Sequence[Box], Rng, "np.ndarray | None"], np.ndarray]


def _module() -> ModuleType | None:
    try:
        from . import _jpegcrop
    except ImportError:  # built without libjpeg-turbo's headers
        return None
    return _jpegcrop


def available() -> bool:
    """Whether the C module that decodes a crop was built."""
    return _module() is not None


def make_crop_decoder(transform: Transform | None, decode: Decoder) -> CropDecode | None:
    """A function ``(data, boxes, rng, out) -> image`` that decodes only ``transform``'s
    crop, ``decode`` serving what libjpeg cannot; None without a transform or the module."""
    module = _module()
    if module is None or not isinstance(transform, CropResize):
        return None
    size_of, decode_crop = module.size, module.decode
    place, side = transform.place, transform.size

    def crop_decode(
        data: ImageBytes, boxes: Sequence[Box], rng: Rng, out: np.ndarray | None = None
    ) -> np.ndarray:
        try:
            height, width = size_of(data)
        except ValueError:  # no JPEG (a PNG an ImageFolder build keeps), or no readable header
            return transform(decode(data), boxes, rng, out)
        crop, flip = place(height, width, boxes, rng)
        try:
            pixels, x, w = decode_crop(data, crop.top, crop.left, crop.height, crop.width)
        except ValueError:  # CMYK, a damaged stream: the whole image, the same crop
            image = decode(data)
            if image.shape[:2] != (height, width):
                return transform(image, boxes, rng, out)
            return crop_resize(image, crop, side, flip, out)
        region = np.frombuffer(pixels, np.uint8).reshape(crop.height, w, 3)
        return crop_resize(region, Crop(0, crop.left - x, crop.height, crop.width), side, flip, out)

    return crop_decode
