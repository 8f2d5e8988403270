"""A shard writer holds a sample at a time, whatever the shard's size (issue 21).

An MDS shard's header (its offsets) comes before its samples: the writer kept the whole
shard in memory until its commit, 64 MB in each worker that wrote one, two at once at full
count. Each format's writer now writes a 20 MB shard under ``tracemalloc`` within a bound far
below the shard's size, and the shard still passes its check.
"""

from __future__ import annotations

import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from imagenet_prep.formats.base import SinkOptions
from imagenet_prep.formats.mds.writer import MDSSink
from imagenet_prep.formats.mds.writer import check_shard as check_mds
from imagenet_prep.formats.tfrecord.writer import TFRecordSink
from imagenet_prep.formats.tfrecord.writer import check_shard as check_tfrecord
from imagenet_prep.formats.webdataset.writer import WebDatasetSink
from imagenet_prep.formats.webdataset.writer import check_shard as check_webdataset

from .test_verify_memory import BOUND, IMAGE_BYTES, IMAGES, write_shard

# Each format's sink and its shard check as verify runs it (decoding skipped).
SINKS: dict[str, tuple[Any, Any]] = {
    "tfrecord": (TFRecordSink, lambda out, e: check_tfrecord(out, e, 1, decode=False)),
    "webdataset": (WebDatasetSink, lambda out, e: check_webdataset(out, e, decode=False)),
    "mds": (MDSSink, lambda out, e: check_mds(out, e, decode=False)),
}


@pytest.mark.parametrize("fmt", sorted(SINKS))
def test_a_shard_is_written_in_bounded_memory(fmt: str, tmp_path: Path) -> None:
    make, check = SINKS[fmt]
    write_shard(make(SinkOptions(out=tmp_path / "warm")), n=2)  # the label tables, loaded once
    sink = make(SinkOptions(out=tmp_path / "out"))
    tracemalloc.start()
    try:
        entry = write_shard(sink)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert entry["records"] == IMAGES and entry["bytes"] > IMAGES * IMAGE_BYTES
    assert peak < BOUND, f"{fmt}: {peak / 1e6:.1f} MB held writing a shard"
    shards = [p for p in (tmp_path / "out").rglob("*") if p.is_file()]
    assert [p.name for p in shards] == [Path(entry["file"]).name]  # no spool or temporary left
    report = check(tmp_path / "out", entry)
    assert (report.problems, report.records) == ([], IMAGES)
