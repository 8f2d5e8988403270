"""A split's boxes: every box XML a source yields, parsed with the reference scripts' rules
into a :class:`BoxTable` (per image, and the lines of the CSV)."""

from __future__ import annotations

import os
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .. import boxes as boxmod
from ..boxes import Box
from ..errors import DataError
from ..labels import Synsets, validation_number
from ..sample import BBox

# --- bounding boxes ------------------------------------------------------------------


@dataclass
class BoxStats:
    files: int = 0
    files_other_synset: int = 0
    boxes_kept: int = 0
    boxes_other_synset: int = 0
    boxes_empty: int = 0


def box_file(prefix: str, folder: str, key: str) -> str:
    """A box XML's place for messages: ``prefix`` (an archive and ``:``, or a folder and
    ``/``), the folder, and the file.

    >>> box_file("bbox.tar.gz:", "n1", "n1_5"), box_file("/b/", "n1", "n1_5")
    ('bbox.tar.gz:n1/n1_5.xml', '/b/n1/n1_5.xml')
    >>> box_file("k.zip:ILSVRC/Annotations/CLS-LOC/val/", "", "v_1")
    'k.zip:ILSVRC/Annotations/CLS-LOC/val/v_1.xml'
    """
    return f"{prefix}{folder}/{key}.xml" if folder else f"{prefix}{key}.xml"


def archive_prefix(path: str | Path, folder: str = "") -> str:
    """The :func:`box_file` prefix of the XMLs in an archive (under ``folder`` in it).

    >>> archive_prefix("bbox.tar.gz"), archive_prefix("k.zip", "ILSVRC/Annotations")
    ('bbox.tar.gz:', 'k.zip:ILSVRC/Annotations/')
    """
    return f"{path}:{folder}/" if folder else f"{path}:"


def folder_prefix(path: str | Path) -> str:
    """The :func:`box_file` prefix of the XMLs in a folder.

    >>> folder_prefix("/data/bounding_boxes")
    '/data/bounding_boxes/'
    """
    return os.path.join(path, "")


@dataclass
class BoxXmls:
    """A split's box XML files as a source yields them: ``(folder, stem, bytes)`` each,
    the place of each being :func:`box_file` ``(prefix, folder, stem)``."""

    prefix: str
    items: Iterator[tuple[str, str, bytes]]


_NO_BOXES = (0, 0, "")


class BoxTable:
    """Training boxes by image stem, as the records carry them, plus the CSV lines.

    Kept as columns (per image: its first box, box count and folder; the box values in one
    array; one CSV line per box), so a partial table parsed in a worker pickles in a few C
    calls. ``prefix`` and the folder name an image's XML file (see :func:`box_file`).
    """

    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix
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
            also = box_file(self.prefix, folder, key)
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
        return box_file(self.prefix, self._where[key][2], key)

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


#: Box XMLs per parsing task when the parsing is spread over a pool.
BOX_BATCH = 500

# A function like Executor.map_unordered: apply fn to every item, results in any order.
MapUnordered = Callable[[Callable[[Any], Any], Iterable[Any]], Iterator[Any]]


def load_boxes(
    xmls: BoxXmls | None,
    synsets: Synsets,
    *,
    validation_labels: tuple[str, ...] | None = None,
    skip_bad: bool = False,
    progress: Callable[[int], None] | None = None,
    map_unordered: MapUnordered | None = None,
) -> BoxTable | None:
    """Parse every box XML of a split with the reference scripts' rules; None without XMLs.

    A training XML's folder is its image's synset; a validation XML's synset is its image's
    label in ``validation_labels`` (by the number in its name), which the reference rules
    need to drop the boxes of other synsets. A damaged XML file is an error, or with
    ``skip_bad`` is left out and listed in ``BoxTable.skipped``. A damaged archive is always
    an error. With ``map_unordered`` (an executor's), this process reads the XMLs and they
    are parsed in batches by the executor's workers; the table is the same either way.
    """
    if xmls is None:
        return None
    table = BoxTable(xmls.prefix)
    batches = _box_batches(xmls, synsets, validation_labels, table.stats, skip_bad)
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
    files: list[tuple[str, str, str, bytes]]  # (synset, folder, stem, XML bytes)
    challenge: frozenset[str]  # the synsets whose other-synset boxes are dropped
    skip_bad: bool
    prefix: str = ""  # see box_file


def _synset_of(folder: str, key: str, validation_labels: tuple[str, ...] | None) -> str | None:
    """The synset of the image a box XML describes: its folder's, or its validation label."""
    if validation_labels is None:
        return folder
    number = validation_number(key)
    if number is None or not 1 <= number <= len(validation_labels):
        return None
    return validation_labels[number - 1]


def _box_batches(
    xmls: BoxXmls,
    synsets: Synsets,
    validation_labels: tuple[str, ...] | None,
    stats: BoxStats,
    skip_bad: bool,
) -> Iterator[_BoxBatch]:
    """The XMLs of challenge synsets in batches; the others are only counted."""
    challenge = frozenset(synsets.wnids)
    batch: list[tuple[str, str, str, bytes]] = []
    for folder, key, data in xmls.items:
        stats.files += 1
        synset = _synset_of(folder, key, validation_labels)
        if synset is None or synset not in synsets:
            # The reference scripts keep only annotations of challenge synsets (by folder).
            stats.files_other_synset += 1
            continue
        batch.append((synset, folder, key, data))
        if len(batch) >= BOX_BATCH:
            yield _BoxBatch(batch, challenge, skip_bad, xmls.prefix)
            batch = []
    if batch:
        yield _BoxBatch(batch, challenge, skip_bad, xmls.prefix)


def parse_box_batch(batch: _BoxBatch) -> BoxTable:
    """Parse a batch of box XMLs into a partial table (picklable: runs in any process).

    Its ``stats.files`` stays 0: the reader of the archive counts the files.
    """
    table = BoxTable(batch.prefix)
    stats = table.stats
    for synset, folder, key, data in batch.files:
        where = box_file(batch.prefix, folder, key)
        try:
            boxmod.check_csv_name(key, where)
            annotation = boxmod.parse_annotation(data, where)
        except DataError as exc:
            if not batch.skip_bad:
                raise
            table.skipped.append((where, str(exc)))
            continue
        result = boxmod.normalize_boxes(annotation, synset, batch.challenge)
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
