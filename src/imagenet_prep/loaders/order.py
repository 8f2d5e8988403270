"""Which images a consumer reads in an epoch, and in which order. Pure functions.

A *consumer* is one (rank, data-loader worker) pair. An epoch's images form one sequence:
the split's units (TFRecord or WebDataset shards; single files for ImageFolder) in an
order that is permuted per (seed, epoch) when shuffling, each unit's records in file order.
Ranks get contiguous, balanced ranges of that sequence, and workers contiguous, balanced
ranges of their rank's, so every image is read by exactly one consumer and the sizes differ
by at most one. Within its range a consumer shuffles through a bounded buffer.

``balance`` decides what happens when ``world_size`` does not divide the split: ``"none"``
(ranks differ by at most one image), ``"pad"`` (every rank gets ``ceil(total / world_size)``
images, the shortfall taken again from the start of the epoch's sequence, as PyTorch's
``DistributedSampler`` does) or ``"drop"`` (every rank gets ``floor(total / world_size)``,
the last few images of the epoch's sequence are left out).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

BALANCE = ("none", "pad", "drop")


@dataclass(frozen=True, slots=True)
class Consumer:
    """One reader of an epoch: a rank of ``world_size`` and a worker of that rank's loader."""

    rank: int = 0
    world_size: int = 1
    worker: int = 0
    num_workers: int = 1

    def __post_init__(self) -> None:
        if self.world_size < 1 or not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank {self.rank} is not in a world of size {self.world_size}")
        if self.num_workers < 1 or not 0 <= self.worker < self.num_workers:
            raise ValueError(f"worker {self.worker} is not one of {self.num_workers} workers")


def epoch_length(total: int, world_size: int, balance: str = "none") -> int:
    """The length of an epoch's sequence over all ranks after padding or dropping.

    >>> epoch_length(10, 4), epoch_length(10, 4, "pad"), epoch_length(10, 4, "drop")
    (10, 12, 8)
    """
    if balance not in BALANCE:
        raise ValueError(f"balance must be one of {', '.join(BALANCE)}, not {balance!r}")
    if balance == "pad":
        return -(-total // world_size) * world_size
    if balance == "drop":
        return total // world_size * world_size
    return total


def split_range(start: int, stop: int, parts: int, index: int) -> tuple[int, int]:
    """Part ``index`` of ``parts`` contiguous pieces of ``start:stop``, sizes within one.

    >>> [split_range(0, 10, 4, i) for i in range(4)]
    [(0, 2), (2, 5), (5, 7), (7, 10)]
    >>> split_range(5, 7, 3, 0)
    (5, 5)
    """
    n = stop - start
    return start + index * n // parts, start + (index + 1) * n // parts


def consumer_range(total: int, consumer: Consumer, balance: str = "none") -> tuple[int, int]:
    """A consumer's positions ``start:stop`` in the epoch's (padded or cut) sequence.

    Positions at or past ``total`` (padding) stand for position ``p % total``.

    >>> consumer_range(10, Consumer(rank=1, world_size=2, worker=1, num_workers=2))
    (7, 10)
    >>> consumer_range(10, Consumer(rank=3, world_size=4), "pad")
    (9, 12)
    """
    length = epoch_length(total, consumer.world_size, balance)
    lo, hi = split_range(0, length, consumer.world_size, consumer.rank)
    return split_range(lo, hi, consumer.num_workers, consumer.worker)


def unit_order(units: int, seed: int, epoch: int, shuffle: bool) -> np.ndarray:
    """The order of the split's units in an epoch: permuted per (seed, epoch) when shuffling.

    >>> unit_order(4, 0, 0, False).tolist()
    [0, 1, 2, 3]
    >>> sorted(unit_order(4, 0, 1, True).tolist())
    [0, 1, 2, 3]
    >>> bool((unit_order(50, 0, 1, True) == unit_order(50, 0, 1, True)).all())
    True
    >>> bool((unit_order(50, 0, 1, True) == unit_order(50, 0, 2, True)).all())
    False
    """
    if not shuffle:
        return np.arange(units, dtype=np.int64)
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, epoch, 0x5EED])))
    return rng.permutation(units).astype(np.int64)


def locate(cumulative: np.ndarray, position: int) -> tuple[int, int]:
    """(index into the ordered units, record in that unit) of a position in the sequence.

    ``cumulative`` is the running total of the ordered units' sizes; empty units are skipped.

    >>> locate(np.array([3, 3, 5]), 0), locate(np.array([3, 3, 5]), 3)
    ((0, 0), (2, 0))
    """
    index = int(np.searchsorted(cumulative, position, side="right"))
    before = int(cumulative[index - 1]) if index else 0
    return index, position - before


class BufferShuffle:
    """Positions ``0..n-1`` arrive in order; each step emits one drawn from a bounded buffer.

    The buffer is kept full (``size`` positions, fewer at the end), so emitting step ``i``
    needs positions below ``i + size`` read, and at most ``size`` read items wait. The draw
    depends only on ``key``, so the sequence can be replayed without reading any data:
    ``buffer`` and ``frontier`` then say which positions are still to come.

    >>> list(BufferShuffle(5, 1, "k"))
    [0, 1, 2, 3, 4]
    >>> s = list(BufferShuffle(100, 10, "k"))
    >>> sorted(s) == list(range(100)), s[:5] != [0, 1, 2, 3, 4]
    (True, True)
    >>> all(p < i + 10 for i, p in enumerate(s))
    True
    """

    def __init__(self, n: int, size: int, key: str) -> None:
        self.n = n
        self.size = max(1, size)
        self.buffer: list[int] = []
        self.frontier = 0
        self.emitted = 0
        self._rng = random.Random(key)

    def __iter__(self) -> Iterator[int]:
        return self

    def __next__(self) -> int:
        if self.emitted >= self.n:
            raise StopIteration
        if self.size == 1:
            self.frontier += 1
            self.emitted += 1
            return self.frontier - 1
        buf = self.buffer
        while len(buf) < self.size and self.frontier < self.n:
            buf.append(self.frontier)
            self.frontier += 1
        j = self._rng.randrange(len(buf))
        buf[j], buf[-1] = buf[-1], buf[j]
        self.emitted += 1
        return buf.pop()

    def skip(self, steps: int) -> None:
        """Replay ``steps`` draws (no data is read)."""
        for _ in range(steps):
            next(self)
