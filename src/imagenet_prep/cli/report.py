"""``imagenet-prep report OUT``: parse options into ReportOptions and write the report."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any, TextIO

from ..config import DEFAULT_SEED, default_workers
from ..formats import NAMES


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "report",
        help="write OUT/report/index.html: plots, statistics, mean/std, contact sheets",
        description="Read a finished build once and write OUT/report/: index.html (opens from "
        "the file system, no network), stats.json, the plots, thumbnails of the re-encoded and "
        "skipped images and contact sheets. Needs matplotlib: pip install "
        "'imagenet-prep[report]'.",
    )
    p.add_argument("output", help="a finished build's output folder")
    add_options(p)
    p.add_argument(
        "--format",
        choices=NAMES,
        default=None,
        help="the output to read (default: imagefolder, which keeps the original bytes, when "
        "built and not resized; else the first format built)",
    )
    p.add_argument(
        "--to",
        metavar="DIR",
        default=None,
        help="where to write the report (default OUT/report; needed for a build in an object "
        "store)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help=f"processes reading and decoding (default: cores, {default_workers()})",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=DEFAULT_SEED,
        help=f"seed of --sample and of the contact sheets' draw (default {DEFAULT_SEED})",
    )
    p.add_argument("--quiet", action="store_true", help="print nothing but errors and the path")
    p.set_defaults(func=run)


def add_options(p: argparse.ArgumentParser) -> None:
    """The options ``report`` shares with ``build --report``."""
    p.add_argument(
        "--sample",
        type=int,
        metavar="N",
        default=None,
        help="count the pixels of N images per split drawn with --seed, not of every image "
        "(mean/std; the other statistics read every image's header)",
    )
    p.add_argument(
        "--contact-classes",
        metavar="WNIDS",
        default=None,
        help="comma list of classes for the contact sheets (default: --contact-sheets drawn "
        "with the seed)",
    )
    p.add_argument(
        "--contact-sheets",
        type=int,
        metavar="N",
        default=4,
        help="classes drawn for the contact sheets when --contact-classes is not given (default 4)",
    )
    p.add_argument(
        "--contact-images",
        type=int,
        metavar="N",
        default=24,
        help="images per class and split on a contact sheet (default 24)",
    )


def options_given(args: argparse.Namespace) -> bool:
    """Whether any option of :func:`add_options` differs from its default."""
    return any(
        getattr(args, name) != default
        for name, default in (
            ("sample", None),
            ("contact_classes", None),
            ("contact_sheets", 4),
            ("contact_images", 24),
        )
    )


def options_from(args: argparse.Namespace, output: Any, workers: int, seed: int) -> Any:
    """ReportOptions from parsed arguments (``ValueError`` for bad ones, as a usage error)."""
    from ..errors import UsageError
    from ..report import ReportOptions

    classes = (
        tuple(w.strip() for w in args.contact_classes.split(",") if w.strip())
        if args.contact_classes
        else None
    )
    try:
        return ReportOptions(
            output=output,
            to=getattr(args, "to", None),
            format=getattr(args, "format", None),
            workers=workers,
            sample=args.sample,
            seed=seed,
            contact_classes=classes,
            contact_sheets=args.contact_sheets,
            contact_images=args.contact_images,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def run(args: argparse.Namespace) -> int:
    from ..report import require_matplotlib

    require_matplotlib()  # first: say what to install before anything is read
    options = options_from(
        args,
        args.output,
        args.workers if args.workers is not None else default_workers(),
        args.seed,
    )
    return write_report(options, quiet=args.quiet)


def write_report(options: Any, quiet: bool = False) -> int:
    """Write the report with a progress bar (or lines, off a terminal); print where it is."""
    from ..report import make_report

    progress = None if quiet else (_Bar() if sys.stderr.isatty() else _Lines())
    result = make_report(options, progress=progress)
    if not quiet:
        print(
            f"report of {result.images:,} images (from the {result.format} output) written in "
            f"{result.seconds:.1f} s",
            file=sys.stderr,
        )
        for problem in result.problems[:10]:
            print(f"  problem: {problem}", file=sys.stderr)
        if len(result.problems) > 10:
            print(f"  ... {len(result.problems) - 10} more in stats.json", file=sys.stderr)
    print(result.page)
    return 1 if result.problems else 0


class _Bar:
    """A tqdm bar over the images read."""

    def __init__(self) -> None:
        self._bar: Any = None

    def start(self, total: int) -> None:
        from tqdm import tqdm

        self._bar = tqdm(total=total, unit="img", desc="report", dynamic_ncols=True)

    def update(self, images: int) -> None:
        if self._bar is not None:
            self._bar.update(images)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


class _Lines:
    """A plain line at most every ``interval`` seconds, for logs and CI."""

    def __init__(self, stream: TextIO | None = None, interval: float = 10.0) -> None:
        self._stream = stream if stream is not None else sys.stderr
        self._interval = interval
        self._total = self._done = 0
        self._start = self._last = 0.0

    def start(self, total: int) -> None:
        self._total = total
        self._start = self._last = time.perf_counter()

    def update(self, images: int) -> None:
        self._done += images
        now = time.perf_counter()
        if now - self._last >= self._interval or self._done >= self._total:
            self._last = now
            rate = self._done / max(now - self._start, 1e-9)
            pct = 100.0 * self._done / self._total if self._total else 100.0
            print(
                f"report: {self._done:,}/{self._total:,} images ({pct:.0f}%), {rate:,.0f} images/s",
                file=self._stream,
                flush=True,
            )

    def close(self) -> None:
        pass
