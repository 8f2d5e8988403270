"""Reading a zip archive in place: its central directory as columns, members by offset.

Kaggle's ImageNet download is one ZIP64 file of ~167 GB holding ~1.3 million members. It is
never extracted and never read from end to end to be indexed: :func:`index_zip` reads the
end records and the central directory (in large reads) into a :class:`ZipIndex` of arrays
and one list of names, and shard workers then read members with :func:`read_member`, one
``pread`` each, in any order.

The local header in front of each member is parsed only when the member is read: its extra
field may differ in length from the central directory's (a ZIP64 field written only there,
timestamps, padding), and its sizes and CRC may be zero (general-purpose flag bit 3, a data
descriptor after the data), so sizes, CRCs and offsets always come from the central directory.

Damage is a :class:`~imagenet_prep.errors.DataError` with a one-line message that names the
file, and the member when there is one (``f"{path}:{name}: ..."``): a zip without its end
records (truncated, or not a zip), a central directory outside the file, cut short or with a
bad signature, a spanned zip, an encrypted member, a compression method other than stored
or deflated, a member whose data would run into the central directory, two members with one
name; and at read time a bad local header, data past the end of the file, a deflate stream
that is damaged or does not end with its compressed bytes, a size or CRC that is not the
central directory's.
"""

from __future__ import annotations

import os
import struct
import zlib
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .errors import DataError
from .storage import BlockCache, is_url, open_store

__all__ = [
    "DEFLATED",
    "SLACK",
    "STORED",
    "ZipIndex",
    "index_zip",
    "read_member",
]

STORED = 0
DEFLATED = 8
#: Bytes read past a member's compressed data by :func:`read_member`, so that its local file
#: name and extra field (usually well under 100 bytes) come in the same ``pread``.
SLACK = 1024

_EOCD_SIG = b"PK\x05\x06"
# signature, this disk, disk of the central directory, entries on this disk, entries,
# central directory size, its offset, comment length
_EOCD = struct.Struct("<4s4H2LH")
_LOCATOR_SIG = b"PK\x06\x07"
# signature, disk of the ZIP64 end record, its offset, number of disks
_LOCATOR = struct.Struct("<4sLQL")
_EOCD64_SIG = b"PK\x06\x06"
# signature, size of the rest of the record, version made by, version needed, this disk,
# disk of the central directory, entries on this disk, entries, central directory size, offset
_EOCD64 = struct.Struct("<4sQ2H2L4Q")
_CENTRAL_SIG = 0x02014B50
# signature, flags, method, crc, compressed, uncompressed, name length, extra length,
# comment length, disk number start, local header offset (versions, time, attributes skipped)
_CENTRAL = struct.Struct("<L4xHH4xLLLHHHH6xL")
_LOCAL_SIG = 0x04034B50
# signature, name length, extra length (the rest of the 30 bytes is the central's business)
_LOCAL = struct.Struct("<L22xHH")
_EXTRA_HEADER = struct.Struct("<HH")
_U64 = struct.Struct("<Q")
_U32 = struct.Struct("<L")
_MAX32 = 0xFFFFFFFF
_MAX16 = 0xFFFF
#: The end record and the longest comment it can announce.
_MAX_SEARCH = _EOCD.size + 0xFFFF
_CD_CHUNK = 8 << 20
_FLAG_ENCRYPTED = 0x0001
_FLAG_UTF8 = 0x0800
_METHOD_NAMES = {
    1: "shrink",
    2: "reduce",
    3: "reduce",
    4: "reduce",
    5: "reduce",
    6: "implode",
    9: "deflate64",
    10: "PKWARE DCL implode",
    12: "bzip2",
    14: "lzma",
    18: "IBM TERSE",
    19: "IBM LZ77",
    93: "zstd",
    95: "xz",
    96: "jpeg",
    97: "wavpack",
    98: "ppmd",
    99: "AES encryption",
}


@dataclass(frozen=True)
class ZipIndex:
    """The file members of one zip, in central-directory order, as columns.

    Member ``i`` is ``names[i]``; its local header is at ``header_offsets[i]``, its data is
    ``compressed[i]`` bytes stored with ``methods[i]`` (:data:`STORED` or :data:`DEFLATED`)
    and ``sizes[i]`` bytes with CRC-32 ``crcs[i]`` once inflated. Directory entries are left
    out; zero-byte files are kept. Arrays and one list, not an object per member: 1.3 million
    members cost one list of names and 37 bytes each in the arrays.
    """

    path: str
    size: int
    names: list[str]
    header_offsets: array[int]
    compressed: array[int]
    sizes: array[int]
    methods: array[int]
    crcs: array[int]

    def __len__(self) -> int:
        return len(self.names)

    def find(self, name: str) -> int | None:
        """The index of the member named exactly ``name``, or ``None``.

        The lookup table is built on the first call and is not pickled with the index.

        >>> index = ZipIndex("a.zip", 0, ["x/1.JPEG", "x/2.JPEG"], array("q", [0, 60]),
        ...     array("q", [30, 30]), array("q", [30, 30]), array("B", [0, 0]), array("I", [0, 0]))
        >>> index.find("x/2.JPEG"), index.find("x/3.JPEG"), len(index)
        (1, None, 2)
        """
        lookup: dict[str, int] | None = self.__dict__.get("_lookup")
        if lookup is None:
            lookup = {name: i for i, name in enumerate(self.names)}
            object.__setattr__(self, "_lookup", lookup)
        return lookup.get(name)

    def origin(self, i: int) -> str:
        """How messages name member ``i``: ``f"{path}:{name}"``."""
        return f"{self.path}:{self.names[i]}"

    def read(self, fd: int | Pread, i: int, *, check: bool = True) -> bytes:
        """Member ``i``'s bytes from ``fd`` (the zip, open for reading); with ``check``, its
        size and CRC-32 are checked against the central directory's."""
        return read_member(
            fd,
            self.header_offsets[i],
            self.compressed[i],
            self.methods[i],
            self.origin(i),
            size=self.sizes[i] if check else None,
            crc=self.crcs[i] if check else None,
        )

    def span(self, i: int) -> tuple[int, int]:
        """The bytes to read for member ``i`` at once: its local header (with a name and
        extra of up to :data:`SLACK` bytes) and its data."""
        start = self.header_offsets[i]
        return start, start + 30 + self.compressed[i] + SLACK

    def __getstate__(self) -> dict[str, object]:
        state = dict(self.__dict__)
        state.pop("_lookup", None)
        return state


def _method_text(method: int) -> str:
    """A compression method as messages name it.

    >>> _method_text(12), _method_text(200)
    ('compression method 12 (bzip2)', 'compression method 200')
    """
    name = _METHOD_NAMES.get(method)
    return f"compression method {method} ({name})" if name else f"compression method {method}"


def _unsupported(method: int) -> str:
    return f"{_method_text(method)} is not supported; re-zip with deflate or store"


#: Reads ``n`` bytes at offset ``at`` (fewer only at the end): a local file's ``os.pread``, or a
#: reader over an object in a store (:class:`imagenet_prep.storage.BlockCache`).
Pread = Callable[[int, int], bytes]


def reader_of(source: int | Pread) -> Pread:
    """A :data:`Pread` for an open file descriptor, or the reader given."""
    if isinstance(source, int):
        fd = source
        return lambda n, at: os.pread(fd, n, at)
    return source


def _pread_exact(fd: Pread, n: int, at: int, path: str, what: str) -> bytes:
    data = fd(n, at)
    if len(data) != n:
        raise DataError(
            f"{path}: truncated ({what}: {len(data)} of {n} bytes at byte {at}; "
            "the file changed while it was read?)"
        )
    return data


def _find_end_record(fd: Pread, path: str, size: int) -> tuple[int, tuple[int, ...]]:
    """The end-of-central-directory record: its offset and fields.

    It is the last ``PK\\x05\\x06`` in the file's last 65,557 bytes whose comment ends
    exactly at the end of the file (a comment may hold the signature too).
    """
    n = min(size, _MAX_SEARCH)
    base = size - n
    tail = _pread_exact(fd, n, base, path, "the end records")
    pos = tail.rfind(_EOCD_SIG)
    detail = ""
    while pos >= 0:
        if pos + _EOCD.size <= n:
            fields = _EOCD.unpack_from(tail, pos)
            comment_end = pos + _EOCD.size + fields[7]
            if comment_end == n:
                return base + pos, fields[1:7]
            if comment_end > n and not detail:
                detail = (
                    f"; the end record at byte {base + pos} announces a comment of {fields[7]} "
                    f"bytes, the file ends {n - pos - _EOCD.size} bytes after it"
                )
        pos = tail.rfind(_EOCD_SIG, 0, pos)
    if not detail:
        detail = f"; no end-of-central-directory record in its last {n:,} bytes"
    raise DataError(f"{path}: truncated or not a zip ({size:,} bytes{detail})")


def _end_of_zip64(fd: Pread, path: str, eocd_at: int) -> tuple[int, int, int, int] | None:
    """From the ZIP64 end locator and record before the end record, when there are: (their
    first byte, entries, central directory size, central directory offset)."""
    locator_at = eocd_at - _LOCATOR.size
    if locator_at < 0:
        return None
    locator = _pread_exact(fd, _LOCATOR.size, locator_at, path, "the ZIP64 end locator")
    sig, disk, record_at, disks = _LOCATOR.unpack(locator)
    if sig != _LOCATOR_SIG:
        return None
    if disk != 0 or disks > 1:
        raise DataError(f"{path}: a zip spanned over {disks} disks is not supported")
    if record_at + _EOCD64.size > locator_at:
        raise DataError(
            f"{path}: truncated or damaged (the ZIP64 end locator at byte {locator_at} points "
            f"to byte {record_at}, past itself)"
        )
    record = _pread_exact(fd, _EOCD64.size, record_at, path, "the ZIP64 end record")
    sig, rest, _made, _needed, this_disk, cd_disk, here, entries, cd_size, cd_offset = (
        _EOCD64.unpack(record)
    )
    if sig != _EOCD64_SIG:
        raise DataError(
            f"{path}: damaged zip (no ZIP64 end record at byte {record_at}, where its "
            "locator points)"
        )
    if record_at + 12 + rest != locator_at:
        raise DataError(
            f"{path}: damaged zip (the ZIP64 end record at byte {record_at} says it ends at "
            f"byte {record_at + 12 + rest}, its locator is at byte {locator_at})"
        )
    if this_disk != 0 or cd_disk != 0 or here != entries:
        raise DataError(f"{path}: a zip spanned over several disks is not supported")
    return record_at, entries, cd_size, cd_offset


def _zip64_values(
    buf: bytes, at: int, length: int, usize: int, csize: int, offset: int, disk: int, where: str
) -> tuple[int, int, int]:
    """The sizes and offset a central entry gives as 0xFFFFFFFF, from its ZIP64 extra field
    (id 1), which holds in order only those that are: uncompressed size, compressed size,
    local header offset, disk number start.

    >>> extra = struct.pack("<HHQ", 1, 8, 5_000_000_000) + struct.pack("<HH", 0x5455, 0)
    >>> _zip64_values(extra, 0, len(extra), 3, 3, _MAX32, 0, "a.zip:m")
    (3, 3, 5000000000)
    """
    end = at + length
    while at + 4 <= end:
        kind, size = _EXTRA_HEADER.unpack_from(buf, at)
        at += 4
        if kind != 1:
            at += size
            continue
        need = 8 * ((usize == _MAX32) + (csize == _MAX32) + (offset == _MAX32))
        need += 4 * (disk == _MAX16)
        if size < need or at + need > end:
            break
        if usize == _MAX32:
            usize = _U64.unpack_from(buf, at)[0]
            at += 8
        if csize == _MAX32:
            csize = _U64.unpack_from(buf, at)[0]
            at += 8
        if offset == _MAX32:
            offset = _U64.unpack_from(buf, at)[0]
            at += 8
        if disk == _MAX16 and _U32.unpack_from(buf, at)[0] != 0:
            raise DataError(f"{where}: a zip spanned over several disks is not supported")
        return usize, csize, offset
    raise DataError(
        f"{where}: damaged central directory entry (a size or offset of 0xFFFFFFFF without "
        "a ZIP64 extra field that gives it)"
    )


def index_zip(path: Path) -> ZipIndex:
    """Index the file members of the zip at ``path`` from its central directory alone.

    The end-of-central-directory record is searched for in the last 65,557 bytes (a zip
    comment is allowed), then the ZIP64 end locator and record when there are, then the
    central directory is read in 8 MiB pieces. No local header and no member data is read.
    """
    where = str(path)
    if is_url(path):  # an object store: the end records and the directory by blocks
        store = open_store(where)
        info = store.info(where)
        # The end records, then the directory before them: no walk forward to read ahead for.
        blocks = BlockCache(store, where, info.size, ahead=0)
        return _index_fd(blocks.pread, where, info.size)
    try:
        st = path.stat()
    except OSError as exc:
        raise DataError(f"{where}: cannot read ({exc.strerror})") from None
    if not path.is_file():
        raise DataError(f"{where}: not a regular file")
    try:
        with open(path, "rb", buffering=0) as f:
            return _index_fd(reader_of(f.fileno()), where, st.st_size)
    except OSError as exc:
        raise DataError(f"{where}: cannot read ({exc.strerror})") from None


def _index_fd(fd: Pread, path: str, size: int) -> ZipIndex:
    eocd_at, (disk, cd_disk, here, entries, cd_size, cd_offset) = _find_end_record(fd, path, size)
    if disk != 0 or cd_disk != 0 or here != entries:
        raise DataError(f"{path}: a zip spanned over several disks is not supported")
    records_at = eocd_at
    zip64 = _end_of_zip64(fd, path, eocd_at)
    if zip64 is not None:
        records_at, entries, cd_size, cd_offset = zip64
    elif cd_size == _MAX32 or cd_offset == _MAX32:
        raise DataError(
            f"{path}: damaged zip (its end record defers to a ZIP64 end record, and there is "
            "no ZIP64 end locator before it)"
        )
    if cd_offset + cd_size != records_at:
        raise DataError(
            f"{path}: damaged zip (the central directory, {cd_size:,} bytes at byte "
            f"{cd_offset:,}, should end where the end records start, at byte {records_at:,}; "
            "truncated, or data added before or inside it)"
        )
    return _read_central(fd, path, size, cd_offset, cd_size, entries)


def _read_central(
    fd: Pread, path: str, size: int, cd_offset: int, cd_size: int, entries: int
) -> ZipIndex:
    names: list[str] = []
    offsets = array("q")
    compressed = array("q")
    sizes = array("q")
    methods = array("B")
    crcs = array("I")
    add_name, add_offset, add_compressed = names.append, offsets.append, compressed.append
    add_size, add_method, add_crc = sizes.append, methods.append, crcs.append
    unpack = _CENTRAL.unpack_from
    cd_end = cd_offset + cd_size
    buf = b""
    blen = 0
    at = 0  # the next entry's position in buf
    pos = cd_offset  # the file offset of buf's end
    for i in range(entries):
        if at + 46 > blen:
            buf, pos = _more(fd, path, buf, at, 46, pos, cd_end)
            blen, at = len(buf), 0
            if blen < 46:
                raise _cut_short(path, i, entries, cd_end)
        sig, flags, method, crc, csize, usize, nlen, xlen, clen, disk, offset = unpack(buf, at)
        if sig != _CENTRAL_SIG:
            raise DataError(
                f"{path}: damaged central directory (bad header signature at byte "
                f"{pos - blen + at:,}, entry {i + 1:,} of {entries:,})"
            )
        name_at = at + 46
        next_at = name_at + nlen + xlen + clen
        if next_at > blen:
            buf, pos = _more(fd, path, buf, at, next_at - at, pos, cd_end)
            blen, at = len(buf), 0
            name_at, next_at = 46, 46 + nlen + xlen + clen
            if next_at > blen:
                raise _cut_short(path, i, entries, cd_end)
        at = next_at
        if nlen and buf[name_at + nlen - 1] == 0x2F:  # "/": a directory entry
            continue
        raw = buf[name_at : name_at + nlen]
        try:
            name = raw.decode("ascii")  # what cp437 and UTF-8 both make of it, in C
        except UnicodeDecodeError:
            name = _decode_name(raw, flags, path, i, entries)
        if offset == _MAX32 or usize == _MAX32 or csize == _MAX32 or disk == _MAX16:
            # Past 4 GiB every entry has one: the offset alone, first in the extra field,
            # is read here without the general parser's call.
            extra_at = name_at + nlen
            if (
                xlen >= 12
                and usize != _MAX32
                and csize != _MAX32
                and disk != _MAX16
                and buf[extra_at : extra_at + 2] == b"\x01\x00"
                and buf[extra_at + 2] | buf[extra_at + 3] << 8 >= 8
            ):
                offset = _U64.unpack_from(buf, extra_at + 4)[0]
            else:
                usize, csize, offset = _zip64_values(
                    buf, extra_at, xlen, usize, csize, offset, disk, f"{path}:{name}"
                )
        if flags & _FLAG_ENCRYPTED:
            raise DataError(f"{path}:{name}: encrypted members are not supported")
        if method != STORED and method != DEFLATED:
            raise DataError(f"{path}:{name}: {_unsupported(method)}")
        if method == STORED and csize != usize:
            raise DataError(
                f"{path}:{name}: damaged central directory entry (stored, yet {csize:,} bytes "
                f"that are {usize:,} bytes)"
            )
        # The local header's name is the central one (its extra field may differ in length).
        if offset + 30 + nlen + csize > cd_offset:
            raise DataError(
                f"{path}:{name}: truncated or damaged zip (the member's local header at byte "
                f"{offset:,} and its {csize:,} bytes would run past byte {cd_offset:,}, where "
                f"the central directory starts; the file has {size:,} bytes)"
            )
        add_name(name)
        add_offset(offset)
        add_compressed(csize)
        add_size(usize)
        add_method(method)
        add_crc(crc)
    left = pos - blen + at
    if left != cd_end:
        raise DataError(
            f"{path}: damaged zip ({cd_end - left:,} bytes of the central directory are left "
            f"after the {entries:,} entries its end record counts)"
        )
    if len(set(names)) != len(names):
        seen: set[str] = set()
        for name in names:
            if name in seen:
                raise DataError(f"{path}:{name}: two members have this name")
            seen.add(name)
    return ZipIndex(path, size, names, offsets, compressed, sizes, methods, crcs)


def _decode_name(raw: bytes, flags: int, path: str, i: int, entries: int) -> str:
    """A name that is not ASCII: UTF-8 when flag bit 11 is set, else code page 437, as
    Python's ``zipfile`` reads it.

    >>> _decode_name("naïve/é.JPEG".encode(), 0x800, "a.zip", 0, 1)
    'naïve/é.JPEG'
    >>> _decode_name(b"caf\\x82.JPEG", 0, "a.zip", 0, 1)
    'café.JPEG'
    """
    try:
        return raw.decode("utf-8" if flags & _FLAG_UTF8 else "cp437")
    except UnicodeDecodeError:
        raise DataError(
            f"{path}: damaged central directory (entry {i + 1:,} of {entries:,} is flagged "
            f"UTF-8, its name {raw!r} is not)"
        ) from None


def _more(
    fd: Pread, path: str, buf: bytes, at: int, need: int, pos: int, cd_end: int
) -> tuple[bytes, int]:
    """``buf[at:]`` followed by the next piece of the central directory, so that ``need``
    bytes are there if the directory has them; and the new file offset of its end."""
    rest = buf[at:]
    want = min(max(_CD_CHUNK, need - len(rest)), cd_end - pos)
    if want <= 0:
        return rest, pos
    return rest + _pread_exact(fd, want, pos, path, "the central directory"), pos + want


def _cut_short(path: str, i: int, entries: int, cd_end: int) -> DataError:
    return DataError(
        f"{path}: damaged zip (the central directory is cut short: entry {i + 1:,} of "
        f"{entries:,} runs past its end at byte {cd_end:,})"
    )


def read_member(
    fd: int | Pread,
    header_offset: int,
    compressed: int,
    method: int,
    origin: str,
    *,
    size: int | None = None,
    crc: int | None = None,
) -> bytes:
    """One member's bytes, read from ``fd`` with one ``os.pread`` in the common case.

    ``30 + compressed + SLACK`` bytes are read at the local header, whose name and extra
    lengths say where the data starts; a second ``pread`` is made only when those are longer
    than :data:`SLACK`. Stored data is returned as it is, deflated data inflated (raw
    deflate, which must end exactly with the compressed bytes). ``size`` and ``crc``, when
    given, are checked. Errors name ``origin`` (e.g. ``f"{zip_path}:{name}"``).
    """
    if method != STORED and method != DEFLATED:
        raise DataError(f"{origin}: {_unsupported(method)}")
    pread = reader_of(fd)
    want = 30 + compressed + SLACK
    try:
        buf = pread(want, header_offset)
    except OSError as exc:
        raise DataError(f"{origin}: cannot read ({exc.strerror})") from None
    got = len(buf)
    if got < 30:
        raise DataError(
            f"{origin}: truncated zip (the local header at byte {header_offset:,} is cut "
            f"short: the file ends at byte {header_offset + got:,})"
        )
    sig, nlen, xlen = _LOCAL.unpack_from(buf)
    if sig != _LOCAL_SIG:
        raise DataError(
            f"{origin}: damaged zip (no local file header at byte {header_offset:,}: "
            f"{buf[:4]!r} where PK\\x03\\x04 should be)"
        )
    start = 30 + nlen + xlen
    end = start + compressed
    if end <= got:
        data: bytes | memoryview = (
            buf[start:end] if method == STORED else memoryview(buf)[start:end]
        )
    elif got == want:  # a local name and extra longer than SLACK: the data is read again
        try:
            data = pread(compressed, header_offset + start)
        except OSError as exc:
            raise DataError(f"{origin}: cannot read ({exc.strerror})") from None
        if len(data) != compressed:
            raise _short(origin, header_offset + start, compressed, len(data))
    else:
        raise _short(origin, header_offset + start, compressed, got - start)
    if method == STORED:
        out = bytes(data)
        if size is not None and size != compressed:
            raise DataError(
                f"{origin}: damaged zip (stored member of {compressed:,} bytes whose size is "
                f"given as {size:,})"
            )
    else:
        out = _inflate(data, compressed, origin, size)
    if crc is not None:
        actual = zlib.crc32(out)
        if actual != crc:
            raise DataError(
                f"{origin}: damaged member (CRC-32 {actual:08x}, the central directory "
                f"says {crc:08x})"
            )
    return out


def _short(origin: str, at: int, compressed: int, got: int) -> DataError:
    return DataError(
        f"{origin}: truncated zip (the member's {compressed:,} bytes at byte {at:,} run past "
        f"the end of the file at byte {at + max(got, 0):,})"
    )


def _inflate(data: bytes | memoryview, compressed: int, origin: str, size: int | None) -> bytes:
    """Raw-inflate ``data``, which must hold the whole deflate stream and nothing after it;
    with ``size``, no more than ``size + 1`` bytes are ever made (a damaged or hostile size
    cannot fill memory)."""
    inflater = zlib.decompressobj(-15)
    try:
        out = inflater.decompress(data, 0 if size is None else size + 1)
    except zlib.error as exc:
        raise DataError(f"{origin}: damaged deflate data ({exc})") from None
    if size is not None and len(out) > size:
        raise DataError(
            f"{origin}: damaged member (it inflates to more than the {size:,} bytes the "
            "central directory says)"
        )
    if not inflater.eof:
        raise DataError(
            f"{origin}: damaged deflate data (the stream does not end within its "
            f"{compressed:,} compressed bytes)"
        )
    if inflater.unused_data:
        raise DataError(
            f"{origin}: damaged deflate data (the stream ends "
            f"{len(inflater.unused_data):,} bytes before its compressed size of "
            f"{compressed:,} bytes)"
        )
    if size is not None and len(out) != size:
        raise DataError(
            f"{origin}: damaged member (it inflates to {len(out):,} bytes, the central "
            f"directory says {size:,})"
        )
    return out
