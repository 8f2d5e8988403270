"""The images a build skipped are in no output: their bytes are read back from the source
the manifest names, through the build's own source readers (its archive indexes, kept in
OUT, make that quick)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from ..errors import ImagenetPrepError
from ..labels import load_synsets, validation_labels
from ..manifest import Manifest, OutputState

log = logging.getLogger(__name__)


def file_name(origin: str) -> str:
    """The image's file name in an origin (``archive:nested.tar:name``, a zip member, a path).

    >>> file_name("dl/ILSVRC2012_img_train.tar:n01440764.tar:n01440764_10026.JPEG")
    'n01440764_10026.JPEG'
    >>> file_name("k.zip:ILSVRC/Data/CLS-LOC/val/ILSVRC2012_val_00000001.JPEG")
    'ILSVRC2012_val_00000001.JPEG'
    """
    return origin.rsplit(":", 1)[-1].rsplit("/", 1)[-1]


def skipped_images(
    out: Path, manifest: Manifest, make: Callable[[bytes], bytes | None]
) -> tuple[dict[str, bytes], str | None]:
    """``make(image bytes)`` of every image the build skipped, by origin; and, when the
    source cannot be read here, one line saying so (then no images)."""
    wanted = {
        file_name(entry["image"]): entry["image"]
        for entry in manifest.skipped
        if isinstance(entry.get("image"), str)
    }
    splits = [s for s, e in manifest.splits.items() if e.get("skipped")]
    if not wanted or not splits:
        return {}, None
    root = manifest.source.get("root", "")
    try:
        return _read(Path(root), out, splits, wanted, make), None
    except (ImagenetPrepError, OSError) as exc:
        log.debug("skipped images unreadable", exc_info=True)
        return {}, f"the source {root} cannot be read here ({exc})"


def _read(
    root: Path,
    out: Path,
    splits: list[str],
    wanted: dict[str, str],
    make: Callable[[bytes], bytes | None],
) -> dict[str, bytes]:
    from ..sources import discover, open_source
    from ..sources.container import OpenFiles, read
    from ..sources.source import index_detached

    layout = discover(root)
    source = open_source(layout)
    synsets = load_synsets()
    state = OutputState(out)
    found: dict[str, bytes] = {}
    with OpenFiles() as files:
        for split in splits:
            index = index_detached(source, split, validation_labels(None), state)
            hits = [i for i, name in enumerate(index.names) if file_name(name) in wanted]
            for ref in index.block(hits, synsets, None):
                made = make(read(ref, files))
                if made is not None:
                    found[wanted[file_name(ref.filename)]] = made
    return found
