"""The official layout: image-net.org's archives as downloaded, or the reference scripts'
extracted tree (the two may be mixed; for each input the archive wins)."""

from __future__ import annotations

import gzip
import logging
import os
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from ..archive import ArchiveIndex, iter_tar_stream
from ..errors import DataError
from ..labels import Synsets, is_wnid, validation_number
from ..manifest import OutputState
from ..sample import ContainerKind
from ..storage import is_url, open_input
from .boxtable import BoxXmls, archive_prefix, folder_prefix
from .container import Container
from .indexcache import indexed_archive
from .layout import TEST_ARCHIVE, TRAIN_ARCHIVE, VAL_ARCHIVE, SourceLayout, is_image_name, stem
from .source import LabelFile
from .splitindex import SplitIndex

TAR = ContainerKind.TAR
FILE = ContainerKind.FILE


@dataclass(frozen=True)
class OfficialSource:
    """The official archives and their extracted tree, as :class:`~.source.Source`."""

    layout: SourceLayout

    def index(
        self,
        split: str,
        synsets: Synsets,
        validation_labels: tuple[str, ...],
        state: OutputState | None,
    ) -> SplitIndex:
        if split == "train":
            return index_train(self.layout, synsets, state)
        if split == "validation":
            return index_validation(self.layout, synsets, validation_labels, state)
        return index_test(self.layout, state)

    def prepare(self, split: str, state: OutputState | None) -> list[Callable[[], object]]:
        return []  # one archive (or folder) per split: indexed by index() itself

    def box_xmls(self, split: str) -> BoxXmls | None:
        src = self.layout.boxes.get(split)
        if src is None:
            return None
        if is_url(src) or src.is_file():  # in a store: an archive (no trees there)
            return BoxXmls(archive_prefix(src), _iter_box_archive(src))
        if split == "train":
            return BoxXmls(folder_prefix(src), _iter_box_folder(src))
        return BoxXmls(folder_prefix(src), _iter_flat_box_folder(src))

    def label_files(self) -> dict[str, LabelFile]:
        return {}  # the devkit is read beside the build (pipeline.checks)


log = logging.getLogger(__name__)


# --- train ---------------------------------------------------------------------------


def class_of(synsets: Synsets, wnid: str, where: str) -> int:
    if wnid not in synsets:
        what = "an ILSVRC2012 class" if is_wnid(wnid) else "a WordNet ID"
        raise DataError(f"{where}: {wnid!r} is not {what}")
    return synsets.index(wnid)


def without_members(index: ArchiveIndex) -> ArchiveIndex:
    """What a split keeps of its archive's index (where and what the file is): the member
    list is read into the split's own columns, and at full count it is 60 MB."""
    return replace(index, members=())


def finished_index(out: SplitIndex, src: Path) -> SplitIndex:
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
    src = layout.images("train")
    if src is None:
        raise DataError(f"{layout.root}: no training input ({TRAIN_ARCHIVE} or a train/ folder)")
    out = SplitIndex("train")
    if is_url(src) or src.is_file():  # in a store: an archive (no trees there)
        index = indexed_archive(src, nested=True, state=state)
        out.archive = without_members(index)
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
                label = class_of(synsets, stem(m.parent), f"{src}:{m.parent}")
                found = containers[m.parent] = (len(out.containers), label)
                out.containers.append(Container(str(src), TAR, m.parent))
            out.add(os.path.basename(m.name), found[1], m.offset, m.size, found[0])
        empty = [t.name for t in index.nested if t.name not in containers]
        if empty:
            more = f" (and {len(empty) - 1} more class tars)" if len(empty) > 1 else ""
            raise DataError(f"{src}:{empty[0]}: a class tar with no image{more}")
        del index  # its 1.3 million members, not needed while the split is sorted
    else:
        for entry in sorted(os.scandir(src), key=lambda e: e.name):
            if not entry.is_dir():
                out.ignored.append(entry.path)
                continue
            label = class_of(synsets, entry.name, entry.path)
            out.containers.append(Container(entry.path, FILE))
            _add_folder(out, Path(entry.path), label, len(out.containers) - 1)
    return finished_index(out, src)


def _add_folder(out: SplitIndex, folder: Path, label: int, container: int) -> None:
    for entry in os.scandir(folder):
        if entry.is_file() and is_image_name(entry.name):
            out.add(entry.name, label, 0, entry.stat().st_size, container)
        else:
            out.ignored.append(entry.path)


# --- validation ----------------------------------------------------------------------


@dataclass(frozen=True)
class ValidationLabels:
    """The class of a validation image: from its number, or from its folder (checked
    against its number when it has one)."""

    synsets: Synsets
    labels: tuple[str, ...]
    source: str = "the shipped labels"  # where the labels come from, for messages

    def __call__(self, name: str, where: str, folder_wnid: str | None) -> int:
        labels = self.labels
        number = validation_number(stem(name))
        truth = labels[number - 1] if number is not None and 1 <= number <= len(labels) else None
        if truth == "":
            raise DataError(f"{where}: validation image {number} has no row in {self.source}")
        if folder_wnid is None and number is not None and truth is None:
            raise DataError(
                f"{where}: validation image number {number} is out of range "
                f"(there are labels for 1..{len(labels)})"
            )
        if folder_wnid is not None:
            label = class_of(self.synsets, folder_wnid, where)
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
        return class_of(self.synsets, truth, where)


def index_validation(
    layout: SourceLayout,
    synsets: Synsets,
    labels: tuple[str, ...],
    state: OutputState | None,
) -> SplitIndex:
    """Every validation image, labelled by its number (flat) or checked against it (in folders)."""
    src = layout.images("validation")
    if src is None:
        raise DataError(
            f"{layout.root}: no validation input ({VAL_ARCHIVE} or a validation/ or val/ folder)"
        )
    out = SplitIndex("validation")
    label_of = ValidationLabels(synsets, labels)
    if is_url(src) or src.is_file():  # in a store: an archive (no trees there)
        _validation_archive(src, state, label_of, out)
    else:
        _validation_folder(src, label_of, out)
    return finished_index(out, src)


def _validation_archive(
    src: Path, state: OutputState | None, label_of: ValidationLabels, out: SplitIndex
) -> None:
    index = indexed_archive(src, nested=False, state=state)
    out.archive = without_members(index)
    out.containers.append(Container(str(src), TAR))
    for m in index.members:
        if not is_image_name(m.name):
            out.ignored.append(f"{src}:{m.name}")
            continue
        name = os.path.basename(m.name)
        out.add(name, label_of(name, f"{src}:{m.name}", None), m.offset, m.size, 0)


def _validation_folder(src: Path, label_of: ValidationLabels, out: SplitIndex) -> None:
    """A flat folder of numbered images, or one already sorted into synset folders."""
    out.containers.append(Container(str(src), FILE))
    for entry in sorted(os.scandir(src), key=lambda e: e.name):
        if entry.is_dir():
            out.containers.append(Container(entry.path, FILE))
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


# --- test ----------------------------------------------------------------------------


def index_test(layout: SourceLayout, state: OutputState | None) -> SplitIndex:
    """Every test image (no labels: -1), from the flat test archive or a test/ folder."""
    src = layout.images("test")
    if src is None:
        raise DataError(f"{layout.root}: no test input ({TEST_ARCHIVE} or a test/ folder)")
    out = SplitIndex("test")
    if is_url(src) or src.is_file():  # in a store: an archive (no trees there)
        index = indexed_archive(src, nested=False, state=state)
        out.archive = without_members(index)
        out.containers.append(Container(str(src), TAR))
        for m in index.members:
            if is_image_name(m.name):
                out.add(os.path.basename(m.name), -1, m.offset, m.size, 0)
            else:
                out.ignored.append(f"{src}:{m.name}")
    else:
        out.containers.append(Container(str(src), FILE))
        _add_folder(out, src, -1, 0)
    return finished_index(out, src)


# --- box XMLs ------------------------------------------------------------------------


def _iter_box_archive(path: Path) -> Iterator[tuple[str, str, bytes]]:
    """Yield (directory wnid, xml stem, bytes) from the gzip'd box archive, streaming."""
    try:
        with open_input(path) as raw, gzip.GzipFile(fileobj=raw, mode="rb") as f:
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


def _iter_flat_box_folder(path: Path) -> Iterator[tuple[str, str, bytes]]:
    """The validation XMLs of an extracted tree, one folder of ``<stem>.xml`` files."""
    for entry in sorted(os.scandir(path), key=lambda e: e.name):
        if entry.is_file() and entry.name.lower().endswith(".xml"):
            with open(entry.path, "rb") as f:
                yield "", stem(entry.name), f.read()
