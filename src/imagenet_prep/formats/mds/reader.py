"""``OUT/mds/<split>/shard.*.mds``: MDS samples, sliced out of the memory-mapped shard."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import DataError
from ...loaders.readers.base import RawSample, Want, map_file
from ...loaders.transforms import Box
from . import spec as mds
from .writer import DIRNAME, by_split


class MDSReader:
    """``OUT/mds/<split>/shard.*.mds``: columns ``x`` (the JPEG), ``y``, ``key``, ``boxes``."""

    format = "mds"

    def __init__(
        self, root: Path, split: str, section: dict[str, Any], *, boxes: bool = False
    ) -> None:
        self.split = split
        shards = by_split(s for s in section["shards"] if s["file"].startswith(f"{DIRNAME}/"))
        mine = shards.get(split, [])
        self.files = [str(root / s["file"]) for s in mine]
        self.sizes = np.array([int(s["records"]) for s in mine], dtype=np.int64)
        self.boxes = boxes

    def read(
        self, unit: int, start: int, stop: int, want: Want | None = None
    ) -> Iterator[tuple[int, RawSample]]:
        path = self.files[unit]
        view = map_file(path)
        offsets = mds.sample_offsets(view, path)
        if len(offsets) - 1 != self.sizes[unit]:
            raise DataError(
                f"{path}: {len(offsets) - 1} samples, the manifest says {self.sizes[unit]}"
            )
        for i in range(start, stop):
            if want is None or want(i):
                yield i, self._sample(view[offsets[i] : offsets[i + 1]], path, i)

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
