"""``OUT/webdataset/<split>-*.tar``: samples of ``.cls``, ``.jpg`` and ``.json`` members.

A sample's key is the image's stem with dots and backslashes made ``_``; the key reported
is the original stem, from the JSON's ``filename``, as the other formats report it.

A local shard is memory-mapped; one in an object store is walked front to back with
read-ahead (``loaders.readers.remote``), its members copied out of their blocks.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, cast

from ...archive import iter_tar_stream, iter_tar_view
from ...errors import DataError
from ...loaders.readers.base import RawSample, Want, map_file, shard_files, stem
from ...loaders.readers.remote import ReadAhead, check_objects
from ...loaders.transforms import Box
from ...storage import is_url

Member = Callable[[str], bytes | memoryview]


class WebDatasetReader:
    """``OUT/webdataset/<split>-*.tar``: samples of ``.cls``, ``.jpg`` and ``.json`` members."""

    format = "webdataset"

    def __init__(
        self, root: str | Path, split: str, section: dict[str, Any], *, boxes: bool = False
    ) -> None:
        self.split = split
        self.files, self.sizes, self.nbytes = shard_files(root, split, section)
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

    def _read_remote(
        self, unit: int, start: int, stop: int, want: Want | None
    ) -> Iterator[tuple[int, RawSample]]:
        """Samples ``start:stop`` of a shard in a store, walked front to back; reading to the
        shard's end checks the sample count against the manifest."""
        expected = int(self.sizes[unit])
        if expected == 0:
            return
        with ReadAhead(self.files[unit], self.nbytes[unit]) as f:
            path = f.name
            i, key = 0, ""
            parts: dict[str, bytes] = {}
            for m, data in iter_tar_stream(cast(BinaryIO, f), path):
                name, _, ext = m.name.rsplit("/", 1)[-1].partition(".")
                if parts and name != key:  # the sample before is complete
                    if i >= start and (want is None or want(i)):
                        yield i, self._parse(path, key, self._member(path, key, parts))
                    i += 1
                    if i >= stop:
                        return
                    parts = {}
                key = name
                parts[ext] = data
            if parts:
                if start <= i < stop and (want is None or want(i)):
                    yield i, self._parse(path, key, self._member(path, key, parts))
                i += 1
            if i != expected:
                raise DataError(f"{path}: {i} samples, the manifest says {expected}")

    @staticmethod
    def _member(path: str, key: str, parts: dict[str, bytes]) -> Member:
        def member(ext: str) -> bytes:
            if ext not in parts:
                raise DataError(f"{path}: sample {key} has no .{ext}")
            return parts[ext]

        return member

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

        return self._parse(path, key, member)

    def _parse(self, path: str, key: str, member: Member) -> RawSample:
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
