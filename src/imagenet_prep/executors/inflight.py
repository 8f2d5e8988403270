"""The one submission loop of every pool engine: at most ``limit`` tasks in flight, each handed
back as it finishes, the rest cancelled when the caller stops early or fails."""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable, Sequence
from typing import TypeVar

T = TypeVar("T")
H = TypeVar("H")


def in_flight(
    items: Iterable[T],
    limit: int,
    submit: Callable[[T], H],
    wait: Callable[[list[H]], tuple[Sequence[H], list[H]]],
    cancel: Callable[[H], object],
) -> Generator[H, None, None]:
    """Submit ``items`` lazily (``submit`` makes a handle: a future, an object reference),
    keeping at most ``limit`` unfinished; yield each handle once ``wait`` (pending -> (done,
    still pending)) says it is done. Handles still pending when the loop ends early (an error,
    the caller closing the generator) are given to ``cancel``.

    >>> from concurrent.futures import Future
    >>> def now(n):
    ...     f = Future(); f.set_result(n * n); return f
    >>> done = in_flight(range(5), 2, now, lambda p: (p, []), Future.cancel)
    >>> [f.result() for f in done]
    [0, 1, 4, 9, 16]
    """
    pending: list[H] = []
    source = iter(items)

    def fill() -> None:
        while len(pending) < limit:
            try:
                item = next(source)
            except StopIteration:
                return
            pending.append(submit(item))

    try:
        fill()
        while pending:
            done, rest = wait(list(pending))
            pending[:] = rest
            yield from done
            fill()
    finally:
        for handle in pending:
            cancel(handle)
