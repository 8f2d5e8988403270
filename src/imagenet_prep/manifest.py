"""The output's bookkeeping: ``OUT/manifest.json`` and the ``OUT/.imagenet-prep/`` folder.

This module alone reads and writes them. :class:`OutputState` owns the folder: the lock, the
journal of finished shards (typed lines, :class:`ShardResult`), the recorded options and
sources, the lists of planned outputs and of a user's files, the formats' per-shard parts and
the archive indexes' paths. Everything is written through a temporary name and renamed;
manifest.json is written last, so its presence means the build finished.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import io
import json
import logging
import os
import shutil
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

import xxhash

from .errors import DataError, ImagenetPrepError, UsageError
from .fsutil import (
    atomic_open,
    files_under,
    hash_file,
    read_bytes,
    remove_file,
    remove_tree,
    write_bytes_atomic,
)
from .storage import is_url

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
STATE_DIR = ".imagenet-prep"
OPTIONS_FILE = "options.json"
SOURCES_FILE = "sources.json"
LOCK_FILE = "lock"
OUTPUTS_FILE = "outputs.txt"
FOREIGN_FILE = "foreign.json"
# What formats keep per shard until the build joins it (removed once the manifest is written).
PARTS_DIR = "parts"
INDEX_DIR = "index"
# Each image's width and height as found in SRC, per split, when the build resized (kept).
SIZES_DIR = "sizes"
SPILL_DIR = "spill"


def state_dir(out: Path) -> Path:
    return out / STATE_DIR


def _dump(obj: Any) -> bytes:
    return (json.dumps(obj, indent=1, sort_keys=True) + "\n").encode("utf-8")


def write_json(path: Path, obj: Any) -> None:
    write_bytes_atomic(path, _dump(obj))


def read_json(path: Path) -> Any:
    """The JSON document at ``path`` (a local file or an object); None when it is missing."""
    try:
        data = read_bytes(path)
        return None if data is None else json.loads(data)
    except ImagenetPrepError:  # a store's one-line error (access denied, ...): as it is
        raise
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: unreadable ({exc})") from None


@dataclass(frozen=True)
class ShardResult:
    """What a finished shard reports back: a line of the journal, and the manifest's source."""

    shard: str
    split: str
    images: int
    bytes_in: int
    reencoded: list[list[str]]
    skipped: list[list[str]]
    outputs: dict[str, dict[str, Any]]
    # What reading the shard's images asked of an object store (0 for local files).
    requests: int = 0
    bytes_fetched: int = 0
    # What writing its outputs asked of an object store (0 for a local output).
    writes: int = 0
    bytes_stored: int = 0

    def to_record(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_record(cls, data: Any) -> ShardResult | None:
        """The result a journal line holds; None when it is not one (another version's)."""
        if not isinstance(data, dict):
            return None
        try:
            result = cls(**data)
        except TypeError:
            return None
        typed = (
            isinstance(result.shard, str)
            and isinstance(result.split, str)
            and isinstance(result.images, int)
            and isinstance(result.bytes_in, int)
            and isinstance(result.requests, int)
            and isinstance(result.bytes_fetched, int)
            and isinstance(result.writes, int)
            and isinstance(result.bytes_stored, int)
            and isinstance(result.reencoded, list)
            and isinstance(result.skipped, list)
            and isinstance(result.outputs, dict)
            and all(isinstance(o, dict) for o in result.outputs.values())
        )
        return result if typed else None


class Journal(Protocol):
    """The record of finished shards that a resume starts from: a file of lines here
    (:class:`FileJournal`), an object per shard in a store
    (:class:`~imagenet_prep.storestate.StoreJournal`)."""

    def load(self) -> dict[str, ShardResult]: ...

    def extend(self, results: Iterable[ShardResult]) -> None: ...

    def close(self) -> None: ...

    def remove(self) -> None: ...

    def forget(self, which: Callable[[ShardResult], bool]) -> None: ...


class Lock(Protocol):
    """One build per output at a time (:class:`BuildLock`; in a store,
    :class:`~imagenet_prep.storestate.StoreLock`)."""

    def __enter__(self) -> Lock: ...

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...


class FileJournal:
    """Done markers of finished shards: one JSON line each (:class:`ShardResult`), appended
    to one file.

    A line is appended only after the shard's files were renamed into place, so a line
    means the shard is finished. A crash can leave a torn last line; it is ignored (that
    shard is redone) and cut off before the next append. The journal is deleted once the
    manifest, which holds the same information, is written.
    """

    NAME = "journal.jsonl"

    def __init__(self, out: Path) -> None:
        self.path = state_dir(out) / self.NAME
        self._fd: int | None = None

    def load(self) -> dict[str, ShardResult]:
        """Every complete line, by shard name."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        results: dict[str, ShardResult] = {}
        for line in data.split(b"\n"):
            try:
                result = ShardResult.from_record(json.loads(line))
            except ValueError:
                continue  # a torn last line, or an empty one
            if result is not None:
                results[result.shard] = result
        return results

    def extend(self, results: Iterable[ShardResult]) -> None:
        """Append several lines with one write (the shards of one finished task)."""
        if self._fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
            size = os.fstat(self._fd).st_size
            if size and os.pread(self._fd, 1, size - 1) != b"\n":
                data = os.pread(self._fd, size, 0)
                os.ftruncate(self._fd, data.rfind(b"\n") + 1)
        os.write(self._fd, _lines(results))

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def remove(self) -> None:
        self.close()
        self.path.unlink(missing_ok=True)

    def forget(self, which: Callable[[ShardResult], bool]) -> None:
        """Strike the lines ``which`` selects (their shards will be made again)."""
        self.close()
        write_bytes_atomic(self.path, _lines(r for r in self.load().values() if not which(r)))


def _lines(results: Iterable[ShardResult]) -> bytes:
    lines = [json.dumps(r.to_record(), separators=(",", ":")) + "\n" for r in results]
    return "".join(lines).encode("utf-8")


# (field name, type) of every entry of manifest.json a reader may count on.
_REQUIRED: tuple[tuple[str, type], ...] = (
    ("tool", dict),
    ("created", str),
    ("options", dict),
    ("source", dict),
    ("splits", dict),
    ("labels", dict),
    ("formats", dict),
    ("downloads", list),
    ("warnings", list),
    ("reencoded", list),
    ("skipped", list),
)


@dataclass(frozen=True)
class Manifest:
    """``manifest.json``: what a finished build wrote (its format is :data:`FORMAT_VERSION`).

    The sections below the top level (each format's, each split's) are the formats' and the
    pipeline's own JSON; this class types and checks the top level.
    """

    tool: dict[str, Any]
    created: str
    options: dict[str, Any]
    source: dict[str, Any]
    splits: dict[str, dict[str, Any]]
    labels: dict[str, Any]
    formats: dict[str, dict[str, Any]]
    downloads: list[dict[str, Any]]
    warnings: list[str]
    reencoded: list[dict[str, str]]
    skipped: list[dict[str, str]]
    bounding_boxes: dict[str, Any] | None = None  # when SRC has box XMLs
    validation_bounding_boxes: dict[str, Any] | None = None  # with --validation-boxes
    # "shipped", "devkit" or Kaggle's "LOC_val_solution.csv", with a validation split
    validation_labels: str | None = None
    # The run that finished the build: seconds per phase, workers, shards run and reused
    timings: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        data = {"format_version": FORMAT_VERSION, **asdict(self)}
        return {k: v for k, v in data.items() if v is not None}

    @classmethod
    def from_json(cls, data: Any, path: Path) -> Manifest:
        if not isinstance(data, dict) or data.get("format_version") != FORMAT_VERSION:
            raise DataError(f"{path}: not an imagenet-prep manifest of format {FORMAT_VERSION}")
        for name, kind in _REQUIRED:
            if not isinstance(data.get(name), kind):
                raise DataError(f"{path}: damaged manifest ({name!r} is not a {kind.__name__})")
        return cls(
            **{name: data[name] for name, _kind in _REQUIRED},
            bounding_boxes=data.get("bounding_boxes"),
            validation_bounding_boxes=data.get("validation_bounding_boxes"),
            validation_labels=data.get("validation_labels"),
            timings=data["timings"] if isinstance(data.get("timings"), dict) else None,
        )


def write_manifest(out: Path, manifest: Manifest) -> None:
    write_json(out / MANIFEST, manifest.to_json())


def read_manifest(out: Path) -> Manifest:
    path = out / MANIFEST
    data = read_json(path)
    if data is None:
        raise DataError(
            f"{path}: no manifest (the build did not finish, or this is no build output)"
        )
    return Manifest.from_json(data, path)


class BuildLock:
    """One build per output folder: an exclusive ``flock`` on ``OUT/.imagenet-prep/lock``.

    The kernel drops the lock when the holding process ends, however it ends, so a lock left
    by a killed build never blocks the rerun. The file keeps the holder's process id, to name
    it when a second build is refused.
    """

    def __init__(self, out: Path) -> None:
        self.out = out
        self.path = state_dir(out) / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise UsageError(
                f"{self.out}: cannot write to the output folder ({exc.strerror})"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.pread(fd, 64, 0).decode("ascii", "replace").split("\n", 1)[0].strip()
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise UsageError(
                    f"{self.path}: cannot lock the output folder ({exc.strerror})"
                ) from None
            who = f"process {holder}" if holder.isdigit() else "another process"
            raise UsageError(
                f"{self.out}: another build is writing to this folder ({who}); wait for it to "
                "end, or choose another output folder"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            # Emptied, so that a finished build leaves the same bytes however it ran; the
            # file itself stays (removing it would let two builds lock two different files).
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing the only descriptor drops the lock
            self._fd = None

    def __enter__(self) -> BuildLock:
        self.acquire()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


@dataclass(frozen=True)
class RecordedOptions:
    """What decides a build's bytes, recorded before its first shard: the options
    (``BuildConfig.output_options``) and the input archives by name and size. A later run
    resumes only a build recorded with equal ones."""

    options: dict[str, Any]
    source_archives: dict[str, int]

    def to_json(self) -> dict[str, Any]:
        return {**self.options, "source_archives": self.source_archives}

    @classmethod
    def from_json(cls, data: Any) -> RecordedOptions | None:
        if not isinstance(data, dict) or not isinstance(data.get("source_archives"), dict):
            return None
        options = {k: v for k, v in data.items() if k != "source_archives"}
        return cls(options, dict(data["source_archives"]))

    def differences(self, other: RecordedOptions | None) -> list[str]:
        """The names of what differs from ``other`` (every option when it is unreadable)."""
        mine = self.to_json()
        theirs = other.to_json() if other is not None else {}
        return sorted(k for k in mine.keys() | theirs.keys() if mine.get(k) != theirs.get(k))


# An input file as a run saw it: name, size, modification time (ns).
FileIdentity = tuple[str, int, int]


@dataclass(frozen=True)
class RecordedSources:
    """The archives each split's shards were made from (the training shards also carry the
    boxes), by name, size and modification time: a resume remakes the shards of a split whose
    archives changed although their names and sizes did not."""

    splits: dict[str, tuple[FileIdentity, ...]]

    def to_json(self) -> dict[str, list[list[Any]]]:
        return {split: [list(f) for f in files] for split, files in self.splits.items()}

    @classmethod
    def from_json(cls, data: Any) -> RecordedSources:
        splits: dict[str, tuple[FileIdentity, ...]] = {}
        if isinstance(data, dict):
            for split, files in data.items():
                try:
                    splits[split] = tuple((str(n), int(s), int(t)) for n, s, t in files)
                except (TypeError, ValueError):
                    continue
        return cls(splits)


@dataclass(frozen=True)
class OriginalSizes:
    """Each image's width and height as found in SRC (after the CMYK/PNG fixes, before
    ``--resize-*``), by key: what a resized build can no longer read from its records.

    A shard's part is text, a line ``key<TAB>width<TAB>height`` per image; a split's file is
    Parquet (columns ``key``, ``width``, ``height``; sorted by key), about 6 bytes per image.
    """

    keys: tuple[str, ...]
    widths: tuple[int, ...]
    heights: tuple[int, ...]

    @classmethod
    def of(cls, rows: Iterable[tuple[str, int, int]]) -> OriginalSizes:
        """From ``(key, width, height)`` rows.

        >>> OriginalSizes.of([("a", 500, 375)]).part_bytes()
        b'a\\t500\\t375\\n'
        """
        listed = list(rows)
        return cls(
            tuple(k for k, _, _ in listed),
            tuple(w for _, w, _ in listed),
            tuple(h for _, _, h in listed),
        )

    def __len__(self) -> int:
        return len(self.keys)

    @staticmethod
    def part_line(key: str, width: int, height: int) -> bytes:
        """One image's line of a shard's part.

        >>> OriginalSizes.part_line("a", 500, 375)
        b'a\\t500\\t375\\n'
        """
        return f"{key}\t{width}\t{height}\n".encode()

    def part_bytes(self) -> bytes:
        rows = zip(self.keys, self.widths, self.heights, strict=True)
        return b"".join(self.part_line(k, w, h) for k, w, h in rows)

    def parquet_bytes(self) -> bytes:
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.table(
            {
                "key": pa.array(self.keys, pa.string()),
                "width": pa.array(self.widths, pa.int32()),
                "height": pa.array(self.heights, pa.int32()),
            }
        )
        buffer = io.BytesIO()
        pq.write_table(table, buffer, compression="zstd")
        return buffer.getvalue()

    @classmethod
    def from_parquet(cls, data: bytes, where: Path) -> OriginalSizes:
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(pa.BufferReader(data), columns=["key", "width", "height"])
        except (pa.ArrowException, OSError, ValueError) as exc:
            raise DataError(f"{where}: unreadable ({exc})") from None
        return cls(
            tuple(table.column("key").to_pylist()),
            tuple(table.column("width").to_pylist()),
            tuple(table.column("height").to_pylist()),
        )


def _no_sizes() -> Any:
    """The original sizes' Arrow table with no row."""
    import pyarrow as pa

    schema = pa.schema([("key", pa.string()), ("width", pa.int32()), ("height", pa.int32())])
    return schema.empty_table()


def _sizes_part_table(data: bytes, where: str) -> Any:
    """A shard's part of the original sizes (``key<TAB>width<TAB>height`` lines) as an Arrow
    table; ``where`` names it in the error when it is not one."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    try:
        return pacsv.read_csv(
            pa.BufferReader(data),
            read_options=pacsv.ReadOptions(column_names=["key", "width", "height"]),
            parse_options=pacsv.ParseOptions(delimiter="\t", quote_char=False),
            convert_options=pacsv.ConvertOptions(
                column_types={"key": pa.string(), "width": pa.int32(), "height": pa.int32()},
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except (pa.ArrowException, ValueError):
        raise DataError(f"{where}: not a shard's original sizes") from None


def _local_cache(url: str) -> Path:
    """This machine's cache folder for the output at ``url`` (``$XDG_CACHE_HOME`` or
    ``~/.cache``, then ``imagenet-prep/<hash of the URL>``)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    name = xxhash.xxh3_64_hexdigest(url.encode("utf-8"))
    return Path(base) / "imagenet-prep" / name


class OutputState:
    """``OUT/.imagenet-prep/``: what a build keeps besides its outputs, and the one way to
    read and write it."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.root = state_dir(out)
        # What is read by seeking and memory-mapping (a tar.gz archive's seek points, its
        # unpacked copy) stays on a local disk: for an output in an object store, a cache
        # folder of this machine's, named after the output.
        self.local = self.root if not is_url(out) else _local_cache(str(out))

    def lock(self) -> Lock:
        if is_url(self.out):
            from .storestate import StoreLock

            return StoreLock(self.out, self.root)
        return BuildLock(self.out)

    def journal(self) -> Journal:
        if is_url(self.out):
            from .storestate import StoreJournal

            return StoreJournal(self.root)
        return FileJournal(self.out)

    # -- recorded options and sources --

    def read_options(self) -> RecordedOptions | None:
        """The options an earlier run recorded; None when none did (an unreadable record
        reads as options that match nothing)."""
        try:
            data = read_json(self.root / OPTIONS_FILE)
        except DataError:
            return RecordedOptions({}, {})
        if data is None:
            return None
        return RecordedOptions.from_json(data) or RecordedOptions({}, {})

    def write_options(self, options: RecordedOptions) -> None:
        write_json(self.root / OPTIONS_FILE, options.to_json())

    def read_sources(self) -> RecordedSources:
        try:
            return RecordedSources.from_json(read_json(self.root / SOURCES_FILE))
        except DataError:
            return RecordedSources({})

    def write_sources(self, sources: RecordedSources) -> None:
        write_json(self.root / SOURCES_FILE, sources.to_json())

    # -- paths of what other modules keep here --

    def index_file(self, archive_name: str) -> Path:
        """Where the index of the input archive ``archive_name`` is kept."""
        return self.root / INDEX_DIR / f"{archive_name}.idx"

    def spill_file(self, name: str) -> Path:
        """Where a source spills the images it cannot read by offset where they lie (the
        Parquet files' row groups), to be read by offset until the build is finished."""
        return self.root / SPILL_DIR / name

    def seek_points_file(self, archive_name: str) -> Path:
        """Where the seek points of the tar.gz archive ``archive_name`` are kept (locally)."""
        return self.local / INDEX_DIR / f"{archive_name}.idx"

    def unpacked_file(self, name: str) -> Path:
        """Where a tar.gz archive is kept unpacked until the build is finished (locally)."""
        return self.local / SPILL_DIR / name

    def remove_spill(self) -> None:
        remove_tree(self.root / SPILL_DIR)
        if self.local != self.root:
            remove_tree(self.local / SPILL_DIR)

    def part_file(self, fmt: str, shard: str) -> Path:
        """Where format ``fmt`` keeps what shard ``shard`` adds to a file it writes at the end."""
        return self.root / PARTS_DIR / fmt / shard

    def remove_parts(self) -> None:
        remove_tree(self.root / PARTS_DIR)

    # -- the original sizes of a resized build's images --

    def write_sizes_part(self, shard: str, sizes: OriginalSizes | bytes | bytearray) -> None:
        """Keep a shard's original sizes (or its part's bytes) until :meth:`join_sizes`
        (called by its worker)."""
        data = sizes.part_bytes() if isinstance(sizes, OriginalSizes) else sizes
        write_bytes_atomic(self.root / PARTS_DIR / SIZES_DIR / shard, data)

    def join_sizes(self, split: str, shards: Iterable[str]) -> int:
        """Join the parts of ``shards`` into the split's sizes file (sorted by key, kept after
        the build); the number of images it holds. A shard without a part (finished by a
        version that kept none) is logged and left out.

        The parts are read as Arrow columns, joined and sorted there (about 30 bytes an
        image: 1.28 million as Python tuples of ``str`` and ``int`` cost 250 MB).
        """
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        tables = []
        missing = []
        for shard in shards:
            data = read_bytes(self.root / PARTS_DIR / SIZES_DIR / shard)
            if data is None:
                missing.append(shard)
            elif data:
                tables.append(_sizes_part_table(data, shard))
        if missing:
            log.warning(
                "%s: the original sizes of %d shards are missing (%s, ...); the report shows "
                "the others",
                split,
                len(missing),
                missing[0],
            )
        joined = pa.concat_tables(tables) if tables else _no_sizes()
        del tables
        joined = joined.take(pc.sort_indices(joined, [("key", "ascending")]))
        buffer = io.BytesIO()
        pq.write_table(joined, buffer, compression="zstd")
        write_bytes_atomic(self.sizes_file(split), buffer.getvalue())
        return int(joined.num_rows)

    def sizes_file(self, split: str) -> Path:
        return self.root / SIZES_DIR / f"{split}.parquet"

    def read_sizes(self, split: str) -> OriginalSizes | None:
        """The split's original sizes; None when the build kept none (it did not resize)."""
        data = read_bytes(self.sizes_file(split))
        return None if data is None else OriginalSizes.from_parquet(data, self.sizes_file(split))

    # -- the whole folder --

    def holds_only_lock(self) -> bool:
        """True when the folder is absent, or holds nothing but the lock file."""
        if is_url(self.out):
            from .storestate import LOCK_OBJECTS

            return set(files_under(self.root)) <= set(LOCK_OBJECTS)
        if not self.root.is_dir():
            return not self.root.exists()
        return all(entry.name == LOCK_FILE for entry in self.root.iterdir())

    def clear(self) -> None:
        """Remove everything but the lock (held by the caller)."""
        if is_url(self.out):
            from .storestate import LOCK_OBJECTS

            for name in files_under(self.root):
                if name not in LOCK_OBJECTS:
                    remove_file(self.root / name)
            return
        for entry in list(self.root.iterdir()) if self.root.is_dir() else []:
            if entry.name == LOCK_FILE:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()

    # -- the lists of planned outputs and of a user's files --

    def read_outputs(self) -> list[str] | None:
        """The files an earlier build in OUT wrote or was going to write (relative paths),
        as it recorded them before its first shard; None when it recorded none."""
        path = self.root / OUTPUTS_FILE
        try:
            raw = read_bytes(path)
            if raw is None:
                return None
            data = raw.decode("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise DataError(f"{path}: unreadable ({exc})") from None
        return [line for line in data.split("\n") if line]

    def record_outputs(self, paths: Iterable[str]) -> None:
        """Record the files this build writes, before its first shard, and keep those an
        earlier run recorded when they differ (a resume after the download changed).
        Streamed: the list of an ImageFolder build has a line per image."""
        path = self.root / OUTPUTS_FILE
        new = xxhash.xxh3_128()
        earlier = read_bytes(path) if is_url(path) else None  # a store's object cannot be reopened
        with atomic_open(path) as f:
            batch: list[str] = []
            for name in paths:
                batch.append(name + "\n")
                if len(batch) >= 4096:
                    data = "".join(batch).encode("utf-8")
                    new.update(data)
                    f.write(data)
                    batch.clear()
            data = "".join(batch).encode("utf-8")
            new.update(data)
            f.write(data)
            if is_url(path):
                if earlier is not None and xxhash.xxh3_128_hexdigest(earlier) != new.hexdigest():
                    f.write(earlier)
                return
            try:
                old = open(path, "rb")  # noqa: SIM115 - closed below
            except FileNotFoundError:
                return
            with old:
                if hash_file(path)[1] != new.hexdigest():
                    shutil.copyfileobj(old, f)

    def record_foreign(self, paths: list[str]) -> None:
        """Keep the files of someone else's that ``--overwrite`` left in OUT (relative paths)."""
        write_json(self.root / FOREIGN_FILE, paths)

    def read_foreign(self) -> list[str]:
        """The files :meth:`record_foreign` kept; none when it never ran."""
        data = read_json(self.root / FOREIGN_FILE)
        return [str(p) for p in data] if isinstance(data, list) else []
