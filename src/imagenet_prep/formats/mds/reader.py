"""``OUT/mds/<split>/shard.*.mds``: MDS samples, sliced out of the memory-mapped shard, or
for a shard in an object store read with read-ahead (``loaders.readers.remote``): its
offsets first, then the samples asked for, front to back."""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import DataError
from ...loaders.readers.base import RawSample, Want, map_file, shard_list
from ...loaders.readers.remote import ReadAhead, check_objects
from ...loaders.transforms import Box
from ...storage import is_url
from . import spec as mds
from .writer import DIRNAME, by_split


class MDSReader:
    """``OUT/mds/<split>/shard.*.mds``: columns ``x`` (the JPEG), ``y``, ``key``, ``boxes``."""

    format = "mds"

    def __init__(
        self, root: str | Path, split: str, section: dict[str, Any], *, boxes: bool = False
    ) -> None:
        self.split = split
        shards = by_split(s for s in section["shards"] if s["file"].startswith(f"{DIRNAME}/"))
        self.files, self.sizes, self.nbytes = shard_list(str(root), shards.get(split, []))
        self.boxes = boxes
        self.remote = is_url(root)
        if self.remote:
            check_objects(self.files, self.nbytes)

    def read(
        self, unit: int, start: int, stop: int, want: Want | None = None
    ) -> Iterator[tuple[int, RawSample]]:
        path = self.files[unit]
        if self.remote:
            yield from self._read_remote(unit, start, stop, want)
            return
        view = map_file(path)
        offsets = mds.sample_offsets(view, path)
        if len(offsets) - 1 != self.sizes[unit]:
            raise DataError(
                f"{path}: {len(offsets) - 1} samples, the manifest says {self.sizes[unit]}"
            )
        for i in range(start, stop):
            if want is None or want(i):
                yield i, self._sample(view[offsets[i] : offsets[i + 1]], path, i)

    def _read_remote(
        self, unit: int, start: int, stop: int, want: Want | None
    ) -> Iterator[tuple[int, RawSample]]:
        expected = int(self.sizes[unit])
        with ReadAhead(self.files[unit], self.nbytes[unit]) as f:
            offsets = _offsets(f.read(4 + 4 * (expected + 1)), expected, f.size, f.name)
            for i in range(start, stop):
                if want is None or want(i):
                    f.seek(int(offsets[i]))
                    data = f.read(int(offsets[i + 1] - offsets[i]))
                    yield i, self._sample(memoryview(data), f.name, i)

    def _sample(self, data: memoryview, path: str, i: int) -> RawSample:
        where = f"{path}: sample {i}"
        col = mds.columns(data, where)
        try:
            boxes: tuple[Box, ...] = ()
            if self.boxes:
                boxes = tuple(tuple(b) for b in json.loads(bytes(col["boxes"])))
            key, label = mds.as_str(col["key"]), mds.as_int(col["y"])
        except (ValueError, TypeError) as exc:
            raise DataError(f"{where}: unreadable key, class or boxes ({exc})") from None
        return RawSample(key, label, col["x"], boxes, path)  # x: a view, not a copy


def _offsets(head: bytes, expected: int, size: int, where: str) -> np.ndarray:
    """The ``expected + 1`` sample offsets at the start (``head``) of a shard of ``size``
    bytes, checked as ``spec.sample_offsets`` checks a whole shard's."""
    if len(head) < 4:
        raise DataError(f"{where}: {size} bytes, too short for an MDS shard")
    (n,) = struct.unpack_from("<I", head)
    if n != expected:
        raise DataError(f"{where}: {n} samples, the manifest says {expected}")
    end = 4 + 4 * (n + 1)
    if len(head) < end:
        raise DataError(f"{where}: {n} samples, but the file ends inside their offsets")
    offsets = np.frombuffer(head, dtype="<u4", count=n + 1, offset=4).astype(np.int64)
    if offsets[0] < end or offsets[-1] != size or np.any(np.diff(offsets) < 0):
        raise DataError(f"{where}: sample offsets out of order or not ending at the file's end")
    return offsets
