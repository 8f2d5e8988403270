"""Looking at image bytes: format, size and colour space from headers; integrity; re-encoding.

Every decision is made from the bytes, never from the file name: ImageNet has CMYK JPEGs
and a PNG named ``.JPEG``, and any other download may have more. 8-bit grayscale and
YCbCr/RGB JPEGs pass through byte for byte; everything else is decoded with Pillow and
re-encoded as a baseline RGB JPEG, as the reference scripts' ``build_imagenet_data.py`` did for its
hard-coded list of names. EXIF orientation is never applied: sizes are the stored grid
(:func:`exif_orientation` reads the tag, for resized copies to carry it).

Size is checked before pixels: an image whose header declares more than ``max_pixels``
is refused unread (a 333-byte JPEG may claim 60000x60000), and one that would take more
than :data:`REENCODE_BUDGET` to re-encode whole goes in strips (8-bit PNGs) or is refused.
libjpeg's complaints are sorted by one rule, :func:`jpeg_damage`, wherever a JPEG is decoded.
"""

from __future__ import annotations

import io
import re
import warnings
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from struct import Struct, pack, unpack_from
from typing import TYPE_CHECKING

from .errors import DataError

if TYPE_CHECKING:  # Pillow is imported where an image is decoded: rarely, on the hot path
    import numpy as np
    from PIL import Image

__all__ = [
    "KNOWN_CMYK_TRAIN",
    "KNOWN_PNG_TRAIN",
    "MAX_PIXELS",
    "OTHER_FORMATS",
    "REENCODE_BUDGET",
    "FixedImage",
    "ImageInfo",
    "check",
    "decode_check",
    "decode_jpeg",
    "examine",
    "exif_orientation",
    "exif_orientation_segment",
    "fix",
    "inspect",
    "jpeg_damage",
    "pixel_limit",
    "reencode_reason",
    "with_exif_orientation",
]

JPEG_SOI = b"\xff\xd8"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

#: Formats besides JPEG and PNG that are recognised (through Pillow) and re-encoded.
#: Formats with weak signatures (TGA, ...) are left out so garbage is not taken for an image.
OTHER_FORMATS = ("GIF", "BMP", "TIFF", "WEBP", "PPM")
_PIL_FORMATS = ("JPEG", "PNG", *OTHER_FORMATS)

#: The default refusal size (``--max-pixels``): Pillow's own ``Image.MAX_IMAGE_PIXELS``.
MAX_PIXELS = 89_478_485
#: Memory one image may take to be decoded and re-encoded in one piece (Pillow keeps RGB and
#: RGBA in 4 bytes a pixel, and converting makes a second image). Beyond it an 8-bit PNG is
#: re-encoded in strips of rows; anything else is refused. Workers stay within 500 MB.
REENCODE_BUDGET = 256 * 2**20
# Pillow image bytes a strip may hold (rounded to whole JPEG restart intervals).
_STRIP_BYTES = 16 * 2**20

#: Training images the reference scripts re-encoded by name as CMYK JPEGs. For tests and
#: reports only: nothing in this module looks at names.
KNOWN_CMYK_TRAIN = frozenset(
    {
        "n01739381_1309.JPEG",
        "n02077923_14822.JPEG",
        "n02447366_23489.JPEG",
        "n02492035_15739.JPEG",
        "n02747177_10752.JPEG",
        "n03018349_4028.JPEG",
        "n03062245_4620.JPEG",
        "n03347037_9675.JPEG",
        "n03467068_12171.JPEG",
        "n03529860_11437.JPEG",
        "n03544143_17228.JPEG",
        "n03633091_5218.JPEG",
        "n03710637_5125.JPEG",
        "n03961711_5286.JPEG",
        "n04033995_2932.JPEG",
        "n04258138_17003.JPEG",
        "n04264628_27969.JPEG",
        "n04336792_7448.JPEG",
        "n04371774_5854.JPEG",
        "n04596742_4225.JPEG",
        "n07583066_647.JPEG",
        "n13037406_4650.JPEG",
    }
)
#: The training image the reference scripts re-encoded by name as a PNG. For tests and reports only.
KNOWN_PNG_TRAIN = frozenset({"n02105855_2933.JPEG"})

# Start-of-frame markers (all coding processes); 0xC4 (DHT), 0xC8 (JPG) and 0xCC (DAC) are not.
_SOF_MARKERS = frozenset(
    (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF)
)
_PROGRESSIVE_SOF = frozenset((0xC2, 0xC6, 0xCA, 0xCE))
# Frame types every decoder handles (Huffman baseline, extended, progressive) by name of the rest.
_PASS_SOF = frozenset((0xC0, 0xC1, 0xC2))
_SOF_PROCESS = {0xC3: "lossless", 0xC5: "hierarchical", 0xC6: "hierarchical", 0xC7: "hierarchical"}
_SOF_PROCESS.update(dict.fromkeys((0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF), "arithmetic"))
_U16 = Struct(">H").unpack_from
_SOF_FIELDS = Struct(">BHHB").unpack_from
_Frame = tuple[int, int, int, int, int, bytes]  # marker, precision, height, width, ncomp, ids
_SOS = 0xDA
_EOI = 0xD9
_APP0 = 0xE0
_APP1 = 0xE1
_APP14 = 0xEE
# The next marker in entropy-coded data: 0xFF not followed by stuffing (00), RSTn or fill (FF).
_SCAN_END = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")

_PNG_COLOUR = {
    0: ("gray", 1),
    2: ("rgb", 3),
    3: ("palette", 1),
    4: ("gray-alpha", 2),
    6: ("rgba", 4),
}
_MODE_COLOURSPACE = {
    "1": "bilevel",
    "L": "gray",
    "LA": "gray-alpha",
    "P": "palette",
    "PA": "palette-alpha",
    "RGB": "rgb",
    "RGBA": "rgba",
    "CMYK": "cmyk",
    "YCbCr": "ycbcr",
    "I": "gray",
    "I;16": "gray",
    "I;16B": "gray",
    "I;16L": "gray",
    "F": "gray",
}
_MODE_PRECISION = {"1": 1, "I": 32, "F": 32, "I;16": 16, "I;16B": 16, "I;16L": 16}


@dataclass(frozen=True, slots=True)
class ImageInfo:
    """What an image header says. ``width``/``height`` are the stored grid (no EXIF rotation).

    ``sof`` is the JPEG start-of-frame marker (0xC0 baseline, 0xC2 progressive, ...),
    None for other formats. ``components`` and ``precision`` (bits per sample) follow the
    header: PNG components by colour type (gray 1, gray-alpha 2, rgb 3, palette 1, rgba 4).
    """

    format: str
    width: int
    height: int
    components: int
    colorspace: str
    progressive: bool
    precision: int
    sof: int | None = None


@dataclass(frozen=True, slots=True)
class FixedImage:
    """An image as it is written: the original bytes, or a re-encoded JPEG and the reason."""

    data: bytes
    width: int
    height: int
    reencoded: str | None
    info: ImageInfo


def _not_an_image(data: bytes, name: str) -> DataError:
    if not data:
        return DataError(f"{name}: empty file (0 bytes), not an image")
    return DataError(f"{name}: not a JPEG, PNG or other known image (starts with {data[:16]!r})")


def pixel_limit(width: int, height: int, max_pixels: int) -> str | None:
    """Why a header's size is refused unread, or None when it is within ``max_pixels``.

    >>> pixel_limit(60000, 60000, MAX_PIXELS)
    '60000x60000 image (3,600,000,000 pixels) is over the limit of 89,478,485 pixels'
    >>> pixel_limit(500, 375, MAX_PIXELS) is None
    True
    """
    pixels = width * height
    if pixels <= max_pixels:
        return None
    return f"{width}x{height} image ({pixels:,} pixels) is over the limit of {max_pixels:,} pixels"


def _over_limit(info: ImageInfo, name: str, max_pixels: int) -> DataError:
    reason = pixel_limit(info.width, info.height, max_pixels)
    return DataError(f"{name}: {reason} (--max-pixels); refused before decoding")


# --- inspect ---------------------------------------------------------------------------------


def inspect(data: bytes, name: str) -> ImageInfo:
    """Read format, size and colour space from the header, without decoding pixels."""
    if data.startswith(JPEG_SOI):
        return _inspect_jpeg(data, name)
    if data.startswith(PNG_SIGNATURE):
        return _inspect_png(data, name)
    return _inspect_other(data, name)


def _inspect_jpeg(data: bytes, name: str) -> ImageInfo:
    """Walk marker segments to the first SOFn (on to SOS only when the colour space is open)."""
    n = len(data)
    pos = 2
    jfif = False
    adobe = -1  # the APP14 transform byte, -1 when there is no Adobe segment
    frame: _Frame | None = None
    while pos + 1 < n:
        if data[pos] != 0xFF:
            # Extraneous bytes between segments: decoders (libjpeg) skip to the next 0xFF.
            pos = data.find(b"\xff", pos)
            if pos < 0:
                break
            continue
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (_SOS, _EOI):
            break
        if 0xD0 <= marker <= 0xD8 or marker == 0x01:
            pos += 2
            continue
        if pos + 4 > n:
            break
        length = _U16(data, pos + 2)[0]
        end = pos + 2 + length
        if length < 2 or end > n:
            break
        if marker in (_APP0, _APP14):
            jfif, adobe = _colour_hints(data, marker, pos + 4, length, jfif, adobe)
        elif marker in _SOF_MARKERS and frame is None:
            if length < 8:
                raise DataError(f"{name}: JPEG frame header at offset {pos} is too short")
            precision, height, width, ncomp = _SOF_FIELDS(data, pos + 4)
            frame = (marker, precision, height, width, ncomp, data[pos + 10 : end : 3])
            if ncomp not in (3, 4) or adobe >= 0 or (jfif and ncomp == 3):
                break  # the colour space is settled; else look on to the first scan
        pos = end
    if frame is None:
        raise DataError(f"{name}: truncated or damaged JPEG: no frame header before the image data")
    _, _, height, width, _, _ = frame
    if width == 0 or height == 0:
        raise DataError(f"{name}: JPEG frame header gives an empty size {width}x{height}")
    return _frame_info(frame, jfif, adobe)


@lru_cache(maxsize=4096)
def _jpeg_info(
    width: int, height: int, ncomp: int, colorspace: str, precision: int, sof: int
) -> ImageInfo:
    """Shared instances for the few header combinations a data set has (frozen, so safe)."""
    return ImageInfo(
        format="jpeg",
        width=width,
        height=height,
        components=ncomp,
        colorspace=colorspace,
        progressive=sof in _PROGRESSIVE_SOF,
        precision=precision,
        sof=sof,
    )


def _jpeg_colorspace(ncomp: int, jfif: bool, adobe: int, ids: bytes) -> str:
    """The colour space libjpeg assumes (jdapimin.c ``default_decompress_parms``)."""
    if ncomp == 1:
        return "gray"
    if ncomp == 3:
        if jfif:
            return "ycbcr"
        if adobe >= 0:
            return "rgb" if adobe == 0 else "ycbcr"
        return "rgb" if ids == b"RGB" else "ycbcr"
    if ncomp == 4:
        return "cmyk" if adobe in (-1, 0) else "ycck"
    return "unknown"


def _inspect_png(data: bytes, name: str) -> ImageInfo:
    if len(data) < 33:
        raise DataError(f"{name}: truncated PNG: {len(data)} bytes, no complete IHDR chunk")
    length, ctype = unpack_from(">I4s", data, 8)
    if ctype != b"IHDR" or length != 13:
        raise DataError(f"{name}: PNG does not start with an IHDR chunk (found {ctype!r})")
    width, height, depth, colour, _, _, interlace = unpack_from(">IIBBBBB", data, 16)
    if colour not in _PNG_COLOUR:
        raise DataError(f"{name}: PNG IHDR has an invalid colour type {colour}")
    if width == 0 or height == 0:
        raise DataError(f"{name}: PNG IHDR gives an empty size {width}x{height}")
    colorspace, components = _PNG_COLOUR[colour]
    return ImageInfo(
        format="png",
        width=width,
        height=height,
        components=components,
        colorspace=colorspace,
        progressive=interlace == 1,
        precision=depth,
    )


def _open(data: bytes, name: str) -> Image.Image:
    """Open with Pillow (header only) among the supported formats."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            # Sizes are refused by max_pixels and REENCODE_BUDGET, in a line of our own;
            # Pillow's warning would only add raw text. (Process-wide: one thread decodes.)
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(data), formats=_PIL_FORMATS)
    except UnidentifiedImageError:
        raise _not_an_image(data, name) from None
    except Image.DecompressionBombError as exc:  # over twice Image.MAX_IMAGE_PIXELS
        size = [f"{int(n):,}" for n in re.findall(r"\d+", str(exc))]
        said = f"{size[0]} pixels, over the {size[1]}" if len(size) == 2 else "more than the pixels"
        raise DataError(
            f"{name}: image header declares {said} Pillow opens; refused before decoding"
        ) from None
    except Exception as exc:  # Pillow raises many types for a damaged header
        raise DataError(f"{name}: unreadable image header ({exc})") from None


def _inspect_other(data: bytes, name: str) -> ImageInfo:
    with _open(data, name) as im:
        return ImageInfo(
            format=(im.format or "unknown").lower(),
            width=im.width,
            height=im.height,
            components=len(im.getbands()),
            colorspace=_MODE_COLOURSPACE.get(im.mode, im.mode.lower()),
            progressive=bool(im.info.get("progressive") or im.info.get("interlace")),
            precision=_MODE_PRECISION.get(im.mode, 8),
        )


# --- EXIF orientation -----------------------------------------------------------------------

_EXIF = b"Exif\x00\x00"
_ORIENTATION = 0x0112
# TIFF byte order marks (with the magic 42) and the struct prefix they mean.
_TIFF_ORDER = {b"II*\x00": "<", b"MM\x00*": ">"}
_SHORT, _LONG = 3, 4


def exif_orientation(data: bytes) -> int | None:
    """The EXIF Orientation (1..8) of a JPEG's IFD0, or None: no tag, no EXIF, malformed.

    Only the marker segments before the first scan are read, never the image data; the first
    ``Exif`` APP1 segment counts, as for Pillow. Never raises, whatever the bytes.

    >>> exif_orientation(JPEG_SOI + exif_orientation_segment(6) + b"\\xff\\xd9")
    6
    >>> exif_orientation(JPEG_SOI + b"\\xff\\xe1\\x00\\x08Exif\\x00\\x00\\xff\\xd9") is None
    True
    """
    if not data.startswith(JPEG_SOI):
        return None
    for marker, body, end in _header_segments(data):
        if marker == _APP1 and data.startswith(_EXIF, body, end):
            return _tiff_orientation(data, body + len(_EXIF), end)
    return None


def _header_segments(data: bytes) -> Iterator[tuple[int, int, int]]:
    """``(marker, payload start, end)`` of each segment before the first scan, leniently.

    Stray and fill bytes are skipped (as libjpeg skips them); the walk stops quietly at SOS,
    EOI, or a segment that runs past the end of the data. The strict walk is :func:`_walk_jpeg`.
    """
    n = len(data)
    pos = 2
    while True:
        pos = data.find(b"\xff", pos)
        if pos < 0:
            return
        while pos < n and data[pos] == 0xFF:
            pos += 1
        if pos + 3 > n:
            return
        marker = data[pos]
        if marker in (_SOS, _EOI):
            return
        pos += 1
        if 0xD0 <= marker <= 0xD8 or marker in (0x00, 0x01):
            continue
        length = _U16(data, pos)[0]
        end = pos + length
        if length < 2 or end > n:
            return
        yield marker, pos + 2, end
        pos = end


def _tiff_orientation(data: bytes, tiff: int, end: int) -> int | None:
    """The Orientation entry of IFD0 in the TIFF structure at ``data[tiff:end]``, or None."""
    if tiff + 8 > end:
        return None
    order = _TIFF_ORDER.get(data[tiff : tiff + 4])
    if order is None:
        return None
    ifd = tiff + unpack_from(order + "I", data, tiff + 4)[0]
    if ifd + 2 > end:
        return None
    count = unpack_from(order + "H", data, ifd)[0]
    for entry in range(ifd + 2, min(ifd + 2 + 12 * count, end - 11), 12):
        tag, kind, values = unpack_from(order + "HHI", data, entry)
        if tag == _ORIENTATION:
            if values != 1 or kind not in (_SHORT, _LONG):
                return None
            value: int = unpack_from(order + ("H" if kind == _SHORT else "I"), data, entry + 8)[0]
            return value if 1 <= value <= 8 else None
    return None


def exif_orientation_segment(orientation: int) -> bytes:
    """A minimal APP1 segment: ``Exif``, a big-endian TIFF header and an IFD0 of one entry,
    Orientation (SHORT, count 1), with no next IFD. 36 bytes.

    >>> exif_orientation_segment(6).hex(" ", 4)
    'ffe10022 45786966 00004d4d 002a0000 00080001 01120003 00000001 00060000 00000000'
    """
    if not 1 <= orientation <= 8:
        raise ValueError(f"EXIF orientation must be in 1..8, got {orientation}")
    return pack(
        ">2sH6s4sIHHHIHHI",
        b"\xff\xe1",
        34,  # the length counts itself and the payload, not the marker
        _EXIF,
        b"MM\x00*",
        8,  # IFD0 right after the TIFF header
        1,
        _ORIENTATION,
        _SHORT,
        1,
        orientation,  # a SHORT is left-aligned in the 4-byte value field
        0,
        0,  # no next IFD
    )


def with_exif_orientation(data: bytes, orientation: int) -> bytes:
    """The JPEG with :func:`exif_orientation_segment` put in after SOI, or after a leading
    JFIF APP0 segment (JFIF must come first). ``data`` is taken to have no EXIF of its own.

    >>> jfif = JPEG_SOI + _JFIF_SEGMENT
    >>> with_exif_orientation(jfif + b"\\xff\\xd9", 6)[20:24] == b"\\xff\\xe1\\x00\\x22"
    True
    """
    if not data.startswith(JPEG_SOI):
        raise ValueError("not a JPEG: no start-of-image marker")
    at = 2
    if data.startswith(b"\xff\xe0", 2) and data.startswith(b"JFIF\x00", 6):
        at = min(4 + _U16(data, 4)[0], len(data))
    return data[:at] + exif_orientation_segment(orientation) + data[at:]


# --- check -----------------------------------------------------------------------------------


def check(data: bytes, name: str) -> None:
    """Cheap structural integrity check without decoding; DataError when damaged.

    JPEG: SOI, well-formed segments up to the first scan, one frame header, a well-formed
    scan header, and an end-of-image marker after it (bytes after EOI are tolerated).
    A cut or zero-padded file ends without EOI, and entropy-coded data cannot contain
    one, so truncation is caught without reading the image data. PNG: signature, IHDR
    first, chunk lengths and CRCs, IDAT and IEND. Other formats have no cheap check and
    are decoded in full. :func:`decode_check` also walks every marker between the scans.
    """
    examine(data, name)


def examine(data: bytes, name: str, max_pixels: int | None = None) -> ImageInfo:
    """:func:`check` and :func:`inspect` in one pass over the header: the hot path's call.

    With ``max_pixels``, an image whose header declares more pixels is refused (before any
    pixel of another format than JPEG and PNG is decoded).
    """
    if data.startswith(JPEG_SOI):
        info = _walk_jpeg(data, name, scans=False)
    elif data.startswith(PNG_SIGNATURE):
        _check_png(data, name)
        info = _inspect_png(data, name)
    else:
        info = _inspect_other(data, name)
        if max_pixels is None or info.width * info.height <= max_pixels:
            decode_check(data, name)
    if max_pixels is not None and info.width * info.height > max_pixels:
        raise _over_limit(info, name, max_pixels)
    return info


def _walk_jpeg(data: bytes, name: str, *, scans: bool) -> ImageInfo:
    """Strict walk of the marker segments to the first scan, then to end-of-image.

    With ``scans`` every marker after the first scan is walked too (DHT/SOS between the
    scans of a progressive JPEG, restart markers), searching the entropy-coded data for
    them; without it, the walk looks only for the EOI marker after the first scan.
    """
    n = len(data)
    pos = 2
    jfif = False
    adobe = -1
    frame: _Frame | None = None
    scan_count = 0
    while True:
        if pos >= n or data[pos] != 0xFF:
            # libjpeg skips extraneous bytes before a marker with a warning; so do we.
            pos = data.find(b"\xff", pos)
            if pos < 0:
                break
        while pos < n and data[pos] == 0xFF:
            pos += 1
        if pos >= n:
            break
        marker = data[pos]
        at = pos - 1
        pos += 1
        if marker == _EOI:
            return _at_eoi(frame, scan_count, jfif, adobe, name)
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:
            continue
        if marker < 0xC0 or marker == 0xD8:
            raise DataError(f"{name}: invalid JPEG marker 0xFF{marker:02X} at offset {at}")
        if pos + 2 > n:
            break
        length = _U16(data, pos)[0]
        end = pos + length
        if length < 2 or end > n:
            raise _bad_segment_length(name, marker, at, length)
        if marker in (_APP0, _APP14):
            jfif, adobe = _colour_hints(data, marker, pos + 2, length, jfif, adobe)
        elif marker in _SOF_MARKERS:
            frame = _frame_header(data, at, name, frame)
        elif marker == _SOS:
            if frame is None:
                raise DataError(f"{name}: JPEG scan at offset {at} comes before the frame header")
            _check_scan_header(data, at, name)
            scan_count += 1
            if not scans:
                # Entropy-coded data holds no marker but RSTn: the last EOI in the file
                # (anything after it is tolerated) must come after this scan header.
                if data.rfind(b"\xff\xd9", end) < 0:
                    break
                return _frame_info(frame, jfif, adobe)
            found = _SCAN_END.search(data, end)
            if found is None:
                break
            pos = found.start()
            continue
        pos = end
    raise _no_eoi(name, scan_count, scans)


def _frame_header(data: bytes, at: int, name: str, previous: _Frame | None) -> _Frame:
    """The frame header (SOFn) whose marker is at ``at`` (its length checked), the only one."""
    if previous is not None:
        raise DataError(f"{name}: second JPEG frame header at offset {at}")
    marker, pos = data[at + 1], at + 2
    length = _U16(data, pos)[0]
    ncomp = data[pos + 7] if length >= 8 else 0
    if ncomp == 0 or length != 8 + 3 * ncomp:
        raise DataError(f"{name}: malformed JPEG frame header at offset {at}")
    precision, height, width = _SOF_FIELDS(data, pos + 2)[:3]
    if width == 0 or height == 0:
        raise DataError(f"{name}: JPEG frame header gives an empty size {width}x{height}")
    return (marker, precision, height, width, ncomp, data[pos + 8 : pos + length : 3])


def _check_scan_header(data: bytes, at: int, name: str) -> None:
    """Refuse a malformed scan header (SOS) whose marker is at ``at``."""
    length = _U16(data, at + 2)[0]
    ns = data[at + 4] if length >= 3 else 0
    if not 1 <= ns <= 4 or length != 6 + 2 * ns:
        raise DataError(f"{name}: malformed JPEG scan header at offset {at}")


def _no_eoi(name: str, scan_count: int, scans: bool) -> DataError:
    if scan_count:
        where = f"in scan {scan_count}" if scans else "after the first scan"
    else:
        where = "before the first scan"
    return DataError(f"{name}: truncated: no end-of-image marker (the data ends {where})")


def _at_eoi(frame: _Frame | None, scan_count: int, jfif: bool, adobe: int, name: str) -> ImageInfo:
    """The image's info at its end-of-image marker, if a frame and a scan came before it."""
    if frame is None:
        raise DataError(f"{name}: JPEG has no frame header (SOFn) before end-of-image")
    if scan_count == 0:
        raise DataError(f"{name}: JPEG has no scan (SOS) before end-of-image")
    return _frame_info(frame, jfif, adobe)


def _bad_segment_length(name: str, marker: int, at: int, length: int) -> DataError:
    if length < 2:
        return DataError(f"{name}: JPEG segment 0xFF{marker:02X} at offset {at}: length {length}")
    return DataError(
        f"{name}: truncated: JPEG segment 0xFF{marker:02X} at offset {at} runs past the end of "
        "the file"
    )


def _colour_hints(
    data: bytes, marker: int, body: int, length: int, jfif: bool, adobe: int
) -> tuple[bool, int]:
    """``(jfif, adobe)`` updated by an APP0 or APP14 segment whose payload starts at ``body``:
    a JFIF marker, or Adobe's colour transform byte (-1 while none was seen)."""
    if marker == _APP0 and data.startswith(b"JFIF\x00", body):
        return True, adobe
    if marker == _APP14 and length >= 14 and data.startswith(b"Adobe", body):
        return jfif, data[body + 11]
    return jfif, adobe


def _frame_info(frame: _Frame, jfif: bool, adobe: int) -> ImageInfo:
    marker, precision, height, width, ncomp, ids = frame
    colorspace = _jpeg_colorspace(ncomp, jfif, adobe, ids[:ncomp])
    return _jpeg_info(width, height, ncomp, colorspace, precision, marker)


def _check_png(data: bytes, name: str) -> None:
    n = len(data)
    view = memoryview(data)
    pos = 8
    idat = False
    first = True
    while pos + 8 <= n:
        length, ctype = unpack_from(">I4s", data, pos)
        label = ctype.decode("latin-1")
        if not ctype.isalpha():
            raise DataError(f"{name}: PNG chunk at offset {pos} has an invalid type {ctype!r}")
        if length > 0x7FFFFFFF:
            raise DataError(f"{name}: PNG chunk {label} at offset {pos}: length {length} too large")
        end = pos + 12 + length
        if end > n:
            raise DataError(
                f"{name}: truncated: PNG chunk {label} at offset {pos} runs past the end of file"
            )
        if zlib.crc32(view[pos + 4 : pos + 8 + length]) != unpack_from(">I", data, end - 4)[0]:
            raise DataError(f"{name}: PNG chunk {label} at offset {pos}: CRC mismatch")
        if first:
            if ctype != b"IHDR" or length != 13:
                raise DataError(f"{name}: PNG does not start with an IHDR chunk (found {label})")
            width, height = unpack_from(">II", data, pos + 8)
            if width == 0 or height == 0:
                raise DataError(f"{name}: PNG IHDR gives an empty size {width}x{height}")
            first = False
        elif ctype == b"IDAT":
            idat = True
        elif ctype == b"IEND":
            if not idat:
                raise DataError(f"{name}: PNG has no IDAT chunk")
            return
        pos = end
    if first:
        raise DataError(f"{name}: truncated PNG: no complete IHDR chunk")
    raise DataError(f"{name}: truncated: PNG has no IEND chunk")


# --- decode ----------------------------------------------------------------------------------

# libjpeg's complaints that leave the image data whole: stray bytes it skipped before a marker
# (JWRN_EXTRANEOUS_DATA: padding after the last scan, junk between segments) and oddities of
# the metadata segments (JWRN_JFIF_MAJOR, JWRN_JFIF_BADTHUMBNAILSIZE, JWRN_ADOBE_XFORM,
# JWRN_BOGUS_ICC). Every other warning, and every error, is about the image data itself.
_HARMLESS_JPEG = re.compile(
    r"extraneous bytes before marker|unknown JFIF revision|thumbnail image size does not match"
    r"|Unknown Adobe color transform|bad ICC marker"
)
# A canonical JFIF segment (version 1.01, no thumbnail) and Adobe segment (transform at -1).
_JFIF_SEGMENT = b"\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
_ADOBE_SEGMENT = b"\xff\xee\x00\x0eAdobe\x00\x64\x00\x00\x00\x00"


def jpeg_damage(complaint: str) -> bool:
    """Whether libjpeg's complaint about a JPEG means its image data is damaged.

    The one rule of ``--decode-check``, resizing and the loaders: a premature end of the
    data and a bad Huffman code are damage; stray bytes before a marker (the image still
    decodes completely) and oddities of the metadata segments are not.

    >>> jpeg_damage("Corrupt JPEG data: premature end of data segment")
    True
    >>> jpeg_damage("Corrupt JPEG data: bad Huffman code")
    True
    >>> jpeg_damage("Premature end of JPEG file")
    True
    >>> jpeg_damage("Corrupt JPEG data: 3 extraneous bytes before marker 0xd9")
    False
    """
    return _HARMLESS_JPEG.search(complaint) is None


def decode_jpeg(
    data: bytes | memoryview, name: str, *, min_height: int = 0, min_width: int = 0
) -> np.ndarray:
    """A JPEG's RGB pixels by libjpeg-turbo (simplejpeg); DataError when it is damaged.

    ``min_height``/``min_width`` let libjpeg scale by a power of two (simplejpeg's meaning);
    every coefficient is still read, so the verdict does not depend on the scale. libjpeg's
    first complaint stops the decode; a harmless one (:func:`jpeg_damage`) is taken away and
    the decode repeated, strictly again, on the stream rebuilt without stray bytes and
    metadata segments before the first scan (same pixels: the JFIF and Adobe segments that
    decide the colour space are kept in a canonical form). Stray bytes after a scan come
    last when they precede the end-of-image marker (the image is whole); between the scans
    of a progressive JPEG, the scans after them are decoded without stopping at warnings.
    """
    import simplejpeg

    pixels: np.ndarray
    try:
        pixels = simplejpeg.decode_jpeg(
            data, colorspace="RGB", min_height=min_height, min_width=min_width, strict=True
        )
        return pixels
    except ValueError as exc:
        if jpeg_damage(str(exc)):
            raise DataError(f"{name}: damaged JPEG data ({exc})") from None
    clean = _without_oddities(bytes(data))
    for strict in (True, False):
        try:
            pixels = simplejpeg.decode_jpeg(
                clean, colorspace="RGB", min_height=min_height, min_width=min_width, strict=strict
            )
            return pixels
        except ValueError as exc:
            if not strict or jpeg_damage(str(exc)):
                raise DataError(f"{name}: damaged JPEG data ({exc})") from None
    raise AssertionError("unreachable")  # pragma: no cover


def _without_oddities(data: bytes) -> bytes:
    """The JPEG with its header rebuilt from the segments libjpeg needs: stray bytes, APPn
    and COM segments left out, a JFIF or Adobe segment put back in canonical form (the
    colour space libjpeg assumes stays the same). Bytes from the first scan on are kept."""
    n = len(data)
    kept: list[bytes] = []
    jfif, adobe, ncomp = False, -1, 0
    pos = 2
    while True:
        pos = data.find(b"\xff", pos)
        if pos < 0:
            return data  # no scan: libjpeg's own error will say so
        while pos < n and data[pos] == 0xFF:
            pos += 1
        if pos + 2 >= n:
            return data
        marker = data[pos]
        if marker in (_SOS, _EOI):
            break
        pos += 1
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:
            continue
        end = pos + _U16(data, pos)[0]
        if 0xE0 <= marker <= 0xEF or marker == 0xFE:
            jfif, adobe = _colour_hints(data, marker, pos + 2, end - pos, jfif, adobe)
        else:
            if marker in _SOF_MARKERS and pos + 7 < n:
                ncomp = data[pos + 7]
            kept.append(data[pos - 2 : end])
        pos = end
    head = [JPEG_SOI]
    if jfif:
        head.append(_JFIF_SEGMENT)
    if adobe >= 0:
        # libjpeg reads an unknown transform as YCbCr (3 components) or YCCK (4).
        head.append(_ADOBE_SEGMENT + bytes((0 if adobe == 0 else 2 if ncomp == 4 else 1,)))
    return b"".join(head + kept) + data[pos - 1 :]


def decode_check(data: bytes, name: str) -> tuple[int, int]:
    """Decode fully (after the structural check); return (width, height).

    JPEGs libjpeg-turbo decodes (8-bit Huffman coding) go through :func:`decode_jpeg` at
    1/8 scale, which still reads every coefficient, and so meet the rule resizing meets;
    8-bit PNGs too large for :data:`REENCODE_BUDGET` are decoded in strips; the rest with
    Pillow. Truncation is an error whatever ``ImageFile.LOAD_TRUNCATED_IMAGES`` says,
    because the structural check runs first; Pillow's global settings are never changed.
    """
    if data.startswith(JPEG_SOI):
        info = _walk_jpeg(data, name, scans=True)
        if info.precision == 8 and info.sof in _PASS_SOF:
            decode_jpeg(data, name, min_height=1, min_width=1)
            return info.width, info.height
    elif data.startswith(PNG_SIGNATURE):
        info = _inspect_png(data, name)
        if _goes_in_strips(info):
            for _ in _png_strips(data, name, info, _strip_rows(info.width)):
                pass
            return info.width, info.height
    with _load(data, name) as im:
        return im.size


def _load(data: bytes, name: str) -> Image.Image:
    """Structural check (JPEG/PNG) and a full Pillow decode; warnings of truncation are errors.

    An image that would take more than :data:`REENCODE_BUDGET` is refused before decoding.
    ``warnings.catch_warnings`` is process-wide: decode from one thread per process.
    """
    if data.startswith(JPEG_SOI):
        _walk_jpeg(data, name, scans=True)
    elif data.startswith(PNG_SIGNATURE):
        _check_png(data, name)
    im = _open(data, name)
    per_pixel = _per_pixel(im.mode in ("1", "L", "P"), im.mode.startswith("I;16"))
    if im.width * im.height * per_pixel > REENCODE_BUDGET:
        im.close()
        raise _over_budget(name, im.width, im.height, im.format or "image", per_pixel)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            im.load()
        except Exception as exc:  # Pillow raises many types for damaged pixel data
            im.close()
            raise DataError(f"{name}: cannot decode {im.format} image ({exc})") from None
    for w in caught:
        if "truncat" in str(w.message).lower():
            im.close()
            raise DataError(f"{name}: cannot decode {im.format} image ({w.message})")
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return im


def _per_pixel(one_byte: bool, sixteen_bit: bool) -> int:
    """About the bytes a pixel takes to decode whole and convert to RGB: a byte a pixel for
    gray and palette images, 4 for the rest, 4 for the RGB copy; 16 for 16-bit samples,
    which go through numpy (_to_rgb)."""
    return 16 if sixteen_bit else (1 if one_byte else 4) + 4


def _goes_in_strips(info: ImageInfo) -> bool:
    """Whether an image is re-encoded in strips: too large for :data:`REENCODE_BUDGET` whole,
    and a PNG :func:`_png_strips` can decode."""
    per_pixel = _per_pixel(info.components == 1, info.precision > 8)
    return info.width * info.height * per_pixel > REENCODE_BUDGET and _in_strips(info)


def _over_budget(name: str, width: int, height: int, kind: str, per_pixel: int) -> DataError:
    need = width * height * per_pixel
    return DataError(
        f"{name}: {width}x{height} {kind} would take about {need >> 20:,} MB to decode whole, "
        f"over the limit of {REENCODE_BUDGET >> 20} MB an image may take (only 8-bit PNGs are "
        f"decoded in strips); refused before decoding"
    )


# --- strips: a large PNG, a band of rows at a time ---------------------------------------------

_PNG_MODES = {"gray": "L", "rgb": "RGB", "palette": "P", "gray-alpha": "LA", "rgba": "RGBA"}


def _in_strips(info: ImageInfo) -> bool:
    """Whether :func:`_png_strips` can decode this PNG: 8-bit samples, not interlaced."""
    return (
        info.format == "png"
        and info.precision == 8
        and not info.progressive
        and info.colorspace in _PNG_MODES
    )


def _strip_rows(width: int) -> int:
    """Rows a strip holds: whole multiples of 128 (8 rows of 16-pixel MCUs, see
    :func:`_jpeg_from_strips`), about :data:`_STRIP_BYTES` of Pillow image each."""
    return max(128, _STRIP_BYTES // (4 * width) // 128 * 128)


def _png_chunk(ctype: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(payload, zlib.crc32(ctype))
    return pack(">I", len(payload)) + ctype + payload + pack(">I", crc)


def _png_strips(data: bytes, name: str, info: ImageInfo, rows: int) -> Iterator[Image.Image]:
    """The PNG's rows as Pillow images of ``rows`` rows (the last may have fewer).

    The image data is inflated here, a strip at a time, and each strip decoded by Pillow as
    a small PNG of its own: its rows, still filtered, after the row above them unfiltered
    (filter type None), which the filters of its first row refer to. Memory holds a strip,
    never the image; the pixels are Pillow's for the whole image.
    """
    _check_png(data, name)
    width, height = info.width, info.height
    line = width * info.components + 1  # the filter type byte, then 8-bit samples
    header = pack(">IIBBBBB", width, 0, 8, data[25], 0, 0, 0)  # height set per strip
    palette, idats = _png_image_data(data)
    above = b""
    for n, filtered in _inflated_strips(idats, name, height, rows, line):
        body = b"\x00" + above + filtered if above else bytes(filtered)
        del filtered
        count = n + 1 if above else n
        small = (
            PNG_SIGNATURE
            + _png_chunk(b"IHDR", header[:4] + pack(">I", count) + header[8:])
            + palette
            + _png_chunk(b"IDAT", zlib.compress(body, 0))
            + _png_chunk(b"IEND", b"")
        )
        del body
        strip = _decode_strip(small, name, (0, 1, width, count) if above else None)
        above = strip.crop((0, n - 1, width, n)).tobytes()
        if strip.mode != _PNG_MODES[info.colorspace] or len(above) != line - 1:
            raise DataError(f"{name}: cannot decode a {strip.mode} PNG in strips")
        yield strip


def _png_image_data(data: bytes) -> tuple[bytes, list[memoryview]]:
    """A checked PNG's PLTE chunk, whole (empty when it has none), and its IDAT payloads."""
    palette = b""
    idats: list[memoryview] = []
    view = memoryview(data)
    pos = 8
    while pos + 8 <= len(data):
        length, ctype = unpack_from(">I4s", data, pos)
        if ctype == b"PLTE":
            palette = bytes(view[pos : pos + 12 + length])
        elif ctype == b"IDAT":
            idats.append(view[pos + 8 : pos + 8 + length])
        elif ctype == b"IEND":
            break
        pos += 12 + length
    return palette, idats


def _inflated_strips(
    idats: Iterable[memoryview], name: str, height: int, rows: int, line: int
) -> Iterator[tuple[int, bytearray]]:
    """Each strip's row count and its rows, still filtered (``line`` bytes a row)."""
    step = 1 << 20  # inflate input a piece at a time: unconsumed input is copied each call
    pieces = (chunk[i : i + step] for chunk in idats for i in range(0, len(chunk), step))
    inflate = zlib.decompressobj()
    pending = bytearray()
    tail: bytes | memoryview = b""
    for top in range(0, height, rows):
        n = min(rows, height - top)
        want = n * line
        while len(pending) < want:
            if not tail:
                tail = next(pieces, b"")
                if not tail:
                    break
            try:
                pending += inflate.decompress(tail, want - len(pending))
            except zlib.error as exc:
                raise DataError(f"{name}: cannot decode PNG image ({exc})") from None
            tail = inflate.unconsumed_tail
        if len(pending) < want:
            raise DataError(
                f"{name}: truncated: the PNG image data ends in row {top + len(pending) // line}"
                f" of {height}"
            )
        yield n, _cut(pending, want)  # no name here keeps the strip's bytes alive


def _cut(buffer: bytearray, size: int) -> bytearray:
    """The first ``size`` bytes of ``buffer``, taken out of it."""
    head = buffer[:size]
    del buffer[:size]
    return head


def _decode_strip(small: bytes, name: str, crop: tuple[int, int, int, int] | None) -> Image.Image:
    """Pillow's pixels of one strip's small PNG, cropped to ``crop`` (the row above left out)."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(small), formats=("PNG",)) as im:
            im.load()
            return im.crop(crop) if crop else im.copy()
    except Exception as exc:  # Pillow raises many types for damaged pixel data
        raise DataError(f"{name}: cannot decode PNG image ({exc})") from None


def _jpeg_from_strips(strips: Iterable[Image.Image], height: int, quality: int, name: str) -> bytes:
    """One baseline JPEG of RGB strips, each encoded alone, as :func:`fix` encodes whole.

    Each strip (but the last) is a whole number of 8 MCU rows and is encoded with a restart
    marker after every MCU row (Pillow's ``restart_marker_rows``): restart intervals are
    byte-aligned and start their DC predictions afresh, so the strips' entropy-coded data
    join into one scan, with the RST7 that ends each strip's last interval between them.
    The coefficients are those of a whole encode (4:2:0 is averaged within each MCU).
    """
    head = b""
    parts: list[bytes] = []
    for strip in strips:
        out = io.BytesIO()
        strip.save(
            out,
            format="JPEG",
            quality=quality,
            subsampling=2,
            optimize=False,
            progressive=False,
            restart_marker_rows=1,
        )
        piece = out.getvalue()
        sof, scan, restarts = _jpeg_layout(piece)
        strip_head = piece[:sof] + pack(">H", height) + piece[sof + 2 : scan]
        if not head:
            if not restarts:
                raise DataError(
                    f"{name}: re-encoding a large image in strips needs Pillow 10.2 or later "
                    "(restart markers)"
                )
            head = strip_head
        else:
            if strip_head != head:
                raise DataError(f"{name}: strips encoded with different JPEG headers")
            parts.append(b"\xff\xd7")
        parts.append(piece[scan:-2])
    return b"".join([head, *parts, b"\xff\xd9"])


def _jpeg_layout(data: bytes) -> tuple[int, int, bool]:
    """(offset of the frame height, start of the entropy-coded data, whether a restart
    interval is defined) of a JPEG Pillow wrote: segments, one frame, one scan."""
    pos, sof, restarts = 2, 0, False
    while True:
        marker = data[pos + 1]
        length = _U16(data, pos + 2)[0]
        if marker in _SOF_MARKERS:
            sof = pos + 5
        elif marker == 0xDD:
            restarts = True
        elif marker == _SOS:
            return sof, pos + 2 + length, restarts
        pos += 2 + length


# --- fix -------------------------------------------------------------------------------------


def reencode_reason(info: ImageInfo) -> str | None:
    """Why an image must be re-encoded, or None when its bytes can pass through."""
    if info.format != "jpeg":
        return info.format
    if info.components == 4:
        return info.colorspace
    if info.precision != 8:
        return f"{info.precision}-bit"
    if info.sof not in _PASS_SOF:
        return _SOF_PROCESS.get(info.sof or 0, "jpeg-process")
    if info.components not in (1, 3):
        return f"{info.components}-component"
    return None


def fix(data: bytes, name: str, *, quality: int = 100, info: ImageInfo | None = None) -> FixedImage:
    """Pass 8-bit gray/YCbCr/RGB JPEGs through; re-encode anything else as a baseline RGB JPEG.

    Re-encoding decodes with Pillow (after the structural check), converts to RGB (alpha
    dropped, 16-bit samples keep their high byte, no EXIF rotation) and writes 4:2:0 JPEG
    with ``quality`` and no metadata. An 8-bit PNG over :data:`REENCODE_BUDGET` is done in
    strips of rows (the same pixels, restart markers between the rows); any other image
    over it is refused. Pass-through bytes are not checked here: run
    :func:`check` or :func:`decode_check` as the error policy asks; ``info`` is what
    :func:`examine` returned for ``data``, to spare a second look at the header.
    """
    if not 1 <= quality <= 100:
        raise ValueError(f"JPEG quality must be in 1..100, got {quality}")
    if info is None:
        info = inspect(data, name)
    reason = reencode_reason(info)
    if reason is None:
        return FixedImage(
            data=data, width=info.width, height=info.height, reencoded=None, info=info
        )
    if max(info.width, info.height) > 65535:
        raise DataError(
            f"{name}: {info.width}x{info.height} is larger than a JPEG can be (65535 a side)"
        )
    if _goes_in_strips(info):
        rows = _strip_rows(info.width)
        strips = (_to_rgb(im, name) for im in _png_strips(data, name, info, rows))
        encoded = _jpeg_from_strips(strips, info.height, quality, name)
        return FixedImage(
            data=encoded, width=info.width, height=info.height, reencoded=reason, info=info
        )
    with _load(data, name) as im:
        rgb = _to_rgb(im, name)
    out = io.BytesIO()
    rgb.save(out, format="JPEG", quality=quality, subsampling=2, optimize=False, progressive=False)
    return FixedImage(
        data=out.getvalue(), width=rgb.width, height=rgb.height, reencoded=reason, info=info
    )


def _to_rgb(im: Image.Image, name: str) -> Image.Image:
    """Convert to 8-bit RGB like a 3-channel decode: alpha dropped, 16-bit scaled to 8."""
    if im.mode in ("I", "I;16", "I;16B", "I;16L"):
        import numpy as np

        gray = np.asarray(im).astype(np.int64) >> 8
        from PIL import Image

        im = Image.fromarray(np.clip(gray, 0, 255).astype(np.uint8))
    elif im.mode == "PA":
        im = im.convert("RGBA")
    try:
        with warnings.catch_warnings():
            # Pillow's advice on palette transparency, which RGB drops anyway: no raw text.
            warnings.simplefilter("ignore", UserWarning)
            return im.convert("RGB")
    except (ValueError, OSError) as exc:
        raise DataError(f"{name}: cannot convert a {im.mode} image to RGB ({exc})") from None
