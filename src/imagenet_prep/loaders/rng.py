"""Per-image random numbers for the crops: cheap to make, and the same for the same key.

A crop draws a handful of numbers from a generator made for that one image (from the
seed, the epoch and the image's position), so any crop can be replayed. Making a
``random.Random`` costs about 10 µs (Mersenne Twister seeding and its first refill),
about 1% of a worker's time at 1,000 images/s; :class:`CropRandom` costs one BLAKE2b
hash per eight numbers (counter mode).
"""

from __future__ import annotations

import hashlib
import struct
from typing import Protocol

_WORDS = struct.Struct("<8Q").unpack
_TO_UNIT = 2.0**-53


class Rng(Protocol):
    """What the transforms draw from (``random.Random`` has it too)."""

    def random(self) -> float: ...

    def uniform(self, a: float, b: float) -> float: ...

    def randrange(self, stop: int) -> int: ...

    def randint(self, a: int, b: int) -> int: ...


class CropRandom:
    """Uniform numbers from BLAKE2b(key, counter): a stream that depends only on ``key``.

    >>> a, b = CropRandom("crop/0/0/7"), CropRandom("crop/0/0/7")
    >>> [a.random() for _ in range(10)] == [b.random() for _ in range(10)]
    True
    >>> 0 <= CropRandom("x").randint(3, 5) <= 5
    True
    """

    __slots__ = ("_counter", "_key", "_words")

    def __init__(self, key: str) -> None:
        self._key = key.encode("utf-8")
        self._counter = 0
        self._words: list[int] = []

    def _next(self) -> int:
        if not self._words:
            block = hashlib.blake2b(
                self._key, digest_size=64, salt=self._counter.to_bytes(16, "little")
            ).digest()
            self._counter += 1
            self._words = list(_WORDS(block))
        return self._words.pop()

    def random(self) -> float:
        """A float in [0, 1) with 53 random bits."""
        return (self._next() >> 11) * _TO_UNIT

    def uniform(self, a: float, b: float) -> float:
        return a + (b - a) * self.random()

    def randrange(self, stop: int) -> int:
        """An integer in [0, stop); from 53 random bits, so the bias is below stop / 2**53."""
        if stop < 1:
            raise ValueError(f"empty range for randrange({stop})")
        return min(int(self.random() * stop), stop - 1)

    def randint(self, a: int, b: int) -> int:
        return a + self.randrange(b - a + 1)
