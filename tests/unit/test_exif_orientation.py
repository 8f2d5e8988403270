"""EXIF orientation: read from the header, carried into resized copies (issue 14, item 2)."""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
from PIL import Image, ImageOps
from tests.helpers import encode

from imagenet_prep.imagefix import (
    exif_orientation,
    exif_orientation_segment,
    with_exif_orientation,
)
from imagenet_prep.resize import ResizeSpec, resize_jpeg

ORIENTATION = 0x0112
SOI, EOI = b"\xff\xd8", b"\xff\xd9"


def _picture(width: int, height: int) -> Image.Image:
    """A smooth picture with no symmetry, so a turned or mirrored copy differs."""
    y, x = np.mgrid[0:height, 0:width]
    arr = np.stack(
        [40 + x * 170 // width, 40 + y * 170 // height, 60 + x * y * 120 // (width * height)]
    )
    return Image.fromarray(arr.transpose(1, 2, 0).astype(np.uint8))


def _exif_jpeg(orientation: int | None, size: tuple[int, int] = (64, 48)) -> bytes:
    """A JPEG as Pillow writes it (JFIF, then EXIF), with the tag when it is given."""
    if orientation is None:
        return encode(_picture(*size), "JPEG", quality=90)
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    return encode(_picture(*size), "JPEG", quality=90, exif=exif.tobytes())


PLAIN = _exif_jpeg(None)


def _tiff(order: str, entries: list[tuple[int, int, int, bytes]], ifd: int = 8) -> bytes:
    """A TIFF structure: header, IFD0 at ``ifd`` with (tag, type, count, 4-byte value) entries."""
    mark = b"II*\x00" if order == "<" else b"MM\x00*"
    body = mark + struct.pack(order + "I", ifd) + bytes(ifd - 8)
    body += struct.pack(order + "H", len(entries))
    for tag, kind, count, value in entries:
        body += struct.pack(order + "HHI", tag, kind, count) + value
    return body + bytes(4)


def _app1(payload: bytes) -> bytes:
    return b"\xff\xe1" + struct.pack(">H", 2 + len(payload)) + payload


def _with_segment(segment: bytes, jpeg: bytes = PLAIN) -> bytes:
    """``jpeg`` with a segment put right after its JFIF segment."""
    assert jpeg[2:4] == b"\xff\xe0"
    at = 4 + struct.unpack_from(">H", jpeg, 4)[0]
    return jpeg[:at] + segment + jpeg[at:]


def _short(order: str, value: int) -> bytes:
    return struct.pack(order + "HH", value, 0)


def _segments(data: bytes) -> list[int]:
    """The markers of the segments before the first scan (well-formed JPEGs only)."""
    out, pos = [], 2
    while data[pos + 1] != 0xDA:
        out.append(data[pos + 1])
        pos += 2 + struct.unpack_from(">H", data, pos + 2)[0]
    return out


# --- reading ---------------------------------------------------------------------------------


@pytest.mark.parametrize("order", ["<", ">"])
@pytest.mark.parametrize("value", range(1, 9))
def test_orientation_in_either_byte_order(order: str, value: int) -> None:
    entries = [
        (0x010F, 2, 4, b"Cam\x00"),  # Make, before the tag
        (ORIENTATION, 3, 1, _short(order, value)),
        (0x0131, 2, 4, b"ipt\x00"),  # Software, after it
    ]
    data = _with_segment(_app1(b"Exif\x00\x00" + _tiff(order, entries)))
    assert exif_orientation(data) == value
    with Image.open(io.BytesIO(data)) as im:
        assert im.getexif()[ORIENTATION] == value  # Pillow reads the same structure


@pytest.mark.parametrize("value", range(1, 9))
def test_orientation_as_pillow_writes_it(value: int) -> None:
    assert exif_orientation(_exif_jpeg(value)) == value


def test_ifd0_may_lie_anywhere_and_the_tag_may_be_a_long() -> None:
    """An IFD0 after padding; Orientation as LONG, which Pillow also reads."""
    entries = [(ORIENTATION, 4, 1, struct.pack(">I", 8))]
    data = _with_segment(_app1(b"Exif\x00\x00" + _tiff(">", entries, ifd=20)))
    assert exif_orientation(data) == 8
    with Image.open(io.BytesIO(data)) as im:
        assert im.getexif()[ORIENTATION] == 8


def test_exif_after_other_segments_counts_and_the_first_exif_wins() -> None:
    """Segments before the scan are walked in order (stray bytes skipped as libjpeg does);
    the first Exif APP1 is the one Pillow reads too."""
    six, three = exif_orientation_segment(6), exif_orientation_segment(3)
    comment = b"\xff\xfe\x00\x07hello"
    data = _with_segment(comment + b"\x00\x00" + six + b"\xff\xff" + three)
    assert exif_orientation(data) == 6
    with Image.open(io.BytesIO(data)) as im:
        assert im.getexif()[ORIENTATION] == 6


@pytest.mark.parametrize(
    "data",
    [
        PLAIN,
        _exif_jpeg(None),
        _with_segment(_app1(b"Exif\x00\x00" + _tiff("<", [(0x010F, 2, 4, b"Cam\x00")]))),
        _with_segment(_app1(b"http://ns.adobe.com/xap/1.0/\x00<x:xmpmeta/>")),  # XMP, not EXIF
        PLAIN[:-2] + exif_orientation_segment(6) + EOI,  # after the scan: image data, unread
    ],
    ids=["no-app1", "no-exif", "no-tag", "xmp", "after-scan"],
)
def test_absent(data: bytes) -> None:
    assert exif_orientation(data) is None


def _exif_6(order: str = ">") -> bytes:
    return b"Exif\x00\x00" + _tiff(order, [(ORIENTATION, 3, 1, _short(order, 6))])


MALFORMED = {
    "empty": b"",
    "not-a-jpeg": encode(_picture(8, 8), "PNG"),
    "soi-only": SOI,
    "tiff-header-cut": _with_segment(_app1(b"Exif\x00\x00MM\x00*\x00\x00")),
    "bad-byte-order": _with_segment(_app1(_exif_6().replace(b"MM\x00*", b"MI\x00*"))),
    "bad-magic": _with_segment(_app1(_exif_6().replace(b"MM\x00*", b"MM\x00+"))),
    "ifd-past-end": _with_segment(_app1(b"Exif\x00\x00MM\x00*\x7f\xff\xff\xff")),
    "ifd-outside-segment": _with_segment(_app1(_exif_6()[:-16]) + _exif_6()[-16:]),
    "entries-cut": _with_segment(_app1(_exif_6()[:-10])),
    "ascii-type": _with_segment(
        _app1(b"Exif\x00\x00" + _tiff(">", [(ORIENTATION, 2, 2, b"6\x00\x00\x00")]))
    ),
    "two-values": _with_segment(
        _app1(b"Exif\x00\x00" + _tiff(">", [(ORIENTATION, 3, 2, b"\x00\x06\x00\x06")]))
    ),
    "segment-past-end": SOI + b"\xff\xe1\x00\x40" + _exif_6(),
    "segment-length-0": SOI + b"\xff\xe1\x00\x00" + _exif_6(),
}


@pytest.mark.parametrize("key", sorted(MALFORMED))
def test_malformed_exif_is_none_not_an_error(key: str) -> None:
    assert exif_orientation(MALFORMED[key]) is None


def test_an_overstated_entry_count_reads_the_entries_there_are() -> None:
    """As Pillow does: the entries before the end of the segment count, the rest are missing."""
    entries = [(0x010F, 2, 4, b"Cam\x00"), (ORIENTATION, 3, 1, _short(">", 6))]
    tiff = bytearray(_tiff(">", entries))[:-4]  # no next-IFD offset either
    tiff[8:10] = struct.pack(">H", 40)
    data = _with_segment(_app1(b"Exif\x00\x00" + tiff))
    assert exif_orientation(data) == 6
    with pytest.warns(UserWarning, match="Corrupt EXIF"), Image.open(io.BytesIO(data)) as im:
        assert im.getexif().get(ORIENTATION) == 6
    cut = _with_segment(_app1(b"Exif\x00\x00" + tiff[:-12]))  # the tag's entry is cut away
    assert exif_orientation(cut) is None


@pytest.mark.parametrize("value", [0, 9, 0x0600, 0xFFFF])
def test_value_out_of_range(value: int) -> None:
    for order in "<>":
        entries = [(ORIENTATION, 3, 1, _short(order, value))]
        assert (
            exif_orientation(_with_segment(_app1(b"Exif\x00\x00" + _tiff(order, entries)))) is None
        )


def test_any_cut_or_flipped_header_byte_never_raises() -> None:
    data = _exif_jpeg(6)
    header = data.index(b"\xff\xda")
    for cut in range(header + 50):
        assert exif_orientation(data[:cut]) in (None, 6)
    rng = np.random.default_rng(0)
    for _ in range(2000):
        damaged = bytearray(data)
        for at in rng.integers(2, header, 3):
            damaged[at] = int(rng.integers(0, 256))
        assert exif_orientation(bytes(damaged)) in (None, *range(1, 9))


# --- writing ---------------------------------------------------------------------------------


@pytest.mark.parametrize("value", range(1, 9))
def test_inserted_segment_is_read_back_by_pillow_and_by_us(value: int) -> None:
    data = with_exif_orientation(PLAIN, value)
    assert exif_orientation(data) == value
    with Image.open(io.BytesIO(data)) as im:
        exif = im.getexif()
        assert dict(exif) == {ORIENTATION: value}  # the tag and nothing else
        assert im.info["jfif"]  # still a JFIF file
        im.load()
    assert len(data) == len(PLAIN) + 36


def test_jfif_stays_first() -> None:
    data = with_exif_orientation(PLAIN, 6)
    assert _segments(data)[:2] == [0xE0, 0xE1]
    assert data[20:] == exif_orientation_segment(6) + PLAIN[20:]


def test_without_jfif_the_segment_follows_soi() -> None:
    bare = SOI + PLAIN[20:]  # Pillow's JPEG without its JFIF segment
    assert _segments(bare)[0] != 0xE0
    data = with_exif_orientation(bare, 3)
    assert data.startswith(SOI + b"\xff\xe1") and exif_orientation(data) == 3
    with Image.open(io.BytesIO(data)) as im:
        assert im.getexif()[ORIENTATION] == 3


def test_bad_arguments() -> None:
    for value in (0, 9):
        with pytest.raises(ValueError, match=r"1\.\.8"):
            exif_orientation_segment(value)
    with pytest.raises(ValueError, match="not a JPEG"):
        with_exif_orientation(MALFORMED["not-a-jpeg"], 6)


# --- resizing --------------------------------------------------------------------------------


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean())
    return 10 * float(np.log10(255**2 / max(mse, 1e-9)))


def test_resized_copy_keeps_orientation_6_and_shows_upright() -> None:
    """Stored 400x300 landscape, tag 6: the resized copy is stored landscape, tagged 6, and
    shown upright (portrait) by Pillow, as the upright picture resized."""
    upright = _picture(300, 400)
    stored = upright.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[ORIENTATION] = 6
    data = encode(stored, "JPEG", quality=95, exif=exif.tobytes(), icc_profile=b"p" * 100)
    out, width, height = resize_jpeg(data, 400, 300, ResizeSpec(shorter=150), "x.JPEG") or (
        b"",
        0,
        0,
    )
    assert (width, height) == (200, 150)
    assert exif_orientation(out) == 6
    assert _segments(out)[:2] == [0xE0, 0xE1] and _segments(out).count(0xE1) == 1
    with Image.open(io.BytesIO(out)) as im:
        assert im.size == (200, 150) and dict(im.getexif()) == {ORIENTATION: 6}
        assert "icc_profile" not in im.info  # no other metadata comes along
        shown = ImageOps.exif_transpose(im)
    assert shown.size == (150, 200)
    reference = upright.resize((150, 200), Image.Resampling.LANCZOS)
    assert _psnr(np.asarray(shown), np.asarray(reference)) > 35


@pytest.mark.parametrize("value", [1, 3, 8])
def test_resized_copy_keeps_any_valid_orientation(value: int) -> None:
    resized = resize_jpeg(_exif_jpeg(value, (64, 48)), 64, 48, ResizeSpec(shorter=24), "x.JPEG")
    assert resized is not None and exif_orientation(resized[0]) == value


@pytest.mark.parametrize(
    "data",
    [
        _exif_jpeg(None),
        _with_segment(_app1(b"Exif\x00\x00" + _tiff("<", [(0x010F, 2, 4, b"Cam\x00")]))),
        MALFORMED["bad-byte-order"],
        _with_segment(_app1(b"Exif\x00\x00" + _tiff(">", [(ORIENTATION, 3, 1, _short(">", 9))]))),
    ],
    ids=["no-exif", "no-tag", "malformed", "out-of-range"],
)
def test_resized_copy_without_a_valid_tag_has_no_app1(data: bytes) -> None:
    resized = resize_jpeg(data, 64, 48, ResizeSpec(shorter=24), "x.JPEG")
    assert resized is not None
    assert 0xE1 not in _segments(resized[0])
    with Image.open(io.BytesIO(resized[0])) as im:
        assert "exif" not in im.info


def test_an_image_within_the_size_is_not_touched() -> None:
    assert resize_jpeg(_exif_jpeg(6), 64, 48, ResizeSpec(shorter=100), "x.JPEG") is None
