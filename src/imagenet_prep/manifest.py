"""The output's bookkeeping: per-shard done markers, recorded options, and manifest.json.

Everything is written through a temporary name and renamed; manifest.json is written
last, so its presence means the build finished.
"""

from __future__ import annotations

import json
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


def done_path(out: Path, shard: str) -> Path:
    return state_dir(out) / "done" / f"{shard}.json"


def write_done(out: Path, shard: str, result: dict[str, Any]) -> None:
    write_json(done_path(out, shard), result)


def read_done(out: Path, shard: str) -> dict[str, Any] | None:
    path = done_path(out, shard)
    try:
        data = read_json(path)
    except DataError:
        return None  # a damaged marker only means the shard is redone
    return data if isinstance(data, dict) else None


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
