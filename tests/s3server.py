"""A real S3-compatible server on 127.0.0.1 for the tests: moto's server mode in a session of its
own, and :class:`SlowDownProxy`, a loopback proxy in front of it that answers chosen requests
with S3's ``503 SlowDown`` so that retries are exercised against real clients.

The server is a subprocess rather than moto's in-process ``ThreadedMotoServer`` so that a test
may kill a build's processes without touching it, and so that its state (IAM mode included)
is its own and not this interpreter's.

IAM mode: moto checks signatures and policies only once ``INITIAL_NO_AUTH_ACTION_COUNT``
actions were served, and a request is only signed right with the keys of an IAM user that
exists in moto. :func:`moto_server` with ``iam=True`` therefore starts open, makes an ``admin``
user allowed everything, hands out its keys, and then turns the checks on for every request
(``POST /moto-api/reset-auth`` with 0). Unknown keys then get ``403 InvalidAccessKeyId`` and a
user of :func:`add_user` gets ``403 AccessDenied`` outside its buckets.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, BinaryIO
from urllib.parse import urlsplit

import pytest

from tests.raycluster import free_port
from tests.sessions import kill_session, wait_until_gone

#: How long a new moto server may take to answer (its import is most of it).
START_SECONDS = 60.0

#: The keys of a server without IAM checks (any keys are accepted then).
OPEN_KEYS = ("testing", "testing")

#: Variables of the caller's environment that would change how clients sign or retry.
FOREIGN = (
    "AWS_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_RETRY_MODE",
    "AWS_MAX_ATTEMPTS",
)


@dataclasses.dataclass(frozen=True)
class S3Endpoint:
    """Where an S3 server answers and the environment a client needs to use it.

    ``env`` also points the AWS config and credential files at ``/dev/null`` so that nothing
    of the user's ``~/.aws`` (a profile, a retry mode) changes what a test sees, and turns off
    the EC2 metadata probe. ``sid`` is the session of the server's processes.
    """

    url: str
    env: dict[str, str]
    sid: int

    def via(self, url: str) -> S3Endpoint:
        """The same server and keys reached through ``url`` (a :class:`SlowDownProxy`)."""
        return dataclasses.replace(self, url=url, env={**self.env, "AWS_ENDPOINT_URL": url})

    def use(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Put ``env`` into this process's environment for one test and take out the
        variables of :data:`FOREIGN` (set a retry setting after this, not before)."""
        for name in FOREIGN:
            monkeypatch.delenv(name, raising=False)
        for name, value in self.env.items():
            monkeypatch.setenv(name, value)

    def client(self, service: str = "s3") -> Any:
        """A boto3 client of ``service`` at ``url`` signing with the keys of ``env``, whatever
        the process environment says of endpoint and keys (its retry settings still count)."""
        import boto3

        return boto3.session.Session(
            aws_access_key_id=self.env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=self.env["AWS_SECRET_ACCESS_KEY"],
            region_name=self.env["AWS_DEFAULT_REGION"],
        ).client(service, endpoint_url=self.url)


def client_env(url: str, keys: tuple[str, str]) -> dict[str, str]:
    """The environment of a client of ``url`` signing with ``keys``."""
    return {
        "AWS_ENDPOINT_URL": url,
        "AWS_ACCESS_KEY_ID": keys[0],
        "AWS_SECRET_ACCESS_KEY": keys[1],
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/moto-api/data.json", timeout=5) as reply:
            return bool(reply.status == 200)
    except (OSError, urllib.error.URLError):
        return False


@contextlib.contextmanager
def moto_server(iam: bool = False) -> Iterator[S3Endpoint]:
    """A moto server on 127.0.0.1 in a session of its own; with ``iam`` its IAM checks are on
    and ``env`` holds the keys of an admin user. Every process of it is killed on the way out."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server_env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    server_env.pop("INITIAL_NO_AUTH_ACTION_COUNT", None)
    command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            command,
            start_new_session=True,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=server_env,
        )
        try:
            deadline = time.monotonic() + START_SECONDS
            while not _answers(url):
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    tail = log.read().decode(errors="replace")[-2000:]
                    raise RuntimeError(f"no moto server at {url} ({proc.returncode=}):\n{tail}")
                time.sleep(0.05)
            endpoint = S3Endpoint(url, client_env(url, OPEN_KEYS), proc.pid)
            if iam:
                endpoint = _with_iam(endpoint)
            yield endpoint
        finally:
            stop(proc.pid)
            proc.wait(timeout=30)


def stop(sid: int) -> None:
    """Kill every process of the server's session and wait until they are gone."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(sid, signal.SIGKILL)
    kill_session(sid)
    _took, left = wait_until_gone(sid, 10)
    if left:
        raise RuntimeError(f"moto processes still running after the kill: {left}")


ALLOW_ALL = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
}


def _with_iam(endpoint: S3Endpoint) -> S3Endpoint:
    """Make an admin user while the server is open, then have it check every request."""
    admin = _user(endpoint, "admin", ALLOW_ALL)
    request = urllib.request.Request(
        f"{endpoint.url}/moto-api/reset-auth",
        b"0",
        headers={"Content-Type": "text/plain"},  # a form would leave moto's request.data empty
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as reply:
        if reply.status != 200:
            raise RuntimeError(f"moto refused reset-auth: {reply.status}")
    return admin


def _user(endpoint: S3Endpoint, name: str, policy: Mapping[str, Any]) -> S3Endpoint:
    iam = endpoint.client("iam")
    iam.create_user(UserName=name)
    iam.put_user_policy(
        UserName=name, PolicyName=f"{name}-policy", PolicyDocument=json.dumps(policy)
    )
    key = iam.create_access_key(UserName=name)["AccessKey"]
    env = client_env(endpoint.url, (key["AccessKeyId"], key["SecretAccessKey"]))
    return dataclasses.replace(endpoint, env=env)


def add_user(endpoint: S3Endpoint, name: str, buckets: Sequence[str]) -> S3Endpoint:
    """An IAM user allowed every S3 action on ``buckets`` and their objects, nothing else:
    the endpoint with its keys. On a server of ``moto_server(iam=True)`` (made with the admin
    keys of ``endpoint``), its requests to any other bucket get ``403 AccessDenied``."""
    resources = [f"arn:aws:s3:::{b}{tail}" for b in buckets for tail in ("", "/*")]
    policy = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": resources}],
    }
    return _user(endpoint, name, policy)


SLOWDOWN_BODY = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message>"
    b"<RequestId>SLOWDOWNPROXY</RequestId><HostId>slowdown-proxy</HostId></Error>"
)

#: Headers of one hop only, never passed on as they came.
HOP_BY_HOP = {b"connection", b"keep-alive", b"proxy-connection", b"expect"}


def every_request(_method: str, _target: str) -> bool:
    return True


class _Message:
    """The start line and headers of an HTTP message, the header lines kept as they came."""

    def __init__(self, reader: BinaryIO) -> None:
        start = reader.readline(65536)
        while start in (b"\r\n", b"\n"):  # tolerated before a request (RFC 9112 2.2)
            start = reader.readline(65536)
        if not start:
            raise EOFError
        self.start = start.rstrip(b"\r\n")
        self.lines: list[bytes] = []
        while (line := reader.readline(65536)) not in (b"\r\n", b"\n", b""):
            self.lines.append(line.rstrip(b"\r\n"))

    def get(self, name: bytes) -> bytes | None:
        for line in self.lines:
            key, _, value = line.partition(b":")
            if key.strip().lower() == name:
                return value.strip()
        return None

    def tokens(self, name: bytes) -> set[bytes]:
        value = self.get(name) or b""
        return {token.strip().lower() for token in value.split(b",") if token.strip()}

    def head(self, connection: bytes) -> bytes:
        """These lines without hop-by-hop headers, with ``Connection: connection``."""
        kept = [ln for ln in self.lines if ln.partition(b":")[0].strip().lower() not in HOP_BY_HOP]
        return b"\r\n".join([self.start, *kept, b"Connection: " + connection, b"", b""])


def _copy(reader: BinaryIO, write: Callable[[bytes], object], size: int) -> None:
    while size > 0:
        piece = reader.read(min(size, 1 << 16))
        if not piece:
            raise EOFError("connection closed inside a message body")
        write(piece)
        size -= len(piece)


def _copy_chunked(reader: BinaryIO, write: Callable[[bytes], object]) -> None:
    """Relay a chunked body as it is, chunk sizes, extensions and trailers included."""
    while True:
        line = reader.readline(65536)
        if not line:
            raise EOFError("connection closed inside a chunked body")
        write(line)
        size = int(line.split(b";", 1)[0].strip(), 16)
        if size == 0:
            break
        _copy(reader, write, size + 2)  # the chunk and its CRLF
    while (line := reader.readline(65536)) not in (b"\r\n", b"\n", b""):
        write(line)  # trailer fields
    write(b"\r\n")


def _copy_to_eof(reader: BinaryIO, write: Callable[[bytes], object]) -> None:
    while piece := reader.read1(1 << 16):  # type: ignore[attr-defined]
        write(piece)


def _copy_body(message: _Message, reader: BinaryIO, write: Callable[[bytes], object]) -> bool:
    """Relay the body that ``message`` announces; False when it runs to the end of the
    connection (a response with neither a length nor chunks)."""
    if b"chunked" in message.tokens(b"transfer-encoding"):
        _copy_chunked(reader, write)
    elif (length := message.get(b"content-length")) is not None:
        _copy(reader, write, int(length))
    else:
        return False
    return True


def _discard(_data: bytes) -> None:
    pass


class SlowDownProxy:
    """A loopback HTTP proxy to ``upstream`` that answers the first ``fail_first`` requests for
    which ``match(method, target)`` holds with S3's ``503 SlowDown``, and forwards the rest.

    Bodies are streamed both ways as they come (``Content-Length``, chunked, aws-chunked,
    ``Expect: 100-continue``); client connections are kept alive. ``seen`` counts the
    requests, ``injected`` the 503s, ``log`` holds ``(method, target, status)`` of each.
    As a context manager it listens on ``url`` and, on the way out, closes every connection
    and joins every thread it started.
    """

    def __init__(
        self,
        upstream: str,
        fail_first: int,
        match: Callable[[str, str], bool] = every_request,
    ) -> None:
        parts = urlsplit(upstream)
        if parts.scheme != "http" or parts.hostname is None or parts.port is None:
            raise ValueError(f"upstream must be http://host:port, not {upstream!r}")
        self.upstream = (parts.hostname, parts.port)
        self.fail_first = fail_first
        self.match = match
        self.url = ""
        self.seen = 0
        self.injected = 0
        self.log: list[tuple[str, str, int]] = []
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._listener: socket.socket | None = None

    def __enter__(self) -> SlowDownProxy:
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        self._listener = listener
        self.url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        self._start(self._accept, listener)
        return self

    def __exit__(self, *_exc: object) -> None:
        if self._listener is None:
            return
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self._threads[0].join(timeout=10)  # the accepting thread: no new connections after it
        with self._lock:
            open_sockets = list(self._sockets)
            threads = list(self._threads)
        for sock in open_sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for thread in threads:
            thread.join(timeout=10)
        self._listener = None

    def _start(self, target: Callable[[socket.socket], None], sock: socket.socket) -> None:
        thread = threading.Thread(target=target, args=(sock,), daemon=True)
        with self._lock:
            self._threads.append(thread)
        thread.start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _address = listener.accept()
            except OSError:
                return  # closed by __exit__
            with self._lock:
                self._sockets.add(client)
            self._start(self._serve, client)

    def _serve(self, client: socket.socket) -> None:
        try:
            with client, client.makefile("rb") as reader:
                while self._one(client, reader):
                    pass
        except (OSError, EOFError, ValueError):
            pass  # the client went away, or __exit__ closed the connection
        finally:
            with self._lock:
                self._sockets.discard(client)

    def _one(self, client: socket.socket, reader: BinaryIO) -> bool:
        """Answer one request; whether the connection stays open for another."""
        request = _Message(reader)
        method, target, version = request.start.decode("latin-1").split(" ", 2)
        keep = version == "HTTP/1.1" and b"close" not in request.tokens(b"connection")
        expects = b"100-continue" in request.tokens(b"expect")
        with self._lock:
            self.seen += 1
            inject = self.injected < self.fail_first and self.match(method, target)
            if inject:
                self.injected += 1
        if inject:
            if expects:
                keep = False  # the client holds the body back: nothing more can be read here
            else:
                _copy_body(request, reader, _discard)
            self._note(method, target, 503)
            self._slow_down(client, method, keep)
            return keep
        if expects:
            client.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        return self._forward(request, reader, client, keep)

    def _note(self, method: str, target: str, status: int) -> None:
        """Log a request before its answer goes out: a client that has its answer finds it."""
        with self._lock:
            self.log.append((method, target, status))

    def _slow_down(self, client: socket.socket, method: str, keep: bool) -> None:
        body = b"" if method == "HEAD" else SLOWDOWN_BODY
        head = (
            "HTTP/1.1 503 Slow Down\r\n"
            "Content-Type: application/xml\r\n"
            f"Content-Length: {len(body)}\r\n"
            "x-amz-request-id: SLOWDOWNPROXY\r\n"
            f"Connection: {'keep-alive' if keep else 'close'}\r\n\r\n"
        )
        client.sendall(head.encode() + body)

    def _forward(
        self,
        request: _Message,
        reader: BinaryIO,
        client: socket.socket,
        keep: bool,
    ) -> bool:
        """Send ``request`` upstream on a connection of its own and relay the answer; whether
        the client connection can stay open (the answer's end was marked)."""
        method, target, _version = request.start.decode("latin-1").split(" ", 2)
        upstream = socket.create_connection(self.upstream, timeout=60)
        with self._lock:
            self._sockets.add(upstream)
        try:
            with upstream, upstream.makefile("rb") as answer:
                upstream.sendall(request.head(b"close"))
                _copy_body(request, reader, upstream.sendall)
                response = _Message(answer)
                while response.start.split(b" ", 2)[1].startswith(b"1"):
                    response = _Message(answer)  # an interim answer that was not asked for
                status = int(response.start.split(b" ", 2)[1])
                bodiless = method == "HEAD" or status in (204, 304)
                framed = bodiless or (
                    b"chunked" in response.tokens(b"transfer-encoding")
                    or response.get(b"content-length") is not None
                )
                keep = keep and framed
                self._note(method, target, status)
                client.sendall(response.head(b"keep-alive" if keep else b"close"))
                if not bodiless and not _copy_body(response, answer, client.sendall):
                    _copy_to_eof(answer, client.sendall)
                return keep
        finally:
            with self._lock:
                self._sockets.discard(upstream)


__all__ = [
    "SLOWDOWN_BODY",
    "S3Endpoint",
    "SlowDownProxy",
    "add_user",
    "client_env",
    "moto_server",
    "stop",
]
