"""PyTorch adapters: an ``IterableDataset`` and a resumable batch loader around ``DataLoader``.

Each ``DataLoader`` worker of each rank is one consumer of the epoch (see ``order.py``), so
``num_workers`` and ``torch.distributed`` ranks split the data without overlap. Images are
uint8 tensors, CHW by default (a view of the decoded HWC pixels: the shape is CHW, the memory
is channels-last, which convolutions on GPU prefer; call ``.contiguous()`` if you need
NCHW-contiguous memory) or HWC; labels are int64 (-1 for the test split, which has no
classes). Nothing is converted to float here: do that on the device, e.g.
``images.cuda().float().div_(255)`` and normalize.

The fast path batches inside the workers (``batch_size=``): each worker decodes and crops
straight into one preallocated ``(B, H, W, 3)`` array, so a batch costs no per-image
Python stacking; use ``DataLoader(dataset, batch_size=None)``, or :class:`ImageNetLoader`,
which does that and also keeps the position for ``state_dict()``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

try:
    import torch
    from torch.utils.data import DataLoader, IterableDataset, get_worker_info
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "imagenet_prep.loaders.torch needs PyTorch: pip install 'imagenet-prep[torch]'"
    ) from exc

from ..storage import as_location, is_url
from .iterator import ImageNetIterator
from .options import DecodeOptions, LoaderConfig, Resumable, accept
from .order import Consumer, epoch_length, split_range

if TYPE_CHECKING:
    from typing import Unpack  # Python 3.11

LAYOUTS = ("CHW", "HWC")


def _config(
    root: str | Path,
    split: str,
    rank: int | None,
    world_size: int | None,
    batch_size: int | None,
    drop_last: bool,
    options: DecodeOptions,
    caller: str,
) -> LoaderConfig:
    """A PyTorch loader's config; ``rank``, ``world_size``: ``torch.distributed``'s if None."""
    accept(options, DecodeOptions, caller)
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        rank = dist.get_rank() if rank is None else rank
        world_size = dist.get_world_size() if world_size is None else world_size
    return LoaderConfig(
        as_location(root),
        split,
        rank=0 if rank is None else rank,
        world_size=1 if world_size is None else world_size,
        batch_size=batch_size,
        drop_last=drop_last,
        **options,
    )


def _shared_images(shape: tuple[int, ...]) -> torch.Tensor:
    """An uninitialized uint8 tensor in shared memory (made there, not copied there)."""
    storage = torch.UntypedStorage._new_shared(int(np.prod(shape)))  # type: ignore[no-untyped-call]
    return torch.empty(0, dtype=torch.uint8).set_(storage).view(shape)


def _new_images(shape: tuple[int, ...], shared: bool) -> torch.Tensor:
    """An uninitialized uint8 tensor; in shared memory in a worker process.

    A worker's tensors go to the main process through shared memory; one made there from
    the start is not copied again on the way (as DataLoader's own collate does it).
    """
    return _shared_images(shape) if shared else torch.empty(shape, dtype=torch.uint8)


def _as_layout(images: torch.Tensor, layout: str) -> torch.Tensor:
    """HWC (or NHWC) pixels as ``layout``; CHW is a permuted view, no copy."""
    if layout == "HWC":
        return images
    return images.permute(2, 0, 1) if images.dim() == 3 else images.permute(0, 3, 1, 2)


class _Ring:
    """Per DataLoader worker, ``size`` batch buffers in shared memory, reused in turn.

    A worker fills a slot and sends only its number; the loader copies the pixels out and
    frees the slot. Fresh shared memory for every batch (DataLoader's own way) costs a page
    fault per 4 KB in the worker, several percent of a worker's time at these rates; a
    reused slot costs none. A semaphore per worker counts its free slots.
    """

    def __init__(self, workers: int, size: int, shape: tuple[int, ...], context: Any) -> None:
        self.size = size
        self.slots = [[_shared_images(shape) for _ in range(size)] for _ in range(workers)]
        self.free = [context.Semaphore(size) for _ in range(workers)]

    def acquire(self, worker: int) -> None:
        """Wait for a free slot of ``worker``; give up if the loader's process has gone."""
        parent = os.getppid()
        while not self.free[worker].acquire(timeout=1.0):
            if os.getppid() != parent:
                raise RuntimeError("the loader's process has gone")

    def take(self, worker: int, slot: int, n: int, pin: bool) -> torch.Tensor:
        """Copy ``n`` images out of a slot and free it."""
        source = self.slots[worker][slot][:n]
        out = torch.empty(source.shape, dtype=torch.uint8, pin_memory=pin)
        out.copy_(source)
        self.free[worker].release()
        return out


class ImageNetDataset(IterableDataset[Any]):
    """``split`` of the build at ``root`` for ``DataLoader``; one consumer per worker.

    Without ``batch_size`` it yields ``(image, label)`` per image (use :func:`collate` as
    the DataLoader's ``collate_fn``); with ``batch_size`` it yields ``(images, labels)``
    batches made in the worker (use ``DataLoader(..., batch_size=None)``). Each worker
    batches its own share, so with ``drop_last`` every worker drops its own last partial
    batch. ``rank``/``world_size`` default to ``torch.distributed``'s, read when the
    dataset is made (in the main process). The other options (``format``, ``transform``,
    ``image_size``, ``seed``, ``shuffle``, ``buffer_size``, ``balance``, ``decoder``,
    ``max_pixels``) are :class:`LoaderConfig`'s, with its defaults. Call ``set_epoch``
    before each epoch; workers get the dataset when an epoch's iteration starts, so do not
    use ``persistent_workers=True``.
    """

    def __init__(
        self,
        root: str | Path,
        split: str,
        *,
        batch_size: int | None = None,
        drop_last: bool = False,
        layout: str = "CHW",
        rank: int | None = None,
        world_size: int | None = None,
        epoch: int = 0,
        **options: Unpack[DecodeOptions],
    ) -> None:
        super().__init__()
        config = _config(
            root, split, rank, world_size, batch_size, drop_last, options, "ImageNetDataset"
        )
        self._setup(config, layout, epoch)

    @classmethod
    def from_config(
        cls, config: LoaderConfig, *, layout: str = "CHW", epoch: int = 0
    ) -> ImageNetDataset:
        """The dataset of ``config`` (its rank and world size as they are there)."""
        dataset = cls.__new__(cls)
        dataset._setup(config, layout, epoch)
        return dataset

    def _setup(self, config: LoaderConfig, layout: str, epoch: int) -> None:
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, not {layout!r}")
        self.config = config
        self.layout = layout
        self.epoch = epoch
        self.reader = config.open_reader()  # once, here; workers get a pickled copy
        self.total = int(self.reader.sizes.sum())
        # Set by ImageNetLoader: where each worker resumes, which consumer worker 0 runs,
        # and whether batches carry (consumer, images done) for the loader's bookkeeping.
        self.resume: dict[int, int] = {}
        self.rotation = 0
        self.with_cursor = False
        self.ring: _Ring | None = None

    def set_epoch(self, epoch: int) -> None:
        """Read ``epoch`` next time (changes the shuffle and the crops)."""
        self.epoch = epoch
        self.resume = {}

    def rank_images(self) -> int:
        """Images this rank yields per epoch (over all its workers)."""
        cfg = self.config
        length = epoch_length(self.total, cfg.world_size, cfg.balance)
        lo, hi = split_range(0, length, cfg.world_size, cfg.rank)
        return hi - lo

    def __len__(self) -> int:
        if self.config.batch_size is not None:
            raise TypeError("a batching ImageNetDataset has no len(); ImageNetLoader has")
        return self.rank_images()

    def consumer(self, worker: int, num_workers: int) -> Consumer:
        """The consumer that DataLoader worker ``worker`` runs."""
        return self.config.consumer((worker + self.rotation) % num_workers, num_workers)

    def iterator(self, worker: int = 0, num_workers: int = 1) -> ImageNetIterator:
        """The core iterator of a worker, at its resume position."""
        consumer = self.consumer(worker, num_workers)
        it = ImageNetIterator(self.config, consumer, self.epoch, self.reader)
        done = self.resume.get(consumer.worker, 0)
        if done:
            it.load_state_dict({**it.state_dict(), "yielded": done})
        return it

    def __iter__(self) -> Iterator[Any]:
        info = get_worker_info()
        if info is not None:
            import cv2

            cv2.setNumThreads(1)  # one core per worker: the worker processes are ours
        worker, num_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        it = self.iterator(worker, num_workers)
        if self.config.batch_size is None:
            for image, label, _ in it:
                yield _as_layout(torch.from_numpy(image), self.layout), label
            return
        yield from self._batches(it, self.config.batch_size)

    def _batches(self, it: ImageNetIterator, b: int) -> Iterator[Any]:
        size = self.config.image_size
        info = get_worker_info()
        ring = self.ring if info is not None and self.with_cursor else None
        left = len(it) - it.yielded
        count = 0
        while left >= b or (left > 0 and not self.config.drop_last):
            n = min(b, left)
            slot = count % ring.size if ring is not None else -1
            if ring is not None and info is not None:
                ring.acquire(info.id)
                batch_images = ring.slots[info.id][slot][:n]
            else:
                batch_images = _new_images((n, size, size, 3), info is not None)
            images = batch_images.numpy()
            labels = np.empty(n, np.int64)
            for i in range(n):
                raw, position = it.next_raw()
                it.process(raw, position, out=images[i])
                labels[i] = raw.label
            left -= n
            count += 1
            if not self.with_cursor:
                yield _as_layout(batch_images, self.layout), torch.from_numpy(labels)
                continue
            worker_id = info.id if info is not None else 0
            cursor = torch.tensor([it.consumer.worker, it.yielded, worker_id, slot])
            # In the ring, the pixels stay in the slot; ImageNetLoader copies them out.
            pixels = None if ring is not None else _as_layout(batch_images, self.layout)
            yield pixels, torch.from_numpy(labels), cursor


def collate(samples: Sequence[tuple[torch.Tensor, int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Batch per-image ``(image, label)`` pairs: one preallocated tensor, one stacking call.

    Works for both layouts; the batch has the layout of its images (CHW images give an
    NCHW-shaped, channels-last batch without any transposing copy).
    """
    images = [s[0] for s in samples]
    chw = images[0].dim() == 3 and images[0].stride(-1) != 1
    hwc = [im.permute(1, 2, 0) for im in images] if chw else images
    out = torch.empty((len(images), *hwc[0].shape), dtype=torch.uint8)
    torch.stack(hwc, out=out)
    labels = torch.tensor([s[1] for s in samples], dtype=torch.int64)
    return (out.permute(0, 3, 1, 2) if chw else out), labels


class ImageNetLoader(Resumable):
    """Batches of ``(images, labels)`` from ``DataLoader`` workers, resumable mid-epoch.

    ``state_dict()`` records, per worker, how many images of the epoch the training loop
    has received (batches prefetched but not yet handed out do not count), and which
    worker hands out the next batch; ``load_state_dict()`` on a fresh loader continues with
    exactly the batches that would have come next. An epoch that ends moves the loader to
    the next one; ``set_epoch(e)`` starts epoch ``e`` from its beginning unless the loader
    is already in epoch ``e`` (so it can be called every epoch, also after resuming).

    The state has no rank in it: with ``balance="pad"`` or ``"drop"`` all ranks are at the
    same place after the same number of steps, so one rank's state serves every rank.
    The options are :class:`ImageNetDataset`'s, but ``transform`` defaults to ``"train"``
    and ``batch_size`` is required; the others are ``DataLoader``'s.
    """

    def __init__(
        self,
        root: str | Path,
        split: str,
        *,
        batch_size: int,
        num_workers: int = 0,
        drop_last: bool = False,
        layout: str = "CHW",
        rank: int | None = None,
        world_size: int | None = None,
        pin_memory: bool = False,
        prefetch_factor: int = 2,
        multiprocessing_context: str | None = None,
        **options: Unpack[DecodeOptions],
    ) -> None:
        if num_workers < 0:
            raise ValueError(f"num_workers must be at least 0, not {num_workers}")
        options.setdefault("transform", "train")
        self.config = _config(
            root, split, rank, world_size, batch_size, drop_last, options, "ImageNetLoader"
        )
        self.dataset = ImageNetDataset.from_config(self.config, layout=layout)
        self.dataset.with_cursor = True
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.prefetch_factor = prefetch_factor
        self.multiprocessing_context = multiprocessing_context
        self._done: dict[int, int] = {}
        self._next = 0

    @property
    def epoch(self) -> int:
        return self.dataset.epoch

    def set_epoch(self, epoch: int) -> None:
        """Start ``epoch`` from its beginning (nothing changes if already in ``epoch``)."""
        if epoch != self.dataset.epoch:
            self.dataset.set_epoch(epoch)
            self._done, self._next = {}, 0

    def _context_name(self) -> str | None:
        """How workers start: as asked, else by fork (fast) for a local build, and from a
        fork server for a build in an object store: a process that has used a store's client
        holds its threads and locks, and a child forked from it can wait forever on a lock
        one of them held at that moment."""
        if self.multiprocessing_context is not None:
            return self.multiprocessing_context
        return "forkserver" if is_url(self.config.root) else None

    def _worker_images(self) -> list[int]:
        workers = max(1, self.num_workers)
        rank = self.dataset.rank_images()
        return [
            split_range(0, rank, workers, w)[1] - split_range(0, rank, workers, w)[0]
            for w in range(workers)
        ]

    def __len__(self) -> int:
        """Batches this rank yields in a whole epoch."""
        b = self.batch_size
        if self.config.drop_last:
            return sum(n // b for n in self._worker_images())
        return sum(-(-n // b) for n in self._worker_images())

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        workers = max(1, self.num_workers)
        dataset = self.dataset
        dataset.resume = dict(self._done)
        dataset.rotation = self._next
        pin = self.pin_memory and torch.cuda.is_available()
        context = None
        if self.num_workers:
            context = torch.multiprocessing.get_context(self._context_name())
            size = dataset.config.image_size
            dataset.ring = _Ring(
                self.num_workers,
                self.prefetch_factor + 1,  # never short: DataLoader keeps this many in flight
                (self.batch_size, size, size, 3),
                context,
            )
        loader = DataLoader(
            dataset,
            batch_size=None,
            num_workers=self.num_workers,
            pin_memory=pin and not self.num_workers,
            prefetch_factor=self.prefetch_factor if self.num_workers else None,
            multiprocessing_context=context,
        )
        try:
            for images, labels, cursor in loader:
                worker, done, worker_id, slot = (int(c) for c in cursor)
                if images is None and dataset.ring is not None:
                    images = _as_layout(
                        dataset.ring.take(worker_id, slot, len(labels), pin), dataset.layout
                    )
                    if pin:
                        labels = labels.pin_memory()
                self._done[worker] = done
                self._next = (worker + 1) % workers
                yield images, labels
        finally:
            dataset.ring = None
        self.dataset.set_epoch(self.dataset.epoch + 1)
        self._done, self._next = {}, 0

    def _state_identity(self) -> dict[str, Any]:
        # No rank: with balance "pad" or "drop", one rank's state serves every rank.
        return {
            **self.config.state_identity(self.dataset.reader.format, self.dataset.total),
            "num_workers": self.num_workers,
            "batch_size": self.batch_size,
            "drop_last": self.config.drop_last,
        }

    def _position(self) -> dict[str, Any]:
        return {
            "epoch": self.dataset.epoch,
            "done": {str(k): v for k, v in sorted(self._done.items())},
            "next": self._next,
        }

    def _resume(self, state: Mapping[str, Any]) -> None:
        self.dataset.set_epoch(int(state["epoch"]))
        self._done = {int(k): int(v) for k, v in state["done"].items()}
        self._next = int(state["next"])
