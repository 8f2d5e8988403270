"""MosaicML MDS shards: ``OUT/mds/<split>/shard.%05d.mds`` and ``OUT/mds/<split>/index.json``.

One plan shard is one MDS shard, named by its index in the split, its samples in the plan's
(shuffled) order. A shard's header (sample count and offsets) comes before its samples, which
are therefore spooled to an unnamed temporary file beside the shard (``MDSWriter`` keeps the
shard in memory: 64 MB a worker) and copied after the header at commit; a shard is refused
when it would reach 4 GiB (MDS offsets are 32-bit).
``finalize`` writes each split's ``index.json``; there are no DALI index files for MDS.
A test image has no class: ``y`` is -1, ``wnid`` and ``text`` are empty.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import struct
import tempfile
from array import array
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO

from ...errors import DataError
from ...fsutil import read_bytes
from ...labels import load_synsets
from ...loaders.readers.base import stem
from ...plan import ShardSpec
from ...sample import Sample
from ...storage import is_url
from ..base import SinkOptions, VerifyReport
from ..shardfile import (
    ShardedSink,
    ShardedWriter,
    checking,
    finalize_shards,
    write_side_file,
)
from . import spec as mds
from .spec import INDEX

DIRNAME = "mds"


class MDSShardWriter(ShardedWriter):
    """Collect one shard's samples; ``commit`` writes the header and them, and renames."""

    def __init__(self, split: str, name: str, options: SinkOptions) -> None:
        super().__init__(options, f"{DIRNAME}/{split}", name)
        self._texts = load_synsets().texts
        # Unnamed (gone with the process, however it ends), on the output's file system
        # when it is local; in the temporary folder for an object store.
        where = None if is_url(self.path) else self.path.parent
        self._spool = tempfile.TemporaryFile(dir=where)  # noqa: SIM115 - closed by close/abort
        self._sizes = array("I")
        self._bytes = mds.header_bytes(0)

    def add(self, sample: Sample) -> None:
        ref = sample.ref
        values = dict(
            y=ref.label,
            key=ref.key,
            wnid=ref.wnid,
            text=self._texts[ref.wnid] if ref.wnid else "",  # a test image: no class
            filename=ref.filename,
            width=sample.width,
            height=sample.height,
            boxes=[[b.xmin, b.ymin, b.xmax, b.ymax] for b in ref.boxes],
        )
        parts = mds.encode_sample(values, sample.data)
        size = sum(map(len, parts))
        self._bytes += size + 4
        if self._bytes > mds.MAX_SHARD_BYTES:
            raise DataError(
                f"{self.path}: an MDS shard must stay under 4 GiB (its offsets are 32-bit) and "
                f"this one passes it at image {len(self._sizes) + 1} ({ref.origin}); "
                "use a smaller --shard-size"
            )
        self._spool.writelines(parts)
        self._sizes.append(size)
        self.records += 1

    def close(self) -> None:
        out, spool = self._shard.out, self._spool
        out.write(mds.shard_header(self._sizes))
        spool.seek(0)
        # Read as bytes, which the shard's writer keeps as they are (a reused buffer it
        # would copy again).
        shutil.copyfileobj(spool, out, _COPY_BLOCK)
        spool.close()

    def abort(self) -> None:
        self._spool.close()
        super().abort()


#: The bytes copied at a time from a shard's spooled samples into the shard.
_COPY_BLOCK = 1 << 20


def split_of(entry: dict[str, Any]) -> str:
    """The split of a file listed in the section: ``mds/<split>/<name>``.

    >>> split_of({"file": "mds/validation/shard.00001.mds"})
    'validation'
    """
    return str(entry["file"]).split("/")[1]


class MDSSink(ShardedSink):
    """The ``mds`` format."""

    name = "mds"
    dirname = DIRNAME

    def __init__(self, options: SinkOptions) -> None:
        super().__init__(dataclasses.replace(options, dali_index=False))  # DALI reads no MDS

    def shard_name(self, spec: ShardSpec) -> str:
        return f"{spec.split}/{mds.shard_file(spec.index)}"

    def open_shard(self, spec: ShardSpec) -> MDSShardWriter:
        return MDSShardWriter(spec.split, mds.shard_file(spec.index), self.options)

    def finalize(self, results: list[dict[str, Any]]) -> dict[str, Any]:
        section = finalize_shards(results)
        section["side_files"] = [
            write_side_file(self.options.out, f"{DIRNAME}/{split}/{INDEX}", mds.index_json(shards))
            for split, shards in by_split(section["shards"]).items()
        ]
        return section

    def side_files(self, splits: Sequence[str]) -> Iterator[str]:
        for split in splits:
            yield f"{DIRNAME}/{split}/{INDEX}"

    def check_shard(
        self, shard: dict[str, Any], section: dict[str, Any], *, decode: bool
    ) -> VerifyReport:
        return check_shard(self.options.out, shard, decode=decode)

    def verify(self, section: dict[str, Any], *, decode: bool) -> VerifyReport:
        report = super().verify(section, decode=decode)
        for split, shards in by_split(section["shards"]).items():
            path = self.options.out / DIRNAME / split / INDEX
            data = read_bytes(path)
            if data is not None and data != mds.index_json(shards):
                report.problems.append(f"{path}: does not list the shards the manifest lists")
        return report


def by_split(shards: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """The shard entries of each split, in shard order."""
    splits: dict[str, list[dict[str, Any]]] = {}
    for shard in sorted(shards, key=lambda s: mds.shard_number(str(s["file"]))):
        splits.setdefault(split_of(shard), []).append(shard)
    return splits


def check_shard(out: Path, shard: dict[str, Any], *, decode: bool) -> VerifyReport:
    """Re-read one shard: checksum, header (count, offsets, configuration), every sample."""
    with checking(out, shard) as (report, path):
        if path is not None:
            _check_samples(path, shard, decode, report)
    return report


#: verify reads a shard front to back through a buffer of this size, a sample at a time.
_READ_BUFFER = 1 << 20


def _check_samples(path: Path, shard: dict[str, Any], decode: bool, report: VerifyReport) -> None:
    """Check the header and every sample into ``report``, reading the shard front to back:
    only the offsets (8 bytes a sample) and the sample being looked at are in memory."""
    try:
        f = open(path, "rb", buffering=_READ_BUFFER)  # noqa: SIM115
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror})") from None
    with f:
        _check_file_samples(f, os.fstat(f.fileno()).st_size, path, shard, decode, report)


def _check_file_samples(
    f: BinaryIO, size: int, path: Path, shard: dict[str, Any], decode: bool, report: VerifyReport
) -> None:
    """:func:`_check_samples` of the open shard ``f`` of ``size`` bytes, read from its start."""
    try:
        head = f.read(4)
        end = 4 + 4 * (struct.unpack("<I", head)[0] + 1) if len(head) == 4 else 4
        if end <= size:  # the offsets (a count past the file's end is refused unread)
            head += f.read(end - 4)
        offsets = mds.sample_offsets(memoryview(head), str(path), size)
        config = int(offsets[0]) - end
        if config != len(mds.CONFIG) or f.read(config) != mds.CONFIG:
            raise DataError(f"{path}: the header's configuration is not this format's")
    except DataError as exc:
        report.problems.append(str(exc))
        return
    report.records = len(offsets) - 1
    if report.records != shard["records"]:
        report.problems.append(
            f"{path}: {report.records} samples, the manifest says {shard['records']}"
        )
    synsets = load_synsets()
    test = split_of(shard) == "test"
    for i in range(report.records):  # the samples follow one another
        where = f"{path}: sample {i}"
        try:
            sample = memoryview(f.read(int(offsets[i + 1] - offsets[i])))
            problem = _check_sample(sample, where, synsets, decode, test=test)
        except (DataError, ValueError, KeyError, TypeError) as exc:
            problem = f"{where}: {exc}"
        if problem:
            report.problems.append(problem)


def _check_sample(
    data: memoryview, where: str, synsets: Any, decode: bool, *, test: bool = False
) -> str | None:
    """What is wrong with one sample, or None. A test sample (``test``) has no class: ``y``
    -1, empty ``wnid`` and ``text``; any other names its wnid's class."""
    col = mds.columns(data, where)
    wnid, label, key = mds.as_str(col["wnid"]), mds.as_int(col["y"]), mds.as_str(col["key"])
    if test:
        if (label, wnid, mds.as_str(col["text"])) != (-1, "", ""):
            return (
                f"{where}: a test sample must have y -1 and no wnid or text, not {label}, {wnid!r}"
            )
    elif wnid not in synsets or synsets.index(wnid) != label:
        return f"{where}: class {label} is not {wnid}"
    filename = mds.as_str(col["filename"])
    if stem(filename) != key:
        return f"{where}: key {key!r} is not the stem of {filename!r}"
    boxes = json.loads(bytes(col["boxes"]))
    if not isinstance(boxes, list) or any(len(b) != 4 for b in boxes):
        return f"{where}: boxes are not [xmin, ymin, xmax, ymax] lists"
    if decode:
        from ...imagefix import decode_check

        size = (mds.as_int(col["width"]), mds.as_int(col["height"]))
        got = decode_check(bytes(col["x"]), f"{where} ({filename})")
        if got != size:
            return f"{where}: decodes to {got[0]}x{got[1]}, the sample says {size[0]}x{size[1]}"
    return None
