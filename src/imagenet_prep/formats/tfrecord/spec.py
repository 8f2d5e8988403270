"""TFRecord files of the inception ``tf.train.Example``s: everything this package knows of them.

The one home of the format, with no TensorFlow and nothing from the rest of the package but
``DataError``: the 15 features (``FEATURES``: names and types) that the reference
scripts' ``build_imagenet_data.py`` writes; the framing, ``uint64 length, uint32
masked_crc32c(length), data, uint32 masked_crc32c(data)``, little-endian (``read_header``,
``record_at``, ``iter_records``, ``record_index``, ``write_record_parts``); protobuf's
varints (``_varint``, ``read_varint``); and the Example codec. Examples are encoded by hand
in protobuf's wire format (map entries in sorted key order, so the bytes are deterministic);
the ImageNet hot path returns the serialized Example as parts, so the image bytes are
written without being copied into a new buffer, and ``example_fields`` reads chosen
features out of a record without copying them.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType
from typing import IO, Any, ClassVar, Protocol

import google_crc32c

from ...errors import DataError

_MASK_DELTA = 0xA282EAD8
_U32 = 0xFFFFFFFF
_LEN = struct.Struct("<Q")
_CRC = struct.Struct("<I")


def masked_crc32c(data: bytes | bytearray | memoryview) -> int:
    """TFRecord's masked CRC32C; other buffers than ``bytes`` (a mapped shard) are read in place.

    google-crc32c takes only buffers that need no release; a read-only NumPy array over the
    buffer is one, so the data is not copied to be checked (``bytes()`` is the fallback).
    NumPy is imported only for such buffers: the build, which passes ``bytes``, never needs it.

    >>> hex(masked_crc32c(b"")), masked_crc32c(memoryview(b"abc")) == masked_crc32c(b"abc")
    ('0xa282ead8', True)
    """
    if type(data) is bytes:
        return mask_crc(google_crc32c.value(data))
    import numpy as np

    try:
        crc = google_crc32c.value(np.frombuffer(data, np.uint8))
    except TypeError:
        crc = google_crc32c.value(bytes(data))
    return mask_crc(crc)


def mask_crc(crc: int) -> int:
    """TFRecord's masking of a CRC32C value (``masked_crc32c`` is this of the data's CRC)."""
    return ((((crc >> 15) | (crc << 17)) & _U32) + _MASK_DELTA) & _U32


# --- the typed feature values ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BytesList:
    values: tuple[bytes, ...]
    field: ClassVar[int] = 1  # its field number in ``tf.train.Feature``


@dataclass(frozen=True, slots=True)
class FloatList:
    values: tuple[float, ...]
    field: ClassVar[int] = 2


@dataclass(frozen=True, slots=True)
class Int64List:
    values: tuple[int, ...]
    field: ClassVar[int] = 3


Feature = BytesList | Int64List | FloatList


# --- the features ----------------------------------------------------------------------

HEIGHT = "image/height"
WIDTH = "image/width"
COLORSPACE = "image/colorspace"
CHANNELS = "image/channels"
LABEL = "image/class/label"
SYNSET = "image/class/synset"
TEXT = "image/class/text"
XMIN = "image/object/bbox/xmin"
YMIN = "image/object/bbox/ymin"
XMAX = "image/object/bbox/xmax"
YMAX = "image/object/bbox/ymax"
BOX_LABEL = "image/object/bbox/label"
FORMAT = "image/format"
FILENAME = "image/filename"
ENCODED = "image/encoded"
BOX = (XMIN, YMIN, XMAX, YMAX)  # a box's coordinates, as a (xmin, ymin, xmax, ymax) tuple


@dataclass(frozen=True, slots=True)
class FeatureType:
    """The type of one feature: its list type, and how many values a record holds."""

    kind: type[BytesList] | type[Int64List] | type[FloatList]
    per_box: bool = False  # one value per bounding box (maybe none); else exactly one


# The features build_imagenet_data.py writes, in its order; every record carries them all.
FEATURES: Mapping[str, FeatureType] = MappingProxyType(
    {
        HEIGHT: FeatureType(Int64List),
        WIDTH: FeatureType(Int64List),
        COLORSPACE: FeatureType(BytesList),
        CHANNELS: FeatureType(Int64List),
        LABEL: FeatureType(Int64List),
        SYNSET: FeatureType(BytesList),
        TEXT: FeatureType(BytesList),
        **{name: FeatureType(FloatList, per_box=True) for name in BOX},
        BOX_LABEL: FeatureType(Int64List, per_box=True),
        FORMAT: FeatureType(BytesList),
        FILENAME: FeatureType(BytesList),
        ENCODED: FeatureType(BytesList),
    }
)


# --- protobuf wire format ---------------------------------------------------------------


def _varint(value: int) -> bytes:
    """Protobuf base-128 varint; negative int64s are their 64-bit two's complement.

    >>> _varint(1), _varint(300), len(_varint(-1))
    (b'\\x01', b'\\xac\\x02', 10)
    """
    if value < 0:
        value += 1 << 64
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def read_varint(data: bytes | memoryview, pos: int) -> tuple[int, int]:
    """The varint at ``data[pos]`` and the position after it.

    IndexError when it runs past ``data``, DataError when it is longer than 64 bits.

    >>> read_varint(b"\\x00\\xac\\x02", 1), read_varint(_varint(-1), 0)[0] == (1 << 64) - 1
    ((300, 3), True)
    """
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
        if shift > 63:
            raise DataError("malformed varint")


def _signed64(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2)."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _encode_feature(feature: Feature) -> bytes:
    """A ``tf.train.Feature``: its list (in field ``feature.field``) of values (field 1)."""
    if isinstance(feature, BytesList):
        return _field(feature.field, b"".join(_field(1, v) for v in feature.values))
    if isinstance(feature, FloatList):
        packed = struct.pack(f"<{len(feature.values)}f", *feature.values)
    elif isinstance(feature, Int64List):
        packed = b"".join(_varint(v) for v in feature.values)
    else:
        raise TypeError(f"not a feature value: {feature!r}")
    return _field(feature.field, _field(1, packed) if packed else b"")


def encode_example(features: Mapping[str, Feature]) -> bytes:
    """Serialize a ``tf.train.Example`` (map entries in sorted key order)."""
    entries = b"".join(
        _field(1, _field(1, key.encode("utf-8")) + _field(2, _encode_feature(features[key])))
        for key in sorted(features)
    )
    return _field(1, entries)


class _Cursor:
    """Reads protobuf wire-format fields from a buffer; errors say what is malformed."""

    __slots__ = ("data", "end", "pos")

    def __init__(self, data: bytes | memoryview, start: int = 0, end: int | None = None) -> None:
        self.data = data
        self.pos = start
        self.end = len(data) if end is None else end

    def varint(self) -> int:
        try:
            value, pos = read_varint(self.data, self.pos)
        except IndexError:
            raise DataError("malformed varint") from None
        if pos > self.end:
            raise DataError("malformed varint")
        self.pos = pos
        return value

    def fields(self) -> Iterator[tuple[int, int, int, int]]:
        """Yield (field number, wire type, start, end) of each field; varints give their value."""
        while self.pos < self.end:
            key = self.varint()
            number, wire = key >> 3, key & 7
            if wire == 0:
                value = self.varint()
                yield number, wire, value, value
            elif wire == 1:
                self.pos += 8
                yield number, wire, self.pos - 8, self.pos
            elif wire == 2:
                length = self.varint()
                start = self.pos
                self.pos += length
                if self.pos > self.end:
                    raise DataError("a length-delimited field runs past its message")
                yield number, wire, start, self.pos
            elif wire == 5:
                self.pos += 4
                yield number, wire, self.pos - 4, self.pos
            else:
                raise DataError(f"unsupported wire type {wire}")
        if self.pos != self.end:
            raise DataError("a field runs past its message")


def _decode_feature(data: bytes, start: int, end: int) -> Feature:
    for number, wire, a, b in _Cursor(data, start, end).fields():
        if wire != 2:
            continue
        if number == BytesList.field:
            return BytesList(
                tuple(data[x:y] for n, w, x, y in _Cursor(data, a, b).fields() if n == 1 and w == 2)
            )
        if number == FloatList.field:
            floats: list[float] = []
            for n, w, x, y in _Cursor(data, a, b).fields():
                if n != 1:
                    continue
                if w == 2:  # packed
                    if (y - x) % 4:
                        raise DataError("packed float list of odd length")
                    floats.extend(struct.unpack_from(f"<{(y - x) // 4}f", data, x))
                elif w == 5:
                    floats.append(struct.unpack_from("<f", data, x)[0])
            return FloatList(tuple(floats))
        if number == Int64List.field:
            ints: list[int] = []
            for n, w, x, y in _Cursor(data, a, b).fields():
                if n != 1:
                    continue
                if w == 2:  # packed
                    inner = _Cursor(data, x, y)
                    while inner.pos < inner.end:
                        ints.append(_signed64(inner.varint()))
                elif w == 0:
                    ints.append(_signed64(x))
            return Int64List(tuple(ints))
    # A Feature with no kind set: TensorFlow treats it as an empty list of any type.
    return BytesList(())


def decode_example(data: bytes) -> dict[str, Feature]:
    """Parse a serialized ``tf.train.Example``: packed or unpacked lists; unknown fields skipped."""
    out: dict[str, Feature] = {}
    for number, wire, a, b in _Cursor(data).fields():
        if number != 1 or wire != 2:
            continue
        for n, w, x, y in _Cursor(data, a, b).fields():
            if n != 1 or w != 2:
                continue
            key: str | None = None
            value: Feature = BytesList(())
            for n2, w2, x2, y2 in _Cursor(data, x, y).fields():
                if n2 == 1 and w2 == 2:
                    key = data[x2:y2].decode("utf-8")
                elif n2 == 2 and w2 == 2:
                    value = _decode_feature(data, x2, y2)
            if key is None:
                raise DataError("a feature map entry without a key")
            out[key] = value
    return out


def first_bytes(example: Mapping[str, Feature], key: str) -> bytes:
    """The single bytes value of ``key``; DataError when it is missing or of another type."""
    feature = example.get(key)
    if not isinstance(feature, BytesList) or len(feature.values) != 1:
        raise DataError(f"feature {key} is not a single bytes value")
    return feature.values[0]


def first_int(example: Mapping[str, Feature], key: str) -> int:
    """The single int64 value of ``key``; DataError when it is missing or of another type."""
    feature = example.get(key)
    if not isinstance(feature, Int64List) or len(feature.values) != 1:
        raise DataError(f"feature {key} is not a single int64 value")
    return feature.values[0]


def wanted_fields(names: Iterable[str]) -> dict[bytes, int]:
    """What ``example_fields`` is to read: each feature's key, and its list's field number."""
    return {name.encode("ascii"): FEATURES[name].kind.field for name in names}


def example_fields(
    data: bytes | memoryview, wanted: Mapping[bytes, int]
) -> dict[str, list[Any]] | None:
    """The ``wanted`` features of a serialized Example, or None when it is laid out otherwise.

    Reads only those and skips the other features' values: for the loaders' few, about a
    tenth of ``decode_example``'s time. Bytes values are slices of ``data``, so an image is
    not copied. Anything unusual (unpacked lists, other wire types, a wanted feature
    missing, a record cut short) gives None, and ``decode_example`` decides.
    """
    try:
        return _example_fields(data, wanted)
    except (IndexError, ValueError, struct.error, DataError):
        return None


def _example_fields(
    data: bytes | memoryview, wanted: Mapping[bytes, int]
) -> dict[str, list[Any]] | None:
    if data[0] != 0x0A:
        return None
    length, pos = read_varint(data, 1)
    end = pos + length
    view = memoryview(data)
    out: dict[str, list[Any]] = {}
    while pos < end:
        if data[pos] != 0x0A:
            return None
        length, pos = read_varint(data, pos + 1)
        entry_end = pos + length
        length = data[pos + 1]  # the key: short, so its length is one byte
        if data[pos] != 0x0A or length >= 0x80:
            return None
        pos += 2
        key = bytes(data[pos : pos + length])
        pos += length
        kind = wanted.get(key)
        if kind is not None:
            if data[pos] != 0x12:
                return None
            _, pos = read_varint(data, pos + 1)  # the Feature's length
            tag = data[pos]
            length, pos = read_varint(data, pos + 1)  # the list's length
            list_end = pos + length
            if tag != kind << 3 | 2:
                return None
            values: list[Any] = []
            while pos < list_end:
                if data[pos] != 0x0A:
                    return None
                length, pos = read_varint(data, pos + 1)
                # The list fields as numbers (BytesList.field, FloatList.field): this loop
                # runs for every record a loader reads.
                if kind == 1:
                    values.append(view[pos : pos + length])  # no copy of the image
                elif kind == 2:
                    values.extend(struct.unpack_from(f"<{length // 4}f", data, pos))
                else:
                    stop = pos + length
                    while pos < stop:
                        value, pos = read_varint(data, pos)
                        values.append(value - (1 << 64) if value >= 1 << 63 else value)
                    continue
                pos += length
            out[key.decode("ascii")] = values
        pos = entry_end
    return out if len(out) == len(wanted) else None


# --- the ImageNet hot path ------------------------------------------------------------
#
# The Example of one image is: a few entries that depend only on the class, a few that depend
# on the image, and the image bytes. Entries are built from precomputed key prefixes and a
# varint table, and the per-class part is cached: a record costs microseconds.

_SMALL_VARINTS = tuple(_varint(i) for i in range(1 << 14))


def _v(n: int) -> bytes:
    """``_varint`` of a length, from a table below 2**14 and unrolled below 2**21."""
    if n < 16384:
        return _SMALL_VARINTS[n]
    if n < 2097152:
        return bytes(((n & 0x7F) | 0x80, ((n >> 7) & 0x7F) | 0x80, n >> 14))
    return _varint(n)


def _key(name: str) -> bytes:
    return _field(1, name.encode("ascii"))


def _map_entry(key: bytes, feature: bytes) -> bytes:
    """A ``Features.feature`` map entry from an encoded key field and an encoded Feature."""
    body_len = len(key) + 1 + len(_v(len(feature))) + len(feature)
    return b"".join((b"\x0a", _v(body_len), key, b"\x12", _v(len(feature)), feature))


def _bytes_feature(value: bytes) -> bytes:
    inner = b"\x0a" + _v(len(value)) + value
    return b"\x0a" + _v(len(inner)) + inner


def _int_feature(values: Sequence[int]) -> bytes:
    if not values:
        return b"\x1a\x00"
    packed = b"".join(_v(v) if 0 <= v < 16384 else _varint(v) for v in values)
    inner = b"\x0a" + _v(len(packed)) + packed
    return b"\x1a" + _v(len(inner)) + inner


def _float_feature(values: Sequence[float]) -> bytes:
    if not values:
        return b"\x12\x00"
    packed = struct.pack(f"<{len(values)}f", *values)
    inner = b"\x0a" + _v(len(packed)) + packed
    return b"\x12" + _v(len(inner)) + inner


_K = {name: _key(name) for name in FEATURES}
_CHANNELS = _map_entry(_K[CHANNELS], _int_feature((3,)))
_COLORSPACE = _map_entry(_K[COLORSPACE], _bytes_feature(b"RGB"))
_FORMAT = _map_entry(_K[FORMAT], _bytes_feature(b"JPEG"))
_ENCODED_KEY = _K[ENCODED]
_FILENAME_KEY = _K[FILENAME]
_BOX_KEYS = tuple(_K[k] for k in (XMAX, XMIN, YMAX, YMIN))  # sorted key order
# An image without boxes: the label list and the four float lists, empty.
_NO_BOX_ENTRIES = _map_entry(_K[BOX_LABEL], _int_feature(())) + b"".join(
    _map_entry(key, _float_feature(())) for key in _BOX_KEYS
)


@lru_cache(maxsize=4096)
def _class_entries(label: int, synset: str, text: str) -> bytes:
    """channels, class/label, class/synset, class/text, colorspace: the same for a whole class."""
    return b"".join(
        (
            _CHANNELS,
            _map_entry(_K[LABEL], _int_feature((label,))),
            _map_entry(_K[SYNSET], _bytes_feature(synset.encode("utf-8"))),
            _map_entry(_K[TEXT], _bytes_feature(text.encode("utf-8"))),
            _COLORSPACE,
        )
    )


@lru_cache(maxsize=16384)
def _int_entry(name: str, value: int) -> bytes:
    """A one-value int64 entry (``HEIGHT``, ``WIDTH``): few distinct values."""
    return _map_entry(_K[name], _int_feature((value,)))


@lru_cache(maxsize=1024)
def _box_label_entry(label: int, count: int) -> bytes:
    """``image/object/bbox/label``: the class label once per box."""
    return _map_entry(_K[BOX_LABEL], _int_feature((label,) * count))


@lru_cache(maxsize=256)
def _box_float_heads(count: int) -> tuple[bytes, bytes, bytes, bytes]:
    """For ``count`` boxes, each float entry (xmax, xmin, ymax, ymin) up to its packed values."""
    size = 4 * count
    return tuple(  # type: ignore[return-value]
        _map_entry(key, _float_feature((0.0,) * count))[:-size] for key in _BOX_KEYS
    )


def _box_entries(label: int, boxes: Sequence[tuple[float, float, float, float]]) -> bytes:
    """The five ``image/object/bbox/*`` entries of an image with boxes, in key order."""
    count = len(boxes)
    xmin, ymin, xmax, ymax = zip(*boxes, strict=True)
    packed = struct.pack(f"<{4 * count}f", *xmax, *xmin, *ymax, *ymin)
    size = 4 * count
    h = _box_float_heads(count)
    return b"".join(
        (
            _box_label_entry(label, count),
            h[0],
            packed[:size],
            h[1],
            packed[size : 2 * size],
            h[2],
            packed[2 * size : 3 * size],
            h[3],
            packed[3 * size :],
        )
    )


def encode_imagenet_example_parts(
    *,
    encoded: bytes,
    height: int,
    width: int,
    label: int,
    synset: str,
    text: str,
    filename: str,
    boxes: Sequence[tuple[float, float, float, float]],
) -> list[bytes]:
    """The 15 features of the reference ``build_imagenet_data.py``, serialized as parts.

    ``b"".join(parts)`` equals ``encode_example`` of the same values (keys in sorted order);
    ``encoded`` is one of the parts, never copied. Boxes are (xmin, ymin, xmax, ymax).
    """
    head = _class_entries(label, synset, text)
    # entry{ key, value=Feature{ bytes_list=BytesList{ value: encoded } } }, without the bytes.
    n = len(encoded)
    v_n = _v(n)
    list_len = 1 + len(v_n) + n
    v_list = _v(list_len)
    feature_len = 1 + len(v_list) + list_len
    v_feature = _v(feature_len)
    entry_len = len(_ENCODED_KEY) + 1 + len(v_feature) + feature_len
    encoded_hdr = b"".join(
        (b"\x0a", _v(entry_len), _ENCODED_KEY, b"\x12", v_feature, b"\x0a", v_list, b"\x0a", v_n)
    )
    tail = b"".join(
        (
            _map_entry(_FILENAME_KEY, _bytes_feature(filename.encode("utf-8"))),
            _FORMAT,
            _int_entry(HEIGHT, height),
            _box_entries(label, boxes) if boxes else _NO_BOX_ENTRIES,
            _int_entry(WIDTH, width),
        )
    )
    features_len = len(head) + len(encoded_hdr) + n + len(tail)
    prefix = b"".join((b"\x0a", _v(features_len), head, encoded_hdr))
    return [prefix, encoded, tail]


# --- framing ----------------------------------------------------------------------------

HEADER_SIZE = 12  # uint64 data length, uint32 masked CRC32C of those 8 bytes
FRAME_SIZE = HEADER_SIZE + 4  # and, after the data, uint32 masked CRC32C of the data
_HEADER = struct.Struct("<QI")


class _Writable(Protocol):
    def write(self, data: bytes, /) -> object: ...


def _where(name: str, index: int, offset: int) -> str:
    return f"{name}: record {index} at byte {offset}"


def record_header(length: int) -> bytes:
    """The 12 bytes that frame a record of ``length`` data bytes.

    >>> read_header(record_header(300), "f", 0, 0)
    300
    """
    header = _LEN.pack(length)
    return header + _CRC.pack(mask_crc(google_crc32c.value(header)))


def read_header(header: bytes, name: str, index: int, offset: int, check_crc: bool = True) -> int:
    """The data length a record's header gives; DataError (naming the record) if it is bad.

    >>> read_header(b"\\x05" + bytes(11), "f", 2, 40, check_crc=False)
    5
    >>> read_header(b"\\x05" + bytes(11), "f", 2, 40)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    imagenet_prep.errors.DataError: f: record 2 at byte 40: length CRC mismatch (...)
    """
    if len(header) < HEADER_SIZE:
        raise DataError(f"{_where(name, index, offset)}: truncated record header")
    length: int
    length, stored = _HEADER.unpack_from(header)
    if check_crc and stored != mask_crc(google_crc32c.value(header[:8])):
        raise DataError(
            f"{_where(name, index, offset)}: length CRC mismatch (corrupt record header)"
        )
    return length


def check_data(
    data: bytes | memoryview, footer: bytes | memoryview, name: str, index: int, offset: int
) -> None:
    """DataError (naming the record) unless ``footer`` is the masked CRC32C of ``data``."""
    if int.from_bytes(footer, "little") != masked_crc32c(data):
        raise DataError(f"{_where(name, index, offset)}: data CRC mismatch (corrupt record)")


def record_at(view: memoryview, offset: int, size: int, name: str, index: int) -> memoryview:
    """The data of the record framed in ``view[offset:offset + size]``: a slice, not a copy.

    Its data CRC is checked; its header's was checked when it was indexed (``record_index``).
    """
    end = offset + size
    if end > len(view):
        raise DataError(
            f"{_where(name, index, offset)}: truncated record data "
            f"({size - FRAME_SIZE} bytes expected)"
        )
    data = view[offset + HEADER_SIZE : end - 4]
    check_data(data, view[end - 4 : end], name, index, offset)
    return data


def write_record(f: _Writable, data: bytes) -> int:
    """Write one framed record; return the bytes written."""
    return write_record_parts(f, [data])


def write_record_parts(f: _Writable, parts: Sequence[bytes]) -> int:
    """Write one framed record whose data is ``b"".join(parts)``, without joining them.

    The small first and last parts go out with the frame's header and footer, so a record
    costs three writes whatever its parts.
    """
    length = sum(len(p) for p in parts)
    crc = 0
    for part in parts:
        crc = google_crc32c.extend(crc, part)
    footer = _CRC.pack(mask_crc(crc))
    head = record_header(length)
    if len(parts) == 1:
        f.write(head)
        f.write(parts[0])
        f.write(footer)
    else:
        f.write(head + parts[0])
        for part in parts[1:-1]:
            f.write(part)
        f.write(parts[-1] + footer)
    return length + FRAME_SIZE


def iter_records(
    source: str | Path | IO[bytes], *, check_crc: bool = True
) -> Iterator[tuple[int, bytes]]:
    """Yield ``(offset, data)`` per record; a damaged file raises DataError naming it."""
    if isinstance(source, (str, Path)):
        with open(source, "rb", buffering=1 << 20) as f:
            yield from _frames(f, str(source), check_crc)
    else:
        yield from _frames(source, getattr(source, "name", "<stream>"), check_crc)


def record_index(path: str | Path) -> list[tuple[int, int]]:
    """(offset, framed size) of every record, checking only the length CRCs (for DALI indexes).

    Only the headers are read, so a record cut short at the end is left to its reader.
    """
    return list(iter_record_index(path))


def iter_record_index(path: str | Path) -> Iterator[tuple[int, int]]:
    """:func:`record_index` one record at a time (verify's walk holds no list of a shard)."""
    name = str(path)
    with open(path, "rb") as f:
        offset = 0
        index = 0
        while header := f.read(HEADER_SIZE):
            size = read_header(header, name, index, offset) + FRAME_SIZE
            yield offset, size
            offset += size
            index += 1
            f.seek(offset)


def _frames(f: IO[bytes], name: str, check_crc: bool) -> Iterator[tuple[int, bytes]]:
    """(offset, data) of each record of an open file, read from where it is."""
    offset = 0
    index = 0
    while header := f.read(HEADER_SIZE):
        length = read_header(header, name, index, offset, check_crc)
        data = f.read(length)
        footer = f.read(4)
        if len(data) < length or len(footer) < 4:
            raise DataError(
                f"{_where(name, index, offset)}: truncated record data ({length} bytes expected)"
            )
        if check_crc:
            check_data(data, footer, name, index, offset)
        yield offset, data
        offset += length + FRAME_SIZE
        index += 1
