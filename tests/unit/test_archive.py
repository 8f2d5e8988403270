"""The hand-written tar indexer against archives made by the standard library."""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
from pathlib import Path

import pytest

from imagenet_prep.archive import (
    BLOCK,
    RECORD,
    file_md5,
    index_tar,
    iter_tar_stream,
    iter_tar_view,
    read_at,
)
from imagenet_prep.errors import DataError
from imagenet_prep.loaders.readers.base import map_file


def make_tar(members: list[tuple[str, bytes]], fmt: int = tarfile.GNU_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.mark.parametrize("fmt", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_nested_index_finds_every_member_at_its_offset(tmp_path: Path, fmt: int) -> None:
    long_name = "d" * 60 + "/" + "e" * 90 + ".JPEG"  # needs ustar prefix, GNU longname or pax
    inner_a = make_tar(
        [("a_1.JPEG", b"x" * 1000), ("a_2.JPEG", b"y" * 512), (long_name, b"zz")], fmt
    )
    inner_b = make_tar([], fmt)
    outer = make_tar([("n1.tar", inner_a), ("n2.TAR", inner_b), ("README", b"hello")], fmt)
    path = tmp_path / "outer.tar"
    path.write_bytes(outer)

    index = index_tar(path, nested=True)

    assert file_md5(path) == hashlib.md5(outer).hexdigest()
    assert index.size == len(outer)
    got = [(m.parent, m.name, outer[m.offset : m.offset + m.size]) for m in index.members]
    assert got == [
        ("n1.tar", "a_1.JPEG", b"x" * 1000),
        ("n1.tar", "a_2.JPEG", b"y" * 512),
        ("n1.tar", long_name, b"zz"),
        ("", "README", b"hello"),
    ]
    # The nested tars are listed too, those that hold nothing with them.
    tars = [(m.name, outer[m.offset : m.offset + m.size]) for m in index.nested]
    assert tars == [("n1.tar", inner_a), ("n2.TAR", inner_b)]
    flat = index_tar(path, nested=False)
    assert [m.name for m in flat.members] == ["n1.tar", "n2.TAR", "README"]
    assert flat.md5 is None and index.md5 is None  # an index reads headers, not every byte
    assert flat.nested == ()


def test_read_at_reads_a_member(tmp_path: Path) -> None:
    data = make_tar([("a", b"0123456789")])
    path = tmp_path / "a.tar"
    path.write_bytes(data)
    member = index_tar(path).members[0]
    with open(path, "rb") as f:
        assert read_at(f, member.offset, member.size, "a") == b"0123456789"
        with pytest.raises(DataError, match="truncated"):
            read_at(f, len(data) - 3, 10, "a.tar:a")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"<html><body>503 Service Unavailable</body></html>" * 20, "not a tar archive"),
        (b"", "not a tar archive"),
        (bytes(4096), "not a tar archive"),
    ],
)
def test_files_that_are_no_tar_are_named(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "ILSVRC2012_img_train.tar"
    path.write_bytes(content)
    with pytest.raises(DataError, match=message) as err:
        index_tar(path, nested=True)
    assert str(path) in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("cut", [600, 3000, 9000])
def test_truncated_archive_is_an_error(tmp_path: Path, cut: int) -> None:
    inner = make_tar([("a_1.JPEG", b"x" * 5000)])
    outer = make_tar([("n1.tar", inner), ("n2.tar", inner)])
    path = tmp_path / "t.tar"
    path.write_bytes(outer[:cut])
    with pytest.raises(DataError, match="truncated") as err:
        index_tar(path, nested=True)
    assert str(path) in str(err.value)


def test_corrupt_header_later_in_the_file(tmp_path: Path) -> None:
    outer = bytearray(make_tar([("a", b"1" * 600), ("b", b"2" * 10)]))
    outer[1536 + 10] ^= 0xFF  # the second header's name
    path = tmp_path / "c.tar"
    path.write_bytes(bytes(outer))
    with pytest.raises(DataError, match="checksum"):
        index_tar(path)


def test_missing_and_directory_inputs(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="cannot read"):
        index_tar(tmp_path / "nope.tar")
    with pytest.raises(DataError, match="not a regular file"):
        index_tar(tmp_path)


def test_file_md5_of_a_file_larger_than_its_buffer(tmp_path: Path) -> None:
    data = bytes(range(256)) * (5 << 12) + b"tail"  # 5 MiB + 4 bytes: two reads and a bit
    path = tmp_path / "f.tar"
    path.write_bytes(data)
    assert file_md5(path) == hashlib.md5(data).hexdigest()
    with pytest.raises(DataError, match="cannot read") as err:
        file_md5(tmp_path / "missing.tar")
    assert "missing.tar" in str(err.value)


@pytest.mark.parametrize("fmt", ["ustar", "gnu", "pax"])
def test_a_mapped_tar_lists_names_and_offsets_like_tarfile(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / "t.tar"
    names = ["a.cls", "dir/" * 20 + "long.jpg" if fmt != "ustar" else "d/" * 40 + "x.jpg", "b.json"]
    payloads = [b"1", b"x" * 1000, b"{}"]
    formats = {"ustar": tarfile.USTAR_FORMAT, "gnu": tarfile.GNU_FORMAT, "pax": tarfile.PAX_FORMAT}
    with tarfile.open(path, "w", format=formats[fmt]) as tar:
        for name, data in zip(names, payloads, strict=True):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        directory = tarfile.TarInfo("a-directory")
        directory.type = tarfile.DIRTYPE
        tar.addfile(directory)  # not a regular file: skipped
    with tarfile.open(path) as tar:
        expected = [(m.name, m.offset_data, m.size) for m in tar if m.isfile()]
    members = iter_tar_view(map_file(str(path)), str(path))
    assert [(m.name, m.offset, m.size) for m in members] == expected


# --- the end of an archive -------------------------------------------------------------
#
# make_tar's archives (Python's tarfile) end as GNU tar's do: two zero blocks, then zeros up
# to a multiple of RECORD (10,240) bytes. Each member here takes a header and one data block.


def _ends(data: bytes) -> int:
    """Where the end-of-archive marker of ``data`` starts (after its last member)."""
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        last = tar.getmembers()[-1]
    return last.offset_data + (last.size + BLOCK - 1) // BLOCK * BLOCK


def _index_error(tmp_path: Path, data: bytes, *, nested: bool = True) -> str:
    path = tmp_path / "t.tar"
    path.write_bytes(data)
    with pytest.raises(DataError) as err:
        index_tar(path, nested=nested)
    message = str(err.value)
    assert message.startswith(f"{path}") and "\n" not in message
    return message


def test_the_record_padding_may_be_there_or_not(tmp_path: Path) -> None:
    outer = make_tar([("a", b"1" * 600), ("b", b"2" * 10)])
    assert len(outer) == RECORD
    marker = _ends(outer)
    path = tmp_path / "t.tar"
    for data in (outer, outer[: marker + 2 * BLOCK], outer[: marker + 2 * BLOCK + 1000]):
        path.write_bytes(data)
        assert [m.name for m in index_tar(path).members] == ["a", "b"]


@pytest.mark.parametrize("cut", ["after the last member", "after a member", "lone zero block"])
def test_an_archive_without_its_end_marker_is_an_error(tmp_path: Path, cut: str) -> None:
    outer = make_tar([("a", b"1" * 600), ("b", b"2" * 10)])
    marker = _ends(outer)
    at = {
        "after the last member": marker,
        "after a member": 3 * BLOCK,
        "lone zero block": marker + BLOCK,
    }[cut]
    message = _index_error(tmp_path, outer[:at])
    assert "truncated archive" in message and f"byte {at}" in message


def test_a_file_cut_inside_a_header_is_an_error(tmp_path: Path) -> None:
    outer = make_tar([("a", b"1" * 600), ("b", b"2" * 10)])
    message = _index_error(tmp_path, outer[: 3 * BLOCK + 100])
    assert "truncated archive" in message and f"byte {3 * BLOCK + 100}" in message


def test_a_tail_of_zeros_is_an_error(tmp_path: Path) -> None:
    members = [(f"m{i}", bytes([65 + i]) * 5000) for i in range(4)]
    outer = make_tar(members)
    # The last two members overwritten with zeros, the size unchanged.
    second_end = 2 * (BLOCK + 5120)
    damaged = outer[:second_end] + bytes(len(outer) - second_end)
    message = _index_error(tmp_path, damaged)
    record_end = RECORD * 2  # the marker at 11,264 ends in the second record
    assert f"{len(outer) - record_end:,} more bytes after the end of the archive" in message
    assert f"at byte {record_end}" in message and f"marker at byte {second_end}" in message


@pytest.mark.parametrize("where", [3 * BLOCK + 1, 4 * BLOCK, RECORD - 1])
def test_data_after_the_end_marker_is_an_error(tmp_path: Path, where: int) -> None:
    outer = bytearray(make_tar([("a", b"1" * 10)]))  # marker at 1024, padding to 10,240
    outer[where] = 7
    message = _index_error(tmp_path, bytes(outer))
    assert f"data at byte {where} after the end of the archive" in message


def test_a_record_of_zeros_too_many_is_an_error(tmp_path: Path) -> None:
    outer = make_tar([("a", b"1" * 10)])
    message = _index_error(tmp_path, outer + bytes(RECORD))
    assert f"10,240 more bytes after the end of the archive at byte {RECORD}" in message


def _class_tar(images: int) -> bytes:
    return make_tar([(f"n1_{i}.JPEG", bytes([48 + i]) * 700) for i in range(images)])


@pytest.mark.parametrize(
    ("damage", "found"),
    [
        ("cut at a member boundary", "truncated archive (it ends at byte"),
        ("zeros", "more bytes after the end of the archive"),
        ("garbage after the marker", "data at byte"),
        ("a record too many", "10,240 more bytes after the end of the archive"),
    ],
)
def test_a_damaged_nested_tar_is_named(tmp_path: Path, damage: str, found: str) -> None:
    images = 20  # 20 x 1,536 bytes + the marker: 4 records
    inner = _class_tar(images)
    if damage == "cut at a member boundary":
        inner = inner[: 5 * 3 * BLOCK]  # after 5 of its 20 images
    elif damage == "zeros":
        inner = bytes(len(inner))
    elif damage == "garbage after the marker":
        inner = inner[:-1] + b"x"
    else:
        inner += bytes(RECORD)
    # Only the nested tar is damaged: the outer one, written by tarfile, is sound.
    outer = make_tar([("n0.tar", _class_tar(2)), ("n1.tar", inner), ("n2.tar", _class_tar(3))])
    message = _index_error(tmp_path, outer)
    assert message.startswith(f"{tmp_path / 't.tar'}:n1.tar: ") and found in message
    # Without descending, the same file is a sound archive of three members.
    path = tmp_path / "t.tar"
    assert [m.name for m in index_tar(path, nested=False).members] == ["n0.tar", "n1.tar", "n2.tar"]


def test_a_nested_tar_may_end_without_record_padding(tmp_path: Path) -> None:
    inner = _class_tar(3)
    short = inner[: _ends(inner) + 2 * BLOCK]
    path = tmp_path / "t.tar"
    path.write_bytes(make_tar([("n1.tar", short)]))
    index = index_tar(path, nested=True)
    assert [(m.parent, m.name) for m in index.members] == [
        ("n1.tar", f"n1_{i}.JPEG") for i in range(3)
    ]
    assert [m.name for m in index.nested] == ["n1.tar"]


def test_a_mapped_tar_with_no_member_has_none(tmp_path: Path) -> None:
    path = tmp_path / "empty.tar"
    with tarfile.open(path, "w"):
        pass  # tarfile writes the end marker and pads it: 10,240 zeros
    assert path.read_bytes() == bytes(RECORD)
    assert list(iter_tar_view(map_file(str(path)), str(path))) == []
    with pytest.raises(DataError, match=r"truncated archive \(it ends at byte 0"):
        list(iter_tar_view(memoryview(b""), "nothing.tar"))


def test_a_mapped_tar_cut_at_a_member_boundary_is_an_error() -> None:
    data = make_tar([("k.cls", b"1"), ("k.jpg", b"x" * 600)])
    with pytest.raises(DataError, match=r"shard.tar: truncated archive \(it ends at byte 1024"):
        list(iter_tar_view(memoryview(data[:1024]), "shard.tar"))


def _stream(data: bytes) -> list[tuple[str, bytes]]:
    with gzip.open(io.BytesIO(gzip.compress(data)), "rb") as f:
        return [(m.name, body) for m, body in iter_tar_stream(f, "boxes.tar.gz")]  # type: ignore[arg-type]


def test_a_streamed_tar_is_read_to_its_end() -> None:
    data = make_tar([("d/a.xml", b"<a/>"), ("d/b.xml", b"<b/>")])
    assert _stream(data) == [("d/a.xml", b"<a/>"), ("d/b.xml", b"<b/>")]
    assert _stream(data[: _ends(data) + 2 * BLOCK]) == _stream(data)  # no record padding
    with pytest.raises(DataError, match=r"boxes.tar.gz: truncated archive \(it ends at byte 2048"):
        _stream(data[:2048])  # a whole gzip stream of a tar cut after its first member
    with pytest.raises(DataError, match=r"boxes.tar.gz: more bytes after the end of the archive"):
        _stream(data + bytes(RECORD))
    with pytest.raises(DataError, match=r"boxes.tar.gz: data at byte 3000 after the end"):
        _stream(data[:3000] + b"x" + data[3001:])
