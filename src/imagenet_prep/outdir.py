"""The output folder: recorded options, refusing to mix builds, temporaries, disk space."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from .config import BuildConfig
from .errors import DataError, ResourceError, UsageError
from .formats import FORMATS
from .fsutil import file_size, files_under, read_bytes, remove_file, write_bytes_atomic
from .manifest import MANIFEST, STATE_DIR, OutputState, RecordedOptions, read_json
from .sources import SourceLayout, SplitIndex, is_image_name
from .storage import is_url, open_store

log = logging.getLogger(__name__)

BOX_CSV = "imagenet_2012_bounding_boxes.csv"
VALIDATION_BOX_CSV = "imagenet_2012_validation_bounding_boxes.csv"
LABELS_TXT = "labels.txt"
_DISK_MARGIN = 64 << 20


def recorded_options(config: BuildConfig, layout: SourceLayout) -> RecordedOptions:
    """What decides the output's bytes: the options and the identity of the input archives."""
    return RecordedOptions(
        config.output_options(), {p.name: p.stat().st_size for p in layout.archives()}
    )


def _holds_nothing(out: Path) -> bool:
    """True when ``out`` is empty but for a bookkeeping folder holding only a lock file."""
    if is_url(out):
        return all(name.startswith(f"{STATE_DIR}/") for name in files_under(out)) and (
            OutputState(out).holds_only_lock()
        )
    return all(entry.name == STATE_DIR for entry in out.iterdir()) and (
        OutputState(out).holds_only_lock()
    )


def prepare_output(config: BuildConfig, options: RecordedOptions) -> bool:
    """Check OUT holds nothing, or a build with the same options (or clear it, with
    ``overwrite``), and record ``options``. True if the build there is finished.

    The caller holds OUT's :class:`~imagenet_prep.manifest.BuildLock`.
    """
    out = config.output
    state = OutputState(out)
    recorded = state.read_options()
    if recorded is None and not _holds_nothing(out):
        raise UsageError(
            f"{out}: output folder is not empty and holds no imagenet-prep build; "
            "choose a new or empty folder"
        )
    if recorded is not None and recorded != options:
        if not config.overwrite:
            changed = options.differences(recorded)
            raise UsageError(
                f"{out}: holds a build made with different options "
                f"({', '.join(changed) or 'unreadable record'}); use --overwrite to replace "
                "it, or a new output folder"
            )
        clear_output(out)
    elif recorded is not None and file_size(out / MANIFEST) is not None:
        return True
    try:
        state.write_options(options)
    except OSError as exc:
        raise UsageError(f"{out}: cannot write to the output folder ({exc.strerror})") from None
    return False


def make_output(out: Path) -> None:
    """Create OUT (and its parents), or check that it is a folder. In an object store, where
    prefixes need no creating, check that the bucket is there and answers."""
    if is_url(out):
        url = str(out)
        try:
            open_store(url).check_bucket(url)
        except DataError as exc:  # no such bucket: the output cannot be written, as a folder
            raise UsageError(f"cannot write the output there: {exc}") from None
        return
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out}: output path exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"{out}: cannot create the output folder ({exc.strerror})") from None


def _recorded_files(out: Path) -> list[str]:
    """What the earlier build in ``out`` wrote, from its own records.

    Its list of outputs (kept since builds record one); for a build that predates it, the
    files its manifest and journal list, and the image files of the class folders they
    list.
    """
    listed = OutputState(out).read_outputs()
    if listed is not None:
        return listed
    files: list[str] = []
    sections: list[dict[str, Any]] = []
    try:  # read leniently: an earlier version's manifest still lists its files
        manifest = read_json(out / MANIFEST)
    except DataError:
        manifest = None
    if isinstance(manifest, dict):
        sections.extend(manifest.get("formats", {}).values())
    for result in OutputState(out).journal().load().values():
        sections.extend(result.outputs.values())
    for section in sections:
        for shard in [section, *section.get("shards", ())]:
            for entry in (shard, shard.get("index") or {}):
                if isinstance(entry.get("file"), str):
                    files.append(entry["file"])
        for folder in section.get("classes", {}) if not is_url(out) else ():
            base = out / FORMATS["imagefolder"].folder / folder
            if base.is_dir():
                files.extend(
                    f"{FORMATS['imagefolder'].folder}/{folder}/{e.name}"
                    for e in os.scandir(base)
                    if e.is_file(follow_symlinks=False) and is_image_name(e.name)
                )
    return files


def clear_output(out: Path) -> None:
    """Remove exactly what the earlier build in ``out`` wrote, from its own records.

    Folders it made are removed once empty. Anything else is left alone and recorded
    (:meth:`~imagenet_prep.manifest.OutputState.record_foreign`), so that the next build
    names it.
    """
    log.info("removing the earlier build in %s", out)
    recorded = _recorded_files(out)
    # The folders the build made: those of its files, and every format's own (emptied only).
    tops = {path.split("/", 1)[0] for path in recorded if "/" in path}
    tops.update(folder for f in FORMATS.values() for folder in f.owned_folders())
    for path in recorded:
        with contextlib.suppress(NotADirectoryError, IsADirectoryError):
            remove_file(out / path)
    for name in (MANIFEST, BOX_CSV, VALIDATION_BOX_CSV, LABELS_TXT):
        remove_file(out / name)
    if not is_url(out):  # a store's "folders" are prefixes: they go with their last object
        for top in sorted(tops):
            _remove_empty_folders(out / top)
    state = OutputState(out)
    state.clear()
    left = [name for name in files_under(out) if name.split("/", 1)[0] != STATE_DIR]
    state.record_foreign(left)  # the build names them in its warnings and manifest


def _remove_empty_folders(top: Path) -> None:
    """Remove ``top`` and the folders under it that are empty (deepest first)."""
    if not top.is_dir() or top.is_symlink():
        return
    for dirpath, _dirs, _files in os.walk(top, topdown=False):
        with contextlib.suppress(OSError):
            os.rmdir(dirpath)  # fails, as it should, on a folder that still holds something


def remove_temporaries(out: Path) -> None:
    """Delete files left under temporary names by an interrupted run. (A store has none: an
    interrupted upload never became an object.)"""
    if is_url(out):
        return
    for dirpath, _dirs, files in os.walk(out):
        for name in files:
            if name.startswith(".") and name.endswith(".incomplete"):
                os.unlink(os.path.join(dirpath, name))


def write_if_changed(path: Path, data: bytes | bytearray) -> None:
    """Write ``data`` atomically unless ``path`` already holds exactly it."""
    try:
        if file_size(path) == len(data) and read_bytes(path) == data:
            return
    except (OSError, DataError):
        pass
    write_bytes_atomic(path, data)


def size_text(n: float) -> str:
    """Bytes for people: kB below 1 MB, MB below 1 GB, GB above.

    >>> size_text(1000), size_text(3.4e6), size_text(999e6), size_text(12.35e9)
    ('1 kB', '3 MB', '999 MB', '12.3 GB')
    """
    if abs(n) < 1e6:
        return f"{n / 1e3:,.0f} kB"
    return f"{n / 1e6:,.0f} MB" if abs(n) < 1e9 else f"{n / 1e9:,.1f} GB"


def disk_need(config: BuildConfig, indexes: dict[str, SplitIndex], done_bytes: int) -> int:
    """About how many more bytes the build writes (the input's size per image format)."""
    need = sum(FORMATS[f].size_factor for f in config.formats) * sum(
        i.total_bytes() for i in indexes.values()
    )
    return max(0, int(need) - done_bytes)


def check_disk(config: BuildConfig, indexes: dict[str, SplitIndex], done_bytes: int) -> None:
    if is_url(config.output):
        return  # an object store has no free space to ask about
    need = disk_need(config, indexes, done_bytes) + _DISK_MARGIN
    free = shutil.disk_usage(config.output).free
    if need > free and not config.force:
        raise ResourceError(
            f"{config.output}: the build needs about {size_text(need)} more and the file "
            f"system has {size_text(free)} free; free some space, or pass --force to start "
            "anyway"
        )


def out_of_space(config: BuildConfig, exc: OSError, need: int) -> ResourceError:
    """The one-line error for a write that found the output's file system full."""
    where = exc.filename or config.output
    try:
        free = shutil.disk_usage(config.output).free
        mount = _mount_point(config.output)
    except OSError:
        free, mount = 0, config.output
    what = "full" if exc.errno == errno.ENOSPC else "over its quota"
    return ResourceError(
        f"{where}: the file system at {mount} is {what} (the build needed about "
        f"{size_text(need)} more, {size_text(free)} is free); free some space and run the same "
        "command again: it resumes after the shards already finished"
    )


def _mount_point(path: Path) -> Path:
    path = path.resolve()
    while not os.path.ismount(path) and path != path.parent:
        path = path.parent
    return path
