"""What every format's reader shares: the raw sample, the reader protocol, file helpers.

A reader's ``root`` is a local folder or a URL (``s3://bucket/out``): its names are strings
either way, joined by ``remote.join``; a local shard is memory-mapped, one in a store read by
``remote.ReadAhead``.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import numpy as np

from ...errors import DataError
from ..transforms import Box
from .remote import join

Want = Callable[[int], bool]


class RawSample(NamedTuple):
    """One record before decoding."""

    key: str
    label: int
    data: bytes | memoryview  # TFRecords: a view into the record, not a copy
    boxes: tuple[Box, ...]
    source: str = ""  # the shard or file it came from, for error messages


class Reader(Protocol):
    """The split of one format, as units of records."""

    format: str
    split: str
    sizes: np.ndarray  # records per unit, in the split's own order

    def read(
        self, unit: int, start: int, stop: int, want: Want | None = None
    ) -> Iterator[tuple[int, RawSample]]: ...


class Shards(NamedTuple):
    """A split's shards: their paths (or URLs), record counts and sizes in bytes (-1: the
    manifest does not say)."""

    files: list[str]
    records: np.ndarray
    nbytes: list[int]


def shard_list(root: str, entries: Iterable[dict[str, Any]]) -> Shards:
    """The shards of manifest ``entries`` (in their order) under ``root``."""
    entries = list(entries)
    return Shards(
        [join(root, s["file"]) for s in entries],
        np.array([int(s["records"]) for s in entries], dtype=np.int64),
        [int(s.get("bytes", -1)) for s in entries],
    )


def shard_files(root: str | Path, split: str, section: dict[str, Any]) -> Shards:
    """The split's shards (sorted by name), from a format's manifest section."""
    shards = sorted(
        (s for s in section["shards"] if Path(s["file"]).name.startswith(f"{split}-")),
        key=lambda s: str(s["file"]),
    )
    return shard_list(str(root), shards)


def stem(filename: str) -> str:
    """A file name without its extension: the sample's key.

    >>> stem("n01440764_10026.JPEG")
    'n01440764_10026'
    """
    return filename.rsplit(".", 1)[0] if "." in filename else filename


def map_file(path: str) -> memoryview:
    """A whole file, memory-mapped: records are sliced out of it, never copied.

    The mapping lives as long as a slice of it does (a record waiting in a shuffle buffer);
    the file itself is closed at once.
    """
    try:
        with open(path, "rb") as f:
            if os.fstat(f.fileno()).st_size == 0:
                return memoryview(b"")
            return memoryview(mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ))
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror})") from None
