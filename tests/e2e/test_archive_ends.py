"""Archives that end early are errors, never fewer images (the real CLI on damaged downloads).

Each damaged download must stop ``imagenet-prep build`` with exit 1, one line on stderr that
names the archive (and the byte, where there is one), and no manifest. Every archive here
ends as GNU tar's do: two zero blocks, then zeros up to a multiple of 10,240 bytes.
"""

from __future__ import annotations

import gzip
import io
import shutil
import tarfile
from pathlib import Path

import pytest

from imagenet_prep.archive import BLOCK, RECORD, file_md5
from imagenet_prep.cli import main
from imagenet_prep.config import BuildConfig, KnownArchive

TRAIN = "ILSVRC2012_img_train.tar"
VAL = "ILSVRC2012_img_val.tar"
BOXES = "ILSVRC2012_bbox_train_v2.tar.gz"
ERROR = "imagenet-prep build: error: "


@pytest.fixture
def src(small_download: Path, tmp_path: Path) -> Path:
    """A copy of the small generated download, to be damaged."""
    copy = tmp_path / "src"
    shutil.copytree(small_download, copy)
    return copy


def build_fails(src: Path, out: Path, capsys: pytest.CaptureFixture[str]) -> str:
    """Run the CLI; it must fail with one line on stderr and leave no manifest: that line."""
    capsys.readouterr()
    options = ["--workers", "1", "--quiet", "--train-shards", "2", "--validation-shards", "1"]
    status = main(["build", "--source", str(src), "--output", str(out), *options])
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert status == 1, err
    assert len(lines) == 1 and lines[0].startswith(ERROR), err
    assert not (out / "manifest.json").exists()
    return lines[0][len(ERROR) :]


def _padded(size: int) -> int:
    return (size + BLOCK - 1) // BLOCK * BLOCK


def _members(data: bytes) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return tar.getmembers()


def _end_of(member: tarfile.TarInfo) -> int:
    """Where the member's data ends, with its padding: where the next header would be."""
    return member.offset_data + _padded(member.size)


def _tar(members: list[tuple[str, bytes]]) -> bytes:
    """A tar made by Python's tarfile (its end is sound)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _class_tars(train: Path) -> list[tuple[str, bytes]]:
    data = train.read_bytes()
    return [(m.name, data[m.offset_data : m.offset_data + m.size]) for m in _members(data)]


@pytest.mark.parametrize("archive", [TRAIN, VAL])
def test_an_archive_cut_at_a_member_boundary(
    src: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], archive: str
) -> None:
    path = src / archive
    data = path.read_bytes()
    cut = _end_of(_members(data)[1])  # after its second member, before the third's header
    path.write_bytes(data[:cut])
    message = build_fails(src, tmp_path / "out", capsys)
    assert message.startswith(f"{path}: truncated archive (it ends at byte {cut},")


def test_a_training_archive_whose_tail_is_zeros(
    src: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = src / TRAIN
    data = path.read_bytes()
    second_end = _end_of(_members(data)[1])  # 2 of the 4 classes are left
    path.write_bytes(data[:second_end] + bytes(len(data) - second_end))
    message = build_fails(src, tmp_path / "out", capsys)
    record_end = (second_end + 2 * BLOCK + RECORD - 1) // RECORD * RECORD
    assert message.startswith(
        f"{path}: {len(data) - record_end:,} more bytes after the end of the archive at byte "
        f"{record_end} (after the end-of-archive marker at byte {second_end}"
    )


@pytest.mark.parametrize("where", ["in the record padding", "a record appended"])
def test_data_after_the_end_of_the_training_archive(
    src: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], where: str
) -> None:
    path = src / TRAIN
    data = bytearray(path.read_bytes())
    marker = _end_of(_members(bytes(data))[-1])
    if where == "in the record padding":
        at = marker + 2 * BLOCK + 100
        assert at < len(data)  # the generated archive has padding after its marker
        data[at] = 0x55
        expected = f"{path}: data at byte {at} after the end of the archive"
    else:
        expected = f"{path}: 10,240 more bytes after the end of the archive at byte {len(data)}"
        data += bytes(RECORD)
    path.write_bytes(bytes(data))
    assert build_fails(src, tmp_path / "out", capsys).startswith(expected)


def test_a_class_tar_of_zeros(
    src: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = src / TRAIN
    data = bytearray(path.read_bytes())
    victim = _members(bytes(data))[2]
    assert victim.size > RECORD
    data[victim.offset_data : victim.offset_data + victim.size] = bytes(victim.size)
    path.write_bytes(bytes(data))  # the outer tar is sound: only the class tar is zeros
    message = build_fails(src, tmp_path / "out", capsys)
    assert message.startswith(
        f"{path}:{victim.name}: {victim.size - RECORD:,} more bytes after the end of the "
        f"archive at byte {victim.offset_data + RECORD}"
    )


def test_a_class_tar_cut_after_some_of_its_images(
    src: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = src / TRAIN
    classes = _class_tars(path)
    name, inner = classes[1]
    images = _members(inner)
    assert len(images) > 5
    cut = _end_of(images[4])  # after 5 of its images
    classes[1] = (name, inner[:cut])
    path.write_bytes(_tar(classes))  # a sound outer tar around the cut class tar
    at = next(m for m in _members(path.read_bytes()) if m.name == name).offset_data + cut
    message = build_fails(src, tmp_path / "out", capsys)
    assert message.startswith(f"{path}:{name}: truncated archive (it ends at byte {at},")


@pytest.mark.parametrize("content", ["nothing", "no image"])
def test_a_class_tar_with_no_image(
    src: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str
) -> None:
    path = src / TRAIN
    classes = _class_tars(path)
    name = classes[2][0]
    classes[2] = (name, _tar([] if content == "nothing" else [("README.txt", b"hello")]))
    path.write_bytes(_tar(classes))
    expected = f"{path}:{name}: a class tar with no image"
    assert build_fails(src, tmp_path / "out", capsys) == expected
    # A rerun reads the index kept in OUT, and finds the same.
    assert build_fails(src, tmp_path / "out", capsys) == expected


def test_a_box_archive_cut_at_a_member_boundary(
    src: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = src / BOXES
    tar = gzip.decompress(path.read_bytes())
    cut = _end_of(_members(tar)[3])
    path.write_bytes(gzip.compress(tar[:cut]))  # a whole gzip stream of a cut tar
    message = build_fails(src, tmp_path / "out", capsys)
    assert message.startswith(f"{path}: truncated archive (it ends at byte {cut},")


@pytest.mark.parametrize("archive", [TRAIN, VAL])
def test_an_official_archive_with_too_few_images(
    src: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    archive: str,
) -> None:
    """An archive with an official name and size must hold the official counts."""
    path = src / archive
    size = path.stat().st_size
    images = 1_281_167 if archive == TRAIN else 50_000
    md5 = file_md5(path)  # the MD5 matches: only the counts differ
    known = KnownArchive(archive, size, md5, images=images, classes=1000)

    def known_archive(_config: BuildConfig, name: str, size_: int) -> KnownArchive | None:
        return known if (name, size_) == (archive, size) else None

    monkeypatch.setattr(BuildConfig, "known_archive", known_archive)
    message = build_fails(src, tmp_path / "out", capsys)
    found = "48 images in 4 classes" if archive == TRAIN else "12 images in 4 classes"
    assert message.startswith(f"{path}: {found}, the official archive holds {images:,} in 1000"), (
        message
    )
