"""Image inspection, integrity checks and re-encoding, on real bytes made with Pillow."""

from __future__ import annotations

import io
import struct
import subprocess
import sys
import warnings
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import simplejpeg
from PIL import Image, ImageFile, JpegImagePlugin

from imagenet_prep import imagefix
from imagenet_prep.errors import DataError
from imagenet_prep.imagefix import (
    FixedImage,
    ImageInfo,
    check,
    decode_check,
    examine,
    fix,
    inspect,
)
from imagenet_prep.labels import is_wnid, load_synsets
from imagenet_prep.resize import ResizeSpec, resize_jpeg

NAME = "n01440764/n01440764_10026.JPEG"


def _picture(size: tuple[int, int] = (64, 48)) -> Image.Image:
    """A deterministic smooth RGB picture kept inside the gamut, so JPEG keeps its colours."""
    w, h = size
    y, x = np.mgrid[0:h, 0:w]
    red = 40 + x * 170 // max(w - 1, 1)
    green = 40 + y * 170 // max(h - 1, 1)
    blue = 60 + (x + y) * 120 // max(w + h - 2, 1)
    arr = np.stack([red, green, blue], axis=-1).astype(np.uint8)
    return Image.fromarray(arr)


def _save(im: Image.Image, fmt: str, **params: object) -> bytes:
    out = io.BytesIO()
    im.save(out, format=fmt, **params)
    return out.getvalue()


def _rgb(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        assert im.mode == "RGB"
        return np.asarray(im).astype(np.int16)


def _segments(data: bytes) -> list[tuple[int, int]]:
    """(marker, offset) of each JPEG marker segment before the first scan."""
    out, pos = [], 2
    while True:
        marker = data[pos + 1]
        out.append((marker, pos))
        if marker == 0xDA:
            return out
        pos += 2 + struct.unpack_from(">H", data, pos + 2)[0]


def _exif_orientation_6() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6
    return _save(_picture((64, 48)), "JPEG", quality=90, exif=exif.tobytes())


# --- good images -------------------------------------------------------------------------------

JPEG_BASELINE = _save(_picture(), "JPEG", quality=90)
JPEG_PROGRESSIVE = _save(_picture(), "JPEG", quality=90, progressive=True)
JPEG_GRAY = _save(_picture().convert("L"), "JPEG", quality=90)
JPEG_ADOBE_RGB = _save(_picture(), "JPEG", quality=90, keep_rgb=True)
JPEG_RESTARTS = _save(_picture(), "JPEG", quality=90, restart_marker_blocks=1)
JPEG_EXIF_6 = _exif_orientation_6()
JPEG_CMYK = _save(_picture().convert("CMYK"), "JPEG", quality=95)
PNG_RGB = _save(_picture(), "PNG")
PNG_RGBA = _save(_picture().convert("RGBA"), "PNG")
PNG_PALETTE = _save(_picture().quantize(256), "PNG")
PNG_GRAY_ALPHA = _save(_picture().convert("LA"), "PNG")
PNG_GRAY16 = _save(Image.fromarray(np.full((48, 64), 0x8000 + 0x40, np.uint16)), "PNG")
GIF = _save(_picture().quantize(256), "GIF")
BMP = _save(_picture(), "BMP")


def _ycck() -> bytes:
    """A 4-component JPEG whose Adobe segment says YCCK (transform 2)."""
    data = bytearray(JPEG_CMYK)
    at = dict(_segments(JPEG_CMYK))[0xEE]
    assert data[at + 4 : at + 9] == b"Adobe"
    data[at + 15] = 2
    return bytes(data)


def _rgb_ids_without_adobe() -> bytes:
    """Adobe-RGB JPEG with its APP14 removed: only the component ids 'R','G','B' remain."""
    at = dict(_segments(JPEG_ADOBE_RGB))[0xEE]
    length = struct.unpack_from(">H", JPEG_ADOBE_RGB, at + 2)[0]
    return JPEG_ADOBE_RGB[:at] + JPEG_ADOBE_RGB[at + 2 + length :]


JPEG_YCCK = _ycck()
JPEG_RGB_IDS = _rgb_ids_without_adobe()

PASS_THROUGH = {
    "baseline": JPEG_BASELINE,
    "progressive": JPEG_PROGRESSIVE,
    "gray": JPEG_GRAY,
    "adobe-rgb": JPEG_ADOBE_RGB,
    "rgb-ids": JPEG_RGB_IDS,
    "restarts": JPEG_RESTARTS,
    "exif-6": JPEG_EXIF_6,
}
REENCODED = {
    "cmyk": JPEG_CMYK,
    "ycck": JPEG_YCCK,
    "png-rgb": PNG_RGB,
    "png-rgba": PNG_RGBA,
    "png-palette": PNG_PALETTE,
    "png-gray-alpha": PNG_GRAY_ALPHA,
    "png-gray16": PNG_GRAY16,
    "gif": GIF,
    "bmp": BMP,
}
GOOD = {**PASS_THROUGH, **REENCODED}


# --- inspect -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("baseline", ImageInfo("jpeg", 64, 48, 3, "ycbcr", False, 8, 0xC0)),
        ("progressive", ImageInfo("jpeg", 64, 48, 3, "ycbcr", True, 8, 0xC2)),
        ("gray", ImageInfo("jpeg", 64, 48, 1, "gray", False, 8, 0xC0)),
        ("adobe-rgb", ImageInfo("jpeg", 64, 48, 3, "rgb", False, 8, 0xC0)),
        ("rgb-ids", ImageInfo("jpeg", 64, 48, 3, "rgb", False, 8, 0xC0)),
        ("exif-6", ImageInfo("jpeg", 64, 48, 3, "ycbcr", False, 8, 0xC0)),
        ("cmyk", ImageInfo("jpeg", 64, 48, 4, "cmyk", False, 8, 0xC0)),
        ("ycck", ImageInfo("jpeg", 64, 48, 4, "ycck", False, 8, 0xC0)),
        ("png-rgb", ImageInfo("png", 64, 48, 3, "rgb", False, 8)),
        ("png-rgba", ImageInfo("png", 64, 48, 4, "rgba", False, 8)),
        ("png-palette", ImageInfo("png", 64, 48, 1, "palette", False, 8)),
        ("png-gray-alpha", ImageInfo("png", 64, 48, 2, "gray-alpha", False, 8)),
        ("png-gray16", ImageInfo("png", 64, 48, 1, "gray", False, 16)),
        ("gif", ImageInfo("gif", 64, 48, 1, "palette", False, 8)),
        ("bmp", ImageInfo("bmp", 64, 48, 3, "rgb", False, 8)),
    ],
)
def test_inspect(key: str, expected: ImageInfo) -> None:
    assert inspect(GOOD[key], NAME) == expected


def test_inspect_reads_headers_only() -> None:
    """Everything after the frame header may be missing: inspect does not look there."""
    sof = dict(_segments(JPEG_BASELINE))[0xC0]
    assert inspect(JPEG_BASELINE[: sof + 19], NAME).width == 64
    assert inspect(PNG_RGB[:33], NAME).height == 48


def test_inspect_skips_fill_bytes_and_large_segments() -> None:
    sof = dict(_segments(JPEG_BASELINE))[0xC0]
    padded = JPEG_BASELINE[:sof] + b"\xff\xff\xff" + JPEG_BASELINE[sof:]
    assert inspect(padded, NAME).sof == 0xC0
    comment = b"\xff\xfe" + struct.pack(">H", 60002) + b"\xff\xc0" * 30000
    big = JPEG_BASELINE[:2] + comment + JPEG_BASELINE[2:]
    assert inspect(big, NAME) == inspect(JPEG_BASELINE, NAME)
    check(big, NAME)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty file"),
        (b"<!DOCTYPE html>\n<html><body>Not Found</body></html>", "starts with b'<!DOCTYPE html>"),
        (b"\x00" * 100, "not a JPEG, PNG or other known image"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", "no frame header"),
        (PNG_RGB[:20], "truncated PNG"),
    ],
)
def test_inspect_rejects_garbage(data: bytes, message: str) -> None:
    with pytest.raises(DataError, match=message) as err:
        inspect(data, NAME)
    assert str(err.value).startswith(NAME + ": ")
    assert "\n" not in str(err.value)


# --- check -------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", sorted(GOOD))
def test_check_accepts_good_images(key: str) -> None:
    check(GOOD[key], NAME)
    assert decode_check(GOOD[key], NAME) == (64, 48)


def test_check_tolerates_bytes_after_eoi_and_between_segments() -> None:
    check(JPEG_BASELINE + b"\x00trailing garbage\xff", NAME)
    check(PNG_RGB + b"trailing", NAME)
    dqt = dict(_segments(JPEG_BASELINE))[0xDB]
    junk = JPEG_BASELINE[:dqt] + b"\x00\x01junk" + JPEG_BASELINE[dqt:]
    check(junk, NAME)  # libjpeg (and Pillow) skip extraneous bytes before a marker
    assert decode_check(junk, NAME) == (64, 48)


def test_progressive_has_many_scans() -> None:
    assert JPEG_PROGRESSIVE.count(b"\xff\xda") > 3
    assert sum(JPEG_RESTARTS.count(bytes((0xFF, m))) for m in range(0xD0, 0xD8)) > 3


def _cuts(data: bytes) -> list[bytes]:
    n = len(data)
    return [data[:k] for k in sorted({1, 2, 3, 10, 40, n // 3, n // 2, n - 40, n - 2, n - 1})]


def _scan_cuts(data: bytes) -> list[bytes]:
    """Progressive JPEG cut right before each later scan: every scan header is well formed."""
    starts = [i for i in range(len(data) - 1) if data[i : i + 2] == b"\xff\xda"]
    return [data[:i] for i in starts[1:]]


def _png_chunks(data: bytes) -> dict[bytes, int]:
    out: dict[bytes, int] = {}
    pos = 8
    while pos < len(data):
        length, ctype = struct.unpack_from(">I4s", data, pos)
        out.setdefault(ctype, pos)
        pos += 12 + length
    return out


def _png_bad_crc() -> bytes:
    data = bytearray(PNG_RGB)
    data[_png_chunks(PNG_RGB)[b"IDAT"] + 20] ^= 0x55
    return bytes(data)


def _png_without(ctype: bytes) -> bytes:
    at = _png_chunks(PNG_RGB)[ctype]
    length = struct.unpack_from(">I", PNG_RGB, at)[0]
    return PNG_RGB[:at] + PNG_RGB[at + 12 + length :]


def _jpeg_without(marker: int) -> bytes:
    at = dict(_segments(JPEG_BASELINE))[marker]
    if marker == 0xDA:
        return JPEG_BASELINE[:at] + b"\xff\xd9"
    length = struct.unpack_from(">H", JPEG_BASELINE, at + 2)[0]
    return JPEG_BASELINE[:at] + JPEG_BASELINE[at + 2 + length :]


def _jpeg_with_bad_marker() -> bytes:
    at = dict(_segments(JPEG_BASELINE))[0xDB]
    return JPEG_BASELINE[:at] + b"\xff\x02\x00\x04ab" + JPEG_BASELINE[at:]


def _jpeg_with_long_segment() -> bytes:
    at = dict(_segments(JPEG_BASELINE))[0xC0]
    data = bytearray(JPEG_BASELINE[: at + 30])
    return bytes(data)


DAMAGED: dict[str, tuple[bytes, str | None]] = {
    "empty": (b"", "empty file"),
    "html": (b"<html><head><title>404</title></head><body>gone</body></html>\n", "not a JPEG"),
    "zeros": (bytes(4096), "not a JPEG"),
    "png-bad-crc": (_png_bad_crc(), r"PNG chunk IDAT at offset \d+: CRC mismatch"),
    "png-no-iend": (_png_without(b"IEND"), "no IEND chunk"),
    "png-no-idat": (_png_without(b"IDAT"), "no IDAT chunk"),
    "png-no-ihdr": (_png_without(b"IHDR"), "does not start with an IHDR"),
    "jpeg-no-frame": (_jpeg_without(0xC0), "before the frame header"),
    "jpeg-no-scan": (_jpeg_without(0xDA), "no scan"),
    "jpeg-bad-marker": (_jpeg_with_bad_marker(), "invalid JPEG marker 0xFF02"),
    "jpeg-segment-past-end": (_jpeg_with_long_segment(), "runs past the end"),
    "jpeg-double-soi": (JPEG_BASELINE[:2] + JPEG_BASELINE, "invalid JPEG marker 0xFFD8"),
}
for _i, _cut in enumerate(_cuts(JPEG_BASELINE)):
    DAMAGED[f"jpeg-cut-{_i}"] = (_cut, None)
for _i, _cut in enumerate(_cuts(JPEG_PROGRESSIVE) + _scan_cuts(JPEG_PROGRESSIVE)):
    DAMAGED[f"progressive-cut-{_i}"] = (_cut, None)
for _i, _cut in enumerate(_cuts(PNG_RGB)):
    DAMAGED[f"png-cut-{_i}"] = (_cut, None)
for _i, _cut in enumerate(_cuts(JPEG_CMYK)):
    DAMAGED[f"cmyk-cut-{_i}"] = (_cut, None)


@pytest.mark.parametrize("key", sorted(DAMAGED))
def test_check_rejects_damaged(key: str) -> None:
    data, message = DAMAGED[key]
    for fn in (check, decode_check):
        with pytest.raises(DataError, match=message) as err:
            fn(data, NAME)
        text = str(err.value)
        assert text.startswith(NAME + ": ") and "\n" not in text


def test_truncated_scan_message() -> None:
    with pytest.raises(DataError, match="truncated: no end-of-image marker"):
        check(JPEG_BASELINE[:-2], NAME)
    with pytest.raises(DataError, match="truncated: no end-of-image marker"):
        check(_scan_cuts(JPEG_PROGRESSIVE)[2], NAME)


def test_decode_check_is_strict_whatever_pillow_globals_say(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    with pytest.raises(DataError):
        decode_check(JPEG_BASELINE[: len(JPEG_BASELINE) // 2], NAME)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with pytest.raises(DataError):
        decode_check(JPEG_BASELINE[: len(JPEG_BASELINE) // 2], NAME)
    with pytest.raises(DataError):
        fix(PNG_RGB[: len(PNG_RGB) // 2], NAME)


def test_decode_check_catches_corrupt_pixels_that_check_cannot() -> None:
    data = bytearray(PNG_RGB)
    at = _png_chunks(PNG_RGB)[b"IDAT"]
    length = struct.unpack_from(">I", PNG_RGB, at)[0]
    data[at + 8 : at + 8 + length] = bytes(length)  # not a zlib stream any more
    struct.pack_into(">I", data, at + 8 + length, zlib.crc32(bytes(data[at + 4 : at + 8 + length])))
    check(bytes(data), NAME)
    with pytest.raises(DataError, match="cannot decode"):
        decode_check(bytes(data), NAME)


# --- fix ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", sorted(PASS_THROUGH))
def test_fix_passes_jpegs_through(key: str) -> None:
    data = PASS_THROUGH[key]
    fixed = fix(data, NAME)
    assert fixed.data is data
    assert (fixed.width, fixed.height, fixed.reencoded) == (64, 48, None)
    assert fixed.info == inspect(data, NAME)


def test_exif_orientation_is_never_applied() -> None:
    with Image.open(io.BytesIO(JPEG_EXIF_6)) as im:
        assert im.getexif()[0x0112] == 6
    fixed = fix(JPEG_EXIF_6, NAME)
    assert (fixed.width, fixed.height) == (64, 48)
    assert decode_check(JPEG_EXIF_6, NAME) == (64, 48)


def _expected_rgb(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB")).astype(np.int16)


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        ("cmyk", "cmyk"),
        ("ycck", "ycck"),
        ("png-rgb", "png"),
        ("png-rgba", "png"),
        ("png-palette", "png"),
        ("png-gray-alpha", "png"),
        ("png-gray16", "png"),
        ("gif", "gif"),
        ("bmp", "bmp"),
    ],
)
def test_fix_reencodes(key: str, reason: str) -> None:
    data = REENCODED[key]
    fixed = fix(data, NAME)
    assert isinstance(fixed, FixedImage)
    assert fixed.reencoded == reason
    assert fixed.info == inspect(data, NAME)
    assert (fixed.width, fixed.height) == (64, 48)
    out = inspect(fixed.data, NAME)
    assert (out.format, out.sof, out.components, out.progressive) == ("jpeg", 0xC0, 3, False)
    assert (out.width, out.height) == (64, 48)
    check(fixed.data, NAME)
    with Image.open(io.BytesIO(fixed.data)) as im:
        assert im.mode == "RGB"
        assert JpegImagePlugin.get_sampling(im) == 2  # 4:2:0
        assert "exif" not in im.info and "icc_profile" not in im.info
    if key not in ("png-gray16", "ycck"):  # see their own tests; the YCCK file is made up
        diff = np.abs(_rgb(fixed.data) - _expected_rgb(data))
        assert diff.mean() < 2 and diff.max() < 16
    assert fix(data, NAME).data == fixed.data  # deterministic bytes


def test_fix_keeps_colours_of_cmyk() -> None:
    red = _save(Image.new("RGB", (32, 32), (255, 0, 0)).convert("CMYK"), "JPEG", quality=95)
    assert inspect(red, NAME).colorspace == "cmyk"
    pixels = _rgb(fix(red, NAME).data)
    assert np.abs(pixels - np.array([255, 0, 0])).max() < 8
    picture = _rgb(fix(JPEG_CMYK, NAME).data)
    assert np.abs(picture - np.asarray(_picture()).astype(np.int16)).mean() < 4


def test_fix_scales_16_bit_samples_to_8() -> None:
    assert np.abs(_rgb(fix(PNG_GRAY16, NAME).data) - 0x80).max() <= 1


def test_fix_drops_metadata_and_keeps_stored_grid() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    data = _save(_picture().convert("CMYK"), "JPEG", exif=exif.tobytes(), icc_profile=b"x" * 200)
    fixed = fix(data, NAME)
    assert (fixed.width, fixed.height, fixed.reencoded) == (64, 48, "cmyk")
    assert b"Exif" not in fixed.data and b"x" * 200 not in fixed.data


def test_fix_quality() -> None:
    low = fix(PNG_RGB, NAME, quality=20)
    assert len(low.data) < len(fix(PNG_RGB, NAME).data)
    for quality in (0, 101):
        with pytest.raises(ValueError, match="quality"):
            fix(PNG_RGB, NAME, quality=quality)


def test_fix_rejects_12_bit_jpeg_pillow_cannot_decode() -> None:
    data = bytearray(JPEG_BASELINE)
    at = dict(_segments(JPEG_BASELINE))[0xC0]
    data[at + 4] = 12
    assert inspect(bytes(data), NAME).precision == 12
    assert imagefix.reencode_reason(inspect(bytes(data), NAME)) == "12-bit"
    with pytest.raises(DataError, match=NAME):
        fix(bytes(data), NAME)


def test_fix_rejects_garbage() -> None:
    for data, message in (DAMAGED["html"], DAMAGED["empty"], DAMAGED["png-bad-crc"]):
        with pytest.raises(DataError, match=message):
            fix(data, NAME)


# --- the reference scripts' quirk lists, as a test of the byte-based mechanism only ------------


def test_known_quirk_names() -> None:
    synsets = load_synsets()
    assert len(imagefix.KNOWN_CMYK_TRAIN) == 22 and len(imagefix.KNOWN_PNG_TRAIN) == 1
    for name in imagefix.KNOWN_CMYK_TRAIN | imagefix.KNOWN_PNG_TRAIN:
        wnid, _, rest = name.partition("_")
        assert is_wnid(wnid) and wnid in synsets and rest.endswith(".JPEG")


@pytest.mark.parametrize(
    ("names", "data", "reason"),
    [
        (imagefix.KNOWN_CMYK_TRAIN, JPEG_CMYK, "cmyk"),
        (imagefix.KNOWN_PNG_TRAIN, PNG_RGB, "png"),
        (imagefix.KNOWN_CMYK_TRAIN | imagefix.KNOWN_PNG_TRAIN, JPEG_BASELINE, None),
        (frozenset({"n01440764_1.JPEG", "ordinary.JPEG"}), JPEG_CMYK, "cmyk"),
    ],
)
def test_decisions_depend_on_bytes_not_names(
    names: frozenset[str], data: bytes, reason: str | None
) -> None:
    results: set[str | None] = {fix(data, name).reencoded for name in names}
    assert results == {reason}


def test_public_api() -> None:
    functions: list[Callable[..., object]] = [inspect, check, decode_check, fix]
    assert all(f.__name__ in imagefix.__all__ for f in functions)


# --- examine: the hot path's single look ---------------------------------------------------


@pytest.mark.parametrize("key", sorted(GOOD))
def test_examine_is_check_and_inspect_in_one(key: str) -> None:
    assert examine(GOOD[key], NAME) == inspect(GOOD[key], NAME)


def _jpeg_with_marker_in_scan(data: bytes) -> bytes:
    """A stray 0xFF 0xC8 (JPG, reserved) spliced into the entropy-coded data of the scan."""
    sos = dict(_segments(data))[0xDA]
    length = struct.unpack_from(">H", data, sos + 2)[0]
    at = sos + 2 + length + 40
    return data[:at] + b"\xff\xc8\x00\x04ab" + data[at:]


def test_check_reads_headers_and_the_end_decode_check_reads_between() -> None:
    """The cheap check never scans the image data; decode_check walks every marker."""
    damaged = _jpeg_with_marker_in_scan(JPEG_PROGRESSIVE)
    check(damaged, NAME)
    with pytest.raises(DataError, match=NAME):
        decode_check(damaged, NAME)


def test_check_finds_no_end_of_image_in_a_zero_padded_cut() -> None:
    """A download cut short and padded with zeros (a preallocated file) has no EOI."""
    cut = JPEG_BASELINE[: len(JPEG_BASELINE) * 2 // 3]
    padded = cut + bytes(len(JPEG_BASELINE) - len(cut))
    with pytest.raises(DataError, match="truncated: no end-of-image marker"):
        check(padded, NAME)


def test_an_eoi_inside_a_header_segment_does_not_count() -> None:
    """An EXIF thumbnail's EOI comes before the scan: a cut image is still truncated."""
    thumb = b"\xff\xe1" + struct.pack(">H", 2 + 8) + b"Exif\x00\x00\xff\xd9"
    cut = JPEG_BASELINE[:2] + thumb + JPEG_BASELINE[2:-200]
    with pytest.raises(DataError, match="truncated"):
        check(cut, NAME)


# --- sizes: refused from the header, or decoded within the memory budget (issue 13, item 7) ----


def _with_size(data: bytes, width: int, height: int) -> bytes:
    """A JPEG or PNG whose header claims another size (the image data is left as it is)."""
    out = bytearray(data)
    if data.startswith(imagefix.PNG_SIGNATURE):
        struct.pack_into(">II", out, 16, width, height)
        struct.pack_into(">I", out, 29, zlib.crc32(bytes(out[12:29])))
    else:
        sof = dict(_segments(data))[0xC0]
        struct.pack_into(">HH", out, sof + 5, height, width)
    return bytes(out)


# A 331-byte JPEG that claims 60000x60000: 10 GiB of RGB once decoded.
BOMB = _with_size(_save(Image.new("L", (8, 8), 128), "JPEG", quality=75), 60000, 60000)


def test_a_header_over_max_pixels_is_refused_before_decoding() -> None:
    assert len(BOMB) < 400
    assert examine(BOMB, NAME) == inspect(BOMB, NAME)  # well formed: only its size is wrong
    for data in (BOMB, _with_size(PNG_RGB, 60000, 60000)):
        with pytest.raises(DataError, match="60000x60000 image") as err:
            examine(data, NAME, imagefix.MAX_PIXELS)
        text = str(err.value)
        assert text.startswith(NAME + ": ") and "--max-pixels" in text and "\n" not in text
    assert examine(JPEG_BASELINE, NAME, 64 * 48) == inspect(JPEG_BASELINE, NAME)
    with pytest.raises(DataError, match=r"64x48 image \(3,072 pixels\) is over the limit of 3,071"):
        examine(JPEG_BASELINE, NAME, 64 * 48 - 1)
    with pytest.raises(DataError, match="64x48 image"):
        examine(GIF, NAME, 100)  # other formats: from Pillow's look at the header


def test_pillow_never_prints_its_bomb_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    """Over Pillow's limit a warning, over twice it an exception: a DataError line instead."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 64 * 48 - 1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a warning would fail the test
        assert fix(GIF, NAME).width == 64
        assert decode_check(BMP, NAME) == (64, 48)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 64 * 48 // 3)
    with pytest.raises(DataError, match="3,072 pixels") as err:
        examine(GIF, NAME)
    assert str(err.value).startswith(NAME + ": ") and "\n" not in str(err.value)


def _png(image: Image.Image, **params: object) -> bytes:
    return _save(image, "PNG", **params)


def _noisy(size: tuple[int, int], seed: int = 0) -> Image.Image:
    """A picture with noise, so every row and every filter type has work to do."""
    w, h = size
    rng = np.random.default_rng(seed)
    noise = rng.integers(-30, 30, (h, w, 3))
    return Image.fromarray(np.clip(np.asarray(_picture(size)) + noise, 0, 255).astype(np.uint8))


STRIP_PNGS = {
    "rgb": _png(_noisy((203, 301))),
    "rgba": _png(_noisy((203, 301)).convert("RGBA")),
    "gray": _png(_noisy((203, 301)).convert("L")),
    "gray-alpha": _png(_noisy((203, 301)).convert("LA")),
    "palette": _png(_noisy((203, 301)).quantize(200)),
    "palette-transparency": _png(_noisy((203, 301)).quantize(200), transparency=3),
    "rgb-transparency": _png(_noisy((203, 301)), transparency=(1, 2, 3)),
    "rgb-every-filter": _png(_noisy((203, 301)), optimize=True),
    "one-row": _png(_noisy((203, 1))),
}


@pytest.fixture
def in_strips(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every PNG over the memory budget, in strips of 128 rows."""
    monkeypatch.setattr(imagefix, "REENCODE_BUDGET", 0, raising=False)
    monkeypatch.setattr(imagefix, "_STRIP_BYTES", 1, raising=False)


@pytest.mark.parametrize("key", sorted(STRIP_PNGS))
def test_a_png_over_the_budget_is_reencoded_in_strips(key: str, in_strips: None) -> None:
    """The strips join into the JPEG Pillow writes of the whole image with a restart marker
    after every MCU row: the same pixels as the whole-image path, byte for byte."""
    data = STRIP_PNGS[key]
    fixed = fix(data, NAME)
    with Image.open(io.BytesIO(data)) as im:
        whole = _save(im.convert("RGB"), "JPEG", quality=100, subsampling=2, restart_marker_rows=1)
        assert (fixed.width, fixed.height, fixed.reencoded) == (*im.size, "png")
    assert fixed.data == whole
    assert decode_check(data, NAME) == (fixed.width, fixed.height)


def test_strips_find_damage_as_a_whole_decode_does(in_strips: None) -> None:
    data = STRIP_PNGS["rgb"]
    at = _png_chunks(data)[b"IDAT"]
    length = struct.unpack_from(">I", data, at)[0]
    for bad in (bytes(length), zlib.compress(bytes(100))):  # no zlib stream; too few rows
        damaged = data[:at] + struct.pack(">I", len(bad)) + b"IDAT" + bad
        damaged += struct.pack(">I", zlib.crc32(b"IDAT" + bad)) + data[at + 12 + length :]
        for fn in (fix, decode_check):
            with pytest.raises(DataError, match=r"cannot decode PNG|truncated") as err:
                fn(damaged, NAME)
            assert str(err.value).startswith(NAME + ": ")


@pytest.mark.parametrize("key", ["png-gray16", "cmyk", "gif"])
def test_what_cannot_go_in_strips_is_refused_over_the_budget(
    key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(imagefix, "REENCODE_BUDGET", 1000, raising=False)
    for fn in (fix, decode_check):
        if fn is decode_check and key == "cmyk":
            continue  # libjpeg checks it at 1/8 scale, within any budget
        with pytest.raises(DataError, match="over the limit of 0 MB") as err:
            fn(GOOD[key], NAME)
        assert str(err.value).startswith(NAME + ": ") and "refused" in str(err.value)


def test_a_large_png_stays_within_500_mb(tmp_path: Path) -> None:
    """9000x9000 RGBA (81 MP, under the pixel limit): 1.4 GB when decoded whole."""
    path = tmp_path / "large.png"
    width = height = 9000
    with path.open("wb") as f:
        f.write(imagefix.PNG_SIGNATURE)
        for ctype, payload in _large_png_chunks(width, height):
            f.write(struct.pack(">I", len(payload)) + ctype + payload)
            f.write(struct.pack(">I", zlib.crc32(payload, zlib.crc32(ctype))))
    script = (
        "import sys\n"
        "from imagenet_prep import imagefix\n"
        "data = open(sys.argv[1], 'rb').read()\n"
        "fixed = imagefix.fix(data, 'large.png')\n"
        "assert (fixed.width, fixed.height) == (9000, 9000)\n"
        "import simplejpeg\n"
        "assert simplejpeg.decode_jpeg_header(fixed.data)[:2] == (9000, 9000)\n"
        # VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec from the forked copy of
        # the test process (over 1 GB once torch is imported), VmHWM is this image's own.
        "print(next(l for l in open('/proc/self/status') if l.startswith('VmHWM')).split()[1])\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, str(path)], capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr
    peak_mb = int(proc.stdout.split()[-1]) / 1024
    assert peak_mb < 500, f"peak {peak_mb:.0f} MB"  # 673 MB before strips, 190 MB with them


def _large_png_chunks(width: int, height: int) -> Iterator[tuple[bytes, bytes]]:
    """IHDR, IDAT chunks and IEND of an RGBA gradient, made a band of rows at a time."""
    yield b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    deflate = zlib.compressobj(1)
    row = np.empty((width, 4), np.uint8)
    row[:, 0] = np.arange(width) % 256
    row[:, 3] = 255
    for top in range(0, height, 500):
        band = []
        for y in range(top, min(top + 500, height)):
            row[:, 1] = y % 256
            row[:, 2] = (np.arange(width) + y) % 256
            band.append(b"\x00" + row.tobytes())
        yield b"IDAT", deflate.compress(b"".join(band))
    yield b"IDAT", deflate.flush()
    yield b"IEND", b""


# --- one rule for JPEG damage (issue 13, item 9) -----------------------------------------------


def test_jpeg_damage_is_one_rule() -> None:
    assert imagefix.jpeg_damage("Corrupt JPEG data: premature end of data segment")
    assert imagefix.jpeg_damage("Premature end of JPEG file")
    assert imagefix.jpeg_damage("Corrupt JPEG data: bad Huffman code")
    assert imagefix.jpeg_damage("Bogus Huffman table definition")
    assert not imagefix.jpeg_damage("Corrupt JPEG data: 245 extraneous bytes before marker 0xd9")
    assert not imagefix.jpeg_damage("Warning: unknown JFIF revision number 2.01")


PHOTO = _save(_noisy((320, 240)), "JPEG", quality=90)
PHOTO_PIXELS = simplejpeg.decode_jpeg(PHOTO, colorspace="RGB")


def _jfif_version_2() -> bytes:
    at = PHOTO.index(b"JFIF\x00")
    return PHOTO[: at + 5] + b"\x02" + PHOTO[at + 6 :]


def _bad_huffman_code() -> bytes:
    """Eight 1-bits twice over (0xFF 0x00 is a stuffed 0xFF) near the end of the scan, where
    libjpeg-turbo decodes code by code: no Huffman code of a standard table is that long."""
    out = bytearray(PHOTO)
    out[-60:-52] = b"\xff\x00" * 4
    return bytes(out)


def _scan_cut_with_eoi() -> bytes:
    sos = dict(_segments(PHOTO))[0xDA]
    return PHOTO[: (sos + len(PHOTO)) // 2] + b"\xff\xd9"


HARMLESS = {
    "bytes before the end-of-image marker": PHOTO[:-2] + bytes(range(1, 200)) + PHOTO[-2:],
    "bytes between header segments": PHOTO[:20] + b"\x00junk" + PHOTO[20:],
    "an unknown JFIF version": _jfif_version_2(),
}
DAMAGE = {
    "a scan cut short, an end-of-image marker after it": (
        _scan_cut_with_eoi(),
        "premature end of data segment",
    ),
    "a bad Huffman code": (_bad_huffman_code(), "bad Huffman code"),
    "stray bytes, then a scan cut short": (
        _scan_cut_with_eoi()[:20] + b"\x00junk" + _scan_cut_with_eoi()[20:],
        "premature end of data segment",
    ),
}


@pytest.mark.parametrize("key", sorted(HARMLESS))
def test_harmless_complaints_pass_decode_check_and_resizing(key: str) -> None:
    data = HARMLESS[key]
    check(data, NAME)
    assert decode_check(data, NAME) == (320, 240)
    for spec in (ResizeSpec(shorter=200), ResizeSpec(shorter=60)):  # whole, and DCT-scaled
        resized = resize_jpeg(data, 320, 240, spec, NAME)
        assert resized is not None and resized == resize_jpeg(PHOTO, 320, 240, spec, NAME)
    assert np.array_equal(imagefix.decode_jpeg(data, NAME), PHOTO_PIXELS)


def test_harmless_complaints_keep_the_colour_space() -> None:
    """The header rebuilt without the oddities keeps Adobe's transform: RGB stays RGB."""
    junk = JPEG_ADOBE_RGB[:2] + b"\x00junk" + JPEG_ADOBE_RGB[2:]
    whole = imagefix.decode_jpeg(JPEG_ADOBE_RGB, NAME)
    assert np.array_equal(imagefix.decode_jpeg(junk, NAME), whole)
    assert np.abs(whole.astype(np.int16) - _rgb(JPEG_ADOBE_RGB)).max() <= 2


@pytest.mark.parametrize("key", sorted(DAMAGE))
def test_damage_is_refused_alike_by_decode_check_and_resizing(key: str) -> None:
    data, complaint = DAMAGE[key]
    check(data, NAME)  # the structure is whole: only a decoder can tell
    messages = set()
    for refuse in (
        lambda: decode_check(data, NAME),
        lambda: resize_jpeg(data, 320, 240, ResizeSpec(shorter=200), NAME),
        lambda: resize_jpeg(data, 320, 240, ResizeSpec(shorter=60), NAME),
    ):
        with pytest.raises(DataError, match=complaint) as err:
            refuse()
        messages.add(str(err.value))
    assert messages == {f"{NAME}: damaged JPEG data (Corrupt JPEG data: {complaint})"}
