"""The framework-free loader: one consumer's images of one epoch, resumable mid-epoch."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from ..imagefix import MAX_PIXELS
from .cropdecode import make_crop_decoder
from .decode import DECODERS, check_size, make_decoder
from .order import BALANCE, BufferShuffle, Consumer, consumer_range, locate, unit_order
from .readers import FORMATS, RawSample, Reader, normalize_split, open_reader
from .rng import CropRandom
from .transforms import TRANSFORMS, make_transform

Sample = tuple[np.ndarray, int, str]
# The build already shuffled the whole split into its shards; the buffer only varies the
# order from epoch to epoch, so a small one does: 256 records are about 28 MB per worker.
DEFAULT_BUFFER = 256


@dataclass(frozen=True)
class LoaderConfig:
    """What to read and how; the same for every rank and worker. Validated on creation.

    ``shuffle=None`` means on for ``train``, off for ``validation``. ``buffer_size`` is the
    number of undecoded records a consumer holds to shuffle within (about 110 KB each);
    ImageFolder needs none (its files are permuted one by one). An image whose header
    declares more than ``max_pixels`` pixels is refused before anything is allocated for it
    (the default is Pillow's limit and the build's ``--max-pixels``).
    """

    root: Path
    split: str
    format: str | None = None
    transform: str | None = None
    image_size: int = 224
    seed: int = 0
    shuffle: bool | None = None
    buffer_size: int = DEFAULT_BUFFER
    balance: str = "none"
    decoder: str = "auto"
    max_pixels: int = MAX_PIXELS

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))
        object.__setattr__(self, "split", normalize_split(self.split))
        if self.shuffle is None:
            object.__setattr__(self, "shuffle", self.split == "train")
        if self.format is not None and self.format not in FORMATS:
            raise ValueError(f"format must be one of {', '.join(FORMATS)}, not {self.format!r}")
        if self.transform is not None and self.transform not in TRANSFORMS:
            raise ValueError(
                f"transform must be None or one of {', '.join(TRANSFORMS)}, not {self.transform!r}"
            )
        if self.image_size < 1:
            raise ValueError(f"image_size must be at least 1, not {self.image_size}")
        if self.buffer_size < 1:
            raise ValueError(f"buffer_size must be at least 1, not {self.buffer_size}")
        if self.balance not in BALANCE:
            raise ValueError(f"balance must be one of {', '.join(BALANCE)}, not {self.balance!r}")
        if self.decoder not in DECODERS:
            raise ValueError(f"decoder must be one of {', '.join(DECODERS)}, not {self.decoder!r}")
        if self.max_pixels < 1:
            raise ValueError(f"max_pixels must be at least 1, not {self.max_pixels}")

    def open_reader(self) -> Reader:
        """The reader of this split (boxes loaded only for ``train-inception``)."""
        return open_reader(
            self.root, self.split, self.format, boxes=self.transform == "train-inception"
        )


# The state keys that must match for a saved position to mean the same images.
_STATE_KEYS = (
    "format",
    "split",
    "seed",
    "shuffle",
    "buffer_size",
    "balance",
    "rank",
    "world_size",
    "worker",
    "num_workers",
    "total",
)


class ImageNetIterator(Iterator[Sample]):
    """Yields ``(image, label, key)`` for one consumer of one epoch.

    ``image`` is uint8 HxWx3 RGB (``image_size`` square with a transform), ``label`` the
    0-based synset index, ``key`` the file stem. The order depends only on the config, the
    consumer and the epoch. ``state_dict()`` after any number of images and
    ``load_state_dict()`` on a fresh iterator continue with exactly the images (and crops)
    that would have come next.
    """

    def __init__(
        self,
        config: LoaderConfig,
        consumer: Consumer | None = None,
        epoch: int = 0,
        reader: Reader | None = None,
    ) -> None:
        self.config = config
        self.consumer = consumer or Consumer()
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

    def state_dict(self) -> dict[str, Any]:
        """Where this iterator is: plain data, for a checkpoint."""
        cfg, con = self.config, self.consumer
        return {
            "format": self.reader.format,
            "split": cfg.split,
            "seed": cfg.seed,
            "shuffle": cfg.shuffle,
            "buffer_size": cfg.buffer_size,
            "balance": cfg.balance,
            "rank": con.rank,
            "world_size": con.world_size,
            "worker": con.worker,
            "num_workers": con.num_workers,
            "total": self.total,
            "epoch": self.epoch,
            "yielded": self.yielded,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from ``state`` (of an iterator with the same config and consumer)."""
        mine = self.state_dict()
        differ = [k for k in _STATE_KEYS if state.get(k) != mine[k]]
        if differ:
            raise ValueError(
                "the saved loader state is of another configuration: "
                + ", ".join(f"{k} {state.get(k)!r} != {mine[k]!r}" for k in differ)
            )
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
    format: str | None = None,
    transform: str | None = None,
    image_size: int = 224,
    seed: int = 0,
    epoch: int = 0,
    rank: int = 0,
    world_size: int = 1,
    shuffle: bool | None = None,
    worker: int = 0,
    num_workers: int = 1,
    buffer_size: int = DEFAULT_BUFFER,
    balance: str = "none",
    decoder: str = "auto",
    max_pixels: int = MAX_PIXELS,
) -> ImageNetIterator:
    """Iterate ``(image, label, key)`` over ``split`` of the build at ``root``.

    ``format`` is ``tfrecord``, ``webdataset`` or ``imagefolder`` (default: the first the
    build wrote); ``transform`` is None, ``train``, ``train-inception`` or ``eval``.
    ``rank``/``world_size`` and ``worker``/``num_workers`` pick this consumer's share;
    all consumers of an epoch together yield every image once (``balance`` pads or drops
    to give every rank the same count). An image whose header declares more than
    ``max_pixels`` pixels raises DataError before it is decoded. See
    :class:`ImageNetIterator`.
    """
    config = LoaderConfig(
        root=Path(root),
        split=split,
        format=format,
        transform=transform,
        image_size=image_size,
        seed=seed,
        shuffle=shuffle,
        buffer_size=buffer_size,
        balance=balance,
        decoder=decoder,
        max_pixels=max_pixels,
    )
    consumer = Consumer(rank=rank, world_size=world_size, worker=worker, num_workers=num_workers)
    return ImageNetIterator(config, consumer, epoch)
