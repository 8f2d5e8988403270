"""Training and evaluation crops on decoded uint8 images: crop first, then resize with OpenCV.

Parameters are drawn from a generator per image (the loader keys it with the
seed, the epoch and the image's position), so a crop can be replayed. No float images:
the crop is a view of the decoded array and one ``cv2.resize`` writes the result, with an
exact integer-factor area pre-shrink when the crop is more than twice the output size (a
plain bilinear resize would alias there).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np

from .rng import CropRandom, Rng  # noqa: F401 - CropRandom for the doctests

TRANSFORMS = ("train", "train-inception", "eval")

# (xmin, ymin, xmax, ymax), normalized to [0, 1], as the records and the box CSV keep them.
Box = tuple[float, float, float, float]


@dataclass(frozen=True, slots=True)
class Crop:
    """A pixel rectangle of an image."""

    top: int
    left: int
    height: int
    width: int


def random_resized_crop(
    height: int,
    width: int,
    rng: Rng,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> Crop:
    """torchvision's ``RandomResizedCrop.get_params``: 10 tries, then a centred crop.

    >>> c = random_resized_crop(375, 500, CropRandom("0"))
    >>> 0 <= c.top <= 375 - c.height and 0 <= c.left <= 500 - c.width
    True
    >>> random_resized_crop(10, 1000, CropRandom("0"), scale=(1.0, 1.0))
    Crop(top=0, left=493, height=10, width=13)
    """
    area = height * width
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(10):
        target = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(log_lo, log_hi))
        w = round(math.sqrt(target * aspect))
        h = round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            return Crop(rng.randint(0, height - h), rng.randint(0, width - w), h, w)
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, round(width / min(ratio))
    elif in_ratio > max(ratio):
        h, w = height, round(height * max(ratio))
    else:
        w, h = width, height
    return Crop((height - h) // 2, (width - w) // 2, h, w)


def _lrint(x: float) -> int:
    return round(x)  # round half to even, as C's lrintf


def _generate_crop(
    width: int, height: int, min_area: float, max_area: float, aspect: float, rng: Rng
) -> Crop | None:
    """TensorFlow's ``GenerateRandomCrop`` (sample_distorted_bounding_box_op.cc)."""
    lo = min_area * width * height
    hi = max_area * width * height
    h = _lrint(math.sqrt(lo / aspect))
    max_h = _lrint(math.sqrt(hi / aspect))
    if _lrint(max_h * aspect) > width:
        max_h = int((width + 0.5 - 1e-7) / aspect)
        if _lrint(max_h * aspect) > width:
            max_h -= 1
    max_h = min(max_h, height)
    h = min(h, max_h)
    if h < max_h:
        h += rng.randrange(max_h - h + 1)
    w = _lrint(h * aspect)
    crop_area = float(w * h)
    if crop_area < lo:
        h += 1
        w = _lrint(h * aspect)
        crop_area = float(w * h)
    if crop_area > hi:
        h -= 1
        w = _lrint(h * aspect)
        crop_area = float(w * h)
    if crop_area < lo or crop_area > hi or w > width or h > height or w <= 0 or h <= 0:
        return None
    y = rng.randrange(height - h) if h < height else 0
    x = rng.randrange(width - w) if w < width else 0
    return Crop(y, x, h, w)


def _covers(crop: Crop, boxes: Sequence[tuple[int, int, int, int]], minimum: float) -> bool:
    """TensorFlow's ``SatisfiesOverlapConstraints``: some box is covered at least ``minimum``."""
    if crop.height * crop.width < 1:
        return False
    bottom, right = crop.top + crop.height, crop.left + crop.width
    for x0, y0, x1, y1 in boxes:
        box_area = (x1 - x0) * (y1 - y0)
        if box_area < 1:
            continue
        iw = min(right, x1) - max(crop.left, x0)
        ih = min(bottom, y1) - max(crop.top, y0)
        inter = iw * ih if iw >= 0 and ih >= 0 else 0
        if inter / box_area >= minimum:
            return True
    return False


def distorted_bbox_crop(
    height: int,
    width: int,
    boxes: Sequence[Box],
    rng: Rng,
    min_object_covered: float = 0.1,
    aspect_ratio_range: tuple[float, float] = (0.75, 1.33),
    area_range: tuple[float, float] = (0.05, 1.0),
    max_attempts: int = 100,
) -> Crop:
    """The inception crop: ``sample_distorted_bounding_box`` with the reference scripts' values.

    Without boxes the whole image is the box; when no attempt fits, the whole image.

    >>> c = distorted_bbox_crop(375, 500, [(0.1, 0.2, 0.5, 0.9)], CropRandom("1"))
    >>> 0 <= c.top and c.top + c.height <= 375 and 0 <= c.left and c.left + c.width <= 500
    True
    >>> distorted_bbox_crop(375, 500, [], CropRandom("1"), area_range=(2.0, 3.0))
    Crop(top=0, left=0, height=375, width=500)
    """
    pixel_boxes = [
        (int(x0 * width), int(y0 * height), int(x1 * width), int(y1 * height))
        for x0, y0, x1, y1 in boxes
    ] or [(0, 0, width, height)]
    lo, hi = aspect_ratio_range
    for _ in range(max_attempts):
        aspect = rng.random() * (hi - lo) + lo
        crop = _generate_crop(width, height, area_range[0], area_range[1], aspect, rng)
        if crop is not None and _covers(crop, pixel_boxes, min_object_covered):
            return crop
    return Crop(0, 0, height, width)


def center_crop(height: int, width: int, size: int, crop_fraction: float = 0.875) -> Crop:
    """The region that ``Resize(round(size / fraction))`` then ``CenterCrop(size)`` keeps.

    >>> center_crop(375, 500, 224)
    Crop(top=24, left=86, height=328, width=328)
    """
    resize = round(size / crop_fraction)
    side = max(1, min(height, width, round(min(height, width) * size / resize)))
    return Crop(round((height - side) / 2), round((width - side) / 2), side, side)


def crop_resize(
    image: np.ndarray, crop: Crop, size: int, flip: bool = False, out: np.ndarray | None = None
) -> np.ndarray:
    """Cut ``crop`` out of ``image``, resize it to ``size`` x ``size``, mirror it if ``flip``.

    ``out`` (a C-contiguous ``size x size x 3`` uint8 array) receives the result when given.
    """
    view = image[crop.top : crop.top + crop.height, crop.left : crop.left + crop.width]
    factor = min(crop.height, crop.width) // size
    if factor >= 2:
        h, w = crop.height // factor * factor, crop.width // factor * factor
        view = cv2.resize(view[:h, :w], (w // factor, h // factor), interpolation=cv2.INTER_AREA)
    if out is None:
        out = np.empty((size, size, 3), np.uint8)
    cv2.resize(view, (size, size), dst=out, interpolation=cv2.INTER_LINEAR)
    if flip:
        cv2.flip(out, 1, dst=out)  # in place: OpenCV swaps mirrored pixels row by row
    return out


class Transform(Protocol):
    """Decoded image (and its boxes) in, ``size x size x 3`` uint8 out.

    (``CropResize.__call__`` repeats this signature, as an implementation of a protocol does.)
    """

    @property
    def size(self) -> int: ...

    def __call__(
        self,
        image: np.ndarray,
        boxes: Sequence[Box],
        rng: Rng,
        out: np.ndarray | None = None,
    ) -> np.ndarray: ...


# Where the crop goes and whether it is mirrored, for an image of (height, width).
Placement = tuple[Crop, bool]


def _train(height: int, width: int, boxes: Sequence[Box], rng: Rng, size: int) -> Placement:
    """``"train"``: RandomResizedCrop (scale 0.08-1, ratio 3/4-4/3) and a horizontal flip."""
    return random_resized_crop(height, width, rng), rng.random() < 0.5


def _train_inception(
    height: int, width: int, boxes: Sequence[Box], rng: Rng, size: int
) -> Placement:
    """``"train-inception"``: the reference scripts' bbox-aware crop, and a horizontal flip."""
    return distorted_bbox_crop(height, width, boxes, rng), rng.random() < 0.5


def _eval(height: int, width: int, boxes: Sequence[Box], rng: Rng, size: int) -> Placement:
    """``"eval"``: the centre 87.5% of the short side, never flipped."""
    return center_crop(height, width, size), False


_PLACEMENTS: dict[str, Callable[[int, int, Sequence[Box], Rng, int], Placement]] = {
    "train": _train,
    "train-inception": _train_inception,
    "eval": _eval,
}


@dataclass(frozen=True)
class CropResize:
    """One of :data:`TRANSFORMS`: place a crop (and a flip), then :func:`crop_resize`."""

    name: str
    size: int

    def place(self, height: int, width: int, boxes: Sequence[Box], rng: Rng) -> Placement:
        """Where the crop goes in an image of ``height`` x ``width``, and whether it is
        mirrored (what the call does before cutting; the crop decoder needs it first)."""
        return _PLACEMENTS[self.name](height, width, boxes, rng, self.size)

    def __call__(
        self,
        image: np.ndarray,
        boxes: Sequence[Box],
        rng: Rng,
        out: np.ndarray | None = None,
    ) -> np.ndarray:
        crop, flip = self.place(image.shape[0], image.shape[1], boxes, rng)
        return crop_resize(image, crop, self.size, flip, out)


def make_transform(name: str | None, size: int) -> Transform | None:
    """The transform called ``name`` (None: the decoded image unchanged).

    >>> make_transform("eval", 224)
    CropResize(name='eval', size=224)
    """
    if name is None:
        return None
    if size < 1:
        raise ValueError(f"image_size must be at least 1, not {size}")
    if name not in _PLACEMENTS:
        raise ValueError(f"transform must be None or one of {', '.join(TRANSFORMS)}, not {name!r}")
    return CropResize(name, size)
