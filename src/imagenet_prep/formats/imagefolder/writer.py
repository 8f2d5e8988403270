"""ImageFolder: ``OUT/imagefolder/{train,val}/<wnid>/<file>``, the original bytes.

(With ``--resize-*``, the resized copy of each image that was larger than the size.)

This is the layout torchvision's ``ImageFolder`` and ``ImageNet`` datasets read. The
manifest keeps, per class folder, a count, a byte total and an order-independent digest
(the sum of the XXH3-128 of each file's relative path and bytes), not 1.3 million entries.
Test images have no class: they lie flat in ``OUT/imagefolder/test/``, which the manifest
keeps as one folder (``test``) of its own.

For Hugging Face ``datasets``, ``finalize`` also writes ``README.md`` (a dataset card: splits
and explicit features) and, per split folder, ``metadata.parquet`` (one row per image: its
path in the folder, 0-based label (-1 for a test image), size and boxes), which torchvision
ignores (it lists only folders). Each shard writes its rows as JSON lines to the bookkeeping
folder as it goes; they are joined in shard order at the end, so a resumed build needs
nothing from the shards it reuses.
"""

from __future__ import annotations

import errno
import io
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import xxhash

from ...errors import DataError
from ...fsutil import (
    atomic_open,
    files_under,
    hash_file,
    read_bytes,
    temp_name,
    write_bytes_atomic,
)
from ...manifest import OutputState
from ...plan import ShardSpec
from ...sample import Sample
from ...storage import is_url, open_store
from .. import hfcard
from ..base import SinkOptions, VerifyReport
from ..shardfile import check_side_files, write_side_file

DIRNAME = "imagefolder"
SPLIT_DIRS = {"train": "train", "validation": "val", "test": "test"}
#: Images to an object store go out this many at a time (or this many bytes), their PUTs
#: sent together; verify reads them back in batches as large.
PUT_BATCH = 256
PUT_BATCH_BYTES = 32 << 20
FLAT = frozenset({"test"})  # the splits without classes: their images lie in the split folder
CARD = "README.md"
_MOD = 1 << 128


def file_digest(relpath: str, data: bytes) -> int:
    """The digest of one file; class digests are sums of these modulo 2**128."""
    h = xxhash.xxh3_128(relpath.encode("utf-8"))
    h.update(b"\0")
    h.update(data)
    return h.intdigest()


class ClassTotals:
    """Count, bytes and digest per class folder, combinable in any order."""

    def __init__(self) -> None:
        self.counts: dict[str, list[int]] = {}

    def add(self, folder: str, nbytes: int, digest: int) -> None:
        entry = self.counts.setdefault(folder, [0, 0, 0])
        entry[0] += 1
        entry[1] += nbytes
        entry[2] = (entry[2] + digest) % _MOD

    def merge(self, folder: str, count: int, nbytes: int, digest_hex: str) -> None:
        entry = self.counts.setdefault(folder, [0, 0, 0])
        entry[0] += count
        entry[1] += nbytes
        entry[2] = (entry[2] + int(digest_hex, 16)) % _MOD

    def as_dict(self) -> dict[str, dict[str, Any]]:
        return {
            folder: {"count": c, "bytes": b, "digest": f"{d:032x}"}
            for folder, (c, b, d) in sorted(self.counts.items())
        }


def classes_part(part: Path) -> Path:
    """Where the class totals of the shard whose metadata lines are ``part`` are kept."""
    return part.with_name(part.name.removesuffix(".jsonl") + ".classes.json")


class ImageFolderShardWriter:
    """Write each image of a shard into its class folder (each file atomically).

    With ``link``, an image that is a file of its own in SRC (an extracted tree) whose
    bytes are written unchanged is hard-linked instead of copied, when SRC and OUT share
    a file system; otherwise it is copied.
    """

    def __init__(self, root: Path, part: Path, link: bool = False) -> None:
        self.root = root
        self.part = part
        self.link = link
        self.totals = ClassTotals()
        self._made: set[Path] = set()
        self._lines: list[bytes] = []
        # In an object store: images are PUT in batches, one request each, sent together.
        self._store = open_store(str(root)) if is_url(root) else None
        self._batch: dict[str, bytes] = {}
        self._batch_bytes = 0

    def add(self, sample: Sample) -> None:
        ref = sample.ref
        folder = image_folder(ref.split, ref.wnid)
        relpath = f"{folder}/{ref.filename}"
        target = self.root / relpath
        # The original bytes, or the resized copy when the build resizes this image.
        data = sample.data if sample.resized else sample.raw
        if self._store is not None:
            self._put(str(target), data)
            self._record(sample, folder, relpath, data)
            return
        if target.parent not in self._made:
            target.parent.mkdir(parents=True, exist_ok=True)
            self._made.add(target.parent)
        linked = (
            self.link
            and not sample.resized
            and ref.standalone
            and _link_atomic(Path(ref.path), target)
        )
        if not linked:
            write_bytes_atomic(target, data)
        self._record(sample, folder, relpath, data)

    def _record(self, sample: Sample, folder: str, relpath: str, data: bytes) -> None:
        ref = sample.ref
        self.totals.add(folder, len(data), file_digest(relpath, data))
        self._lines.append(
            hfcard.metadata_line(
                relpath.split("/", 1)[1],  # relative to the split folder
                ref.label,
                ref.wnid,
                sample.width,
                sample.height,
                [(b.xmin, b.ymin, b.xmax, b.ymax) for b in ref.boxes],
            )
        )

    def _put(self, url: str, data: bytes) -> None:
        self._batch[url] = bytes(data)
        self._batch_bytes += len(data)
        if len(self._batch) >= PUT_BATCH or self._batch_bytes >= PUT_BATCH_BYTES:
            self._flush()

    def _flush(self) -> None:
        if self._store is not None and self._batch:
            self._store.put_many(self._batch)
        self._batch = {}
        self._batch_bytes = 0

    def commit(self) -> dict[str, Any]:
        """Write the shard's metadata lines and its class totals into the bookkeeping folder;
        the result carries their names and the shard's totals. The class totals stay out of
        the result: a shard of the shuffled training split holds images of most of the 1,000
        classes, and 1,024 shards' totals kept by the build until the manifest cost it
        about 400 MB."""
        self._flush()
        write_bytes_atomic(self.part, b"".join(self._lines))
        classes = self.totals.as_dict()
        write_bytes_atomic(classes_part(self.part), json.dumps(classes).encode("utf-8"))
        return {
            "part": self.part.name,
            "files": sum(c["count"] for c in classes.values()),
            "bytes": sum(c["bytes"] for c in classes.values()),
        }

    def abort(self) -> None:
        """Finished files stay: they are complete, and a rerun rewrites the same bytes."""


def _count_image(
    folder: str,
    relpath: str,
    data: bytes,
    where: str,
    found: ClassTotals,
    report: VerifyReport,
    decode: bool,
) -> None:
    """Add one image read back by verify to its folder's totals; decode it when asked."""
    found.add(folder, len(data), file_digest(relpath, data))
    report.records += 1
    if decode:
        from ...imagefix import decode_check

        try:
            decode_check(data, where)
        except DataError as exc:
            report.problems.append(str(exc))


def image_folder(split: str, wnid: str) -> str:
    """The folder (relative to ``OUT/imagefolder``) that holds an image of ``split``
    and class ``wnid``: its class folder, or for the test split the split folder itself.

    >>> image_folder("validation", "n01440764"), image_folder("test", "")
    ('val/n01440764', 'test')
    """
    if split in FLAT:
        return SPLIT_DIRS[split]
    return f"{SPLIT_DIRS[split]}/{wnid}"


def _link_atomic(source: Path, target: Path) -> bool:
    """Hard-link ``source`` at ``target`` through a temporary name; False if it cannot be."""
    tmp = temp_name(target)
    tmp.unlink(missing_ok=True)
    try:
        os.link(source, tmp)
    except OSError as exc:
        if exc.errno in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
            return False
        raise DataError(f"{target}: cannot link to {source} ({exc.strerror})") from None
    os.replace(tmp, target)
    return True


class ImageFolderSink:
    """The ``imagefolder`` format."""

    name = "imagefolder"

    def __init__(self, options: SinkOptions) -> None:
        self.options = options
        self.root = options.out / DIRNAME

    def open_shard(self, spec: ShardSpec) -> ImageFolderShardWriter:
        # The shard's metadata lines wait in the bookkeeping folder until the build joins them.
        part = OutputState(self.options.out).part_file(DIRNAME, f"{spec.name}.jsonl")
        return ImageFolderShardWriter(self.root, part, link=self.options.link)

    def finalize(self, results: list[dict[str, Any]]) -> dict[str, Any]:
        totals = ClassTotals()
        state = OutputState(self.options.out)
        for result in results:
            classes = result.get("classes")  # in the result itself (an earlier version's)
            if classes is None:
                classes = self._read_classes(classes_part(state.part_file(DIRNAME, result["part"])))
            for folder, entry in classes.items():
                totals.merge(folder, entry["count"], entry["bytes"], entry["digest"])
        classes = totals.as_dict()
        splits = sorted({r["part"].split("-", 1)[0] for r in results}, key=list(SPLIT_DIRS).index)
        files = [self._join_parts(split, results) for split in splits]
        card = hfcard.imagefolder_card({split: SPLIT_DIRS[split] for split in splits})
        files.append(write_side_file(self.options.out, f"{DIRNAME}/{CARD}", card.encode()))
        return {
            "files": sum(c["count"] for c in classes.values()),
            "bytes": sum(c["bytes"] for c in classes.values()),
            "classes": classes,
            "side_files": files,
        }

    @staticmethod
    def _read_classes(path: Path) -> dict[str, dict[str, Any]]:
        data = read_bytes(path)
        if data is None:
            raise DataError(f"{path}: missing (a shard's class totals); rebuild with --overwrite")
        try:
            classes = json.loads(data)
        except ValueError:
            classes = None
        if not isinstance(classes, dict):
            raise DataError(f"{path}: not a shard's class totals; rebuild with --overwrite")
        return classes

    def _join_parts(self, split: str, results: list[dict[str, Any]]) -> dict[str, Any]:
        """The split's metadata file, from its shards' lines, in shard order."""
        relpath = f"{DIRNAME}/{SPLIT_DIRS[split]}/{hfcard.METADATA_NAME}"
        state = OutputState(self.options.out)
        names = sorted(r["part"] for r in results if r["part"].startswith(f"{split}-"))

        def chunks() -> Iterator[bytes]:
            for name in names:
                part = state.part_file(DIRNAME, name)
                data = read_bytes(part)
                if data is None:
                    raise DataError(
                        f"{part}: missing (a shard's metadata lines); rebuild with --overwrite"
                    )
                yield data

        target = self.options.out / relpath
        if is_url(target):  # a Parquet writer seeks nowhere but asks more of a file than a PUT
            buffer = io.BytesIO()
            hfcard.write_metadata(chunks(), buffer)
            return write_side_file(self.options.out, relpath, buffer.getvalue())
        with atomic_open(target) as f:
            hfcard.write_metadata(chunks(), f)
        size, digest = hash_file(target)
        return {"file": relpath, "bytes": size, "xxh3_128": digest}

    def side_files(self, splits: Sequence[str]) -> Iterator[str]:
        for split in splits:
            yield f"{DIRNAME}/{SPLIT_DIRS[split]}/{hfcard.METADATA_NAME}"
        yield f"{DIRNAME}/{CARD}"

    def planned_files(self, spec: ShardSpec, images: Iterable[tuple[str, str]]) -> Iterator[str]:
        for wnid, filename in images:
            yield f"{DIRNAME}/{image_folder(spec.split, wnid)}/{filename}"

    def verify(self, section: dict[str, Any], *, decode: bool) -> VerifyReport:
        report = VerifyReport()
        expected: dict[str, dict[str, Any]] = section["classes"]
        # Files of the user's that --overwrite left alone: not part of this build.
        foreign = {f"{self.options.out}/{name}" for name in section.get("foreign", ())}
        side = section.get("side_files", [])
        report.problems.extend(check_side_files(self.options.out, section))
        foreign.update(f"{self.options.out}/{entry['file']}" for entry in side)
        found = ClassTotals()
        if is_url(self.root):
            self._check_objects(expected, foreign, found, report, decode)
        else:
            self._check_folders(expected, foreign, found, report, decode)
        got = found.as_dict()
        for folder, want in expected.items():
            have = got.get(folder)
            if have is None:
                report.problems.append(f"{self.root / folder}: missing")
            elif have != want:
                report.problems.append(
                    f"{self.root / folder}: {have['count']} files, {have['bytes']} bytes, digest "
                    f"{have['digest']}; the manifest says {want['count']}, {want['bytes']}, "
                    f"{want['digest']}"
                )
        return report

    def _check_objects(
        self,
        expected: dict[str, dict[str, Any]],
        foreign: set[str],
        found: ClassTotals,
        report: VerifyReport,
        decode: bool,
    ) -> None:
        """The store's version of the walk below: one listing of the prefix, the objects of
        each folder read in batches (their requests sent together)."""
        flat = {SPLIT_DIRS[split] for split in FLAT}
        folders: dict[str, list[str]] = {}
        unlisted: dict[str, None] = {}  # named once each, in order
        for name in files_under(self.root):
            url = f"{self.root}/{name}"
            split_dir, _, rest = name.partition("/")
            if url in foreign or split_dir not in SPLIT_DIRS.values():
                continue
            folder = split_dir if split_dir in flat else f"{split_dir}/{rest.split('/', 1)[0]}"
            if folder not in expected:
                unlisted[f"{self.root / folder}: not listed in the manifest"] = None
            elif "/" in name[len(folder) + 1 :]:
                what = "the test folder" if "/" not in folder else "a class folder"
                report.problems.append(f"{url}: not a file ({what} holds only images)")
            else:
                folders.setdefault(folder, []).append(name)
        report.problems.extend(unlisted)
        store = open_store(str(self.root))
        for folder, names in sorted(folders.items()):
            report.checked += 1
            for i in range(0, len(names), PUT_BATCH):
                urls = [f"{self.root}/{n}" for n in names[i : i + PUT_BATCH]]
                for url, data in sorted(store.read_many(urls).items()):
                    relpath = url[len(str(self.root)) + 1 :]
                    _count_image(folder, relpath, data, url, found, report, decode)

    def _check_folders(
        self,
        expected: dict[str, dict[str, Any]],
        foreign: set[str],
        found: ClassTotals,
        report: VerifyReport,
        decode: bool,
    ) -> None:
        for split, split_dir in sorted(SPLIT_DIRS.items(), key=lambda item: item[1]):
            base = self.root / split_dir
            if not base.is_dir():
                continue
            if split in FLAT:  # the images themselves, no class folders
                if split_dir not in expected:
                    report.problems.append(f"{base}: not listed in the manifest")
                    continue
                report.checked += 1
                self._check_folder(split_dir, foreign, found, report, decode)
                continue
            for cls in sorted(os.scandir(base), key=lambda e: e.name):
                folder = f"{split_dir}/{cls.name}"
                if cls.path in foreign:
                    continue
                if folder not in expected or not cls.is_dir(follow_symlinks=False):
                    report.problems.append(f"{cls.path}: not listed in the manifest")
                    continue
                report.checked += 1
                self._check_folder(folder, foreign, found, report, decode)

    def _check_folder(
        self,
        folder: str,
        foreign: set[str],
        found: ClassTotals,
        report: VerifyReport,
        decode: bool,
    ) -> None:
        """Read every image of a folder (a class folder, or the test folder) into ``found``."""
        for entry in sorted(os.scandir(self.root / folder), key=lambda e: e.name):
            if entry.path in foreign:
                continue
            if not entry.is_file(follow_symlinks=False):
                what = "the test folder" if "/" not in folder else "a class folder"
                report.problems.append(f"{entry.path}: not a file ({what} holds only images)")
                continue
            try:
                with open(entry.path, "rb") as f:
                    data = f.read()
            except OSError as exc:
                report.problems.append(f"{entry.path}: cannot read ({exc.strerror})")
                continue
            relpath = f"{folder}/{entry.name}"
            _count_image(folder, relpath, data, entry.path, found, report, decode)
