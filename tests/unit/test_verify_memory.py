"""verify reads a shard front to back in a bounded memory, whatever the shard's size (issue 21).

A WebDataset shard of small images holds about 430,000 of them at full count; read whole
(with every ``TarInfo`` tarfile keeps), verify held 2 GB. Here each format's shard check runs
under ``tracemalloc`` with a bound far below the shard's size, and an MDS shard must not be
mapped (a mapping's pages count in the resident memory as they are read, not in
``tracemalloc``). The messages of damaged shards stay those of the whole-shard check: the
count first, then each sample's, and only the tar's error when it cannot be read to its end.
"""

from __future__ import annotations

import io
import mmap
import tarfile
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from imagenet_prep.formats.base import SinkOptions, VerifyReport
from imagenet_prep.formats.mds.writer import MDSSink
from imagenet_prep.formats.mds.writer import check_shard as check_mds
from imagenet_prep.formats.tfrecord.writer import TFRecordSink
from imagenet_prep.formats.tfrecord.writer import check_shard as check_tfrecord
from imagenet_prep.formats.webdataset.writer import WebDatasetSink
from imagenet_prep.formats.webdataset.writer import check_shard as check_webdataset
from imagenet_prep.plan import ShardSpec
from imagenet_prep.sample import ImageRef, Sample

IMAGES = 320
IMAGE_BYTES = 64 << 10  # shards of about 20 MB
#: The most a shard check may allocate at once: a sample, the read buffers, the index block.
BOUND = 4 << 20
WNIDS = ("n01440764", "n01443537")  # labels 0 and 1


def samples(n: int, size: int) -> Iterator[Sample]:
    for i in range(n):
        label = i % 2
        wnid = WNIDS[label]
        ref = ImageRef(
            "train", f"{wnid}_{i}", f"{wnid}_{i}.JPEG", wnid, label, "-", 0, size, "x.tar"
        )
        data = bytes([i % 251]) * size
        yield Sample(ref, data, data, 64, 48)


def write_shard(sink: Any, n: int = IMAGES, size: int = IMAGE_BYTES) -> dict[str, Any]:
    writer = sink.open_shard(ShardSpec("train", 0, 1, 0, n))
    for sample in samples(n, size):
        writer.add(sample)
    entry: dict[str, Any] = writer.commit()
    return entry


def peak_of(check: Callable[[], VerifyReport]) -> tuple[VerifyReport, int]:
    tracemalloc.start()
    try:
        report = check()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return report, peak


def test_a_webdataset_shard_is_checked_sample_by_sample(tmp_path: Path) -> None:
    sink = WebDatasetSink(SinkOptions(out=tmp_path, dali_index=True))
    shard = write_shard(sink)
    assert shard["bytes"] > 5 * BOUND
    report, peak = peak_of(lambda: check_webdataset(tmp_path, shard, decode=False))
    assert (report.problems, report.records) == ([], IMAGES)
    assert peak < BOUND, f"{peak / 2**20:.1f} MB for a {shard['bytes'] / 2**20:.0f} MB shard"


def test_a_webdataset_shard_of_small_samples_keeps_no_member_list(tmp_path: Path) -> None:
    """Many small samples: the TarInfo objects tarfile keeps (three a sample) and the index's
    lines would pass the bound."""
    sink = WebDatasetSink(SinkOptions(out=tmp_path, dali_index=True))
    shard = write_shard(sink, 3000, 16)
    report, peak = peak_of(lambda: check_webdataset(tmp_path, shard, decode=False))
    assert (report.problems, report.records) == ([], 3000)
    assert peak < BOUND, f"{peak / 2**20:.1f} MB"


def test_an_mds_shard_is_read_not_mapped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sink = MDSSink(SinkOptions(out=tmp_path))
    shard = write_shard(sink)
    assert shard["bytes"] > 5 * BOUND

    def no_mapping(*args: object, **kwargs: object) -> None:
        raise AssertionError("verify mapped the shard")

    monkeypatch.setattr(mmap, "mmap", no_mapping)
    report, peak = peak_of(lambda: check_mds(tmp_path, shard, decode=False))
    assert (report.problems, report.records) == ([], IMAGES)
    assert peak < BOUND, f"{peak / 2**20:.1f} MB"


def test_a_tfrecord_shard_is_checked_record_by_record(tmp_path: Path) -> None:
    sink = TFRecordSink(SinkOptions(out=tmp_path, dali_index=True))
    shard = write_shard(sink)
    report, peak = peak_of(lambda: check_tfrecord(tmp_path, shard, 1, decode=False))
    assert (report.problems, report.records) == ([], IMAGES)
    assert peak < BOUND, f"{peak / 2**20:.1f} MB"


# --- the messages of damaged shards ----------------------------------------------------------


def _member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _shard(
    tmp_path: Path, build: Callable[[tarfile.TarFile], None], records: int
) -> dict[str, Any]:
    """A hand-made shard and a manifest entry whose size and checksum match it."""
    from imagenet_prep.fsutil import hash_file

    path = tmp_path / "webdataset" / "train-000000.tar"
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        build(tar)
    size, digest = hash_file(path)
    return {
        "file": "webdataset/train-000000.tar",
        "records": records,
        "bytes": size,
        "xxh3_128": digest,
    }


def _good(tar: tarfile.TarFile, key: str, label: int = 0, wnid: str = WNIDS[0]) -> None:
    _member(tar, f"{key}.cls", str(label).encode())
    _member(tar, f"{key}.jpg", b"\xff\xd8")
    meta = f'{{"filename": "{key}.JPEG", "wnid": "{wnid}", "width": 1, "height": 1}}'
    _member(tar, f"{key}.json", meta.encode())


def test_damaged_samples_are_named_after_the_count(tmp_path: Path) -> None:
    def build(tar: tarfile.TarFile) -> None:
        _good(tar, "n01440764_1")
        _good(tar, "n01440764_2", label=1)  # not its wnid's class
        _member(tar, "n01440764_3.cls", b"0")  # no .jpg, no .json
        _good(tar, "n01440764_4")

    shard = _shard(tmp_path, build, records=5)
    path = tmp_path / shard["file"]
    report = check_webdataset(tmp_path, shard, decode=False)
    assert report.records == 4
    assert report.problems == [
        f"{path}: 4 samples, the manifest says 5",
        f"{path}: sample n01440764_2: class 1 is not n01440764",
        f"{path}: sample n01440764_3 lacks some of .cls, .jpg, .json",
    ]


def test_an_unreadable_tar_is_named_once(tmp_path: Path) -> None:
    def build(tar: tarfile.TarFile) -> None:
        _good(tar, "n01440764_1", label=1)  # a problem that is not reported: the tar's is
        tar.addfile(tarfile.TarInfo("n01440764_2"), None)
        info = tarfile.TarInfo("n01440764_2.d")
        info.type = tarfile.DIRTYPE
        tar.addfile(info)

    shard = _shard(tmp_path, build, records=2)
    path = tmp_path / shard["file"]
    report = check_webdataset(tmp_path, shard, decode=False)
    assert report.records == 0
    assert report.problems == [f"{path}: member n01440764_2.d is not a regular file"]
