"""``OUT/imagefolder/{train,val}/<wnid>/<file>``: one unit per file, labels by synset;
``OUT/imagefolder/test/<file>``: the test images, label -1.

A build in an object store is listed once (``Store.tree`` of the split's folder) and each
image read in one GET.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import DataError
from ...fsutil import read_bytes
from ...labels import load_synsets
from ...loaders.readers.base import RawSample, Want, stem
from ...loaders.readers.remote import join, read_object
from ...loaders.transforms import Box
from ...sources.boxtable import BoxTable
from ...storage import as_location, is_url, open_store, redact
from .writer import FLAT, SPLIT_DIRS

BOXES_CSV = "imagenet_2012_bounding_boxes.csv"


def load_boxes(path: Path | str) -> BoxTable:
    """The box CSV (a file or an object) as a :class:`BoxTable` by file stem (columns: about
    90 bytes an image with boxes, where a dict of tuples cost about 350: every reader process
    of a full-count build holds one); empty when the build wrote none. An image's lines are
    consecutive, as the build writes them (sorted by image)."""
    table = BoxTable()
    data = read_bytes(as_location(path))
    if data is None:
        return table
    key: str | None = None
    boxes: list[Box] = []
    for n, line in enumerate(data.decode("utf-8").splitlines(), 1):
        name, *coords = line.split(",")
        if len(coords) != 4:
            raise DataError(f"{path}: line {n} is not name,xmin,ymin,xmax,ymax")
        x0, y0, x1, y1 = (float(c) for c in coords)
        if stem(name) != key:
            if key is not None:
                table.add(key, boxes)
            key, boxes = stem(name), []
        boxes.append((x0, y0, x1, y1))
    if key is not None:
        table.add(key, boxes)
    try:
        table.check()
    except DataError:
        raise DataError(f"{path}: the lines of an image are not all together") from None
    return table


def _boxes_of(table: BoxTable, key: str) -> tuple[Box, ...]:
    v = table.values(key) if len(table) else ()
    return tuple((v[i], v[i + 1], v[i + 2], v[i + 3]) for i in range(0, len(v), 4))


def _read_file(path: str) -> bytes:
    """A whole file, with the fewest system calls (open, fstat, read, close)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        data = os.read(fd, size)
        while len(data) < size:  # a short read: read on to the end
            more = os.read(fd, size - len(data))
            if not more:
                break
            data += more
        return data
    finally:
        os.close(fd)


def _listdir(where: str) -> list[str]:
    try:
        return os.listdir(where)
    except OSError as exc:
        raise DataError(f"{where}: cannot list ({exc.strerror})") from None


def _list_objects(folder: str) -> dict[str, list[str]]:
    """The objects under the prefix ``folder`` (one listing), as {subfolder: names}: ``""``
    holds those directly in it; deeper ones are not images of the split."""
    store = open_store(folder)
    prefix = store.path(folder).rstrip("/") + "/"
    out: dict[str, list[str]] = {}
    for obj in store.tree(folder):
        relpath = store.path(obj.url)[len(prefix) :]
        sub, _, name = relpath.rpartition("/")
        if "/" not in sub:
            out.setdefault(sub, []).append(name)
    return out


class ImageFolderReader:
    """``OUT/imagefolder/{train,val}/<wnid>/<file>``: one unit per file, labels by synset;
    the test split's files lie in ``OUT/imagefolder/test/`` itself, label -1."""

    format = "imagefolder"

    def __init__(
        self, root: str | Path, split: str, section: dict[str, Any], *, boxes: bool = False
    ) -> None:
        self.split = split
        folder = SPLIT_DIRS[split]
        top_root = str(root)
        self.remote = is_url(top_root)
        self._root = join(top_root, f"imagefolder/{folder}")
        synsets = load_synsets()
        # Files beside the images: the build's (metadata.parquet) and a user's it left.
        skip = {
            join(top_root, name)
            for name in (
                *(entry["file"] for entry in section.get("side_files", ())),
                *section.get("foreign", ()),
            )
        }
        listing = _list_objects(self._root) if self.remote else None
        # Per class folder: its names as fixed-width byte strings and its labels, joined at
        # the end (never a Python object per file of the whole split at once).
        names: list[np.ndarray] = []
        labels: list[np.ndarray] = []
        for entry, info in sorted(section["classes"].items()):
            top, _, wnid = entry.partition("/")
            if top != folder:
                continue
            # A class folder, or (the test split) the split folder itself: no class, -1.
            label = -1 if split in FLAT else synsets.index(wnid)
            where = join(self._root, wnid) if wnid else self._root
            names_here = listing.get(wnid, []) if listing is not None else _listdir(where)
            files = sorted(
                n for n in names_here if not n.startswith(".") and join(where, n) not in skip
            )
            if len(files) != info["count"]:
                raise DataError(f"{where}: {len(files)} files, the manifest says {info['count']}")
            encoded = [(f"{wnid}/{n}" if wnid else n).encode("utf-8") for n in files]
            names.append(np.array(encoded, dtype=np.bytes_))
            labels.append(np.full(len(files), label, dtype=np.int32))
        # Fixed-width byte strings: one buffer, no per-file Python objects to copy into workers.
        self.names = np.concatenate(names) if names else np.array([], dtype=np.bytes_)
        self.labels = np.concatenate(labels) if labels else np.array([], dtype=np.int32)
        self.sizes = np.ones(len(self.names), dtype=np.int64)
        self.boxes = load_boxes(join(top_root, BOXES_CSV)) if boxes else BoxTable()

    def read(
        self, unit: int, start: int, stop: int, want: Want | None = None
    ) -> Iterator[tuple[int, RawSample]]:
        if start > 0 or stop < 1 or (want is not None and not want(0)):
            return
        relpath = self.names[unit].decode("utf-8")
        if self.remote:
            url = join(self._root, relpath)
            data = read_object(url)  # one GET; a one-line error naming the object
            path = redact(url)
        else:
            path = os.path.join(self._root, relpath)
            try:
                data = _read_file(path)
            except OSError as exc:
                raise DataError(f"{path}: cannot read ({exc.strerror})") from None
        key = stem(relpath.rsplit("/", 1)[-1])
        yield 0, RawSample(key, int(self.labels[unit]), data, _boxes_of(self.boxes, key), path)
