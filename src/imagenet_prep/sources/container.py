"""Where a split's images are kept (:class:`Container`) and reading one image's bytes by
reference (:func:`read`), whatever the kind of container: a tar, a folder, a zip, a tar.gz;
:class:`OpenFiles` keeps what a task reads from open."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..archive import read_at
from ..errors import DataError
from ..sample import ContainerKind, ImageRef
from ..storage import is_url
from ..ziparchive import DEFLATED, SLACK, STORED, Pread, read_member

if TYPE_CHECKING:
    from ..gzindex import GzIndex
    from ..storage import RangeReader

__all__ = ["Container", "ContainerKind", "OpenFiles", "read"]


@dataclass(frozen=True, slots=True)
class Container:
    """A file or folder that holds images of one split, and how they are stored in it.

    ``path`` is the archive to open, or the folder holding the image files (kind FILE);
    ``parent``, for messages, the nested tar the images are in, or a zip's folder that holds
    them (``""`` when none); ``index`` the file of seek points of a GZIP container;
    ``source`` the file messages name when ``path`` is a copy of it made by the build (a
    tar.gz unpacked into OUT's bookkeeping folder).
    """

    path: str
    kind: ContainerKind
    parent: str = ""
    index: str = ""
    source: str = ""

    def origin(self, name: str) -> str:
        """An image's place for messages: ``archive:nested.tar:name``, ``archive:name`` or a
        path.

        >>> Container("train.tar", ContainerKind.TAR, "n1.tar").origin("n1_1.JPEG")
        'train.tar:n1.tar:n1_1.JPEG'
        >>> Container("k.zip", ContainerKind.ZIP_DEFLATED, "ILSVRC/Data").origin("v.JPEG")
        'k.zip:ILSVRC/Data/v.JPEG'
        >>> Container("/d/val", ContainerKind.FILE).origin("v.JPEG")
        '/d/val/v.JPEG'
        """
        if self.kind is ContainerKind.FILE:
            return os.path.join(self.path, name)
        path = self.source or self.path
        if self.parent and self.kind is not ContainerKind.TAR:
            return f"{path}:{self.parent}/{name}"
        return f"{path}:{self.parent}:{name}" if self.parent else f"{path}:{name}"

    def file(self, name: str) -> str:
        """The file to open to read the image ``name``: the archive, or the image itself."""
        return os.path.join(self.path, name) if self.kind is ContainerKind.FILE else self.path


class OpenFiles:
    """Source files kept open for a task's shards: an archive is opened once, not per shard
    (and a tar.gz's seek points are loaded once)."""

    def __init__(self) -> None:
        self._fds: dict[str, int] = {}
        self._gz: dict[str, tuple[GzIndex, int]] = {}
        self._readers: dict[str, RangeReader] = {}  # objects in a store, by URL

    def reader(self, url: str) -> RangeReader:
        """The positional reader of the object ``url`` for this task."""
        found = self._readers.get(url)
        if found is None:
            from ..storage import RangeReader, open_store

            found = self._readers[url] = RangeReader(open_store(url), url)
        return found

    def prefetch(self, refs: Iterable[ImageRef]) -> None:
        """Read the members of ``refs`` that live in an object store ahead, by archive, with
        neighbours coalesced into one request (:meth:`Store.read_ranges`); :func:`read` then
        takes them from memory. Local files are left to ``pread``, one image at a time."""
        wanted: dict[str, list[tuple[int, int]]] = {}
        for ref in refs:
            if not is_url(ref.path):
                continue
            if ref.kind is ContainerKind.GZIP:
                raise DataError(
                    f"{ref.origin}: reading tar.gz archives from an object store is not "
                    "supported yet (tars, zips and image files are)"
                )
            end = ref.offset + ref.size
            if ref.kind is ContainerKind.ZIP_STORED or ref.kind is ContainerKind.ZIP_DEFLATED:
                end += 30 + SLACK  # the member's local header, read with its data
            wanted.setdefault(ref.path, []).append((ref.offset, end))
        for url, ranges in wanted.items():
            self.reader(url).prefetch(ranges)

    def fd(self, path: str, origin: str) -> int:
        fd = self._fds.get(path)
        if fd is None:
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError as exc:
                raise DataError(f"{origin}: cannot read ({exc.strerror})") from None
            if len(self._fds) >= 64:  # an extracted tree: one file per image
                self._close_fds()
            self._fds[path] = fd
        return fd

    def gz(self, ref: ImageRef) -> tuple[GzIndex, int]:
        """The seek points of ``ref``'s tar.gz, and its open window file."""
        found = self._gz.get(ref.index)
        if found is None:
            from ..gzindex import load_seek_points

            index = load_seek_points(ref.path, ref.index)
            found = self._gz[ref.index] = (index, self.fd(index.windows, ref.origin))
        return found

    def _close_fds(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()
        self._gz.clear()

    def close(self) -> None:
        self._close_fds()

    def __enter__(self) -> OpenFiles:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read(ref: ImageRef, files: OpenFiles) -> bytes:
    """The bytes of the image ``ref``, read from the files ``files`` keeps open.

    A short read, or a zip or gzip member that is damaged, is a
    :class:`~..errors.DataError` naming ``ref.origin``; so is a source that cannot be opened.
    """
    kind = ref.kind
    if is_url(ref.path):  # an object in a store: a positional reader, fed ahead
        source: int | Pread = files.reader(ref.path).pread
    else:
        source = files.fd(ref.path, ref.origin)
    if kind is ContainerKind.TAR or kind is ContainerKind.FILE:
        return read_at(source, ref.offset, ref.size, ref.origin)
    if kind is ContainerKind.GZIP:
        from ..gzindex import read_range

        assert isinstance(source, int)  # refused in a store by OpenFiles.prefetch
        index, windows = files.gz(ref)
        return read_range(source, windows, index, ref.offset, ref.size, ref.origin)
    method = STORED if kind is ContainerKind.ZIP_STORED else DEFLATED
    return read_member(source, ref.offset, ref.size, method, ref.origin)
