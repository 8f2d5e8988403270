"""The training boxes: every box XML parsed with the reference scripts' rules into a
:class:`BoxTable` (per image, and the lines of the CSV)."""

from __future__ import annotations

import gzip
import os
import zlib
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .. import boxes as boxmod
from ..archive import iter_tar_stream
from ..boxes import Box
from ..errors import DataError
from ..labels import Synsets
from ..sample import BBox
from .layout import SourceLayout, stem

# --- bounding boxes ------------------------------------------------------------------


@dataclass
class BoxStats:
    files: int = 0
    files_other_synset: int = 0
    boxes_kept: int = 0
    boxes_other_synset: int = 0
    boxes_empty: int = 0


def box_file(source: str, archive: bool, folder: str, key: str) -> str:
    """A box XML's place for messages: ``archive:folder/key.xml`` or a path.

    >>> box_file("bbox.tar.gz", True, "n1", "n1_5"), box_file("/b", False, "n1", "n1_5")
    ('bbox.tar.gz:n1/n1_5.xml', '/b/n1/n1_5.xml')
    """
    return f"{source}:{folder}/{key}.xml" if archive else os.path.join(source, folder, f"{key}.xml")


_NO_BOXES = (0, 0, "")


class BoxTable:
    """Training boxes by image stem, as the records carry them, plus the CSV lines.

    Kept as columns (per image: its first box, box count and folder; the box values in one
    array; one CSV line per box), so a partial table parsed in a worker pickles in a few C
    calls. ``source`` (an archive when ``archive``) and the folder name an image's XML file.
    """

    def __init__(self, source: str = "", archive: bool = False) -> None:
        self.source = source
        self.archive = archive
        # stem -> (first box, box count, folder of its XML)
        self._where: dict[str, tuple[int, int, str]] = {}
        self._values = array("d")  # xmin, ymin, xmax, ymax of every box, image after image
        self._lines: list[str] = []  # the CSV line of every box, in the same order
        self.stats = BoxStats()
        self.skipped: list[tuple[str, str]] = []

    def add(
        self, key: str, boxes: Sequence[BBox | Box], lines: Sequence[str], folder: str = ""
    ) -> None:
        """Boxes (``BBox`` or ``(xmin, ymin, xmax, ymax)``) and their CSV lines, one each,
        from the XML file ``key`` in ``folder``."""
        if key in self._where:
            also = box_file(self.source, self.archive, folder, key)
            raise DataError(f"two box files for the image {key}: {self.file(key)} and {also}")
        if len(lines) != len(boxes):
            raise ValueError(f"{key}: {len(boxes)} boxes with {len(lines)} CSV lines")
        self._where[key] = (len(self._lines), len(boxes), folder)
        for box in boxes:
            if isinstance(box, BBox):
                box = (box.xmin, box.ymin, box.xmax, box.ymax)
            self._values.extend(box)
        self._lines.extend(lines)

    def merge(self, other: BoxTable) -> None:
        """Take in a partial table parsed elsewhere (its boxes, lines, counts and skips)."""
        twice = other._where.keys() & self._where.keys()
        if twice:
            key = min(twice)
            raise DataError(
                f"two box files for the image {key}: {self.file(key)} and {other.file(key)}"
            )
        shift = len(self._lines)
        for key, (first, count, folder) in other._where.items():
            self._where[key] = (first + shift, count, folder)
        self._values.extend(other._values)
        self._lines.extend(other._lines)
        for name, value in asdict(other.stats).items():
            setattr(self.stats, name, getattr(self.stats, name) + value)
        self.skipped.extend(other.skipped)

    def values(self, key: str) -> array[float]:
        """The image's box values (four per box, in file order); empty without boxes."""
        first, count, _ = self._where.get(key, _NO_BOXES)
        return self._values[4 * first : 4 * (first + count)]

    def file(self, key: str) -> str:
        """The XML file that gave the image ``key`` its boxes (KeyError when none did)."""
        return box_file(self.source, self.archive, self._where[key][2], key)

    def get(self, key: str) -> tuple[BBox, ...]:
        v = self.values(key)
        return tuple(BBox(*v[i : i + 4]) for i in range(0, len(v), 4))

    def keys(self) -> list[str]:
        return list(self._where)

    def __len__(self) -> int:
        return len(self._where)

    def csv_bytes(self) -> bytes:
        """The reference scripts' CSV, in UTF-8: one line per kept box, sorted by image, boxes
        in file order.

        Names are ASCII in ILSVRC2012, so the bytes are the reference scripts'; others are
        written as they are.
        """
        ordered: list[str] = []
        for key in sorted(self._where):
            first, count, _ = self._where[key]
            ordered.extend(self._lines[first : first + count])
        return "".join(line + "\n" for line in ordered).encode("utf-8")


def _iter_box_archive(path: Path) -> Iterator[tuple[str, str, bytes]]:
    """Yield (directory wnid, xml stem, bytes) from the gzip'd box archive, streaming."""
    try:
        with gzip.open(path, "rb") as f:
            for member, data in iter_tar_stream(f, str(path)):  # type: ignore[arg-type]
                if not member.name.lower().endswith(".xml"):
                    continue
                parts = member.name.replace("\\", "/").split("/")
                folder = parts[-2] if len(parts) >= 2 else stem(parts[-1]).split("_")[0]
                yield folder, stem(parts[-1]), data
    except (EOFError, zlib.error, OSError) as exc:
        raise DataError(f"{path}: damaged box archive ({exc})") from None


def _iter_box_folder(path: Path) -> Iterator[tuple[str, str, bytes]]:
    for entry in sorted(os.scandir(path), key=lambda e: e.name):
        if not entry.is_dir():
            continue
        for sub in sorted(os.scandir(entry.path), key=lambda e: e.name):
            if sub.is_file() and sub.name.lower().endswith(".xml"):
                with open(sub.path, "rb") as f:
                    yield entry.name, stem(sub.name), f.read()


#: Box XMLs per parsing task when the parsing is spread over a pool.
BOX_BATCH = 500

# A function like Executor.map_unordered: apply fn to every item, results in any order.
MapUnordered = Callable[[Callable[[Any], Any], Iterable[Any]], Iterator[Any]]


def load_boxes(
    layout: SourceLayout,
    synsets: Synsets,
    *,
    skip_bad: bool = False,
    progress: Callable[[int], None] | None = None,
    map_unordered: MapUnordered | None = None,
) -> BoxTable | None:
    """Parse every training box XML with the reference scripts' rules; None when SRC has no boxes.

    A damaged XML file is an error, or with ``skip_bad`` is left out and listed in
    ``BoxTable.skipped``. A damaged archive is always an error. With ``map_unordered``
    (an executor's), this process reads the archive and the XMLs are parsed in batches
    by the executor's workers; the table is the same either way.
    """
    src = layout.boxes
    if src is None:
        return None
    table = BoxTable(str(src), src.is_file())
    batches = _box_batches(src, synsets, table.stats, skip_bad)
    results: Iterable[BoxTable] = (
        map(parse_box_batch, batches)
        if map_unordered is None
        else map_unordered(parse_box_batch, batches)
    )
    for part in results:
        table.merge(part)
        if progress is not None:
            progress(table.stats.files)
    table.skipped.sort()
    return table


@dataclass(frozen=True)
class _BoxBatch:
    files: list[tuple[str, str, str, bytes]]  # (folder wnid, stem, where, XML bytes)
    challenge: frozenset[str]  # the synsets whose other-synset boxes are dropped
    skip_bad: bool
    source: str = ""  # the box archive or folder, as BoxTable names it
    archive: bool = False


def _box_batches(
    src: Path, synsets: Synsets, stats: BoxStats, skip_bad: bool
) -> Iterator[_BoxBatch]:
    """The XMLs of challenge synsets in batches; the others are only counted."""
    archive = src.is_file()
    items = _iter_box_archive(src) if archive else _iter_box_folder(src)
    challenge = frozenset(synsets.wnids)
    batch: list[tuple[str, str, str, bytes]] = []
    for folder, key, data in items:
        stats.files += 1
        if folder not in synsets:
            # The reference scripts keep only annotations of challenge synsets (by folder).
            stats.files_other_synset += 1
            continue
        batch.append((folder, key, box_file(str(src), archive, folder, key), data))
        if len(batch) >= BOX_BATCH:
            yield _BoxBatch(batch, challenge, skip_bad, str(src), archive)
            batch = []
    if batch:
        yield _BoxBatch(batch, challenge, skip_bad, str(src), archive)


def parse_box_batch(batch: _BoxBatch) -> BoxTable:
    """Parse a batch of box XMLs into a partial table (picklable: runs in any process).

    Its ``stats.files`` stays 0: the reader of the archive counts the files.
    """
    table = BoxTable(batch.source, batch.archive)
    stats = table.stats
    for folder, key, where, data in batch.files:
        try:
            boxmod.check_csv_name(key, where)
            annotation = boxmod.parse_annotation(data, where)
        except DataError as exc:
            if not batch.skip_bad:
                raise
            table.skipped.append((where, str(exc)))
            continue
        result = boxmod.normalize_boxes(annotation, folder, batch.challenge)
        stats.boxes_other_synset += result.dropped_other_synset
        stats.boxes_empty += result.dropped_empty
        stats.boxes_kept += len(result.kept)
        if result.kept:
            table.add(
                key,
                [boxmod.record_box(b) for b in result.kept],
                [boxmod.csv_line(key, b) for b in result.kept],
                folder,
            )
    return table
