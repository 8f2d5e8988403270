"""``OUT/tfrecord/<split>-*``: the inception Examples, parsed without TensorFlow."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ... import tfrecord_io
from ...errors import DataError
from .base import RawSample, Want, map_file, shard_files, stem


class TFRecordReader:
    """``OUT/tfrecord/<split>-*``: the inception Examples, parsed without TensorFlow."""

    format = "tfrecord"

    def __init__(
        self, root: Path, split: str, section: dict[str, Any], *, boxes: bool = False
    ) -> None:
        self.split = split  # boxes: the records always carry them, at no cost
        self.files, self.sizes = shard_files(root, split, section)
        self.label_offset = int(section.get("label_offset", 1))

    def read(
        self, unit: int, start: int, stop: int, want: Want | None = None
    ) -> Iterator[tuple[int, RawSample]]:
        path = self.files[unit]
        index = tfrecord_io.record_index(path)
        if len(index) != self.sizes[unit]:
            raise DataError(f"{path}: {len(index)} records, the manifest says {self.sizes[unit]}")
        view = map_file(path)
        for i in range(start, stop):
            if want is not None and not want(i):
                continue
            offset, size = index[i]
            end = offset + size
            if end > len(view):
                raise DataError(f"{path}: record {i} at byte {offset}: truncated")
            # The header's length CRC was checked by record_index; this is the data's.
            data = view[offset + 12 : end - 4]
            if tfrecord_io.masked_crc32c(data) != int.from_bytes(view[end - 4 : end], "little"):
                raise DataError(f"{path}: record {i} at byte {offset}: data CRC mismatch")
            yield i, self._sample(data, path, f"{path}: record {i}")

    def _sample(self, data: memoryview, path: str, where: str) -> RawSample:
        try:
            fields = _example_fields(data)
        except (IndexError, ValueError):
            fields = None
        try:
            if fields is None:  # not laid out as expected: the general codec decides
                return self._sample_slow(data, path)
            return RawSample(
                stem(str(fields["image/filename"][0], "utf-8")),
                fields["image/class/label"][0] - self.label_offset,
                fields["image/encoded"][0],
                tuple(
                    zip(
                        *(
                            fields[f"image/object/bbox/{k}"]
                            for k in ("xmin", "ymin", "xmax", "ymax")
                        ),
                        strict=True,
                    )
                ),
                path,
            )
        except (DataError, ValueError, KeyError, IndexError, TypeError, UnicodeDecodeError) as exc:
            raise DataError(f"{where}: {exc}") from None

    def _sample_slow(self, data: memoryview, path: str) -> RawSample:
        ex = tfrecord_io.decode_example(bytes(data))
        coords = [ex.get(f"image/object/bbox/{k}") for k in ("xmin", "ymin", "xmax", "ymax")]
        boxes = tuple(zip(*(c.values for c in coords if c is not None), strict=True))
        return RawSample(
            stem(tfrecord_io.first_bytes(ex, "image/filename").decode("utf-8")),
            tfrecord_io.first_int(ex, "image/class/label") - self.label_offset,
            tfrecord_io.first_bytes(ex, "image/encoded"),
            boxes if len(boxes) and len(boxes[0]) == 4 else (),
            path,
        )


_WANTED = {
    b"image/encoded": 1,
    b"image/filename": 1,
    b"image/class/label": 3,
    b"image/object/bbox/xmin": 2,
    b"image/object/bbox/ymin": 2,
    b"image/object/bbox/xmax": 2,
    b"image/object/bbox/ymax": 2,
}


def _varint(data: bytes | memoryview, pos: int) -> tuple[int, int]:
    byte = data[pos]
    if byte < 0x80:
        return byte, pos + 1
    result, shift = byte & 0x7F, 7
    while True:
        pos += 1
        byte = data[pos]
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos + 1
        shift += 7


def _example_fields(data: bytes | memoryview) -> dict[str, list[Any]] | None:
    """The loader's features of a serialized Example, or None when it is laid out otherwise.

    Reads only what the loader needs and skips the other features' values: about a tenth
    of the general codec's time. Anything unusual (unpacked lists, other wire types)
    returns None, and the general codec (``tfrecord_io.decode_example``) takes over.
    """
    if data[0] != 0x0A:
        return None
    length, pos = _varint(data, 1)
    end = pos + length
    view = memoryview(data)
    out: dict[str, list[Any]] = {}
    while pos < end:
        if data[pos] != 0x0A:
            return None
        length, pos = _varint(data, pos + 1)
        entry_end = pos + length
        length = data[pos + 1]  # the key: short, so its length is one byte
        if data[pos] != 0x0A or length >= 0x80:
            return None
        pos += 2
        key = bytes(data[pos : pos + length])
        pos += length
        kind = _WANTED.get(key)
        if kind is not None:
            if data[pos] != 0x12:
                return None
            _, pos = _varint(data, pos + 1)  # the Feature's length
            tag = data[pos]
            length, pos = _varint(data, pos + 1)  # the list's length
            list_end = pos + length
            if tag != kind << 3 | 2:
                return None
            values: list[Any] = []
            while pos < list_end:
                if data[pos] != 0x0A:
                    return None
                length, pos = _varint(data, pos + 1)
                if kind == 1:
                    values.append(view[pos : pos + length])  # no copy of the image
                elif kind == 2:
                    values.extend(struct.unpack_from(f"<{length // 4}f", data, pos))
                else:
                    stop = pos + length
                    while pos < stop:
                        value, pos = _varint(data, pos)
                        values.append(value - (1 << 64) if value >= 1 << 63 else value)
                    continue
                pos += length
            out[key.decode("ascii")] = values
        pos = entry_end
    return out if len(out) == len(_WANTED) else None
