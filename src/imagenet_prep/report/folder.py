"""The report's folder: written beside its place under a temporary name, renamed into place
at the end (an earlier report is replaced whole; a folder holding anything else is refused),
and the image files in it."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import xxhash

from ..errors import UsageError

STATS = "stats.json"
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def fresh_folder(folder: Path) -> Path:
    """An empty folder beside ``folder`` to write the report into (:func:`replace_folder`
    puts it in place); ``folder`` itself may only hold an earlier report."""
    ours = (folder / STATS).is_file()
    if folder.exists() and not ours and (not folder.is_dir() or any(folder.iterdir())):
        raise UsageError(
            f"{folder}: exists and holds no imagenet-prep report; choose another folder (--to)"
        )
    work = folder.with_name(f".{folder.name}.incomplete")
    shutil.rmtree(work, ignore_errors=True)
    try:
        work.mkdir(parents=True)
    except OSError as exc:
        raise UsageError(f"{work}: cannot write the report ({exc.strerror})") from None
    return work


def replace_folder(work: Path, folder: Path) -> None:
    """Put the finished report ``work`` in place of ``folder`` (an earlier report, or none)."""
    if folder.exists():
        old = folder.with_name(f".{folder.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(folder, old)
        os.replace(work, folder)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(work, folder)


def file_name(key: str, suffix: str) -> str:
    """A file name for ``key``: its safe characters and a hash (keys may hold anything).

    >>> file_name("n01440764_10026", ".jpg")
    'n01440764_10026-282572a1.jpg'
    """
    digest = xxhash.xxh32_hexdigest(key.encode("utf-8"))
    return f"{_UNSAFE.sub('_', key)[:80]}-{digest}{suffix}"


def save_image(folder: Path, sub: str, key: str, data: bytes) -> str:
    """Write a JPEG for ``key`` into ``folder/sub``; its name relative to ``folder``."""
    name = f"{sub}/{file_name(key, '.jpg')}"
    (folder / sub).mkdir(exist_ok=True)
    (folder / name).write_bytes(data)
    return name
