"""The hand-written TFRecord / Example codec: the ImageNet fast path against the general one."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from imagenet_prep.formats.tfrecord import spec as tio


def _general(
    encoded: bytes,
    height: int,
    width: int,
    label: int,
    synset: str,
    text: str,
    filename: str,
    boxes: list[tuple[float, float, float, float]],
) -> bytes:
    """The same Example built by the general encoder from typed features."""
    return tio.encode_example(
        {
            "image/height": tio.Int64List((height,)),
            "image/width": tio.Int64List((width,)),
            "image/colorspace": tio.BytesList((b"RGB",)),
            "image/channels": tio.Int64List((3,)),
            "image/class/label": tio.Int64List((label,)),
            "image/class/synset": tio.BytesList((synset.encode(),)),
            "image/class/text": tio.BytesList((text.encode(),)),
            "image/object/bbox/xmin": tio.FloatList(tuple(b[0] for b in boxes)),
            "image/object/bbox/ymin": tio.FloatList(tuple(b[1] for b in boxes)),
            "image/object/bbox/xmax": tio.FloatList(tuple(b[2] for b in boxes)),
            "image/object/bbox/ymax": tio.FloatList(tuple(b[3] for b in boxes)),
            "image/object/bbox/label": tio.Int64List((label,) * len(boxes)),
            "image/format": tio.BytesList((b"JPEG",)),
            "image/filename": tio.BytesList((filename.encode(),)),
            "image/encoded": tio.BytesList((encoded,)),
        }
    )


# Sizes on each side of the varint widths (1, 2, 3 and 4 bytes) of the image and the
# lengths that contain it; a long file name; heights past the small-varint table.
CASES = [
    (b"", 1, 1, 1, [], "a.JPEG"),
    (b"\xff" * 100, 500, 375, 1000, [(0.1, 0.2, 0.3, 0.4)], "n01440764_10026.JPEG"),
    (b"j" * 16_300, 16_383, 16_384, 7, [(0.0, 0.0, 1.0, 1.0)] * 3, "x" * 200 + ".JPEG"),
    (b"j" * 16_384, 20_000, 2, 12, [], "n1.JPEG"),
    (b"j" * 2_097_100, 3, 4, 5, [(0.5, 0.25, 0.75, 1.0)] * 2, "big.JPEG"),
    (b"j" * 2_097_152, 640, 480, 300, [(0.1, 0.1, 0.9, 0.9)] * 40, "bigger.JPEG"),
]


@pytest.mark.parametrize(("encoded", "height", "width", "label", "boxes", "filename"), CASES)
def test_fast_path_equals_general_encoder(
    encoded: bytes,
    height: int,
    width: int,
    label: int,
    boxes: list[tuple[float, float, float, float]],
    filename: str,
) -> None:
    parts = tio.encode_imagenet_example_parts(
        encoded=encoded,
        height=height,
        width=width,
        label=label,
        synset="n01440764",
        text="tench, Tinca tinca",
        filename=filename,
        boxes=boxes,
    )
    assert parts[1] is encoded  # the image bytes are not copied
    data = b"".join(parts)
    assert data == _general(
        encoded, height, width, label, "n01440764", "tench, Tinca tinca", filename, boxes
    )
    example = tio.decode_example(data)
    assert tio.first_bytes(example, "image/encoded") == encoded
    assert tio.first_int(example, "image/height") == height
    assert len(example["image/object/bbox/xmin"].values) == len(boxes)


@pytest.mark.parametrize("n", [0, 1, 127, 128, 16_383, 16_384, 2_097_151, 2_097_152, 1 << 35])
def test_length_varints(n: int) -> None:
    assert tio._v(n) == tio._varint(n)


def test_framed_parts_read_back(tmp_path: Path) -> None:
    records = [[b"a", b"bc" * 1000, b"d"], [b"only"], [b"", b"x", b""]]
    buf = io.BytesIO()
    sizes = [tio.write_record_parts(buf, parts) for parts in records]
    path = tmp_path / "r.tfrecord"
    path.write_bytes(buf.getvalue())
    assert [d for _o, d in tio.iter_records(path)] == [b"".join(p) for p in records]
    assert sizes == [len(b"".join(p)) + 16 for p in records]


@pytest.mark.parametrize("case", range(len(CASES)))
def test_fast_field_reader_equals_the_codec(case: int) -> None:
    encoded, height, width, label, boxes, filename = CASES[case]
    data = _general(encoded, height, width, label, "n1", "t", filename, boxes)
    fields = tio.example_fields(memoryview(data), tio.wanted_fields(tio.FEATURES))
    assert fields is not None
    example = tio.decode_example(data)
    assert fields.keys() == example.keys() == set(tio.FEATURES)
    for key, values in fields.items():
        assert [bytes(v) if isinstance(v, memoryview) else v for v in values] == list(
            example[key].values
        ), key
        assert isinstance(example[key], tio.FEATURES[key].kind)
        assert tio.FEATURES[key].per_box or len(values) == 1
    # Cut short, or a wanted feature missing: the fast reader declines, the codec decides.
    assert tio.example_fields(data[: len(data) // 2], tio.wanted_fields([tio.ENCODED])) is None
    other = {**tio.wanted_fields([tio.ENCODED]), b"image/other": tio.BytesList.field}
    assert tio.example_fields(data, other) is None
    with pytest.raises(tio.DataError):
        tio.decode_example(data[: len(data) // 2])


def test_varints_read_back_and_overlong_ones_are_refused() -> None:
    for n in (0, 1, 127, 128, 300, 1 << 35, (1 << 64) - 1):
        data = b"x" + tio._varint(n)
        assert tio.read_varint(data, 1) == (n, len(data))
    with pytest.raises(IndexError):
        tio.read_varint(b"\x80\x80", 0)
    with pytest.raises(tio.DataError, match="malformed varint"):
        tio.read_varint(b"\xff" * 11, 0)


def _shard(tmp_path: Path, records: list[bytes]) -> Path:
    buf = io.BytesIO()
    for data in records:
        tio.write_record(buf, data)
    path = tmp_path / "r.tfrecord"
    path.write_bytes(buf.getvalue())
    return path


def test_the_index_and_slices_of_a_mapped_shard(tmp_path: Path) -> None:
    records = [b"a" * 10, b"", b"c" * 300]
    path = _shard(tmp_path, records)
    index = tio.record_index(path)
    assert index == [(0, 26), (26, 16), (42, 316)]
    view = memoryview(path.read_bytes())
    assert [bytes(tio.record_at(view, o, s, "r", i)) for i, (o, s) in enumerate(index)] == records
    with pytest.raises(tio.DataError, match=r"^r: record 2 at byte 42: truncated record data"):
        tio.record_at(view[:-1], 42, 316, "r", 2)


@pytest.mark.parametrize(
    ("at", "damage", "message"),
    [
        (3, "flip", "record 0 at byte 0: length CRC mismatch"),
        (20, "flip", "record 0 at byte 0: data CRC mismatch"),
        (42 + 5, "cut", "record 2 at byte 42: truncated record header"),
        (42 + 20, "cut", "record 2 at byte 42: truncated record data"),
    ],
)
def test_damage_is_named_by_record_and_byte(
    tmp_path: Path, at: int, damage: str, message: str
) -> None:
    path = _shard(tmp_path, [b"a" * 10, b"", b"c" * 300])
    data = bytearray(path.read_bytes())
    if damage == "flip":
        data[at] ^= 1
    else:
        del data[at:]
    path.write_bytes(bytes(data))
    with pytest.raises(tio.DataError, match=f"^{path}: {message}"):
        list(tio.iter_records(path))
    if "data" not in message:  # the index checks only the headers
        with pytest.raises(tio.DataError, match=f"^{path}: {message}"):
            tio.record_index(path)
    view = memoryview(bytes(data))
    if "data CRC" in message:
        with pytest.raises(tio.DataError, match=f"^{path}: {message}"):
            tio.record_at(view, 0, 26, str(path), 0)
