#!/usr/bin/env python3
"""Loader throughput: images/s per worker for each format and transform, side by side with
torchvision's ImageFolder pipeline on the same images and the bare JPEG decode floor.

    python bench/loaders.py                       # generates a download, builds it, measures
    python bench/loaders.py --root OUT --workers 2 --write-docs

The DataLoader figures are the best of ``--repeat`` runs (other processes on the machine
only ever slow a run down); the one-process figures are over ``--repeat`` passes taken in
turns with the floor (below). Per row:

- *1 process*: the loader iterated in this process (one core, no DataLoader), taking
  turns with the decode floor.
- *DataLoader*: ``--workers`` DataLoader workers, batches of ``--batch-size``; images/s
  in the steady state (from the first batch to the last) divided by the number of workers.
  Ours batch in the worker (``ImageNetLoader``); torchvision's is ``ImageFolder`` +
  ``RandomResizedCrop`` + ``RandomHorizontalFlip`` + ``PILToTensor`` with the default
  collate and ``shuffle=True``.
- *decode floor*: the records' JPEG bytes decoded whole (nothing else) with simplejpeg, in
  the same harness as the rate it is compared with. With a transform, ours decode only the
  crop they keep where the package's C module is built (``loaders/cropdecode.py``; the
  environment line says whether it was), so they can pass the floor. Same harness: in one
  process for the *1 process* column, in ``--workers`` DataLoader workers (each decoding its
  share and sending only a count per batch) for the *DataLoader* column. A DataLoader worker
  that only decodes runs a few percent below the same loop in the main process, so comparing
  a worker with the in-process loop would charge DataLoader's own cost to the loader; that
  mixed ratio is printed too. This host is shared and has slow spells of a second or more
  (on 2026-12-02 a pure-Python loop took 0.19-0.51 s from one minute to the next), so each
  side of a ratio must see the same spells:
  - in one process the loader and the floor take turns every ``BLOCK`` images (about
    35 ms), over ``--repeat`` passes of the epoch; each column is images over seconds
    summed over its turns;
  - a DataLoader run cannot be cut into turns; its floor is re-measured just before
    each run, and a ratio divides the best run by the best paired floor (same number of
    runs, same minutes).
  OpenCV and Pillow floors are shown for the decoder choice, and the loaders' crop decoding
  alone (``_jpegcrop`` on crops drawn as RandomResizedCrop draws them, placed beforehand)
  beside the whole decode it replaces.

Targets (issue 6): ``train`` at least 1.6x torchvision per worker and at least 85% of the
decode floor.
"""

from __future__ import annotations

import argparse
import functools
import io
import itertools
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from docsection import DOCS, write_section

ROOT = Path(__file__).resolve().parents[1]
FORMATS = ("tfrecord", "webdataset", "imagefolder")
TRANSFORMS = (None, "train", "train-inception", "eval")
TRAIN_SPEEDUP = 1.6
TRAIN_FLOOR = 0.85
BLOCK = 32  # images per turn in one process (about 35 ms of decoding)
CROP_ONLY = "libjpeg-turbo, only RandomResizedCrop's crop"


@dataclass
class Row:
    loader: str
    format: str
    transform: str
    in_process: float  # images/s, one process (turns with the floor)
    per_worker: float  # images/s per DataLoader worker
    floor: float  # the in-process decode floor, in turns with the in-process runs
    worker_floor: float  # the decode floor per DataLoader worker, alongside those runs


class Floor:
    """The bare decode floor in this process, decoded in turns with a loader
    (:func:`interleaved`); ``best`` is the fastest pass seen."""

    def __init__(self, data: list[bytes]) -> None:
        import simplejpeg

        self.data = data
        self.decode = simplejpeg.decode_jpeg
        self.best = 0.0
        self._at = 0

    def decode_next(self, n: int) -> None:
        """Decode the next ``n`` records (round the list)."""
        data, decode, at = self.data, self.decode, self._at
        for _ in range(n):
            decode(data[at], colorspace="RGB")
            at = (at + 1) % len(data)
        self._at = at


def interleaved(
    items: Callable[[], Iterable[object]], floor: Floor, passes: int
) -> tuple[float, float]:
    """Images/s of ``items()`` and of the decode floor in this process, taking turns.

    ``BLOCK`` items, then as many floor decodes, and so on, for ``passes`` passes over
    ``items()``: a slow or quick spell of the host falls on both. Returns both rates, each
    its images over its seconds summed over all turns (``floor.best`` gets each pass's).
    """
    n_items = n_floor = 0
    t_items = t_floor = 0.0
    for _ in range(passes):
        it = iter(items())
        got, pass_n, pass_t = BLOCK, 0, 0.0
        while got == BLOCK:
            start = time.perf_counter()
            got = sum(1 for _ in itertools.islice(it, BLOCK))
            middle = time.perf_counter()
            floor.decode_next(got)
            end = time.perf_counter()
            n_items += got
            t_items += middle - start
            n_floor += got
            t_floor += end - middle
            pass_n, pass_t = pass_n + got, pass_t + end - middle
        floor.best = max(floor.best, pass_n / pass_t)
    return n_items / t_items, n_floor / t_floor


class WorkerFloor:
    """The decode floor per DataLoader worker: each worker decodes its share of the records
    and sends a count per batch, nothing else (the same harness as the loaders' rates)."""

    def __init__(self, data: list[bytes], workers: int, batch_size: int) -> None:
        self.data, self.workers, self.batch_size = data, workers, batch_size
        self.best = 0.0

    def sample(self) -> float:
        from torch.utils.data import DataLoader

        loader = DataLoader(
            decode_only(self.data, self.batch_size),  # type: ignore[arg-type]
            batch_size=None,
            num_workers=self.workers,
        )
        n, seconds = steady(loader)
        rate = n / seconds / self.workers
        self.best = max(self.best, rate)
        return rate


@functools.cache
def _decode_only_class() -> type:
    """An IterableDataset that only decodes (made on first use: torch is imported lazily)."""
    import simplejpeg
    import torch
    from torch.utils.data import IterableDataset, get_worker_info

    class DecodeOnly(IterableDataset):  # type: ignore[type-arg]
        def __init__(self, data: list[bytes], batch_size: int) -> None:
            self.data, self.batch_size = data, batch_size

        def __iter__(self) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
            info = get_worker_info()
            share = self.data if info is None else self.data[info.id :: info.num_workers]
            n = 0
            for b in share:
                simplejpeg.decode_jpeg(b, colorspace="RGB")
                n += 1
                if n == self.batch_size:
                    yield torch.empty(0), torch.zeros(n)
                    n = 0
            if n:
                yield torch.empty(0), torch.zeros(n)

    return DecodeOnly


def decode_only(data: list[bytes], batch_size: int) -> object:
    """Each DataLoader worker decodes its share of ``data``; batches carry only a count."""
    return _decode_only_class()(data, batch_size)


def best_rate(
    run: Callable[[], tuple[int, float]], repeat: int, floor: WorkerFloor | None = None
) -> tuple[float, float]:
    """The highest images/s of ``repeat`` runs (``run`` returns (images, seconds)), and the
    best decode floor measured just before each of them (0 without ``floor``)."""
    rates, floors = [], []
    for _ in range(repeat):
        if floor is not None:
            floors.append(floor.sample())
        n, seconds = run()
        rates.append(n / seconds)
    return max(rates), max(floors, default=0.0)


def timed(items: Iterable[object]) -> tuple[int, float]:
    start = time.perf_counter()
    n = sum(1 for _ in items)
    return n, time.perf_counter() - start


def steady(batches: Iterable[tuple[object, object]]) -> tuple[int, float]:
    """Images and seconds from the first batch to the last (workers started and not yet
    shutting down: DataLoader joins its workers before its iterator stops)."""
    it = iter(batches)
    next(it)
    start = end = time.perf_counter()
    n = 0
    for _, labels in it:
        n += len(labels)  # type: ignore[arg-type]
        end = time.perf_counter()
    return n, end - start


def prepare(args: argparse.Namespace, scratch: Path) -> Path:
    """The build to read: ``--root``, or a generated download built in all three formats."""
    if args.root:
        return Path(args.root)
    from imagenet_prep import BuildConfig, build
    from imagenet_prep.fixture import FixtureConfig, generate

    download = scratch / "download"
    out = scratch / "out"
    print(f"generating {args.classes} x {args.per_class} training images ...", file=sys.stderr)
    generate(
        FixtureConfig(out=download, classes=args.classes, per_class=args.per_class, val_per_class=1)
    )
    build(
        BuildConfig(
            source=download,
            output=out,
            formats=FORMATS,
            train_shards=8,
            validation_shards=1,
            workers=os.cpu_count() or 1,
        )
    )
    return out


def record_bytes(root: Path) -> list[bytes]:
    """The training images' bytes as the TFRecords and WebDataset shards hold them."""
    from imagenet_prep.loaders import open_reader

    reader = open_reader(root, "train", "webdataset")
    return [
        bytes(raw.data)
        for unit in range(len(reader.sizes))
        for _, raw in reader.read(unit, 0, int(reader.sizes[unit]))
    ]


def decode_floors(data: list[bytes], repeat: int) -> dict[str, float]:
    import cv2
    import simplejpeg
    from PIL import Image

    cv2.setNumThreads(1)
    flags = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION
    decoders: dict[str, Callable[[bytes], object]] = {
        "simplejpeg": lambda b: simplejpeg.decode_jpeg(b, colorspace="RGB"),
        "opencv": lambda b: cv2.cvtColor(
            cv2.imdecode(np.frombuffer(b, np.uint8), flags), cv2.COLOR_BGR2RGB
        ),
        "pillow": lambda b: np.asarray(Image.open(io.BytesIO(b)).convert("RGB")),
    }
    rates = {
        name: best_rate(lambda f=f: timed(f(b) for b in data), repeat)[0]  # type: ignore[misc]
        for name, f in decoders.items()
    }
    from imagenet_prep.loaders.cropdecode import available

    if available():  # the loaders' own crop decoding, RandomResizedCrop's draws placed first
        from imagenet_prep.loaders import _jpegcrop
        from imagenet_prep.loaders.rng import CropRandom
        from imagenet_prep.loaders.transforms import random_resized_crop

        crops = [
            (b, random_resized_crop(*_jpegcrop.size(b), CropRandom(f"floor/{i}")))
            for i, b in enumerate(data)
        ]
        rates[CROP_ONLY] = best_rate(
            lambda: timed(_jpegcrop.decode(b, c.top, c.left, c.height, c.width) for b, c in crops),
            repeat,
        )[0]
    return rates


def measure_ours(
    root: Path, args: argparse.Namespace, floor: Floor, worker_floor: WorkerFloor
) -> list[Row]:
    from torch.utils.data import DataLoader

    from imagenet_prep.loaders import iterate
    from imagenet_prep.loaders.torch import ImageNetDataset, ImageNetLoader

    rows = []
    for fmt in FORMATS:
        for transform in TRANSFORMS:
            common = dict(format=fmt, transform=transform, image_size=args.image_size)
            one, one_floor = interleaved(
                lambda c=common: iterate(root, "train", **c),  # type: ignore[misc]
                floor,
                args.repeat,
            )
            if transform is None:  # images of every size: one per DataLoader item
                dataset = ImageNetDataset(root, "train", **common)  # type: ignore[arg-type]

                def run(d: ImageNetDataset = dataset) -> tuple[int, float]:
                    loader = DataLoader(d, batch_size=None, num_workers=args.workers)
                    return steady((x, [x]) for x in loader)
            else:

                def run(c: dict[str, object] = common) -> tuple[int, float]:
                    loader = ImageNetLoader(
                        root, "train", batch_size=args.batch_size, num_workers=args.workers, **c
                    )  # type: ignore[arg-type]
                    return steady(loader)

            rate, paired = best_rate(run, args.repeat, worker_floor)
            per_worker = rate / args.workers
            rows.append(
                Row("imagenet_prep", fmt, str(transform), one, per_worker, one_floor, paired)
            )
            print(f"  {fmt:11} {transform!s:15} {one:7.0f} {per_worker:7.0f}", file=sys.stderr)
    return rows


def measure_torchvision(
    root: Path, args: argparse.Namespace, floor: Floor, worker_floor: WorkerFloor
) -> Row:
    import torch
    from torch.utils.data import DataLoader
    from torchvision import transforms
    from torchvision.datasets import ImageFolder

    dataset = ImageFolder(
        str(root / "imagefolder" / "train"),
        transform=transforms.Compose(
            [
                transforms.RandomResizedCrop(args.image_size),
                transforms.RandomHorizontalFlip(),
                transforms.PILToTensor(),
            ]
        ),
    )
    order = torch.randperm(len(dataset)).tolist()
    one, one_floor = interleaved(lambda: (dataset[i] for i in order), floor, args.repeat)

    def run() -> tuple[int, float]:
        loader = DataLoader(
            dataset, batch_size=args.batch_size, shuffle=True, num_workers=args.workers
        )
        return steady(loader)

    rate, paired = best_rate(run, args.repeat, worker_floor)
    return Row(
        "torchvision ImageFolder",
        "imagefolder",
        "RandomResizedCrop+flip",
        one,
        rate / args.workers,
        one_floor,
        paired,
    )


def table(
    rows: list[Row],
    tv: Row,
    floors: dict[str, float],
    worker_best: float,
    args: argparse.Namespace,
) -> str:
    lines = [
        f"| loader | format | transform | 1 process (img/s) | vs decode floor, 1 process "
        f"| DataLoader, {args.workers} worker(s) (img/s per worker) | vs decode floor, per "
        "worker | vs torchvision, per worker |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in [*rows, tv]:
        lines.append(
            f"| {r.loader} | {r.format} | {r.transform} | {r.in_process:.0f} | "
            f"{r.in_process / r.floor:.0%} | {r.per_worker:.0f} | "
            f"{r.per_worker / r.worker_floor:.0%} | {r.per_worker / tv.per_worker:.2f}x |"
        )
    for name, rate in floors.items():
        lines.append(f"| decode only ({name}) | records | none | {rate:.0f} | | | | |")
    lines.append(
        f"| decode only (simplejpeg), DataLoader workers | records | none | | | "
        f"{worker_best:.0f} | | |"
    )
    return "\n".join(lines)


def verdict(rows: list[Row], tv: Row) -> list[str]:
    out = []
    for r in rows:
        if r.transform != "train":
            continue
        speedup, share = r.per_worker / tv.per_worker, r.per_worker / r.worker_floor
        one = r.in_process / r.floor
        ok = speedup >= TRAIN_SPEEDUP and share >= TRAIN_FLOOR and one >= TRAIN_FLOOR
        out.append(
            f"{r.format} train: {speedup:.2f}x torchvision per worker (target "
            f"{TRAIN_SPEEDUP}x); {share:.1%} of the decode floor per DataLoader worker and "
            f"{one:.1%} in one process (target {TRAIN_FLOOR:.0%}); a worker against the "
            f"in-process floor: {r.per_worker / r.floor:.1%}: "
            + ("meets the targets" if ok else "MISSES a target")
        )
    return out


def environment(root: Path, images: int, args: argparse.Namespace) -> str:
    import cv2
    import PIL
    import simplejpeg
    import torch
    import torchvision

    from imagenet_prep.loaders.cropdecode import available as crop_decoding

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (
        f"{images} training images ({'--root ' + str(root) if args.root else 'generated: '}"
        f"{'' if args.root else f'{args.classes} classes x {args.per_class}, about 110 KB each'}"
        f"), image size {args.image_size}, batch {args.batch_size}; {cpu}, "
        f"{os.cpu_count()} cores; Python {platform.python_version()}, simplejpeg "
        f"{simplejpeg.__version__}, OpenCV {cv2.__version__}, Pillow {PIL.__version__}, "
        f"torch {torch.__version__}, torchvision {torchvision.__version__}; DataLoader: "
        f"best of {args.repeat} runs; one process: {args.repeat} passes in turns with the "
        f"floor ({BLOCK} images a turn); crop decoding (C module): "
        f"{'built' if crop_decoding() else 'not built, whole images decoded'}."
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", help="a build with tfrecord, webdataset and imagefolder")
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--workers", type=int, default=1, help="DataLoader workers")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--write-docs", action="store_true", help=f"write {DOCS}")
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be at least 1")

    with tempfile.TemporaryDirectory(prefix="bench-loaders-") as scratch:
        root = prepare(args, Path(scratch))
        data = record_bytes(root)
        print("decode floors ...", file=sys.stderr)
        floors = decode_floors(data, args.repeat)
        floor = Floor(data)
        worker_floor = WorkerFloor(data, args.workers, args.batch_size)
        print("torchvision ...", file=sys.stderr)
        tv = measure_torchvision(root, args, floor, worker_floor)
        print("imagenet_prep loaders (format, transform, 1 process, per worker):", file=sys.stderr)
        rows = measure_ours(root, args, floor, worker_floor)
        floors["simplejpeg"] = max(floors["simplejpeg"], floor.best)
        text = table(rows, tv, floors, worker_floor.best, args)
        notes = verdict(rows, tv)
        env = environment(root, len(data), args)
    print(text)
    print()
    for line in notes:
        print(line)
    print(env)
    if args.write_docs:
        write_section(
            "loader-bench",
            "## Loader throughput\n\n"
            "`python bench/loaders.py"
            + (f" --workers {args.workers}" if args.workers != 1 else "")
            + "`: images/s per worker, each loader on the same images with the same number "
            "of DataLoader workers. Each rate is compared with the decode floor measured in "
            "the same harness (one process, or DataLoader workers that only decode), re-measured "
            "beside it; the docstring of bench/loaders.py has the method.\n\n"
            + text
            + "\n\n"
            + "\n".join(f"- {line}" for line in notes)
            + f"\n\n{env}",
        )
        print(f"wrote {DOCS}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
