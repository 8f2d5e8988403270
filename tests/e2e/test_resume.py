"""Crash and resume: SIGKILL of the whole process group, a worker killed, reruns."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from imagenet_prep.fixture import FixtureConfig, generate

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def medium_download(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Enough images that a build with --decode-check takes a second or two."""
    out = tmp_path_factory.mktemp("medium") / "download"
    generate(FixtureConfig(out=out, classes=4, per_class=60, val_per_class=8, seed=5, pool_size=24))
    return out


def build_command(src: Path, out: Path, workers: int = 2) -> list[str]:
    return [
        sys.executable,
        "-m",
        "imagenet_prep",
        "build",
        "--source",
        str(src),
        "--output",
        str(out),
        "--formats",
        "tfrecord,imagefolder",
        "--train-shards",
        "24",
        "--validation-shards",
        "4",
        "--workers",
        str(workers),
        "--decode-check",
        "--quiet",
    ]


def snapshot(out: Path) -> dict[str, bytes]:
    """Every file of a build output except manifest.json, by relative path."""
    return {
        str(p.relative_to(out)): p.read_bytes()
        for p in sorted(out.rglob("*"))
        if p.is_file() and p.name != "manifest.json"
    }


def shard_state(out: Path) -> tuple[int, int]:
    """(finished TFRecord shards, shards being written) right now."""
    folder = out / "tfrecord"
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return 0, 0
    finished = sum(1 for n in names if not n.startswith("."))
    partial = sum(1 for n in names if n.endswith(".incomplete"))
    return finished, partial


@pytest.fixture(scope="module")
def clean_run(medium_download: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    out = tmp_path_factory.mktemp("clean") / "out"
    subprocess.run(build_command(medium_download, out), check=True, timeout=300)
    return snapshot(out)


@pytest.mark.parametrize("kill_after", [1, 10, 22])
def test_sigkill_then_rerun_gives_the_clean_output(
    medium_download: Path, clean_run: dict[str, bytes], tmp_path: Path, kill_after: int
) -> None:
    out = tmp_path / "out"
    command = build_command(medium_download, out)
    proc = subprocess.Popen(command, start_new_session=True)
    deadline = time.monotonic() + 120
    try:
        while True:
            finished, partial = shard_state(out)
            if finished >= kill_after and partial >= 1:
                break
            if proc.poll() is not None:
                pytest.fail(f"the build ended before the kill point ({finished} shards)")
            if time.monotonic() > deadline:
                pytest.fail("the kill point was never reached")
            time.sleep(0.002)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finished, _ = shard_state(out)
    assert 1 <= finished < 28, "the kill must leave finished and unfinished shards"
    assert not (out / "manifest.json").exists()

    subprocess.run(command, check=True, timeout=300)
    assert snapshot(out) == clean_run
    assert not [p for p in out.rglob("*") if p.name.endswith(".incomplete")]
    assert (out / "manifest.json").is_file()

    def mtimes() -> dict[Path, int]:
        # The rerun takes the output folder's lock (an empty file, written while held).
        return {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and p.name != "lock"}

    before = mtimes()
    rerun = subprocess.run(command[:-1], capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0
    assert "already complete" in rerun.stderr
    assert mtimes() == before
    assert (out / ".imagenet-prep" / "lock").read_bytes() == b""


def test_workers_one_and_four_give_the_same_output(
    medium_download: Path, clean_run: dict[str, bytes], tmp_path: Path
) -> None:
    for workers in (1, 4):
        out = tmp_path / f"w{workers}"
        subprocess.run(build_command(medium_download, out, workers), check=True, timeout=300)
        assert snapshot(out) == clean_run


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                stat = Path(f"/proc/{name}/stat").read_bytes()
            except OSError:
                continue
            ppid = int(stat[stat.rfind(b")") + 2 :].split()[1])
            children.setdefault(ppid, []).append(int(name))
    found, stack = [], [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def test_a_worker_killed_from_outside_fails_the_build_promptly(
    medium_download: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    command = [c for c in build_command(medium_download, out) if c != "--quiet"]
    proc = subprocess.Popen(command, start_new_session=True, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while shard_state(out)[1] == 0:
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.002)
        # Workers are grandchildren (children of the fork server).
        direct = _direct(proc.pid)
        grandchildren = [c for c in _descendants(proc.pid) if c not in direct]
        assert grandchildren, "no worker process found"
        os.kill(grandchildren[0], signal.SIGKILL)
        killed_at = time.monotonic()
        _, stderr = proc.communicate(timeout=60)
        assert time.monotonic() - killed_at < 30
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 1
    assert "worker process died" in stderr
    assert "Traceback" not in stderr
    assert not (out / "manifest.json").exists()


def _direct(pid: int) -> set[int]:
    children = set()
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                stat = Path(f"/proc/{name}/stat").read_bytes()
            except OSError:
                continue
            if int(stat[stat.rfind(b")") + 2 :].split()[1]) == pid:
                children.add(int(name))
    return children
