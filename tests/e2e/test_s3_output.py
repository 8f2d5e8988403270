"""`build --output s3://...`: shards streamed into a bucket (a real moto server on 127.0.0.1),
visible only complete; downloaded back, byte-identical to the build on disk; `verify s3://`;
the journal and lock in the bucket, so a killed build resumes from a fresh process (another
machine's cache); bucket errors in one line; 503s retried. (Ray tasks reading one bucket and
writing another: tests/e2e/test_s3_source.py.)"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("s3fs")
from tests.s3server import S3Endpoint, SlowDownProxy, add_user

from imagenet_prep.fixture import FixtureConfig, generate
from imagenet_prep.manifest import STATE_DIR

pytestmark = pytest.mark.slow

FORMATS = ("--formats", "tfrecord,webdataset,mds,imagefolder", "--dali-index")
SHARDS = ("--train-shards", "12", "--validation-shards", "2")
#: The killed build: fewer formats, so that it is slower to kill than to write.
KILLED = ("--formats", "tfrecord,imagefolder", "--dali-index")


def cli(
    endpoint: S3Endpoint, *args: object, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``imagenet-prep ARGS`` in a process of its own, with the endpoint's environment."""
    return subprocess.run(
        command(*args), capture_output=True, text=True, env=environment(endpoint, env), timeout=300
    )


def command(*args: object) -> list[str]:
    return [sys.executable, "-m", "imagenet_prep", *map(str, args)]


def environment(endpoint: S3Endpoint, more: dict[str, str] | None = None) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    return {**base, **endpoint.env, **(more or {})}


def bucket(endpoint: S3Endpoint, name: str) -> str:
    endpoint.client().create_bucket(Bucket=name)
    return f"s3://{name}/prepared"


def objects(endpoint: S3Endpoint, url: str) -> dict[str, bytes]:
    """Every object under ``url`` but the manifest and the bookkeeping, by relative name."""
    name, _, prefix = url.removeprefix("s3://").partition("/")
    client = endpoint.client()
    found: dict[str, bytes] = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=name, Prefix=prefix + "/"):
        for item in page.get("Contents", []):
            rel = item["Key"][len(prefix) + 1 :]
            if rel != "manifest.json" and not rel.startswith(f"{STATE_DIR}/"):
                found[rel] = client.get_object(Bucket=name, Key=item["Key"])["Body"].read()
    return found


def files(out: Path) -> dict[str, bytes]:
    return {
        p.relative_to(out).as_posix(): p.read_bytes()
        for p in sorted(out.rglob("*"))
        if p.is_file() and p.name != "manifest.json" and STATE_DIR not in p.parts
    }


def of_formats(found: dict[str, bytes], *names: str) -> dict[str, bytes]:
    """The files of some formats (their folders and DALI indexes) of a snapshot."""
    folders = tuple(f"{n}/" for n in names) + tuple(f"dali-index/{n}/" for n in names)
    return {k: v for k, v in found.items() if k.startswith(folders)}


def manifest(endpoint: S3Endpoint, url: str) -> dict[str, Any]:
    name, _, prefix = url.removeprefix("s3://").partition("/")
    body = endpoint.client().get_object(Bucket=name, Key=f"{prefix}/manifest.json")["Body"]
    data: dict[str, Any] = json.loads(body.read())
    data.pop("created")
    data.pop("timings")
    return data


@pytest.fixture(scope="module")
def download(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("s3out") / "download"
    generate(FixtureConfig(out=out, classes=4, per_class=50, val_per_class=6, seed=9, pool_size=24))
    return out


@pytest.fixture(scope="module")
def on_disk(download: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("s3out-disk") / "out"
    done = subprocess.run(
        command("build", "--source", download, "--output", out, *FORMATS, *SHARDS, "--quiet"),
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return out


def test_a_build_into_a_bucket_equals_the_build_on_disk(
    s3: S3Endpoint, download: Path, on_disk: Path
) -> None:
    out = bucket(s3, "written")
    done = cli(s3, "build", "--source", download, "--output", out, *FORMATS, *SHARDS)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert "requests wrote" in done.stderr
    assert objects(s3, out) == files(on_disk)
    ours = manifest(s3, out)
    theirs = json.loads((on_disk / "manifest.json").read_text())
    theirs.pop("created")
    theirs.pop("timings")
    assert ours == theirs
    # Nothing is left of the build's bookkeeping but what a rerun needs: no lock, no journal.
    name = out.removeprefix("s3://").split("/")[0]
    listed = s3.client().list_objects_v2(Bucket=name, Prefix=f"prepared/{STATE_DIR}/")
    kept = sorted(o["Key"].split(f"{STATE_DIR}/")[1] for o in listed.get("Contents", []))
    assert not [k for k in kept if k.startswith(("lock", "journal", "parts"))], kept
    assert not s3.client().list_multipart_uploads(Bucket=name).get("Uploads")

    verify = cli(s3, "verify", out)
    assert verify.returncode == 0, verify.stderr
    assert "all match the manifest" in verify.stderr
    again = cli(s3, "build", "--source", download, "--output", out, *FORMATS, *SHARDS)
    assert again.returncode == 0 and "already complete" in again.stdout + again.stderr

    # A flipped byte in a shard, and an image gone from a class folder: verify names both.
    client = s3.client()
    key = "prepared/tfrecord/train-00003-of-00012"
    data = bytearray(client.get_object(Bucket=name, Key=key)["Body"].read())
    data[len(data) // 2] ^= 0x01
    client.put_object(Bucket=name, Key=key, Body=bytes(data))
    image = next(k for k in objects(s3, out) if k.startswith("imagefolder/train/n"))
    client.delete_object(Bucket=name, Key=f"prepared/{image}")
    broken = cli(s3, "verify", out)
    assert broken.returncode == 1
    lines = broken.stderr.splitlines()
    assert any(line.startswith(f"imagenet-prep verify: {out}/tfrecord/train-00003-of-00012: ")
               for line in lines), lines  # fmt: skip
    folder = image.rsplit("/", 1)[0]
    assert any(f"{out}/{folder}: " in line for line in lines), "\n".join(lines)
    assert "/tmp" not in broken.stderr  # the problems name the objects, not local copies


@pytest.fixture(scope="module")
def longer(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, bytes]]:
    """A download of three shard tasks' worth of training images (a task takes about 256), and
    its build on disk: a kill can fall between two of them."""
    root = tmp_path_factory.mktemp("s3out-longer")
    download = root / "download"
    generate(
        FixtureConfig(out=download, classes=4, per_class=160, val_per_class=2, seed=3, pool_size=24)
    )
    out = root / "out"
    done = subprocess.run(
        command("build", "--source", download, "--output", out, *KILLED, *SHARDS, "--quiet"),
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return download, files(out)


def journaled(endpoint: S3Endpoint, name: str) -> int:
    listed = endpoint.client().list_objects_v2(Bucket=name, Prefix=f"prepared/{STATE_DIR}/journal/")
    return int(listed.get("KeyCount", 0))


def test_a_killed_build_resumes_from_another_process_and_cache(
    s3: S3Endpoint, longer: tuple[Path, dict[str, bytes]], tmp_path: Path
) -> None:
    """SIGKILL of the whole build once the bucket's journal holds a shard; the rerun runs with
    another cache folder (as on another machine): it finds the journal and the index in the
    bucket, takes over the dead build's lock and keeps the finished shards."""
    download, on_disk = longer
    out = bucket(s3, "killed")
    name = out.removeprefix("s3://").split("/")[0]
    args = command(
        "build", "--source", download, "--output", out, *KILLED, *SHARDS, "--workers", "1",
        "--quiet",
    )  # fmt: skip
    env = environment(s3, {"XDG_CACHE_HOME": str(tmp_path / "first")})
    proc = subprocess.Popen(args, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while journaled(s3, name) < 1:
            assert proc.poll() is None, "the build ended before the kill point"
            assert time.monotonic() < deadline, "the kill point was never reached"
            time.sleep(0.01)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finished = journaled(s3, name)
    assert 1 <= finished < 14, "the kill must leave finished and unfinished shards"
    client = s3.client()
    assert "Contents" not in client.list_objects_v2(Bucket=name, Prefix="prepared/manifest.json")
    lock = client.get_object(Bucket=name, Key=f"prepared/{STATE_DIR}/lock")["Body"].read()
    assert json.loads(lock)["host"] == socket.gethostname()  # the dead build's, left behind

    rerun = cli(
        s3, "build", "--source", download, "--output", out, *KILLED, *SHARDS,
        env={"XDG_CACHE_HOME": str(tmp_path / "second")},
    )  # fmt: skip
    assert rerun.returncode == 0, rerun.stderr
    assert "taking over the lock of a build that ended without it" in rerun.stderr
    assert "kept from the earlier run" in rerun.stderr
    assert "reusing the index of ILSVRC2012_img_val.tar" in rerun.stderr  # kept in the bucket
    assert objects(s3, out) == on_disk  # byte for byte: what verify would check, and more


def test_a_second_build_is_refused_while_the_first_holds_the_lock(
    s3: S3Endpoint, download: Path
) -> None:
    out = bucket(s3, "locked")
    name = out.removeprefix("s3://").split("/")[0]
    holder = {"host": socket.gethostname(), "pid": os.getpid(), "token": "t", "started": 0}
    s3.client().put_object(
        Bucket=name, Key=f"prepared/{STATE_DIR}/lock", Body=json.dumps(holder).encode()
    )
    done = cli(s3, "build", "--source", download, "--output", out, "--quiet")
    assert done.returncode == 2
    (line,) = done.stderr.splitlines()
    assert f"{out}: another build is writing to this output (process {os.getpid()} on " in line


def test_a_lock_left_on_another_machine_is_taken_over_once_its_heartbeat_stops(
    s3: S3Endpoint, download: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lock whose holder ran elsewhere cannot be asked whether it lives: it is judged by its
    heartbeat's age by the store's clock (shortened here)."""
    from imagenet_prep import storestate
    from imagenet_prep.config import BuildConfig
    from imagenet_prep.errors import UsageError
    from imagenet_prep.pipeline import build
    from imagenet_prep.storage import forget_stores

    s3.use(monkeypatch)
    forget_stores()
    out = bucket(s3, "elsewhere")
    name = out.removeprefix("s3://").split("/")[0]
    holder = {"host": "node-7.elsewhere", "pid": 1, "token": "t", "started": 0}
    s3.client().put_object(
        Bucket=name, Key=f"prepared/{STATE_DIR}/lock", Body=json.dumps(holder).encode()
    )
    config = BuildConfig(source=download, output=out, workers=1, validation_shards=1,
                         train_shards=2)  # fmt: skip
    with pytest.raises(UsageError, match=r"process 1 on node-7\.elsewhere"):
        build(config)
    monkeypatch.setattr(storestate, "ABANDONED", 1.0)
    time.sleep(2.2)  # the store's clock counts whole seconds
    result = build(config)
    assert result.images["train"] == 200
    listed = s3.client().list_objects_v2(Bucket=name, Prefix=f"prepared/{STATE_DIR}/lock")
    assert "Contents" not in listed  # released at the end
    forget_stores()


def test_output_bucket_errors_are_one_line(s3_iam: S3Endpoint, download: Path) -> None:
    missing = cli(s3_iam, "build", "--source", download, "--output", "s3://no-such-output/x")
    assert missing.returncode == 2, missing.stderr
    (line,) = missing.stderr.splitlines()
    assert line.startswith("imagenet-prep build: error: cannot write the output there: "
                           "s3://no-such-output/x: "), line  # fmt: skip
    s3_iam.client().create_bucket(Bucket="theirs")
    stranger = add_user(s3_iam, "writer", ["mine"])
    denied = cli(stranger, "build", "--source", download, "--output", "s3://theirs/x")
    assert denied.returncode == 2, denied.stderr
    (line,) = denied.stderr.splitlines()
    assert "s3://theirs/x: access denied" in line, line
    assert stranger.env["AWS_SECRET_ACCESS_KEY"] not in denied.stderr
    verify = cli(stranger, "verify", "s3://theirs/x")
    assert verify.returncode != 0 and "Traceback" not in verify.stderr
    assert len(verify.stderr.splitlines()) == 1, verify.stderr


def test_slow_down_answers_to_uploads_are_retried(
    s3: S3Endpoint, download: Path, on_disk: Path
) -> None:
    """503 SlowDown to the first PUTs (a part, an object): the client waits and sends again."""
    out = bucket(s3, "slowed")
    with SlowDownProxy(s3.url, fail_first=2, match=lambda method, _t: method == "PUT") as proxy:
        done = cli(
            s3.via(proxy.url), "build", "--source", download, "--output", out,
            "--formats", "tfrecord", "--dali-index", *SHARDS, "--quiet",
        )  # fmt: skip
        assert proxy.injected == 2
    assert done.returncode == 0, done.stderr
    assert of_formats(objects(s3, out), "tfrecord") == of_formats(files(on_disk), "tfrecord")
