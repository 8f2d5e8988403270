"""The output folder: --overwrite, one build at a time, a full or unwritable file system, verify
of odd folders, and counts that say what happened (issue 13, items 2, 3, 5 and 11)."""

from __future__ import annotations

import errno
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.helpers import run_cli

from imagenet_prep import BuildConfig, build, verify
from imagenet_prep.cli import main
from imagenet_prep.formats import shardfile
from imagenet_prep.fsutil import HashingWriter
from imagenet_prep.manifest import read_manifest
from imagenet_prep.pipeline import Reporter, shards

CLI = [sys.executable, "-m", "imagenet_prep"]


def files(root: Path) -> set[str]:
    """Every file under ``root`` but the bookkeeping folder, relative to it."""
    return {
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.is_file() and ".imagenet-prep" not in p.parts
    }


def error_lines(stderr: str) -> list[str]:
    assert "Traceback" not in stderr, stderr
    return [line for line in stderr.splitlines() if line.strip()]


# --- --overwrite ---------------------------------------------------------------------------


def test_overwrite_removes_exactly_what_the_earlier_build_wrote(
    small_download: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    first = [
        "build", "--source", small_download, "--output", out, "--workers", "1",
        "--formats", "tfrecord,imagefolder,webdataset", "--dali-index",
        "--train-shards", "4", "--validation-shards", "2", "--shard-size", "10",
    ]  # fmt: skip
    assert main(list(map(str, first))) == 0
    earlier = files(out)
    assert any(p.startswith("webdataset/") for p in earlier)
    # The user's own files, in the format folders and beside them.
    wnid = sorted(p.name for p in (out / "imagefolder" / "train").iterdir() if p.is_dir())[0]
    mine = {
        "tfrecord/notes.txt": b"mine",
        f"imagefolder/train/{wnid}/extra.JPEG": b"not from the build",
        "webdataset/README": b"mine too",
        "report.md": b"top level",
    }
    for name, data in mine.items():
        (out / name).write_bytes(data)

    second = [
        "build", "--source", small_download, "--output", out, "--workers", "1",
        "--formats", "tfrecord", "--train-shards", "3", "--validation-shards", "1", "--overwrite",
    ]  # fmt: skip
    assert main(list(map(str, second))) == 0
    now = files(out)
    # Nothing of the earlier build is left but what the new one wrote again.
    assert not [p for p in now if p.startswith(("webdataset/train", "webdataset/validation"))]
    assert not [p for p in now if p.endswith(".idx")]
    assert not [p for p in now if p.startswith("imagefolder/") and p not in mine]
    assert sorted(p for p in now if p.startswith("tfrecord/train")) == [
        f"tfrecord/train-0000{i}-of-00003" for i in range(3)
    ]
    # The user's files are all still there, unchanged, and named in the manifest.
    for name, data in mine.items():
        assert (out / name).read_bytes() == data, name
    manifest = read_manifest(out)
    assert manifest.formats["tfrecord"]["foreign"] == ["tfrecord/notes.txt"]
    # The build exits 0, so its own verify passes, the user's file beside the shards or not.
    assert verify(out).ok


def test_overwrite_of_a_build_that_never_finished(small_download: Path, tmp_path: Path) -> None:
    """No manifest and no journal (its shards were written, the run died before recording
    them): the files the build recorded before its first shard go all the same."""
    out = tmp_path / "out"
    config = BuildConfig(
        source=small_download,
        output=out,
        formats=("webdataset", "imagefolder"),
        shard_size=7,
        workers=1,
        train_shards=2,
        validation_shards=1,
    )
    build(config)
    (out / "manifest.json").unlink()
    assert (out / ".imagenet-prep" / "outputs.txt").is_file()
    args = [
        "build", "--source", str(small_download), "--output", str(out), "--workers", "1",
        "--formats", "tfrecord", "--train-shards", "2", "--validation-shards", "1",
        "--overwrite", "--quiet",
    ]  # fmt: skip
    assert main(args) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        ".imagenet-prep",
        "imagenet_2012_bounding_boxes.csv",
        "labels.txt",
        "manifest.json",
        "tfrecord",
    ]


def test_overwrite_names_what_it_leaves(
    small_download: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    args = ["build", "--source", str(small_download), "--output", str(out), "--workers", "1"]
    assert main([*args, "--train-shards", "2", "--validation-shards", "1"]) == 0
    (out / "tfrecord" / "train-notes").write_bytes(b"mine")
    capsys.readouterr()
    assert main([*args, "--train-shards", "3", "--validation-shards", "1", "--overwrite"]) == 0
    err = capsys.readouterr().err
    assert "1 files that imagenet-prep did not write were left alone" in err
    assert "tfrecord/train-notes" in err
    assert (out / "tfrecord" / "train-notes").read_bytes() == b"mine"


# --- one build per output folder -----------------------------------------------------------

HOLD_LOCK = """
import sys, time
from pathlib import Path
from imagenet_prep.manifest import BuildLock
BuildLock(Path(sys.argv[1])).acquire()
print("locked", flush=True)
time.sleep(600)
"""


@pytest.fixture
def lock_holder(tmp_path: Path) -> Iterator[tuple[Path, subprocess.Popen[str]]]:
    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(out)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    try:
        yield out, proc
    finally:
        proc.kill()
        proc.wait(timeout=30)


def test_a_second_build_into_the_same_folder_is_refused_naming_the_holder(
    small_download: Path,
    lock_holder: tuple[Path, subprocess.Popen[str]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    out, holder = lock_holder
    args = ["build", "--source", str(small_download), "--output", str(out), "--workers", "1"]
    assert main([*args, "--train-shards", "2", "--validation-shards", "1"]) == 2
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1
    assert f"process {holder.pid}" in lines[0] and "another build" in lines[0]
    assert not (out / "manifest.json").exists()
    # A lock left by a killed build does not block the rerun.
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=30)
    assert main([*args, "--train-shards", "2", "--validation-shards", "1", "--quiet"]) == 0
    assert verify(out).ok


def test_two_identical_builds_at_once(small_download: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    command = [
        *CLI, "build", "--source", str(small_download), "--output", str(out),
        "--workers", "2", "--train-shards", "6", "--validation-shards", "2", "--quiet",
    ]  # fmt: skip
    procs = [subprocess.Popen(command, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outcomes = [(p.wait(timeout=300), p.stderr.read() if p.stderr else "") for p in procs]
    codes = sorted(code for code, _err in outcomes)
    # Either the second found the first's lock, or (if it started late) the finished build.
    assert codes in ([0, 2], [0, 0]), outcomes
    for code, err in outcomes:
        if code == 2:
            lines = error_lines(err)
            assert len(lines) == 1 and "another build is writing to this folder" in lines[0]
        else:
            assert err == "", err
    assert verify(out).ok


# --- a full or unwritable file system ------------------------------------------------------


def test_a_full_file_system_is_one_line_and_the_rerun_resumes(
    small_download: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The disk fills after the first few shards (the writes fail with ENOSPC)."""
    out = tmp_path / "out"
    real_flush = HashingWriter.flush
    calls = {"n": 0}

    def flush(self: HashingWriter) -> None:
        calls["n"] += 1
        if calls["n"] > 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_flush(self)

    monkeypatch.setattr(HashingWriter, "flush", flush)
    args = [
        "build", "--source", str(small_download), "--output", str(out), "--workers", "1",
        "--train-shards", "6", "--validation-shards", "2", "--quiet", "--force",
    ]  # fmt: skip
    capsys.readouterr()
    assert main(args) == 1
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1, lines
    assert "is full (the build needed about" in lines[0]
    assert "run the same command again: it resumes" in lines[0]
    assert lines[0].startswith(f"imagenet-prep build: error: {out}")
    monkeypatch.setattr(HashingWriter, "flush", real_flush)
    assert main(args) == 0
    assert verify(out).ok


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A real 1 MB file system (tmpfs); skipped where this process cannot mount one."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip("cannot mount a small file system here")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_real_full_file_system(small_download: Path, small_fs: Path) -> None:
    out = small_fs / "out"
    args = [
        "build", "--source", small_download, "--output", out, "--workers", "2",
        "--train-shards", "6", "--validation-shards", "2", "--force",
    ]  # fmt: skip
    proc = run_cli(*args)
    assert proc.returncode == 1
    errors = [line for line in error_lines(proc.stderr) if "error:" in line]
    assert len(errors) == 1, proc.stderr
    assert f"the file system at {small_fs} is full" in errors[0]
    assert "MB more" in errors[0] and "run the same command again" in errors[0]
    assert not (out / "manifest.json").exists()
    # With room, the same command resumes and finishes.
    subprocess.run(["mount", "-o", "remount,size=200m", str(small_fs)], check=True)
    proc = run_cli(*args)
    assert proc.returncode == 0, proc.stderr
    assert verify(out).ok


def test_without_force_a_small_disk_is_refused_in_megabytes(
    small_download: Path, small_fs: Path
) -> None:
    proc = run_cli(
        "build", "--source", small_download, "--output", small_fs / "out", "--workers", "1"
    )
    assert proc.returncode == 1
    lines = error_lines(proc.stderr)
    assert "MB more and the file system has" in lines[-1] and "GB" not in lines[-1]


def test_an_unwritable_format_folder_on_resume(
    small_download: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``tfrecord/`` became read-only between two runs (as root, whom permissions do not stop,
    the file system's refusal is played by the shard writer's ``open``)."""
    out = tmp_path / "out"
    args = [
        "build", "--source", str(small_download), "--output", str(out), "--workers", "1",
        "--train-shards", "2", "--validation-shards", "1", "--quiet",
    ]  # fmt: skip
    assert main(args) == 0
    (out / "manifest.json").unlink()
    next((out / "tfrecord").iterdir()).unlink()
    folder = out / "tfrecord"
    folder.chmod(0o555)
    if os.getuid() == 0:

        def refuse(path: object, *rest: object, **options: object) -> object:
            if str(path).startswith(str(folder)):
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
            return open(path, *rest, **options)  # type: ignore[call-overload]

        monkeypatch.setattr(shardfile, "open", refuse, raising=False)
    try:
        capsys.readouterr()
        assert main(args) == 2
    finally:
        folder.chmod(0o755)
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"imagenet-prep build: error: {folder}/")
    assert lines[0].endswith("cannot write (Permission denied)")


# --- verify --------------------------------------------------------------------------------


def test_verify_names_a_folder_inside_a_class_folder(
    small_download: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    config = BuildConfig(
        source=small_download, output=out, formats=("imagefolder",), workers=1, splits="validation"
    )
    build(config)
    folder = next(p for p in (out / "imagefolder" / "val").iterdir() if p.is_dir()) / "nested"
    folder.mkdir()
    capsys.readouterr()
    assert main(["verify", str(out)]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert f"{folder}: not a file" in err


# --- counts --------------------------------------------------------------------------------


def test_two_formats_count_each_image_once(small_download: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = run_cli(
        "build", "--source", small_download, "--output", out, "--workers", "2",
        "--formats", "tfrecord,webdataset", "--shard-size", "5",
        "--train-shards", "3", "--validation-shards", "1",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    manifest = read_manifest(out)
    total = sum(s["images"] for s in manifest.splits.values())
    progress = [line for line in proc.stderr.splitlines() if line.startswith("build: ")]
    assert progress[-1].startswith(f"build: {total}/{total} images (100%)"), progress
    written = len([p for p in files(out) if p.startswith(("tfrecord/", "webdataset/"))])
    assert f"{total} images written" in proc.stderr
    assert f"; {written} files written" in proc.stderr, proc.stderr


class _StopAfter:
    """A reporter that interrupts the build after ``n`` finished shards, as Ctrl-C would."""

    def __init__(self, n: int) -> None:
        self.n = n

    def start(self, images: int, nbytes: int, done_images: int, done_bytes: int) -> None:
        pass

    def update(self, images: float, nbytes: float) -> None:
        self.n -= 1
        if self.n == 0:
            raise KeyboardInterrupt

    def close(self) -> None:
        pass


def test_the_resume_message_counts_images_once(
    small_download: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(shards, "TASK_IMAGES", 1)  # a task per shard: some finish, some not
    out = tmp_path / "out"
    config = BuildConfig(
        source=small_download,
        output=out,
        formats=("tfrecord", "webdataset"),
        shard_size=4,
        workers=1,
        train_shards=6,
        validation_shards=2,
    )
    reporter: Reporter = _StopAfter(5)
    with pytest.raises(KeyboardInterrupt):
        build(config, reporter=reporter)
    kept = len(files(out)) - 2  # less labels.txt and the box CSV
    capsys.readouterr()
    args = [
        "build", "--source", str(small_download), "--output", str(out), "--workers", "1",
        "--formats", "tfrecord,webdataset", "--shard-size", "4",
        "--train-shards", "6", "--validation-shards", "2",
    ]  # fmt: skip
    assert main(args) == 0
    err = capsys.readouterr().err
    line = next(line for line in err.splitlines() if line.startswith("resuming:"))
    done, total = line.split()[1], line.split()[3]
    assert total == "60" and 0 < int(done) < 60, line
    assert f"({kept} output files kept)" in line, (line, kept)
    assert f"{kept} kept from the earlier run" in err


def test_a_skipped_image_is_listed_once(small_extracted: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(small_extracted, src)
    victim = sorted((src / "train").rglob("*.jpeg"))[3]
    victim.write_bytes(victim.read_bytes()[:200])
    proc = run_cli(
        "build", "--source", src, "--output", tmp_path / "out", "--workers", "1",
        "--train-shards", "2", "--validation-shards", "1", "--on-error", "skip",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    listed = [line for line in proc.stderr.splitlines() if str(victim) in line]
    assert len(listed) == 1 and listed[0].count(str(victim)) == 1, listed


def test_fixture_prints_its_time_once(tmp_path: Path) -> None:
    proc = run_cli("fixture", tmp_path / "dl", "--classes", "2", "--per-class", "5")
    assert proc.returncode == 0, proc.stderr
    both = proc.stdout + proc.stderr
    assert both.count(" s\n") == 1, both


def test_help_shows_defaults_and_splits() -> None:
    fixture = run_cli("fixture", "--help").stdout
    assert "(default: 10)" in fixture and "(default: archives)" in fixture
    build_help = " ".join(run_cli("build", "--help").stdout.split())
    assert "train, validation" in build_help


def test_wait_for_lock_release_is_not_needed_after_a_finished_build(
    small_download: Path, tmp_path: Path
) -> None:
    """The lock is dropped when a build ends: two builds one after the other both succeed."""
    out = tmp_path / "out"
    args = [
        "build", "--source", str(small_download), "--output", str(out), "--workers", "1",
        "--train-shards", "2", "--validation-shards", "1", "--quiet",
    ]  # fmt: skip
    assert main(args) == 0
    started = time.perf_counter()
    assert main(args) == 0
    assert time.perf_counter() - started < 30
    assert (out / ".imagenet-prep" / "lock").read_bytes() == b""


def test_quiet_lasts_only_for_its_command(small_download: Path, tmp_path: Path) -> None:
    """main() in a process that goes on (tests, tools): --quiet does not silence what follows."""
    package_log = logging.getLogger("imagenet_prep")
    before = package_log.level
    args = [
        "build", "--source", str(small_download), "--output", str(tmp_path / "out"),
        "--workers", "1", "--train-shards", "2", "--validation-shards", "1", "--quiet",
    ]  # fmt: skip
    assert main(args) == 0
    assert package_log.level == before
    assert main(["verify", str(tmp_path / "missing"), "--quiet"]) == 1
    assert package_log.level == before
