"""Engines that map one picklable function over shard tasks. They know nothing of ImageNet."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Protocol, TypeVar

from ..errors import UsageError, WorkerDied
from .local import (
    IMPORTING_MAIN_EXIT,
    InlineExecutor,
    ProcessExecutor,
    UnguardedMain,
    refuse_while_importing_main,
    start_fork_server,
)

if TYPE_CHECKING:
    from ..config import BuildConfig

T = TypeVar("T")
R = TypeVar("R")


class Executor(Protocol):
    """Runs ``fn`` over ``items`` and yields results as they finish (any order)."""

    workers: int
    #: Its tasks run in other processes of this machine: a large result is cheaper handed
    #: back in a local file than pickled (False in-process, and for Ray's nodes).
    same_machine: bool

    def __enter__(self) -> Executor: ...

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...

    def map_unordered(self, fn: Callable[[T], R], items: Iterable[T]) -> Iterator[R]: ...

    def release(self) -> None:
        """Stop the workers that ``map_unordered`` ran on, now, keeping the one-off tasks
        running (a later ``map_unordered`` starts them again): their memory is the machine's
        again while the caller finishes alone."""
        ...

    def run_aside(self, fn: Callable[..., R], *args: object) -> Future[R]:
        """Run a one-off task beside the pool (in-process for the inline engine)."""
        ...


def make_executor(
    workers: int,
    kind: str = "local",
    *,
    address: str | None = None,
    shared: Sequence[Path] = (),
) -> Executor:
    """The engine ``kind`` names. "local": in-process for one worker, a process pool of
    ``workers`` otherwise (its fork server starts booting now). "ray": Ray tasks on the
    cluster at ``address`` (or ``RAY_ADDRESS``), or on a local Ray instance of ``workers``
    CPUs started for the run; every node must see the ``shared`` paths.
    """
    if kind == "ray":
        from .ray_executor import RayExecutor

        return RayExecutor(workers, address, shared=shared)
    if kind != "local":
        raise UsageError(f"executor must be local or ray, not {kind!r}")
    if address is not None:
        raise UsageError("--ray-address is for --executor ray")
    return InlineExecutor() if workers <= 1 else ProcessExecutor(workers)


def executor_for(config: BuildConfig) -> Executor:
    """The engine a build's options ask for; a Ray cluster's nodes must see its source and
    output."""
    return make_executor(
        config.workers,
        config.executor,
        address=config.ray_address,
        shared=(config.source, config.output),
    )


__all__ = [
    "IMPORTING_MAIN_EXIT",
    "Executor",
    "InlineExecutor",
    "ProcessExecutor",
    "UnguardedMain",
    "WorkerDied",
    "executor_for",
    "make_executor",
    "refuse_while_importing_main",
    "start_fork_server",
]
