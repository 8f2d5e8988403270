"""imagenet_prep.storage against a real S3 server on 127.0.0.1 (moto, tests/s3server.py): what
each call asks of the store, counted; an index pass over a real generated tar by blocks;
objects that appear only complete; the conditional create; one-line errors; retries of 503."""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from imagenet_prep.archive import index_tar, index_tar_at
from imagenet_prep.errors import DataError, UsageError

pytest.importorskip("s3fs")
from tests.s3server import S3Endpoint, SlowDownProxy

from imagenet_prep.storage import BlockCache, Store, forget_stores, open_store

pytestmark = pytest.mark.slow


@pytest.fixture
def store(s3: S3Endpoint, monkeypatch: pytest.MonkeyPatch) -> Iterator[Store]:
    """A store on the test server, and a bucket of this test's own."""
    from s3fs import S3FileSystem

    s3.use(monkeypatch)
    S3FileSystem.clear_instance_cache()  # its clients were made for another endpoint
    forget_stores()
    store = open_store("s3://x")
    bucket = f"b{os.urandom(6).hex()}"
    store.fs.mkdir(bucket)
    store.bucket = bucket  # type: ignore[attr-defined]
    yield store
    S3FileSystem.clear_instance_cache()
    forget_stores()


def url(store: Store, key: str) -> str:
    return f"s3://{store.bucket}/{key}"  # type: ignore[attr-defined]


def test_whole_objects_ranges_and_listing(store: Store) -> None:
    data = os.urandom(300_000)
    store.put(url(store, "dl/a.bin"), data)
    store.put(url(store, "dl/sub/b.bin"), b"b")
    (info,) = store.listing(url(store, "dl"))  # objects only, not the "folder"
    assert info.url == url(store, "dl/a.bin") and info.size == len(data) and info.version
    assert store.read(url(store, "dl/a.bin")) == data
    assert store.read_range(url(store, "dl/a.bin"), 10, 20) == data[10:20]
    assert store.read_range(url(store, "dl/a.bin"), 299_990, 400_000) == data[299_990:]


def test_neighbouring_ranges_cost_one_request(store: Store) -> None:
    data = os.urandom(3_000_000)
    where = url(store, "a.bin")
    store.put(where, data)
    ranges = [(500, 900), (0, 100), (2_000_000, 2_000_100), (1000, 2000)]
    before = store.stats.requests
    got = store.read_ranges(where, ranges, gap=1000)
    assert got == [data[s:e] for s, e in ranges]  # in the order asked
    assert store.stats.requests - before == 2  # 0-2000 together, 2,000,000 alone


def test_a_stream_asks_for_a_block_at_a_time(store: Store) -> None:
    data = os.urandom(1_000_003)
    where = url(store, "s.bin")
    store.put(where, data)
    before = store.stats.requests
    with store.stream(where, len(data), block=100_000) as f:
        got = b"".join(iter(lambda: f.read(33_333), b""))
    assert got == data
    assert store.stats.requests - before == math.ceil(len(data) / 100_000)


@pytest.mark.parametrize("ahead", [0, 2])
def test_an_index_pass_over_a_tar_of_tars_reads_by_blocks(
    store: Store, small_download: Path, ahead: int
) -> None:
    """Block by block, each block once, with or without the blocks ahead fetched in
    parallel streams (their threads gone once the cache is closed)."""
    local = small_download / "ILSVRC2012_img_train.tar"
    data = local.read_bytes()
    where = url(store, "dl/ILSVRC2012_img_train.tar")
    store.put(where, data)
    block = 1 << 20
    before = store.stats.requests
    with BlockCache(store, where, len(data), block, ahead=ahead) as cache:
        remote = index_tar_at(cache.pread, where, len(data), 0, nested=True)
    assert not [t for t in threading.enumerate() if t.name.startswith("read-ahead")]
    requests = store.stats.requests - before
    expected = index_tar(local, nested=True)
    assert remote.members == expected.members and remote.nested == expected.nested
    assert requests <= math.ceil(len(data) / block)  # a request per block touched
    assert requests < len(remote.members) / 5  # never a request per member


def test_an_object_appears_only_complete(store: Store) -> None:
    where = url(store, "w.bin")
    data = os.urandom(11 << 20)  # three parts of a multipart upload
    with pytest.raises(RuntimeError), store.writer(where, block=5 << 20) as f:
        f.write(data)
        assert not store.exists(where)  # parts uploaded, nothing visible
        raise RuntimeError("the task failed")
    assert not store.exists(where)  # aborted: nothing appears
    with store.writer(where, block=5 << 20) as f:
        f.write(data[: 6 << 20])
        assert not store.exists(where)
        f.write(data[6 << 20 :])
    assert store.read(where) == data


def test_create_is_conditional(store: Store) -> None:
    where = url(store, "lock")
    assert store.create(where, b"first")
    assert not store.create(where, b"second")
    assert store.read(where) == b"first"


def test_errors_are_one_line_naming_the_url_without_credentials(store: Store) -> None:
    with pytest.raises(DataError, match=r"^s3://no-such-bucket-here/k: .*bucket does not exist"):
        store.read("s3://no-such-bucket-here/k")
    with pytest.raises(DataError, match=rf"^{url(store, 'missing')}: no such object$"):
        store.read(url(store, "missing"))
    with pytest.raises(DataError) as caught:
        store.read(f"s3://AKIAEXAMPLE:secret@{store.bucket}/missing")  # type: ignore[attr-defined]
    assert "secret" not in str(caught.value) and "AKIA" not in str(caught.value)


def test_a_protocol_without_its_package_says_what_to_install() -> None:
    pytest.importorskip("fsspec")
    try:
        import gcsfs  # noqa: F401
    except ImportError:
        with pytest.raises(UsageError, match=r"gs:// needs .*pip install 'imagenet-prep\[gcs\]'"):
            open_store("gs://bucket/imagenet")
    else:
        pytest.skip("gcsfs is installed here")


def test_slow_down_answers_are_retried(s3: S3Endpoint, monkeypatch: pytest.MonkeyPatch) -> None:
    from s3fs import S3FileSystem

    s3.use(monkeypatch)
    S3FileSystem.clear_instance_cache()
    forget_stores()
    store = open_store("s3://x")
    store.fs.mkdir("slow")
    store.put("s3://slow/a.bin", b"0123456789")
    with SlowDownProxy(s3.url, fail_first=2) as proxy:
        s3.via(proxy.url).use(monkeypatch)
        S3FileSystem.clear_instance_cache()
        forget_stores()
        slow = open_store("s3://slow")
        assert slow.read_range("s3://slow/a.bin", 2, 5) == b"234"
        assert proxy.injected == 2
    S3FileSystem.clear_instance_cache()
    forget_stores()


def test_a_shard_from_an_archive_in_s3_equals_the_one_from_disk(
    store: Store, small_download: Path, tmp_path: Path
) -> None:
    """A shard task reads its members from an object store by range, neighbours together,
    and writes the bytes it writes from the local archive."""
    from dataclasses import replace

    from imagenet_prep.formats.base import SinkOptions
    from imagenet_prep.plan import plan_split
    from imagenet_prep.sample import ImageRef
    from imagenet_prep.sources.container import OpenFiles
    from imagenet_prep.worker import ShardJob, process_shard

    local = small_download / "ILSVRC2012_img_train.tar"
    where = url(store, "dl/ILSVRC2012_img_train.tar")
    store.put(where, local.read_bytes())
    members = index_tar(local, nested=True).members
    refs = [
        ImageRef(
            split="train",
            key=m.name.rsplit(".", 1)[0],
            filename=m.name,
            wnid=m.parent.removesuffix(".tar"),
            label=0,
            path=str(local),
            offset=m.offset,
            size=m.size,
            origin=f"{local}:{m.parent}:{m.name}",
        )
        for m in members
    ]
    (spec,) = plan_split("train", len(refs), 1)
    written = {}
    for name, path in (("disk", str(local)), ("s3", where)):
        out = tmp_path / name
        job = ShardJob(
            spec=spec,
            refs=[replace(r, path=path) for r in refs],
            formats=("tfrecord", "webdataset"),
            options=SinkOptions(out=out),
        )
        with OpenFiles() as files:
            result = process_shard(job, files)
        requests = result.requests
        assert result.images == len(refs)
        written[name] = {
            str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()
        }
        # Here the shard's members are neighbours (the whole archive, a few header blocks
        # apart): one request for all of them, not one each.
        assert requests == (1 if name == "s3" else 0)
    assert written["s3"] == written["disk"] and written["disk"]
