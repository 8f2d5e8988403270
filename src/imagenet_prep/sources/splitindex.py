"""A split's images in canonical order (sorted by wnid, then file name) as compact columns,
and the blocks of them that shard jobs carry."""

from __future__ import annotations

from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, overload

from .. import boxes as boxmod
from ..archive import ArchiveIndex
from ..errors import DataError
from ..formats.webdataset.writer import sample_key
from ..labels import Synsets
from ..sample import BBox, ContainerKind, ImageRef
from .container import Container
from .layout import MAX_KEY_BYTES, stem

if TYPE_CHECKING:
    from .boxtable import BoxTable


@dataclass
class SplitIndex:
    """All images of one split in canonical order, stored in compact columns.

    ``where[i]`` is image ``i``'s entry in ``containers``: the file to read (an archive)
    or the folder holding the image, and how the image is stored there. ``labels`` holds
    the class number, -1 for an image without one (the test split).
    """

    split: str
    names: list[str] = field(default_factory=list)
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
        self.labels = array("h", (self.labels[i] for i in order))
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
        return self.containers[self.where[i]].origin(self.names[i])

    def block(self, indices: Sequence[int], synsets: Synsets, boxes: BoxTable | None) -> RefBlock:
        """The images ``indices`` as compact columns, cheap to send to a worker, with their
        boxes from ``boxes`` (this split's table, or None for none)."""
        local: dict[int, int] = {}
        containers: list[Container] = []
        where = array("I")
        names: list[str] = []
        labels = array("h")
        offsets = array("q")
        sizes = array("q")
        box_ends = array("I")
        box_values = array("d")
        lookup = boxes.values if boxes is not None else None
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


@dataclass(frozen=True)
class RefBlock(Sequence[ImageRef]):
    """Some images of one split as columns; indexing makes the :class:`ImageRef`.

    What a shard job carries to its worker: lists and arrays pickle in one C call each,
    where a tuple of ImageRef objects would cost Python work per image on both sides.
    """

    split: str
    containers: tuple[Container, ...]
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
