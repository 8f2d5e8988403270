"""The one pass over a build's records: sizes, boxes, pixel histograms, thumbnails.

A :class:`ScanTask` is a range of a split's units (shards, or files of the image folder);
:func:`scan_task` runs in a pool worker, reads them through the format's own reader
(``loaders.readers.open_reader``) and returns a small :class:`ScanPart`: a few numbers per
image, the pixel histogram (decoded images are never kept), the thumbnails asked for and
the contact-sheet candidates it saw. :func:`scan` maps the tasks over an executor and
joins the parts per split (:class:`SplitScan`).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from ..errors import DataError
from ..executors import Executor
from ..imagefix import inspect
from ..loaders.decode import Decoder, make_decoder
from ..loaders.readers import Reader, open_reader
from .pixels import PixelMoments
from .select import draw_rank, normal_key
from .thumbs import thumbnail

# Enough bytes for a JPEG's frame header after its usual metadata, or a PNG's IHDR.
_HEAD = 65536


@dataclass(frozen=True)
class ScanTask:
    """Units ``first:stop`` of ``split`` in the ``format`` output at ``root``.

    ``offset`` is the split position of the first unit's first record. ``pixels``: count the
    pixels of every image (``positions`` None) or of those at ``positions`` (sorted split
    positions). ``wanted``: keys (:func:`~.select.normal_key`) to make thumbnails of.
    ``contact``: the 0-based labels of the contact classes; each task keeps up to
    ``contact_images`` candidates per class, those of lowest :func:`~.select.draw_rank`.
    """

    root: str
    split: str
    format: str
    first: int
    stop: int
    offset: int
    pixels: bool
    positions: np.ndarray | None = None
    wanted: frozenset[str] = frozenset()
    contact: tuple[int, ...] = ()
    contact_images: int = 0
    seed: int = 0


@dataclass
class ScanPart:
    """What a task found: per image (in record order) its stored width, height, bytes, label
    and number of boxes; every box; the pixel histogram; thumbnails by key; contact
    candidates per label as ``(rank, key, thumbnail)``; problems, one line each."""

    split: str
    first: int
    widths: np.ndarray
    heights: np.ndarray
    nbytes: np.ndarray
    labels: np.ndarray
    nboxes: np.ndarray
    boxes: np.ndarray  # (boxes, 4) float32: xmin, ymin, xmax, ymax, normalized
    moments: PixelMoments
    thumbs: dict[str, bytes] = field(default_factory=dict)
    contact: dict[int, list[tuple[int, str, bytes]]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.widths)


@lru_cache(maxsize=8)
def _reader(root: str, split: str, format: str) -> Reader:
    """A worker's reader, opened once per process (an image folder's is a listing)."""
    return open_reader(root, split, format, boxes=True)


@lru_cache(maxsize=1)
def _decoder() -> Decoder:
    return make_decoder("auto")


def header_size(data: bytes | memoryview, name: str) -> tuple[int, int]:
    """Width and height from the image's header, without decoding."""
    try:
        info = inspect(bytes(data[:_HEAD]), name)
    except DataError:
        info = inspect(bytes(data), name)  # a frame header after a large EXIF segment
    return info.width, info.height


def scan_task(task: ScanTask) -> ScanPart:
    """Read the task's units and sum up what the report shows (runs in a pool worker)."""
    reader = _reader(task.root, task.split, task.format)
    decode = _decoder() if task.pixels else None
    widths: list[int] = []
    heights: list[int] = []
    nbytes: list[int] = []
    labels: list[int] = []
    nboxes: list[int] = []
    boxes: list[tuple[float, float, float, float]] = []
    moments = PixelMoments()
    thumbs: dict[str, bytes] = {}
    problems: list[str] = []
    # Per contact class, a max-heap by rank: (-rank, key, image bytes).
    candidates: dict[int, list[tuple[int, str, bytes]]] = {label: [] for label in task.contact}
    position = task.offset
    counted = _counted(task)
    for unit in range(task.first, task.stop):
        for _i, raw in reader.read(unit, 0, int(reader.sizes[unit])):
            data = raw.data
            name = raw.source or raw.key
            try:
                width, height = header_size(data, name)
            except DataError as exc:
                width = height = 0
                problems.append(f"{raw.key}: unreadable header ({exc})")
            widths.append(width)
            heights.append(height)
            nbytes.append(len(data))
            labels.append(raw.label)
            nboxes.append(len(raw.boxes))
            boxes.extend(raw.boxes)
            if decode is not None and counted(position):
                try:
                    moments.add(decode(data))
                except DataError as exc:
                    problems.append(f"{raw.key}: cannot decode ({exc}); its pixels are not counted")
            key = normal_key(raw.key)
            if key in task.wanted:
                made = thumbnail(data)
                if made is not None:
                    thumbs[key] = made
            if raw.label in candidates:
                _offer(candidates[raw.label], task, key, data)
            position += 1
    return ScanPart(
        split=task.split,
        first=task.first,
        widths=np.array(widths, np.int32),
        heights=np.array(heights, np.int32),
        nbytes=np.array(nbytes, np.int64),
        labels=np.array(labels, np.int16),
        nboxes=np.array(nboxes, np.int32),
        boxes=np.array(boxes, np.float32).reshape(-1, 4),
        moments=moments,
        thumbs=thumbs,
        contact=_thumbnails(candidates),
        problems=problems,
    )


def _counted(task: ScanTask) -> Callable[[int], bool]:
    """Whether the image at a split position has its pixels counted."""
    if task.positions is None:
        return lambda _position: True
    chosen = {int(p) for p in task.positions}
    return chosen.__contains__


def _offer(heap: list[tuple[int, str, bytes]], task: ScanTask, key: str, data: object) -> None:
    """Keep ``key`` among the ``contact_images`` of lowest rank (the heap holds -rank)."""
    rank = draw_rank(task.seed, key)
    if len(heap) < task.contact_images:
        heapq.heappush(heap, (-rank, key, bytes(data)))  # type: ignore[call-overload]
    elif -heap[0][0] > rank:
        heapq.heapreplace(heap, (-rank, key, bytes(data)))  # type: ignore[call-overload]


def _thumbnails(
    candidates: dict[int, list[tuple[int, str, bytes]]],
) -> dict[int, list[tuple[int, str, bytes]]]:
    """The kept candidates as ``(rank, key, thumbnail)``, lowest rank first."""
    out: dict[int, list[tuple[int, str, bytes]]] = {}
    for label, heap in candidates.items():
        made = []
        for negative, key, data in sorted(heap, reverse=True):
            thumb = thumbnail(data)
            if thumb is not None:
                made.append((-negative, key, thumb))
        out[label] = made
    return out


@dataclass
class SplitScan:
    """A split's parts joined in record order."""

    split: str
    widths: np.ndarray
    heights: np.ndarray
    nbytes: np.ndarray
    labels: np.ndarray
    nboxes: np.ndarray
    boxes: np.ndarray
    moments: PixelMoments | None  # None: pixels not counted for this split
    thumbs: dict[str, bytes]
    contact: dict[int, list[tuple[int, str, bytes]]]
    problems: list[str]

    def __len__(self) -> int:
        return len(self.widths)


def join(split: str, parts: list[ScanPart], pixels: bool, keep: int) -> SplitScan:
    """One split's parts, in unit order; the ``keep`` contact candidates of lowest rank."""
    parts = sorted(parts, key=lambda p: p.first)
    moments = PixelMoments() if pixels else None
    thumbs: dict[str, bytes] = {}
    contact: dict[int, list[tuple[int, str, bytes]]] = {}
    problems: list[str] = []
    for part in parts:
        if moments is not None:
            moments.merge(part.moments)
        thumbs.update(part.thumbs)
        for label, found in part.contact.items():
            contact.setdefault(label, []).extend(found)
        problems.extend(part.problems)

    def column(name: str, dtype: type) -> np.ndarray:
        arrays = [getattr(p, name) for p in parts]
        return np.concatenate(arrays) if arrays else np.zeros(0, dtype)

    boxes = [p.boxes for p in parts]
    return SplitScan(
        split=split,
        widths=column("widths", np.int32),
        heights=column("heights", np.int32),
        nbytes=column("nbytes", np.int64),
        labels=column("labels", np.int16),
        nboxes=column("nboxes", np.int32),
        boxes=np.concatenate(boxes) if boxes else np.zeros((0, 4), np.float32),
        moments=moments,
        thumbs=thumbs,
        contact={label: sorted(found)[:keep] for label, found in contact.items()},
        problems=problems,
    )


def scan(
    executor: Executor,
    tasks: Iterable[ScanTask],
    pixels: dict[str, bool],
    keep: int,
    progress: Callable[[int], None],
) -> dict[str, SplitScan]:
    """Map the tasks over ``executor``; each split's parts joined (``pixels``: per split,
    whether its pixels are counted)."""
    parts: dict[str, list[ScanPart]] = {split: [] for split in pixels}
    for part in executor.map_unordered(scan_task, tasks):
        parts[part.split].append(part)
        progress(len(part))
    return {split: join(split, found, pixels[split], keep) for split, found in parts.items()}
