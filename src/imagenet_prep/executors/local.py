"""Local engines: inline (one process) and a process pool that fails fast when a worker dies.

Worker processes end with the process that made them, however it ends: each runs a watchdog
thread that exits the worker once that process is gone (see :func:`_watch`).
"""

from __future__ import annotations

import multiprocessing
import os
import select
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import closing
from multiprocessing.process import BaseProcess
from types import FrameType, TracebackType
from typing import TypeVar

from ..errors import ImagenetPrepError, UsageError, WorkerDied
from .inflight import in_flight

T = TypeVar("T")
R = TypeVar("R")


class UnguardedMain(UsageError):
    """A worker process, importing the main module, reached the code that starts the workers.

    Python imports the main script in every worker it starts with ``spawn`` or ``forkserver``
    (as ``__mp_main__``); a script that starts a build at its top level, not under
    ``if __name__ == "__main__":``, would start one in every worker.
    """


#: The exit status of a worker stopped by :func:`refuse_while_importing_main`; the pool that
#: sees it raises :class:`UnguardedMain` instead of :class:`WorkerDied`.
IMPORTING_MAIN_EXIT = 86


def _main_file() -> str:
    main = sys.modules.get("__main__")
    return str(getattr(main, "__file__", None) or "the main module")


def _unguarded_main() -> UnguardedMain:
    return UnguardedMain(
        f"a worker process, importing the main module {_main_file()} as Python does in every "
        "worker, started a build of its own there: put the code that starts the build under "
        '`if __name__ == "__main__":`'
    )


def refuse_while_importing_main(what: str) -> None:
    """End this process, saying why, if it is a worker importing the main module; else nothing.

    Call it first in a function that starts worker processes (``what`` names it). A worker
    that reaches it is running a script's top level that lacks the ``__main__`` guard: it
    could not start processes (Python refuses during a worker's start) and would write
    where its parent writes. It ends with :data:`IMPORTING_MAIN_EXIT`, which the parent's
    pool reports as :class:`UnguardedMain`; raising would only show as a worker that died.
    """
    # multiprocessing runs the main module under the name __mp_main__ while the process is
    # still starting (its own check before starting a process reads the same flag).
    main = sys.modules.get("__mp_main__")
    if main is None or not getattr(multiprocessing.current_process(), "_inheriting", False):
        return
    where = str(getattr(main, "__file__", None) or getattr(main, "__name__", "__mp_main__"))
    frame: FrameType | None = sys._getframe(1)
    while frame is not None and frame.f_globals is not main.__dict__:
        frame = frame.f_back
    if frame is not None:
        where = f"{where}, line {frame.f_lineno}"
    sys.stderr.write(
        f"imagenet-prep: {what} was called while worker process {os.getpid()} imported the "
        f"main module ({where}): put the code that starts the build under "
        '`if __name__ == "__main__":`\n'
    )
    sys.stderr.flush()
    os._exit(IMPORTING_MAIN_EXIT)


#: How often a worker without ``os.pidfd_open`` (not Linux, or a kernel before 5.3) looks
#: whether the process that made it is still there.
_POLL_SECONDS = 0.25


def _watch(parent: int) -> None:
    """Pool initializer: end this worker as soon as process ``parent`` (the pool's maker) ends.

    Without it, killing the maker (``kill -9``) leaves its workers waiting forever on their
    task queue or a full result pipe: they hold those pipes' other ends themselves, so they
    never see end of file. With the workers gone, the fork server and the resource tracker
    (which stop when the last holder of their pipes ends) go too. The thread sleeps in
    ``select`` on a pidfd, which the kernel makes readable when ``parent`` exits: it costs
    the worker nothing.
    """
    # Ctrl-C reaches the whole process group; the maker alone acts on it (it stops the
    # pool), so a worker neither prints a KeyboardInterrupt traceback nor dies mid-write.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(
        target=_exit_after, args=(parent,), name="imagenet-prep-watchdog", daemon=True
    ).start()


def _exit_after(parent: int) -> None:
    try:
        pidfd = os.pidfd_open(parent)
    except ProcessLookupError:
        pass  # gone already
    except (AttributeError, OSError):  # no pidfd here: look now and then
        while _exists(parent):
            time.sleep(_POLL_SECONDS)
    else:
        select.select([pidfd], [], [])
    os._exit(1)


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # the number now belongs to another user's process
        return False
    return True


class InlineExecutor:
    """Run every task in the calling process, in order."""

    workers = 1
    same_machine = False  # no other process: results are handed back as they are

    def __enter__(self) -> InlineExecutor:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None

    def map_unordered(self, fn: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
        for item in items:
            yield fn(item)

    def release(self) -> None:
        """No workers to stop."""

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

    Starting it means a fresh interpreter importing ``preload``; a command that will make a
    :class:`ProcessExecutor` calls this first, so the server boots while the command's own
    modules load. A pool made later uses the running server.
    """
    import multiprocessing.forkserver

    _quiet_resource_tracker()
    multiprocessing.get_context("forkserver").set_forkserver_preload(list(preload))
    threading.Thread(
        target=multiprocessing.forkserver.ensure_running,
        name="imagenet-prep-forkserver",
        daemon=True,
    ).start()


#: Given to the resource tracker (multiprocessing's helper that removes the named semaphores
#: of process pools) when it starts: see :func:`_quiet_resource_tracker`.
_TRACKER_WARNINGS = "ignore:resource_tracker:UserWarning"


def _quiet_resource_tracker() -> None:
    """Keep the resource tracker's shutdown notes off the user's terminal.

    When the pools' processes end together (every build's end, an error, Ctrl-C), the
    tracker sometimes finds a pool's queue semaphore registered but already removed, and
    prints "There appear to be 1 leaked semaphore objects to clean up at shutdown" and a
    ``FileNotFoundError`` note as raw ``UserWarning`` text (more often under load). It then
    does its job, removing whatever is left, so the warnings say nothing to a user. The
    tracker is a new interpreter that takes its warning filters from ``sys.warnoptions``
    (``multiprocessing.util._args_from_interpreter_flags``), so one filter there, added
    before it starts, silences exactly those notes.
    """
    if _TRACKER_WARNINGS not in sys.warnoptions:
        sys.warnoptions.append(_TRACKER_WARNINGS)


def _copy_outcome(source: Future[R], target: Future[R], processes: Sequence[BaseProcess]) -> None:
    exc = source.exception()
    if isinstance(exc, BrokenProcessPool):
        exc = (
            _unguarded_main()
            if _importing_main_exit(processes)
            else WorkerDied("a helper process died (killed, or out of memory)")
        )
    if exc is not None:
        target.set_exception(exc)
    else:
        target.set_result(source.result())


def _importing_main_exit(processes: Iterable[BaseProcess]) -> bool:
    """Whether one of these ended processes was stopped by :func:`refuse_while_importing_main`."""
    for process in processes:
        process.join(timeout=5)
        if process.exitcode == IMPORTING_MAIN_EXIT:
            return True
    return False


def _processes(pool: ProcessPoolExecutor) -> list[BaseProcess]:
    """The pool's worker processes now (concurrent.futures has no public way to them)."""
    return list((getattr(pool, "_processes", None) or {}).values())


def _ready() -> None:
    """A no-op task: submitting it makes the pool start a worker."""


class ProcessExecutor:
    """A pool of ``workers`` processes with at most ``2 * workers`` tasks in flight.

    Workers start from a small fork server (not a copy of the parent's memory), tasks
    are submitted lazily so memory stays bounded, an exception in a task stops the run
    (pending tasks are cancelled), and a worker that dies raises :class:`WorkerDied`
    at once instead of hanging. Used as a context manager, the workers start on entry,
    from a background thread, so they boot while the caller prepares the tasks (and the
    fork server imports ``preload``).
    """

    same_machine = True

    def __init__(
        self,
        workers: int,
        *,
        start_method: str = "forkserver",
        preload: Sequence[str] = PRELOAD,
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, not {workers}")
        refuse_while_importing_main("a process pool")
        self.workers = workers
        self._start_method = start_method
        self._preload = list(preload)
        if start_method == "forkserver":
            # It boots now, in the background, while the caller loads and prepares the rest.
            start_fork_server(self._preload)
        self._pool: ProcessPoolExecutor | None = None
        # The one-off tasks' pools and their processes.
        self._aside: list[tuple[ProcessPoolExecutor, list[BaseProcess]]] = []
        self._starting: list[threading.Thread] = []

    def _context(self) -> multiprocessing.context.BaseContext:
        _quiet_resource_tracker()
        ctx = multiprocessing.get_context(self._start_method)
        if self._start_method == "forkserver":
            ctx.set_forkserver_preload(self._preload)
        return ctx

    def _make_pool(self, workers: int) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=workers,
            mp_context=self._context(),
            initializer=_watch,
            initargs=(os.getpid(),),
        )

    def _in_background(self, fn: Callable[[], None]) -> None:
        thread = threading.Thread(target=fn, name="imagenet-prep-start", daemon=True)
        self._starting.append(thread)
        thread.start()

    def __enter__(self) -> ProcessExecutor:
        pool = self._pool = self._make_pool(self.workers)

        def start() -> None:
            try:
                for _ in range(self.workers):
                    pool.submit(_ready)
            except BrokenProcessPool:
                pass  # a worker died already: the first task says so

        self._in_background(start)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for thread in self._starting:
            thread.join()
        self._starting.clear()
        if self._pool is not None and kind is not None:
            # The run failed (an error, Ctrl-C): the tasks under way would only be thrown
            # away (their shards stay under temporary names), so they are not waited for.
            for process in _processes(self._pool):
                process.terminate()
        self.release()
        for aside, processes in self._aside:
            if kind is not None:
                # The run failed: a one-off task may have minutes left (hashing a 138 GB
                # archive) and nobody will use its result, so it is stopped, not left to
                # run on after this process has gone.
                for process in processes:
                    process.terminate()
            for process in processes:
                process.join(timeout=10)
            # Its manager thread is waited for too: left running, it may close its wake-up
            # pipe while the interpreter's exit hook writes to it, and Python prints an
            # "OSError: Bad file descriptor" traceback after "interrupted" (Ctrl-C).
            aside.shutdown(wait=True)
        self._aside.clear()

    def release(self) -> None:
        """Stop the pool's workers (after the tasks under way; those not started are
        cancelled); one-off tasks run on."""
        for thread in self._starting:
            thread.join()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def run_aside(self, fn: Callable[..., R], *args: object) -> Future[R]:
        """Run ``fn(*args)`` in a process of its own, beside the pool, that exits when done.

        For a one-off task whose memory should not stay in a pool worker afterwards. The
        process is started from a background thread: this call returns at once.
        """
        outer: Future[R] = Future()
        outer.set_running_or_notify_cancel()

        def start() -> None:
            try:
                aside = self._make_pool(1)
                inner = aside.submit(fn, *args)  # starts the process
                # Kept to stop it if the run fails.
                processes = _processes(aside)
                self._aside.append((aside, processes))
                aside.shutdown(wait=False)
            except BaseException as exc:  # e.g. the fork server could not start
                outer.set_exception(exc)
                return
            inner.add_done_callback(lambda done: _copy_outcome(done, outer, processes))

        self._in_background(start)
        return outer

    def map_unordered(self, fn: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
        if self._pool is not None:
            yield from self._run(self._pool, fn, items)
            return
        with self:  # starts the pool, so the call below takes the branch above
            yield from self.map_unordered(fn, items)

    def _run(
        self, pool: ProcessPoolExecutor, fn: Callable[[T], R], items: Iterable[T]
    ) -> Iterator[R]:
        def submit(item: T) -> Future[R]:
            return pool.submit(fn, item)

        try:
            with closing(
                in_flight(items, 2 * self.workers, submit, _first_done, Future.cancel)
            ) as done:
                for fut in done:
                    yield fut.result()
        except BrokenProcessPool:  # from a task's result, or from submit once the pool knows
            raise _why_broken(pool) from None


def _first_done(pending: list[Future[R]]) -> tuple[Sequence[Future[R]], list[Future[R]]]:
    """The futures done (at least one, waiting for it), and those not."""
    done, rest = wait(pending, return_when=FIRST_COMPLETED)
    return list(done), list(rest)


def _why_broken(pool: ProcessPoolExecutor) -> ImagenetPrepError:
    """The error to raise for a pool one of whose workers died."""
    processes = _processes(pool)
    pool.shutdown(wait=True)  # the pool joins its workers: their exit codes are known after
    if _importing_main_exit(processes):
        return _unguarded_main()
    return WorkerDied(
        "a worker process died before finishing its shard (killed, or out of memory); "
        "finished shards are kept, rerun the command to resume"
    )
