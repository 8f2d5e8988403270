"""Local engines: inline (one process) and a process pool that fails fast when a worker dies."""

from __future__ import annotations

import multiprocessing
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


def _ready() -> None:
    """A no-op task: submitting it makes the pool start a worker."""


class ProcessExecutor:
    """A pool of ``workers`` processes with at most ``2 * workers`` tasks in flight.

    Workers start from a small fork server (not a copy of the parent's memory), tasks
    are submitted lazily so memory stays bounded, an exception in a task stops the run
    (pending tasks are cancelled), and a worker that dies raises :class:`WorkerDied`
    at once instead of hanging. Used as a context manager, the workers start on entry,
    so they boot while the caller prepares the tasks.
    """

    def __init__(
        self,
        workers: int,
        *,
        start_method: str = "forkserver",
        preload: Sequence[str] = ("imagenet_prep.worker",),
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, not {workers}")
        self.workers = workers
        self._start_method = start_method
        self._preload = list(preload)
        self._pool: ProcessPoolExecutor | None = None
        self._aside: list[ProcessPoolExecutor] = []

    def _context(self) -> multiprocessing.context.BaseContext:
        ctx = multiprocessing.get_context(self._start_method)
        if self._start_method == "forkserver":
            ctx.set_forkserver_preload(self._preload)
        return ctx

    def _make_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(max_workers=self.workers, mp_context=self._context())

    def __enter__(self) -> ProcessExecutor:
        self._pool = self._make_pool()
        for _ in range(self.workers):
            self._pool.submit(_ready)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        for aside in self._aside:
            aside.shutdown(wait=True, cancel_futures=True)
        self._aside.clear()

    def run_aside(self, fn: Callable[..., R], *args: object) -> Future[R]:
        """Run ``fn(*args)`` in a process of its own, beside the pool, that exits when done.

        For a one-off task whose memory should not stay in a pool worker afterwards.
        """
        aside = ProcessPoolExecutor(max_workers=1, mp_context=self._context())
        self._aside.append(aside)
        future = aside.submit(fn, *args)
        aside.shutdown(wait=False)
        return future

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
