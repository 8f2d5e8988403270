"""Damaged input, download integrity, disk space: each case gives its error or its skip."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections import namedtuple
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

import pytest
from tests.helpers import run_cli as cli

from imagenet_prep import BuildConfig, build, verify
from imagenet_prep.archive import file_md5
from imagenet_prep.config import KnownArchive
from imagenet_prep.errors import DataError, ResourceError
from imagenet_prep.executors import InlineExecutor

R = TypeVar("R")


@pytest.fixture
def damaged_tree(small_extracted: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the extracted download with one training image cut short."""
    src = tmp_path / "src"
    shutil.copytree(small_extracted, src)
    victim = sorted((src / "train").rglob("*.jpeg"))[5]
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 3])
    return src, victim


def test_damaged_image_stops_the_build_naming_it(
    damaged_tree: tuple[Path, Path], tmp_path: Path
) -> None:
    src, victim = damaged_tree
    out = tmp_path / "out"
    proc = cli("build", "--source", src, "--output", out, "--train-shards", "4", "--workers", "1")
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and str(victim) in errors[0] and "truncated" in errors[0]
    assert not (out / "manifest.json").exists()
    assert not list(out.rglob("*.incomplete"))
    # Finished shards are kept for a resume; the rerun with --on-error skip completes.
    kept = len(list((out / "tfrecord").glob("*-of-*")))
    proc = cli(
        "build",
        "--source",
        src,
        "--output",
        out,
        "--train-shards",
        "4",
        "--workers",
        "1",
        "--on-error",
        "skip",
    )
    assert proc.returncode == 0, proc.stderr
    assert "skipped: 1" in proc.stderr and str(victim) in proc.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert [s["image"] for s in manifest["skipped"]] == [str(victim)]
    assert "truncated" in manifest["skipped"][0]["reason"]
    assert manifest["splits"]["train"]["skipped"] == 1
    assert manifest["splits"]["train"]["written"] == manifest["splits"]["train"]["images"] - 1
    assert kept >= 0
    assert verify(out).ok


def test_decode_check_catches_what_the_header_check_cannot(
    small_extracted: Path, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    shutil.copytree(small_extracted, src)
    victim = sorted((src / "val").iterdir())[0]
    data = bytearray(victim.read_bytes())
    # A Huffman table whose code counts are impossible: the segment is well-formed, so only a
    # decoder notices.
    dht = data.index(b"\xff\xc4")
    data[dht + 5 : dht + 21] = bytes([0xFF] * 16)
    victim.write_bytes(bytes(data))
    config = BuildConfig(
        source=src, output=tmp_path / "a", splits=("validation",), validation_shards=1, workers=1
    )
    build(config)  # the cheap structural check passes this file
    with pytest.raises(DataError, match=victim.name):
        build(replace(config, output=tmp_path / "b", decode_check=True))


def test_damaged_box_xml_raise_and_skip(small_extracted: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(small_extracted, src)
    xml = sorted((src / "bounding_boxes").rglob("n*/*.xml"))[0]
    xml.write_bytes(b"<annotation><size><width>10</wid")
    config = BuildConfig(
        source=src, output=tmp_path / "a", train_shards=2, validation_shards=1, workers=1
    )
    with pytest.raises(DataError, match=xml.name):
        build(config)
    result = build(replace(config, output=tmp_path / "b", on_error="skip"))
    assert [s["file"] for s in result.skipped] == [str(xml)]


@pytest.mark.parametrize("damage", ["truncated", "corrupt"])
def test_gzip_error_in_the_box_archive(small_download: Path, tmp_path: Path, damage: str) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for p in small_download.iterdir():
        (src / p.name).symlink_to(p)
    boxes = src / "ILSVRC2012_bbox_train_v2.tar.gz"
    boxes.unlink()
    data = bytearray((small_download / boxes.name).read_bytes())
    if damage == "truncated":
        data = data[: len(data) * 2 // 3]
    else:
        data[len(data) // 2 : len(data) // 2 + 16] = bytes(16)
    boxes.write_bytes(bytes(data))
    out = tmp_path / "out"
    proc = cli("build", "--source", src, "--output", out)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and str(boxes) in errors[0]
    if damage == "truncated":
        assert "damaged box archive" in errors[0]
    assert not (out / "manifest.json").exists()


def _known(small_download: Path, md5: str, images: int) -> tuple[KnownArchive, ...]:
    val = small_download / "ILSVRC2012_img_val.tar"
    return (
        KnownArchive(name=val.name, size=val.stat().st_size, md5=md5, images=images, classes=4),
    )


def test_md5_of_a_known_archive_matches(small_download: Path, tmp_path: Path) -> None:
    val = small_download / "ILSVRC2012_img_val.tar"
    md5 = hashlib.md5(val.read_bytes()).hexdigest()
    result = build(
        BuildConfig(
            source=small_download,
            output=tmp_path / "out",
            splits=("validation",),
            validation_shards=1,
            workers=1,
            known_archives=_known(small_download, md5, images=12),
        )
    )
    (download,) = result.manifest.downloads
    assert download["md5"] == md5 and download["md5_verified"] and download["official"]
    assert result.warnings == []
    # The MD5 is kept with the index in OUT: a rerun neither re-reads nor re-hashes.
    index = tmp_path / "out" / ".imagenet-prep" / "index" / "ILSVRC2012_img_val.tar.idx"
    assert json.loads(index.read_text().splitlines()[0])["md5"] == md5


def test_md5_mismatch_is_an_error_unless_disabled(small_download: Path, tmp_path: Path) -> None:
    config = BuildConfig(
        source=small_download,
        output=tmp_path / "out",
        splits=("validation",),
        validation_shards=1,
        workers=1,
        known_archives=_known(small_download, "0" * 32, images=12),
    )
    with pytest.raises(DataError, match=r"MD5 .* differs from the published 0{32}"):
        build(config)
    assert not (tmp_path / "out" / "manifest.json").exists()
    result = build(replace(config, check_md5=False))
    assert "md5_verified" not in result.manifest.downloads[0]


def _known_both(small_download: Path, val_md5: str) -> tuple[KnownArchive, ...]:
    """Both image archives as official: the training one with its true MD5."""
    train = small_download / "ILSVRC2012_img_train.tar"
    train_md5 = hashlib.md5(train.read_bytes()).hexdigest()
    return (
        *_known(small_download, val_md5, images=12),
        KnownArchive(
            name=train.name, size=train.stat().st_size, md5=train_md5, images=48, classes=4
        ),
    )


def _with_a_wrong_val_md5(source: Path, out: Path) -> BuildConfig:
    """4 + 2 shards of ``source``, both image archives official, the validation MD5 wrong."""
    return BuildConfig(
        source=source,
        output=out,
        train_shards=4,
        validation_shards=2,
        known_archives=_known_both(source, "0" * 32),
    )


class _Lazy(Future[str]):
    """A future that runs its call only when asked for the result: never done before."""

    def __init__(self, fn: Callable[..., str], *args: object) -> None:
        super().__init__()
        self._call = (fn, args)

    def result(self, timeout: float | None = None) -> str:
        if not self.done():
            fn, args = self._call
            try:
                self.set_result(fn(*args))
            except Exception as exc:
                self.set_exception(exc)
        return super().result(timeout)


class _HashLast(InlineExecutor):
    """Inline, but each MD5 is still being computed when the shards are done, as a helper
    process hashing a 155 GB archive would be."""

    def run_aside(self, fn: Callable[..., R], *args: object) -> Future[R]:
        if fn is file_md5:
            return _Lazy(fn, *args)  # type: ignore[return-value]
        return super().run_aside(fn, *args)


def test_md5_is_checked_after_the_shards_and_a_mismatch_keeps_nothing_of_its_split(
    small_download: Path, tmp_path: Path
) -> None:
    """An MD5 computed beside the shards is compared before the manifest: a mismatch fails
    the build and strikes that split's shards from the journal; a rerun of the same file
    fails at once, and --no-md5 makes the struck shards again."""
    out = tmp_path / "out"
    config = _with_a_wrong_val_md5(small_download, out)
    with pytest.raises(DataError, match=r"MD5 .* differs .*; its validation shards will be made"):
        build(config, executor=_HashLast())
    assert not (out / "manifest.json").exists()
    journal = out / ".imagenet-prep" / "journal.jsonl"
    splits = [json.loads(line)["split"] for line in journal.read_text().splitlines()]
    assert splits == ["train"] * 4  # the training shards stay finished; validation's are struck
    # The computed MD5s are kept with the indexes: a rerun of the same files hashes nothing.
    index = out / ".imagenet-prep" / "index" / "ILSVRC2012_img_val.tar.idx"
    val = small_download / "ILSVRC2012_img_val.tar"
    assert json.loads(index.read_text().splitlines()[0])["md5"] == (
        hashlib.md5(val.read_bytes()).hexdigest()
    )
    with pytest.raises(DataError, match=r"MD5 .* differs") as err:
        build(config, executor=_HashLast())
    assert "made again" not in str(err.value)  # found before any shard work
    result = build(replace(config, check_md5=False))
    assert result.shards_reused == 4 and result.shards_written == 2
    assert verify(out).ok


def test_md5_beside_the_shards_verifies_both_archives(small_download: Path, tmp_path: Path) -> None:
    val = small_download / "ILSVRC2012_img_val.tar"
    config = BuildConfig(
        source=small_download,
        output=tmp_path / "out",
        train_shards=4,
        validation_shards=2,
        workers=2,
        known_archives=_known_both(small_download, hashlib.md5(val.read_bytes()).hexdigest()),
    )
    result = build(config)
    assert [d["md5_verified"] for d in result.manifest.downloads] == [True, True]
    assert [d["md5"] for d in result.manifest.downloads] == [
        k.md5 for k in (config.known_archives[1], config.known_archives[0])
    ]


def test_counts_that_differ_from_the_official_archive_are_an_error(
    small_download: Path, tmp_path: Path
) -> None:
    val = small_download / "ILSVRC2012_img_val.tar"
    md5 = hashlib.md5(val.read_bytes()).hexdigest()
    config = BuildConfig(
        source=small_download,
        output=tmp_path / "out",
        splits=("validation",),
        validation_shards=1,
        workers=1,
        known_archives=_known(small_download, md5, images=50_000),
    )
    counts = "12 images in 4 classes, the official archive holds 50,000 in 4"
    with pytest.raises(DataError, match=counts):
        build(config)
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_too_little_disk_space_refuses_to_start(
    small_download: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda _path: usage(10**9, 10**9 - 1000, 1000))
    config = BuildConfig(source=small_download, output=tmp_path / "out", workers=1)
    with pytest.raises(ResourceError, match=r"needs about \d+ MB more .* has 1 kB free.*--force"):
        build(config)
    assert not list((tmp_path / "out").glob("tfrecord/*"))
    build(replace(config, force=True))
    assert (tmp_path / "out" / "manifest.json").is_file()


def test_plain_progress_lines_and_summary_when_not_a_terminal(
    small_download: Path, tmp_path: Path
) -> None:
    proc = cli("build", "--source", small_download, "--output", tmp_path / "out", "--workers", "2")
    assert proc.returncode == 0, proc.stderr
    assert "\r" not in proc.stderr
    progress = [line for line in proc.stderr.splitlines() if line.startswith("build: ")]
    assert progress and "images/s" in progress[-1] and "(100%)" in progress[-1]
    assert "re-encoded images:" in proc.stderr and "skipped: 0" in proc.stderr
    assert "validation 12" in proc.stderr


def test_a_devkit_that_disagrees_with_the_shipped_labels_fails_the_build(
    small_download: Path, tmp_path: Path
) -> None:
    """The devkit is read beside the shard work; a ground truth that gives an image another
    class than the shipped labels still ends the build with an error and no manifest."""
    import io
    import tarfile

    from imagenet_prep.labels import DEVKIT_GROUND_TRUTH

    source = tmp_path / "download"
    shutil.copytree(small_download, source)
    devkit = source / "ILSVRC2012_devkit_t12.tar.gz"
    members: list[tuple[tarfile.TarInfo, bytes]] = []
    with tarfile.open(devkit) as tar:
        for member in tar:
            f = tar.extractfile(member)
            data = f.read() if f is not None else b""
            if member.name == DEVKIT_GROUND_TRUTH:
                lines = data.decode().splitlines()
                lines[4] = str(int(lines[4]) % 1000 + 1)  # image 5: the next class's ID
                data = ("\n".join(lines) + "\n").encode()
                member.size = len(data)
            members.append((member, data))
    with tarfile.open(devkit, "w:gz") as tar:
        for member, data in members:
            tar.addfile(member, io.BytesIO(data) if member.isfile() else None)
    out = tmp_path / "out"
    for workers in (2, 1):  # the check beside the shards, and the inline one before them
        with pytest.raises(DataError, match=r"validation image 5 is n\d+ in the devkit but"):
            build(BuildConfig(source=source, output=out, workers=workers, validation_shards=2))
        assert not (out / "manifest.json").exists()


def test_shards_of_an_archive_replaced_since_the_earlier_run_are_made_again(
    small_download: Path, tmp_path: Path
) -> None:
    """A resume knows the archives by name and size; one replaced by a file of the same
    size (a new download) must not keep the shards made from the old one."""
    source = tmp_path / "download"
    shutil.copytree(small_download, source)
    out = tmp_path / "out"
    config = _with_a_wrong_val_md5(source, out)
    with pytest.raises(DataError, match="differs"):  # leaves the 4 training shards journaled
        build(config, executor=_HashLast())
    train = source / "ILSVRC2012_img_train.tar"
    os.utime(train, ns=(train.stat().st_atime_ns, train.stat().st_mtime_ns + 10**9))
    result = build(replace(config, check_md5=False))
    assert result.shards_reused == 0 and result.shards_written == 6
    assert verify(out).ok
