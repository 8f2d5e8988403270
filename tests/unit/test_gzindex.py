"""Seek points into a tar.gz, against ``tarfile``'s reading of tars of real JPEG bytes."""

from __future__ import annotations

import gzip
import io
import os
import pickle
import random
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from imagenet_prep import gzindex
from imagenet_prep.errors import DataError
from imagenet_prep.fixture.images import pool_image
from imagenet_prep.gzindex import (
    WINDOW,
    GzIndex,
    index_gzip_tar,
    load_gzip_index,
    load_seek_points,
    read_range,
)

SPACING = 64 << 10


def make_tar(images: int = 36) -> bytes:
    """A flat tar like the Hub's (``<stem>_<wnid>.JPEG``) of real JPEGs (~60 KB each, a pool
    of 12 reused far apart), with the member kinds a walk must get right around them."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:

        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 0
            tar.addfile(info, io.BytesIO(data))

        for i in range(images):
            add(f"n0144{i % 7:04d}_{1000 + i}_n0144{i % 7:04d}.JPEG", pool_image(0, i % 12).data)
            if i == 5:
                folder = tarfile.TarInfo("extra")
                folder.type = tarfile.DIRTYPE
                tar.addfile(folder)
                add("extra/" + "long" * 40 + ".JPEG", pool_image(0, 3).data)  # a GNU long name
                add("empty.txt", b"")
                add("notes.txt", b"compressible text " * 3000)
    return buf.getvalue()


def tar_members(data: bytes) -> list[tuple[str, int, int]]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return [(m.name, m.offset_data, m.size) for m in tar if m.isreg()]


@pytest.fixture(scope="module")
def plain() -> bytes:
    return make_tar()


@pytest.fixture()
def archive(tmp_path: Path, plain: bytes) -> Path:
    path = tmp_path / "train_images_0.tar.gz"
    path.write_bytes(gzip.compress(plain, 6, mtime=0))
    return path


class Opened:
    """An indexed archive and its window file, open for reading."""

    def __init__(self, index: GzIndex) -> None:
        self.index = index
        self.fd = os.open(index.path, os.O_RDONLY)
        self.windows = os.open(index.windows, os.O_RDONLY)

    def read(self, offset: int, size: int, origin: str = "member") -> bytes:
        return read_range(self.fd, self.windows, self.index, offset, size, origin)

    def close(self) -> None:
        os.close(self.fd)
        os.close(self.windows)


@pytest.fixture()
def opened(archive: Path, tmp_path: Path) -> Iterator[Opened]:
    index, _members = index_gzip_tar(archive, tmp_path / "idx" / "a.idx", spacing=SPACING)
    files = Opened(index)
    yield files
    files.close()


def one_line_error(match: str, call: object, *args: object, **kwargs: object) -> str:
    assert callable(call)
    with pytest.raises(DataError, match=match) as info:
        call(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


# --- one pass: the members and the seek points -----------------------------------------


def test_members_and_every_read_match_tarfile(archive: Path, tmp_path: Path, plain: bytes) -> None:
    index, members = index_gzip_tar(archive, tmp_path / "a.idx", spacing=SPACING)
    assert [(m.name, m.offset, m.size) for m in members] == tar_members(plain)
    assert all(m.parent == "" for m in members)
    assert index.uncompressed_size == len(plain) and index.size == archive.stat().st_size
    assert len(index) > 20 and index.slots[0] == -1  # the gzip member's start has no window
    gaps = [b - a for a, b in zip(index.uncompressed, index.uncompressed[1:], strict=False)]
    assert min(gaps) >= SPACING
    # Points inside a byte are resumed through the lead-in: they must be there to be tested.
    assert {b for b in index.bits if b} and sum(1 for b in index.bits if b) > len(index) // 2
    files = Opened(index)
    try:
        order = list(members)
        random.Random(0).shuffle(order)
        for m in order:
            assert files.read(m.offset, m.size, m.name) == plain[m.offset : m.offset + m.size]
    finally:
        files.close()


def test_any_range_reads_like_the_plain_tar(opened: Opened, plain: bytes) -> None:
    rng = random.Random(1)
    points = list(opened.index.uncompressed)
    starts = [p + d for p in points[1:] for d in (-1, 0, 1)] + [0, len(plain) - 1]
    for start in starts + [rng.randrange(len(plain)) for _ in range(40)]:
        size = min(rng.choice([1, 511, 70_000, 300_000]), len(plain) - start)
        assert opened.read(start, size) == plain[start : start + size], (start, size)
    assert opened.read(len(plain), 0) == b""
    assert opened.read(0, len(plain)) == plain


def test_a_member_near_the_end_is_read_from_its_seek_point(
    opened: Opened, archive: Path, plain: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    index = opened.index
    _name, offset, size = tar_members(plain)[-1]
    read_from: dict[int, int] = {}
    real = os.pread

    def counting(fd: int, n: int, at: int) -> bytes:
        data = real(fd, n, at)
        read_from[fd] = read_from.get(fd, 0) + len(data)
        return data

    monkeypatch.setattr(os, "pread", counting)
    assert opened.read(offset, size) == plain[offset : offset + size]
    compressed_read = read_from[opened.fd]
    assert offset > 30 * SPACING
    assert compressed_read < 2 * SPACING + size + (64 << 10), compressed_read
    assert read_from.get(opened.windows) in (None, WINDOW)  # at most one window
    assert compressed_read < index.size // 10


# --- the kept index ----------------------------------------------------------------------


def test_the_kept_index_is_reused_then_made_anew_after_a_change(
    archive: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    index_file = tmp_path / "a.idx"
    index, members = index_gzip_tar(archive, index_file, spacing=SPACING)
    passes: list[str] = []
    real = gzindex._GzipPass

    class Counted(real):  # type: ignore[misc,valid-type]
        def __init__(self, *args: object) -> None:
            passes.append("pass")
            super().__init__(*args)

    monkeypatch.setattr(gzindex, "_GzipPass", Counted)
    again, members_again = index_gzip_tar(archive, index_file, spacing=SPACING)
    assert passes == [] and members_again == members and again == index
    assert load_seek_points(str(archive), str(index_file)) == index

    st = archive.stat()
    os.utime(archive, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert load_gzip_index(archive, index_file) is None
    one_line_error(
        r"gz: the gzip index .*a.idx cannot be used \(the archive changed since it was "
        r"indexed\); index it again$",
        load_seek_points,
        archive,
        index_file,
    )
    index_gzip_tar(archive, index_file, spacing=SPACING)
    assert passes == ["pass"]

    with archive.open("ab") as f:  # zeros after the last gzip member: still a valid file
        f.write(bytes(100))
    fresh, fresh_members = index_gzip_tar(archive, index_file, spacing=SPACING)
    assert passes == ["pass"] * 2 and fresh.size == index.size + 100
    assert fresh_members == members and fresh.uncompressed == index.uncompressed

    index_gzip_tar(archive, index_file, spacing=2 * SPACING)  # another spacing: made anew
    assert passes == ["pass"] * 3

    data = bytearray(index_file.read_bytes())
    data[-1] ^= 0xFF  # a damaged member list: made anew
    index_file.write_bytes(bytes(data))
    index_gzip_tar(archive, index_file, spacing=2 * SPACING)
    assert passes == ["pass"] * 4

    index_file.write_bytes(b"not an index")
    assert load_gzip_index(archive, index_file) is None
    one_line_error(r"\(it is not a gzip index\)", load_seek_points, archive, index_file)
    index_gzip_tar(archive, index_file, spacing=2 * SPACING)
    assert passes == ["pass"] * 5

    gzindex.windows_path(index_file).unlink()
    assert load_gzip_index(archive, index_file) is None
    one_line_error(r"window file .* is missing", load_seek_points, archive, index_file)


def test_the_index_pickles_small_without_its_windows(opened: Opened) -> None:
    index = opened.index
    data = pickle.dumps(index)
    assert len(data) < 1000 + 40 * len(index)
    assert pickle.loads(data) == index
    with open(index.windows, "rb") as f:
        assert f.read(WINDOW)[:64] not in data


# --- concatenated gzip members -----------------------------------------------------------


@pytest.mark.parametrize("piece", [40_000, 700_000], ids=["bgzip-like", "pigz-like"])
def test_concatenated_gzip_members_are_one_stream(tmp_path: Path, plain: bytes, piece: int) -> None:
    parts = [gzip.compress(plain[i : i + piece], 6) for i in range(0, len(plain), piece)]
    parts.insert(2, gzip.compress(b""))  # an empty member, as bgzip ends its files with
    path = tmp_path / "multi.tar.gz"
    path.write_bytes(b"".join(parts) + bytes(30))
    index, members = index_gzip_tar(path, tmp_path / "m.idx", spacing=SPACING)
    assert [(m.name, m.offset, m.size) for m in members] == tar_members(plain)
    assert sum(1 for s in index.slots if s < 0) == len(parts)
    files = Opened(index)
    try:
        for m in members:
            assert files.read(m.offset, m.size) == plain[m.offset : m.offset + m.size]
        assert files.read(0, len(plain)) == plain
    finally:
        files.close()


# --- damage ------------------------------------------------------------------------------


def test_a_truncated_archive(archive: Path, tmp_path: Path) -> None:
    data = archive.read_bytes()
    archive.write_bytes(data[: len(data) // 2])
    message = one_line_error("truncated gzip file", index_gzip_tar, archive, tmp_path / "a.idx")
    assert str(archive) in message
    assert not (tmp_path / "a.idx").exists() and not list(tmp_path.glob("*.windows"))


def test_a_corrupt_gzip_block(archive: Path, tmp_path: Path) -> None:
    data = bytearray(archive.read_bytes())
    for at in range(len(data) // 2, len(data) // 2 + 200):
        data[at] ^= 0x5A
    archive.write_bytes(bytes(data))
    message = one_line_error(
        "damaged gzip data near byte", index_gzip_tar, archive, tmp_path / "a.idx"
    )
    assert str(archive) in message


def test_a_wrong_crc(archive: Path, tmp_path: Path) -> None:
    data = bytearray(archive.read_bytes())
    data[-8] ^= 1  # the trailer's CRC-32
    archive.write_bytes(bytes(data))
    one_line_error(
        r"damaged gzip data .*incorrect data check", index_gzip_tar, archive, tmp_path / "a.idx"
    )


def test_a_gzip_whose_tar_is_cut(tmp_path: Path, plain: bytes) -> None:
    path = tmp_path / "cut.tar.gz"
    path.write_bytes(gzip.compress(plain[: len(plain) // 3]))
    message = one_line_error("truncated archive", index_gzip_tar, path, tmp_path / "a.idx")
    assert message.startswith(str(path))


def test_not_gzip_and_data_after_it(tmp_path: Path, plain: bytes) -> None:
    path = tmp_path / "plain.tar.gz"
    path.write_bytes(plain)
    one_line_error(r"plain.tar.gz: not a gzip file", index_gzip_tar, path, tmp_path / "a.idx")
    path.write_bytes(gzip.compress(plain) + b"garbage")
    one_line_error(
        r"data after the end of the gzip stream at byte .* not a gzip member",
        index_gzip_tar,
        path,
        tmp_path / "a.idx",
    )
    path.write_bytes(gzip.compress(plain) + bytes(10) + b"x")
    one_line_error("only zeros may follow", index_gzip_tar, path, tmp_path / "a.idx")


def test_reads_past_the_end_or_from_a_changed_file(opened: Opened, archive: Path) -> None:
    index = opened.index
    end = index.uncompressed_size
    message = one_line_error(
        "past the end of the gzip stream", opened.read, end - 10, 20, "a.tar.gz:x"
    )
    assert message.startswith("a.tar.gz:x: ")

    with open(index.windows, "r+b") as f:  # a damaged window
        f.seek(WINDOW + 5)
        f.write(b"\xff\x00\xff")
    later = index.uncompressed[index.slots.index(1)] + 10
    one_line_error(
        r"^x.JPEG: the gzip index's window file .* is damaged", opened.read, later, 10, "x.JPEG"
    )

    os.truncate(archive, index.size // 2)  # the archive cut after it was indexed
    one_line_error(r"^x.JPEG: truncated gzip file", opened.read, end - 1000, 900, "x.JPEG")


def test_spacing_is_checked(archive: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="spacing must be at least"):
        index_gzip_tar(archive, tmp_path / "a.idx", spacing=1000)
