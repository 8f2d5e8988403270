"""The output's bookkeeping: per-shard done markers, recorded options, and manifest.json.

Everything is written through a temporary name and renamed; manifest.json is written
last, so its presence means the build finished.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path
from types import TracebackType
from typing import Any

import xxhash

from .errors import DataError, UsageError
from .fsutil import atomic_open, hash_file, write_bytes_atomic

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
STATE_DIR = ".imagenet-prep"
OPTIONS_FILE = "options.json"
LOCK_FILE = "lock"
OUTPUTS_FILE = "outputs.txt"
FOREIGN_FILE = "foreign.json"
# What formats keep per shard until the build joins it (removed once the manifest is written).
PARTS_DIR = "parts"


def state_dir(out: Path) -> Path:
    return out / STATE_DIR


def _dump(obj: Any) -> bytes:
    return (json.dumps(obj, indent=1, sort_keys=True) + "\n").encode("utf-8")


def write_json(path: Path, obj: Any) -> None:
    write_bytes_atomic(path, _dump(obj))


def read_json(path: Path) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: unreadable ({exc})") from None


class Journal:
    """Done markers of finished shards: one JSON line each, appended to one file.

    A line is appended only after the shard's files were renamed into place, so a line
    means the shard is finished. A crash can leave a torn last line; it is ignored (that
    shard is redone) and cut off before the next append. The journal is deleted once the
    manifest, which holds the same information, is written.
    """

    NAME = "journal.jsonl"

    def __init__(self, out: Path) -> None:
        self.path = state_dir(out) / self.NAME
        self._fd: int | None = None

    def load(self) -> dict[str, dict[str, Any]]:
        """Every complete record, by shard name."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        records: dict[str, dict[str, Any]] = {}
        for line in data.split(b"\n"):
            try:
                record = json.loads(line)
            except ValueError:
                continue  # a torn last line, or an empty one
            if isinstance(record, dict) and isinstance(record.get("shard"), str):
                records[record["shard"]] = record
        return records

    def append(self, record: dict[str, Any]) -> None:
        self.extend([record])

    def extend(self, records: list[dict[str, Any]]) -> None:
        """Append several lines with one write (the shards of one finished task)."""
        if self._fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
            size = os.fstat(self._fd).st_size
            if size and os.pread(self._fd, 1, size - 1) != b"\n":
                data = os.pread(self._fd, size, 0)
                os.ftruncate(self._fd, data.rfind(b"\n") + 1)
        lines = [json.dumps(r, separators=(",", ":")) + "\n" for r in records]
        os.write(self._fd, "".join(lines).encode("utf-8"))

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def remove(self) -> None:
        self.close()
        self.path.unlink(missing_ok=True)

    def forget(self, which: Callable[[dict[str, Any]], bool]) -> None:
        """Strike the records ``which`` selects (their shards will be made again)."""
        self.close()
        kept = [r for r in self.load().values() if not which(r)]
        lines = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in kept)
        write_bytes_atomic(self.path, lines.encode("utf-8"))


def write_manifest(out: Path, manifest: dict[str, Any]) -> None:
    write_json(out / MANIFEST, manifest)


def read_manifest(out: Path) -> dict[str, Any]:
    path = out / MANIFEST
    data = read_json(path)
    if data is None:
        raise DataError(
            f"{path}: no manifest (the build did not finish, or this is no build output)"
        )
    if not isinstance(data, dict) or data.get("format_version") != FORMAT_VERSION:
        raise DataError(f"{path}: not an imagenet-prep manifest of format {FORMAT_VERSION}")
    return data


class BuildLock:
    """One build per output folder: an exclusive ``flock`` on ``OUT/.imagenet-prep/lock``.

    The kernel drops the lock when the holding process ends, however it ends, so a lock left
    by a killed build never blocks the rerun. The file keeps the holder's process id, to name
    it when a second build is refused.
    """

    def __init__(self, out: Path) -> None:
        self.out = out
        self.path = state_dir(out) / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise UsageError(
                f"{self.out}: cannot write to the output folder ({exc.strerror})"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.pread(fd, 64, 0).decode("ascii", "replace").split("\n", 1)[0].strip()
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise UsageError(
                    f"{self.path}: cannot lock the output folder ({exc.strerror})"
                ) from None
            who = f"process {holder}" if holder.isdigit() else "another process"
            raise UsageError(
                f"{self.out}: another build is writing to this folder ({who}); wait for it to "
                "end, or choose another output folder"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            # Emptied, so that a finished build leaves the same bytes however it ran; the
            # file itself stays (removing it would let two builds lock two different files).
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing the only descriptor drops the lock
            self._fd = None

    def __enter__(self) -> BuildLock:
        self.acquire()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


def read_outputs(out: Path) -> list[str] | None:
    """The files an earlier build in ``out`` wrote or was going to write (relative paths), as
    it recorded them before its first shard; None when it recorded none."""
    try:
        data = (state_dir(out) / OUTPUTS_FILE).read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{state_dir(out) / OUTPUTS_FILE}: unreadable ({exc})") from None
    return [line for line in data.split("\n") if line]


def record_outputs(out: Path, paths: Iterable[str]) -> None:
    """Record the files this build writes, before its first shard, and keep those an earlier
    run recorded when they differ (a resume after the download changed). Streamed: the list
    of an ImageFolder build has a line per image."""
    path = state_dir(out) / OUTPUTS_FILE
    new = xxhash.xxh3_128()
    with atomic_open(path) as f:
        batch: list[str] = []
        for name in paths:
            batch.append(name + "\n")
            if len(batch) >= 4096:
                data = "".join(batch).encode("utf-8")
                new.update(data)
                f.write(data)
                batch.clear()
        data = "".join(batch).encode("utf-8")
        new.update(data)
        f.write(data)
        try:
            old = open(path, "rb")  # noqa: SIM115 - closed below
        except FileNotFoundError:
            return
        with old:
            if hash_file(path)[1] != new.hexdigest():
                shutil.copyfileobj(old, f)


def record_foreign(out: Path, paths: list[str]) -> None:
    """Keep the files of someone else's that ``--overwrite`` left in OUT (relative paths)."""
    write_json(state_dir(out) / FOREIGN_FILE, paths)


def read_foreign(out: Path) -> list[str]:
    """The files :func:`record_foreign` kept; none when it never ran."""
    data = read_json(state_dir(out) / FOREIGN_FILE)
    return [str(p) for p in data] if isinstance(data, list) else []
