"""Hugging Face's imagenet-1k (``ILSVRC/imagenet-1k``): its gzip-compressed tars (layout
``hf``), read by offset through seek points kept in OUT, or its Parquet files (``hf-parquet``),
whose images are spilled once into the bookkeeping folder and read by offset from there.

The Hub renames every image ``<original stem>_<wnid>.JPEG`` (a test image keeps its name): the
label comes from the suffix (a validation image's must agree with the shipped labels) and the
records carry the original name, so they equal those built from the official archives. The
Parquet files carry a 0-based ``label`` column too, which must agree with the suffix. The Hub
has no boxes and no devkit.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from ..archive import TarMember
from ..errors import DataError, one_line
from ..fsutil import atomic_open
from ..labels import Synsets, is_wnid
from ..manifest import OutputState
from ..sample import ContainerKind
from ..storage import is_url, open_input
from .boxtable import BoxXmls
from .container import Container
from .layout import SourceLayout, is_image_name
from .official import ValidationLabels, class_of, finished_index
from .source import LabelFile
from .splitindex import SplitIndex

log = logging.getLogger(__name__)

#: The version of a spill's record: another is made anew.
SPILL_VERSION = 1
_IMAGE_COLUMN = "image"
_LABEL_COLUMN = "label"


def original_name(name: str) -> tuple[str, str | None]:
    """The Hub's name without its ``_<wnid>`` suffix, and the suffix (None when it has none).

    >>> original_name("n01440764_10026_n01440764.JPEG")
    ('n01440764_10026.JPEG', 'n01440764')
    >>> original_name("ILSVRC2012_test_00000001.JPEG")
    ('ILSVRC2012_test_00000001.JPEG', None)
    """
    base, dot, ext = name.rpartition(".")
    if not dot:
        base, ext = name, ""
    stem, underscore, suffix = base.rpartition("_")
    if not underscore or not is_wnid(suffix):
        return name, None
    return f"{stem}.{ext}" if dot else stem, suffix


@dataclass(frozen=True)
class _Labeler:
    """The label of one renamed image of a split, from its suffix (checked)."""

    split: str
    synsets: Synsets
    validation: ValidationLabels

    def __call__(self, name: str, where: str) -> tuple[str, int]:
        original, suffix = original_name(name)
        if self.split == "test":
            return original, -1
        if suffix is None:
            stem = name.rpartition(".")[0] or name
            tail = stem.rpartition("_")[2]
            raise DataError(
                f"{where}: the name's suffix {tail!r} is not a WordNet ID (the Hub names an image "
                "<original stem>_<wnid>.JPEG)"
            )
        if self.split == "validation":
            return original, self.validation(original, where, suffix)
        return original, class_of(self.synsets, suffix, where)


# --- the tar.gz archives -------------------------------------------------------------


@dataclass(frozen=True)
class HfTarSource:
    """Hugging Face's ``*_images*.tar.gz`` archives as a :class:`~.source.Source`: each is
    indexed once into gzip seek points (kept in OUT) and read by offset."""

    layout: SourceLayout
    _unpack: list[bool] = field(default_factory=list, compare=False, repr=False)

    def index(
        self,
        split: str,
        synsets: Synsets,
        validation_labels: tuple[str, ...],
        state: OutputState | None,
    ) -> SplitIndex:
        from ..gzindex import index_gzip_tar

        out = SplitIndex(split)
        label_of = _Labeler(split, synsets, ValidationLabels(synsets, validation_labels))
        if state is None:
            raise DataError(
                f"{self.layout.root}: tar.gz archives need an output folder to keep their "
                "seek points"
            )
        files = _split_files(self.layout, split)
        for path in files:
            index_file = state.seek_points_file(path.name)
            log.debug("indexing %s (or reusing its seek points from an earlier run)", path)
            _gz, members = index_gzip_tar(path, index_file)
            container = len(out.containers)
            out.containers.append(_container(state, path, index_file, members))
            for m in members:
                where = f"{path}:{m.name}"
                if m.parent or "/" in m.name.strip("/") or not is_image_name(m.name):
                    if is_image_name(m.name):
                        raise DataError(f"{where}: an image in a folder (the Hub's are flat)")
                    out.ignored.append(where)
                    continue
                name, label = label_of(os.path.basename(m.name), where)
                out.add(name, label, m.offset, m.size, container)
        return finished_index(out, files[0].parent)

    def prepare(self, split: str, state: OutputState | None) -> list[Callable[[], object]]:
        """Index each archive of the split that has no kept index, one task each: the index
        pass inflates the whole archive, and the Hub's five training archives can run at once.

        When OUT's disk holds the archives unpacked as well as the outputs (free space at least
        :data:`UNPACK_FACTOR` times all the archives), the pass also writes each one unpacked
        into the bookkeeping folder, and shard tasks read from those plain tars, about 70 times
        faster per image than through the seek points (removed when the build is finished).
        """
        from ..gzindex import load_seek_points

        if state is None:
            return []
        if not self._unpack:  # decided once for all splits
            self._unpack.append(_fits_unpacked(self.layout, state))
        unpack = self._unpack[0]
        tasks: list[Callable[[], object]] = []
        for path in self.layout.files(split):
            index_file = state.seek_points_file(path.name)
            try:
                load_seek_points(str(path), str(index_file))
            except DataError:
                target = _unpacked(state, path) if unpack else None
                tasks.append(partial(_index_archive, path, index_file, target))
        return tasks

    def box_xmls(self, split: str) -> BoxXmls | None:
        return None  # the Hub has no boxes

    def label_files(self) -> dict[str, LabelFile]:
        return {}


#: Unpack the tar.gz archives when OUT's free space is at least this many times theirs: the
#: unpacked copies, about the archives' size (JPEG bytes do not compress), and the outputs.
UNPACK_FACTOR = 2.2


def _fits_unpacked(layout: SourceLayout, state: OutputState) -> bool:
    total = sum(p.stat().st_size for files in layout.parts.values() for p in files)
    folder = state.unpacked_file("")
    folder.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(folder).free
    fits = free >= UNPACK_FACTOR * total
    log.info(
        "%s the tar.gz archives (%.1f GB) into %s: %.1f GB free%s",
        "unpacking" if fits else "not unpacking",
        total / 1e9,
        folder,
        free / 1e9,
        "" if fits else f" (reading through seek points, slower; {UNPACK_FACTOR}x is needed)",
    )
    return fits


def _unpacked(state: OutputState, archive: Path) -> Path:
    """Where the build keeps ``archive`` unpacked (``train_images_0.tar``)."""
    return state.unpacked_file(archive.name.removesuffix(".gz"))


def _index_archive(path: Path, index_file: Path, unpack: Path | None) -> None:
    """Index one archive into the file index() reuses, and unpack it when asked (a task of
    :meth:`HfTarSource.prepare`)."""
    from ..gzindex import index_gzip_tar

    index_gzip_tar(path, index_file, unpack=unpack)


def _container(
    state: OutputState, path: Path, index_file: Path, members: list[TarMember]
) -> Container:
    """The archive unpacked by the index pass when its copy is whole, else the tar.gz read
    through its seek points."""
    unpacked = _unpacked(state, path)
    end = max((m.offset + m.size for m in members), default=0)
    try:
        whole = unpacked.stat().st_size >= end
    except OSError:
        whole = False
    if whole:
        return Container(str(unpacked), ContainerKind.TAR, source=str(path))
    return Container(str(path), ContainerKind.GZIP, index=str(index_file))


def _split_files(layout: SourceLayout, split: str) -> list[Path]:
    files = layout.files(split)
    if not files:
        raise DataError(f"{layout.root}: no {split} files in the {layout.name} layout")
    return files


# --- the Parquet files ---------------------------------------------------------------


@dataclass(frozen=True)
class HfParquetSource:
    """Hugging Face's Parquet files as a :class:`~.source.Source`: each row group is read
    once and its images spilled into one file per split in OUT's bookkeeping folder (removed
    when the build is finished), which shard tasks read by offset."""

    layout: SourceLayout

    def index(
        self,
        split: str,
        synsets: Synsets,
        validation_labels: tuple[str, ...],
        state: OutputState | None,
    ) -> SplitIndex:
        if state is None:
            raise DataError(f"{self.layout.root}: Parquet files need an output folder to spill to")
        files = _split_files(self.layout, split)
        spill = state.spill_file(f"{split}.bin")
        record = state.spill_file(f"{split}.json")
        identity = [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in files]
        kept = _kept_spill(record, spill, identity)
        if kept is None:
            label_of = _Labeler(split, synsets, ValidationLabels(synsets, validation_labels))
            kept = _spill(files, split, label_of, synsets, spill, record, identity)
        names, labels, offsets, sizes = kept
        out = SplitIndex(split)
        out.containers.append(Container(str(spill), ContainerKind.TAR))
        for name, label, offset, size in zip(names, labels, offsets, sizes, strict=True):
            out.add(name, label, offset, size, 0)
        return finished_index(out, files[0].parent)

    def prepare(self, split: str, state: OutputState | None) -> list[Callable[[], object]]:
        return []  # the row groups are read once, into one spill file per split, by index()

    def box_xmls(self, split: str) -> BoxXmls | None:
        return None

    def label_files(self) -> dict[str, LabelFile]:
        return {}


_Spilled = tuple[list[str], list[int], list[int], list[int]]


def _kept_spill(record: Path, spill: Path, identity: list[list[object]]) -> _Spilled | None:
    """What an earlier run spilled, if it spilled the same files whole."""
    try:
        kept = json.loads(record.read_text(encoding="utf-8"))
        if (
            kept.get("version") != SPILL_VERSION
            or kept.get("files") != identity
            or kept.get("bytes") != spill.stat().st_size
        ):
            return None
        return kept["names"], kept["labels"], kept["offsets"], kept["sizes"]
    except (OSError, ValueError, KeyError, AttributeError):
        return None


def _spill(
    files: list[Path],
    split: str,
    label_of: _Labeler,
    synsets: Synsets,
    spill: Path,
    record: Path,
    identity: list[list[object]],
) -> _Spilled:
    """Read every row group of ``files`` once, appending each image's bytes to ``spill``."""
    names: list[str] = []
    labels: list[int] = []
    offsets: list[int] = []
    sizes: list[int] = []
    spill.parent.mkdir(parents=True, exist_ok=True)
    log.info("reading the %s Parquet files (%d) into %s", split, len(files), spill)
    with atomic_open(spill) as f:
        at = 0
        for path in files:
            for row, (data, name, label) in enumerate(_rows(path)):
                where = f"{path}:row {row}"
                if name is None:
                    name = f"{split}_{len(names)}.JPEG"  # no name: cannot equal the official
                    suffixed = label
                    if split != "test" and not 0 <= label < len(synsets.wnids):
                        raise DataError(
                            f"{where}: label {label} is not a class number "
                            f"(0..{len(synsets.wnids) - 1})"
                        )
                else:
                    name, suffixed = label_of(name, f"{path}:{name}")
                if split != "test" and suffixed != label:
                    want = synsets.wnids[label] if 0 <= label < len(synsets.wnids) else label
                    raise DataError(
                        f"{where}: label {label} ({want}) but the name says "
                        f"{synsets.wnids[suffixed]}"
                    )
                f.write(data)
                names.append(name)
                labels.append(label if split != "test" else -1)
                offsets.append(at)
                sizes.append(len(data))
                at += len(data)
    record.write_text(
        json.dumps(
            {
                "version": SPILL_VERSION,
                "files": identity,
                "bytes": at,
                "names": names,
                "labels": labels,
                "offsets": offsets,
                "sizes": sizes,
            }
        ),
        encoding="utf-8",
    )
    return names, labels, offsets, sizes


def _rows(path: Path) -> Iterator[tuple[bytes, str | None, int]]:
    """(image bytes, file name or None, label) of each row, one row group at a time."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        # In an object store: the footer, then each row group's columns, by ranged reads.
        parquet = pq.ParquetFile(open_input(path) if is_url(path) else path)
        names = parquet.schema_arrow.names
        for column in (_IMAGE_COLUMN, _LABEL_COLUMN):
            if column not in names:
                raise DataError(
                    f"{path}: no {column!r} column (the Hub's imagenet-1k Parquet files have "
                    f"'image' and 'label'; this has {', '.join(names)})"
                )
        for group in range(parquet.num_row_groups):
            table = parquet.read_row_group(group, columns=[_IMAGE_COLUMN, _LABEL_COLUMN])
            images = table.column(_IMAGE_COLUMN).combine_chunks()
            data = images.field("bytes").to_pylist()
            paths = images.field("path").to_pylist()
            labels = table.column(_LABEL_COLUMN).to_pylist()
            for image, name, label in zip(data, paths, labels, strict=True):
                if image is None or label is None:
                    raise DataError(f"{path}: a row without image bytes or label")
                yield image, name or None, int(label)
    except (OSError, ValueError, pa.ArrowException, KeyError) as exc:
        raise DataError(f"{path}: cannot read this Parquet file ({one_line(exc)[:200]})") from None
