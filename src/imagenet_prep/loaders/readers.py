"""Raw samples (key, 0-based label, image bytes, boxes) from a build's output, per format.

A reader divides a split into *units*, the pieces it reads sequentially: TFRecord and
WebDataset shards as listed in ``manifest.json``, or single files for ImageFolder (which
allows a full per-epoch shuffle). ``read(unit, start, stop, want)`` yields the unit's
records ``start:stop`` with their index, skipping without reading those ``want`` refuses.
Readers hold only file names and counts, so they pickle cheaply into worker processes.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import numpy as np

from .. import tfrecord_io
from ..errors import DataError
from ..labels import load_synsets
from ..manifest import read_manifest
from .transforms import Box

FORMATS = ("tfrecord", "webdataset", "imagefolder")
SPLITS = ("train", "validation")
BOXES_CSV = "imagenet_2012_bounding_boxes.csv"

Want = Callable[[int], bool]


class RawSample(NamedTuple):
    """One record before decoding."""

    key: str
    label: int
    data: bytes
    boxes: tuple[Box, ...]


class Reader(Protocol):
    """The split of one format, as units of records."""

    format: str
    split: str
    sizes: np.ndarray  # records per unit, in the split's own order

    def read(
        self, unit: int, start: int, stop: int, want: Want | None = None
    ) -> Iterator[tuple[int, RawSample]]: ...


def normalize_split(split: str) -> str:
    """``train`` or ``validation`` (``val`` is accepted for the latter).

    >>> normalize_split("val")
    'validation'
    """
    split = {"val": "validation"}.get(split, split)
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, not {split!r}")
    return split


def detect_format(root: str | Path, manifest: dict[str, Any] | None = None) -> str:
    """The first format the build at ``root`` wrote, in the order its ``--formats`` gave."""
    manifest = manifest if manifest is not None else read_manifest(Path(root))
    written = manifest.get("formats", {})
    for name in manifest.get("options", {}).get("formats", FORMATS):
        if name in written and name in FORMATS:
            return str(name)
    raise DataError(f"{root}: the build wrote none of {', '.join(FORMATS)}")


def open_reader(
    root: str | Path, split: str, format: str | None = None, *, boxes: bool = False
) -> Reader:
    """The reader of ``split`` in the build at ``root``; ``boxes`` loads the training boxes."""
    root = Path(root)
    split = normalize_split(split)
    manifest = read_manifest(root)
    format = format or detect_format(root, manifest)
    if format not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, not {format!r}")
    section = manifest.get("formats", {}).get(format)
    if section is None:
        raise DataError(f"{root}: the build has no {format} output")
    if split not in manifest.get("splits", {}):
        raise DataError(f"{root}: the build has no {split} split")
    if format == "tfrecord":
        return TFRecordReader(root, split, section)
    if format == "webdataset":
        return WebDatasetReader(root, split, section, boxes=boxes)
    return ImageFolderReader(root, split, section, boxes=boxes)


def _shards(root: Path, split: str, section: dict[str, Any]) -> tuple[list[str], np.ndarray]:
    shards = sorted(
        (s for s in section["shards"] if Path(s["file"]).name.startswith(f"{split}-")),
        key=lambda s: str(s["file"]),
    )
    files = [str(root / s["file"]) for s in shards]
    return files, np.array([int(s["records"]) for s in shards], dtype=np.int64)


def _stem(filename: str) -> str:
    return filename.rsplit(".", 1)[0] if "." in filename else filename


class TFRecordReader:
    """``OUT/tfrecord/<split>-*``: the inception Examples, parsed without TensorFlow."""

    format = "tfrecord"

    def __init__(self, root: Path, split: str, section: dict[str, Any]) -> None:
        self.split = split
        self.files, self.sizes = _shards(root, split, section)
        self.label_offset = int(section.get("label_offset", 1))

    def read(
        self, unit: int, start: int, stop: int, want: Want | None = None
    ) -> Iterator[tuple[int, RawSample]]:
        path = self.files[unit]
        index = tfrecord_io.record_index(path)
        if len(index) != self.sizes[unit]:
            raise DataError(f"{path}: {len(index)} records, the manifest says {self.sizes[unit]}")
        fd = os.open(path, os.O_RDONLY)
        try:
            for i in range(start, stop):
                if want is not None and not want(i):
                    continue
                offset, size = index[i]
                # The header's length CRC was checked by record_index.
                data = _pread(fd, size - 16, offset + 12, path)
                crc = _pread(fd, 4, offset + size - 4, path)
                if tfrecord_io.masked_crc32c(data) != int.from_bytes(crc, "little"):
                    raise DataError(f"{path}: record {i} at byte {offset}: data CRC mismatch")
                yield i, self._sample(data, f"{path}: record {i}")
        finally:
            os.close(fd)

    def _sample(self, data: bytes, where: str) -> RawSample:
        try:
            fields = _example_fields(data)
        except (IndexError, ValueError):
            fields = None
        try:
            if fields is None:  # not laid out as expected: the general codec decides
                return self._sample_slow(data)
            return RawSample(
                _stem(fields["image/filename"][0].decode("utf-8")),
                fields["image/class/label"][0] - self.label_offset,
                fields["image/encoded"][0],
                tuple(
                    zip(
                        *(
                            fields[f"image/object/bbox/{k}"]
                            for k in ("xmin", "ymin", "xmax", "ymax")
                        ),
                        strict=True,
                    )
                ),
            )
        except (DataError, ValueError, KeyError, IndexError, TypeError, UnicodeDecodeError) as exc:
            raise DataError(f"{where}: {exc}") from None

    def _sample_slow(self, data: bytes) -> RawSample:
        ex = tfrecord_io.decode_example(data)
        coords = [ex.get(f"image/object/bbox/{k}") for k in ("xmin", "ymin", "xmax", "ymax")]
        boxes = tuple(zip(*(c.values for c in coords if c is not None), strict=True))
        return RawSample(
            _stem(tfrecord_io.first_bytes(ex, "image/filename").decode("utf-8")),
            tfrecord_io.first_int(ex, "image/class/label") - self.label_offset,
            tfrecord_io.first_bytes(ex, "image/encoded"),
            boxes if len(boxes) and len(boxes[0]) == 4 else (),
        )


_WANTED = {
    b"image/encoded": 1,
    b"image/filename": 1,
    b"image/class/label": 3,
    b"image/object/bbox/xmin": 2,
    b"image/object/bbox/ymin": 2,
    b"image/object/bbox/xmax": 2,
    b"image/object/bbox/ymax": 2,
}


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    byte = data[pos]
    if byte < 0x80:
        return byte, pos + 1
    result, shift = byte & 0x7F, 7
    while True:
        pos += 1
        byte = data[pos]
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos + 1
        shift += 7


def _example_fields(data: bytes) -> dict[str, list[Any]] | None:
    """The loader's features of a serialized Example, or None when it is laid out otherwise.

    Reads only what the loader needs and skips the other features' values: about a tenth
    of the general codec's time. Anything unusual (unpacked lists, other wire types)
    returns None, and the general codec (``tfrecord_io.decode_example``) takes over.
    """
    if data[0] != 0x0A:
        return None
    length, pos = _varint(data, 1)
    end = pos + length
    out: dict[str, list[Any]] = {}
    while pos < end:
        if data[pos] != 0x0A:
            return None
        length, pos = _varint(data, pos + 1)
        entry_end = pos + length
        if data[pos] != 0x0A:
            return None
        length, pos = _varint(data, pos + 1)
        key = data[pos : pos + length]
        pos += length
        kind = _WANTED.get(key)
        if kind is not None:
            if data[pos] != 0x12:
                return None
            _, pos = _varint(data, pos + 1)  # the Feature's length
            tag = data[pos]
            length, pos = _varint(data, pos + 1)  # the list's length
            list_end = pos + length
            if tag != kind << 3 | 2:
                return None
            values: list[Any] = []
            while pos < list_end:
                if data[pos] != 0x0A:
                    return None
                length, pos = _varint(data, pos + 1)
                if kind == 1:
                    values.append(data[pos : pos + length])
                elif kind == 2:
                    values.extend(struct.unpack_from(f"<{length // 4}f", data, pos))
                else:
                    stop = pos + length
                    while pos < stop:
                        value, pos = _varint(data, pos)
                        values.append(value - (1 << 64) if value >= 1 << 63 else value)
                    continue
                pos += length
            out[key.decode("ascii")] = values
        pos = entry_end
    return out if len(out) == len(_WANTED) else None


def _octal(field: bytes) -> int:
    if field[:1] == b"\x80":  # GNU base-256 for sizes of 8 GiB and more
        return int.from_bytes(field[1:], "big")
    text = field.split(b"\0", 1)[0].strip()
    return int(text, 8) if text else 0


def _pread(fd: int, size: int, offset: int, where: str) -> bytes:
    """Exactly ``size`` bytes at ``offset`` (read straight into the result: one copy)."""
    data = os.pread(fd, size, offset)
    while len(data) < size:
        more = os.pread(fd, size - len(data), offset + len(data))
        if not more:
            raise DataError(f"{where}: truncated: {size} bytes expected at byte {offset}")
        data += more
    return data


def tar_members(fd: int, where: str) -> Iterator[tuple[str, int, int]]:
    """(name, data offset, size) of each regular file of a tar: ustar, GNU long names, pax.

    Only the 512-byte headers are read, each at its offset; the data is not touched.
    """
    pos = 0
    long_name: str | None = None
    while True:
        header = os.pread(fd, 512, pos)
        if not header.strip(b"\0"):
            return
        if len(header) < 512:
            raise DataError(f"{where}: truncated tar header at byte {pos}")
        try:
            size = _octal(header[124:136])
        except ValueError:
            raise DataError(f"{where}: damaged tar header at byte {pos}") from None
        kind = header[156:157]
        data_at = pos + 512
        pos = data_at + (size + 511) // 512 * 512
        if kind in (b"L", b"x"):
            payload = _pread(fd, size, data_at, where)
            if kind == b"L":
                long_name = payload.rstrip(b"\0").decode("utf-8")
            else:
                for line in payload.decode("utf-8").splitlines():
                    _, _, record = line.partition(" ")
                    field, _, value = record.partition("=")
                    if field == "path":
                        long_name = value
            continue
        if kind not in (b"0", b"\0", b"7"):
            long_name = None
            continue
        name = long_name
        long_name = None
        if name is None:
            name = header[:100].split(b"\0", 1)[0].decode("utf-8")
            if header[257:262] == b"ustar" and header[345] != 0:
                name = header[345:500].split(b"\0", 1)[0].decode("utf-8") + "/" + name
        yield name, data_at, size


class WebDatasetReader:
    """``OUT/webdataset/<split>-*.tar``: samples of ``.cls``, ``.jpg`` and ``.json`` members."""

    format = "webdataset"

    def __init__(
        self, root: Path, split: str, section: dict[str, Any], *, boxes: bool = False
    ) -> None:
        self.split = split
        self.files, self.sizes = _shards(root, split, section)
        self.boxes = boxes

    def read(
        self, unit: int, start: int, stop: int, want: Want | None = None
    ) -> Iterator[tuple[int, RawSample]]:
        path = self.files[unit]
        fd = os.open(path, os.O_RDONLY)
        try:
            samples: list[tuple[str, dict[str, tuple[int, int]]]] = []
            for name, offset, size in tar_members(fd, path):
                key, _, ext = name.rsplit("/", 1)[-1].partition(".")
                if not samples or samples[-1][0] != key:
                    samples.append((key, {}))
                samples[-1][1][ext] = (offset, size)
            if len(samples) != self.sizes[unit]:
                raise DataError(
                    f"{path}: {len(samples)} samples, the manifest says {self.sizes[unit]}"
                )
            for i in range(start, stop):
                if want is None or want(i):
                    yield i, self._sample(fd, path, *samples[i])
        finally:
            os.close(fd)

    def _sample(
        self, fd: int, path: str, key: str, members: dict[str, tuple[int, int]]
    ) -> RawSample:
        def member(ext: str) -> bytes:
            if ext not in members:
                raise DataError(f"{path}: sample {key} has no .{ext}")
            offset, size = members[ext]
            return _pread(fd, size, offset, f"{path}: sample {key}.{ext}")

        try:
            label = int(member("cls"))
            boxes: tuple[Box, ...] = ()
            if self.boxes:
                boxes = tuple(tuple(b) for b in json.loads(member("json"))["boxes"])
        except (ValueError, KeyError, TypeError) as exc:
            raise DataError(f"{path}: sample {key}: unreadable .cls or .json ({exc})") from None
        return RawSample(key, label, member("jpg"), boxes)


def load_boxes(path: Path) -> dict[str, tuple[Box, ...]]:
    """The box CSV as {file stem: boxes}; empty when the build wrote none."""
    out: dict[str, list[Box]] = {}
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError:
        return {}
    for n, line in enumerate(text.splitlines(), 1):
        name, *coords = line.split(",")
        if len(coords) != 4:
            raise DataError(f"{path}: line {n} is not name,xmin,ymin,xmax,ymax")
        x0, y0, x1, y1 = (float(c) for c in coords)
        out.setdefault(_stem(name), []).append((x0, y0, x1, y1))
    return {k: tuple(v) for k, v in out.items()}


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


class ImageFolderReader:
    """``OUT/imagefolder/{train,val}/<wnid>/<file>``: one unit per file, labels by synset."""

    format = "imagefolder"

    def __init__(
        self, root: Path, split: str, section: dict[str, Any], *, boxes: bool = False
    ) -> None:
        self.split = split
        folder = {"train": "train", "validation": "val"}[split]
        self.root = root / "imagefolder" / folder
        self._root = str(self.root)
        synsets = load_synsets()
        names: list[str] = []
        labels: list[int] = []
        for entry, info in sorted(section["classes"].items()):
            top, _, wnid = entry.partition("/")
            if top != folder:
                continue
            try:
                files = sorted(n for n in os.listdir(self.root / wnid) if not n.startswith("."))
            except OSError as exc:
                raise DataError(f"{self.root / wnid}: cannot list ({exc.strerror})") from None
            if len(files) != info["count"]:
                raise DataError(
                    f"{self.root / wnid}: {len(files)} files, the manifest says {info['count']}"
                )
            names.extend(f"{wnid}/{n}" for n in files)
            labels.extend([synsets.index(wnid)] * len(files))
        # Fixed-width byte strings: one buffer, no per-file Python objects to copy into workers.
        self.names = np.array([n.encode("utf-8") for n in names], dtype=np.bytes_)
        self.labels = np.array(labels, dtype=np.int32)
        self.sizes = np.ones(len(names), dtype=np.int64)
        self.boxes = load_boxes(root / BOXES_CSV) if boxes else {}

    def read(
        self, unit: int, start: int, stop: int, want: Want | None = None
    ) -> Iterator[tuple[int, RawSample]]:
        if start > 0 or stop < 1 or (want is not None and not want(0)):
            return
        relpath = self.names[unit].decode("utf-8")
        path = os.path.join(self._root, relpath)
        try:
            data = _read_file(path)
        except OSError as exc:
            raise DataError(f"{path}: cannot read ({exc.strerror})") from None
        key = _stem(relpath.rsplit("/", 1)[1])
        yield 0, RawSample(key, int(self.labels[unit]), data, self.boxes.get(key, ()))
