#!/usr/bin/env python3
"""`build` of a download whose archives count as official, so that their MD5 is checked.

    python bench/md5_build.py DOWNLOAD OUT ARCHIVES.json [--workers 2] [--hash-first]

The generated archives are not the published ones: ARCHIVES.json (written by bench/run.py,
untimed) gives their true MD5s and counts (images, classes), and the build is told that
archives of these names and sizes are official with those facts, as it is told of the real
download. The build hashes
them beside its shard work; with --hash-first the script hashes both first and then builds
without the check, the order a build had when the MD5 was taken in the indexing pass.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from imagenet_prep import BuildConfig, build
from imagenet_prep.archive import file_md5
from imagenet_prep.config import KnownArchive


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("download", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("md5s", type=Path)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--hash-first", action="store_true")
    args = parser.parse_args()
    download, md5s, hash_first = args.download, json.loads(args.md5s.read_text()), args.hash_first
    known = tuple(
        KnownArchive(
            name=name,
            size=(download / name).stat().st_size,
            md5=facts["md5"],
            images=facts["images"],
            classes=facts["classes"],
        )
        for name, facts in md5s.items()
    )
    if hash_first:
        for name, facts in md5s.items():
            if file_md5(download / name) != facts["md5"]:
                raise SystemExit(f"{download / name}: MD5 differs")
    result = build(
        BuildConfig(
            source=download,
            output=args.out,
            workers=args.workers,
            known_archives=known,
            check_md5=not hash_first,
        )
    )
    verified = [d.get("md5_verified", False) for d in result.manifest.downloads]
    if not hash_first and not all(verified):
        raise SystemExit("the build did not check the MD5s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
