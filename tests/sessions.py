"""The processes of a command started in a session of its own, read from /proc (Linux).

A command started with ``start_new_session=True`` leads a new session; every process it starts
(the fork server, its workers, the resource tracker) keeps that session id, also after the
leader has died and they were handed to another parent, so the session finds them all.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path


def in_session(sid: int) -> dict[int, str]:
    """Live processes of session ``sid`` (zombies count as gone): pid -> command line."""
    found = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{name}/stat").read_bytes()
            cmdline = Path(f"/proc/{name}/cmdline").read_bytes()
        except OSError:
            continue
        state, _ppid, _pgrp, session = stat[stat.rfind(b")") + 2 :].split()[:4]
        if int(session) == sid and state != b"Z":
            found[int(name)] = cmdline.replace(b"\0", b" ").decode(errors="replace").strip()
    return found


def wait_until_gone(sid: int, seconds: float) -> tuple[float, dict[int, str]]:
    """Poll until session ``sid`` has no live process or ``seconds`` passed: (time, left)."""
    started = time.monotonic()
    while True:
        left = in_session(sid)
        took = time.monotonic() - started
        if not left or took > seconds:
            return took, left
        time.sleep(0.01)


def kill_session(sid: int) -> None:
    """SIGKILL what is left of session ``sid`` (a failed test's cleanup)."""
    for pid in in_session(sid):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
