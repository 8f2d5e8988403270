"""The output's bookkeeping: per-shard done markers, recorded options, and manifest.json.

Everything is written through a temporary name and renamed; manifest.json is written
last, so its presence means the build finished.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import DataError
from .fsutil import write_bytes_atomic

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
STATE_DIR = ".imagenet-prep"
OPTIONS_FILE = "options.json"


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
