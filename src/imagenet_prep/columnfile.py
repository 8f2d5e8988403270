"""Columns (arrays, byte strings) handed to another process of this machine in a local file.

Pickled, a column is copied twice on each side (its bytes, the pickle) and the copies stay
in the sender until the receiver has them all. Written to a file and read back, it is copied
once on each side and the sender may drop it at once. The file is a line of JSON (each
column's length in bytes) and the columns' bytes end to end.
"""

from __future__ import annotations

import json
import os
from array import array
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .errors import DataError

#: The type code :func:`read_columns` reads as a ``bytearray`` (an array code is an array).
BYTES = "s"


def write_columns(path: Path, columns: Sequence[Any]) -> None:
    """Write ``columns`` (anything with the buffer protocol) to the local file ``path``,
    under a temporary name renamed into place.

    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "c"
    >>> write_columns(path, [bytearray(b"ab"), array("q", [1, -2])])
    >>> data, numbers = read_columns(path, BYTES + "q", "a test")
    >>> bytes(data), list(numbers), path.exists()
    (b'ab', [1, -2], False)
    """
    views = [memoryview(c).cast("B") for c in columns]
    head = json.dumps([len(v) for v in views]).encode() + b"\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(temporary, "wb") as f:
        f.write(head)
        for view in views:
            f.write(view)
    os.replace(temporary, path)


def read_columns(path: Path | str, codes: str, what: str) -> list[Any]:
    """The columns :func:`write_columns` wrote to ``path``, one per type code of ``codes``
    (:data:`BYTES` for a ``bytearray``); the file is deleted once read. ``what`` names the
    columns in the one-line error of a file cut short or unreadable."""
    columns: list[Any] = []
    try:
        with open(path, "rb") as f:
            lengths = json.loads(f.readline())
            if not isinstance(lengths, list) or len(lengths) != len(codes):
                raise ValueError(f"{len(codes)} columns expected")
            for code, length in zip(codes, lengths, strict=True):
                if code == BYTES:
                    data = bytearray(length)
                    if f.readinto(data) != length:
                        raise EOFError("cut short")
                    columns.append(data)
                    continue
                column = array(code)
                column.fromfile(f, length // column.itemsize)
                columns.append(column)
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"{path}: unreadable ({what}: {exc})") from None
    os.remove(path)
    return columns
