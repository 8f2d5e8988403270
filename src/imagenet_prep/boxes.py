"""ImageNet box XML and the reference scripts' rules for it (``process_bounding_boxes.py``).

A box is given in pixels of the image *as shown to the annotator*, whose size the XML
records in ``<size>``; that size, not the real image's, normalizes it. Per the reference scripts:
coordinates are truncated to integers, divided by the XML's width/height, put in order
(min <= max), clamped to [0, 1]; boxes labelled with a *different* challenge synset are
dropped (names that are no challenge synset, such as ``Scottish_deerhound``, are kept),
then boxes without area. The ``<filename>`` element is ignored (it is sometimes ``%s``):
an annotation belongs to the image named by its XML file's stem.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Container
from dataclasses import dataclass

from .errors import DataError

__all__ = [
    "CSV_UNSAFE",
    "Annotation",
    "Box",
    "BoxObject",
    "BoxResult",
    "check_csv_name",
    "csv_line",
    "csv_unsafe",
    "normalize_box",
    "normalize_boxes",
    "one_line",
    "parse_annotation",
    "record_box",
]

#: (xmin, ymin, xmax, ymax), normalized to [0, 1] of the annotated width and height.
Box = tuple[float, float, float, float]

_COORDS = ("xmin", "ymin", "xmax", "ymax")


@dataclass(frozen=True, slots=True)
class BoxObject:
    """One ``<object>``: its ``<name>`` (``""`` when absent) and box in annotator pixels."""

    name: str
    xmin: int
    ymin: int
    xmax: int
    ymax: int


@dataclass(frozen=True, slots=True)
class Annotation:
    """An annotation file: the size the annotator saw and the objects that have a box."""

    width: int
    height: int
    objects: tuple[BoxObject, ...]


@dataclass(frozen=True, slots=True)
class BoxResult:
    """Boxes kept by the reference scripts' rules, and how many were dropped by each rule."""

    kept: tuple[Box, ...]
    dropped_other_synset: int
    dropped_empty: int


def _number(text: str | None, source: str, tag: str, index: int = 0) -> int:
    """``int(float(text))`` as the reference scripts do (some files have fractional values)."""
    if text is not None:
        try:
            return int(float(text))
        except (ValueError, OverflowError):
            pass
    what = f"object {index} <{tag}>" if index else f"<size><{tag}>"
    if text is None or not text.strip():
        raise DataError(f"{source}: {what} is missing or empty")
    raise DataError(f"{source}: {what} is not a number: {text.strip()[:40]!r}")


def parse_annotation(data: bytes, source: str) -> Annotation:
    """Parse one PASCAL VOC annotation as ImageNet writes it; DataError naming ``source``.

    Objects without a ``<bndbox>`` carry no box and are left out, as in the reference scripts
    (which count ``<xmin>`` elements).
    """
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        raise DataError(f"{source}: malformed XML ({exc})") from None
    if root.tag != "annotation":
        raise DataError(f"{source}: root element is <{root.tag}>, not <annotation>")
    size = root.find("size")
    if size is None:
        raise DataError(f"{source}: no <size> element")
    width = _number(size.findtext("width"), source, "width")
    height = _number(size.findtext("height"), source, "height")
    if width <= 0 or height <= 0:
        raise DataError(f"{source}: <size> is {width}x{height}; boxes need a positive size")
    objects = []
    for index, obj in enumerate(root.iter("object"), start=1):
        bndbox = obj.find("bndbox")
        if bndbox is None:
            continue
        xmin, ymin, xmax, ymax = [_number(bndbox.findtext(c), source, c, index) for c in _COORDS]
        name = (obj.findtext("name") or "").strip()
        objects.append(BoxObject(name, xmin, ymin, xmax, ymax))
    return Annotation(width=width, height=height, objects=tuple(objects))


def normalize_box(obj: BoxObject, width: int, height: int) -> Box:
    """Divide by the annotated size, order min/max and clamp each value to [0, 1]."""
    xmin = float(obj.xmin) / float(width)
    xmax = float(obj.xmax) / float(width)
    ymin = float(obj.ymin) / float(height)
    ymax = float(obj.ymax) / float(height)
    return (
        min(max(min(xmin, xmax), 0.0), 1.0),
        min(max(min(ymin, ymax), 0.0), 1.0),
        min(max(max(xmin, xmax), 0.0), 1.0),
        min(max(max(ymin, ymax), 0.0), 1.0),
    )


def normalize_boxes(annotation: Annotation, wnid: str, challenge: Container[str]) -> BoxResult:
    """Apply the reference scripts' rules to the boxes of an image of synset ``wnid``.

    A box whose object name is another synset of ``challenge`` is dropped (counted once,
    before the area rule); names outside ``challenge`` are kept. Unlike the reference scripts,
    which label every box of a file with the *first* object's name, each box is judged by its
    own object's name, so one stray object no longer decides for the whole file.
    """
    kept: list[Box] = []
    other = empty = 0
    for obj in annotation.objects:
        if obj.name != wnid and obj.name in challenge:
            other += 1
            continue
        box = normalize_box(obj, annotation.width, annotation.height)
        if box[0] >= box[2] or box[1] >= box[3]:
            empty += 1
            continue
        kept.append(box)
    return BoxResult(kept=tuple(kept), dropped_other_synset=other, dropped_empty=empty)


# The characters ``str.splitlines`` breaks lines at.
_BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
_LINE_BREAKS = re.compile(f"[{_BREAKS}]")

#: What the reference scripts' CSV cannot hold in a file name: its readers split lines, then commas,
#: and CSV readers take a double quote as quoting.
CSV_UNSAFE = re.compile(f'[,"{_BREAKS}]')


def csv_unsafe(name: str) -> str | None:
    """What in ``name`` the box CSV cannot hold, for a message; None when it can hold it.

    >>> csv_unsafe("n01440764_10026.JPEG"), csv_unsafe("a,b.JPEG"), csv_unsafe('a"b')
    (None, 'a comma', 'a double quote')
    >>> csv_unsafe("a\\nb.JPEG")
    'a line break'
    """
    found = CSV_UNSAFE.search(name)
    if found is None:
        return None
    return {",": "a comma", '"': "a double quote"}.get(found.group(), "a line break")


def check_csv_name(name: str, where: str) -> None:
    """DataError naming ``where`` when the box CSV cannot hold ``name`` (see :func:`csv_unsafe`).

    >>> check_csv_name("n1_5", "b/n1/n1_5.xml")
    >>> check_csv_name("n1_5,6", "b/n1/n1_5,6.xml")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    imagenet_prep.errors.DataError: b/n1/n1_5,6.xml: a comma in the file name, which the ...
    """
    unsafe = csv_unsafe(name)
    if unsafe is not None:
        raise DataError(
            f"{one_line(where)}: {unsafe} in the file name, which the bounding-box CSV cannot "
            "hold (rename the file)"
        )


def one_line(text: str) -> str:
    """``text`` with its line breaks escaped, so that a message naming a file stays one line.

    >>> one_line("train/n1/a\\nb.JPEG")
    'train/n1/a\\\\nb.JPEG'
    """
    return _LINE_BREAKS.sub(lambda m: repr(m.group())[1:-1], text)


def csv_line(stem: str, box: Box) -> str:
    """The reference scripts' CSV line, without newline.

    >>> csv_line("n01440764_10026", (0.284, 0.408, 0.636, 0.72))
    'n01440764_10026.JPEG,0.2840,0.4080,0.6360,0.7200'
    """
    return "%s.JPEG,%.4f,%.4f,%.4f,%.4f" % (stem, *box)  # noqa: UP031 - their format


def record_box(box: Box) -> Box:
    """The values the reference scripts' TFRecords carry: the CSV text parsed back to floats.

    >>> record_box((1 / 3, 0.0, 0.66666, 1.0))
    (0.3333, 0.0, 0.6667, 1.0)
    """
    xmin, ymin, xmax, ymax = (float("%.4f" % v) for v in box)  # noqa: UP031
    return (xmin, ymin, xmax, ymax)
