"""The loaders over a finished build that lies in an S3 bucket (a real moto server on 127.0.0.1):
every format, the plain iterator, PyTorch (in-process and with DataLoader workers) and tf.data
give exactly what they give over the same build on disk; shards are read by large ranged GETs
(one per shard here), never per record; a missing bucket, object or permission is one line."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("s3fs")
from s3fs import S3FileSystem
from tests.helpers import run_cli
from tests.s3server import S3Endpoint, add_user

from imagenet_prep.errors import DataError, UsageError
from imagenet_prep.loaders import iterate, open_reader
from imagenet_prep.loaders.readers import remote as remote_io
from imagenet_prep.storage import as_location, forget_stores, tally

pytestmark = pytest.mark.slow

FORMATS = ("tfrecord", "webdataset", "mds", "imagefolder")
BUCKET = "trained-from-bucket"


@pytest.fixture(scope="module")
def local(small_download: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A build of every format on disk: several shards per split (WebDataset and MDS too)."""
    out = tmp_path_factory.mktemp("s3_loaders") / "out"
    done = run_cli(
        "build", "--source", small_download, "--output", out, "--formats", ",".join(FORMATS),
        "--train-shards", "4", "--validation-shards", "2", "--shard-size", "10", "--quiet",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return out


def upload(endpoint: S3Endpoint, out: Path, bucket: str) -> str:
    """The build's tree, object for file, under ``s3://bucket/out``."""
    client = endpoint.client()
    client.create_bucket(Bucket=bucket)
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        client.upload_file(str(path), bucket, f"out/{path.relative_to(out).as_posix()}")
    return f"s3://{bucket}/out"


@pytest.fixture(scope="module")
def uploaded(s3: S3Endpoint, local: Path) -> str:
    return upload(s3, local, BUCKET)


def _fresh_clients() -> None:
    S3FileSystem.clear_instance_cache()  # clients made for another endpoint or other keys
    forget_stores()


@pytest.fixture
def remote(s3: S3Endpoint, uploaded: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The build's URL, with this process's AWS environment pointed at the server."""
    s3.use(monkeypatch)
    _fresh_clients()
    yield uploaded
    _fresh_clients()


def raw_samples(root: str | Path, split: str, fmt: str) -> list[tuple[Any, ...]]:
    reader = open_reader(root, split, fmt, boxes=True)
    return [
        (raw.key, raw.label, bytes(raw.data), raw.boxes, i)
        for unit, size in enumerate(reader.sizes)
        for i, raw in reader.read(unit, 0, int(size))
    ]


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_record_of_a_bucket_equals_the_folders_in_few_requests(
    local: Path, remote: str, fmt: str
) -> None:
    for split in ("train", "validation"):
        theirs = raw_samples(local, split, fmt)
        before = tally()[0]
        ours = raw_samples(remote, split, fmt)
        requests = tally()[0] - before
        assert ours == theirs and len(ours) == (48 if split == "train" else 12)
        reader = open_reader(local, split, fmt)
        units = len(reader.sizes)
        # The manifest, one listing, then one GET per shard (each smaller than a block) or
        # per ImageFolder image (and the box CSV).
        assert requests == 2 + units + (fmt == "imagefolder"), (split, requests)
    if fmt == "imagefolder":
        return  # units of one image
    # A piece of a shard, some records refused (a resumed shuffle buffer): the same ones.
    want = lambda i: i % 3 != 1  # noqa: E731

    def piece(root: str | Path) -> list[tuple[int, str, bytes]]:
        reader = open_reader(root, "train", fmt)
        unit = int(reader.sizes.argmax())
        return [(i, raw.key, bytes(raw.data)) for i, raw in reader.read(unit, 2, 7, want)]

    theirs = piece(local)
    assert piece(remote) == theirs
    assert [i for i, *_ in theirs] == [i for i in range(2, 7) if want(i)]


@pytest.mark.parametrize("fmt", FORMATS)
def test_the_iterator_over_a_bucket_yields_the_folders_images(
    local: Path, remote: str, fmt: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    options: dict[str, Any] = {
        "format": fmt, "transform": "train-inception", "image_size": 24, "seed": 5,
        "decoder": "pillow",
    }  # fmt: skip

    def epoch(root: str | Path, **more: Any) -> list[tuple[str, int, bytes]]:
        return [(k, y, x.tobytes()) for x, y, k in iterate(root, "train", **options, **more)]

    theirs = epoch(local, rank=1, world_size=2, epoch=1)
    assert epoch(remote, rank=1, world_size=2, epoch=1) == theirs
    # Blocks far smaller than a record: every record and tar member straddles blocks, and
    # the read-ahead hands over block after block.
    monkeypatch.setattr(remote_io, "BLOCK", 40_000)
    assert epoch(remote, rank=1, world_size=2, epoch=1) == theirs
    assert len(theirs) == 24


#: ``ImageNetLoader`` batches, as (md5 of the pixels, labels), of each (root, format, workers)
#: asked, in a process of its own.
BATCHES = """
import hashlib, json, sys
from imagenet_prep.loaders.torch import ImageNetLoader
out = []
for root, fmt, workers in json.loads(sys.argv[1]):
    loader = ImageNetLoader(root, "train", format=fmt, batch_size=8, transform="train",
                            image_size=24, num_workers=workers, seed=2)
    out.append([(hashlib.md5(x.contiguous().numpy().tobytes()).hexdigest(), y.tolist())
                for x, y in loader])
json.dump(out, sys.stdout)
"""


def test_pytorch_loaders_over_a_bucket_with_and_without_workers(local: Path, remote: str) -> None:
    """The loaders run in a fresh process, as a training script does: a long-lived pytest
    process that has used the store's client and forked many children is not one (in one,
    DataLoader workers over a bucket were seen to wait forever)."""
    torch_loaders = pytest.importorskip("imagenet_prep.loaders.torch")
    cases = [(fmt, w) for fmt in FORMATS for w in ((0, 2) if fmt == "tfrecord" else (2,))]
    asked = [[str(root), fmt, w] for fmt, w in cases for root in (local, remote)]
    done = subprocess.run(
        [sys.executable, "-c", BATCHES, json.dumps(asked)],
        capture_output=True, text=True, timeout=300, check=True,
    )  # fmt: skip
    found = json.loads(done.stdout)
    for k, case in enumerate(cases):
        theirs, ours = found[2 * k], found[2 * k + 1]
        assert ours == theirs, case
        assert sum(len(labels) for _, labels in theirs) == 48
    dataset = torch_loaders.ImageNetDataset(remote, "validation", format="mds", layout="HWC")
    here = torch_loaders.ImageNetDataset(local, "validation", format="mds", layout="HWC")
    assert [(x.numpy().tobytes(), y) for x, y in dataset] == [
        (x.numpy().tobytes(), y) for x, y in here
    ]


TF_SCRIPT = textwrap.dedent(
    """
    import hashlib, json, sys
    from imagenet_prep.loaders.tf import dataset

    def run(root, split, **options):
        return [
            [key.numpy().decode(), int(label), hashlib.md5(image.numpy().tobytes()).hexdigest()]
            for image, label, key in dataset(root, split, with_keys=True, **options)
        ]

    report = {}
    for name, root in (("local", sys.argv[1]), ("remote", sys.argv[2])):
        report[name] = [
            run(root, "train", transform="train-inception", image_size=24, seed=3, epoch=1),
            run(root, "validation"),
            run(root, "train", rank=1, world_size=2, transform="eval", image_size=24),
        ]
    print(json.dumps(report))
    """
)


def test_tf_data_over_a_bucket_yields_the_folders_records(
    s3: S3Endpoint, local: Path, uploaded: str
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    done = subprocess.run(
        [sys.executable, "-c", TF_SCRIPT, str(local), uploaded],
        capture_output=True,
        text=True,
        env={**env, **s3.env, "TF_CPP_MIN_LOG_LEVEL": "3"},
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["remote"] == report["local"]
    assert [len(rows) for rows in report["local"]] == [48, 12, 24]


def _one_line(exc: pytest.ExceptionInfo[BaseException]) -> str:
    text = str(exc.value)
    assert "\n" not in text and "Traceback" not in text
    return text


def test_a_missing_bucket_object_or_permission_is_one_line(
    s3: S3Endpoint, local: Path, remote: str
) -> None:
    with pytest.raises(DataError) as exc:
        iterate("s3://no-such-bucket-here/out", "train")
    assert _one_line(exc) == "s3://no-such-bucket-here/out: no such bucket s3://no-such-bucket-here"
    with pytest.raises(DataError) as exc:
        open_reader(f"{remote}-nothing-here", "train")
    assert "no manifest" in _one_line(exc)
    # An upload that lost a shard and an image: named when the reader is made, or read.
    damaged = upload(s3, local, "damaged-upload")
    client = s3.client()
    client.delete_object(Bucket="damaged-upload", Key="out/webdataset/train-000002.tar")
    with pytest.raises(DataError) as exc:
        open_reader(damaged, "train", "webdataset")
    assert _one_line(exc) == (
        f"{damaged}/webdataset/train-000002.tar: no such object (the manifest lists it)"
    )
    reader = open_reader(damaged, "validation", "imagefolder")
    first = reader.names[0].decode()
    client.delete_object(Bucket="damaged-upload", Key=f"out/imagefolder/val/{first}")
    with pytest.raises(DataError) as exc:
        list(reader.read(0, 0, 1))
    assert _one_line(exc).startswith(f"{damaged}/imagefolder/val/{first}: ")


def test_a_bucket_the_credentials_may_not_read_is_a_usage_error(
    s3_iam: S3Endpoint, local: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = upload(s3_iam, local, "private-build")
    stranger = add_user(s3_iam, "stranger-loader", ["other-bucket"])
    stranger.use(monkeypatch)
    _fresh_clients()
    try:
        with pytest.raises(UsageError) as exc:
            iterate(root, "validation")
        assert _one_line(exc).startswith("s3://private-build")
        assert "access denied" in str(exc.value)
    finally:
        _fresh_clients()


def test_read_ahead_reads_an_object_as_a_file_does(remote: str) -> None:
    """Front to back it makes one GET per block (the next one fetched while the current one
    is read); reads, skips and seeks in any order give the object's bytes."""
    url = f"{remote}/tfrecord/train-00000-of-00004"
    data = as_location(url).read_bytes()
    blocks = -(-len(data) // 100_000)
    before = tally()[0]
    with remote_io.ReadAhead(url, len(data), block=100_000) as f:
        assert b"".join(iter(lambda: f.read(7_000), b"")) == data
    assert tally()[0] - before == blocks
    rng = random.Random(7)
    before = tally()[0]
    with remote_io.ReadAhead(url, len(data), block=100_000) as f:
        assert f.read(10) == data[:10]
        pos = 10
        while pos < len(data):
            step = rng.choice([1, 12, 5_000, 99_999, 100_000, 250_000])
            if rng.random() < 0.3:
                f.skip(step)
            else:
                assert f.read(step) == data[pos : pos + step]
            pos = min(len(data), pos + step)
            assert f.tell() == pos
        assert f.read(5) == b""
        f.seek(123)
        assert f.read(1000) == data[123:1123]
    assert 1 <= tally()[0] - before <= 2 * blocks + 2
