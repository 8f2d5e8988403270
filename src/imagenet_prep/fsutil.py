"""Atomic file writing: a finished name never holds a half-written file.

Every function here takes a local path or, for an output in an object store, the store's
path object (:func:`~imagenet_prep.storage.as_location`): locally a file is written under a
temporary name and renamed; in a store an object is one PUT or a multipart upload completed
last (:class:`~imagenet_prep.storage.Store`), which no reader sees before it is complete.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import xxhash

from .errors import DataError
from .storage import is_url, open_store

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

    On an exception the temporary file is removed and nothing appears at ``path``. In an
    object store: a multipart upload, completed on success and aborted on an exception.
    """
    if is_url(path):
        url = str(path)
        with open_store(url).writer(url) as out:
            yield out
        return
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


def write_bytes_atomic(path: Path, data: bytes | bytearray) -> None:
    """Write ``data`` to ``path`` through a temporary name (in a store: one PUT)."""
    if is_url(path):
        open_store(str(path)).put(str(path), bytes(data))
        return
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
        # A local file gets writev; a store's upload (no descriptor) one write per flush.
        self._fd = f.fileno() if _has_fd(f) else -1
        self._file = f
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
        if self._fd < 0:
            if pending:
                self._file.write(b"".join(pending))
            return
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


def _has_fd(f: BinaryIO) -> bool:
    try:
        f.fileno()
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is both
        return False
    return True


def hash_file(path: Path, chunk: int = 1 << 20) -> tuple[int, str]:
    """Return ``(size, xxh3_128 hex digest)`` of a file (or an object), read in chunks."""
    h = xxhash.xxh3_128()
    size = 0
    if is_url(path):
        url = str(path)
        with open_store(url).stream(url) as stream:
            while block := stream.read(chunk << 4):
                h.update(block)
                size += len(block)
        return size, h.hexdigest()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
            size += len(block)
    return size, h.hexdigest()


def xxh3_of(data: bytes | bytearray) -> str:
    """XXH3-128 hex digest of ``data``, the checksum the manifest uses."""
    return xxhash.xxh3_128_hexdigest(data)


def read_bytes(path: Path) -> bytes | None:
    """The whole file (or object) at ``path``; None when there is none."""
    if is_url(path):
        url = str(path)
        store = open_store(url)
        try:
            return store.read(url)
        except DataError:
            if store.exists(url):
                raise
            return None
    try:
        with open(path, "rb") as f:
            return f.read()
    except (FileNotFoundError, NotADirectoryError):
        return None


def file_size(path: Path) -> int | None:
    """The size of the file (or object) at ``path``; None when there is none."""
    if is_url(path):
        url = str(path)
        store = open_store(url)
        try:
            return store.info(url).size
        except DataError:
            if store.exists(url):
                raise
            return None
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return st.st_size if stat.S_ISREG(st.st_mode) else None


def remove_file(path: Path) -> None:
    """Delete the file (or object) at ``path``, if there is one."""
    if is_url(path):
        url = str(path)
        store = open_store(url)
        if store.exists(url):
            store.delete(url)
        return
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def sizes_under(root: Path) -> dict[str, int]:
    """The size of every object under the prefix ``root``, by name relative to it (a few
    listing requests, where asking each object would be one request apiece)."""
    url = str(root).rstrip("/")
    return {o.url[len(url) + 1 :]: o.size for o in open_store(url).tree(url)}


def files_under(root: Path) -> list[str]:
    """Every file (object) under the folder (prefix) ``root``, relative to it, sorted; none
    when it is absent. Symbolic links to folders are named, not followed."""
    if is_url(root):
        url = str(root).rstrip("/")
        return sorted(o.url[len(url) + 1 :] for o in open_store(url).tree(url))
    found: list[str] = []
    for dirpath, dirs, files in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        names = files + [d for d in dirs if os.path.islink(os.path.join(dirpath, d))]
        found.extend(name if rel == "." else f"{rel}/{name}".replace(os.sep, "/") for name in names)
    return sorted(found)


def remove_tree(root: Path) -> None:
    """Delete the folder (every object under the prefix) ``root``."""
    if is_url(root):
        url = str(root).rstrip("/")
        open_store(url).delete_tree(url)
        return
    shutil.rmtree(root, ignore_errors=True)
