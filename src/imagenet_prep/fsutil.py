"""Atomic file writing: a finished name never holds a half-written file."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import xxhash

TMP_SUFFIX = ".incomplete"


def temp_name(path: Path) -> Path:
    """The name a file is written under before it is renamed to ``path``.

    >>> temp_name(Path("out/tfrecord/train-00000-of-00001")).as_posix()
    'out/tfrecord/.train-00000-of-00001.incomplete'
    """
    return path.with_name(f".{path.name}{TMP_SUFFIX}")


@contextlib.contextmanager
def atomic_open(path: Path) -> Iterator[BinaryIO]:
    """Open ``path`` for binary writing under a temporary name; rename it on success.

    On an exception the temporary file is removed and nothing appears at ``path``.
    """
    tmp = temp_name(path)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    f = open(tmp, "wb")  # noqa: SIM115 - closed below on every path
    try:
        yield f
        f.close()
        os.replace(tmp, path)
    except BaseException:
        f.close()
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary name."""
    with atomic_open(path) as f:
        f.write(data)


class HashingWriter:
    """Wrap a binary file: count the bytes written and hash them with XXH3-128."""

    def __init__(self, f: BinaryIO) -> None:
        self._f = f
        self._hash = xxhash.xxh3_128()
        self.nbytes = 0

    def write(self, data: bytes | bytearray | memoryview) -> int:
        self._hash.update(data)
        self.nbytes += len(data)
        return self._f.write(data)

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


def hash_file(path: Path, chunk: int = 1 << 20) -> tuple[int, str]:
    """Return ``(size, xxh3_128 hex digest)`` of a file, read in chunks."""
    h = xxhash.xxh3_128()
    size = 0
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
            size += len(block)
    return size, h.hexdigest()


def xxh3_of(data: bytes) -> str:
    """XXH3-128 hex digest of ``data``, the checksum the manifest uses."""
    return xxhash.xxh3_128_hexdigest(data)
