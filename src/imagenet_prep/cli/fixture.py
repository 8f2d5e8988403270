"""``imagenet-prep fixture``: generate an ILSVRC2012-shaped download for demos and tests."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

from ..fixture import LAYOUTS, FixtureConfig, FixtureReport


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add the ``fixture`` subcommand."""
    defaults = {f.name: f.default for f in dataclasses.fields(FixtureConfig)}
    p = subparsers.add_parser(
        "fixture",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        help="generate an ILSVRC2012-shaped download (archives or extracted tree)",
        description=(
            "Write a download shaped like the real ILSVRC2012 one (real archive names, real "
            "WordNet IDs, validation numbers that fit the real labels, boxes, devkit), with "
            "its known quirks planted. The same options always give the same bytes."
        ),
    )
    p.add_argument("out", type=Path, metavar="OUT", help="output directory (new or empty)")
    p.add_argument("--classes", type=int, default=defaults["classes"], help="number of classes")
    p.add_argument(
        "--per-class", type=int, default=defaults["per_class"], help="training images per class"
    )
    p.add_argument(
        "--val-per-class",
        type=int,
        default=defaults["val_per_class"],
        help="validation images per class (at most 50)",
    )
    p.add_argument("--seed", type=int, default=defaults["seed"], help="random seed")
    p.add_argument(
        "--layout",
        choices=LAYOUTS,
        default=defaults["layout"],
        help="the five archives, or the extracted train/ val/ bounding_boxes/ tree",
    )
    p.add_argument(
        "--extension",
        default=defaults["extension"],
        help="extension of the training images in the extracted layout",
    )
    p.add_argument(
        "--pool-size",
        type=int,
        default=defaults["pool_size"],
        help="distinct images encoded and reused under the generated names",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..fixture import generate  # numpy and PIL: imported only when the command runs

    config = FixtureConfig(
        out=args.out,
        classes=args.classes,
        per_class=args.per_class,
        val_per_class=args.val_per_class,
        seed=args.seed,
        layout=args.layout,
        extension=args.extension,
        pool_size=args.pool_size,
    )
    print(format_report(generate(config)))
    return 0


def format_report(report: FixtureReport) -> str:
    """A few lines for people: what was written, how big, which quirks where."""
    w, h = report.median_jpeg_size
    planted = ", ".join(f"{q} {len(names)}" for q, names in report.quirks.items())
    return "\n".join(
        [
            f"wrote an ILSVRC2012-shaped download ({report.layout} layout) to {report.out}",
            f"  {len(report.classes)} classes, {report.train_images} training images "
            f"({report.train_boxes} with boxes), {report.val_images} validation images",
            f"  {report.total_bytes / 1e6:.1f} MB; "
            f"median JPEG {report.median_jpeg_bytes / 1000:.1f} KB ({w}x{h})",
            f"  planted quirks: {planted}",
            f"  {report.seconds:.1f} s",
        ]
    )
