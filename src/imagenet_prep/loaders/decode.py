"""Image bytes to a uint8 HxWx3 RGB array, with the fastest decoder installed.

Measured per core on ImageNet-sized JPEGs (bench/loaders.py): simplejpeg (libjpeg-turbo)
~1.2 ms, OpenCV ~1.4 ms (it decodes to BGR, so a colour swap follows), Pillow ~1.8 ms.
``"auto"`` takes simplejpeg, then OpenCV, then Pillow; whatever the choice, bytes that are
no JPEG or that the fast decoder refuses (the PNGs an ImageFolder build keeps) go through
Pillow. EXIF orientation is never applied, so the pixel grid matches the records'
width and height; grayscale and CMYK come out as RGB. With a transform and ``"auto"``, the
iterator first decodes only the crop (cropdecode.py) and calls these for what that cannot.

A JPEG simplejpeg refuses for a harmless complaint of libjpeg (stray bytes before a marker:
``imagefix.jpeg_damage``) is still decoded by libjpeg-turbo, to the pixels of an intact
stream; a damaged one is left to Pillow, which decodes what it can. The iterator checks
the size a header declares (:func:`check_size`) before any of these allocate.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import DataError
from ..imagefix import JPEG_SOI, PNG_SIGNATURE, inspect, jpeg_damage, pixel_limit
from ..imagefix import decode_jpeg as _decode_jpeg_checked

DECODERS = ("auto", "simplejpeg", "cv2", "pillow")

# Bytes, or a memoryview into a record (the TFRecord reader hands out the image uncopied).
ImageBytes = bytes | memoryview
Decoder = Callable[[ImageBytes], np.ndarray]


# Enough bytes to hold a JPEG's frame header after its usual metadata, or a PNG's IHDR.
_HEAD = 4096


def check_size(data: ImageBytes, max_pixels: int) -> None:
    """DataError when a JPEG or PNG header declares more than ``max_pixels`` pixels.

    Reads the header only (the JPEG frame header, the PNG IHDR). Other bytes pass: Pillow
    refuses more than twice its own limit when it opens them. An unreadable header passes
    too, for the decoder to refuse in its own words.
    """
    if data[:2] != JPEG_SOI and data[:8] != PNG_SIGNATURE:
        return
    try:
        info = inspect(bytes(data[:_HEAD]), "")
    except DataError:
        try:
            info = inspect(bytes(data), "")  # a frame header after a large EXIF segment
        except DataError:
            return
    reason = pixel_limit(info.width, info.height, max_pixels)
    if reason is not None:
        raise DataError(f"{reason} (max_pixels); refused before decoding")


def _pillow(data: ImageBytes) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            return np.array(image.convert("RGB"))  # writable, as the other decoders' arrays
    except UnidentifiedImageError:
        start = bytes(data[:16])
        raise DataError(f"not an image Pillow can read (starts with {start!r})") from None
    except Image.DecompressionBombError as exc:
        raise DataError(f"refused before decoding ({exc})") from None
    except Exception as exc:  # Pillow raises many types for damaged data
        raise DataError(f"cannot decode image ({exc})") from None


def _simplejpeg(module: Any) -> Decoder:
    decode_jpeg = module.decode_jpeg

    def decode(data: ImageBytes) -> np.ndarray:
        if data[:2] == b"\xff\xd8":
            try:
                image: np.ndarray = decode_jpeg(data, colorspace="RGB")
                return image
            except ValueError as exc:
                if not jpeg_damage(str(exc)):
                    try:
                        return _decode_jpeg_checked(data, "")
                    except DataError:
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
