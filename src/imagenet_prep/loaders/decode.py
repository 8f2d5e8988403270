"""Image bytes to a uint8 HxWx3 RGB array, with the fastest decoder installed.

Measured per core on ImageNet-sized JPEGs (bench/loaders.py): simplejpeg (libjpeg-turbo)
~1.2 ms, OpenCV ~1.4 ms (it decodes to BGR, so a colour swap follows), Pillow ~1.8 ms.
``"auto"`` takes simplejpeg, then OpenCV, then Pillow; whatever the choice, bytes that are
no JPEG or that the fast decoder refuses (the PNGs an ImageFolder build keeps) go through
Pillow. EXIF orientation is never applied, so the pixel grid matches the records'
width and height; grayscale and CMYK come out as RGB. With a transform and ``"auto"``, the
iterator first decodes only the crop (cropdecode.py) and calls these for what that cannot.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import DataError

DECODERS = ("auto", "simplejpeg", "cv2", "pillow")

# Bytes, or a memoryview into a record (the TFRecord reader hands out the image uncopied).
ImageBytes = bytes | memoryview
Decoder = Callable[[ImageBytes], np.ndarray]


def _pillow(data: ImageBytes) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            return np.array(image.convert("RGB"))  # writable, as the other decoders' arrays
    except (OSError, ValueError, SyntaxError) as exc:
        raise DataError(f"cannot decode image ({exc})") from None


def _simplejpeg(module: Any) -> Decoder:
    decode_jpeg = module.decode_jpeg

    def decode(data: ImageBytes) -> np.ndarray:
        if data[:2] == b"\xff\xd8":
            try:
                image: np.ndarray = decode_jpeg(data, colorspace="RGB")
                return image
            except ValueError:
                pass
        return _pillow(data)

    return decode


def _cv2(module: Any) -> Decoder:
    flags = module.IMREAD_COLOR | module.IMREAD_IGNORE_ORIENTATION
    imdecode, cvt, bgr2rgb = module.imdecode, module.cvtColor, module.COLOR_BGR2RGB

    def decode(data: ImageBytes) -> np.ndarray:
        if data[:2] == b"\xff\xd8":
            image = imdecode(np.frombuffer(data, np.uint8), flags)
            if image is not None:
                rgb: np.ndarray = cvt(image, bgr2rgb)
                return rgb
        return _pillow(data)

    return decode


def make_decoder(name: str = "auto") -> Decoder:
    """The decode function called ``name``; ``"auto"`` picks the fastest one installed.

    >>> make_decoder("pillow").__name__
    '_pillow'
    """
    if name not in DECODERS:
        raise ValueError(f"decoder must be one of {', '.join(DECODERS)}, not {name!r}")
    if name in ("auto", "simplejpeg"):
        try:
            import simplejpeg
        except ImportError:
            if name == "simplejpeg":
                raise ImportError("the simplejpeg decoder needs: pip install simplejpeg") from None
        else:
            return _simplejpeg(simplejpeg)
    if name in ("auto", "cv2"):
        try:
            import cv2
        except ImportError:
            if name == "cv2":
                raise ImportError(
                    "the cv2 decoder needs: pip install opencv-python-headless"
                ) from None
        else:
            return _cv2(cv2)
    return _pillow
