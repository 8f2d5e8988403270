"""``imagenet-prep verify``: check a build output against its manifest."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "verify",
        help="re-read a build output and check it against its manifest",
        description="Re-read every shard (record CRCs, every Example), the class folders, the "
        "box CSV and labels, and compare counts and checksums with manifest.json.",
    )
    p.add_argument("output", help="a build output folder, or its s3:// (any fsspec) URL")
    p.add_argument("--decode", action="store_true", help="also decode every image fully")
    p.add_argument("--quiet", action="store_true", help="print nothing but problems")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..verification import verify

    result = verify(args.output, decode=args.decode)
    for problem in result.problems:
        print(f"imagenet-prep verify: {problem}", file=sys.stderr)
    if not result.ok:
        print(
            f"imagenet-prep verify: {len(result.problems)} problems in {result.output}",
            file=sys.stderr,
        )
        return 1
    if not args.quiet:
        print(
            f"verified {result.output}: {result.files_checked} files/folders, "
            f"{result.records:,} records/images, all match the manifest",
            file=sys.stderr,
        )
    return 0
