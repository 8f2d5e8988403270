"""The bookkeeping of an output in an object store: the journal and the lock.

An object store has no append and no file lock, so for an ``s3://`` (any fsspec) output the
two pieces of :class:`~imagenet_prep.manifest.OutputState` that need them are made of
whole objects instead:

- the journal is one small object per finished shard, ``.imagenet-prep/journal/<shard>``,
  written (one PUT) after the shard's objects are complete; a resume lists the prefix. A
  build killed on one machine so resumes on another: nothing of it lives on the machine.
- the lock is an object created by a conditional PUT (``If-None-Match: *``), which the store
  makes atomic: of two builds starting together, one creates it and the other is refused.
  The holder rewrites ``lock.alive`` every :data:`HEARTBEAT` seconds; a lock whose heartbeat
  is older than :data:`ABANDONED` seconds by the store's clock (or whose holder ran on this
  machine and is gone) was left by a build that was killed, and the next build takes it over.
  A store without conditional writes is refused with one line (no lock could be held there).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from .errors import DataError, UsageError
from .storage import Store, open_store

if TYPE_CHECKING:
    from .manifest import ShardResult

log = logging.getLogger(__name__)

#: The holder of a lock rewrites its heartbeat this often (seconds).
HEARTBEAT = 20.0
#: A lock whose heartbeat is older than this (seconds, by the store's clock) was abandoned.
ABANDONED = 90.0

JOURNAL_DIR = "journal"
LOCK_FILE = "lock"
ALIVE_FILE = "lock.alive"
CLOCK_FILE = "lock.clock"
#: The names of the lock's objects: a folder holding only these holds no build.
LOCK_OBJECTS = (LOCK_FILE, ALIVE_FILE, CLOCK_FILE)


class StoreJournal:
    """Done markers of finished shards: one object per shard under ``journal/``, holding its
    :class:`~imagenet_prep.manifest.ShardResult` as JSON.

    An object is written only after the shard's objects were completed, and a PUT is
    atomic, so an object means the shard is finished; there is no torn line to cut.
    """

    def __init__(self, root: Path) -> None:
        self.prefix = str(root).rstrip("/") + "/" + JOURNAL_DIR
        self._store: Store = open_store(self.prefix)

    def _url(self, shard: str) -> str:
        return f"{self.prefix}/{shard}.json"

    def load(self) -> dict[str, ShardResult]:
        """Every shard's result, by shard name (objects that are not one are ignored)."""
        from .manifest import ShardResult

        urls = [o.url for o in self._store.tree(self.prefix) if o.url.endswith(".json")]
        results: dict[str, ShardResult] = {}
        for data in self._store.read_many(urls).values():
            try:
                result = ShardResult.from_record(json.loads(data))
            except ValueError:
                continue
            if result is not None:
                results[result.shard] = result
        return results

    def extend(self, results: Iterable[ShardResult]) -> None:
        """Record the shards of one finished task (one PUT each, sent together)."""
        self._store.put_many(
            {
                self._url(r.shard): json.dumps(r.to_record(), separators=(",", ":")).encode()
                for r in results
            }
        )

    def close(self) -> None:
        pass

    def remove(self) -> None:
        self._store.delete_tree(self.prefix)

    def forget(self, which: Callable[[ShardResult], bool]) -> None:
        """Delete the records ``which`` selects (their shards will be made again)."""
        for result in self.load().values():
            if which(result):
                self._store.delete(self._url(result.shard))


class StoreLock:
    """One build per output prefix: an object created by a conditional PUT, kept alive by a
    heartbeat while the build runs, deleted when it ends (see the module's notes)."""

    def __init__(self, out: Path, root: Path, heartbeat: float = HEARTBEAT) -> None:
        self.out = out
        self.url = f"{str(root).rstrip('/')}/{LOCK_FILE}"
        self._alive = f"{str(root).rstrip('/')}/{ALIVE_FILE}"
        self._clock = f"{str(root).rstrip('/')}/{CLOCK_FILE}"
        self._store: Store = open_store(self.url)
        self._heartbeat = heartbeat
        self._token = uuid.uuid4().hex
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _holder(self) -> dict[str, Any]:
        return {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "token": self._token,
            "started": time.time(),
        }

    def acquire(self) -> None:
        holder = json.dumps(self._holder()).encode()
        if not self._store.create(self.url, holder):
            found = self._read_holder()
            if not self._abandoned(found):
                who = _describe(found)
                raise UsageError(
                    f"{self.out}: another build is writing to this output ({who}); wait for "
                    "it to end, or choose another output (a build that was killed leaves "
                    f"its lock for at most {ABANDONED:.0f} s)"
                )
            log.warning(
                "taking over the lock of a build that ended without it (%s)", _describe(found)
            )
            self._store.delete(self.url)
            if not self._store.create(self.url, holder):
                raise UsageError(
                    f"{self.out}: another build took this output just now; wait for it to "
                    "end, or choose another output"
                )
        self._beat()
        self._thread = threading.Thread(target=self._keep_alive, name="lock-heartbeat", daemon=True)
        self._thread.start()

    def _read_holder(self) -> dict[str, Any]:
        try:
            data = json.loads(self._store.read(self.url))
        except (DataError, ValueError):
            return {}  # gone since, or unreadable: judged by its age alone
        return data if isinstance(data, dict) else {}

    def _abandoned(self, holder: dict[str, Any]) -> bool:
        """Whether the lock's holder is gone: a process of this machine that no longer runs,
        or a heartbeat older than :data:`ABANDONED` by the store's clock."""
        if holder.get("host") == socket.gethostname() and isinstance(holder.get("pid"), int):
            try:
                os.kill(holder["pid"], 0)
            except ProcessLookupError:
                return True
            except PermissionError:
                pass
        beats = [self._modified(self._alive), self._modified(self.url)]
        last = max(beats)
        if last == 0.0:
            return True  # neither is there any more: the holder released it
        self._store.put(self._clock, b"")
        now = self._modified(self._clock)
        return now - last > ABANDONED

    def _modified(self, url: str) -> float:
        try:
            return self._store.info(url).modified
        except DataError:
            return 0.0

    def _beat(self) -> None:
        self._store.put(self._alive, self._token.encode())

    def _keep_alive(self) -> None:
        while not self._stop.wait(self._heartbeat):
            try:
                self._beat()
            except Exception as exc:
                log.warning("could not refresh the output's lock: %s", exc)

    def release(self) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join()
        self._thread = None
        # Deleted only while it is still this build's (not taken over while it was stalled).
        if self._read_holder().get("token") != self._token:
            return
        for url in (self.url, self._alive, self._clock):
            with contextlib.suppress(DataError, UsageError):
                if self._store.exists(url):
                    self._store.delete(url)

    def __enter__(self) -> StoreLock:
        self.acquire()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


def _describe(holder: dict[str, Any]) -> str:
    if "host" in holder and "pid" in holder:
        return f"process {holder['pid']} on {holder['host']}"
    return "another process"
