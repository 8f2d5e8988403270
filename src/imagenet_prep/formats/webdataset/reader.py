"""``OUT/webdataset/<split>-*.tar``: samples of ``.cls``, ``.jpg`` and ``.json`` members.

A sample's key is the image's stem with dots and backslashes made ``_``; the key reported
is the original stem, from the JSON's ``filename``, as the other formats report it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ...archive import iter_tar_view
from ...errors import DataError
from ...loaders.readers.base import RawSample, Want, map_file, shard_files, stem
from ...loaders.transforms import Box


class WebDatasetReader:
    """``OUT/webdataset/<split>-*.tar``: samples of ``.cls``, ``.jpg`` and ``.json`` members."""

    format = "webdataset"

    def __init__(
        self, root: Path, split: str, section: dict[str, Any], *, boxes: bool = False
    ) -> None:
        self.split = split
        self.files, self.sizes = shard_files(root, split, section)
        self.boxes = boxes

    def read(
        self, unit: int, start: int, stop: int, want: Want | None = None
    ) -> Iterator[tuple[int, RawSample]]:
        path = self.files[unit]
        view = map_file(path)  # one mapping serves the headers and the samples
        samples: list[tuple[str, dict[str, tuple[int, int]]]] = []
        for m in iter_tar_view(view, path):
            key, _, ext = m.name.rsplit("/", 1)[-1].partition(".")
            if not samples or samples[-1][0] != key:
                samples.append((key, {}))
            samples[-1][1][ext] = (m.offset, m.size)
        if len(samples) != self.sizes[unit]:
            raise DataError(f"{path}: {len(samples)} samples, the manifest says {self.sizes[unit]}")
        for i in range(start, stop):
            if want is None or want(i):
                yield i, self._sample(view, path, *samples[i])

    def _sample(
        self, view: memoryview, path: str, key: str, members: dict[str, tuple[int, int]]
    ) -> RawSample:
        def member(ext: str) -> memoryview:
            if ext not in members:
                raise DataError(f"{path}: sample {key} has no .{ext}")
            offset, size = members[ext]
            if offset + size > len(view):
                raise DataError(f"{path}: sample {key}.{ext}: truncated")
            return view[offset : offset + size]  # the image is not copied

        try:
            label = int(bytes(member("cls")))
            meta = json.loads(bytes(member("json")))
            name = stem(meta["filename"])
            boxes: tuple[Box, ...] = ()
            if self.boxes:
                boxes = tuple(tuple(b) for b in meta["boxes"])
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise DataError(f"{path}: sample {key}: unreadable .cls or .json ({exc})") from None
        return RawSample(name, label, member("jpg"), boxes, path)
