"""`build --source s3://...`: image-net.org's archives read where they lie in an S3 bucket (a real
moto server on 127.0.0.1), by range, never downloaded whole; the output equals the build from
the same files on disk; bucket errors are one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("s3fs")
from tests.s3server import S3Endpoint, add_user

from imagenet_prep.manifest import STATE_DIR

pytestmark = pytest.mark.slow

OPTIONS = ("--formats", "tfrecord,webdataset", "--train-shards", "4", "--validation-shards", "2")


def cli(endpoint: S3Endpoint, *args: object) -> subprocess.CompletedProcess[str]:
    """``imagenet-prep ARGS`` in a process of its own, with the endpoint's environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    return subprocess.run(
        [sys.executable, "-m", "imagenet_prep", *map(str, args)],
        capture_output=True,
        text=True,
        env={**env, **endpoint.env},
        timeout=300,
    )


def upload(endpoint: S3Endpoint, download: Path, bucket: str, prefix: str = "imagenet") -> str:
    client = endpoint.client()
    client.create_bucket(Bucket=bucket)
    for path in sorted(p for p in download.rglob("*") if p.is_file()):
        client.upload_file(str(path), bucket, f"{prefix}/{path.relative_to(download).as_posix()}")
    return f"s3://{bucket}/{prefix}"


def outputs(out: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(out)): p.read_bytes()
        for p in sorted(out.rglob("*"))
        if p.is_file() and p.name != "manifest.json" and STATE_DIR not in p.parts
    }


@pytest.fixture(scope="module")
def from_disk(small_download: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("disk") / "out"
    done = subprocess.run(
        [sys.executable, "-m", "imagenet_prep", "build", "--source", small_download,
         "--output", out, *OPTIONS, "--quiet"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return out


def test_a_build_from_a_bucket_equals_the_build_from_disk(
    s3: S3Endpoint, small_download: Path, from_disk: Path, tmp_path: Path
) -> None:
    src = upload(s3, small_download, "from-disk-equal")
    out = tmp_path / "out"
    done = cli(s3, "build", "--source", src, "--output", out, *OPTIONS)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.splitlines()[0].startswith(f"source: archives layout in {src}: ")
    # The summary says what was asked of the store; never a request per member.
    (line,) = [s for s in done.stderr.splitlines() if "object store:" in s]
    index_requests = int(line.split("object store: ")[1].split(" requests")[0].replace(",", ""))
    assert 1 <= index_requests <= 4  # a block per 64 MiB of the archives, and no more
    assert outputs(out) == outputs(from_disk)
    ours, theirs = (json.loads((o / "manifest.json").read_text()) for o in (out, from_disk))
    assert ours["source"]["root"] == src
    for m in (ours, theirs):
        m.pop("created")
        m.pop("timings")
        m["source"].pop("root")
    text = json.dumps(ours).replace(src, str(small_download))
    assert json.loads(text) == theirs  # the rest names the images by the same members
    verify = cli(s3, "verify", out)
    assert verify.returncode == 0, verify.stderr
    # A rerun in the same OUT (here: its manifest lost) takes the archives' index kept there:
    # no second index pass over the bucket.
    (out / "manifest.json").unlink()
    again = cli(s3, "build", "--source", src, "--output", out, *OPTIONS)
    assert again.returncode == 0, again.stderr
    assert "object store: 0 requests read 0 MB to index the archives" in again.stderr
    assert outputs(out) == outputs(from_disk)


def test_bucket_errors_are_one_line(s3: S3Endpoint, small_download: Path, tmp_path: Path) -> None:
    upload(s3, small_download, "errors-bucket")
    cases = [
        ("s3://no-such-bucket-anywhere/imagenet", 1, "s3://no-such-bucket-anywhere/imagenet: "),
        ("s3://errors-bucket/elsewhere", 1, "holds nothing (no object under this prefix)"),
    ]
    for src, status, message in cases:
        done = cli(s3, "build", "--source", src, "--output", tmp_path / "out", "--quiet")
        assert done.returncode == status, done.stderr
        (line,) = done.stderr.splitlines()
        assert line.startswith("imagenet-prep build: error: ") and message in line, line
    done = cli(
        s3, "build", "--source", "s3://errors-bucket/imagenet", "--layout", "hf",
        "--output", tmp_path / "out", "--quiet",
    )  # fmt: skip
    assert done.returncode == 2
    assert "the hf layout is read from a local disk only" in done.stderr


def test_access_denied_is_one_line(
    s3_iam: S3Endpoint, small_download: Path, tmp_path: Path
) -> None:
    upload(s3_iam, small_download, "private-imagenet")
    stranger = add_user(s3_iam, "stranger", ["other-bucket"])
    done = cli(
        stranger,
        "build", "--source", "s3://private-imagenet/imagenet", "--output", tmp_path / "out",
        "--quiet",
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.splitlines()
    assert line.startswith("imagenet-prep build: error: s3://private-imagenet/imagenet: access "
                           "denied"), line  # fmt: skip
    assert stranger.env["AWS_SECRET_ACCESS_KEY"] not in done.stderr


def test_ray_tasks_read_and_write_buckets(
    s3: S3Endpoint, small_download: Path, from_disk: Path
) -> None:
    """--executor ray on a cluster whose nodes have credentials but not the endpoint: the
    driver's AWS_ENDPOINT_URL reaches the tasks; they read the archives by range from one
    bucket and write the shards into another (no shared file system needed)."""
    pytest.importorskip("ray")
    from tests.e2e.test_s3_output import bucket, objects
    from tests.raycluster import ray_head

    src = upload(s3, small_download, "ray-reads")
    out = bucket(s3, "ray-writes")
    keys = {k: v for k, v in s3.env.items() if "ENDPOINT" not in k}
    with ray_head(cpus=2, env=keys) as (address, _sid):
        done = cli(
            s3, "build", "--source", src, "--output", out, *OPTIONS,
            "--executor", "ray", "--ray-address", address,
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert objects(s3, out) == outputs(from_disk)
    assert cli(s3, "verify", out).returncode == 0


@pytest.mark.parametrize(
    ("layout", "more"), [("kaggle", ("--validation-boxes",)), ("hf-parquet", ())]
)
def test_kaggle_and_hugging_face_files_in_a_bucket_build_as_from_disk(
    s3: S3Endpoint,
    tmp_path_factory: pytest.TempPathFactory,
    tmp_path: Path,
    layout: str,
    more: tuple[str, ...],
) -> None:
    """Kaggle's zip read in place from a bucket (its central directory by blocks, the label
    files and box XMLs from it, images by range), and the Hub's Parquet files (the footer and
    each row group by range, spilled into OUT): the same records as from the files on disk."""
    from tests.helpers import layout_downloads

    (local,) = layout_downloads(tmp_path_factory.mktemp(layout), (layout,), 77).values()
    src = upload(s3, local, f"{layout}-files")
    built = {}
    for name, source in (("disk", local), ("s3", src)):
        out = tmp_path / name
        done = cli(s3, "build", "--source", source, "--output", out, *OPTIONS, *more)
        assert done.returncode == 0, done.stderr
        assert done.stderr.startswith(f"source: {layout} layout in ")
        built[name] = outputs(out)
    assert built["s3"] == built["disk"] and built["disk"]
