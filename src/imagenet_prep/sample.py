"""The records that flow between sources, image fixes and the formats' writers."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


@dataclass(frozen=True, slots=True)
class BBox:
    """A box in coordinates normalized to [0, 1] of the image width and height."""

    xmin: float
    ymin: float
    xmax: float
    ymax: float


class ContainerKind(Enum):
    """How an image's bytes are stored where it is found; :func:`.sources.container.read`
    reads each kind.

    ``TAR``: the bytes at ``offset``/``size`` of an archive (a tar member, nested or not);
    ``FILE``: the image is a file of its own (an extracted tree); ``ZIP_STORED`` and
    ``ZIP_DEFLATED``: a zip member whose local header is at ``offset`` and whose data is
    ``size`` bytes, as they are or deflated; ``GZIP``: a member of a gzip-compressed tar,
    ``offset``/``size`` in the uncompressed stream, read from the seek point before it (the
    seek points are in ``index``).
    """

    TAR = "tar"
    FILE = "file"
    ZIP_STORED = "zip-stored"
    ZIP_DEFLATED = "zip-deflated"
    GZIP = "gzip"


@dataclass(frozen=True, slots=True)
class ImageRef:
    """Where one image's bytes live, small enough to send to a worker process.

    ``path`` is an archive (then ``offset``/``size`` locate the member, as ``kind`` says)
    or a plain file (``kind`` FILE: then ``offset`` is 0 and ``size`` its length). An image
    of the test split has no class: ``label`` -1 and ``wnid`` "".
    """

    split: str
    key: str
    filename: str
    wnid: str
    label: int
    path: str
    offset: int
    size: int
    origin: str
    boxes: tuple[BBox, ...] = ()
    kind: ContainerKind = ContainerKind.TAR
    index: str = ""  # the container's index, for kinds read through one (GZIP)

    @property
    def standalone(self) -> bool:
        """``path`` is the image file itself (an extracted tree)."""
        return self.kind is ContainerKind.FILE


@dataclass(frozen=True, slots=True)
class Sample:
    """One image with everything a sink writes about it.

    ``raw`` is the image's bytes as found in SRC; ``data`` the bytes the records
    carry (``raw`` itself unless a fix re-encoded it, then ``reencoded`` says why);
    ``width``/``height`` the stored pixel grid of ``data``.
    """

    ref: ImageRef
    raw: bytes
    data: bytes
    width: int
    height: int
    reencoded: str | None = None
    resized: bool = False
