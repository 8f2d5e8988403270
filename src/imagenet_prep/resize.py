"""Resized copies at write time: short side to N, or long side capped at N, never larger.

The fastest correct path bench/resize found (its figures are in docs/BENCHMARKS.md): decode
with libjpeg-turbo through simplejpeg (``imagefix.decode_jpeg``, which also judges damage),
using its DCT scaling only by powers of two and only while the result stays at least the
target size (finer DCT factors cost quality), resize with OpenCV's area filter
(antialiased), encode with simplejpeg at 4:2:0.

Orientation is kept, not applied: the pixels stay the stored grid, scaled, and a resized
copy carries the EXIF Orientation of its input (in a minimal APP1 segment, the only metadata
it has), so readers that turn images upright (DALI, Pillow's ``exif_transpose``) show it as
they show the full-size image.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import DataError, UsageError
from .imagefix import decode_jpeg, exif_orientation, with_exif_orientation


@dataclass(frozen=True)
class ResizeSpec:
    """``shorter``: the short side becomes N; ``longer``: the long side is capped at N."""

    shorter: int | None = None
    longer: int | None = None
    quality: int = 90

    def __post_init__(self) -> None:
        if (self.shorter is None) == (self.longer is None):
            raise UsageError("give exactly one of resize-shorter and resize-longer")
        size = self.shorter if self.shorter is not None else self.longer
        if size is None or size < 1:
            raise UsageError(f"resize size must be at least 1, not {size}")
        if not 1 <= self.quality <= 100:
            raise UsageError(f"quality must be between 1 and 100, not {self.quality}")

    def target(self, width: int, height: int) -> tuple[int, int] | None:
        """The new (width, height), or None when the image is already within the size.

        >>> ResizeSpec(shorter=256).target(500, 375)
        (341, 256)
        >>> ResizeSpec(longer=512).target(375, 500) is None
        True
        >>> ResizeSpec(longer=100).target(2000, 1500)
        (100, 75)
        >>> ResizeSpec(shorter=256).target(200, 150) is None
        True
        """
        if self.shorter is not None:
            scale = self.shorter / min(width, height)
        else:
            scale = (self.longer or 0) / max(width, height)
        if scale >= 1.0:
            return None
        return max(1, round(width * scale)), max(1, round(height * scale))


def _dct_factor(width: int, height: int, target: tuple[int, int]) -> int:
    """The largest power-of-two DCT downscale (1..8) that keeps both sides >= the target.

    >>> _dct_factor(2000, 1500, (100, 75)), _dct_factor(500, 375, (341, 256))
    (8, 1)
    """
    factor = 1
    while factor < 8 and width // (factor * 2) >= target[0] and height // (factor * 2) >= target[1]:
        factor *= 2
    return factor


def resize_jpeg(
    data: bytes, width: int, height: int, spec: ResizeSpec, name: str
) -> tuple[bytes, int, int] | None:
    """Resize a JPEG of the given stored size; None when it is already within ``spec``.

    The decode judges libjpeg's complaints as ``--decode-check`` does
    (:func:`imagefix.decode_jpeg`): a damaged JPEG is a DataError, stray bytes are not.
    The output carries the input's EXIF Orientation, if it has one, and no other metadata.
    """
    target = spec.target(width, height)
    if target is None:
        return None
    import cv2
    import simplejpeg

    factor = _dct_factor(width, height, target)
    try:
        if factor > 1:
            pixels = decode_jpeg(
                data, name, min_height=-(-height // factor), min_width=-(-width // factor)
            )
        else:
            pixels = decode_jpeg(data, name)
    except RuntimeError as exc:
        raise DataError(f"{name}: cannot decode for resizing ({exc})") from None
    small = cv2.resize(pixels, target, interpolation=cv2.INTER_AREA)
    encoded = simplejpeg.encode_jpeg(
        small, quality=spec.quality, colorspace="RGB", colorsubsampling="420"
    )
    orientation = exif_orientation(data)
    out = bytes(encoded) if orientation is None else with_exif_orientation(encoded, orientation)
    return out, target[0], target[1]
