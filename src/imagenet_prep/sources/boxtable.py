"""A split's boxes: every box XML a source yields, parsed with the reference scripts' rules
into a :class:`BoxTable` (per image, and the lines of the CSV)."""

from __future__ import annotations

import os
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xxhash

from .. import boxes as boxmod
from ..boxes import Box
from ..errors import DataError
from ..labels import Synsets, validation_number
from ..namecolumn import NameColumn, extend_ends
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


class BoxTable:
    """Training boxes by image stem, as the records carry them; the CSV made from them.

    Kept as columns, one row per image with boxes (its stem, the folder of its XML, where
    its boxes end) and the box values in one array, so that 550,000 images with boxes cost
    about 90 bytes each, not a dict entry, a tuple and a list of CSV lines apiece, and a
    partial table parsed in a worker pickles in a few C calls. Images are found by the 64-bit
    hashes of their stems, sorted once (:meth:`rows`); a stem given twice is refused there,
    naming both files. ``prefix`` and the folder name an image's XML file (see
    :func:`box_file`).
    """

    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix
        self._stems = NameColumn()
        self._folder = array("I")  # per row: its XML's folder, an index into _folders
        self._folders: list[str] = []
        self._numbers: dict[str, int] = {}  # folder -> its index in _folders
        self._ends = array("Q")  # per row: where its boxes end, counted in boxes
        self._values = array("d")  # xmin, ymin, xmax, ymax of every box, row after row
        self.stats = BoxStats()
        self.skipped: list[tuple[str, str]] = []
        self._lookup: tuple[np.ndarray, np.ndarray] | None = None  # sorted hashes, their rows

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_lookup"] = None  # made again where it is needed
        return state

    def _folder_number(self, folder: str) -> int:
        number = self._numbers.get(folder)
        if number is None:
            number = self._numbers[folder] = len(self._folders)
            self._folders.append(folder)
        return number

    def add(self, key: str, boxes: Sequence[BBox | Box], folder: str = "") -> None:
        """The boxes (``BBox`` or ``(xmin, ymin, xmax, ymax)``, the values the records carry:
        :func:`boxes.record_box`'s) of the image ``key``, from the XML file ``key`` in
        ``folder``. A key given twice is refused by :meth:`check`."""
        self._lookup = None
        self._stems.append(key)
        self._folder.append(self._folder_number(folder))
        for box in boxes:
            if isinstance(box, BBox):
                box = (box.xmin, box.ymin, box.xmax, box.ymax)
            self._values.extend(box)
        self._ends.append(len(self._values) // 4)

    def merge(self, other: BoxTable) -> None:
        """Take in a partial table parsed elsewhere (its boxes, counts and skips)."""
        self._lookup = None
        if len(other._folder):
            numbers = np.array([self._folder_number(f) for f in other._folders], dtype=np.uint32)
            self._folder.frombytes(numbers[np.frombuffer(other._folder, dtype=np.uint32)].tobytes())
        extend_ends(self._ends, other._ends, len(self._values) // 4)
        self._stems.extend(other._stems)
        self._values.extend(other._values)
        for name, value in asdict(other.stats).items():
            setattr(self.stats, name, getattr(self.stats, name) + value)
        self.skipped.extend(other.skipped)

    def _file_of(self, row: int) -> str:
        return box_file(self.prefix, self._folders[self._folder[row]], self._stems[row])

    def _sorted(self) -> tuple[np.ndarray, np.ndarray]:
        """The stems' hashes, sorted, and the row of each; a stem twice is an error."""
        if self._lookup is None:
            hashes = np.fromiter(
                map(xxhash.xxh3_64_intdigest, self._stems.encoded()),
                dtype=np.uint64,
                count=len(self._stems),
            )
            rows = np.argsort(hashes, kind="stable")
            hashes = hashes[rows]
            seen: dict[str, int] = {}  # the stems of one run of equal hashes
            for at in np.flatnonzero(hashes[1:] == hashes[:-1]).tolist():
                if at == 0 or hashes[at - 1] != hashes[at]:  # a new run starts
                    seen = {self._stems[int(rows[at])]: int(rows[at])}
                row = int(rows[at + 1])
                first = seen.setdefault(self._stems[row], row)
                if first != row:
                    raise DataError(
                        f"two box files for the image {self._stems[row]}: "
                        f"{self._file_of(first)} and {self._file_of(row)}"
                    )
            self._lookup = hashes, rows
        return self._lookup

    def check(self) -> None:
        """Refuse a stem given twice (naming both XML files)."""
        self._sorted()

    def rows(self, keys: Sequence[str]) -> list[int]:
        """The row of each of ``keys`` (-1 for an image without boxes), found together."""
        if not keys:
            return []
        hashes, rows = self._sorted()
        wanted = np.fromiter(
            (xxhash.xxh3_64_intdigest(k.encode("utf-8", "surrogatepass")) for k in keys),
            dtype=np.uint64,
            count=len(keys),
        )
        at = np.minimum(np.searchsorted(hashes, wanted), len(hashes) - 1)
        hit = hashes[at] == wanted
        found: list[int] = np.where(hit, rows[at], -1).tolist()
        stems = self._stems
        for n in np.flatnonzero(hit).tolist():
            if stems[found[n]] != keys[n]:  # two stems with one hash: look at all of them
                found[n] = self._row_slowly(keys[n], int(at[n]))
        return found

    def row(self, key: str) -> int:
        """The row of ``key`` (-1 for an image without boxes): one image's lookup, a few
        microseconds (:meth:`rows` finds many together)."""
        hashes, _rows = self._sorted()
        h = np.uint64(xxhash.xxh3_64_intdigest(key.encode("utf-8", "surrogatepass")))
        at = int(hashes.searchsorted(h))
        if at == len(hashes) or hashes[at] != h:
            return -1
        return self._row_slowly(key, at)

    def _row_slowly(self, key: str, at: int) -> int:
        """``key``'s row among the stems that share its hash, which start at ``at``."""
        hashes, rows = self._sorted()
        h = hashes[at]
        while at < len(hashes) and hashes[at] == h:
            if self._stems[int(rows[at])] == key:
                return int(rows[at])
            at += 1
        return -1

    def row_values(self, row: int) -> array[float]:
        """Row ``row``'s box values (four per box, in file order); empty for -1."""
        if row < 0:
            return array("d")
        start = self._ends[row - 1] if row else 0
        return self._values[4 * start : 4 * self._ends[row]]

    def values(self, key: str) -> array[float]:
        """The image's box values (four per box, in file order); empty without boxes."""
        return self.row_values(self.row(key))

    def file(self, key: str) -> str:
        """The XML file that gave the image ``key`` its boxes (KeyError when none did)."""
        row = self.row(key)
        if row < 0:
            raise KeyError(key)
        return self._file_of(row)

    def get(self, key: str) -> tuple[BBox, ...]:
        v = self.values(key)
        return tuple(BBox(*v[i : i + 4]) for i in range(0, len(v), 4))

    def keys(self) -> list[str]:
        return list(self._stems)

    def __len__(self) -> int:
        return len(self._stems)

    def csv_bytes(self) -> bytearray:
        """The reference scripts' CSV, in UTF-8: one line per kept box, sorted by image, boxes
        in file order (:func:`boxes.csv_line` of each box: its values printed as the
        records' values were parsed from, so the text is the reference scripts').

        Names are ASCII in ILSVRC2012, so the bytes are the reference scripts'; others are
        written as they are. Made in place (35 MB at full count, never copied whole).
        """
        out = bytearray()
        lines: list[str] = []
        values, ends = self._values, self._ends
        for row in self._stems.sort_order().tolist():
            key = self._stems[row]
            start = ends[row - 1] if row else 0
            for box in range(start, ends[row]):
                xmin, ymin, xmax, ymax = values[4 * box : 4 * box + 4]
                lines.append(boxmod.csv_line(key, (xmin, ymin, xmax, ymax)))
            if len(lines) >= 65536:
                out += ("\n".join(lines) + "\n").encode("utf-8")
                lines.clear()
        if lines:
            out += ("\n".join(lines) + "\n").encode("utf-8")
        return out


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
    table.check()
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
            table.add(key, [boxmod.record_box(b) for b in result.kept], folder)
    return table
