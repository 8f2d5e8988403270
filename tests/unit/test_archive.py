"""The hand-written tar indexer against archives made by the standard library."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import pytest

from imagenet_prep.archive import file_md5, index_tar, iter_tar_view, read_at
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
    flat = index_tar(path, nested=False)
    assert [m.name for m in flat.members] == ["n1.tar", "n2.TAR", "README"]
    assert flat.md5 is None and index.md5 is None  # an index reads headers, not every byte


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
