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
    """Gather writes to an unbuffered file, count them and hash them with XXH3-128.

    Written buffers are kept (not copied) and go out together with one ``writev`` once
    about ``limit`` bytes are pending, and on :meth:`flush`: a record's small header,
    its image bytes and its footer cost no copy in user space and no syscall each.
    Buffers must not change after they are given (``bytes`` never do; others are copied).
    """

    def __init__(self, f: BinaryIO, limit: int = 1 << 20) -> None:
        self._fd = f.fileno()
        self._hash = xxhash.xxh3_128()
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._limit = limit
        self.nbytes = 0

    def write(self, data: bytes | bytearray | memoryview) -> int:
        if type(data) is not bytes:
            data = bytes(data)
        n = len(data)
        self._hash.update(data)
        self._pending.append(data)
        self._pending_bytes += n
        self.nbytes += n
        if self._pending_bytes >= self._limit:
            self.flush()
        return n

    def flush(self) -> None:
        """Write every pending buffer (in IOV_MAX groups, resuming after short writes)."""
        pending: list[bytes | memoryview] = list(self._pending)
        self._pending.clear()
        self._pending_bytes = 0
        while pending:
            group = pending[:_IOV_MAX]
            written = os.writev(self._fd, group)
            done = 0
            while done < len(group) and written >= len(group[done]):
                written -= len(group[done])
                done += 1
            del pending[:done]
            if written:
                pending[0] = memoryview(pending[0])[written:]

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


_IOV_MAX = os.sysconf("SC_IOV_MAX") if hasattr(os, "sysconf") else 1024


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
