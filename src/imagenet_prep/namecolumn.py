"""File names as one column: their UTF-8 bytes end to end and an array of where each ends.

A split of ImageNet holds 1.28 million names. As a list of ``str`` they cost about 72 bytes
each (a Python object apiece); here about 33 (the name's bytes and an 8-byte end), and a
column pickles to another process as two buffers, not a million objects.
"""

from __future__ import annotations

import bisect
import re
from array import array
from collections.abc import Iterable, Iterator, Sequence
from typing import overload

import numpy as np

#: Any ``str`` round-trips, a lone surrogate (a name that was not UTF-8 on disk) included.
_ERRORS = "surrogatepass"


def extend_ends(ends: array[int], more: array[int], shift: int) -> None:
    """Append ``more`` (an ``array("Q")`` of end offsets) to ``ends``, each moved by ``shift``:
    the ends of a column appended after ``shift`` items, in one NumPy pass.

    >>> ends = array("Q", [2, 5]); extend_ends(ends, array("Q", [1, 4]), 5); list(ends)
    [2, 5, 6, 9]
    """
    if len(more):
        ends.frombytes((np.frombuffer(more, dtype=np.uint64) + np.uint64(shift)).tobytes())


class NameColumn(Sequence[str]):
    """A growable, indexable sequence of names kept as one byte string.

    >>> column = NameColumn(["n01440764_10026.JPEG", "n01443537_2.JPEG"])
    >>> column.append("ILSVRC2012_val_00000001.JPEG")
    >>> len(column), column[1], column[-1], column[:1]
    (3, 'n01443537_2.JPEG', 'ILSVRC2012_val_00000001.JPEG', ['n01440764_10026.JPEG'])
    >>> column.take([2, 0])[0]
    'ILSVRC2012_val_00000001.JPEG'
    """

    __slots__ = ("_data", "_ends")

    def __init__(self, names: Iterable[str] = ()) -> None:
        self._data = bytearray()
        self._ends = array("Q")
        for name in names:
            self.append(name)

    def append(self, name: str) -> None:
        self._data += name.encode("utf-8", _ERRORS)
        self._ends.append(len(self._data))

    def __len__(self) -> int:
        return len(self._ends)

    @overload
    def __getitem__(self, i: int) -> str: ...

    @overload
    def __getitem__(self, i: slice) -> list[str]: ...

    def __getitem__(self, i: int | slice) -> str | list[str]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        ends = self._ends
        if i < 0:
            i += len(ends)
        end = ends[i]  # IndexError past the end, as a list's
        start = ends[i - 1] if i else 0
        return self._data[start:end].decode("utf-8", _ERRORS)

    def __iter__(self) -> Iterator[str]:
        data, start = self._data, 0
        for end in self._ends:
            yield data[start:end].decode("utf-8", _ERRORS)
            start = end

    def buffers(self) -> tuple[bytearray, array[int]]:
        """The column's two buffers (the names' bytes, the ends), not copies."""
        return self._data, self._ends

    @classmethod
    def from_buffers(cls, data: bytearray, ends: array[int]) -> NameColumn:
        """The column over ``data`` and ``ends`` as :meth:`buffers` gives them (not copied)."""
        if ends.typecode != "Q" or (len(ends) and ends[-1] != len(data)):
            raise ValueError("the ends do not match the names' bytes")
        out = cls()
        out._data, out._ends = data, ends
        return out

    def encoded(self) -> Iterator[bytes]:
        """Each name's UTF-8 bytes, in order (no decoding)."""
        data, start = self._data, 0
        for end in self._ends:
            yield bytes(data[start:end])
            start = end

    def extend(self, other: NameColumn) -> None:
        """Append every name of ``other`` (two buffer copies, no name made).

        >>> column = NameColumn(["a"]); column.extend(NameColumn(["bc", "d"])); list(column)
        ['a', 'bc', 'd']
        """
        extend_ends(self._ends, other._ends, len(self._data))
        self._data += other._data

    def sort_order(self) -> np.ndarray:
        """The positions of the names in sorted order (as ``sorted`` orders the ``str``: UTF-8
        bytes sort as their code points do), stable, as an int64 array."""
        if not len(self):
            return np.zeros(0, dtype=np.int64)
        fixed = np.array(list(self.encoded()), dtype=f"S{max(1, self.max_length())}")
        return np.argsort(fixed, kind="stable").astype(np.int64)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, NameColumn):
            return self._ends == other._ends and self._data == other._data
        if isinstance(other, (list, tuple)):
            return len(other) == len(self) and all(a == b for a, b in zip(self, other, strict=True))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable, as a list

    def __repr__(self) -> str:
        shown = ", ".join(repr(n) for n in self[:3])
        return f"NameColumn([{shown}{', ...' if len(self) > 3 else ''}], {len(self)} names)"

    def take(self, order: Sequence[int]) -> NameColumn:
        """A new column of the names at ``order``'s positions, in that order."""
        out = NameColumn()
        data, ends = self._data, self._ends
        pieces = bytearray()
        new_ends = array("Q")
        for i in order:
            start = ends[i - 1] if i else 0
            pieces += data[start : ends[i]]
            new_ends.append(len(pieces))
        out._data, out._ends = pieces, new_ends
        return out

    def max_length(self) -> int:
        """The longest name's length in bytes (0 for none)."""
        longest, start = 0, 0
        for end in self._ends:
            longest = max(longest, end - start)
            start = end
        return longest

    def is_ascii(self) -> bool:
        return self._data.isascii()

    def find(self, pattern: re.Pattern[str]) -> int | None:
        """The first name in which ``pattern`` (a pattern that never spans two names, such as
        a character class) matches, or None: one search over all names when they are ASCII."""
        if self._data.isascii():
            found = pattern.search(self._data.decode("ascii"))
            return None if found is None else bisect.bisect_right(self._ends, found.start())
        return next((i for i, name in enumerate(self) if pattern.search(name)), None)
