"""Kaggle's layout ("ImageNet Object Localization Challenge"): the zip as downloaded, read in
place (members by offset, from its central directory), or the same files extracted.

What it holds, under ``ILSVRC/Data/CLS-LOC/``: ``train/<wnid>/<wnid>_<n>.JPEG``, a flat
``val/`` and ``test/``; the box XMLs under ``ILSVRC/Annotations/CLS-LOC/{train/<wnid>,val}/``
(the official box archives' XMLs); and beside them ``LOC_synset_mapping.txt`` and
``LOC_val_solution.csv``, the validation labels, which :mod:`..labels` checks against the
shipped ones. An image anywhere else is an error: it would be left out.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DataError
from ..labels import Synsets
from ..manifest import OutputState
from ..sample import ContainerKind
from ..storage import is_url
from ..ziparchive import DEFLATED, Pread, ZipIndex, index_zip
from .boxtable import BoxXmls, archive_prefix, folder_prefix
from .container import Container
from .layout import (
    KAGGLE_ANNOTATIONS,
    KAGGLE_DATA,
    KAGGLE_SPLIT_DIRS,
    KAGGLE_SYNSET_MAPPING,
    KAGGLE_VAL_SOLUTION,
    SourceLayout,
    is_image_name,
    stem,
)
from .official import ValidationLabels, class_of, finished_index
from .source import LabelFile
from .splitindex import SplitIndex

_FOLDERS = {
    "train": "train/<wnid>/",
    "validation": "val/ (flat, or in synset folders)",
    "test": "test/ (flat)",
}
_EXPECTED = f"{KAGGLE_DATA}/train/<wnid>/, {KAGGLE_DATA}/val/ or {KAGGLE_DATA}/test/"


@dataclass(frozen=True)
class _Entry:
    """A file of one split's folder: its path below that folder, where its bytes are, and
    the container kind and folder (for messages) they are read with."""

    parts: list[str]
    size: int
    offset: int
    kind: ContainerKind
    folder: str  # the container's path (a tree) or the zip folder holding the file


@dataclass(frozen=True)
class KaggleSource:
    """Kaggle's zip (layout ``kaggle``) or its extracted tree (``kaggle-tree``) as a
    :class:`~.source.Source`."""

    layout: SourceLayout
    _zip: list[ZipIndex] = field(default_factory=list, compare=False, repr=False)

    @property
    def is_zip(self) -> bool:
        return self.layout.name == "kaggle"

    def zip_index(self) -> ZipIndex:
        """The zip's central directory, read once per process; every image it holds checked
        to lie in an expected folder."""
        if not self._zip:
            index = index_zip(self._zip_path())
            _check_zip_folders(index)
            self._zip.append(index)
        return self._zip[0]

    def _zip_path(self) -> Path:
        return next(iter(self.layout.splits.values()))

    def __getstate__(self) -> dict[str, object]:
        return {"layout": self.layout}  # the zip's index is read again where it is needed

    def __setstate__(self, state: dict[str, object]) -> None:
        object.__setattr__(self, "layout", state["layout"])
        object.__setattr__(self, "_zip", [])

    # --- images ---------------------------------------------------------------------

    def index(
        self,
        split: str,
        synsets: Synsets,
        validation_labels: tuple[str, ...],
        state: OutputState | None,
    ) -> SplitIndex:
        del state  # nothing to keep: the zip's central directory is read in a moment
        out = SplitIndex(split)
        where = self._split_input(split)
        label_of = ValidationLabels(synsets, validation_labels, KAGGLE_VAL_SOLUTION)
        made: dict[tuple[str, ContainerKind], Container] = {}  # per folder and kind
        ids: dict[Container, int] = {}  # those holding images: their place in out.containers
        for entry in self._entries(split):
            name = entry.parts[-1]
            key = (entry.folder, entry.kind)
            container = made.get(key)
            if container is None:
                container = made[key] = self._container(entry)
            origin = container.origin(name)
            if not is_image_name(name):
                out.ignored.append(origin)
                continue
            depth = len(entry.parts)
            if split == "train" and depth == 2:
                label = class_of(synsets, entry.parts[0], origin)
            elif split == "validation" and depth in (1, 2):
                label = label_of(name, origin, entry.parts[0] if depth == 2 else None)
            elif split == "test" and depth == 1:
                label = -1
            else:
                raise DataError(
                    f"{origin}: an image outside the expected folders (the {split} images are "
                    f"in {KAGGLE_DATA}/{_FOLDERS[split]})"
                )
            at = ids.get(container)
            if at is None:
                at = ids[container] = len(out.containers)
                out.containers.append(container)
            out.add(name, label, entry.offset, entry.size, at)
        return finished_index(out, where)

    def _split_input(self, split: str) -> Path:
        path = self.layout.images(split)
        if path is None:
            raise DataError(
                f"{self.layout.root}: no {split} images ({KAGGLE_DATA}/{KAGGLE_SPLIT_DIRS[split]}/)"
            )
        return path

    def _container(self, entry: _Entry) -> Container:
        if entry.kind is ContainerKind.FILE:
            return Container(entry.folder, ContainerKind.FILE)
        return Container(str(self._zip_path()), entry.kind, entry.folder)

    def _entries(self, split: str) -> Iterator[_Entry]:
        """The files below the split's folder, in a stable order."""
        top = f"{KAGGLE_DATA}/{KAGGLE_SPLIT_DIRS[split]}/"
        if self.is_zip:
            index = self.zip_index()
            for i, name in enumerate(index.names):
                if not name.startswith(top):
                    continue
                parts = name[len(top) :].split("/")
                kind = (
                    ContainerKind.ZIP_DEFLATED
                    if index.methods[i] == DEFLATED
                    else ContainerKind.ZIP_STORED
                )
                folder = name.rpartition("/")[0]
                yield _Entry(parts, index.compressed[i], index.header_offsets[i], kind, folder)
            return
        root = self._split_input(split)
        if split == "train":  # an image beside the split folders would be left out
            _check_tree_folders(root.parent)
        yield from _walk(str(root), [])

    # --- boxes and labels -----------------------------------------------------------

    def prepare(self, split: str, state: OutputState | None) -> list[Callable[[], object]]:
        return []  # one archive (or folder) per split: indexed by index() itself

    def box_xmls(self, split: str) -> BoxXmls | None:
        if split not in ("train", "validation"):
            return None
        folder = f"{KAGGLE_ANNOTATIONS}/{KAGGLE_SPLIT_DIRS[split]}"
        depth = 2 if split == "train" else 1  # train/<wnid>/<stem>.xml, val/<stem>.xml
        if self.is_zip:
            index = self.zip_index()
            top = folder + "/"
            members = [
                i
                for i, name in enumerate(index.names)
                if name.startswith(top) and name.lower().endswith(".xml")
            ]
            if not members:
                return None
            members.sort(key=lambda i: index.header_offsets[i])  # one pass through the file
            return BoxXmls(
                archive_prefix(self._zip_path(), folder),
                self._zip_xmls(index, members, len(top), depth),
            )
        path = self.layout.boxes.get(split)
        if path is None:
            return None
        return BoxXmls(folder_prefix(path), _tree_xmls(path, depth))

    def _zip_xmls(
        self, index: ZipIndex, members: list[int], skip: int, depth: int
    ) -> Iterator[tuple[str, str, bytes]]:
        with _zip_reader(index) as (pread, prefetch):
            for start in range(0, len(members), XML_BATCH):
                batch = members[start : start + XML_BATCH]
                prefetch([index.span(i) for i in batch])  # in a store: neighbours together
                for i in batch:
                    parts = index.names[i][skip:].split("/")
                    if len(parts) != depth:
                        continue  # not where the split's XMLs are: not one of them
                    folder = parts[0] if depth == 2 else ""
                    yield folder, stem(parts[-1]), index.read(pread, i)

    def label_files(self) -> dict[str, LabelFile]:
        found: dict[str, LabelFile] = {}
        if self.is_zip:
            index = self.zip_index()
            with _zip_reader(index) as (pread, _prefetch):
                for name in (KAGGLE_SYNSET_MAPPING, KAGGLE_VAL_SOLUTION):
                    i = index.find(name)
                    if i is not None:
                        found[name] = LabelFile(index.origin(i), index.read(pread, i))
            return found
        for name, path in self.layout.labels.items():
            found[name] = LabelFile(str(path), path.read_bytes())
        return found


def _check_zip_folders(index: ZipIndex) -> None:
    """Every image of the zip lies in a split's folder; one elsewhere would be left out."""
    tops = tuple(f"{KAGGLE_DATA}/{d}/" for d in KAGGLE_SPLIT_DIRS.values())
    for i, name in enumerate(index.names):
        if is_image_name(name) and not name.startswith(tops):
            raise DataError(
                f"{index.origin(i)}: an image outside the expected folders ({_EXPECTED})"
            )


def _check_tree_folders(data: Path) -> None:
    for entry in os.scandir(data):
        if entry.is_file() and is_image_name(entry.name):
            raise DataError(f"{entry.path}: an image outside the expected folders ({_EXPECTED})")


def _walk(folder: str, parts: list[str]) -> Iterator[_Entry]:
    """The files below ``folder``, sorted, with their path below the split's folder."""
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if entry.is_dir():
            yield from _walk(entry.path, [*parts, entry.name])
        else:
            size = entry.stat().st_size
            yield _Entry([*parts, entry.name], size, 0, ContainerKind.FILE, folder)


def _tree_xmls(path: Path, depth: int) -> Iterator[tuple[str, str, bytes]]:
    for entry in sorted(os.scandir(path), key=lambda e: e.name):
        if depth == 2 and entry.is_dir():
            yield from ((entry.name, key, data) for _, key, data in _tree_xmls(Path(entry.path), 1))
        elif depth == 1 and entry.is_file() and entry.name.lower().endswith(".xml"):
            with open(entry.path, "rb") as f:
                yield "", stem(entry.name), f.read()


#: Box XMLs of Kaggle's zip in an object store are fetched this many at a time (their members
#: lie together in the zip, so a batch costs a few requests).
XML_BATCH = 4096


Prefetch = Callable[[list[tuple[int, int]]], object]


@contextlib.contextmanager
def _zip_reader(index: ZipIndex) -> Iterator[tuple[int | Pread, Prefetch]]:
    """The zip open for positional reads, and how to ask for byte ranges ahead: a descriptor
    (nothing to ask ahead), or a reader of the object in a store."""
    if is_url(index.path):
        from ..storage import RangeReader, open_store

        reader = RangeReader(open_store(index.path), index.path)
        yield reader.pread, reader.prefetch
        return
    fd = os.open(index.path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        yield fd, _nothing_ahead
    finally:
        os.close(fd)


def _nothing_ahead(_ranges: list[tuple[int, int]]) -> None:
    """A local file is read where it lies: nothing to fetch ahead."""
