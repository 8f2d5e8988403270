"""The S3 test server works with real clients: moto in server mode on 127.0.0.1 (tests/s3server.py),
boto3 and s3fs against it, its IAM checks, and the SlowDown proxy whose 503s the clients retry.

Retries back off by botocore's legacy mode (the default: 5 attempts, ``rand() * 2**n`` seconds
before retry ``n``), so the proxy tests inject at most two failures each.
"""

from __future__ import annotations

import dataclasses
import http.client
import io
import uuid
from urllib.parse import urlsplit

import botocore.exceptions
import fsspec
import pytest
from tests.s3server import S3Endpoint, SlowDownProxy, add_user, moto_server
from tests.sessions import in_session

PAYLOAD = bytes(range(256)) * 64  # 16 KiB


def unique_bucket(prefix: str) -> str:
    """A bucket name no other test uses on the shared server."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def s3fs_of(endpoint: S3Endpoint, monkeypatch: pytest.MonkeyPatch) -> fsspec.AbstractFileSystem:
    """An s3fs filesystem that finds endpoint and keys in the environment only, as the
    project's code will. fsspec caches instances by their arguments, not by the environment,
    so a cached one could belong to another server or other keys."""
    endpoint.use(monkeypatch)
    return fsspec.filesystem("s3", skip_instance_cache=True)


def error_of(info: pytest.ExceptionInfo[botocore.exceptions.ClientError]) -> tuple[str, int]:
    response = info.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]


def test_server_runs_in_a_session_of_its_own_and_is_gone_after() -> None:
    with moto_server() as endpoint:
        assert urlsplit(endpoint.url).hostname == "127.0.0.1"
        assert endpoint.env["AWS_ENDPOINT_URL"] == endpoint.url
        assert any("moto.server" in command for command in in_session(endpoint.sid).values())
        endpoint.client().create_bucket(Bucket="lifecycle")
    assert in_session(endpoint.sid) == {}


def test_boto3_put_get_and_ranged_get(s3: S3Endpoint) -> None:
    client = s3.client()
    bucket = unique_bucket("boto3")
    client.create_bucket(Bucket=bucket)
    client.put_object(Bucket=bucket, Key="dir/a.bin", Body=PAYLOAD)
    assert client.get_object(Bucket=bucket, Key="dir/a.bin")["Body"].read() == PAYLOAD
    ranged = client.get_object(Bucket=bucket, Key="dir/a.bin", Range="bytes=100-199")
    assert ranged["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert ranged["ContentRange"] == f"bytes 100-199/{len(PAYLOAD)}"
    assert ranged["Body"].read() == PAYLOAD[100:200]
    listed = client.list_objects_v2(Bucket=bucket)["Contents"]
    assert [(o["Key"], o["Size"]) for o in listed] == [("dir/a.bin", len(PAYLOAD))]


def test_s3fs_finds_the_server_in_the_environment(
    s3: S3Endpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    fs = s3fs_of(s3, monkeypatch)
    bucket = unique_bucket("s3fs")
    fs.mkdir(bucket)
    fs.pipe(f"{bucket}/dir/a.bin", PAYLOAD)
    assert fs.cat(f"{bucket}/dir/a.bin") == PAYLOAD
    assert fs.cat_file(f"{bucket}/dir/a.bin", start=1000, end=1010) == PAYLOAD[1000:1010]
    with fs.open(f"{bucket}/dir/a.bin", "rb", block_size=4096) as f:
        f.seek(5000)
        assert f.read(10) == PAYLOAD[5000:5010]
    assert fs.ls(f"{bucket}/dir", detail=False) == [f"{bucket}/dir/a.bin"]
    assert s3.client().get_object(Bucket=bucket, Key="dir/a.bin")["Body"].read() == PAYLOAD


def test_no_such_bucket(s3: S3Endpoint, monkeypatch: pytest.MonkeyPatch) -> None:
    client = s3.client()
    with pytest.raises(client.exceptions.NoSuchBucket) as info:
        client.get_object(Bucket="no-such-bucket", Key="a")
    assert error_of(info) == ("NoSuchBucket", 404)
    assert "\n" not in str(info.value)
    with pytest.raises(botocore.exceptions.ClientError) as info:
        client.head_bucket(Bucket="no-such-bucket")
    assert error_of(info) == ("404", 404)  # a HEAD answer has no body to name the error

    fs = s3fs_of(s3, monkeypatch)
    with pytest.raises(FileNotFoundError):
        fs.cat("no-such-bucket/a")
    with pytest.raises(FileNotFoundError):
        fs.ls("no-such-bucket")


def test_iam_unknown_keys_are_refused(s3_iam: S3Endpoint, monkeypatch: pytest.MonkeyPatch) -> None:
    bucket = unique_bucket("iam-keys")
    s3_iam.client().create_bucket(Bucket=bucket)
    stranger = dataclasses.replace(
        s3_iam,
        env={**s3_iam.env, "AWS_ACCESS_KEY_ID": "AKIAUNKNOWN0000000", "AWS_SECRET_ACCESS_KEY": "x"},
    )
    with pytest.raises(botocore.exceptions.ClientError) as info:
        stranger.client().list_objects_v2(Bucket=bucket)
    assert error_of(info) == ("InvalidAccessKeyId", 403)

    wrong_secret = dataclasses.replace(
        s3_iam, env={**s3_iam.env, "AWS_SECRET_ACCESS_KEY": "not-the-secret"}
    )
    with pytest.raises(botocore.exceptions.ClientError) as info:
        wrong_secret.client().list_objects_v2(Bucket=bucket)
    assert error_of(info) == ("SignatureDoesNotMatch", 403)

    with pytest.raises(PermissionError):
        s3fs_of(stranger, monkeypatch).ls(bucket)


def test_iam_user_is_denied_outside_its_bucket(
    s3_iam: S3Endpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    admin = s3_iam.client()
    mine, theirs = unique_bucket("iam-mine"), unique_bucket("iam-theirs")
    for bucket in (mine, theirs):
        admin.create_bucket(Bucket=bucket)
        admin.put_object(Bucket=bucket, Key="a.bin", Body=PAYLOAD)
    user = add_user(s3_iam, f"reader-{uuid.uuid4().hex[:8]}", [mine])
    client = user.client()
    assert client.get_object(Bucket=mine, Key="a.bin")["Body"].read() == PAYLOAD
    with pytest.raises(botocore.exceptions.ClientError) as info:
        client.get_object(Bucket=theirs, Key="a.bin")
    assert error_of(info) == ("AccessDenied", 403)
    assert "\n" not in str(info.value)
    with pytest.raises(botocore.exceptions.ClientError) as info:
        client.list_objects_v2(Bucket=theirs)
    assert error_of(info) == ("AccessDenied", 403)

    fs = s3fs_of(user, monkeypatch)
    assert fs.cat(f"{mine}/a.bin") == PAYLOAD
    with pytest.raises(PermissionError):
        fs.cat(f"{theirs}/a.bin")


def test_boto3_retries_slowdown(s3: S3Endpoint) -> None:
    bucket = unique_bucket("slow-boto3")
    s3.client().create_bucket(Bucket=bucket)
    with SlowDownProxy(s3.url, fail_first=2, match=lambda method, _: method == "PUT") as proxy:
        client = s3.via(proxy.url).client()
        # A file-like body: botocore sends ``Expect: 100-continue`` and holds the body back.
        client.put_object(Bucket=bucket, Key="a.bin", Body=io.BytesIO(PAYLOAD))
        assert client.get_object(Bucket=bucket, Key="a.bin")["Body"].read() == PAYLOAD
    assert proxy.injected == 2
    assert [status for _, _, status in proxy.log] == [503, 503, 200, 200]
    assert s3.client().get_object(Bucket=bucket, Key="a.bin")["Body"].read() == PAYLOAD


def test_boto3_gives_up_after_its_attempts(s3: S3Endpoint, monkeypatch: pytest.MonkeyPatch) -> None:
    bucket = unique_bucket("slow-limit")
    s3.client().create_bucket(Bucket=bucket)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    with (
        SlowDownProxy(s3.url, fail_first=10) as proxy,
        pytest.raises(botocore.exceptions.ClientError) as info,
    ):
        s3.via(proxy.url).client().get_object(Bucket=bucket, Key="a.bin")
    assert error_of(info) == ("SlowDown", 503)
    assert "\n" not in str(info.value)
    assert (proxy.seen, proxy.injected) == (2, 2)


def test_s3fs_retries_slowdown(s3: S3Endpoint, monkeypatch: pytest.MonkeyPatch) -> None:
    bucket = unique_bucket("slow-s3fs")
    s3.client().create_bucket(Bucket=bucket)
    with SlowDownProxy(s3.url, fail_first=2, match=lambda method, _: method == "GET") as proxy:
        fs = s3fs_of(s3.via(proxy.url), monkeypatch)
        fs.pipe(f"{bucket}/a.bin", PAYLOAD)
        assert fs.cat_file(f"{bucket}/a.bin", start=10, end=20) == PAYLOAD[10:20]
    assert proxy.injected == 2
    assert [(m, s) for m, _, s in proxy.log] == [
        ("PUT", 200),
        ("GET", 503),
        ("GET", 503),
        ("GET", 206),
    ]


def test_proxy_relays_chunked_bodies_and_keeps_connections(s3: S3Endpoint) -> None:
    """A chunked upload through the proxy (the framing botocore uses for bodies of unknown
    length), then a 503 for a request that waits for ``100 Continue``, on one connection."""
    bucket = unique_bucket("chunked")
    s3.client().create_bucket(Bucket=bucket)
    with SlowDownProxy(s3.url, fail_first=1, match=lambda _, target: "late" in target) as proxy:
        connection = http.client.HTTPConnection(urlsplit(proxy.url).netloc, timeout=10)
        connection.putrequest("PUT", f"/{bucket}/chunked.bin")  # unsigned: moto's open mode
        connection.putheader("Transfer-Encoding", "chunked")
        connection.endheaders()
        for start in range(0, len(PAYLOAD), 5000):
            piece = PAYLOAD[start : start + 5000]
            connection.send(b"%x\r\n%s\r\n" % (len(piece), piece))
        connection.send(b"0\r\n\r\n")  # werkzeug under moto takes no chunk extensions
        response = connection.getresponse()
        assert (response.status, response.read()) == (200, b"")
        assert response.getheader("Connection") == "keep-alive"

        connection.putrequest("PUT", f"/{bucket}/late.bin")
        connection.putheader("Content-Length", "3")
        connection.putheader("Expect", "100-continue")
        connection.endheaders()
        response = connection.getresponse()
        assert response.status == 503
        assert b"<Code>SlowDown</Code>" in response.read()
        assert response.getheader("Connection") == "close"
        connection.close()
    assert s3.client().get_object(Bucket=bucket, Key="chunked.bin")["Body"].read() == PAYLOAD
    assert [s for _, _, s in proxy.log] == [200, 503]
