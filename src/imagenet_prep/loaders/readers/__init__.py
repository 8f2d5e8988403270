"""Raw samples (key, 0-based label, image bytes, boxes) from a build's output, per format.

The test split has no classes: its label is -1 in every format (whatever ``--label-offset``
the TFRecords were built with).

A reader divides a split into *units*, the pieces it reads sequentially: TFRecord and
WebDataset shards as listed in ``manifest.json``, or single files for ImageFolder (which
allows a full per-epoch shuffle). ``read(unit, start, stop, want)`` yields the unit's
records ``start:stop`` with their index, skipping without reading those ``want`` refuses.
Readers hold only file names and counts, so they pickle cheaply into worker processes.
``root`` is a local folder or a URL (``s3://bucket/out``, any fsspec URL): a build in an
object store is read where it lies (see ``remote.py``).
Each format's reader lives in its package (``imagenet_prep.formats.<name>.reader``), found
through the format registry.
"""

from __future__ import annotations

from pathlib import Path

from ...errors import DataError
from ...formats import FORMATS as REGISTRY
from ...formats import NAMES
from ...manifest import Manifest, read_manifest
from ...storage import as_location, is_url, open_store, redact
from .base import RawSample, Reader, Want

FORMATS = NAMES
SPLITS = ("train", "validation", "test")

__all__ = [
    "FORMATS",
    "SPLITS",
    "RawSample",
    "Reader",
    "Want",
    "detect_format",
    "normalize_split",
    "open_reader",
]


def normalize_split(split: str) -> str:
    """``train``, ``validation`` (``val`` is accepted for it) or ``test``.

    >>> normalize_split("val"), normalize_split("test")
    ('validation', 'test')
    """
    split = {"val": "validation"}.get(split, split)
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, not {split!r}")
    return split


def _manifest(root: Path) -> Manifest:
    """The build's manifest; for a URL, a missing bucket is named as such (one more request,
    on that failure only), not as a build that did not finish."""
    try:
        return read_manifest(root)
    except DataError:
        if is_url(root):
            scheme, _, rest = str(root).partition("://")
            bucket = f"{scheme}://{rest.split('/', 1)[0]}"
            try:
                open_store(bucket).info(bucket)  # no permission: the store's UsageError
            except DataError:
                raise DataError(f"{redact(str(root))}: no such bucket {redact(bucket)}") from None
        raise


def detect_format(root: str | Path, manifest: Manifest | None = None) -> str:
    """The first format the build at ``root`` wrote, in the order its ``--formats`` gave."""
    manifest = manifest if manifest is not None else _manifest(as_location(root))
    written = manifest.formats
    for name in manifest.options.get("formats", FORMATS):
        if name in written and name in FORMATS:
            return str(name)
    raise DataError(f"{root}: the build wrote none of {', '.join(FORMATS)}")


def open_reader(
    root: str | Path, split: str, format: str | None = None, *, boxes: bool = False
) -> Reader:
    """The reader of ``split`` in the build at ``root`` (a folder or a URL); ``boxes`` loads
    the training boxes."""
    root = as_location(root)
    split = normalize_split(split)
    manifest = _manifest(root)
    format = format or detect_format(root, manifest)
    if format not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, not {format!r}")
    section = manifest.formats.get(format)
    if section is None:
        raise DataError(f"{root}: the build has no {format} output")
    if split not in manifest.splits:
        raise DataError(f"{root}: the build has no {split} split")
    reader: Reader = REGISTRY[format].reader_class()(root, split, section, boxes=boxes)
    return reader
