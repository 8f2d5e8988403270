"""Local engines: inline (one process) and a process pool that fails fast when a worker dies."""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from types import TracebackType
from typing import TypeVar

from ..errors import ImagenetPrepError

T = TypeVar("T")
R = TypeVar("R")


class WorkerDied(ImagenetPrepError):
    """A worker process ended without finishing its task (killed, or out of memory)."""


class InlineExecutor:
    """Run every task in the calling process, in order."""

    workers = 1

    def __enter__(self) -> InlineExecutor:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None

    def map_unordered(self, fn: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
        for item in items:
            yield fn(item)

    def run_aside(self, fn: Callable[..., R], *args: object) -> Future[R]:
        """Run ``fn(*args)`` now; return its outcome as a finished future."""
        future: Future[R] = Future()
        try:
            future.set_result(fn(*args))
        except Exception as exc:  # the caller's .result() re-raises it
            future.set_exception(exc)
        return future


#: Modules the fork server imports once, so that workers forked from it start warm.
PRELOAD = ("imagenet_prep.worker", "imagenet_prep.sources")


def start_fork_server(preload: Sequence[str] = PRELOAD) -> None:
    """Boot multiprocessing's fork server now, from a background thread, and return.

    Starting it (a fresh interpreter importing ``preload``) takes about a tenth of a second;
    a command that will make a :class:`ProcessExecutor` calls this first, so the server
    boots while the command's own modules load. A pool made later uses the running server.
    """
    import multiprocessing.forkserver

    multiprocessing.get_context("forkserver").set_forkserver_preload(list(preload))
    threading.Thread(
        target=multiprocessing.forkserver.ensure_running,
        name="imagenet-prep-forkserver",
        daemon=True,
    ).start()


def _copy_outcome(source: Future[R], target: Future[R]) -> None:
    exc = source.exception()
    if exc is not None:
        target.set_exception(exc)
    else:
        target.set_result(source.result())


def _ready() -> None:
    """A no-op task: submitting it makes the pool start a worker."""


class ProcessExecutor:
    """A pool of ``workers`` processes with at most ``2 * workers`` tasks in flight.

    Workers start from a small fork server (not a copy of the parent's memory), tasks
    are submitted lazily so memory stays bounded, an exception in a task stops the run
    (pending tasks are cancelled), and a worker that dies raises :class:`WorkerDied`
    at once instead of hanging. Used as a context manager, the workers start on entry,
    from a background thread, so they boot while the caller prepares the tasks (starting
    the fork server, which imports ``preload``, takes a tenth of a second).
    """

    def __init__(
        self,
        workers: int,
        *,
        start_method: str = "forkserver",
        preload: Sequence[str] = PRELOAD,
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, not {workers}")
        self.workers = workers
        self._start_method = start_method
        self._preload = list(preload)
        self._pool: ProcessPoolExecutor | None = None
        self._aside: list[list[multiprocessing.process.BaseProcess]] = []
        self._starting: list[threading.Thread] = []

    def _context(self) -> multiprocessing.context.BaseContext:
        ctx = multiprocessing.get_context(self._start_method)
        if self._start_method == "forkserver":
            ctx.set_forkserver_preload(self._preload)
        return ctx

    def _make_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(max_workers=self.workers, mp_context=self._context())

    def _in_background(self, fn: Callable[[], None]) -> None:
        thread = threading.Thread(target=fn, name="imagenet-prep-start", daemon=True)
        self._starting.append(thread)
        thread.start()

    def __enter__(self) -> ProcessExecutor:
        pool = self._pool = self._make_pool()

        def start() -> None:
            for _ in range(self.workers):
                pool.submit(_ready)

        self._in_background(start)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for thread in self._starting:
            thread.join()
        self._starting.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        for processes in self._aside:
            if kind is not None:
                # The run failed: a one-off task may have minutes left (hashing a 138 GB
                # archive) and nobody will use its result, so it is stopped, not left to
                # run on after this process has gone.
                for process in processes:
                    process.terminate()
            for process in processes:
                process.join(timeout=10)
        self._aside.clear()

    def run_aside(self, fn: Callable[..., R], *args: object) -> Future[R]:
        """Run ``fn(*args)`` in a process of its own, beside the pool, that exits when done.

        For a one-off task whose memory should not stay in a pool worker afterwards. The
        process is started from a background thread: this call returns at once.
        """
        outer: Future[R] = Future()
        outer.set_running_or_notify_cancel()
        context = self._context()

        def start() -> None:
            try:
                aside = ProcessPoolExecutor(max_workers=1, mp_context=context)
                inner = aside.submit(fn, *args)  # starts the process
                # Kept to stop it if the run fails: concurrent.futures has no public way.
                self._aside.append(list((getattr(aside, "_processes", None) or {}).values()))
                aside.shutdown(wait=False)
            except BaseException as exc:  # e.g. the fork server could not start
                outer.set_exception(exc)
                return
            inner.add_done_callback(lambda done: _copy_outcome(done, outer))

        self._in_background(start)
        return outer

    def map_unordered(self, fn: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
        if self._pool is not None:
            yield from self._run(self._pool, fn, items)
            return
        with self:
            assert self._pool is not None
            yield from self._run(self._pool, fn, items)

    def _run(
        self, pool: ProcessPoolExecutor, fn: Callable[[T], R], items: Iterable[T]
    ) -> Iterator[R]:
        pending: set[Future[R]] = set()
        source = iter(items)
        limit = 2 * self.workers

        def fill() -> None:
            while len(pending) < limit:
                try:
                    item = next(source)
                except StopIteration:
                    return
                pending.add(pool.submit(fn, item))

        try:
            fill()
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    pending.discard(fut)
                    try:
                        result = fut.result()
                    except BrokenProcessPool:
                        raise WorkerDied(
                            "a worker process died before finishing its shard (killed, or out "
                            "of memory); finished shards are kept, rerun the command to resume"
                        ) from None
                    yield result
                fill()
        finally:
            for fut in pending:
                fut.cancel()
