"""The hand-written TFRecord / Example codec: the ImageNet fast path against the general one."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from imagenet_prep import tfrecord_io as tio


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
