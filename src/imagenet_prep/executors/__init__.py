"""Engines that map one picklable function over shard tasks. They know nothing of ImageNet."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from types import TracebackType
from typing import Protocol, TypeVar

from ..errors import WorkerDied
from .local import (
    IMPORTING_MAIN_EXIT,
    InlineExecutor,
    ProcessExecutor,
    UnguardedMain,
    refuse_while_importing_main,
    start_fork_server,
)

T = TypeVar("T")
R = TypeVar("R")


class Executor(Protocol):
    """Runs ``fn`` over ``items`` and yields results as they finish (any order)."""

    workers: int

    def __enter__(self) -> Executor: ...

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...

    def map_unordered(self, fn: Callable[[T], R], items: Iterable[T]) -> Iterator[R]: ...

    def run_aside(self, fn: Callable[..., R], *args: object) -> Future[R]:
        """Run a one-off task beside the pool (in-process for the inline engine)."""
        ...


def make_executor(workers: int) -> Executor:
    """In-process for one worker, a process pool otherwise."""
    return InlineExecutor() if workers <= 1 else ProcessExecutor(workers)


__all__ = [
    "IMPORTING_MAIN_EXIT",
    "Executor",
    "InlineExecutor",
    "ProcessExecutor",
    "UnguardedMain",
    "WorkerDied",
    "make_executor",
    "refuse_while_importing_main",
    "start_fork_server",
]
