"""``imagenet-prep build``: parse options into a BuildConfig and run the library's build."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from ..config import (
    DEFAULT_SEED,
    EXECUTORS,
    FORMATS,
    ON_ERROR,
    SPLITS,
    BuildConfig,
    default_workers,
)
from ..errors import UsageError
from ..imagefix import MAX_PIXELS
from ..sources.layout import LAYOUTS
from . import report


def register(sub: Any) -> None:
    # Longer than 60 lines on purpose: one add_argument per option, in --help's order, reads
    # best as one list (issue 15 exempts the CLI's argument parsing).
    p: argparse.ArgumentParser = sub.add_parser(
        "build",
        help="convert the download (archives, Kaggle's zip, or a tree) into training data",
        description="Convert ILSVRC2012 as downloaded (image-net.org's archives, Kaggle's zip, "
        "or either extracted) into TFRecords and other layouts, streaming, without extracting "
        "anything to disk. Run the same command again after an interruption to resume.",
    )
    p.add_argument(
        "--source", required=True, help="folder with the download (archives, zip, or a tree)"
    )
    p.add_argument(
        "--layout",
        choices=LAYOUTS,
        default=None,
        help="the layout of SRC (default: found; archives and extracted may be mixed): "
        "image-net.org's archives, their extracted tree, Kaggle's zip, or Kaggle's tree",
    )
    p.add_argument("--output", required=True, help="output folder")
    p.add_argument(
        "--formats",
        default="tfrecord",
        help=f"comma list of output formats: {', '.join(FORMATS)} (default: tfrecord)",
    )
    p.add_argument(
        "--splits",
        default="train,validation",
        help=f"comma list of splits to build: {', '.join(SPLITS)} (default: train,validation; "
        "the test split has no labels)",
    )
    p.add_argument("--train-shards", type=int, default=1024, help="default 1024")
    p.add_argument("--validation-shards", type=int, default=128, help="default 128")
    p.add_argument("--test-shards", type=int, default=256, help="default 256")
    p.add_argument(
        "--validation-boxes",
        action="store_true",
        help="also put the validation boxes (ILSVRC2012_bbox_val_v3.tgz, or Kaggle's) into the "
        "validation records and OUT/imagenet_2012_validation_bounding_boxes.csv (the reference "
        "scripts leave them out)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help=f"processes, or the CPUs of the Ray instance started for the run (default: cores, "
        f"{default_workers()}; a Ray cluster given by address uses all its CPUs)",
    )
    p.add_argument(
        "--executor",
        choices=EXECUTORS,
        default="local",
        help="where the shard tasks run: local processes (default), or Ray tasks (needs "
        "imagenet-prep[ray]) on a local Ray instance started for the run or on the cluster at "
        "--ray-address",
    )
    p.add_argument(
        "--ray-address",
        metavar="ADDR",
        default=None,
        help="with --executor ray: the running Ray cluster to use (host:port of its head, or "
        "auto; default: $RAY_ADDRESS, else a local Ray instance); every node must see SRC and "
        "OUTPUT at the same paths",
    )
    p.add_argument(
        "--label-offset",
        type=int,
        default=1,
        help="added to the 0-based class index in the TFRecords (default 1: 0 is background)",
    )
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"shuffle seed ({DEFAULT_SEED})")
    p.add_argument(
        "--shard-size",
        type=int,
        default=None,
        help="formats that count shards by size (webdataset, mds): images per shard (default: "
        "the format's own size: about 1 GB of input per WebDataset shard, 64 MB per MDS shard)",
    )
    size = p.add_mutually_exclusive_group()
    size.add_argument(
        "--resize-shorter", type=int, metavar="N", help="resize so the short side is N (never up)"
    )
    size.add_argument(
        "--resize-longer", type=int, metavar="N", help="resize so the long side is at most N"
    )
    p.add_argument(
        "--quality", type=int, default=90, help="JPEG quality of resized images (default 90)"
    )
    p.add_argument(
        "--dali-index",
        action="store_true",
        help="write NVIDIA DALI's index of each TFRecord and WebDataset shard to "
        "OUT/dali-index/<format>/<shard>.idx",
    )
    p.add_argument(
        "--on-error",
        choices=ON_ERROR,
        default="raise",
        help="on a damaged image or box file: stop (raise), or leave it out and list it (skip)",
    )
    p.add_argument("--decode-check", action="store_true", help="decode every image fully (slower)")
    p.add_argument(
        "--max-pixels",
        type=int,
        default=MAX_PIXELS,
        metavar="N",
        help="refuse, under --on-error, an image whose header declares more than N pixels, "
        f"before decoding it (default {MAX_PIXELS:,}, Pillow's limit)",
    )
    p.add_argument(
        "--no-md5",
        action="store_true",
        help="do not check the MD5 of the official archives against the published one",
    )
    p.add_argument("--force", action="store_true", help="start even when the disk looks too small")
    p.add_argument(
        "--link",
        action="store_true",
        help="imagefolder from an extracted tree: hard-link the files instead of copying them "
        "(when SRC and OUTPUT share a file system; copies otherwise)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an earlier build in OUTPUT made with different options",
    )
    p.add_argument("--quiet", action="store_true", help="print nothing but errors")
    p.add_argument(
        "--report",
        action="store_true",
        help="then write OUT/report/ as `imagenet-prep report OUT` does (needs "
        "imagenet-prep[report]); its --sample, --contact-* options apply",
    )
    report.add_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    report_options = None
    if not args.report and report.options_given(args):
        raise UsageError("--sample and --contact-* are options of the report: add --report")
    if args.report:  # checked first: a missing extra or a bad option stops nothing under way
        from ..report import require_matplotlib
        from ..storage import is_url

        require_matplotlib()
        if is_url(args.output):
            raise UsageError(
                "--report writes OUT/report/, a local folder: for a build in an object store, "
                "run `imagenet-prep report OUT --to DIR` after it"
            )
        report_options = report.options_from(
            args,
            args.output,
            args.workers if args.workers is not None else default_workers(),
            args.seed,
        )
    config = BuildConfig(
        source=args.source,
        output=args.output,
        formats=args.formats,
        splits=args.splits,
        train_shards=args.train_shards,
        validation_shards=args.validation_shards,
        test_shards=args.test_shards,
        layout=args.layout,
        validation_boxes=args.validation_boxes,
        workers=args.workers if args.workers is not None else default_workers(),
        label_offset=args.label_offset,
        seed=args.seed,
        on_error=args.on_error,
        decode_check=args.decode_check,
        max_pixels=args.max_pixels,
        check_md5=not args.no_md5,
        force=args.force,
        overwrite=args.overwrite,
        link=args.link,
        shard_size=args.shard_size,
        resize_shorter=args.resize_shorter,
        resize_longer=args.resize_longer,
        quality=args.quality,
        dali_index=args.dali_index,
        executor=args.executor,
        ray_address=args.ray_address,
    )
    from ..executors import executor_for

    executor = executor_for(config)  # its workers start booting while the pipeline loads
    from ..pipeline import build
    from .progress import BarReporter, LineReporter

    if args.quiet:
        logging.getLogger("imagenet_prep").setLevel(logging.ERROR)
        reporter = None
    else:
        reporter = BarReporter() if sys.stderr.isatty() else LineReporter()
    result = build(config, executor=executor, reporter=reporter)
    if not args.quiet:
        _summary(result)
    if report_options is not None:
        return report.write_report(report_options, quiet=args.quiet)
    return 0


def _summary(result: Any) -> None:
    out = sys.stderr
    if result.already_complete:
        print(f"{result.output}: the build is already complete; nothing changed", file=out)
        return
    seconds = max(result.seconds, 1e-9)
    counts = ", ".join(f"{split} {n:,}" for split, n in result.images.items())
    print(f"built {result.output}: {counts} images", file=out)
    print(
        f"  {result.images_written:,} images written in {result.seconds:.1f} s "
        f"({result.images_written / seconds:,.0f} images/s, {result.bytes_in / 1e6 / seconds:,.0f}"
        f" MB/s); {result.files_written:,} files written"
        + (f", {result.files_reused:,} kept from the earlier run" if result.files_reused else ""),
        file=out,
    )
    index_requests, index_bytes = result.store_index
    image_requests, image_bytes = result.store_images
    if index_bytes or image_requests:  # what reading a source in a store cost
        per_gb = (
            f", {index_requests / (index_bytes / 1e9):,.0f} per GB" if index_bytes >= 1e9 else ""
        )
        print(
            f"  object store: {index_requests:,} requests read {index_bytes / 1e6:,.0f} MB to "
            f"index the archives{per_gb}; {image_requests:,} requests read "
            f"{image_bytes / 1e6:,.0f} MB of images",
            file=out,
        )
    write_requests, written = result.store_writes
    if write_requests:
        print(
            f"  object store: {write_requests:,} requests wrote {written / 1e6:,.0f} MB of "
            "outputs and bookkeeping",
            file=out,
        )
    print(f"  re-encoded images: {len(result.reencoded)}", file=out)
    for item in result.reencoded[:25]:
        print(f"    {item['reason']}: {item['image']}", file=out)
    if len(result.reencoded) > 25:
        print(f"    ... {len(result.reencoded) - 25} more in manifest.json", file=out)
    print(f"  skipped: {len(result.skipped)}", file=out)
    for item in result.skipped:
        where, reason = item.get("image", item.get("file")), item["reason"]
        # A reason is an error message, which names the file already.
        print(f"    {reason if reason.startswith(f'{where}:') else f'{where}: {reason}'}", file=out)
    for warning in result.warnings:
        print(f"  warning: {warning}", file=out)
