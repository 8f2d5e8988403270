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
        help="generate an ILSVRC2012-shaped download (archives, extracted tree, Kaggle's or "
        "Hugging Face's)",
        description=(
            "Write a download shaped like the real ILSVRC2012 one (real archive names, real "
            "WordNet IDs, validation numbers that fit the real labels, boxes, devkit), with "
            "its known quirks planted, or Kaggle's ImageNet Object Localization Challenge "
            "download of the same images and boxes, or Hugging Face's ILSVRC/imagenet-1k "
            "(tar.gz or Parquet) of the same images. The same options always give the same "
            "bytes."
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
        help="archives: the five archives (and the test tar); extracted: their train/ val/ "
        "test/ bounding_boxes/ tree; kaggle: Kaggle's imagenet-object-localization-"
        "challenge.zip (ILSVRC/Data, ILSVRC/Annotations, LOC_*.csv, no devkit); kaggle-tree: "
        "that zip extracted; hf: Hugging Face's data/train_images_0..4.tar.gz, "
        "val_images.tar.gz (images renamed <stem>_<wnid>.JPEG, no boxes, no devkit); "
        "hf-parquet: its data/{train,validation,test}-*.parquet (image, label)",
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
    p.add_argument(
        "--test-images",
        type=int,
        default=defaults["test_images"],
        metavar="N",
        help="unlabelled test images ILSVRC2012_test_00000001.JPEG to N (at most 100000): "
        "ILSVRC2012_img_test_v10102019.tar, test/, ILSVRC/Data/CLS-LOC/test/, "
        "data/test_images.tar.gz or data/test-*.parquet by layout",
    )
    p.add_argument(
        "--hf-rows-per-file",
        type=int,
        default=defaults["hf_rows_per_file"],
        metavar="N",
        help="hf-parquet: about N rows per Parquet file",
    )
    p.add_argument(
        "--hf-rows-per-group",
        type=int,
        default=defaults["hf_rows_per_group"],
        metavar="N",
        help="hf-parquet: at most N rows per row group",
    )
    p.add_argument(
        "--hf-empty-paths",
        type=int,
        default=defaults["hf_empty_paths"],
        metavar="N",
        help="hf-parquet: N rows (drawn by the seed) with a null or empty image path, for "
        "testing readers' fallback names",
    )
    p.add_argument(
        "--image-size",
        type=_image_size,
        default=None,
        metavar="WxH",
        help="every image WIDTHxHEIGHT pixels (the quirks' sizes scale with it) instead of "
        "ImageNet's mix of sizes around 500x375: e.g. 64x48 for the full image count in a "
        "few GB",
    )
    p.set_defaults(func=run)


def _image_size(text: str) -> tuple[int, int]:
    """``WxH`` as (width, height).

    >>> _image_size("64x48")
    (64, 48)
    """
    width, sep, height = text.lower().partition("x")
    if not sep or not width.isdigit() or not height.isdigit():
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT such as 64x48, not {text!r}")
    return int(width), int(height)


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
        test_images=args.test_images,
        hf_rows_per_file=args.hf_rows_per_file,
        hf_rows_per_group=args.hf_rows_per_group,
        hf_empty_paths=args.hf_empty_paths,
        image_size=args.image_size,
    )
    print(format_report(generate(config)))
    return 0


def format_report(report: FixtureReport) -> str:
    """A few lines for people: what was written, how big, which quirks where."""
    w, h = report.median_jpeg_size
    planted = ", ".join(
        f"{q} {len(names)}"
        for q, names in report.quirks.items()
        if names or report.hf_files is None  # Hugging Face's layouts have no box files
    )
    test = f", {report.test_images} test images" if report.test_images else ""
    boxes = f" ({report.train_boxes} with boxes)" if report.hf_files is None else ""
    lines = [
        f"wrote an ILSVRC2012-shaped download ({report.layout} layout) to {report.out}",
        f"  {len(report.classes)} classes, {report.train_images} training images"
        f"{boxes}, {report.val_images} validation images{test}",
        f"  {report.total_bytes / 1e6:.1f} MB; "
        f"median JPEG {report.median_jpeg_bytes / 1000:.1f} KB ({w}x{h})",
    ]
    if (zm := report.zip_members) is not None:
        lines.append(
            f"  zip members: {zm.directories} directories, {zm.stored} stored "
            f"({zm.stored_images} images), {zm.deflated} deflated ({zm.deflated_images} images)"
        )
    if report.hf_files is not None:
        kind = "tar.gz archives" if report.layout == "hf" else "Parquet files"
        counts = ", ".join(f"{split} {n}" for split, n in report.hf_files.items())
        blank = f"; {len(report.blank_paths)} rows without a path" if report.blank_paths else ""
        lines.append(f"  {kind} in data/: {counts}{blank}")
    lines += [f"  planted quirks: {planted}", f"  {report.seconds:.1f} s"]
    return "\n".join(lines)
