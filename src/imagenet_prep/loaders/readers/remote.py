"""Shards in an object store (``s3://``, ``gs://``, any fsspec URL), read for training.

A local shard is memory-mapped (``base.map_file``); an object cannot be, and every request
costs a round trip, so a shard in a store is read front to back by :class:`ReadAhead`: ranged
GETs of ``BLOCK`` (64 MiB) bytes, the next block fetched in a background thread while
the reader parses the current one, so the network and the decoding overlap. A worker so holds
at most two blocks of a shard (128 MiB), whatever the shard's size, plus the records it has
handed out (copies, each only as large as its record: never a view into a block, which
would keep the block alive in a shuffle buffer).

Names stay strings (URLs) so that readers pickle cheaply into worker processes; each process
opens its own client (``storage.open_store`` keeps one per protocol and process).
"""

from __future__ import annotations

import posixpath
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType

from ...errors import DataError
from ...storage import STREAM_BLOCK, is_url, open_store, redact

__all__ = ["BLOCK", "ReadAhead", "check_objects", "join", "read_object"]

#: The size of a ranged GET of a shard: the build's sequential reads' (16 requests per GB).
BLOCK = STREAM_BLOCK


def join(root: str, relpath: str) -> str:
    """``relpath`` (``/``-separated) under ``root``, a local folder or a URL.

    >>> join("s3://bucket/out/", "tfrecord/train-00000-of-00004")
    's3://bucket/out/tfrecord/train-00000-of-00004'
    >>> join("/data/out", "mds/train/shard.00000.mds")
    '/data/out/mds/train/shard.00000.mds'
    """
    if is_url(root):
        return f"{root.rstrip('/')}/{relpath}"
    return posixpath.join(root, relpath)


def read_object(url: str) -> bytes:
    """A whole object in one GET (an ImageFolder image); a one-line error naming it."""
    return open_store(url).read(url)


def check_objects(files: Sequence[str], nbytes: Sequence[int]) -> None:
    """DataError unless each of ``files`` (URLs in one folder) is there with the size the
    manifest gives (-1: any): one listing, so that a shard missing from an upload is named
    when a loader is made, not when a worker reaches it mid-epoch."""
    if not files:
        return
    folder = files[0].rsplit("/", 1)[0]
    store = open_store(folder)
    found = {store.path(o.url): o.size for o in store.listing(folder)}
    for url, size in zip(files, nbytes, strict=True):
        have = found.get(store.path(url))
        if have is None:
            raise DataError(f"{redact(url)}: no such object (the manifest lists it)")
        if size >= 0 and have != size:
            raise DataError(f"{redact(url)}: {have:,} bytes, the manifest says {size:,}")


class ReadAhead:
    """An object read front to back by ranged GETs of ``block`` bytes, the next block fetched
    in a background thread while the current one is consumed: two blocks in memory at most.

    Enough of a file for the shard readers (``read``, ``skip``, ``seek``, ``tell``) and for
    ``archive.iter_tar_stream``. A seek out of the blocks fetched starts a new block there.
    Use it as a context manager: leaving drops the block under way.
    """

    def __init__(self, url: str, size: int = -1, block: int | None = None) -> None:
        self._store = open_store(url)
        self._url = url
        self.name = redact(url)  # what error messages call it
        self.size = size if size >= 0 else self._store.info(url).size
        self._block = block or BLOCK
        self._buf = b""
        self._buf_start = 0  # the object offset of _buf[0]
        self._pos = 0
        self._pool: ThreadPoolExecutor | None = None
        self._ahead: tuple[int, Future[bytes]] | None = None

    # -- file-like ---------------------------------------------------------------------------

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos, 2: self.size}[whence]
        self._pos = min(self.size, max(0, base + offset))
        return self._pos

    def skip(self, n: int) -> None:
        """Move ``n`` bytes on (nothing is fetched for them unless a block holds them)."""
        self.seek(n, 1)

    def read(self, n: int = -1) -> bytes:
        """``n`` bytes from here (fewer at the object's end); the rest of it for ``n < 0``."""
        left = self.size - self._pos
        n = left if n < 0 else min(n, left)
        at = self._pos - self._buf_start
        if at >= 0 and at + n <= len(self._buf):  # the usual case: inside the current block
            self._pos += n
            return self._buf[at : at + n]
        parts = []
        while n > 0:
            at = self._pos - self._buf_start
            if not 0 <= at < len(self._buf):
                if not self._load(self._pos):
                    break
                at = 0
            piece = self._buf[at : at + n]
            parts.append(piece)
            self._pos += len(piece)
            n -= len(piece)
        return b"".join(parts)

    # -- blocks ------------------------------------------------------------------------------

    def _load(self, at: int) -> bool:
        """Make the block at ``at`` the current one (the one fetched ahead if it starts
        there) and start fetching the next; False at the object's end."""
        if at >= self.size:
            return False
        ahead, self._ahead = self._ahead, None
        self._buf = b""  # the old block goes before the new one comes
        if ahead is not None and ahead[0] == at:
            data = ahead[1].result()  # the store's one-line error, if the fetch failed
        else:
            if ahead is not None:
                ahead[1].cancel()
            data = self._fetch(at)
        if not data:
            return False
        self._buf, self._buf_start = data, at
        following = at + len(data)
        if following < self.size:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(1, thread_name_prefix="imagenet-prep-readahead")
            self._ahead = (following, self._pool.submit(self._fetch, following))
        return True

    def _fetch(self, at: int) -> bytes:
        return self._store.read_range(self._url, at, min(self.size, at + self._block))

    def close(self) -> None:
        self._buf = b""
        ahead, self._ahead = self._ahead, None
        if ahead is not None:
            ahead[1].cancel()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> ReadAhead:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
