"""Progress display for ``build``: a bar on a terminal, periodic lines otherwise."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class BarReporter:
    """A tqdm bar: images done / total, images/s, MB/s and ETA."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream if stream is not None else sys.stderr
        self._bar = None
        self._bytes = 0.0
        self._done = 0.0
        self._start = 0.0

    def start(self, images: int, nbytes: int, done_images: int, done_bytes: int) -> None:
        from tqdm import tqdm

        self._start = time.perf_counter()
        self._done = float(done_images)
        self._bar = tqdm(
            total=images,
            initial=done_images,
            unit="img",
            unit_scale=False,
            dynamic_ncols=True,
            file=self._stream,
            desc="build",
            smoothing=0.1,
        )

    def update(self, images: float, nbytes: float) -> None:
        if self._bar is None:
            return
        self._bytes += nbytes
        elapsed = max(time.perf_counter() - self._start, 1e-9)
        self._bar.set_postfix_str(f"{self._bytes / 1e6 / elapsed:,.0f} MB/s", refresh=False)
        # The bar counts whole images; a shard of a split built in two plan groups adds halves.
        self._done += images
        self._bar.update(round(self._done) - self._bar.n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


class LineReporter:
    """One plain line at most every ``interval`` seconds, for logs and CI."""

    def __init__(self, stream: TextIO | None = None, interval: float = 10.0) -> None:
        self._stream = stream if stream is not None else sys.stderr
        self._interval = interval
        self._total = 0
        self._done = 0.0
        self._images = 0.0
        self._bytes = 0.0
        self._start = 0.0
        self._last = 0.0

    def start(self, images: int, nbytes: int, done_images: int, done_bytes: int) -> None:
        self._total = images
        self._done = done_images
        self._start = self._last = time.perf_counter()

    def update(self, images: float, nbytes: float) -> None:
        self._done += images
        self._images += images
        self._bytes += nbytes
        now = time.perf_counter()
        if now - self._last >= self._interval or round(self._done) >= self._total:
            self._last = now
            self._line(now)

    def _line(self, now: float) -> None:
        elapsed = max(now - self._start, 1e-9)
        rate = self._images / elapsed
        left = self._total - self._done
        eta = f"{left / rate:,.0f} s" if rate > 0 else "?"
        pct = 100.0 * self._done / self._total if self._total else 100.0
        print(
            f"build: {round(self._done):,}/{self._total:,} images ({pct:.0f}%), "
            f"{rate:,.0f} images/s, "
            f"{self._bytes / 1e6 / elapsed:,.0f} MB/s, ETA {eta}",
            file=self._stream,
            flush=True,
        )

    def close(self) -> None:
        pass
