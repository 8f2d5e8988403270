"""``OUT/webdataset/<split>-*.tar``: samples of ``.cls``, ``.jpg`` and ``.json`` members."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ...errors import DataError
from ..transforms import Box
from .base import RawSample, Want, map_file, shard_files


def _octal(field: bytes) -> int:
    if field[:1] == b"\x80":  # GNU base-256 for sizes of 8 GiB and more
        return int.from_bytes(field[1:], "big")
    text = field.split(b"\0", 1)[0].strip()
    return int(text, 8) if text else 0


def tar_members(view: memoryview, where: str) -> Iterator[tuple[str, int, int]]:
    """(name, data offset, size) of each regular file of a tar: ustar, GNU long names, pax.

    ``view`` is the mapped file: only the 512-byte headers are read, each at its offset;
    the data is not touched.
    """
    pos = 0
    long_name: str | None = None
    while True:
        header = bytes(view[pos : pos + 512])
        if not header.strip(b"\0"):
            return
        if len(header) < 512:
            raise DataError(f"{where}: truncated tar header at byte {pos}")
        try:
            size = _octal(header[124:136])
        except ValueError:
            raise DataError(f"{where}: damaged tar header at byte {pos}") from None
        kind = header[156:157]
        data_at = pos + 512
        pos = data_at + (size + 511) // 512 * 512
        if kind in (b"L", b"x"):
            payload = bytes(view[data_at : data_at + size])
            if len(payload) < size:
                raise DataError(f"{where}: truncated: {size} bytes expected at byte {data_at}")
            if kind == b"L":
                long_name = payload.rstrip(b"\0").decode("utf-8")
            else:
                for line in payload.decode("utf-8").splitlines():
                    _, _, record = line.partition(" ")
                    field, _, value = record.partition("=")
                    if field == "path":
                        long_name = value
            continue
        if kind not in (b"0", b"\0", b"7"):
            long_name = None
            continue
        name = long_name
        long_name = None
        if name is None:
            name = header[:100].split(b"\0", 1)[0].decode("utf-8")
            if header[257:262] == b"ustar" and header[345] != 0:
                name = header[345:500].split(b"\0", 1)[0].decode("utf-8") + "/" + name
        yield name, data_at, size


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
        for name, offset, size in tar_members(view, path):
            key, _, ext = name.rsplit("/", 1)[-1].partition(".")
            if not samples or samples[-1][0] != key:
                samples.append((key, {}))
            samples[-1][1][ext] = (offset, size)
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
            boxes: tuple[Box, ...] = ()
            if self.boxes:
                boxes = tuple(tuple(b) for b in json.loads(bytes(member("json")))["boxes"])
        except (ValueError, KeyError, TypeError) as exc:
            raise DataError(f"{path}: sample {key}: unreadable .cls or .json ({exc})") from None
        return RawSample(key, label, member("jpg"), boxes)
