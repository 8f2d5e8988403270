"""``OUT/tfrecord/<split>-*``: the inception Examples, parsed without TensorFlow."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ...errors import DataError
from ...loaders.readers.base import RawSample, Want, map_file, shard_files, stem
from . import spec as tfrecord_io
from .spec import BOX, ENCODED, FILENAME, LABEL

# The features a sample is made of, for the fast parser (``tfrecord_io.example_fields``).
FIELDS = tfrecord_io.wanted_fields((ENCODED, FILENAME, LABEL, *BOX))


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
            data = tfrecord_io.record_at(view, offset, size, path, i)
            yield i, self._sample(data, path, i)

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
