"""The records that flow between sources, image fixes and the formats' writers."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class BBox:
    """A box in coordinates normalized to [0, 1] of the image width and height."""

    xmin: float
    ymin: float
    xmax: float
    ymax: float


@dataclass(frozen=True, slots=True)
class ImageRef:
    """Where one image's bytes live, small enough to send to a worker process.

    ``path`` is an archive (then ``offset``/``size`` locate the member's data) or a
    plain file (then ``offset`` is 0 and ``size`` its length).
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
    standalone: bool = False  # ``path`` is the image file itself (an extracted tree)


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
