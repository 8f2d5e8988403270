"""TFRecords as the reference scripts lay them out: ``OUT/tfrecord/<split>-%05d-of-%05d``.

A test image has no class: its record's ``image/class/label`` is ``--label-offset`` - 1 (0,
the background label, by default) and its synset and text are empty.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ...errors import DataError
from ...labels import load_synsets
from ...plan import ShardSpec
from ...sample import Sample
from ..base import SinkOptions, VerifyReport
from ..shardfile import (
    ShardedSink,
    ShardedWriter,
    check_index,
    checking,
    finalize_shards,
)
from . import spec as tfrecord_io
from .spec import ENCODED, FEATURES, FILENAME, HEIGHT, LABEL, SYNSET, TEXT, WIDTH, XMIN

DIRNAME = "tfrecord"


class TFRecordShardWriter(ShardedWriter):
    """Write one shard under a temporary name; ``commit`` renames it into place."""

    def __init__(self, name: str, options: SinkOptions) -> None:
        super().__init__(options, DIRNAME, name)
        self._offset = options.label_offset
        self._texts = load_synsets().texts

    def add(self, sample: Sample) -> None:
        ref = sample.ref
        parts = tfrecord_io.encode_imagenet_example_parts(
            encoded=sample.data,
            height=sample.height,
            width=sample.width,
            label=ref.label + self._offset,  # a test image: label -1, offset - 1
            synset=ref.wnid,
            text=self._texts[ref.wnid] if ref.wnid else "",
            filename=ref.filename,
            boxes=[(b.xmin, b.ymin, b.xmax, b.ymax) for b in ref.boxes],
        )
        start = self._shard.out.nbytes
        size = tfrecord_io.write_record_parts(self._shard.out, parts)
        if self._dali:
            self._index.append(f"{start} {size}\n")
        self.records += 1

    def index_bytes(self) -> bytes:
        # DALI's tfrecord2idx format: "offset size" per record, size including framing.
        return "".join(self._index).encode("ascii")


class TFRecordSink(ShardedSink):
    """The ``tfrecord`` format."""

    name = "tfrecord"
    dirname = DIRNAME

    def open_shard(self, spec: ShardSpec) -> TFRecordShardWriter:
        return TFRecordShardWriter(spec.name, self.options)

    def finalize(self, results: list[dict[str, Any]]) -> dict[str, Any]:
        return finalize_shards(results, label_offset=self.options.label_offset)

    def check_shard(
        self, shard: dict[str, Any], section: dict[str, Any], *, decode: bool
    ) -> VerifyReport:
        offset = int(section.get("label_offset", self.options.label_offset))
        return check_shard(self.options.out, shard, offset, decode=decode)


def check_shard(
    out: Path, shard: dict[str, Any], label_offset: int, *, decode: bool
) -> VerifyReport:
    """Re-read one shard: size and checksum, every record's CRCs, every Example's features."""
    with checking(out, shard) as (report, path):
        if path is not None:
            _check_records(path, shard, label_offset, decode, report)
            if "index" in shard:
                report.problems.extend(check_index(out, shard, path, dali_index))
    return report


def _check_records(
    path: Path, shard: dict[str, Any], label_offset: int, decode: bool, report: VerifyReport
) -> None:
    synsets = load_synsets()
    test = is_test_shard(shard)
    count = 0
    try:
        for _offset, data in tfrecord_io.iter_records(path):
            problem = _check_example(data, synsets, label_offset, decode, test=test)
            if problem:
                report.problems.append(f"{path}: record {count}: {problem}")
            count += 1
    except DataError as exc:
        report.problems.append(str(exc))
    report.records = count
    if count != shard["records"]:
        report.problems.append(f"{path}: {count} records, the manifest says {shard['records']}")


def is_test_shard(shard: dict[str, Any]) -> bool:
    """Whether a listed shard holds test images (no class), by its name.

    >>> is_test_shard({"file": "tfrecord/test-00000-of-00256"})
    True
    >>> is_test_shard({"file": "tfrecord/train-00000-of-01024"})
    False
    """
    return str(shard["file"]).rsplit("/", 1)[-1].startswith("test-")


def dali_index(path: Path) -> Iterator[bytes]:
    """DALI's tfrecord2idx index of a shard, line by line, computed by reading the shard
    itself (its record headers)."""
    for offset, size in tfrecord_io.iter_record_index(path):
        yield f"{offset} {size}\n".encode("ascii")


# The box lists (coordinates and labels): one value per box, so all of one length.
_PER_BOX = tuple(name for name, kind in FEATURES.items() if kind.per_box)


def _check_example(
    data: bytes, synsets: Any, label_offset: int, decode: bool, *, test: bool = False
) -> str | None:
    """What is wrong with one record, or None. A test record (``test``) has no class: label
    ``label_offset`` - 1, empty synset and text; any other names its synset's label."""
    try:
        ex = tfrecord_io.decode_example(data)
    except DataError as exc:
        return f"not a valid Example ({exc})"
    missing = [k for k in FEATURES if k not in ex]
    if missing:
        return f"missing features {', '.join(missing)}"
    try:
        synset = tfrecord_io.first_bytes(ex, SYNSET).decode("utf-8", "replace")
        text = tfrecord_io.first_bytes(ex, TEXT)
        label = tfrecord_io.first_int(ex, LABEL) - label_offset
        name = tfrecord_io.first_bytes(ex, FILENAME).decode("utf-8", "replace")
        encoded = tfrecord_io.first_bytes(ex, ENCODED)
        size = (tfrecord_io.first_int(ex, WIDTH), tfrecord_io.first_int(ex, HEIGHT))
    except DataError as exc:
        return str(exc)
    if test:
        if (label, synset, text) != (-1, "", b""):
            return (
                f"a test record must have label {label_offset - 1} and no synset or text, "
                f"not label {label + label_offset}, synset {synset!r}"
            )
    elif synset not in synsets or synsets.index(synset) != label:
        return f"label {label + label_offset} does not match synset {synset}"
    n = len(ex[XMIN].values)
    for key in _PER_BOX:
        if len(ex[key].values) != n:
            return "bounding box lists of different lengths"
    if decode:
        from ...imagefix import decode_check

        try:
            decoded = decode_check(encoded, name)
        except DataError as exc:
            return str(exc)
        if decoded != size:
            return (
                f"{name}: decodes to {decoded[0]}x{decoded[1]}, the record says {size[0]}x{size[1]}"
            )
    return None


def read_examples(path: Path) -> list[dict[str, Any]]:
    """Decode every Example of a shard (for tests and tools; loads the whole shard)."""
    return [tfrecord_io.decode_example(d) for _o, d in tfrecord_io.iter_records(path)]


__all__ = ["FEATURES", "TFRecordSink", "check_shard", "read_examples"]
