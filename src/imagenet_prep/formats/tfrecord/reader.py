"""``OUT/tfrecord/<split>-*``: the inception Examples, parsed without TensorFlow.

A local shard is memory-mapped and indexed; one in an object store is read front to back
with read-ahead (``loaders.readers.remote``), each record copied out of its block.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ...errors import DataError
from ...loaders.readers.base import RawSample, Want, map_file, shard_files, stem
from ...loaders.readers.remote import ReadAhead, check_objects
from ...storage import is_url, redact
from . import spec as tfrecord_io
from .spec import BOX, ENCODED, FILENAME, FRAME_SIZE, HEADER_SIZE, LABEL

# The features a sample is made of, for the fast parser (``tfrecord_io.example_fields``).
FIELDS = tfrecord_io.wanted_fields((ENCODED, FILENAME, LABEL, *BOX))


class TFRecordReader:
    """``OUT/tfrecord/<split>-*``: the inception Examples, parsed without TensorFlow."""

    format = "tfrecord"

    def __init__(
        self, root: str | Path, split: str, section: dict[str, Any], *, boxes: bool = False
    ) -> None:
        self.split = split  # boxes: the records always carry them, at no cost
        self.files, self.sizes, self.nbytes = shard_files(root, split, section)
        self.label_offset = int(section.get("label_offset", 1))
        self.remote = is_url(root)
        if self.remote:
            check_objects(self.files, self.nbytes)

    def read(
        self, unit: int, start: int, stop: int, want: Want | None = None
    ) -> Iterator[tuple[int, RawSample]]:
        path = self.files[unit]
        if self.remote:
            name = redact(path)
            for i, data in self.records(unit, start, stop, want):
                yield i, self._sample(data, name, i)
            return
        index = tfrecord_io.record_index(path)
        if len(index) != self.sizes[unit]:
            raise DataError(f"{path}: {len(index)} records, the manifest says {self.sizes[unit]}")
        view = map_file(path)
        for i in range(start, stop):
            if want is not None and not want(i):
                continue
            offset, size = index[i]
            data = tfrecord_io.record_at(view, offset, size, path, i)
            yield i, self._sample(data, path, i)

    def records(
        self, unit: int, start: int, stop: int, want: Want | None = None
    ) -> Iterator[tuple[int, memoryview]]:
        """The data of records ``start:stop`` of a shard in an object store (those ``want``
        refuses are skipped, not copied), their CRCs checked; reading to the shard's end
        checks the record count against the manifest. (A local shard is mapped by ``read``.)"""
        path, expected = self.files[unit], int(self.sizes[unit])
        with ReadAhead(path, self.nbytes[unit]) as f:
            offset = 0
            for i in range(stop):
                header = f.read(HEADER_SIZE)
                if not header:
                    raise DataError(f"{f.name}: {i} records, the manifest says {expected}")
                length = tfrecord_io.read_header(header, f.name, i, offset)
                if i < start or (want is not None and not want(i)):
                    f.skip(length + 4)
                else:
                    body = f.read(length + 4)
                    if len(body) < length + 4:
                        raise DataError(
                            f"{f.name}: record {i} at byte {offset}: truncated record data "
                            f"({length} bytes expected)"
                        )
                    data = memoryview(body)[:length]
                    tfrecord_io.check_data(data, body[length:], f.name, i, offset)
                    yield i, data
                offset += length + FRAME_SIZE
            if stop == expected and offset < f.size:
                raise DataError(f"{f.name}: more than the {expected} records the manifest says")

    def _sample(self, data: memoryview, path: str, i: int) -> RawSample:
        fields = tfrecord_io.example_fields(data, FIELDS)
        try:
            if fields is None:  # not laid out as expected: the general codec decides
                return self._sample_slow(data, path)
            return RawSample(
                stem(str(fields[FILENAME][0], "utf-8")),
                fields[LABEL][0] - self.label_offset,
                fields[ENCODED][0],
                tuple(zip(*(fields[k] for k in BOX), strict=True)),
                path,
            )
        except (DataError, ValueError, KeyError, IndexError, TypeError, UnicodeDecodeError) as exc:
            raise DataError(f"{path}: record {i}: {exc}") from None

    def _sample_slow(self, data: memoryview, path: str) -> RawSample:
        ex = tfrecord_io.decode_example(bytes(data))
        coords = [ex.get(k) for k in BOX]
        boxes = tuple(zip(*(c.values for c in coords if c is not None), strict=True))
        return RawSample(
            stem(tfrecord_io.first_bytes(ex, FILENAME).decode("utf-8")),
            tfrecord_io.first_int(ex, LABEL) - self.label_offset,
            tfrecord_io.first_bytes(ex, ENCODED),
            boxes if len(boxes) and len(boxes[0]) == 4 else (),
            path,
        )
