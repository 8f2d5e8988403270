"""Object storage (``s3://``, ``gs://``, any fsspec URL) as the build reads and writes it: whole
objects and byte ranges, counted, with one-line errors.

Local paths never come here: they keep the fast path (``os.pread``, ``writev``, rename). An
object store has no append, no rename and no file lock, and every request costs a round trip,
so what the build asks of it is shaped for that:

- reads are ranged GETs: :meth:`Store.read_range` for one member, :meth:`Store.read_ranges`
  for many, neighbours coalesced into one request; :meth:`Store.stream` reads an object front
  to back in large blocks (an index pass over a tar: its headers lie between the data);
- an object becomes visible only complete: :meth:`Store.put` is one PUT,
  :meth:`Store.writer` streams a multipart upload that is completed on a clean exit and
  aborted otherwise;
- :meth:`Store.create` is a conditional PUT (``If-None-Match: *``): the one atomic "create if
  absent" an object store offers, which the output's lock is made of.

Credentials come from the store's own chain (for S3: the environment, ``~/.aws``, instance
roles; ``AWS_ENDPOINT_URL`` for an S3-compatible server); :func:`redact` keeps any that a URL
carries out of messages and records.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, cast
from urllib.parse import urlsplit, urlunsplit

from .errors import DataError, ImagenetPrepError, UsageError, one_line

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem

#: The extra that brings each protocol's fsspec implementation.
EXTRAS = {"s3": "s3", "s3a": "s3", "gs": "gcs", "gcs": "gcs"}
#: A sequential read (an index pass) asks for this much at a time: 16 requests per GB.
STREAM_BLOCK = 64 << 20
#: While a sequential walk (an index pass) parses one block, this many more are fetched.
READ_AHEAD = 2
#: Ranges closer than this are read in one request (the bytes between are read and dropped).
COALESCE_GAP = 1 << 20
#: A coalesced request is cut at this size, so that a task does not hold a whole archive.
COALESCE_MAX = 64 << 20


def is_url(location: object) -> bool:
    """Whether ``location`` names an object store (``scheme://...``) rather than a local path.

    >>> is_url("s3://bucket/imagenet"), is_url("memory://x"), is_url("/data/imagenet")
    (True, True, False)
    >>> is_url("file:///data/imagenet")  # a local path, spelled as a URL
    False
    """
    text = str(location)
    scheme, sep, _ = text.partition("://")
    return bool(sep) and scheme.isidentifier() and scheme != "file"


def as_location(value: object) -> Path:
    """A local path, or for a URL a path object of its store (universal_pathlib's ``UPath``)
    that answers what the build asks a source path (``exists``, ``is_file``, ``stat``,
    ``name``, ``/``, ``read_bytes``, ``iterdir``); typed as a Path for the code that takes
    either. Its ``str`` is the URL: what the readers below are given."""
    if not is_url(value):
        return Path(str(value)) if not isinstance(value, Path) else value
    scheme = str(value).partition("://")[0]
    extra = EXTRAS.get(scheme, "s3")
    try:
        from upath import UPath
    except ImportError as exc:
        raise UsageError(
            f"{redact(str(value))}: {scheme}:// needs {one_line(exc)}: pip install "
            f"'imagenet-prep[{extra}]'"
        ) from None
    return cast(Path, UPath(str(value)))


def open_input(path: Path | str, block: int = STREAM_BLOCK) -> BinaryIO:
    """A file to read ``path`` front to back: a local file, or an object read by blocks."""
    if not is_url(path):
        return open(path, "rb")
    url = str(path)
    return cast(BinaryIO, open_store(url).stream(url, block=block))


def redact(url: str) -> str:
    """``url`` without what could be a credential: a user and password, a query string.

    >>> redact("s3://AKIA:secret@bucket/key?X-Amz-Signature=abc")
    's3://bucket/key'
    >>> redact("s3://bucket/imagenet/")
    's3://bucket/imagenet/'
    """
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


@dataclass
class Stats:
    """Requests made to a store and bytes read from it (thread-safe counters)."""

    requests: int = 0  # that read (or list, or ask about) objects
    bytes_read: int = 0
    writes: int = 0  # requests that write or delete objects (a multipart upload: its parts)
    bytes_written: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, requests: int = 0, read: int = 0, written: int = 0, writes: int = 0) -> None:
        with self._lock:
            self.requests += requests
            self.bytes_read += read
            self.writes += writes
            self.bytes_written += written


@dataclass(frozen=True)
class ObjectInfo:
    """An object's name (its URL), size, and what changes when it is replaced (the ETag, or
    the modification time where a store has no ETag)."""

    url: str
    size: int
    version: str
    modified: float = 0.0  # seconds since the epoch, by the store's clock (0: unknown)


#: This process's store per protocol: its client (fsspec keeps one per process too), and the
#: count of what this process asked of it, which :func:`tally` sums for the build's summary.
_STORES: dict[tuple[int, str], Store] = {}


def forget_stores() -> None:
    """Drop this process's stores, so that the next :func:`open_store` makes a new client:
    for a process whose endpoint or credentials changed since (tests do that)."""
    _STORES.clear()


def tally() -> tuple[int, int]:
    """(requests, bytes read) this process has made to object stores so far."""
    here = [s for (pid, _), s in list(_STORES.items()) if pid == os.getpid()]
    return sum(s.stats.requests for s in here), sum(s.stats.bytes_read for s in here)


def tally_writes() -> tuple[int, int]:
    """(requests, bytes written) this process has made to write to object stores so far."""
    here = [s for (pid, _), s in list(_STORES.items()) if pid == os.getpid()]
    return sum(s.stats.writes for s in here), sum(s.stats.bytes_written for s in here)


def open_store(url: str) -> Store:
    """The store ``url`` lives in (one per protocol and process); a one-line error when its
    fsspec implementation is missing or the URL is not one fsspec knows."""
    scheme = url.partition("://")[0]
    found = _STORES.get((os.getpid(), scheme))
    if found is None:
        found = _STORES[os.getpid(), scheme] = _new_store(url, scheme)
    return found


def _new_store(url: str, scheme: str) -> Store:
    import fsspec
    from fsspec.core import url_to_fs

    try:
        # No listings cache: other processes (the shard tasks, another machine's build) add
        # objects while this one runs, and a stale listing would hide them.
        fs, _ = url_to_fs(url, use_listings_cache=False)
    except ImportError as exc:
        extra = EXTRAS.get(scheme)
        hint = f"pip install 'imagenet-prep[{extra}]'" if extra else "install its fsspec package"
        raise UsageError(f"{redact(url)}: {scheme}:// needs {one_line(exc)}: {hint}") from None
    except ValueError as exc:
        known = ", ".join(sorted(fsspec.available_protocols())[:12])
        raise UsageError(f"{redact(url)}: {one_line(exc)} (fsspec knows {known}, ...)") from None
    return Store(fs, scheme)


class Store:
    """One fsspec file system, what the build asks of it, and the count of its requests.

    Paths are full URLs (``s3://bucket/key``); errors name them (redacted) on one line.
    """

    def __init__(self, fs: AbstractFileSystem, scheme: str) -> None:
        self.fs = fs
        self.scheme = scheme
        self.stats = Stats()

    # -- names -------------------------------------------------------------------------------

    def path(self, url: str) -> str:
        """The file system's own path for ``url`` (``bucket/key`` for S3)."""
        return str(self.fs._strip_protocol(url))

    def url(self, path: str) -> str:
        return str(self.fs.unstrip_protocol(path))

    # -- reads -------------------------------------------------------------------------------

    def info(self, url: str) -> ObjectInfo:
        with self.errors(url):
            found = self.fs.info(self.path(url))
        self.stats.add(requests=1)
        return _object_info(self, found)

    def listing(self, url: str) -> list[ObjectInfo]:
        """The objects directly under the prefix ``url`` (not its "folders"), by name."""
        with self.errors(url):
            found = self.fs.ls(self.path(url), detail=True, refresh=True)
        self.stats.add(requests=1)
        return sorted(
            (_object_info(self, o) for o in found if o.get("type") != "directory"),
            key=lambda o: o.url,
        )

    def tree(self, url: str) -> list[ObjectInfo]:
        """Every object under the prefix ``url`` (at any depth), by name; none when absent."""
        with self.errors(url):
            found = self.fs.find(self.path(url).rstrip("/") + "/", detail=True)
        self.stats.add(requests=1 + len(found) // 1000)
        return sorted(
            (_object_info(self, o) for o in found.values() if o.get("type") != "directory"),
            key=lambda o: o.url,
        )

    def check_bucket(self, url: str) -> None:
        """Raise the one-line error when the bucket (container) of ``url`` is missing or
        refuses this machine's credentials."""
        bucket = self.path(url).split("/", 1)[0]
        with self.errors(url):
            self.fs.info(bucket)
        self.stats.add(requests=1)

    def exists(self, url: str) -> bool:
        with self.errors(url):
            found = bool(self.fs.exists(self.path(url)))
        self.stats.add(requests=1)
        return found

    def read(self, url: str) -> bytes:
        """A whole object, in one request."""
        with self.errors(url):
            data = bytes(self.fs.cat_file(self.path(url)))
        self.stats.add(requests=1, read=len(data))
        return data

    def read_many(self, urls: Sequence[str]) -> dict[str, bytes]:
        """Several whole objects (the client asks for them concurrently), by URL."""
        if not urls:
            return {}
        paths = {self.path(u): u for u in urls}
        with self.errors(urls[0]):
            found = self.fs.cat(list(paths), on_error="raise")
        self.stats.add(requests=len(paths), read=sum(len(b) for b in found.values()))
        return {paths[self.path(p)]: bytes(b) for p, b in found.items()}

    def read_range(self, url: str, start: int, end: int) -> bytes:
        """Bytes ``start`` to ``end`` (exclusive) of an object, in one request; fewer at its
        end."""
        if end <= start:
            return b""
        with self.errors(url):
            data = bytes(self.fs.cat_file(self.path(url), start=start, end=end))
        self.stats.add(requests=1, read=len(data))
        return data

    def read_ranges(
        self,
        url: str,
        ranges: Sequence[tuple[int, int]],
        gap: int = COALESCE_GAP,
        most: int = COALESCE_MAX,
    ) -> list[bytes]:
        """Several byte ranges of one object, in the order asked; ranges whose gap is at most
        ``gap`` are read in one request of at most ``most`` bytes (the store's client runs the
        requests concurrently where it can).

        Shard tasks read their images this way: members that are neighbours in the archive
        cost one request together.
        """
        if not ranges:
            return []
        spans = coalesce(ranges, gap, most)
        path = self.path(url)
        with self.errors(url):
            blobs = self.fs.cat_ranges(
                [path] * len(spans), [s for s, _ in spans], [e for _, e in spans]
            )
        for blob in blobs:
            if isinstance(blob, BaseException):
                with self.errors(url):
                    raise blob
        self.stats.add(requests=len(spans), read=sum(len(b) for b in blobs))
        out = []
        for start, end in ranges:
            i = _span_of(spans, start)
            s, _ = spans[i]
            out.append(bytes(blobs[i][start - s : end - s]))
        return out

    def stream(self, url: str, size: int | None = None, block: int = STREAM_BLOCK) -> BlockStream:
        """A file-like reader of ``url`` from its start, asking the store for ``block`` bytes at
        a time (at most ``size / block + 1`` requests)."""
        if size is None:
            size = self.info(url).size
        return BlockStream(self, url, size, block)

    # -- writes ------------------------------------------------------------------------------

    def put(self, url: str, data: bytes) -> None:
        """Write a whole object in one PUT: it appears complete or not at all."""
        with self.errors(url):
            self.fs.pipe_file(self.path(url), data)
        self.stats.add(writes=1, written=len(data))

    def put_many(self, objects: dict[str, bytes]) -> None:
        """Write several whole objects, one PUT each (the client sends them concurrently)."""
        if not objects:
            return
        with self.errors(next(iter(objects))):
            self.fs.pipe({self.path(u): d for u, d in objects.items()})
        self.stats.add(writes=len(objects), written=sum(len(d) for d in objects.values()))

    def create(self, url: str, data: bytes) -> bool:
        """Write ``url`` only if no object has that name (``If-None-Match: *``, atomic in the
        store); False if one has. Stores without conditional writes raise UsageError."""
        try:
            with self.errors(url):
                self.fs.pipe_file(self.path(url), data, mode="create")
        except FileExistsError:
            return False
        except (NotImplementedError, TypeError) as exc:
            raise UsageError(
                f"{redact(url)}: this store has no conditional write ({one_line(exc)}), so two "
                "builds into one output could not be kept apart"
            ) from None
        finally:
            self.stats.add(writes=1)
        self.stats.add(written=len(data))
        return True

    @contextlib.contextmanager
    def writer(self, url: str, block: int = STREAM_BLOCK) -> Iterator[BinaryIO]:
        """A file to write ``url`` to as it is produced (S3: a multipart upload of ``block``
        parts), never staged whole: the object appears when the block ends cleanly, complete;
        on an error the upload is discarded and no object appears."""
        upload = self.upload(url, block)
        try:
            yield cast(BinaryIO, upload)
        except BaseException:
            upload.abort()
            raise
        upload.commit()

    def upload(self, url: str, block: int = STREAM_BLOCK) -> Upload:
        """An object being written (see :meth:`writer`), ended by ``commit`` or ``abort``."""
        with self.errors(url):
            f = self.fs.open(self.path(url), "wb", block_size=block)
        return Upload(self, url, f, block)

    def delete(self, url: str) -> None:
        with self.errors(url):
            self.fs.rm_file(self.path(url))
        self.stats.add(writes=1)

    def delete_tree(self, url: str) -> None:
        """Delete every object under the prefix ``url`` (batched, 1000 a request for S3)."""
        paths = [self.path(o.url) for o in self.tree(url)]
        if paths:
            with self.errors(url):
                self.fs.rm(paths)
            self.stats.add(writes=1 + len(paths) // 1000)

    # -- errors ------------------------------------------------------------------------------

    @contextlib.contextmanager
    def errors(self, url: str) -> Iterator[None]:
        """Turn the store's errors into one line naming ``url``: a missing bucket or object is a
        DataError, no permission a UsageError; FileExistsError passes (callers expect it).
        Whatever credentials ``url`` carries are cut out of the message too."""
        try:
            yield
        except FileExistsError:
            raise
        except FileNotFoundError as exc:
            # s3fs names a missing key by its path alone; a missing bucket, in words.
            why = _why(exc, "no such object")
            if why.strip("'\"") in (self.path(url), url):
                why = "no such object"
            raise DataError(f"{redact(url)}: {_scrub(why, url)}") from None
        except PermissionError as exc:
            raise UsageError(
                f"{redact(url)}: access denied ({_scrub(_why(exc, 'permission'), url)}): check "
                "the credentials this machine uses for the store"
            ) from None
        except ImagenetPrepError:
            raise
        except Exception as exc:  # the client's own (botocore's ParamValidationError, ...)
            if type(exc).__name__ == "NoCredentialsError":  # botocore's
                raise UsageError(
                    f"{redact(url)}: no credentials for the store on {socket.gethostname()}: "
                    "give this machine (every node, on a cluster) keys in its environment or "
                    "~/.aws, or a role"
                ) from None
            why = _scrub(_why(exc, type(exc).__name__), url)
            raise DataError(f"{redact(url)}: {why}") from None


class Upload:
    """An object written front to back: ``write`` as it is produced (S3 sends a part each
    ``block`` bytes), ``commit`` makes it appear whole, ``abort`` discards it (an S3
    multipart upload is aborted: no object, no parts kept)."""

    def __init__(self, store: Store, url: str, f: Any, block: int) -> None:
        self._store = store
        self.url = url
        self.path = url  # what a writer may ask to know it has no descriptor
        self._f = f
        self._block = block

    def write(self, data: bytes | bytearray | memoryview) -> int:
        with self._store.errors(self.url):
            return int(self._f.write(data))

    def tell(self) -> int:
        return int(self._f.tell())

    def flush(self) -> None:
        pass  # parts go out as they fill; the rest on commit

    def fileno(self) -> int:
        raise OSError("an object being uploaded has no file descriptor")

    def commit(self) -> None:
        size = self._f.tell()
        with self._store.errors(self.url):
            self._f.close()
        # One PUT when it never filled a part; else the upload's start, its parts, its end.
        parts = -(-size // self._block)
        self._store.stats.add(writes=1 if parts <= 1 else 2 + parts, written=size)

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            discard = getattr(self._f, "discard", None)
            if discard is not None:
                discard()  # aborts a multipart upload: nothing appears
            self._f.closed = True  # so that neither close() nor the collector uploads the rest

    def close(self) -> None:
        self.commit()


def coalesce(ranges: Sequence[tuple[int, int]], gap: int, most: int) -> list[tuple[int, int]]:
    """The requests that cover ``ranges``: sorted, neighbours closer than ``gap`` merged while
    a request stays within ``most`` bytes.

    >>> coalesce([(100, 200), (0, 50), (210, 300), (5000, 5100)], gap=20, most=10**6)
    [(0, 50), (100, 300), (5000, 5100)]
    >>> coalesce([(0, 60), (60, 120), (120, 180)], gap=0, most=130)
    [(0, 120), (120, 180)]
    """
    spans: list[tuple[int, int]] = []
    for start, end in sorted(ranges):
        if spans:
            s, e = spans[-1]
            if start - e <= gap and max(e, end) - s <= most:
                spans[-1] = (s, max(e, end))
                continue
        spans.append((start, end))
    return spans


def _span_of(spans: list[tuple[int, int]], start: int) -> int:
    """The index of the span holding ``start`` (spans are sorted and disjoint)."""
    lo, hi = 0, len(spans) - 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if spans[mid][0] <= start:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _scrub(text: str, url: str) -> str:
    """``text`` without the user and password that ``url`` carries, if any.

    >>> _scrub("Invalid bucket name 'AKIA:pw@b'", "s3://AKIA:pw@b/k")
    "Invalid bucket name '***@b'"
    """
    userinfo = urlsplit(url).netloc.rpartition("@")[0]
    if not userinfo:
        return text
    for secret in (userinfo, *userinfo.split(":")):
        if secret:
            text = text.replace(secret, "***")
    return text


def _why(exc: BaseException, default: str) -> str:
    text = one_line(exc)
    return text if text and text != "None" else default


def _object_info(store: Store, found: dict[str, Any]) -> ObjectInfo:
    version = found.get("ETag") or found.get("etag") or found.get("mtime") or ""
    when = found.get("LastModified") or found.get("updated") or found.get("mtime")
    version = version or str(when or "")
    return ObjectInfo(
        store.url(found["name"]), int(found.get("size") or 0), str(version), _seconds(when)
    )


def _seconds(when: Any) -> float:
    """A store's modification time (a datetime, an ISO string, or seconds) in seconds."""
    import datetime

    if isinstance(when, datetime.datetime):
        return when.timestamp()
    if isinstance(when, (int, float)):
        return float(when)
    if isinstance(when, str):
        with contextlib.suppress(ValueError):
            return datetime.datetime.fromisoformat(when.replace("Z", "+00:00")).timestamp()
    return 0.0


class RangeReader:
    """``pread(n, at)`` over an object, served from ranges fetched ahead (:meth:`prefetch`:
    neighbours coalesced into few requests) when a read starts where one of them starts and
    fits in it; otherwise one ranged read. Each range fetched ahead is served once."""

    def __init__(self, store: Store, url: str) -> None:
        self._store = store
        self._url = url
        self._ahead: dict[int, bytes] = {}

    def prefetch(self, ranges: Sequence[tuple[int, int]]) -> None:
        unique = sorted(set(ranges))
        for (start, _end), data in zip(
            unique, self._store.read_ranges(self._url, unique), strict=True
        ):
            self._ahead[start] = data

    def pread(self, n: int, at: int) -> bytes:
        data = self._ahead.pop(at, None)
        if data is not None and len(data) >= n:
            return data[:n]
        if data is not None and len(data) < n:  # fetched up to the object's end
            rest = self._store.read_range(self._url, at + len(data), at + n)
            return data + rest
        return self._store.read_range(self._url, at, at + n)


class BlockCache:
    """``pread(n, at)`` over an object, served from aligned blocks of ``block`` bytes, the
    last one kept: a walk that moves forward through the object (a tar's headers, read one by
    one between members it skips) costs one request per block it touches, not per read.

    While the walk parses a block, the next ``ahead`` blocks are already being fetched, in
    parallel streams (threads), so the index pass waits on the store only when it outruns all
    of them. An index pass over a 138 GB tar so makes about 2,200 requests of 64 MiB (16 per
    GB) instead of 1.3 million, with ``ahead + 1`` blocks in memory at most. ``close`` (or
    leaving a ``with`` block) drops the fetches still under way.
    """

    def __init__(
        self,
        store: Store,
        url: str,
        size: int,
        block: int = STREAM_BLOCK,
        ahead: int = READ_AHEAD,
    ) -> None:
        self._store = store
        self._url = url
        self.size = size
        self._block = block
        self._start = -1
        self._data = b""
        self._ahead = ahead
        self._pool: ThreadPoolExecutor | None = None
        self._pending: dict[int, Future[bytes]] = {}

    def _fetch(self, start: int) -> bytes:
        return self._store.read_range(self._url, start, min(self.size, start + self._block))

    def _load(self, start: int) -> bytes:
        found = self._pending.pop(start, None)
        for behind in [s for s in self._pending if s < start]:  # a walk that jumped ahead
            self._pending.pop(behind).cancel()
        if self._ahead:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self._ahead, thread_name_prefix="read-ahead")
            for k in range(1, self._ahead + 1):
                nxt = start + k * self._block
                if nxt < self.size and nxt not in self._pending:
                    self._pending[nxt] = self._pool.submit(self._fetch, nxt)
        return found.result() if found is not None else self._fetch(start)

    def pread(self, n: int, at: int) -> bytes:
        out = bytearray()
        while n > 0 and at < self.size:
            start = at - at % self._block
            if start != self._start:
                self._data = self._load(start)
                self._start = start
            piece = self._data[at - start : at - start + n]
            if not piece:
                break
            out += piece
            at += len(piece)
            n -= len(piece)
        return bytes(out)

    def close(self) -> None:
        for pending in self._pending.values():
            pending.cancel()
        self._pending.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> BlockCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class BlockStream:
    """A sequential reader of an object that fetches ``block`` bytes per request: ``read`` and
    ``seek`` forward within what is fetched, like a file; enough for ``tarfile`` in stream
    mode and for the build's own tar walker."""

    def __init__(self, store: Store, url: str, size: int, block: int) -> None:
        self._store = store
        self._url = url
        self.size = size
        self._block = block
        self._buf = b""
        self._buf_start = 0  # the object offset of _buf[0]
        self._pos = 0
        self._closed = False

    def tell(self) -> int:
        return self._pos

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos, 2: self.size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def read(self, n: int = -1) -> bytes:
        if n < 0:
            n = self.size - self._pos
        n = max(0, min(n, self.size - self._pos))
        out = bytearray()
        while len(out) < n:
            at = self._pos - self._buf_start
            if not 0 <= at < len(self._buf):
                self._buf_start = self._pos
                self._buf = self._store.read_range(
                    self._url, self._pos, min(self.size, self._pos + self._block)
                )
                at = 0
                if not self._buf:
                    break
            take = self._buf[at : at + n - len(out)]
            out += take
            self._pos += len(take)
        return bytes(out)

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        self._buf = b""
        self._closed = True

    def __enter__(self) -> BlockStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
