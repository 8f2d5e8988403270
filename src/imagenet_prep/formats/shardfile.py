"""What the sharded file formats (TFRecord, WebDataset) share: writing and checking a shard.

A shard is written under a temporary name through a hashing writer; ``finish`` writes its
optional index file, renames the shard into place and returns the manifest entry.

DALI index files live apart from the shards, in ``OUT/dali-index/<format>/<shard file>.idx``:
beside the shards, the glob that TensorFlow input code uses (``train-*``) would match them.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO, cast

import xxhash

from ..errors import DataError
from ..fsutil import (
    HashingWriter,
    file_size,
    files_under,
    hash_file,
    temp_name,
    write_bytes_atomic,
    xxh3_of,
)
from ..plan import ShardSpec
from ..storage import STREAM_BLOCK, Upload, is_url, open_store
from .base import SinkOptions, VerifyReport
from .spec import DALI_DIR

#: A shard written to an object store goes out in parts of this size (S3 needs at least
#: 5 MiB a part and allows 10,000: objects up to 160 GB), one part buffered per open shard.
UPLOAD_PART = 16 << 20


def dali_index_file(dirname: str, shard: str) -> str:
    """Where (relative to OUT) the DALI index of shard file ``shard`` of a format goes.

    >>> dali_index_file("tfrecord", "train-00000-of-00004")
    'dali-index/tfrecord/train-00000-of-00004.idx'
    >>> dali_index_file("webdataset", "validation-000001.tar")
    'dali-index/webdataset/validation-000001.tar.idx'
    """
    return f"{DALI_DIR}/{dirname}/{shard}.idx"


class ShardFile:
    """One shard file being written: ``out`` takes the bytes, ``finish`` or ``abort`` ends it.

    ``root`` is OUT; the shard goes to ``root/dirname/name``: locally under a temporary name
    renamed by ``finish``; in an object store as a multipart upload that ``finish``
    completes (streamed part by part, never staged whole) and ``abort`` discards.
    """

    def __init__(self, root: Path, dirname: str, name: str) -> None:
        self.path = root / dirname / name
        self._root = root
        self._dirname = dirname
        self._upload: Upload | None = None
        if is_url(self.path):
            self._upload = open_store(str(self.path)).upload(str(self.path), UPLOAD_PART)
            self.out = HashingWriter(cast(BinaryIO, self._upload), limit=UPLOAD_PART)
            return
        self._tmp = temp_name(self.path)
        try:
            self._file: BinaryIO = open(self._tmp, "wb", buffering=0)  # noqa: SIM115
        except FileNotFoundError:  # the format's first shard: make its folder (only then)
            self._tmp.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self._tmp, "wb", buffering=0)  # noqa: SIM115
        self.out = HashingWriter(self._file)

    def finish(self, records: int, index: bytes | None = None) -> dict[str, Any]:
        """Close, write the DALI index file (if any), rename into place; the manifest entry."""
        self.out.flush()
        if self._upload is None:
            self._file.close()
        entry: dict[str, Any] = {
            "file": f"{self._dirname}/{self.path.name}",
            "records": records,
            "bytes": self.out.nbytes,
            "xxh3_128": self.out.hexdigest(),
        }
        if index is not None:
            name = dali_index_file(self._dirname, self.path.name)
            write_bytes_atomic(self._root / name, index)
            entry["index"] = {"file": name, "bytes": len(index), "xxh3_128": xxh3_of(index)}
        if self._upload is not None:
            self._upload.commit()
        else:
            os.replace(self._tmp, self.path)
        return entry

    def abort(self) -> None:
        if self._upload is not None:
            self._upload.abort()
            return
        self._file.close()
        self._tmp.unlink(missing_ok=True)


def write_side_file(out: Path, relpath: str, data: bytes) -> dict[str, Any]:
    """Write a file that a format keeps beside its shards (a dataset card, a reader's info
    file) through a temporary name; its manifest entry."""
    write_bytes_atomic(out / relpath, data)
    return {"file": relpath, "bytes": len(data), "xxh3_128": xxh3_of(data)}


def check_side_files(out: Path, section: dict[str, Any]) -> list[str]:
    """Size and checksum of each file a format's section lists under ``side_files``."""
    return [
        problem
        for entry in section.get("side_files", ())
        for problem in check_file(out / entry["file"], entry)
    ]


def finalize_shards(results: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    """A format's manifest section from its shards' entries."""
    shards = sorted(results, key=lambda r: r["file"])
    return {
        **extra,
        "records": sum(r["records"] for r in shards),
        "bytes": sum(r["bytes"] for r in shards),
        "shards": shards,
    }


def check_file(path: Path, entry: dict[str, Any]) -> list[str]:
    """Size and checksum of a listed file against its manifest entry."""
    if file_size(path) is None:
        return [f"{path}: missing"]
    size, digest = hash_file(path)
    if size != entry["bytes"] or digest != entry["xxh3_128"]:
        return [
            f"{path}: {size} bytes with checksum {digest}, the manifest says {entry['bytes']} "
            f"bytes with {entry['xxh3_128']}"
        ]
    return []


def check_index(
    out: Path, shard: dict[str, Any], local: Path, expected: Callable[[Path], Iterable[bytes]]
) -> list[str]:
    """A shard's index file: listed checksum, and equal to the index computed from the shard
    (read from ``local``, the shard's path or its copy fetched from a store).

    ``expected`` yields the computed index in pieces; they are compared with the file block
    by block, so that neither is held whole (a shard of small images has an index of tens
    of MB)."""
    entry = shard["index"]
    path = out / entry["file"]
    problems = check_file(path, entry)
    if problems:
        return problems
    try:
        same = _same_bytes(path, int(entry["bytes"]), expected(local))
    except DataError as exc:
        return [str(exc)]
    return [] if same else [f"{path}: does not match its shard"]


#: How much of a computed index is compared with its file at a time.
_COMPARE_BLOCK = 1 << 20


def _same_bytes(path: Path, size: int, pieces: Iterable[bytes]) -> bool:
    """Whether the file (or object) at ``path``, of ``size`` bytes, holds exactly ``pieces``
    joined. ``pieces`` is read to its end whatever the answer: a damaged shard's DataError
    comes out of it as it would from computing the index whole."""
    same = True
    with contextlib.ExitStack() as stack:
        if is_url(path):
            f: Any = stack.enter_context(open_store(str(path)).stream(str(path), size))
        else:
            f = stack.enter_context(open(path, "rb"))
        block = bytearray()
        for piece in pieces:
            block += piece
            if len(block) >= _COMPARE_BLOCK:
                same = same and f.read(len(block)) == block
                block.clear()
        same = same and f.read(len(block)) == block and not f.read(1)
    return same


def unlisted(
    out: Path, dirname: str, shards: Iterable[dict[str, Any]], foreign: Iterable[str] = ()
) -> list[str]:
    """Files in a format's folder and in its DALI index folder that the manifest does not list
    (nor as ``foreign``: a user's files that ``--overwrite`` left alone). A subfolder is looked
    into when listed files lie in it (MDS keeps a folder per split), and named otherwise."""
    listed = set(foreign)
    for shard in shards:
        listed.add(shard["file"])
        if "index" in shard:
            listed.add(shard["index"]["file"])
    parents = {path.rsplit("/", n)[0] for path in listed for n in range(1, path.count("/"))}
    problems: list[str] = []
    if is_url(out):  # a store has no folders: every object under the prefixes, by name
        for folder in (dirname, f"{DALI_DIR}/{dirname}"):
            problems.extend(
                f"{out / folder / name}: not listed in the manifest"
                for name in files_under(out / folder)
                if f"{folder}/{name}" not in listed
            )
        return problems

    def walk(folder: str) -> None:
        root = out / folder
        for name in sorted(os.listdir(root)):
            path = f"{folder}/{name}"
            if path in parents and (root / name).is_dir():
                walk(path)
            elif path not in listed:
                problems.append(f"{root / name}: not listed in the manifest")

    for folder in (dirname, f"{DALI_DIR}/{dirname}"):
        if (out / folder).is_dir():
            walk(folder)
    return problems


class ShardedSink:
    """What the writers of sharded formats share: their folder, the files a shard plans
    (the shard and its DALI index), and the frame of ``verify`` (each listed shard, the side
    files, nothing unlisted). A format says how it names and checks a shard."""

    name: str
    dirname: str

    def __init__(self, options: SinkOptions) -> None:
        self.options = options
        self.root = options.out / self.dirname

    def shard_name(self, spec: ShardSpec) -> str:
        return spec.name

    def planned_files(self, spec: ShardSpec, images: Iterable[tuple[str, str]]) -> Iterator[str]:
        name = self.shard_name(spec)
        yield f"{self.dirname}/{name}"
        if self.options.dali_index:
            yield dali_index_file(self.dirname, name)

    def side_files(self, splits: Sequence[str]) -> Iterator[str]:
        return iter(())

    def check_shard(
        self, shard: dict[str, Any], section: dict[str, Any], *, decode: bool
    ) -> VerifyReport:
        raise NotImplementedError

    def verify(self, section: dict[str, Any], *, decode: bool) -> VerifyReport:
        report = VerifyReport()
        for shard in section["shards"]:
            report.extend(self.check_shard(shard, section, decode=decode))
        listed = [*section["shards"], *section.get("side_files", ())]
        report.problems.extend(check_side_files(self.options.out, section))
        report.problems.extend(
            unlisted(self.options.out, self.dirname, listed, section.get("foreign", ()))
        )
        return report


class ShardedWriter:
    """What the shard writers of sharded formats share: the shard file under a temporary
    name, the record count, the lines of the DALI index (when asked for), commit and abort.
    A format adds its records (``add``) and says how its DALI index reads."""

    def __init__(self, options: SinkOptions, dirname: str, name: str) -> None:
        self._shard = ShardFile(options.out, dirname, name)
        self.path = self._shard.path
        self._dali = options.dali_index
        self._index: list[str] = []
        self.records = 0

    def index_bytes(self) -> bytes:
        """The shard's DALI index, from the lines its records added."""
        raise NotImplementedError

    def close(self) -> None:
        """Write what the format keeps until the end (a tar's end marker)."""

    def commit(self) -> dict[str, Any]:
        self.close()
        return self._shard.finish(self.records, self.index_bytes() if self._dali else None)

    def abort(self) -> None:
        self._shard.abort()


@contextlib.contextmanager
def checking(out: Path, shard: dict[str, Any]) -> Iterator[tuple[VerifyReport, Path | None]]:
    """A shard's check: its size and checksum against its manifest entry, and a local path to
    read its records from (None when the file is missing).

    A shard in an object store is fetched once, in large blocks, into a temporary file that
    is hashed as it arrives and deleted when the check ends (one shard at a time, never
    the whole output); the problems found name the shard's URL, not the copy.
    """
    report = VerifyReport(checked=1)
    path = out / shard["file"]
    if not is_url(path):
        report.problems.extend(check_file(path, shard))
        yield report, (path if path.is_file() else None)
        return
    with tempfile.TemporaryDirectory(prefix="imagenet-prep-verify-") as tmp:
        local = Path(tmp) / path.name
        fetched = fetch(path, local)
        if fetched is None:
            report.problems.append(f"{path}: missing")
            yield report, None
            return
        size, digest = fetched
        if size != shard["bytes"] or digest != shard["xxh3_128"]:
            report.problems.append(
                f"{path}: {size} bytes with checksum {digest}, the manifest says "
                f"{shard['bytes']} bytes with {shard['xxh3_128']}"
            )
        try:
            yield report, local
        finally:
            report.problems[:] = [p.replace(str(local), str(path)) for p in report.problems]


def fetch(url: Path, local: Path) -> tuple[int, str] | None:
    """Copy an object to the local file ``local`` in large blocks, hashing it on the way;
    its (size, XXH3-128), or None when there is no such object."""
    known = file_size(url)
    if known is None:
        return None
    h = xxhash.xxh3_128()
    size = 0
    with open_store(str(url)).stream(str(url), known) as stream, open(local, "wb") as f:
        while block := stream.read(STREAM_BLOCK):
            h.update(block)
            f.write(block)
            size += len(block)
    return size, h.hexdigest()
