"""Checks of the download beside the build: published counts and MD5s, the devkit's labels.

The MD5 of an official archive and the devkit are computed in helper processes while the
shards are written; their results are checked before the manifest.
"""

from __future__ import annotations

import logging
import os
import sys
from concurrent.futures import Future
from functools import partial
from pathlib import Path
from typing import Any

from ..archive import file_md5
from ..config import BuildConfig
from ..errors import DataError
from ..executors import Executor
from ..labels import Devkit, read_devkit, validation_labels
from ..manifest import Journal, OutputState, ShardResult
from ..sources import SourceLayout, SplitIndex, cached_md5, record_md5

log = logging.getLogger(__name__)


def check_download(
    config: BuildConfig, index: SplitIndex, md5: str | None
) -> dict[str, Any] | None:
    """Compare an archive with the published one of the same name and size (counts, and the
    MD5 when it is known already: from an earlier run, or an inline executor's hashing);
    its entry in the manifest's ``downloads``.

    Other counts than the published ones are an error: such a file is incomplete.
    """
    archive = index.archive
    if archive is None:
        return None
    name = os.path.basename(archive.path)
    known = config.known_archive(name, archive.size)
    entry: dict[str, Any] = {"name": name, "bytes": archive.size, "md5": md5}
    if known is None:
        return entry
    entry["official"] = True
    if config.check_md5 and md5 is not None:
        compare_md5(Path(archive.path), md5, known.md5)
        entry["md5_verified"] = True
    classes = len(set(index.labels))
    if len(index) != known.images or classes != known.classes:
        raise DataError(
            f"{archive.path}: {len(index):,} images in {classes} classes, the official archive "
            f"holds {known.images:,} in {known.classes}: the download is incomplete or damaged"
        )
    return entry


def compare_md5(path: Path, md5: str, published: str, after: str = "") -> None:
    if md5 != published:
        raise DataError(
            f"{path}: MD5 {md5} differs from the published {published} for this file: the "
            f"download is damaged (download it again, or pass --no-md5 to use it anyway){after}"
        )


def md5_wanted(config: BuildConfig, archive: Path | None) -> bool:
    """Hash an archive only when it could be an official one (a published name and size)."""
    return (
        config.check_md5
        and archive is not None
        and archive.is_file()
        and config.known_archive(archive.name, archive.stat().st_size) is not None
    )


def hash_aside(
    config: BuildConfig, layout: SourceLayout, state: OutputState, executor: Executor
) -> dict[str, Future[str]]:
    """Start hashing each official archive whose MD5 no earlier run kept, beside the build.

    The shards are written meanwhile: at full size the MD5 of the 155 GB takes minutes, and
    they do not wait for it. The build checks the result before its manifest (see
    :func:`finish_md5`).
    """
    pending: dict[str, Future[str]] = {}
    for split in config.splits:
        path = layout.images(split)
        if path is None or not md5_wanted(config, path):
            continue
        if cached_md5(state, path) is None:
            log.info("computing the MD5 of %s beside the rest of the build", path)
            pending[split] = executor.run_aside(file_md5, path)
    return pending


def known_md5(
    config: BuildConfig,
    state: OutputState,
    archive: Path | None,
    future: Future[str] | None,
) -> tuple[str | None, bool]:
    """The MD5 of ``archive`` if it is known now (kept by an earlier run, or hashed already:
    an inline executor, a small file), and whether ``future`` was used up for it."""
    if archive is None or not md5_wanted(config, archive):
        return None, False
    if future is None:
        return cached_md5(state, archive), False
    if not future.done():
        return None, False
    md5 = future.result()
    record_md5(state, archive, md5)
    return md5, True


def of_split(split: str, result: ShardResult) -> bool:
    return result.split == split


def finish_md5(
    config: BuildConfig,
    layout: SourceLayout,
    state: OutputState,
    pending: dict[str, Future[str]],
    download_of: dict[str, dict[str, Any]],
    journal: Journal,
) -> None:
    """Wait for the MD5s computed beside the build and compare them with the published ones.

    On a mismatch the split's shards are struck from the journal, so that a rerun (with a
    new download, or with --no-md5) makes them again, and the build fails without a manifest.
    """
    for split, future in pending.items():
        path = layout.images(split)
        entry = download_of[split]  # the archive's name and size as indexed
        known = config.known_archive(entry["name"], entry["bytes"])
        if path is None or known is None:  # hashed only because it is a known archive
            raise RuntimeError(f"{split}: an MD5 was computed for an unknown archive")
        if not future.done():
            log.info(
                "waiting for the MD5 of %s (%.1f GB; it has run since the index was started)",
                path,
                entry["bytes"] / 1e9,
            )
        md5 = future.result()
        record_md5(state, path, md5)
        entry["md5"] = md5
        try:
            compare_md5(path, md5, known.md5, f"; its {split} shards will be made again")
        except DataError:
            journal.forget(partial(of_split, split))
            raise
        entry["md5_verified"] = True


def read_devkit_aside(path: Path) -> Devkit:
    """``read_devkit`` in a helper process: its scipy import brings OpenBLAS, whose idle
    threads spin for a while after starting though the build does no linear algebra. A
    process of its own is told to start one thread; in any other process (an inline
    executor) the environment is left alone.
    """
    import multiprocessing

    if multiprocessing.parent_process() is not None and "numpy" not in sys.modules:
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    return read_devkit(path)


def check_devkit(future: Future[Devkit]) -> str:
    """The devkit's validation labels must be the shipped ones (they label the records);
    where the manifest says the labels were confirmed."""
    validation_labels(future.result())
    return "devkit"
