"""The output folder: recorded options, refusing to mix builds, temporaries, disk space."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

from .config import BuildConfig
from .errors import DataError, ResourceError, UsageError
from .fsutil import write_bytes_atomic
from .manifest import MANIFEST, OPTIONS_FILE, STATE_DIR, read_json, state_dir, write_json
from .sources import SourceLayout, SplitIndex

log = logging.getLogger(__name__)

BOX_CSV = "imagenet_2012_bounding_boxes.csv"
LABELS_TXT = "labels.txt"
# Output bytes per input byte, per image format, for the disk-space estimate.
_SIZE_FACTOR = {"tfrecord": 1.01, "imagefolder": 1.0, "webdataset": 1.03}
_DISK_MARGIN = 64 << 20


def recorded_options(config: BuildConfig, layout: SourceLayout) -> dict[str, Any]:
    """What decides the output's bytes: the options and the identity of the input archives."""
    return {
        **config.output_options(),
        "source_archives": {p.name: p.stat().st_size for p in layout.archives()},
    }


def prepare_output(config: BuildConfig, options: dict[str, Any]) -> bool:
    """Create OUT, or check it holds a build with the same options. True if it is finished."""
    out = config.output
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out}: output path exists and is not a folder")
    recorded_path = state_dir(out) / OPTIONS_FILE
    if out.is_dir():
        try:
            recorded = read_json(recorded_path)
        except DataError:
            recorded = {}
        if recorded is None and any(out.iterdir()):
            raise UsageError(
                f"{out}: output folder is not empty and holds no imagenet-prep build; "
                "choose a new or empty folder"
            )
        if recorded is not None and recorded != options:
            if not config.overwrite:
                changed = sorted(k for k in options if recorded.get(k) != options[k])
                raise UsageError(
                    f"{out}: holds a build made with different options "
                    f"({', '.join(changed) or 'unreadable record'}); use --overwrite to replace "
                    "it, or a new output folder"
                )
            clear_output(out)
        elif recorded is not None and (out / MANIFEST).is_file():
            return True
    try:
        out.mkdir(parents=True, exist_ok=True)
        write_json(recorded_path, options)
    except OSError as exc:
        raise UsageError(f"{out}: cannot write to the output folder ({exc.strerror})") from None
    return False


def clear_output(out: Path) -> None:
    """Remove what an earlier build wrote (only the names this tool writes)."""
    log.info("removing the earlier build in %s", out)
    (out / MANIFEST).unlink(missing_ok=True)
    for name in ("tfrecord", "imagefolder", STATE_DIR):
        shutil.rmtree(out / name, ignore_errors=True)
    for name in (BOX_CSV, LABELS_TXT):
        (out / name).unlink(missing_ok=True)


def remove_temporaries(out: Path) -> None:
    """Delete files left under temporary names by an interrupted run."""
    for dirpath, _dirs, files in os.walk(out):
        for name in files:
            if name.startswith(".") and name.endswith(".incomplete"):
                os.unlink(os.path.join(dirpath, name))


def write_if_changed(path: Path, data: bytes) -> None:
    """Write ``data`` atomically unless ``path`` already holds exactly it."""
    try:
        if path.stat().st_size == len(data) and path.read_bytes() == data:
            return
    except OSError:
        pass
    write_bytes_atomic(path, data)


def check_disk(config: BuildConfig, indexes: dict[str, SplitIndex], done_bytes: int) -> None:
    need = sum(_SIZE_FACTOR[f] for f in config.formats) * sum(
        i.total_bytes() for i in indexes.values()
    )
    need = int(need) - done_bytes + _DISK_MARGIN
    free = shutil.disk_usage(config.output).free
    if need > free and not config.force:
        raise ResourceError(
            f"{config.output}: the build needs about {need / 1e9:,.1f} GB more and the file "
            f"system has {free / 1e9:,.1f} GB free; free some space, or pass --force to start "
            "anyway"
        )
