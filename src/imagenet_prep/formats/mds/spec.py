"""MosaicML MDS, version 2: the byte layout of a shard and of ``index.json``, as
``streaming.MDSWriter`` writes them (``streaming/base/format/mds/writer.py`` and
``base/writer.py``), written and read here without the library.

A shard is ``samples`` (uint32), ``samples + 1`` sample offsets from the file's start
(uint32; the last is the file's size), the writer's configuration as JSON (sorted keys),
then the samples. A sample is the sizes of its variable-size columns (uint32 each), then
every column's bytes, columns in name order. All integers are little-endian. Encodings
used here: ``int`` (int64), ``str`` (UTF-8), ``json`` (``json.dumps``) and ``jpeg``
(the JPEG file's bytes, as ``JPEG.encode`` keeps a file it can read).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from ...errors import DataError

VERSION = 2
INDEX = "index.json"

#: The columns of a sample and their MDS encodings; ``x``/``y`` as ``StreamingImageNet`` reads.
COLUMNS: Mapping[str, str] = {
    "x": "jpeg",
    "y": "int",
    "key": "str",
    "wnid": "str",
    "text": "str",
    "filename": "str",
    "width": "int",
    "height": "int",
    "boxes": "json",
}
NAMES = tuple(sorted(COLUMNS))  # MDSWriter orders the columns by name
ENCODINGS = tuple(COLUMNS[name] for name in NAMES)
SIZES = tuple(8 if encoding == "int" else None for encoding in ENCODINGS)
_VARIABLE = sum(size is None for size in SIZES)
_X = NAMES.index("x")

#: Offsets are uint32: a shard's last byte must lie below 4 GiB. This bound, which every
#: shard keeps (they are cut by image count), is the ``size_limit`` the index records.
MAX_SHARD_BYTES = (1 << 32) - 1


def config() -> dict[str, Any]:
    """``MDSWriter.get_config()``: what each shard's index entry and header repeat."""
    return {
        "column_encodings": list(ENCODINGS),
        "column_names": list(NAMES),
        "column_sizes": list(SIZES),
        "compression": None,
        "format": "mds",
        "hashes": [],
        "size_limit": MAX_SHARD_BYTES,
        "version": VERSION,
    }


CONFIG = json.dumps(config(), sort_keys=True).encode("utf-8")


def shard_file(index: int) -> str:
    """The name MDSWriter gives its shard ``index``.

    >>> shard_file(7)
    'shard.00007.mds'
    """
    return f"shard.{index:05d}.mds"


def shard_number(name: str) -> int:
    """The index of a shard from its file name (the inverse of :func:`shard_file`).

    >>> shard_number("mds/train/shard.00007.mds")
    7
    """
    return int(name.rsplit("/", 1)[-1].split(".")[1])


def header_bytes(n: int) -> int:
    """Where the first sample of a shard of ``n`` samples starts.

    >>> header_bytes(0) == 8 + len(CONFIG)
    True
    """
    return 4 + 4 * (n + 1) + len(CONFIG)


def encode_sample(values: Mapping[str, object], image: bytes) -> tuple[bytes, bytes, bytes]:
    """A sample as three parts: its head and the columns before ``x``, the image bytes
    (``x``, passed on uncopied), and the columns after it. ``values`` holds all but ``x``."""
    encoded = {
        name: _encode(encoding, values[name])
        for name, encoding in zip(NAMES, ENCODINGS, strict=True)
        if name != "x"
    }
    encoded["x"] = image
    sizes = [len(encoded[name]) for name, size in zip(NAMES, SIZES, strict=True) if size is None]
    head = struct.pack(f"<{len(sizes)}I", *sizes)
    return (
        head + b"".join(encoded[name] for name in NAMES[:_X]),
        image,
        b"".join(encoded[name] for name in NAMES[_X + 1 :]),
    )


def _encode(encoding: str, value: object) -> bytes:
    if encoding == "int":
        return struct.pack("<q", value)
    if encoding == "str":
        return str(value).encode("utf-8")
    return json.dumps(value).encode("utf-8")  # json, as streaming's JSON encoding writes it


def shard_header(sizes: Iterable[int]) -> bytes:
    """The bytes before a shard's samples, given every sample's size in order."""
    lengths = np.fromiter(sizes, dtype=np.int64)
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    offsets += header_bytes(len(lengths))
    return struct.pack("<I", len(lengths)) + offsets.astype("<u4").tobytes() + CONFIG


def sample_offsets(view: memoryview, where: str, size: int | None = None) -> np.ndarray:
    """The ``samples + 1`` offsets of a shard, checked to lie in order within the file.

    ``view`` is the whole shard, or its first bytes (through the offsets) when ``size``, the
    shard's size, is given: verify reads a shard front to back rather than mapping it."""
    if size is None:
        size = len(view)
    if size < 4:
        raise DataError(f"{where}: {size} bytes, too short for an MDS shard")
    (n,) = struct.unpack_from("<I", view)
    end = 4 + 4 * (n + 1)
    if size < end:
        raise DataError(f"{where}: {n} samples, but the file ends inside their offsets")
    offsets = np.frombuffer(view, dtype="<u4", count=n + 1, offset=4).astype(np.int64)
    if offsets[0] < end or offsets[-1] != size or np.any(np.diff(offsets) < 0):
        raise DataError(f"{where}: sample offsets out of order or not ending at the file's end")
    return offsets


def columns(data: memoryview, where: str) -> dict[str, memoryview]:
    """A sample's columns by name, as views into ``data``."""
    head = 4 * _VARIABLE
    if len(data) < head:
        raise DataError(f"{where}: {len(data)} bytes, too short for a sample")
    variable = iter(struct.unpack_from(f"<{_VARIABLE}I", data))
    out: dict[str, memoryview] = {}
    pos = head
    for name, size in zip(NAMES, SIZES, strict=True):
        n = size if size is not None else next(variable)
        if pos + n > len(data):
            raise DataError(f"{where}: column {name} runs past the sample's end")
        out[name] = data[pos : pos + n]
        pos += n
    if pos != len(data):
        raise DataError(f"{where}: {len(data) - pos} bytes after the last column")
    return out


def as_int(data: memoryview) -> int:
    value: int = struct.unpack("<q", data)[0]
    return value


def as_str(data: memoryview) -> str:
    return str(data, "utf-8")


def index_json(shards: Iterable[Mapping[str, Any]]) -> bytes:
    """A split's ``index.json`` from its shards' manifest entries (``file``, ``bytes``,
    ``records``), in shard order: what ``MDSWriter.finish()`` writes."""
    entries = []
    for shard in sorted(shards, key=lambda s: shard_number(str(s["file"]))):
        raw = {"basename": str(shard["file"]).rsplit("/", 1)[-1], "bytes": shard["bytes"]}
        entries.append(
            {
                **config(),
                "raw_data": {**raw, "hashes": {}},
                "samples": shard["records"],
                "zip_data": None,
            }
        )
    return json.dumps({"shards": entries, "version": VERSION}, sort_keys=True).encode("utf-8")
