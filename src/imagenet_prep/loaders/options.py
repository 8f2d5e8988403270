"""The loader options (one frozen dataclass, validated once) and the one saved-position code.

Every loader (``iterate``, the PyTorch ``ImageNetDataset`` and ``ImageNetLoader``, the
``tf.data`` builder) takes the options it shares with the others as keyword arguments
(typed by ``ReadOptions`` or ``DecodeOptions``, defaults in ``LoaderConfig``), makes one
``LoaderConfig`` of them and passes that on. ``Resumable`` is their ``state_dict`` and
``load_state_dict``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

from ..imagefix import MAX_PIXELS
from ..storage import as_location
from .decode import DECODERS
from .order import BALANCE, Consumer
from .readers import FORMATS, Reader, normalize_split, open_reader
from .transforms import TRANSFORMS

# The build already shuffled the whole split into its shards; the buffer only varies the
# order from epoch to epoch, so a small one does: 256 records are about 28 MB per worker.
DEFAULT_BUFFER = 256


@dataclass(frozen=True)
class LoaderConfig:
    """What to read and how; the same for every worker of a rank. Validated on creation.

    ``root`` is the build's folder, or its URL in an object store (``s3://bucket/out``).
    ``split`` is ``train``, ``validation`` or ``test`` (whose labels are -1: no class).
    ``shuffle=None`` means on for ``train``, off for the others. ``buffer_size`` is the
    number of undecoded records a consumer holds to shuffle within (about 110 KB each);
    ImageFolder needs none (its files are permuted one by one). An image whose header
    declares more than ``max_pixels`` pixels is refused before anything is allocated for it
    (the default is Pillow's limit and the build's ``--max-pixels``). ``rank`` of
    ``world_size`` picks the rank's share of each epoch (``balance`` pads or drops to give
    every rank the same count). ``batch_size`` (None: single images) and ``drop_last`` are
    for the loaders that batch, and batching needs a transform (images of one size).
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
    rank: int = 0
    world_size: int = 1
    batch_size: int | None = None
    drop_last: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", as_location(self.root))
        object.__setattr__(self, "split", normalize_split(self.split))
        if self.shuffle is None:
            object.__setattr__(self, "shuffle", self.split == "train")
        if self.format is not None and self.format not in FORMATS:
            raise ValueError(f"format must be one of {', '.join(FORMATS)}, not {self.format!r}")
        if self.transform is not None and self.transform not in TRANSFORMS:
            raise ValueError(
                f"transform must be None or one of {', '.join(TRANSFORMS)}, not {self.transform!r}"
            )
        if self.balance not in BALANCE:
            raise ValueError(f"balance must be one of {', '.join(BALANCE)}, not {self.balance!r}")
        if self.decoder not in DECODERS:
            raise ValueError(f"decoder must be one of {', '.join(DECODERS)}, not {self.decoder!r}")
        for name in ("image_size", "buffer_size", "max_pixels", "batch_size"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1, not {value}")
        self.consumer()  # validates rank and world_size
        if self.batch_size is not None and self.transform is None:
            raise ValueError("batching needs a transform (images of one size)")

    @property
    def boxes(self) -> bool:
        """Whether the transform crops by the training boxes (``train-inception``)."""
        return self.transform == "train-inception"

    def open_reader(self) -> Reader:
        """The reader of this split (boxes loaded only when the transform uses them)."""
        return open_reader(self.root, self.split, self.format, boxes=self.boxes)

    def consumer(self, worker: int = 0, num_workers: int = 1) -> Consumer:
        """Worker ``worker`` of ``num_workers`` on this rank."""
        return Consumer(self.rank, self.world_size, worker, num_workers)

    def state_identity(self, format: str, total: int) -> dict[str, Any]:
        """What decides the images of an epoch and their order: a saved position's context."""
        return {
            "format": format,
            "split": self.split,
            "seed": self.seed,
            "shuffle": self.shuffle,
            "buffer_size": self.buffer_size,
            "balance": self.balance,
            "world_size": self.world_size,
            "total": total,
        }


class ReadOptions(TypedDict, total=False):
    """The keyword arguments every loader passes to ``LoaderConfig`` (defaults there)."""

    transform: str | None
    image_size: int
    seed: int
    shuffle: bool | None
    buffer_size: int
    balance: str


class DecodeOptions(ReadOptions, total=False):
    """And those of the loaders that decode in Python (all but the ``tf.data`` builder)."""

    format: str | None
    decoder: str
    max_pixels: int


def accept(options: Mapping[str, object], accepted: type, caller: str) -> None:
    """TypeError, as Python words it, for a keyword ``caller`` does not take.

    >>> accept({"seed": 1, "decoder": "cv2"}, ReadOptions, "dataset")
    Traceback (most recent call last):
    TypeError: dataset() got an unexpected keyword argument 'decoder'
    """
    for name in options:
        if name not in accepted.__annotations__:
            raise TypeError(f"{caller}() got an unexpected keyword argument {name!r}")


class Resumable(ABC):
    """``state_dict`` and ``load_state_dict`` of every loader that can resume mid-epoch.

    A state is where the loader is, and what that position is only valid with (its
    options, the split's size): loading checks the latter before going to the former.
    """

    @abstractmethod
    def _state_identity(self) -> dict[str, Any]:
        """What a saved state must match (``LoaderConfig.state_identity`` and more)."""

    @abstractmethod
    def _position(self) -> dict[str, Any]:
        """Where this loader is in the epoch, as plain data."""

    @abstractmethod
    def _resume(self, state: Mapping[str, Any]) -> None:
        """Go to the position in ``state`` (whose identity matched)."""

    def state_dict(self) -> dict[str, Any]:
        """Where this loader is: plain data, for a checkpoint."""
        return {**self._state_identity(), **self._position()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from ``state`` (saved by a loader with the same options)."""
        mine = self._state_identity()
        differ = [k for k in mine if state.get(k) != mine[k]]
        if differ:
            raise ValueError(
                "the saved loader state is of another configuration: "
                + ", ".join(f"{k} {state.get(k)!r} != {mine[k]!r}" for k in differ)
            )
        self._resume(state)
