"""Streaming reads of the downloaded tar archives, never extracting to disk.

The indexer walks the 512-byte tar headers itself, reading each with one ``pread`` and
skipping the data between them, descending into the per-class tars of
``ILSVRC2012_img_train.tar`` in the same walk, and records where every member's data lives
(absolute offset and size in the outer file). Shard tasks then read members by offset, in
any order. ``file_md5`` hashes a whole archive; the build runs it beside the shard work.

An archive that ends early is an error, never fewer members: every tar (the outer file, each
nested tar, the box archive's stream) must end with its end-of-archive marker, two zero
blocks, and after it only zeros may follow, up to the next multiple of ``RECORD`` bytes from
that tar's start. A tar cut at a member boundary, a lone zero block, data after the marker or
more bytes than the last record's (zeros too) is named with the byte where it is found.
"""

from __future__ import annotations

import hashlib
import os
import struct
import zlib
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol, overload

from .errors import DataError
from .namecolumn import NameColumn
from .storage import BlockCache, is_url, open_input, open_store

BLOCK = 512
#: GNU tar's and Python's record (20 blocks): an archive's end marker is padded with zeros to
#: a multiple of it, counted from the tar's start; the official archives' sizes are multiples.
RECORD = 20 * BLOCK
_UNBOUNDED = 1 << 62  # the end of a stream, not known until it is read
_ZERO_BLOCK = bytes(BLOCK)
_CHUNK = 4 << 20
# Member types whose data is a regular file.
_REGULAR = (b"0", b"\0", b"7")
_PAX_LOCAL = b"x"
_PAX_GLOBAL = b"g"
_GNU_LONGNAME = b"L"
_GNU_LONGLINK = b"K"


@dataclass(frozen=True, slots=True)
class TarMember:
    """A regular file inside an archive: ``parent`` is the nested tar's name, or ``""``."""

    name: str
    offset: int
    size: int
    parent: str = ""


class MemberTable(Sequence[TarMember]):
    """An archive's members as columns: names in a :class:`NameColumn`, offsets and sizes in
    arrays, and each parent as a number into the few nested tars' names.

    The training archive lists 1.3 million members: as ``TarMember`` objects about 230 bytes
    each, here about 50 (a 20-byte name). Members are made when asked for, one at a time.

    >>> table = MemberTable()
    >>> table.add("n01440764_10026.JPEG", 1536, 110_000, "n01440764.tar")
    >>> table.append(TarMember("README", 512, 10))
    >>> len(table), table[0].parent, table[-1]
    (2, 'n01440764.tar', TarMember(name='README', offset=512, size=10, parent=''))
    >>> [m.name for m in table] == ["n01440764_10026.JPEG", "README"]
    True
    """

    __slots__ = ("_names", "_offsets", "_parent_ids", "_parent_names", "_parents", "_sizes")

    def __init__(self, members: Iterable[TarMember] = ()) -> None:
        self._names = NameColumn()
        self._offsets = array("q")
        self._sizes = array("q")
        self._parents = array("I")  # into _parent_names
        self._parent_names: list[str] = [""]
        self._parent_ids: dict[str, int] = {"": 0}
        for m in members:
            self.add(m.name, m.offset, m.size, m.parent)

    def add(self, name: str, offset: int, size: int, parent: str = "") -> None:
        """Add a member at the end, from its fields."""
        pid = self._parent_ids.get(parent)
        if pid is None:
            pid = self._parent_ids[parent] = len(self._parent_names)
            self._parent_names.append(parent)
        self._names.append(name)
        self._offsets.append(offset)
        self._sizes.append(size)
        self._parents.append(pid)

    def append(self, member: TarMember) -> None:
        self.add(member.name, member.offset, member.size, member.parent)

    def __len__(self) -> int:
        return len(self._offsets)

    @overload
    def __getitem__(self, i: int) -> TarMember: ...

    @overload
    def __getitem__(self, i: slice) -> list[TarMember]: ...

    def __getitem__(self, i: int | slice) -> TarMember | list[TarMember]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        n = len(self._offsets)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError("member index out of range")
        parent = self._parent_names[self._parents[i]]
        return TarMember(self._names[i], self._offsets[i], self._sizes[i], parent)

    def rows(self) -> Iterator[tuple[str, int, int, str]]:
        """Each member's ``(name, offset, size, parent)``, in order, without a ``TarMember``."""
        parents = self._parent_names
        for name, offset, size, pid in zip(
            self._names, self._offsets, self._sizes, self._parents, strict=True
        ):
            yield name, offset, size, parents[pid]

    def __iter__(self) -> Iterator[TarMember]:
        for name, offset, size, parent in self.rows():
            yield TarMember(name, offset, size, parent)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, MemberTable) and self._parent_names == other._parent_names:
            return (
                self._offsets == other._offsets
                and self._sizes == other._sizes
                and self._parents == other._parents
                and self._names == other._names
            )
        if isinstance(other, (MemberTable, list, tuple)):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable, as a list

    def __repr__(self) -> str:
        return f"MemberTable({len(self)} members)"


@dataclass(frozen=True)
class ArchiveIndex:
    """Every regular member of one archive, in archive order, and what was read to find them.

    ``members`` is a :class:`MemberTable` when indexed or loaded (any sequence will do).
    ``nested`` lists the nested tars descended into (their members are in ``members``), so
    that one that holds nothing is still seen.
    """

    path: str
    size: int
    mtime_ns: int
    md5: str | None
    members: Sequence[TarMember]
    nested: tuple[TarMember, ...] = ()


def _octal(field: bytes, path: str, offset: int) -> int:
    if field and field[0] & 0x80:  # GNU base-256 for large numbers
        value = int.from_bytes(field[1:], "big")
        if field[0] & 0x40:
            raise DataError(f"{path}: negative number in the tar header at byte {offset}")
        return value | ((field[0] & 0x3F) << (8 * (len(field) - 1)))
    text = field.split(b"\0", 1)[0].strip(b" ")
    if not text:
        return 0
    try:
        return int(text, 8)
    except ValueError:
        raise DataError(
            f"{path}: not a tar archive (bad number {text[:12]!r} in the header at byte {offset})"
        ) from None


def _byte_sum(data: bytes) -> int:
    """The sum of ``data``'s bytes (at most 512 of them), computed in C.

    Adler-32's first half is 1 + the byte sum modulo 65521; a 256-byte piece sums to at
    most 65,280, below the modulus, so each half of a header gives its exact sum.

    >>> block = bytes(range(256)) * 2
    >>> _byte_sum(block) == sum(block), _byte_sum(b"\\xff" * 512) == 255 * 512
    (True, True)
    """
    return (zlib.adler32(data[:256]) & 0xFFFF) + (zlib.adler32(data[256:512]) & 0xFFFF) - 2


def _checksum_ok(block: bytes, stored: int) -> bool:
    unsigned = _byte_sum(block) - sum(block[148:156]) + 8 * 32
    if unsigned == stored:
        return True
    signed = sum(struct.unpack("512b", block)) - sum(struct.unpack("8b", block[148:156])) + 8 * 32
    return bool(signed == stored)


def _pax_records(data: bytes, path: str, offset: int) -> dict[str, str]:
    out: dict[str, str] = {}
    pos = 0
    while pos < len(data):
        if data[pos:].strip(b"\0") == b"":
            break
        space = data.find(b" ", pos)
        try:
            length = int(data[pos:space])
        except ValueError:
            raise DataError(f"{path}: malformed pax header at byte {offset}") from None
        record = data[space + 1 : pos + length - 1]
        key, _, value = record.partition(b"=")
        out[key.decode("utf-8", "replace")] = value.decode("utf-8", "surrogateescape")
        pos += length
    return out


class _Reader:
    """Positional reader of a tar's headers: ``pread(n, at)`` gives the bytes, skips are free.

    Over a file (a ``pread`` per header) or over bytes already in memory (a mapped file).
    """

    def __init__(self, pread: Callable[[int, int], bytes], path: str, size: int) -> None:
        self._pread = pread
        self.path = path
        self.size = size
        self.pos = 0

    def read(self, n: int) -> bytes:
        data = self._pread(n, self.pos)
        if len(data) != n:
            raise DataError(
                f"{self.path}: truncated archive (ends at byte {self.pos + len(data)}, "
                f"{n - len(data)} bytes short of the member it was reading)"
            )
        self.pos += n
        return data

    def read_upto(self, n: int) -> bytes:
        """At most ``n`` bytes (fewer only at the end of the file)."""
        data = self._pread(n, self.pos) if n > 0 else b""
        self.pos += len(data)
        return data

    def skip(self, n: int) -> None:
        if n <= 0:
            return
        if self.pos + n > self.size:
            raise DataError(
                f"{self.path}: truncated archive ({self.size} bytes, a member extends to byte "
                f"{self.pos + n})"
            )
        self.pos += n

    def at_end(self) -> bool:
        return self.pos >= self.size


class _StreamReader:
    """The reader interface over a non-seekable stream (a gzip'd tar): skips read and discard.

    The stream is read in large chunks and members are sliced out of the current chunk,
    so a small XML costs slicing, not a trip through the decompressor's read layers.
    """

    def __init__(self, f: BinaryIO, path: str, chunk: int = 1 << 20) -> None:
        self._f = f
        self.path = path
        self.pos = 0
        self._buf = b""
        self._at = 0  # where the next byte is in _buf
        self._chunk = chunk

    def _fill(self, n: int) -> None:
        """Make at least ``n`` bytes available in the buffer (fewer at end of stream)."""
        rest = self._buf[self._at :]
        parts = [rest]
        have = len(rest)
        while have < n:
            data = self._f.read(max(self._chunk, n - have))
            if not data:
                break
            parts.append(data)
            have += len(data)
        self._buf = b"".join(parts) if len(parts) > 1 else rest
        self._at = 0

    def at_end(self) -> bool:
        if self._at >= len(self._buf):
            self._fill(1)
        return self._at >= len(self._buf)

    def read(self, n: int) -> bytes:
        data = self.read_upto(n)
        if len(data) != n:
            raise DataError(f"{self.path}: truncated archive (ends at byte {self.pos})")
        return data

    def read_upto(self, n: int) -> bytes:
        """At most ``n`` bytes (fewer only at the end of the stream)."""
        if self._at + n > len(self._buf):
            self._fill(n)
        data = self._buf[self._at : self._at + n]
        self._at += len(data)
        self.pos += len(data)
        return data

    def skip(self, n: int) -> None:
        while n > 0:
            step = min(n, _CHUNK)
            self.read(step)
            n -= step


class _SupportsWalk(Protocol):
    path: str
    pos: int

    def at_end(self) -> bool: ...

    def read(self, n: int) -> bytes: ...

    def read_upto(self, n: int) -> bytes: ...

    def skip(self, n: int) -> None: ...


def _walk(
    reader: _SupportsWalk,
    end: int,
    parent: str,
    nested: Callable[[str], bool],
    *,
    empty_ok: bool,
    descended: list[TarMember] | None = None,
) -> Iterator[TarMember]:
    """Yield the regular members of the tar between ``reader.pos`` and ``end``, checking its end.

    The members of a member that ``nested`` picks are yielded instead of it (with ``parent``
    set), and it is added to ``descended``. After each member is yielded the consumer may read
    its data from the reader; the walk then skips what is left of it. ``empty_ok`` accepts a
    tar that holds nothing (its first block ends it).

    Longer than 60 lines on purpose: one loop over every header (1.3 million in the training
    archive), where a function call per header would cost measurable indexing time.
    """
    where = f"{reader.path}:{parent}" if parent else reader.path
    start = reader.pos
    long_name: str | None = None
    pax: dict[str, str] = {}
    first = True
    while True:
        header_at = reader.pos
        if header_at + BLOCK > end or reader.at_end():
            raise DataError(
                f"{where}: truncated archive (it ends at byte "
                f"{end if end < _UNBOUNDED else header_at}, where a header or the end-of-archive "
                "marker should be)"
            )
        block = reader.read(BLOCK)
        if block == _ZERO_BLOCK:
            if first and not empty_ok:
                raise DataError(f"{where}: not a tar archive (starts with an empty block)")
            _check_end(reader, start, end, where)
            return
        stored = _octal(block[148:156], where, header_at)
        if not _checksum_ok(block, stored):
            if first:
                raise DataError(f"{where}: not a tar archive (starts with {block[:16]!r})")
            raise DataError(f"{where}: corrupt tar header at byte {header_at} (checksum mismatch)")
        first = False
        size = _octal(block[124:136], where, header_at)
        kind = block[156:157]
        name_b = block[0:100].split(b"\0", 1)[0]
        if block[257:262] == b"ustar":
            prefix = block[345:500].split(b"\0", 1)[0]
            if prefix:
                name_b = prefix + b"/" + name_b
        name = name_b.decode("utf-8", "surrogateescape")
        padded = (size + BLOCK - 1) // BLOCK * BLOCK
        if kind == _GNU_LONGNAME:
            long_name = reader.read(padded)[:size].split(b"\0", 1)[0].decode("utf-8", "replace")
            continue
        if kind == _PAX_LOCAL:
            pax = _pax_records(reader.read(padded)[:size], where, header_at)
            continue
        if kind in (_PAX_GLOBAL, _GNU_LONGLINK):
            reader.skip(padded)
            continue
        if long_name is not None:
            name, long_name = long_name, None
        if "path" in pax:
            name = pax["path"]
        if "size" in pax:
            size = int(pax["size"])
            padded = (size + BLOCK - 1) // BLOCK * BLOCK
        pax = {}
        data_at = reader.pos
        if data_at + size > end:
            raise DataError(
                f"{where}: truncated archive (member {name} needs {size} bytes at byte {data_at}, "
                f"the {'archive' if not parent else 'nested tar'} ends at byte {end})"
            )
        if kind not in _REGULAR:
            reader.skip(padded)
            continue
        if not parent and nested(name):
            if descended is not None:
                descended.append(TarMember(name=name, offset=data_at, size=size))
            yield from _walk(reader, data_at + size, name, nested, empty_ok=True)
            # The nested tar's walk ends at its member's end; skip the member's padding.
            reader.skip(data_at + padded - reader.pos)
            continue
        yield TarMember(name=name, offset=data_at, size=size, parent=parent)
        reader.skip(data_at + padded - reader.pos)


def _check_end(reader: _SupportsWalk, start: int, end: int, where: str) -> None:
    """After the zero block just read: the second one, then only zeros up to ``end``, which
    is at most the next multiple of ``RECORD`` bytes from ``start`` (the tar's first byte).

    One read covers the second block and the padding (at most a record), so the check costs
    a nested tar one ``pread``.
    """
    marker_at = reader.pos - BLOCK
    record_end = start + (reader.pos + BLOCK - start + RECORD - 1) // RECORD * RECORD
    tail_at = reader.pos
    tail = reader.read_upto(min(end, record_end) - tail_at)
    rest = tail.lstrip(b"\0")
    if rest:
        raise DataError(
            f"{where}: data at byte {tail_at + len(tail) - len(rest)} after the end of the "
            f"archive (the zero block at byte {marker_at})"
        )
    if len(tail) < BLOCK:
        raise DataError(
            f"{where}: truncated archive (it ends at byte {reader.pos}, after a lone zero block "
            f"at byte {marker_at}; the end-of-archive marker is two)"
        )
    if reader.pos < end and not reader.at_end():
        more = f"{end - reader.pos:,} more bytes" if end < _UNBOUNDED else "more bytes"
        raise DataError(
            f"{where}: {more} after the end of the archive at byte {reader.pos} (after the "
            f"end-of-archive marker at byte {marker_at} only zeros up to a multiple of "
            f"{RECORD:,} bytes may follow)"
        )


def is_nested_tar(name: str) -> bool:
    """The rule for descending into a member: its name ends in ``.tar``, in any case."""
    return name.lower().endswith(".tar")


def index_tar(path: Path, *, nested: bool = False) -> ArchiveIndex:
    """Index every regular member of the tar at ``path``, reading only its headers.

    With ``nested``, members named ``*.tar`` are descended into and their members are
    listed instead (with ``parent`` set); the nested tars themselves are listed in
    ``ArchiveIndex.nested``. The whole file's MD5 is :func:`file_md5`'s.
    """
    try:
        st = path.stat()
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror})") from None
    if is_url(path):  # an object store: read by blocks, not a request per header
        url = str(path)
        with BlockCache(open_store(url), url, st.st_size) as cache:
            return index_tar_at(cache.pread, url, st.st_size, st.st_mtime_ns, nested)
    if not path.is_file():
        raise DataError(f"{path}: not a regular file")
    try:
        with open(path, "rb", buffering=0) as f:
            fd = f.fileno()
            return index_tar_at(
                lambda n, at: os.pread(fd, n, at), str(path), st.st_size, st.st_mtime_ns, nested
            )
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror})") from None


def index_tar_at(
    pread: Callable[[int, int], bytes], where: str, size: int, mtime_ns: int, nested: bool
) -> ArchiveIndex:
    """:func:`index_tar` over any positional reader (``pread(n, at)``) of a ``size``-byte tar
    named ``where``: a local file's, or an object store's through a block cache."""
    if size < BLOCK:
        raise DataError(f"{where}: not a tar archive ({size} bytes)")
    rule = is_nested_tar if nested else (lambda _name: False)
    reader = _Reader(pread, where, size)
    tars: list[TarMember] = []
    members = MemberTable()
    add = members.add
    for m in _walk(reader, size, "", rule, empty_ok=False, descended=tars):
        add(m.name, m.offset, m.size, m.parent)
    return ArchiveIndex(
        path=where, size=size, mtime_ns=mtime_ns, md5=None, members=members, nested=tuple(tars)
    )


def iter_tar_view(view: bytes | memoryview, path: str) -> Iterator[TarMember]:
    """Each regular member of a tar held in memory (a mapped file), in archive order.

    Only the headers (and the end) are read, copied out of ``view``; members' data is left
    where it is. An archive with no member (as ``tarfile`` writes it) has none.
    """
    reader = _Reader(lambda n, at: bytes(view[at : at + n]), path, len(view))
    return _walk(reader, len(view), "", lambda _name: False, empty_ok=True)


def iter_tar_stream(f: BinaryIO, path: str) -> Iterator[tuple[TarMember, bytes]]:
    """Yield each regular member of a tar read from a stream, with its data, in archive order.

    For compressed archives, which cannot be read by offset; the caller turns the stream's
    own errors (gzip, zlib) into messages. The stream is read to its end (the archive's end
    is checked, and a gzip stream's own checksum with it).
    """
    reader = _StreamReader(f, path)
    for member in _walk(reader, _UNBOUNDED, "", lambda _name: False, empty_ok=False):
        yield member, reader.read(member.size)


def file_md5(path: Path) -> str:
    """The MD5 of a whole file, read in order in 4 MiB blocks through one buffer."""
    digest = hashlib.md5()
    if is_url(path):  # an object store: a stream of large ranged reads
        with open_input(path) as stream:
            while block := stream.read(_CHUNK):
                digest.update(block)
        return digest.hexdigest()
    buf = bytearray(_CHUNK)
    view = memoryview(buf)
    try:
        with open(path, "rb", buffering=0) as f:
            if hasattr(os, "posix_fadvise"):
                os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_SEQUENTIAL)
            while n := f.readinto(buf):
                digest.update(view[:n])
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror})") from None
    return digest.hexdigest()


def read_at(
    f: BinaryIO | int | Callable[[int, int], bytes], offset: int, size: int, what: str
) -> bytes:
    """Read ``size`` bytes at ``offset`` of an open file (or descriptor, or positional reader
    ``pread(n, at)``); a short read names ``what``."""
    if callable(f):
        data = f(size, offset)
    else:
        data = os.pread(f if isinstance(f, int) else f.fileno(), size, offset)
    if len(data) != size:
        raise DataError(f"{what}: truncated ({len(data)} of {size} bytes at byte {offset})")
    return data
