"""The framework-free loader: one consumer's images of one epoch, resumable mid-epoch."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import DataError
from ..storage import as_location
from .cropdecode import make_crop_decoder
from .decode import check_size, make_decoder
from .options import DecodeOptions, LoaderConfig, Resumable, accept
from .order import BufferShuffle, Consumer, consumer_range, locate, unit_order
from .readers import RawSample, Reader
from .rng import CropRandom
from .transforms import make_transform

if TYPE_CHECKING:
    from typing import Unpack  # Python 3.11

Sample = tuple[np.ndarray, int, str]


class ImageNetIterator(Resumable, Iterator[Sample]):
    """Yields ``(image, label, key)`` for one consumer of one epoch.

    ``image`` is uint8 HxWx3 RGB (``image_size`` square with a transform), ``label`` the
    0-based synset index (-1 in the test split: no class), ``key`` the file stem. The order
    depends only on the config, the consumer (by default worker 0 of 1 on the config's rank)
    and the epoch.
    ``state_dict()`` after any number of images and ``load_state_dict()`` on a fresh
    iterator continue with exactly the images (and crops) that would have come next.
    """

    def __init__(
        self,
        config: LoaderConfig,
        consumer: Consumer | None = None,
        epoch: int = 0,
        reader: Reader | None = None,
    ) -> None:
        self.config = config
        self.consumer = consumer or config.consumer()
        if (self.consumer.rank, self.consumer.world_size) != (config.rank, config.world_size):
            raise ValueError(
                f"the consumer is rank {self.consumer.rank} of {self.consumer.world_size}, "
                f"the config rank {config.rank} of {config.world_size}"
            )
        self.reader = reader if reader is not None else config.open_reader()
        self.decode = make_decoder(config.decoder)
        self.transform = make_transform(config.transform, config.image_size)
        # "auto": decode only the crop where the C module is built (same pixels, less work).
        self.crop_decode = (
            make_crop_decoder(self.transform, self.decode) if config.decoder == "auto" else None
        )
        self.total = int(self.reader.sizes.sum())
        self._start(epoch, 0)

    # --- position --------------------------------------------------------------------

    def _start(self, epoch: int, done: int) -> None:
        cfg = self.config
        self.epoch = epoch
        sizes = self.reader.sizes
        self._order = unit_order(len(sizes), cfg.seed, epoch, bool(cfg.shuffle))
        self._sizes = sizes[self._order]
        self._cumulative = np.cumsum(self._sizes)
        self._lo, self._hi = consumer_range(self.total, self.consumer, cfg.balance)
        size = cfg.buffer_size if cfg.shuffle else 1
        if self.reader.sizes.size and int(self.reader.sizes.max()) <= 1:
            size = 1  # units of one file (ImageFolder) are already in a full permutation
        self._shuffle = BufferShuffle(
            self._hi - self._lo, size, f"shuffle/{cfg.seed}/{epoch}/{self._lo}"
        )
        if not 0 <= done <= len(self):
            raise ValueError(f"cannot resume after {done} of {len(self)} images")
        self._shuffle.skip(done)
        waiting = set(self._shuffle.buffer)
        frontier = self._shuffle.frontier
        want: Callable[[int], bool] | None = None
        if waiting:
            want = lambda p: p >= frontier or p in waiting  # noqa: E731
        self._stream = self._read(min(waiting, default=frontier), want)
        self._pending: dict[int, RawSample] = {}
        self.yielded = done

    def __len__(self) -> int:
        """Images this consumer yields in the epoch."""
        return self._hi - self._lo

    def set_epoch(self, epoch: int) -> None:
        """Start ``epoch`` from its beginning."""
        self._start(epoch, 0)

    def _state_identity(self) -> dict[str, Any]:
        con = self.consumer
        return {
            **self.config.state_identity(self.reader.format, self.total),
            "rank": con.rank,
            "worker": con.worker,
            "num_workers": con.num_workers,
        }

    def _position(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "yielded": self.yielded}

    def _resume(self, state: Mapping[str, Any]) -> None:
        self._start(int(state["epoch"]), int(state["yielded"]))

    # --- reading ---------------------------------------------------------------------

    def _read(
        self, first: int, want: Callable[[int], bool] | None
    ) -> Iterator[tuple[int, RawSample]]:
        """(position in this consumer's range, raw sample) from ``first`` on, in file order."""
        v = self._lo + first
        while v < self._hi:
            index, record = locate(self._cumulative, v % self.total)
            take = min(int(self._sizes[index]) - record, self._hi - v)
            base = v - self._lo - record
            unit_want = None if want is None else (lambda r, b=base: want(b + r))
            for r, raw in self.reader.read(
                int(self._order[index]), record, record + take, unit_want
            ):
                yield base + r, raw
            v += take

    def next_raw(self) -> tuple[RawSample, int]:
        """The next record undecoded, and its position in the epoch (which seeds its crop)."""
        p = next(self._shuffle)
        pending = self._pending
        while p not in pending:
            try:
                q, raw = next(self._stream)
            except StopIteration:
                raise DataError(
                    f"{self.reader.format} {self.config.split}: fewer records than listed"
                ) from None
            pending[q] = raw
        self.yielded += 1
        return pending.pop(p), self._lo + p

    def process(self, raw: RawSample, position: int, out: np.ndarray | None = None) -> np.ndarray:
        """Decode and transform one record (into ``out`` when given, with a transform).

        The header's size is checked first; a DataError names the shard (or file) and key.
        """
        try:
            check_size(raw.data, self.config.max_pixels)
            if self.transform is None:
                return self.decode(raw.data)
            rng = CropRandom(f"crop/{self.config.seed}/{self.epoch}/{position}")
            if self.crop_decode is not None:
                return self.crop_decode(raw.data, raw.boxes, rng, out)
            return self.transform(self.decode(raw.data), raw.boxes, rng, out)
        except DataError as exc:
            raise DataError(f"{raw.source or self.reader.format}: {raw.key}: {exc}") from None

    def __next__(self) -> Sample:
        raw, position = self.next_raw()
        return self.process(raw, position), raw.label, raw.key


def iterate(
    root: str | Path,
    split: str,
    *,
    epoch: int = 0,
    rank: int = 0,
    world_size: int = 1,
    worker: int = 0,
    num_workers: int = 1,
    **options: Unpack[DecodeOptions],
) -> ImageNetIterator:
    """Iterate ``(image, label, key)`` over ``split`` of the build at ``root`` (a folder, or
    a URL such as ``s3://bucket/out``: shards are then read with read-ahead, see
    ``readers/remote.py``).

    ``split`` is ``train``, ``validation`` (or ``val``) or ``test`` (label -1: the test
    images have no class). The options are :class:`LoaderConfig`'s (with its defaults):
    ``format`` is ``tfrecord``, ``webdataset``, ``imagefolder`` or ``mds`` (default: the
    first the build wrote);
    ``transform`` is None, ``train``, ``train-inception`` or ``eval``; ``image_size``,
    ``seed``, ``shuffle``, ``buffer_size``, ``balance``, ``decoder``, ``max_pixels``.
    ``rank``/``world_size`` and ``worker``/``num_workers`` pick this consumer's share;
    all consumers of an epoch together yield every image once (``balance`` pads or drops
    to give every rank the same count). An image whose header declares more than
    ``max_pixels`` pixels raises DataError before it is decoded. See
    :class:`ImageNetIterator`.
    """
    accept(options, DecodeOptions, "iterate")
    config = LoaderConfig(as_location(root), split, rank=rank, world_size=world_size, **options)
    return ImageNetIterator(config, config.consumer(worker, num_workers), epoch)
