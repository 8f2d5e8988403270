"""WebDataset shards: ``OUT/webdataset/<split>-%06d.tar``, one sample per image.

Each sample's key is the image's file stem with ``.`` and ``\\`` as ``_`` (:func:`sample_key`:
readers split a member's name at its first dot); its members, in sorted order, are ``.cls``
(the 0-based class index as ASCII, torchvision's convention, not affected by
``--label-offset``), ``.jpg`` (the image bytes as the TFRecords carry them) and ``.json``
(wnid, text, width, height, filename, normalized boxes; ``filename`` is the image's name as
found, so the original stem is there when the key differs). A test image has no class: its
``.cls`` is ``-1`` and its wnid and text are empty. Tars are written with the standard
library, with fixed mtime, owner and mode, so the bytes are reproducible.

Beside the shards, ``finalize`` writes what two popular readers look for: ``README.md``, a
dataset card that Hugging Face ``datasets.load_dataset(folder)`` reads (splits and explicit
features), and ``_info.json``, the split table of timm's WebDataset reader.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from ...errors import DataError
from ...fsutil import HashingWriter
from ...labels import load_synsets
from ...plan import ShardSpec
from ...sample import Sample
from .. import hfcard
from ..base import SinkOptions, VerifyReport
from ..shardfile import (
    ShardedSink,
    ShardedWriter,
    check_index,
    checking,
    finalize_shards,
    write_side_file,
)

DIRNAME = "webdataset"
CARD = "README.md"
TIMM_INFO = "_info.json"
MEMBER_ORDER = ("cls", "jpg", "json")
WDS_INDEX_VERSION = "v1.2"


_KEY_SAFE = str.maketrans(".\\", "__")


def sample_key(stem: str) -> str:
    """The sample key of an image with file stem ``stem``: its dots and backslashes as ``_``.

    WebDataset readers (and DALI's ``wds2idx``) take a member's key up to its first dot, and
    some treat a backslash as a folder; two stems that give one key are refused at indexing.

    >>> sample_key("n02105855_77.v2"), sample_key(r"a\\b"), sample_key("n01440764_10026")
    ('n02105855_77_v2', 'a_b', 'n01440764_10026')
    """
    return stem.translate(_KEY_SAFE)


def shard_file(split: str, index: int) -> str:
    """The file name of a WebDataset shard.

    >>> shard_file("train", 7)
    'train-000007.tar'
    """
    return f"{split}-{index:06d}.tar"


def _info(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = 0
    info.mode = 0o444
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


class _Tell:
    """A write-only file for tarfile that counts what it was given (tarfile asks for tell())."""

    def __init__(self, out: HashingWriter) -> None:
        self._out = out

    def write(self, data: bytes) -> int:
        return self._out.write(data)

    def tell(self) -> int:
        return self._out.nbytes


class WebDatasetShardWriter(ShardedWriter):
    """Write one shard under a temporary name; ``commit`` renames it into place."""

    def __init__(self, name: str, options: SinkOptions) -> None:
        super().__init__(options, DIRNAME, name)
        self._tar = tarfile.TarFile(
            fileobj=_Tell(self._shard.out),  # type: ignore[arg-type]
            mode="w",
            format=tarfile.USTAR_FORMAT,
        )
        self._texts = load_synsets().texts

    def add(self, sample: Sample) -> None:
        ref = sample.ref
        meta = {
            "wnid": ref.wnid,
            "text": self._texts[ref.wnid] if ref.wnid else "",  # a test image: no class
            "width": sample.width,
            "height": sample.height,
            "filename": ref.filename,
            "boxes": [[b.xmin, b.ymin, b.xmax, b.ymax] for b in ref.boxes],
        }
        payloads = {
            "cls": str(ref.label).encode("ascii"),
            "jpg": sample.data,
            "json": json.dumps(meta, sort_keys=True, ensure_ascii=False).encode("utf-8"),
        }
        components = []
        key = sample_key(ref.key)
        for ext in MEMBER_ORDER:
            name = f"{key}.{ext}"
            data = payloads[ext]
            self._tar.addfile(_info(name, len(data)), io.BytesIO(data))
            if self._dali:  # the member's data starts right after its 512-byte header
                offset = self._tar.offset - ((len(data) + 511) // 512) * 512
                components.append(f"{ext} {offset} {len(data)} {name}")
        # tarfile keeps every TarInfo it wrote, which nothing here reads: three objects an
        # image, 1.2 kB, for as long as the shard is open (a shard of 64x48 images holds 433,000).
        self._tar.members.clear()  # type: ignore[attr-defined]  # typeshed omits it
        if self._dali:
            self._index.append(" ".join(components))
        self.records += 1

    def close(self) -> None:
        self._tar.close()

    def index_bytes(self) -> bytes:
        lines = [f"{WDS_INDEX_VERSION} {len(self._index)}", *self._index]
        return "".join(line + "\n" for line in lines).encode("utf-8")


class WebDatasetSink(ShardedSink):
    """The ``webdataset`` format."""

    name = "webdataset"
    dirname = DIRNAME

    def shard_name(self, spec: ShardSpec) -> str:
        return shard_file(spec.split, spec.index)

    def open_shard(self, spec: ShardSpec) -> WebDatasetShardWriter:
        return WebDatasetShardWriter(self.shard_name(spec), self.options)

    def finalize(self, results: list[dict[str, Any]]) -> dict[str, Any]:
        section = finalize_shards(results)
        splits = split_shards(section["shards"])
        out = self.options.out
        section["side_files"] = [
            write_side_file(out, f"{DIRNAME}/{CARD}", hfcard.webdataset_card(splits).encode()),
            write_side_file(out, f"{DIRNAME}/{TIMM_INFO}", timm_info(splits)),
        ]
        return section

    def side_files(self, splits: Sequence[str]) -> Iterator[str]:
        yield f"{DIRNAME}/{CARD}"
        yield f"{DIRNAME}/{TIMM_INFO}"

    def check_shard(
        self, shard: dict[str, Any], section: dict[str, Any], *, decode: bool
    ) -> VerifyReport:
        return check_shard(self.options.out, shard, decode=decode)


def split_of(shard: dict[str, Any]) -> str:
    """The split of a listed shard, from its name.

    >>> split_of({"file": "webdataset/test-000001.tar"})
    'test'
    """
    return str(shard["file"]).rsplit("/", 1)[-1].rsplit("-", 1)[0]


def split_shards(shards: Iterable[dict[str, Any]]) -> dict[str, list[tuple[str, int]]]:
    """Shard file names (relative to the folder) and sample counts, per split, in order.

    >>> split_shards([{"file": "webdataset/train-000000.tar", "records": 3}])
    {'train': [('train-000000.tar', 3)]}
    """
    splits: dict[str, list[tuple[str, int]]] = {}
    for shard in sorted(shards, key=lambda s: str(s["file"])):
        name = str(shard["file"]).rsplit("/", 1)[-1]
        splits.setdefault(split_of(shard), []).append((name, int(shard["records"])))
    return splits


def timm_info(splits: dict[str, list[tuple[str, int]]]) -> bytes:
    """``_info.json`` as timm's ``ReaderWds`` reads it (``timm/data/readers/reader_wds.py``):
    per split its name, sample count, shard files (relative to the folder) and their lengths,
    so that ``create_dataset("wds/imagenet", root=OUT/webdataset, split="train")`` works."""
    info = {
        "name": "imagenet-1k",
        "num_classes": len(load_synsets().wnids),
        "splits": {
            split: {
                "name": split,
                "num_samples": sum(n for _, n in shards),
                "filenames": [name for name, _ in shards],
                "shard_lengths": [n for _, n in shards],
            }
            for split, shards in splits.items()
        },
    }
    return (json.dumps(info, indent=1) + "\n").encode("utf-8")


def _members(tar: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    """A tar's members, read one header at a time; tarfile keeps every TarInfo it read (and
    iterating it uses that list), three objects an image, which nothing here looks at again."""
    while (member := tar.next()) is not None:
        tar.members.clear()  # type: ignore[attr-defined]  # typeshed omits it
        yield member


def iter_samples(path: Path) -> Iterator[dict[str, bytes]]:
    """Every sample of a shard as {"__key__": key, ext: bytes}, in order, read with tarfile
    one member at a time: only the sample being looked at is in memory, not the shard."""
    try:
        with tarfile.open(path) as tar:
            sample: dict[str, bytes] | None = None
            for member in _members(tar):
                if not member.isfile():
                    raise DataError(f"{path}: member {member.name} is not a regular file")
                key, _, ext = member.name.partition(".")
                f = tar.extractfile(member)
                data = f.read() if f is not None else b""
                if sample is None or sample["__key__"] != key.encode():
                    if sample is not None:
                        yield sample
                    sample = {"__key__": key.encode()}
                sample[ext] = data
            if sample is not None:
                yield sample
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DataError(f"{path}: not a readable tar ({exc})") from None


def check_shard(out: Path, shard: dict[str, Any], *, decode: bool) -> VerifyReport:
    """Re-read one shard: checksum, every sample's members, class and JSON; its DALI index."""
    with checking(out, shard) as (report, path):
        # An unreadable tar has no index to compare (the problem is named once).
        readable = path is not None and _check_samples(path, shard, decode, report)
        if readable and path is not None and "index" in shard:
            report.problems.extend(check_index(out, shard, path, wds_index))
    return report


def _check_samples(path: Path, shard: dict[str, Any], decode: bool, report: VerifyReport) -> bool:
    """Check every sample into ``report``; False when the tar cannot be read at all.

    The samples are checked as they are read; their problems are reported after the count's
    (and not at all when the tar turns out to be unreadable), as when a shard was read whole
    before its samples were checked."""
    synsets = load_synsets()
    test = split_of(shard) == "test"
    count = 0
    problems: list[str] = []
    try:
        for sample in iter_samples(path):
            count += 1
            problems.extend(_check_sample(path, sample, synsets, test, decode))
    except DataError as exc:
        report.problems.append(str(exc))
        return False
    report.records = count
    if count != shard["records"]:
        report.problems.append(f"{path}: {count} samples, the manifest says {shard['records']}")
    report.problems.extend(problems)
    return True


def _check_sample(
    path: Path, sample: dict[str, bytes], synsets: Any, test: bool, decode: bool
) -> Iterator[str]:
    """What is wrong with one sample: its members, class, JSON and (``decode``) image."""
    key = sample["__key__"].decode()
    if sorted(k for k in sample if k != "__key__") != list(MEMBER_ORDER):
        yield f"{path}: sample {key} lacks some of .cls, .jpg, .json"
        return
    try:
        meta = json.loads(sample["json"])
        label = int(sample["cls"])
    except ValueError as exc:
        yield f"{path}: sample {key}: unreadable .cls or .json ({exc})"
        return
    if test:  # no class: -1, no wnid or text
        if (label, meta.get("wnid"), meta.get("text")) != (-1, "", ""):
            yield (
                f"{path}: sample {key}: a test sample must have class -1 and no wnid or "
                f"text, not class {label}, wnid {meta.get('wnid')!r}"
            )
    elif meta.get("wnid") not in synsets or synsets.index(meta["wnid"]) != label:
        yield f"{path}: sample {key}: class {label} is not {meta.get('wnid')}"
    filename = meta.get("filename")
    if not isinstance(filename, str) or sample_key(os.path.splitext(filename)[0]) != key:
        yield f"{path}: sample {key}: the JSON's filename is {filename!r}"
    if decode:
        from ...imagefix import decode_check

        try:
            got = decode_check(sample["jpg"], f"{path}:{key}.jpg")
        except DataError as exc:
            yield str(exc)
            return
        if got != (meta["width"], meta["height"]):
            yield f"{path}: sample {key}: decodes to {got}, the JSON says otherwise"


#: The lines of an index computed by verify stay in memory up to this size, then go to disk.
_INDEX_SPOOL = 1 << 20


def wds_index(path: Path) -> Iterator[bytes]:
    """DALI's wds2idx index of a tar, computed from the tar itself (not from our writer), in
    pieces: its first line (the sample count), then the lines of the samples, which wait in
    a temporary file while the tar is walked (the count comes first)."""
    with tempfile.SpooledTemporaryFile(max_size=_INDEX_SPOOL) as lines:
        count = 0
        with tarfile.open(path) as tar:
            for line in _sample_lines(tar):
                lines.write(line.encode("utf-8") + b"\n")
                count += 1
        yield f"{WDS_INDEX_VERSION} {count}\n".encode()
        lines.seek(0)
        while block := lines.read(_INDEX_SPOOL):
            yield block


def _sample_lines(tar: tarfile.TarFile) -> Iterator[str]:
    """A wds2idx line per sample: ``ext offset size name`` of each of its members."""
    line = ""
    last = None
    for member in _members(tar):
        if not member.isfile():
            continue
        key, _, ext = member.name.partition(".")
        part = f"{ext} {member.offset_data} {member.size} {member.name}"
        if key != last:
            if last is not None:
                yield line
            line = part
            last = key
        else:
            line += " " + part
    if last is not None:
        yield line
