"""Looking at image bytes: format, size and colour space from headers; integrity; re-encoding.

Every decision is made from the bytes, never from the file name: ImageNet has CMYK JPEGs
and a PNG named ``.JPEG``, and any other download may have more. 8-bit grayscale and
YCbCr/RGB JPEGs pass through byte for byte; everything else is decoded with Pillow and
re-encoded as a baseline RGB JPEG, as the seed's ``build_imagenet_data.py`` did for its
hard-coded list of names. EXIF orientation is never applied: sizes are the stored grid.
"""

from __future__ import annotations

import io
import re
import warnings
import zlib
from dataclasses import dataclass
from functools import lru_cache
from struct import Struct, unpack_from
from typing import TYPE_CHECKING

from .errors import DataError

if TYPE_CHECKING:  # Pillow is imported where an image is decoded: rarely, on the hot path
    from PIL import Image

__all__ = [
    "KNOWN_CMYK_TRAIN",
    "KNOWN_PNG_TRAIN",
    "OTHER_FORMATS",
    "FixedImage",
    "ImageInfo",
    "check",
    "decode_check",
    "examine",
    "fix",
    "inspect",
    "reencode_reason",
]

JPEG_SOI = b"\xff\xd8"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

#: Formats besides JPEG and PNG that are recognised (through Pillow) and re-encoded.
#: Formats with weak signatures (TGA, ...) are left out so garbage is not taken for an image.
OTHER_FORMATS = ("GIF", "BMP", "TIFF", "WEBP", "PPM")
_PIL_FORMATS = ("JPEG", "PNG", *OTHER_FORMATS)

#: Training images the seed re-encoded by name as CMYK JPEGs. For tests and reports only:
#: nothing in this module looks at names.
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
#: The training image the seed re-encoded by name as a PNG. For tests and reports only.
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
_SOS = 0xDA
_EOI = 0xD9
_APP0 = 0xE0
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
    frame: tuple[int, int, int, int, int, bytes] | None = None
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
        return Image.open(io.BytesIO(data), formats=_PIL_FORMATS)
    except UnidentifiedImageError:
        raise _not_an_image(data, name) from None
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


def examine(data: bytes, name: str) -> ImageInfo:
    """:func:`check` and :func:`inspect` in one pass over the header: the hot path's call."""
    if data.startswith(JPEG_SOI):
        return _walk_jpeg(data, name, scans=False)
    if data.startswith(PNG_SIGNATURE):
        _check_png(data, name)
        return _inspect_png(data, name)
    decode_check(data, name)
    return _inspect_other(data, name)


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
    frame: tuple[int, int, int, int, int, bytes] | None = None
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
            if frame is None:
                raise DataError(f"{name}: JPEG has no frame header (SOFn) before end-of-image")
            if scan_count == 0:
                raise DataError(f"{name}: JPEG has no scan (SOS) before end-of-image")
            return _frame_info(frame, jfif, adobe)
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:
            continue
        if marker < 0xC0 or marker == 0xD8:
            raise DataError(f"{name}: invalid JPEG marker 0xFF{marker:02X} at offset {at}")
        if pos + 2 > n:
            break
        length = _U16(data, pos)[0]
        end = pos + length
        if length < 2:
            raise DataError(
                f"{name}: JPEG segment 0xFF{marker:02X} at offset {at}: length {length}"
            )
        if end > n:
            raise DataError(
                f"{name}: truncated: JPEG segment 0xFF{marker:02X} at offset {at} runs past "
                f"the end of the file"
            )
        if marker in (_APP0, _APP14):
            jfif, adobe = _colour_hints(data, marker, pos + 2, length, jfif, adobe)
        elif marker in _SOF_MARKERS:
            if frame is not None:
                raise DataError(f"{name}: second JPEG frame header at offset {at}")
            ncomp = data[pos + 7] if length >= 8 else 0
            if ncomp == 0 or length != 8 + 3 * ncomp:
                raise DataError(f"{name}: malformed JPEG frame header at offset {at}")
            precision, height, width = _SOF_FIELDS(data, pos + 2)[:3]
            if width == 0 or height == 0:
                raise DataError(f"{name}: JPEG frame header gives an empty size {width}x{height}")
            frame = (marker, precision, height, width, ncomp, data[pos + 8 : end : 3])
        elif marker == _SOS:
            if frame is None:
                raise DataError(f"{name}: JPEG scan at offset {at} comes before the frame header")
            ns = data[pos + 2] if length >= 3 else 0
            if not 1 <= ns <= 4 or length != 6 + 2 * ns:
                raise DataError(f"{name}: malformed JPEG scan header at offset {at}")
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
    if scan_count:
        where = f"in scan {scan_count}" if scans else "after the first scan"
    else:
        where = "before the first scan"
    raise DataError(f"{name}: truncated: no end-of-image marker (the data ends {where})")


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


def _frame_info(frame: tuple[int, int, int, int, int, bytes], jfif: bool, adobe: int) -> ImageInfo:
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


def decode_check(data: bytes, name: str) -> tuple[int, int]:
    """Decode fully with Pillow (after the structural check); return (width, height).

    Truncation is an error whatever ``ImageFile.LOAD_TRUNCATED_IMAGES`` says, because the
    structural check runs first; Pillow's global settings are never changed.
    """
    with _load(data, name) as im:
        return im.size


def _load(data: bytes, name: str) -> Image.Image:
    """Structural check (JPEG/PNG) and a full Pillow decode; warnings of truncation are errors.

    ``warnings.catch_warnings`` is process-wide: decode from one thread per process.
    """
    if data.startswith(JPEG_SOI):
        _walk_jpeg(data, name, scans=True)
    elif data.startswith(PNG_SIGNATURE):
        _check_png(data, name)
    im = _open(data, name)
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
    with ``quality`` and no metadata. Pass-through bytes are not checked here: run
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
        return im.convert("RGB")
    except (ValueError, OSError) as exc:
        raise DataError(f"{name}: cannot convert a {im.mode} image to RGB ({exc})") from None
