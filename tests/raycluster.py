"""A real Ray cluster on 127.0.0.1 for the tests and the benchmarks: ``ray start --head`` in a
session of its own, stopped by killing that whole session.

Ray binds to the machine's network address unless told otherwise; :data:`LOOPBACK` (set in
the environment of the cluster and of every driver) keeps every Ray process on 127.0.0.1 and
gives them one token (Ray's token authentication, on as by default, with a token of this run
rather than one saved in ``~/.ray``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from tests.sessions import in_session, kill_session, wait_until_gone

#: The environment of a loopback-only Ray: its processes bind 127.0.0.1 (Ray's switch for
#: machines it does not cluster, macOS and Windows), token authentication with this run's
#: token, no usage statistics.
LOOPBACK = {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_AUTH_MODE": "token",
    # The run's: pytest-xdist's workers import this module again, and take the token their
    # controller put into the environment they inherit.
    "RAY_AUTH_TOKEN": os.environ.get("RAY_AUTH_TOKEN") or os.urandom(32).hex(),
    "RAY_USAGE_STATS_ENABLED": "0",
}

#: How long a new head may take to take a driver.
START_SECONDS = 120.0


def use_loopback() -> None:
    """Put :data:`LOOPBACK` into this process's environment (before ``ray`` is imported: it
    reads some of it at import), so that drivers here and the processes started from here
    use it."""
    for name, value in LOOPBACK.items():
        os.environ.setdefault(name, value)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ready(address: str) -> bool:
    """Whether a driver can connect to ``address`` (tried from a process of its own, so that
    this one stays free of Ray)."""
    probe = (
        "import logging, ray; "
        f"ray.init(address={address!r}, log_to_driver=False, logging_level=logging.ERROR); "
        "assert ray.cluster_resources().get('CPU', 0) > 0"
    )
    try:
        done = subprocess.run(
            [sys.executable, "-c", probe],
            capture_output=True,
            timeout=30,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        return False
    return done.returncode == 0


@contextlib.contextmanager
def ray_head(cpus: int = 2, env: dict[str, str] | None = None) -> Iterator[tuple[str, int]]:
    """A Ray head of ``cpus`` CPUs on 127.0.0.1: its address and the session id of all its
    processes (``env`` added to their environment, and so to its workers'). Every one of them
    is killed on the way out."""
    use_loopback()
    ray = Path(sys.executable).with_name("ray")
    port = free_port()
    command = [
        str(ray),
        "start",
        "--head",
        "--block",
        f"--port={port}",
        "--node-ip-address=127.0.0.1",
        f"--num-cpus={cpus}",
        "--include-dashboard=false",
        "--disable-usage-stats",
    ]
    proc = subprocess.Popen(
        command,
        start_new_session=True,
        stdin=subprocess.DEVNULL,  # not a pytest-xdist worker's channel
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, **LOOPBACK, **(env or {})},
    )
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_SECONDS
        while not _ready(address):
            if proc.poll() is not None:
                raise RuntimeError(f"`ray start --head` ended with status {proc.returncode}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"no Ray head at {address} after {START_SECONDS:.0f} s")
            time.sleep(0.5)
        yield address, proc.pid
    finally:
        stop(proc.pid)
        proc.wait(timeout=30)


def stop(sid: int) -> None:
    """Kill every process of the head's session (GCS, raylet, agents, workers) and wait until
    they are gone: ``ray stop`` would stop every Ray instance of this user on the machine."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(sid, signal.SIGKILL)
    kill_session(sid)  # any that left the process group
    _took, left = wait_until_gone(sid, 10)
    if left:
        raise RuntimeError(f"Ray processes still running after the kill: {left}")


def tasks_running(name: str) -> list[int]:
    """Ray worker processes running a task called ``name`` now (Ray titles them ray::NAME)."""
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if cmdline.split(b"\0", 1)[0].strip() == f"ray::{name}".encode():
                found.append(int(pid))
    return found


__all__ = ["LOOPBACK", "in_session", "ray_head", "stop", "tasks_running", "use_loopback"]
