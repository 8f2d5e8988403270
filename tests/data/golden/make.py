"""Golden outputs: what the code made of the committed download, checked by test_golden.py.

``download/`` is a small ILSVRC2012-shaped download made once by ``imagenet-prep fixture``
(options in ``FIXTURE``) and committed, so that another Pillow or numpy cannot change the
inputs. ``outputs.json`` holds, for each build in ``BUILDS``: the options, ``[size, xxh3_128]``
of every output file (all but ``manifest.json`` and ``.imagenet-prep/``), the manifest less
its time, path and version, the build's counts, ``verify(decode=True)``'s counts, and the
counts of a rerun after some outputs were deleted (resume). ``tests/e2e/test_golden.py``
builds ``download/`` fresh and compares.

When to regenerate: only when a change of output bytes (or of the manifest, of resume or of
``verify``) is intended, and say so in the commit. Never to make a refactor's failing golden
test pass: a refactor must leave these outputs unchanged; find what changed instead.

How (from the repository root)::

    .venv/bin/python tests/data/golden/make.py             # outputs.json, from download/
    .venv/bin/python tests/data/golden/make.py --download  # also download/ anew (new inputs)
    git diff --stat tests/data/golden/

It records what the importable ``imagenet_prep`` makes. To record another commit's code
without checking it out::

    git archive COMMIT src | tar -x -C /tmp/ref
    PYTHONPATH=/tmp/ref/src .venv/bin/python tests/data/golden/make.py

``--download`` regenerates the archives with ``FIXTURE``; their bytes depend on the Pillow
and numpy versions, so use it only when the download itself has to change.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DOWNLOAD = HERE / "download"
OUTPUTS = HERE / "outputs.json"

# imagenet-prep fixture download/ --classes 3 --per-class 4 --val-per-class 2 --pool-size 2
# (3 classes are the fewest that plant every quirk; a pool of 2 gave the smallest archives).
FIXTURE = {"classes": 3, "per_class": 4, "val_per_class": 2, "seed": 0, "pool_size": 2}

# BuildConfig options other than source and output. "resume" names the outputs deleted,
# with manifest.json, before the same build is run again.
BUILDS: list[dict[str, Any]] = [
    {
        # Every format with DALI indexes; default seed and label offset. WebDataset's shard
        # counts (2, 1) differ from the TFRecords' (3, 2), so each has its own shard jobs.
        "name": "all-formats",
        "options": {
            "formats": ["tfrecord", "imagefolder", "webdataset"],
            "train_shards": 3,
            "validation_shards": 2,
            "shard_size": 7,
            "dali_index": True,
            "workers": 2,
        },
        "resume": ["tfrecord/train-00001-of-00003", "webdataset/train-000001.tar"],
    },
    {
        # 0-based labels, another seed, empty TFRecord shards (8 for 6 images), training shard
        # jobs shared by both formats (3 each), no DALI indexes, the inline executor.
        "name": "offset0-seed1",
        "options": {
            "formats": ["tfrecord", "webdataset"],
            "train_shards": 3,
            "validation_shards": 8,
            "shard_size": 4,
            "label_offset": 0,
            "seed": 1,
            "workers": 1,
        },
        "resume": [],
    },
]

# Output files and folders that are not compared: written last / bookkeeping.
SKIP_FILES = ("manifest.json",)
SKIP_DIRS = (".imagenet-prep",)
RESULT_KEYS = (
    "images",
    "images_written",
    "shards_written",
    "shards_reused",
    "files_written",
    "files_reused",
    "already_complete",
)


def hashes(root: Path) -> dict[str, list[Any]]:
    """Relative path -> [size, xxh3_128 hex] of every file under ``root`` that is compared."""
    from imagenet_prep.fsutil import hash_file

    out: dict[str, list[Any]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        if here == root:
            dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS]
        for name in filenames:
            rel = (here / name).relative_to(root).as_posix()
            if rel in SKIP_FILES:
                continue
            size, digest = hash_file(here / name)
            out[rel] = [size, digest]
    return dict(sorted(out.items()))


def manifest_parts(manifest: dict[str, Any], source: Path) -> dict[str, Any]:
    """The manifest less what depends on time, paths or the tool's version; image paths
    (re-encoded, skipped) relative to ``source``."""
    parts = json.loads(json.dumps(manifest))
    parts.pop("created", None)
    parts.pop("timings", None)
    parts.get("tool", {}).pop("version", None)
    parts.get("source", {}).pop("root", None)
    prefixes = [f"{p}{os.sep}" for p in (source, source.resolve())]
    for key in ("reencoded", "skipped"):
        for entry in parts.get(key, []):
            for field in ("image", "file"):
                value = entry.get(field)
                if isinstance(value, str):
                    for prefix in prefixes:
                        if value.startswith(prefix):
                            entry[field] = value[len(prefix) :]
                            break
    return parts


def result_parts(result: Any) -> dict[str, Any]:
    """The counts of a BuildResult that say what a run did."""
    return {key: getattr(result, key) for key in RESULT_KEYS}


def environment() -> dict[str, str]:
    """Versions that output bytes may depend on besides this code: Pillow's libjpeg encodes
    the re-encoded (CMYK, PNG) images, pyarrow writes metadata.parquet."""
    import platform

    import PIL
    import pyarrow
    from PIL import features

    return {
        "python": platform.python_version(),
        "Pillow": PIL.__version__,
        "libjpeg": str(features.version("jpg")),
        "pyarrow": pyarrow.__version__,
    }


def config(options: dict[str, Any], out: Path, source: Path = DOWNLOAD) -> Any:
    from imagenet_prep import BuildConfig

    return BuildConfig(source=source, output=out, **options)


def record(spec: dict[str, Any], work: Path) -> dict[str, Any]:
    """Build ``spec`` into ``work``, verify, resume; what outputs.json keeps of it."""
    from imagenet_prep import build, verify

    out = work / spec["name"]
    result = build(config(spec["options"], out))
    entry: dict[str, Any] = {
        "name": spec["name"],
        "options": spec["options"],
        "files": hashes(out),
        "manifest": manifest_parts(json.loads((out / "manifest.json").read_text()), DOWNLOAD),
        "result": result_parts(result),
    }
    checked = verify(out, decode=True)
    if not checked.ok:
        sys.exit(f"{spec['name']}: verify failed: {checked.problems}")
    entry["verify"] = {"files_checked": checked.files_checked, "records": checked.records}
    entry["resume"] = {"delete": spec["resume"]}
    if spec["resume"]:
        for rel in [*spec["resume"], "manifest.json"]:
            (out / rel).unlink()
        rerun = build(config(spec["options"], out))
        if hashes(out) != entry["files"]:
            sys.exit(f"{spec['name']}: the resumed build differs from the first")
        entry["resume"]["result"] = result_parts(rerun)
    return entry


def make_download() -> None:
    from imagenet_prep.fixture import FixtureConfig, generate

    if DOWNLOAD.exists():
        shutil.rmtree(DOWNLOAD)
    generate(FixtureConfig(out=DOWNLOAD, **FIXTURE))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--download", action="store_true", help="regenerate download/ first")
    args = parser.parse_args()
    if args.download:
        make_download()
    with tempfile.TemporaryDirectory() as tmp:
        builds = [record(spec, Path(tmp)) for spec in BUILDS]
    golden = {
        "about": "made by make.py beside this file (see its docstring); do not edit by hand",
        "environment": environment(),
        "fixture": FIXTURE,
        "download": hashes(DOWNLOAD),
        "builds": builds,
    }
    text = json.dumps(golden, indent=1, sort_keys=True)
    # One line per file: [size, "xxh3"].
    text = re.sub(r'\[\s+(\d+),\s+("[0-9a-f]{32}")\s+\]', r"[\1, \2]", text)
    OUTPUTS.write_text(text + "\n")
    print(f"wrote {OUTPUTS}: {sum(len(b['files']) for b in builds)} files in {len(builds)} builds")


if __name__ == "__main__":
    main()
