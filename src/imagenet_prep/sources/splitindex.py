"""A split's images in canonical order (sorted by wnid, then file name) as compact columns,
and the blocks of them that shard jobs carry."""

from __future__ import annotations

from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, overload

import numpy as np
import xxhash

from .. import boxes as boxmod
from ..archive import ArchiveIndex
from ..columnfile import BYTES, read_columns, write_columns
from ..errors import DataError
from ..formats.webdataset.writer import sample_key
from ..labels import Synsets
from ..namecolumn import NameColumn
from ..sample import BBox, ContainerKind, ImageRef
from .container import Container
from .layout import MAX_KEY_BYTES, stem

if TYPE_CHECKING:
    from .boxtable import BoxTable


def _taken(code: str, column: array[int], order: array[int]) -> array[int]:
    """``column`` reordered by ``order`` (numpy's gather over the array's buffer)."""
    out = array(code)
    if len(column):
        values = np.frombuffer(column, dtype=np.dtype(code))
        out.frombytes(values[np.frombuffer(order, dtype=np.int64)].tobytes())
    return out


@dataclass
class SplitIndex:
    """All images of one split in canonical order, stored in compact columns.

    ``where[i]`` is image ``i``'s entry in ``containers``: the file to read (an archive)
    or the folder holding the image, and how the image is stored there. ``labels`` holds
    the class number, -1 for an image without one (the test split).
    """

    split: str
    names: NameColumn = field(default_factory=NameColumn)
    labels: array[int] = field(default_factory=lambda: array("h"))
    offsets: array[int] = field(default_factory=lambda: array("q"))
    sizes: array[int] = field(default_factory=lambda: array("q"))
    where: array[int] = field(default_factory=lambda: array("I"))
    containers: list[Container] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    archive: ArchiveIndex | None = None
    # What indexing asked of an object store (0 for local files): requests, bytes read.
    requests: int = 0
    bytes_fetched: int = 0
    # The local file that holds the columns while they are handed to another process.
    spilled: str | None = None

    def __len__(self) -> int:
        return len(self.names)

    def add(self, name: str, label: int, offset: int, size: int, container: int) -> None:
        self.names.append(name)
        self.labels.append(label)
        self.offsets.append(offset)
        self.sizes.append(size)
        self.where.append(container)

    def spill(self, path: Path) -> SplitIndex:
        """Write the columns to the local file ``path``; this index without them, to send to
        another process of this machine, which takes them back with :meth:`unspilled`.

        Pickled, a 1.28-million-image split's columns (65 MB) are copied twice on each side
        (a column's bytes, the pickle); written and read back, once (:mod:`columnfile`).
        """
        data, ends = self.names.buffers()
        write_columns(path, (data, ends, self.labels, self.offsets, self.sizes, self.where))
        empty = SplitIndex(self.split)
        return replace(
            self,
            names=empty.names,
            labels=empty.labels,
            offsets=empty.offsets,
            sizes=empty.sizes,
            where=empty.where,
            spilled=str(path),
        )

    def unspilled(self) -> SplitIndex:
        """This index with its columns read back from the file :meth:`spill` wrote (which is
        deleted); itself when it was not spilled."""
        if self.spilled is None:
            return self
        data, ends, labels, offsets, sizes, where = read_columns(
            self.spilled, BYTES + "QhqqI", "a split's index handed over"
        )
        return replace(
            self,
            names=NameColumn.from_buffers(data, ends),
            labels=labels,
            offsets=offsets,
            sizes=sizes,
            where=where,
            spilled=None,
        )

    def total_bytes(self) -> int:
        return sum(self.sizes)

    def sort(self) -> None:
        """Put images in canonical order (wnid, then file name) and refuse names the outputs
        cannot hold: a stem twice, what the box CSV cannot hold, two stems of one WebDataset key.

        Columns in, columns out: the order is found per class (a class's names at a time as
        objects), and the stems are compared by their 64-bit hashes in one array, so that the
        memory of a 1.28-million-image split stays within a few times its columns.
        """
        order = self._canonical_order()
        self.names = self.names.take(order)
        self.labels = _taken("h", self.labels, order)
        self.offsets = _taken("q", self.offsets, order)
        self.sizes = _taken("q", self.sizes, order)
        self.where = _taken("I", self.where, order)
        bad = self.names.find(boxmod.CSV_UNSAFE)
        if bad is not None:
            boxmod.check_csv_name(self.names[bad], self.origin(bad))
        self._check_name_bytes()
        self._check_stems()

    def _canonical_order(self) -> array[int]:
        """Positions in canonical order: by label (stable), then by name within a label."""
        labels = np.frombuffer(self.labels, dtype=np.int16) if len(self.labels) else None
        if labels is None:
            return array("q")
        by_label = np.argsort(labels, kind="stable")
        ordered = labels[by_label]
        bounds = np.flatnonzero(ordered[1:] != ordered[:-1]) + 1
        pieces = []
        for group in np.split(by_label, bounds):
            names = [self.names[int(i)] for i in group]
            pieces.append(group[sorted(range(len(names)), key=names.__getitem__)])
        out = array("q")
        out.frombytes(np.concatenate(pieces).astype(np.int64).tobytes())
        return out

    def _check_stems(self) -> None:
        """A stem twice in the split, or a WebDataset key (a stem with ``.`` and ``\\`` as
        ``_``) that is also another image's: refused, naming both images."""
        n = len(self.names)
        hashes = np.fromiter(
            (
                xxhash.xxh3_64_intdigest(stem(name).encode("utf-8", "surrogatepass"))
                for name in self.names
            ),
            dtype=np.uint64,
            count=n,
        )
        by_hash = np.argsort(hashes, kind="stable")
        ordered = hashes[by_hash]
        first: tuple[int, int] | None = None  # (later, earlier) of the first repeat in order
        for k in np.flatnonzero(ordered[1:] == ordered[:-1]).tolist():
            a, b = int(by_hash[k]), int(by_hash[k + 1])
            if stem(self.names[a]) != stem(self.names[b]):
                continue  # two stems, one hash
            earlier, later = self._first_two_with_stem(by_hash, ordered, k, stem(self.names[a]))
            if first is None or later < first[0]:
                first = (later, earlier)
        if first is not None:
            i, j = first
            raise DataError(
                f"{self.origin(i)}: the {self.split} split has two images named "
                f"{stem(self.names[i])} (also {self.origin(j)})"
            )
        keys: dict[str, int] = {}  # the renamed images' keys (few: names with . or \\)
        for i, name in enumerate(self.names):
            key = stem(name)
            if "." not in key and "\\" not in key:
                continue
            key = sample_key(key)
            other = self._with_stem(key, by_hash, ordered)
            if other is None:
                other = keys.get(key)
            if other is not None:
                raise DataError(
                    f"{self.origin(i)}: its WebDataset key {key} (the name's stem with . and "
                    f"\\ as _) is also that of {self.origin(other)}; rename one of them"
                )
            keys[key] = i

    def _with_stem(self, key: str, by_hash: np.ndarray, ordered: np.ndarray) -> int | None:
        """An image whose stem is ``key``, found by its hash; None when there is none."""
        h = np.uint64(xxhash.xxh3_64_intdigest(key.encode("utf-8", "surrogatepass")))
        at = int(np.searchsorted(ordered, h))
        while at < len(ordered) and ordered[at] == h:
            other = int(by_hash[at])
            if stem(self.names[other]) == key:
                return other
            at += 1
        return None

    def _first_two_with_stem(
        self, by_hash: np.ndarray, ordered: np.ndarray, k: int, key: str
    ) -> tuple[int, int]:
        """The two smallest positions whose stem is ``key`` (among the equal hashes around
        ``k``): the image a walk in order meets first, and the one it finds repeating it."""
        lo = int(np.searchsorted(ordered, ordered[k], side="left"))
        hi = int(np.searchsorted(ordered, ordered[k], side="right"))
        same = sorted(int(i) for i in by_hash[lo:hi] if stem(self.names[int(i)]) == key)
        return same[0], same[1]

    def _check_name_bytes(self) -> None:
        """Refuse names that are not UTF-8 (the records and the JSON carry them as UTF-8) or
        too long for a WebDataset member (``<key>.json`` in a tar header's 100 bytes)."""
        # A name at least as long as its key: in ASCII (a byte a character, one C pass to
        # tell) only names over the limit need a closer look, and usually none is.
        limit = MAX_KEY_BYTES - len(b".json")
        if self.names.is_ascii() and self.names.max_length() <= limit:
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
        return self.containers[self.where[i]].origin(self.names[i])

    def block(self, indices: Sequence[int], synsets: Synsets, boxes: BoxTable | None) -> RefBlock:
        """The images ``indices`` as compact columns, cheap to send to a worker, with their
        boxes from ``boxes`` (this split's table, or None for none)."""
        local: dict[int, int] = {}
        containers: list[Container] = []
        where = array("I")
        names = self.names.take(indices)  # byte copies, no name decoded
        labels = array("h")
        offsets = array("q")
        sizes = array("q")
        box_ends = array("I")
        box_values = array("d")
        # The boxes are looked up a slice at a time: a WebDataset shard of small images holds
        # 433,000, whose stems as objects all at once would cost 30 MB.
        for first in range(0, len(indices), _LOOKUP):
            part = indices[first : first + _LOOKUP]
            rows = boxes.rows([stem(self.names[i]) for i in part]) if boxes is not None else None
            for n, i in enumerate(part):
                c = self.where[i]
                if c not in local:
                    local[c] = len(containers)
                    containers.append(self.containers[c])
                where.append(local[c])
                labels.append(self.labels[i])
                offsets.append(self.offsets[i])
                sizes.append(self.sizes[i])
                if rows is not None and boxes is not None and rows[n] >= 0:
                    box_values.extend(boxes.row_values(rows[n]))
                box_ends.append(len(box_values) // 4)
        wnids = {label: synsets.wnids[label] if label >= 0 else "" for label in set(labels)}
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


#: Images whose boxes :meth:`SplitIndex.block` looks up together.
_LOOKUP = 16384
#: The columns of a :class:`RefBlock` in its file, in order (see :mod:`columnfile`).
_BLOCK_CODES = BYTES + "QIhqqId"


@dataclass(frozen=True)
class RefBlock(Sequence[ImageRef]):
    """Some images of one split as columns; indexing makes the :class:`ImageRef`.

    What a shard job carries to its worker: arrays pickle in one C call each, where a tuple
    of ImageRef objects would cost Python work per image on both sides. A large block goes to
    a worker of this machine in a local file (:meth:`spill`, :meth:`loaded`), so that the jobs
    waiting for a worker cost the build no memory.
    """

    split: str
    containers: tuple[Container, ...]
    where: array[int]  # per image: its entry in ``containers``
    names: NameColumn
    labels: array[int]
    wnids: dict[int, str]
    offsets: array[int]
    sizes: array[int]
    box_ends: array[int]  # per image: the end of its boxes in ``box_values``, in boxes
    box_values: array[float]  # xmin, ymin, xmax, ymax of every box, image after image
    # The local file holding the columns while the block waits for its worker, and the
    # number of images in it.
    spilled: str | None = None
    spilled_images: int = 0

    def __len__(self) -> int:
        return self.spilled_images if self.spilled is not None else len(self.names)

    def spill(self, path: Path) -> RefBlock:
        """Write the columns to the local file ``path``; this block without them, to send to
        a process of this machine, which takes them back with :meth:`loaded`."""
        data, ends = self.names.buffers()
        columns = (self.where, self.labels, self.offsets, self.sizes)
        write_columns(path, (data, ends, *columns, self.box_ends, self.box_values))
        return replace(
            self,
            where=array("I"),
            names=NameColumn(),
            labels=array("h"),
            offsets=array("q"),
            sizes=array("q"),
            box_ends=array("I"),
            box_values=array("d"),
            spilled=str(path),
            spilled_images=len(self),
        )

    def loaded(self) -> RefBlock:
        """This block with its columns read back from the file :meth:`spill` wrote (which is
        deleted); itself when it was not spilled."""
        if self.spilled is None:
            return self
        data, ends, where, labels, offsets, sizes, box_ends, box_values = read_columns(
            self.spilled, _BLOCK_CODES, "a shard job's images handed over"
        )
        return replace(
            self,
            where=where,
            names=NameColumn.from_buffers(data, ends),
            labels=labels,
            offsets=offsets,
            sizes=sizes,
            box_ends=box_ends,
            box_values=box_values,
            spilled=None,
            spilled_images=0,
        )

    @overload
    def __getitem__(self, i: int) -> ImageRef: ...

    @overload
    def __getitem__(self, i: slice) -> Sequence[ImageRef]: ...

    def __getitem__(self, i: int | slice) -> ImageRef | Sequence[ImageRef]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self.names)
        container = self.containers[self.where[i]]
        name = self.names[i]
        label = self.labels[i]
        origin = container.origin(name)
        return ImageRef(
            split=self.split,
            key=stem(name),
            filename=name,
            wnid=self.wnids[label],
            label=label,
            path=origin if container.kind is ContainerKind.FILE else container.path,
            offset=self.offsets[i],
            size=self.sizes[i],
            origin=origin,
            kind=container.kind,
            index=container.index,
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
