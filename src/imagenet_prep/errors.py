"""Exceptions with one-line messages that name the file and what is wrong.

The CLI prints ``str(error)`` and exits 1 for :class:`DataError` (bad input data or
output that fails a check) and 2 for :class:`UsageError` (bad options); it never
shows a traceback for either.
"""

from __future__ import annotations


class ImagenetPrepError(Exception):
    """Base class of every error this package raises on purpose."""


class DataError(ImagenetPrepError):
    """Input data (an archive, an image, an XML file, a label file) is missing or damaged."""


class UsageError(ImagenetPrepError, ValueError):
    """Options that cannot work together, or an output path that cannot be used."""


class ResourceError(ImagenetPrepError):
    """The machine lacks something the build needs (disk space)."""


class WorkerDied(ImagenetPrepError):
    """A worker or helper process ended without finishing its task (killed, or out of memory).

    Raised by the executors and by the driver for its own helper processes alike, so it
    lives here rather than in one engine.
    """


def one_line(exc: BaseException) -> str:
    """An exception's message on one line (tarfile's and pyarrow's may span several)."""
    return " ".join(str(exc).split())
