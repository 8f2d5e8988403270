"""``imagenet-prep build``: parse options into a BuildConfig and run the library's build."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..config import DEFAULT_SEED, FORMATS, BuildConfig, default_workers
from ..errors import UsageError


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "build",
        help="convert the download (archives or extracted tree) into training data",
        description="Convert ILSVRC2012 archives (or an extracted tree) into TFRecords and "
        "other layouts, streaming, without extracting anything to disk.",
    )
    p.add_argument("--source", required=True, help="folder with the archives or extracted tree")
    p.add_argument("--output", required=True, help="output folder")
    p.add_argument(
        "--formats",
        default="tfrecord",
        help=f"comma list of output formats: {', '.join(FORMATS)} (default: tfrecord)",
    )
    p.add_argument(
        "--splits", default="train,validation", help="comma list (default: train,validation)"
    )
    p.add_argument("--train-shards", type=int, default=1024, help="default 1024")
    p.add_argument("--validation-shards", type=int, default=128, help="default 128")
    p.add_argument(
        "--workers", type=int, default=None, help=f"processes (default: cores, {default_workers()})"
    )
    p.add_argument(
        "--label-offset",
        type=int,
        default=1,
        help="added to the 0-based class index in the TFRecords (default 1: 0 is background)",
    )
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"shuffle seed ({DEFAULT_SEED})")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an earlier build in OUTPUT made with different options",
    )
    p.add_argument("--quiet", action="store_true", help="print nothing but errors")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..pipeline import build

    try:
        config = BuildConfig(
            source=args.source,
            output=args.output,
            formats=args.formats,
            splits=args.splits,
            train_shards=args.train_shards,
            validation_shards=args.validation_shards,
            workers=args.workers if args.workers is not None else default_workers(),
            label_offset=args.label_offset,
            seed=args.seed,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    result = build(config, overwrite=args.overwrite)
    if not args.quiet:
        mb = result.bytes_in / 1e6
        rate = sum(result.images.values()) / result.seconds if result.seconds else 0.0
        counts = ", ".join(f"{split} {n:,}" for split, n in result.images.items())
        print(
            f"built {counts} images into {result.output} in {result.seconds:.1f} s "
            f"({rate:,.0f} images/s, {mb / max(result.seconds, 1e-9):,.0f} MB/s); "
            f"{result.shards_written} shards written, {result.shards_reused} reused, "
            f"{len(result.reencoded)} images re-encoded",
            file=sys.stderr,
        )
        for item in result.reencoded[:20]:
            print(f"  re-encoded ({item['reason']}): {item['image']}", file=sys.stderr)
    return 0
