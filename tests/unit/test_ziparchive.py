"""The in-place zip reader against zips made by the standard library's ``zipfile``."""

from __future__ import annotations

import os
import pickle
import random
import struct
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from imagenet_prep import ziparchive
from imagenet_prep.errors import DataError
from imagenet_prep.ziparchive import DEFLATED, SLACK, STORED, ZipIndex, index_zip, read_member

# (name, data, method): what the zips below hold, by kind.
Member = tuple[str, bytes, int]
_CENTRAL = struct.Struct("<4s4B4HL2L5H2L")
_EOCD = struct.Struct("<4s4H2LH")
_MAX32 = 0xFFFFFFFF


def payload(n: int, seed: int = 0) -> bytes:
    """``n`` bytes that deflate a little (half random, half repeated)."""
    rng = random.Random(seed)
    half = rng.randbytes(n // 2)
    return half + half[: n - len(half)]


def write_zip(path: Path, members: list[Member], comment: bytes = b"") -> bytes:
    with zipfile.ZipFile(path, "w") as z:
        for name, data, method in members:
            z.writestr(name, data, compress_type=method)
        z.comment = comment
    return path.read_bytes()


def check_like_zipfile(path: Path) -> ZipIndex:
    """Index ``path`` and read every member; both must agree with ``zipfile``'s reading."""
    index = index_zip(path)
    with zipfile.ZipFile(path) as z:
        infos = [info for info in z.infolist() if not info.is_dir()]
        assert index.names == [info.filename for info in infos]
        assert list(index.header_offsets) == [info.header_offset for info in infos]
        assert list(index.compressed) == [info.compress_size for info in infos]
        assert list(index.sizes) == [info.file_size for info in infos]
        assert list(index.methods) == [info.compress_type for info in infos]
        assert list(index.crcs) == [info.CRC for info in infos]
        fd = os.open(path, os.O_RDONLY)
        try:
            for i, info in enumerate(infos):
                expected = z.read(info)
                assert index.read(fd, i) == expected
                assert index.read(fd, i, check=False) == expected
        finally:
            os.close(fd)
    assert index.size == path.stat().st_size and index.path == str(path)
    return index


def central_headers(data: bytes) -> Iterator[tuple[int, ...]]:
    """The fields of every central header in ``data`` (whose members hold no ``PK\\x01\\x02``)."""
    at = data.find(b"PK\x01\x02")
    while at >= 0:
        yield _CENTRAL.unpack_from(data, at)
        at = data.find(b"PK\x01\x02", at + 4)


def eocd_at(data: bytes) -> int:
    return data.rindex(b"PK\x05\x06")


def patch_eocd(data: bytes, **fields: int) -> bytes:
    """``data`` with fields of its end record replaced (``disk``, ``entries``, ``cd_size``...)."""
    at = eocd_at(data)
    keys = ["sig", "disk", "cd_disk", "here", "entries", "cd_size", "cd_offset", "comment"]
    values = dict(zip(keys, _EOCD.unpack_from(data, at), strict=True))
    values.update(fields)
    record = _EOCD.pack(*(values[k] for k in keys))
    return data[:at] + record + data[at + _EOCD.size :]


def error_of(call: Callable[[], object], path: Path | str, match: str) -> str:
    """The message of the DataError ``call`` raises: it matches, names ``path``, one line."""
    with pytest.raises(DataError, match=match) as err:
        call()
    message = str(err.value)
    assert str(path) in message
    assert "\n" not in message
    return message


MIXED: list[Member] = [
    ("ILSVRC/Data/CLS-LOC/train/n01440764/n01440764_10026.JPEG", payload(5000, 1), STORED),
    ("ILSVRC/Data/CLS-LOC/train/n01440764/n01440764_10027.JPEG", payload(7000, 2), DEFLATED),
    ("ILSVRC/Data/CLS-LOC/train/n01440764/empty_stored", b"", STORED),
    ("ILSVRC/Data/CLS-LOC/train/n01440764/empty_deflated", b"", DEFLATED),
    ("LOC_synset_mapping.txt", b"n01440764 tench, Tinca tinca\n" * 40, DEFLATED),
]


def test_stored_deflated_and_empty_members_read_as_zipfile_reads_them(tmp_path: Path) -> None:
    path = tmp_path / "imagenet-object-localization-challenge.zip"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("ILSVRC/", b"")
        z.writestr("ILSVRC/Data/CLS-LOC/train/n01440764/", b"")
        for name, data, method in MIXED:
            z.writestr(name, data, compress_type=method)
    index = check_like_zipfile(path)
    assert index.names == [name for name, _, _ in MIXED]  # directory entries are left out
    assert len(index) == 5
    assert list(index.methods) == [STORED, DEFLATED, STORED, DEFLATED, DEFLATED]
    assert index.compressed[1] < index.sizes[1]
    assert index.find(MIXED[1][0]) == 1 and index.find("ILSVRC/") is None
    fd = os.open(path, os.O_RDONLY)
    try:
        for i, (_name, data, method) in enumerate(MIXED):
            got = read_member(fd, index.header_offsets[i], index.compressed[i], method, "o")
            assert got == data
    finally:
        os.close(fd)


def test_an_empty_zip_has_no_members(tmp_path: Path) -> None:
    path = tmp_path / "empty.zip"
    assert len(write_zip(path, [])) == 22
    index = index_zip(path)
    assert len(index) == 0 and index.find("x") is None


def test_utf8_and_cp437_names(tmp_path: Path) -> None:
    path = tmp_path / "names.zip"
    # zipfile writes non-ASCII names as UTF-8 with flag bit 11; a cp437 name (no flag) is
    # made by swapping same-length bytes in both headers.
    data = write_zip(
        path,
        [("naïve/😀.JPEG", b"utf8", STORED), ("cafX.JPEG", b"cp437", DEFLATED)],
    )
    assert data.count(b"cafX.JPEG") == 2
    path.write_bytes(data.replace(b"cafX.JPEG", b"caf\x82.JPEG"))
    index = check_like_zipfile(path)
    assert index.names == ["naïve/😀.JPEG", "café.JPEG"]


def test_a_comment_that_holds_the_end_signature(tmp_path: Path) -> None:
    path = tmp_path / "comment.zip"
    comment = b"made for a test; PK\x05\x06" + bytes(30) + b" and more text"
    data = write_zip(path, MIXED, comment=comment)
    assert data.endswith(comment)
    # zipfile takes the comment's signature for the end record and lists nothing: the
    # members are checked against a copy without the comment.
    with zipfile.ZipFile(path) as z:
        assert z.infolist() == []
    index = index_zip(path)
    plain = tmp_path / "plain.zip"
    assert plain.write_bytes(patch_eocd(data[: -len(comment)], comment=0))
    check_like_zipfile(plain)
    assert index.names == index_zip(plain).names
    fd = os.open(path, os.O_RDONLY)
    try:
        assert [index.read(fd, i) for i in range(len(index))] == [d for _, d, _ in MIXED]
    finally:
        os.close(fd)


class _Unseekable:
    """A stream that can only be written to (no tell, no seek): zipfile then writes data
    descriptors after the data and zeros in the local headers."""

    def __init__(self) -> None:
        self.out = bytearray()

    def write(self, data: bytes) -> int:
        self.out += data
        return len(data)

    def flush(self) -> None:
        pass


def test_data_descriptors_local_sizes_zero(tmp_path: Path) -> None:
    stream = _Unseekable()
    with zipfile.ZipFile(stream, "w") as z:  # type: ignore[call-overload]
        for name, data, method in MIXED:
            info = zipfile.ZipInfo(name)
            info.compress_type = method
            with z.open(info, "w") as f:
                f.write(data)
    path = tmp_path / "streamed.zip"
    path.write_bytes(bytes(stream.out))
    index = check_like_zipfile(path)
    with zipfile.ZipFile(path) as z:
        assert all(info.flag_bits & 0x08 for info in z.infolist())
    # The local headers' CRCs and sizes are zero: the central directory's are the ones used.
    raw = path.read_bytes()
    for offset in index.header_offsets:
        assert struct.unpack_from("<3L", raw, offset + 14) == (0, 0, 0)
    assert DEFLATED in index.methods and STORED in index.methods


@pytest.fixture
def zip64_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    """zipfile writes ZIP64 records past 100 bytes and 3 members."""
    monkeypatch.setattr(zipfile, "ZIP64_LIMIT", 100)
    monkeypatch.setattr(zipfile, "ZIP_FILECOUNT_LIMIT", 3)


ZIP64_MEMBERS: list[Member] = [
    ("a/small", b"s" * 40, STORED),
    ("a/big_stored", b"b" * 3000, STORED),
    ("a/big_deflated", b"d" * 5000, DEFLATED),
    ("a/empty", b"", STORED),
    ("a/last", b"l" * 500, DEFLATED),
]


@pytest.mark.usefixtures("zip64_limits")
def test_zip64_records_and_extra_fields(tmp_path: Path) -> None:
    path = tmp_path / "zip64.zip"
    data = write_zip(path, ZIP64_MEMBERS)
    assert b"PK\x06\x06" in data and b"PK\x06\x07" in data
    headers = list(central_headers(data))
    assert len(headers) == 5
    # (compressed, uncompressed, offset) as the central headers hold them: 0xFFFFFFFF means
    # "in the ZIP64 extra field", which holds only those.
    fields = [(h[10], h[11], h[18]) for h in headers]
    assert fields[0] == (40, 40, 0)
    assert fields[1][:2] == (_MAX32, _MAX32)
    assert fields[2] == fields[4] == (_MAX32, _MAX32, _MAX32)
    assert fields[3] == (0, 0, _MAX32)
    index = check_like_zipfile(path)
    assert list(index.sizes) == [len(d) for _, d, _ in ZIP64_MEMBERS]

    # The end record may defer every field to the ZIP64 end record.
    deferred = patch_eocd(data, here=0xFFFF, entries=0xFFFF, cd_size=_MAX32, cd_offset=_MAX32)
    path.write_bytes(deferred)
    again = index_zip(path)
    assert again.names == index.names and again.header_offsets == index.header_offsets

    # Damaged ZIP64 end records: the locator (20 bytes before the end record) points
    # elsewhere, or says the zip spans disks; the ZIP64 record's own size is wrong.
    locator = eocd_at(data) - 20
    record = struct.unpack_from("<Q", data, locator + 8)[0]
    for at, fmt, value, match in [
        (locator + 8, "<Q", record - 1, "no ZIP64 end record"),
        (locator + 8, "<Q", locator, "past itself"),
        (locator + 16, "<L", 2, "spanned over 2 disks"),
        (record + 4, "<Q", 45, "says it ends"),
        (record + 24, "<Q", 4, "spanned"),
    ]:
        path.write_bytes(_edit(data, at, fmt, value))
        error_of(lambda: index_zip(path), path, match)


def test_a_local_zip64_extra_longer_than_the_central_one(tmp_path: Path) -> None:
    path = tmp_path / "force.zip"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("first", b"1" * 100)
        for name, method in (("forced_stored", STORED), ("forced_deflated", DEFLATED)):
            info = zipfile.ZipInfo(name)
            info.compress_type = method
            with z.open(info, "w", force_zip64=True) as f:
                f.write(payload(3000))
    index = check_like_zipfile(path)
    raw = path.read_bytes()
    local_extra = [struct.unpack_from("<H", raw, off + 28)[0] for off in index.header_offsets]
    central_extra = [h[13] for h in central_headers(raw)]
    assert local_extra == [0, 20, 20] and central_extra == [0, 0, 0]


def _count_preads(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    calls: list[tuple[int, int]] = []
    real = os.pread

    def counting(fd: int, n: int, at: int) -> bytes:
        calls.append((n, at))
        return real(fd, n, at)

    monkeypatch.setattr(os, "pread", counting)
    return calls


def test_one_pread_per_member_and_a_second_past_slack(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "extra.zip"
    long_extra = struct.pack("<HH", 0xCAFE, SLACK + 200) + bytes(SLACK + 200)
    with zipfile.ZipFile(path, "w") as z:
        for method in (STORED, DEFLATED):
            info = zipfile.ZipInfo(f"long_extra_{method}")
            info.extra = long_extra
            info.compress_type = method
            z.writestr(info, payload(2000, method))
        z.writestr("plain", payload(2000), compress_type=DEFLATED)
    index = check_like_zipfile(path)
    calls = _count_preads(monkeypatch)
    fd = os.open(path, os.O_RDONLY)
    try:
        for i in range(3):
            calls.clear()
            index.read(fd, i)
            assert len(calls) == (2 if i < 2 else 1)
            assert calls[0] == (30 + index.compressed[i] + SLACK, index.header_offsets[i])
    finally:
        os.close(fd)


@pytest.mark.parametrize("chunk", [1, 45, 47, 100, 333])
def test_entries_split_across_central_directory_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    """The central directory is read in pieces (8 MiB); entries that straddle two are read
    whole. Tiny pieces put every boundary inside an entry somewhere."""
    path = tmp_path / "pieces.zip"
    write_zip(path, [*MIXED, ("d/", b"", STORED), ("x" * 300, b"long name", STORED)])
    expected = index_zip(path)
    monkeypatch.setattr(ziparchive, "_CD_CHUNK", chunk)
    assert index_zip(path) == expected


def test_an_index_pickles_without_its_lookup_table(tmp_path: Path) -> None:
    path = tmp_path / "p.zip"
    write_zip(path, MIXED)
    index = index_zip(path)
    assert index.find(MIXED[2][0]) == 2
    copy = pickle.loads(pickle.dumps(index))
    assert "_lookup" not in copy.__dict__
    assert copy == index and copy.find(MIXED[3][0]) == 3


# Damage: every case a one-line DataError that names the file (and the member).


@pytest.mark.parametrize("zip64", [False, True])
def test_every_cut_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, zip64: bool
) -> None:
    if zip64:
        monkeypatch.setattr(zipfile, "ZIP64_LIMIT", 100)
        monkeypatch.setattr(zipfile, "ZIP_FILECOUNT_LIMIT", 3)
    whole = write_zip(tmp_path / "whole.zip", MIXED, comment=b"a comment")
    assert (b"PK\x06\x06" in whole) == zip64
    cd_start = whole.index(b"PK\x01\x02")
    path = tmp_path / "cut.zip"
    # Every cut through the central directory and the end records; some through the data.
    cuts = [*range(cd_start, len(whole)), 0, 1, 4, 29, 30, 100, 5000, cd_start - 1]
    for cut in cuts:
        path.write_bytes(whole[:cut])
        error_of(lambda: index_zip(path), path, "truncated")


def test_data_cut_out_under_a_surviving_central_directory(tmp_path: Path) -> None:
    whole = write_zip(tmp_path / "whole.zip", MIXED)
    cd_start = whole.index(b"PK\x01\x02")
    lost = 10  # bytes of the last member's data, as if a piece of the download were missing
    path = tmp_path / "holed.zip"
    path.write_bytes(
        patch_eocd(whole[: cd_start - lost] + whole[cd_start:], cd_offset=cd_start - lost)
    )
    message = error_of(lambda: index_zip(path), f"{path}:{MIXED[-1][0]}", "truncated")
    assert "central directory starts" in message


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"", "truncated or not a zip"),
        (b"<html><body>403 Forbidden</body></html>" * 10, "truncated or not a zip"),
        (bytes(100_000), "truncated or not a zip"),
    ],
)
def test_files_that_are_no_zip(tmp_path: Path, content: bytes, match: str) -> None:
    path = tmp_path / "train.zip"
    path.write_bytes(content)
    error_of(lambda: index_zip(path), path, match)


def test_missing_file_and_a_directory(tmp_path: Path) -> None:
    error_of(lambda: index_zip(tmp_path / "nope.zip"), tmp_path / "nope.zip", "cannot read")
    error_of(lambda: index_zip(tmp_path), tmp_path, "not a regular file")


def _edit(data: bytes, at: int, fmt: str, value: int) -> bytes:
    out = bytearray(data)
    struct.pack_into(fmt, out, at, value)
    return bytes(out)


def test_damaged_central_directories(tmp_path: Path) -> None:
    whole = write_zip(tmp_path / "whole.zip", MIXED)
    end = _EOCD.unpack_from(whole, eocd_at(whole))
    cd_size, cd_offset = end[5], end[6]
    path = tmp_path / "bad.zip"
    second = whole.index(b"PK\x01\x02", cd_offset + 4)
    cases = [
        (patch_eocd(whole, cd_offset=cd_offset + 10_000), "should end where the end records"),
        (patch_eocd(whole, cd_size=cd_size + 7), "should end where the end records"),
        (patch_eocd(whole, disk=1), "spanned"),
        (patch_eocd(whole, here=2), "spanned"),
        (patch_eocd(whole, entries=len(MIXED) + 1, here=len(MIXED) + 1), "cut short"),
        (patch_eocd(whole, entries=len(MIXED) - 1, here=len(MIXED) - 1), "left after"),
        (whole[:second] + b"PX" + whole[second + 2 :], "bad header signature"),
        (patch_eocd(whole, cd_offset=_MAX32), "no ZIP64 end locator"),
    ]
    for data, match in cases:
        path.write_bytes(data)
        error_of(lambda: index_zip(path), path, match)


def test_encrypted_member(tmp_path: Path) -> None:
    whole = write_zip(tmp_path / "whole.zip", MIXED)
    second = whole.index(b"PK\x01\x02", whole.index(b"PK\x01\x02") + 4)
    path = tmp_path / "enc.zip"
    path.write_bytes(_edit(whole, second + 8, "<H", 0x0001))
    error_of(lambda: index_zip(path), f"{path}:{MIXED[1][0]}", "encrypted")


@pytest.mark.parametrize(
    ("method", "name"), [(zipfile.ZIP_BZIP2, "bzip2"), (zipfile.ZIP_LZMA, "lzma")]
)
def test_other_compression_methods(tmp_path: Path, method: int, name: str) -> None:
    path = tmp_path / f"{name}.zip"
    write_zip(path, [("ok", b"fine", STORED), ("packed.JPEG", payload(1000), method)])
    message = error_of(lambda: index_zip(path), f"{path}:packed.JPEG", "not supported")
    assert f"compression method {method} ({name}) is not supported" in message
    assert "re-zip with deflate or store" in message
    with open(path, "rb") as f:
        error_of(lambda: read_member(f.fileno(), 0, 4, method, "z:m"), "z:m", name)


def test_duplicate_names(tmp_path: Path) -> None:
    path = tmp_path / "dup.zip"
    with pytest.warns(UserWarning, match="Duplicate name"):
        write_zip(path, [("a", b"1", STORED), ("b", b"2", STORED), ("a", b"3", STORED)])
    error_of(lambda: index_zip(path), f"{path}:a", "two members")


def test_damaged_deflate_streams(tmp_path: Path) -> None:
    path = tmp_path / "d.zip"
    data = payload(20_000)
    write_zip(path, [("m.JPEG", data, DEFLATED), ("next", b"after", STORED)])
    index = index_zip(path)
    origin = index.origin(0)
    off, comp, size, crc = (
        index.header_offsets[0],
        index.compressed[0],
        index.sizes[0],
        index.crcs[0],
    )
    data_at = off + 30 + len("m.JPEG")
    raw = path.read_bytes()
    fd = os.open(path, os.O_RDONLY)
    try:
        # The stream must end exactly with its compressed bytes.
        error_of(lambda: read_member(fd, off, comp - 5, DEFLATED, origin), origin, "does not end")
        error_of(lambda: read_member(fd, off, comp + 3, DEFLATED, origin), origin, "ends 3 bytes")
        # Wrong size or CRC, when they are given.
        for kwargs in ({"size": size + 1}, {"size": size - 1}, {"crc": crc ^ 1}):
            read = lambda kw=kwargs: read_member(fd, off, comp, DEFLATED, origin, **kw)  # noqa: E731
            error_of(read, origin, "damaged member")
    finally:
        os.close(fd)
    # An invalid block type in the first byte; then a byte flipped in the middle.
    for at, match in ((data_at, "damaged deflate data"), (data_at + comp // 2, "damaged")):
        bad = bytearray(raw)
        bad[at] = 0xFF if at == data_at else bad[at] ^ 0x55
        path.write_bytes(bytes(bad))
        with open(path, "rb") as f:
            error_of(lambda: index_zip(path).read(f.fileno(), 0), origin, match)


def test_read_member_damage(tmp_path: Path) -> None:
    path = tmp_path / "r.zip"
    whole = write_zip(path, MIXED)
    index = index_zip(path)
    fd = os.open(path, os.O_RDONLY)
    try:
        off, comp = index.header_offsets[0], index.compressed[0]
        # Not at a local header.
        error_of(lambda: read_member(fd, off + 1, comp, STORED, "z:m"), "z:m", "no local file")
        # Data past the end of the file: the header is read, its data is not all there.
        error_of(lambda: read_member(fd, off, len(whole), STORED, "z:m"), "z:m", "truncated zip")
        error_of(lambda: read_member(fd, len(whole) - 10, 5, STORED, "z:m"), "z:m", "truncated")
        # A stored member's size and CRC, when given.
        error_of(lambda: read_member(fd, off, comp, STORED, "z:m", size=comp + 1), "z:m", "size")
        error_of(
            lambda: read_member(fd, off, comp, STORED, "z:m", crc=index.crcs[0] ^ 1), "z:m", "CRC"
        )
    finally:
        os.close(fd)
    folder = os.open(tmp_path, os.O_RDONLY)
    try:
        error_of(lambda: read_member(folder, 0, 5, STORED, "z:m"), "z:m", "cannot read")
    finally:
        os.close(folder)
