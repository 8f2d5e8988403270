"""Per-channel mean and standard deviation of decoded RGB pixels, exact.

Each image adds its per-channel histogram of the 256 byte values; histograms add up as
integers, so the merge of any number of workers' parts is exact and order-free, and memory
is 3 x 256 counters whatever the number of images. The sums follow from the histogram as
integers (sum of values, sum of squares), and the moments in [0, 1] from them with one
rounding at the end: no float64 accumulation error at any size.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

# cv2.calcHist counts in float32, exact to 2**24 per bin: larger images are counted in tiles.
_TILE_PIXELS = 1 << 24
_VALUES = np.arange(256, dtype=object)


def channel_histogram(image: np.ndarray) -> np.ndarray:
    """The (3, 256) int64 histogram of an HxWx3 uint8 RGB image.

    >>> image = np.zeros((2, 2, 3), np.uint8); image[0, 0] = (255, 1, 2)
    >>> h = channel_histogram(image); [int(h[0, 0]), int(h[0, 255]), int(h[1, 1]), int(h[2, 2])]
    [3, 1, 1, 1]
    """
    import cv2

    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an HxWx3 uint8 image, not {image.dtype} {image.shape}")
    height, width = image.shape[:2]
    cols = min(width, _TILE_PIXELS)
    rows = max(1, _TILE_PIXELS // max(cols, 1))
    total = np.zeros((3, 256), np.int64)
    for top in range(0, height, rows):
        for left in range(0, width, cols):
            tile = np.ascontiguousarray(image[top : top + rows, left : left + cols])
            for c in range(3):
                total[c] += (
                    cv2.calcHist([tile], [c], None, [256], [0, 256]).ravel().astype(np.int64)
                )
    return total


@dataclass
class PixelMoments:
    """The pixels of some images, as per-channel histograms of byte values."""

    histogram: np.ndarray = field(default_factory=lambda: np.zeros((3, 256), np.int64))
    images: int = 0

    def add(self, image: np.ndarray) -> None:
        self.histogram += channel_histogram(image)
        self.images += 1

    def merge(self, other: PixelMoments) -> None:
        self.histogram += other.histogram
        self.images += other.images

    @property
    def pixels(self) -> int:
        """Pixels per channel."""
        return int(self.histogram[0].sum())

    def _sums(self) -> tuple[list[int], list[int], int]:
        counts = self.histogram.astype(object)  # Python integers: no overflow, no rounding
        s = [int((counts[c] * _VALUES).sum()) for c in range(3)]
        q = [int((counts[c] * _VALUES * _VALUES).sum()) for c in range(3)]
        return s, q, self.pixels

    def mean(self) -> list[float]:
        """Per-channel mean of the pixels scaled to [0, 1].

        >>> m = PixelMoments(); m.add(np.full((1, 2, 3), 255, np.uint8)); m.mean()
        [1.0, 1.0, 1.0]
        """
        s, _q, n = self._sums()
        if n == 0:
            return [float("nan")] * 3
        return [float(Fraction(s[c], 255 * n)) for c in range(3)]

    def std(self) -> list[float]:
        """Per-channel population standard deviation (NumPy's ``std``, ddof 0) in [0, 1].

        >>> m = PixelMoments(); m.add(np.array([[[0, 0, 0], [255, 255, 255]]], np.uint8))
        >>> m.std()
        [0.5, 0.5, 0.5]
        """
        s, q, n = self._sums()
        if n == 0:
            return [float("nan")] * 3
        return [float(Fraction(n * q[c] - s[c] * s[c], (255 * n) ** 2)) ** 0.5 for c in range(3)]
