"""What is in SRC: the archives as downloaded, or the reference scripts' extracted raw-data layout.

``discover`` finds the inputs; ``index_train`` / ``index_validation`` list every image of
a split in the canonical order (sorted by wnid, then file name) as a compact
:class:`SplitIndex`; ``load_boxes`` reads the box XMLs. Nothing is extracted to disk.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import zlib
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, TextIO, overload

from . import boxes as boxmod
from .archive import ArchiveIndex, TarMember, index_tar, iter_tar_stream
from .boxes import Box
from .errors import DataError
from .formats.webdataset.writer import sample_key
from .fsutil import write_bytes_atomic
from .labels import Synsets, is_wnid, load_synsets, validation_number
from .manifest import OutputState
from .sample import BBox, ImageRef

log = logging.getLogger(__name__)

TRAIN_ARCHIVE = "ILSVRC2012_img_train.tar"
VAL_ARCHIVE = "ILSVRC2012_img_val.tar"
BOX_TRAIN_ARCHIVE = "ILSVRC2012_bbox_train_v2.tar.gz"
BOX_VAL_ARCHIVE = "ILSVRC2012_bbox_val_v3.tgz"
DEVKIT_ARCHIVE = "ILSVRC2012_devkit_t12.tar.gz"
DEVKIT_DIR = "ILSVRC2012_devkit_t12"

IMAGE_EXTENSIONS = frozenset({".jpeg", ".jpg", ".png"})
#: A tar header's name field: a WebDataset member ``<key>.<ext>`` must fit in it.
MAX_KEY_BYTES = 100
# 2: the nested tars are kept too, and the archives' ends were checked.
INDEX_VERSION = 2


def is_image_name(name: str) -> bool:
    """Image files are matched by extension in any case.

    >>> [is_image_name(n) for n in ("a.JPEG", "b.jpeg", "c.JpG", "d.png", "e.xml", "JPEG")]
    [True, True, True, True, False, False]
    """
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def stem(name: str) -> str:
    """File name without directory and extension.

    >>> stem("n01440764/n01440764_10026.JPEG")
    'n01440764_10026'
    """
    base = name[name.rfind("/") + 1 :] if os.sep == "/" else os.path.basename(name)
    dot = base.rfind(".")
    if dot > 0 and base[0] != ".":  # the common case, without os.path's general rules
        return base[:dot]
    return os.path.splitext(base)[0]


def _origin(path: str, parent: str, is_dir: bool, name: str) -> str:
    """An image's place for messages: ``archive:nested.tar:name``, ``archive:name`` or a path.

    >>> _origin("train.tar", "n1.tar", False, "n1_1.JPEG"), _origin("val.tar", "", False, "v.JPEG")
    ('train.tar:n1.tar:n1_1.JPEG', 'val.tar:v.JPEG')
    """
    if is_dir:
        return os.path.join(path, name)
    return f"{path}:{parent}:{name}" if parent else f"{path}:{name}"


@dataclass(frozen=True)
class SourceLayout:
    """The inputs found in SRC; each is an archive file, a folder, or absent."""

    root: Path
    train: Path | None
    validation: Path | None
    boxes: Path | None
    devkit: Path | None

    def images(self, split: str) -> Path | None:
        """The input of ``split``'s images (``train`` or ``validation``)."""
        return self.train if split == "train" else self.validation

    def archives(self) -> list[Path]:
        """The input files that are archives, for the manifest."""
        found = [self.train, self.validation, self.boxes, self.devkit]
        return [p for p in found if p is not None and p.is_file()]


def _regular_file(path: Path) -> Path:
    if path.is_symlink() and not path.exists():
        raise DataError(
            f"{path}: cannot read (a symbolic link to {os.readlink(path)}, which is missing)"
        )
    if not path.is_file():
        raise DataError(f"{path}: exists but is not a regular file (archives must be files)")
    return path


def discover(src: Path) -> SourceLayout:
    """Find the inputs in ``src``: per input, the archive as downloaded wins over a folder."""
    if not src.exists():
        raise DataError(f"{src}: source folder does not exist")
    if not src.is_dir():
        raise DataError(f"{src}: source must be a folder holding the download, not a file")

    def pick(archive: str, *folders: str) -> Path | None:
        a = src / archive
        if a.exists() or a.is_symlink():
            return _regular_file(a)
        for folder in folders:
            if (src / folder).is_dir():
                return src / folder
        return None

    return SourceLayout(
        root=src,
        train=pick(TRAIN_ARCHIVE, "train"),
        validation=pick(VAL_ARCHIVE, "validation", "val"),
        boxes=pick(BOX_TRAIN_ARCHIVE, "bounding_boxes"),
        devkit=pick(DEVKIT_ARCHIVE, DEVKIT_DIR),
    )


@dataclass
class SplitIndex:
    """All images of one split in canonical order, stored in compact columns.

    ``containers[i]`` is the file to read (an archive) or the folder holding the image;
    ``parents[i]`` the nested tar the image is in (``""`` when none).
    """

    split: str
    names: list[str] = field(default_factory=list)
    labels: array[int] = field(default_factory=lambda: array("H"))
    offsets: array[int] = field(default_factory=lambda: array("q"))
    sizes: array[int] = field(default_factory=lambda: array("q"))
    where: array[int] = field(default_factory=lambda: array("I"))
    containers: list[tuple[str, str, bool]] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    archive: ArchiveIndex | None = None

    def __len__(self) -> int:
        return len(self.names)

    def add(self, name: str, label: int, offset: int, size: int, container: int) -> None:
        self.names.append(name)
        self.labels.append(label)
        self.offsets.append(offset)
        self.sizes.append(size)
        self.where.append(container)

    def total_bytes(self) -> int:
        return sum(self.sizes)

    def sort(self) -> None:
        """Put images in canonical order (wnid, then file name) and refuse names the outputs
        cannot hold: a stem twice, what the box CSV cannot hold, two stems of one WebDataset key."""
        order = sorted(range(len(self.names)), key=lambda i: (self.labels[i], self.names[i]))
        self.names = [self.names[i] for i in order]
        self.labels = array("H", (self.labels[i] for i in order))
        self.offsets = array("q", (self.offsets[i] for i in order))
        self.sizes = array("q", (self.sizes[i] for i in order))
        self.where = array("I", (self.where[i] for i in order))
        # One search over all names: a name holds no NUL (tar and file systems end names there).
        text = "\0".join(self.names)
        bad = boxmod.CSV_UNSAFE.search(text)
        if bad is not None:
            i = text.count("\0", 0, bad.start())
            boxmod.check_csv_name(self.names[i], self.origin(i))
        self._check_name_bytes(text)
        seen: dict[str, int] = {}
        renamed: list[int] = []  # the images whose WebDataset key is not their stem
        for i, name in enumerate(self.names):
            key = stem(name)
            if key in seen:
                j = seen[key]
                raise DataError(
                    f"{self.origin(i)}: the {self.split} split has two images named {key} "
                    f"(also {self.origin(j)})"
                )
            seen[key] = i
            if "." in key or "\\" in key:
                renamed.append(i)
        keys: dict[str, int] = {}
        for i in renamed:
            key = sample_key(stem(self.names[i]))
            other = seen.get(key, keys.get(key))
            if other is not None:
                raise DataError(
                    f"{self.origin(i)}: its WebDataset key {key} (the name's stem with . and \\ "
                    f"as _) is also that of {self.origin(other)}; rename one of them"
                )
            keys[key] = i

    def _check_name_bytes(self, text: str) -> None:
        """Refuse names that are not UTF-8 (the records and the JSON carry them as UTF-8) or
        too long for a WebDataset member (``<key>.json`` in a tar header's 100 bytes)."""
        # A name at least as long as its key: in ASCII (a byte a character, one C pass to
        # tell) only names over the limit need a closer look, and usually none is.
        limit = MAX_KEY_BYTES - len(b".json")
        if text.isascii() and max(map(len, self.names), default=0) <= limit:
            return
        for i in range(len(self.names)):
            name = self.names[i]
            try:
                key = sample_key(stem(name)).encode("utf-8")
            except UnicodeEncodeError:
                raise DataError(
                    f"{boxmod.one_line(self.origin(i))}: the file name is not UTF-8 text, which "
                    "the records and the WebDataset JSON need (rename the file)"
                ) from None
            if len(key) > limit:
                raise DataError(
                    f"{self.origin(i)}: the file name is too long ({len(key)} bytes before the "
                    f"extension; a WebDataset member's name holds {limit})"
                )

    def origin(self, i: int) -> str:
        """Where image ``i`` comes from, for messages: ``archive:nested.tar:name`` or a path."""
        return _origin(*self.containers[self.where[i]], self.names[i])

    def block(self, indices: Sequence[int], synsets: Synsets, boxes: BoxTable | None) -> RefBlock:
        """The images ``indices`` as compact columns, cheap to send to a worker."""
        local: dict[int, int] = {}
        containers: list[tuple[str, str, bool]] = []
        where = array("I")
        names: list[str] = []
        labels = array("H")
        offsets = array("q")
        sizes = array("q")
        box_ends = array("I")
        box_values = array("d")
        lookup = boxes.values if boxes is not None and self.split == "train" else None
        for i in indices:
            c = self.where[i]
            if c not in local:
                local[c] = len(containers)
                containers.append(self.containers[c])
            where.append(local[c])
            name = self.names[i]
            names.append(name)
            labels.append(self.labels[i])
            offsets.append(self.offsets[i])
            sizes.append(self.sizes[i])
            if lookup is not None:
                box_values.extend(lookup(stem(name)))
            box_ends.append(len(box_values) // 4)
        wnids = {label: synsets.wnids[label] for label in set(labels)}
        return RefBlock(
            self.split,
            tuple(containers),
            where,
            names,
            labels,
            wnids,
            offsets,
            sizes,
            box_ends,
            box_values,
        )


@dataclass(frozen=True)
class RefBlock(Sequence[ImageRef]):
    """Some images of one split as columns; indexing makes the :class:`ImageRef`.

    What a shard job carries to its worker: lists and arrays pickle in one C call each,
    where a tuple of ImageRef objects would cost Python work per image on both sides.
    """

    split: str
    containers: tuple[tuple[str, str, bool], ...]  # (file or folder, nested tar, is folder)
    where: array[int]  # per image: its entry in ``containers``
    names: list[str]
    labels: array[int]
    wnids: dict[int, str]
    offsets: array[int]
    sizes: array[int]
    box_ends: array[int]  # per image: the end of its boxes in ``box_values``, in boxes
    box_values: array[float]  # xmin, ymin, xmax, ymax of every box, image after image

    def __len__(self) -> int:
        return len(self.names)

    @overload
    def __getitem__(self, i: int) -> ImageRef: ...

    @overload
    def __getitem__(self, i: slice) -> Sequence[ImageRef]: ...

    def __getitem__(self, i: int | slice) -> ImageRef | Sequence[ImageRef]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self.names)
        path, parent, is_dir = self.containers[self.where[i]]
        name = self.names[i]
        label = self.labels[i]
        origin = _origin(path, parent, is_dir, name)
        return ImageRef(
            split=self.split,
            key=stem(name),
            filename=name,
            wnid=self.wnids[label],
            label=label,
            path=origin if is_dir else path,
            offset=self.offsets[i],
            size=self.sizes[i],
            origin=origin,
            standalone=is_dir,
            boxes=self._boxes(i),
        )

    def __iter__(self) -> Iterator[ImageRef]:
        return (self[i] for i in range(len(self.names)))

    def _boxes(self, i: int) -> tuple[BBox, ...]:
        start = self.box_ends[i - 1] if i else 0
        end = self.box_ends[i]
        if start == end:
            return ()
        v = self.box_values
        return tuple(BBox(*v[4 * b : 4 * b + 4]) for b in range(start, end))


# --- archive indexes, cached in the output folder -------------------------------------


def _index_cache_path(state: OutputState, archive: Path) -> Path:
    return state.index_file(archive.name)


def _read_head(f: TextIO, archive: Path) -> dict[str, Any] | None:
    """The first line of a kept index, if it was made from ``archive`` as it is now."""
    try:
        st = archive.stat()
        head = json.loads(f.readline())
    except (OSError, ValueError):
        return None
    if (
        not isinstance(head, dict)
        or head.get("version") != INDEX_VERSION
        or head.get("size") != st.st_size
        or head.get("mtime_ns") != st.st_mtime_ns
    ):
        return None
    return head


def _cached_head(cache: Path, archive: Path) -> dict[str, Any] | None:
    try:
        with open(cache, encoding="utf-8") as f:
            return _read_head(f, archive)
    except OSError:
        return None


def _load_cached_index(cache: Path, archive: Path) -> ArchiveIndex | None:
    try:
        with open(cache, encoding="utf-8") as f:
            head = _read_head(f, archive)
            if head is None:
                return None
            members = []
            for line in f:
                offset, size, parent, name = line.rstrip("\n").split("\t", 3)
                members.append(
                    TarMember(name=name, offset=int(offset), size=int(size), parent=parent)
                )
    except (OSError, ValueError):
        return None
    if len(members) != head.get("count"):
        return None
    try:
        nested = tuple(
            TarMember(name=str(name), offset=int(offset), size=int(size))
            for offset, size, name in head.get("nested", ())
        )
    except (TypeError, ValueError):
        return None
    return ArchiveIndex(
        path=str(archive),
        size=head["size"],
        mtime_ns=head["mtime_ns"],
        md5=head.get("md5"),
        members=tuple(members),
        nested=nested,
    )


def cached_md5(state: OutputState | None, archive: Path) -> str | None:
    """The MD5 an earlier run kept with ``archive``'s index, if the index still describes it."""
    if state is None:
        return None
    head = _cached_head(_index_cache_path(state, archive), archive)
    md5 = head.get("md5") if head is not None else None
    return md5 if isinstance(md5, str) else None


def record_md5(state: OutputState | None, archive: Path, md5: str) -> None:
    """Keep ``md5`` with ``archive``'s index in OUT, so that a rerun need not hash it again."""
    if state is None:
        return
    cache = _index_cache_path(state, archive)
    if _cached_head(cache, archive) is None:
        return
    first, newline, rest = cache.read_bytes().partition(b"\n")
    head = json.loads(first)
    head["md5"] = md5
    write_bytes_atomic(cache, json.dumps(head).encode("utf-8") + newline + rest)


def _save_index(cache: Path, index: ArchiveIndex) -> None:
    head = {
        "version": INDEX_VERSION,
        "archive": os.path.basename(index.path),
        "size": index.size,
        "mtime_ns": index.mtime_ns,
        "md5": index.md5,
        "count": len(index.members),
        "nested": [[m.offset, m.size, m.name] for m in index.nested],
    }
    lines = [json.dumps(head)]
    lines.extend(f"{m.offset}\t{m.size}\t{m.parent}\t{m.name}" for m in index.members)
    write_bytes_atomic(cache, ("\n".join(lines) + "\n").encode("utf-8"))


def indexed_archive(archive: Path, *, nested: bool, state: OutputState | None) -> ArchiveIndex:
    """Index ``archive`` (its headers), or reuse the index kept in OUT (with its MD5, if kept)."""
    cache = _index_cache_path(state, archive) if state is not None else None
    if cache is not None:
        cached = _load_cached_index(cache, archive)
        if cached is not None:
            log.info("reusing the index of %s (%d members)", archive.name, len(cached.members))
            return cached
    log.info("indexing %s", archive)
    index = index_tar(archive, nested=nested)
    if cache is not None:
        _save_index(cache, index)
    return index


# --- train ---------------------------------------------------------------------------


def _class_of(synsets: Synsets, wnid: str, where: str) -> int:
    if wnid not in synsets:
        what = "an ILSVRC2012 class" if is_wnid(wnid) else "a WordNet ID"
        raise DataError(f"{where}: {wnid!r} is not {what}")
    return synsets.index(wnid)


def _finished_index(out: SplitIndex, src: Path) -> SplitIndex:
    """A split's index once every input is read: what was ignored said, sorted; none is an
    error."""
    if out.ignored:
        log.warning(
            "%s: ignored %d entries that are not images (e.g. %s)",
            out.split,
            len(out.ignored),
            out.ignored[0],
        )
    if not out.names:
        word = "training" if out.split == "train" else out.split
        raise DataError(f"{src}: no {word} images found")
    out.sort()
    return out


def index_train(layout: SourceLayout, synsets: Synsets, state: OutputState | None) -> SplitIndex:
    """Every training image: from the nested archive, or ``train/<wnid>/*``."""
    src = layout.train
    if src is None:
        raise DataError(f"{layout.root}: no training input ({TRAIN_ARCHIVE} or a train/ folder)")
    out = SplitIndex("train")
    if src.is_file():
        index = indexed_archive(src, nested=True, state=state)
        out.archive = index
        containers: dict[str, tuple[int, int]] = {}  # nested tar -> (container, label)
        for m in index.members:
            if not m.parent:
                out.ignored.append(f"{src}:{m.name}")
                continue
            if not is_image_name(m.name):
                out.ignored.append(f"{src}:{m.parent}:{m.name}")
                continue
            found = containers.get(m.parent)
            if found is None:
                label = _class_of(synsets, stem(m.parent), f"{src}:{m.parent}")
                found = containers[m.parent] = (len(out.containers), label)
                out.containers.append((str(src), m.parent, False))
            out.add(os.path.basename(m.name), found[1], m.offset, m.size, found[0])
        empty = [t.name for t in index.nested if t.name not in containers]
        if empty:
            more = f" (and {len(empty) - 1} more class tars)" if len(empty) > 1 else ""
            raise DataError(f"{src}:{empty[0]}: a class tar with no image{more}")
    else:
        for entry in sorted(os.scandir(src), key=lambda e: e.name):
            if not entry.is_dir():
                out.ignored.append(entry.path)
                continue
            label = _class_of(synsets, entry.name, entry.path)
            out.containers.append((entry.path, "", True))
            _add_folder(out, Path(entry.path), label, len(out.containers) - 1)
    return _finished_index(out, src)


def _add_folder(out: SplitIndex, folder: Path, label: int, container: int) -> None:
    for entry in os.scandir(folder):
        if entry.is_file() and is_image_name(entry.name):
            out.add(entry.name, label, 0, entry.stat().st_size, container)
        else:
            out.ignored.append(entry.path)


# --- validation ----------------------------------------------------------------------


@dataclass(frozen=True)
class _ValidationLabels:
    """The class of a validation image: from its number, or from its folder (checked
    against its number when it has one)."""

    synsets: Synsets
    labels: tuple[str, ...]

    def __call__(self, name: str, where: str, folder_wnid: str | None) -> int:
        labels = self.labels
        number = validation_number(stem(name))
        truth = labels[number - 1] if number is not None and 1 <= number <= len(labels) else None
        if folder_wnid is None and number is not None and truth is None:
            raise DataError(
                f"{where}: validation image number {number} is out of range "
                f"(there are labels for 1..{len(labels)})"
            )
        if folder_wnid is not None:
            label = _class_of(self.synsets, folder_wnid, where)
            if truth is not None and truth != folder_wnid:
                raise DataError(
                    f"{where}: validation image {number} is in folder {folder_wnid} but its "
                    f"ground-truth label is {truth}"
                )
            return label
        if truth is None:
            raise DataError(
                f"{where}: cannot tell the class of this validation image (expected a name "
                "like ILSVRC2012_val_00000001.JPEG, or synset folders)"
            )
        return _class_of(self.synsets, truth, where)


def index_validation(
    layout: SourceLayout,
    synsets: Synsets,
    labels: tuple[str, ...],
    state: OutputState | None,
) -> SplitIndex:
    """Every validation image, labelled by its number (flat) or checked against it (in folders)."""
    src = layout.validation
    if src is None:
        raise DataError(
            f"{layout.root}: no validation input ({VAL_ARCHIVE} or a validation/ or val/ folder)"
        )
    out = SplitIndex("validation")
    label_of = _ValidationLabels(synsets, labels)
    if src.is_file():
        _validation_archive(src, state, label_of, out)
    else:
        _validation_folder(src, label_of, out)
    return _finished_index(out, src)


def _validation_archive(
    src: Path, state: OutputState | None, label_of: _ValidationLabels, out: SplitIndex
) -> None:
    index = indexed_archive(src, nested=False, state=state)
    out.archive = index
    out.containers.append((str(src), "", False))
    for m in index.members:
        if not is_image_name(m.name):
            out.ignored.append(f"{src}:{m.name}")
            continue
        name = os.path.basename(m.name)
        out.add(name, label_of(name, f"{src}:{m.name}", None), m.offset, m.size, 0)


def _validation_folder(src: Path, label_of: _ValidationLabels, out: SplitIndex) -> None:
    """A flat folder of numbered images, or one already sorted into synset folders."""
    out.containers.append((str(src), "", True))
    for entry in sorted(os.scandir(src), key=lambda e: e.name):
        if entry.is_dir():
            out.containers.append((entry.path, "", True))
            container = len(out.containers) - 1
            for sub in os.scandir(entry.path):
                if sub.is_file() and is_image_name(sub.name):
                    label = label_of(sub.name, sub.path, entry.name)
                    out.add(sub.name, label, 0, sub.stat().st_size, container)
                else:
                    out.ignored.append(sub.path)
        elif entry.is_file() and is_image_name(entry.name):
            label = label_of(entry.name, entry.path, None)
            out.add(entry.name, label, 0, entry.stat().st_size, 0)
        else:
            out.ignored.append(entry.path)


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


def index_train_detached(layout: SourceLayout, state: OutputState | None) -> SplitIndex:
    """Picklable entry point: :func:`index_train` without the archive's member list.

    The columns are all a build needs; leaving the members out keeps the result small
    to send back from the process that did the indexing.
    """
    out = index_train(layout, load_synsets(), state)
    if out.archive is not None:
        out.archive = replace(out.archive, members=())
    return out
