#!/usr/bin/env python3
"""The benchmark suite: `imagenet-prep build` against the I/O floor, the reference scripts'
work and real peers.

    python bench/run.py [--classes 100 --per-class 200 --val-per-class 10] [--runs 3]
                        [--memory full|free] [--skip-baseline] [--skip-peers] [--reads 2000]
                        [--write-docs]

Generates its download with `imagenet-prep fixture` (kept in bench/out/ between runs), and
Kaggle's one-zip download and Hugging Face's two forms (tar.gz, Parquet) of the same images
(`--layout kaggle`, `hf`, `hf-parquet`, kept beside it), warms the page cache, then measures
each command (median of --runs runs: wall time, images/s, MB/s of image input, peak memory
summed over all its processes) and prints ratios measured in the same run, a projection to
the full 1,331,167 images, and PASS/FAIL for issue 4's targets.
The build from the Kaggle zip takes turns with the build from the official tars (and the
floors), and is given as its ratio to it; the two builds' outputs are compared once. The
builds from Hugging Face's forms take turns, in a group of their own, with the build from
the official tars and with the build from the same tars without the box archives (the Hub
has none), which their outputs must equal; the tar.gz form twice, unpacked into OUT (a
build with disk room) and through its seek points (without); then the tar.gz form's parts
are measured (bench/gzreads.py): the index pass against `gzip -dc`, one image's read through
the seek points against a plain tar's, and the seek points' figures.
Every run starts in the memory state that --memory names (bench/memstate.py): by default
free memory is full of clean page cache, as on a machine that has been up a while; the
build and the floors take turns.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gzreads
from docsection import DOCS, machine, write_section
from memstate import MODES, MemoryState, release
from peak_memory import measure

from imagenet_prep.archive import file_md5
from imagenet_prep.formats import NAMES
from imagenet_prep.fsutil import hash_file
from imagenet_prep.labels import (
    load_synsets,
    shipped_validation_labels,
    validation_labels,
    validation_number,
)
from imagenet_prep.sources import (
    BOX_TRAIN_ARCHIVE,
    BOX_VAL_ARCHIVE,
    DEVKIT_ARCHIVE,
    KAGGLE_ZIP,
    TRAIN_ARCHIVE,
    VAL_ARCHIVE,
    discover,
    index_train,
    index_validation,
)

ROOT = Path(__file__).resolve().parents[1]
FULL_IMAGES = 1_331_167
OFFICIAL_BYTES = 147_897_477_120 + 6_744_924_160
MD5_GBPS = 0.6
# The reference scripts' own pipeline here: 21,000 generated images, 2 threads.
REFERENCE_SECONDS_21K = 31.0
PY = sys.executable
IMAGE_ARCHIVES = (TRAIN_ARCHIVE, VAL_ARCHIVE)
# What the floors copy: the archives a build reads in full.
COPIED_ARCHIVES = (*IMAGE_ARCHIVES, BOX_TRAIN_ARCHIVE)
ARCHIVE_NAMES = (*COPIED_ARCHIVES, BOX_VAL_ARCHIVE, DEVKIT_ARCHIVE)
# Where Kaggle's zip keeps the images (train/<wnid>/, val/, test/).
KAGGLE_IMAGES = "ILSVRC/Data/CLS-LOC/"
# Not compared between two builds' outputs: dates, paths, timings; bookkeeping.
NOT_COMPARED = ("manifest.json", ".imagenet-prep")
# ``imagenet-prep`` as a user without disk room to unpack the tar.gz archives (2.2x them free)
# runs it: every image inflated from its seek point. The build's main process decides.
SEEK_POINTS_BUILD = (
    "import sys; import imagenet_prep.sources.hf as hf; hf.UNPACK_FACTOR = float('inf'); "
    "from imagenet_prep.cli import main; sys.exit(main(sys.argv[1:]))"
)


@dataclass
class Row:
    name: str
    note: str
    # "ours", "floor" (a ratio against it), "source" (ours from another download: its time
    # over ``against``'s), "again" (ours again, in another group: no ratio, not projected),
    # "md5" and "format" (no ratio) or "peer"
    role: str = "peer"
    # a "source" row: the build its time is given against, how the ratio is named ("zip /
    # tars"), and the build whose output it must equal (None: not compared) and what that is
    against: Row | None = None
    ratio: str = ""
    equals: Row | None = None
    equals_what: str = "the tars' build"
    seconds: list[float] = field(default_factory=list)
    peak_mb: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    # MB read from disk during each run (/proc/vmstat pgpgin, the whole machine): 0 when the
    # page cache held every input
    disk_mb: list[float] = field(default_factory=list)
    error: str | None = None
    # size and XXH3-128 of each file of one run's output (see ``digest``), when asked for
    digests: dict[str, tuple[int, str]] | None = None

    @property
    def median(self) -> float:
        return statistics.median(self.seconds) if self.seconds else float("nan")

    @property
    def spread(self) -> str:
        """The fastest and slowest run, and how many there were."""
        if len(self.seconds) < 2:
            return f"{len(self.seconds)} run"
        return f"{min(self.seconds):.2f}-{max(self.seconds):.2f} ({len(self.seconds)} runs)"

    @property
    def cpu_median(self) -> float:
        return statistics.median(self.cpu) if self.cpu else float("nan")

    @property
    def peak(self) -> float:
        return max(self.peak_mb) if self.peak_mb else float("nan")


def run(command: list[str], *, env: dict[str, str] | None = None) -> None:
    proc = subprocess.run(command, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:4])} ... failed: {proc.stderr[-2000:]}")


def fixture_command(args: argparse.Namespace, out: Path, *more: str) -> list[str]:
    """``imagenet-prep fixture`` with the suite's download options."""
    sizes = ("--classes", args.classes, "--per-class", args.per_class)
    sizes += ("--val-per-class", args.val_per_class)
    return [PY, "-m", "imagenet_prep", "fixture", str(out), *map(str, sizes), *more]


def ensure_download(download: Path, sizes: argparse.Namespace) -> Path:
    """``download`` with its archives, generated with ``sizes`` (classes, per_class,
    val_per_class) when one is missing or empty."""
    if not whole_download(download):
        shutil.rmtree(download, ignore_errors=True)
        print(f"generating the download in {download}", flush=True)
        subprocess.run(fixture_command(sizes, download), check=True)
    return download


def fixture(args: argparse.Namespace, out: Path) -> Path:
    key = f"{args.classes}x{args.per_class}x{args.val_per_class}"
    download = out / f"download-{key}"
    if not whole_download(download):
        (out / f"{download.name}.md5.json").unlink(missing_ok=True)  # of the one replaced
    return ensure_download(download, args)


def whole_download(download: Path) -> bool:
    """Whether every archive of a generated download is there, and not empty."""
    return all((download / n).is_file() and (download / n).stat().st_size for n in ARCHIVE_NAMES)


def layout_fixture(args: argparse.Namespace, out: Path, layout: str, what: str) -> Path:
    """Another layout of the same images as ``fixture``'s (``--layout <layout>``, the same
    options: Kaggle's zip, Hugging Face's tar.gz or Parquet form), kept beside it; written
    into a scratch folder and renamed when whole."""
    key = f"{args.classes}x{args.per_class}x{args.val_per_class}"
    download = out / f"download-{key}-{layout}"
    if not download.is_dir():
        partial = out / f"{download.name}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        print(f"generating {what} ({key}) in {download}", flush=True)
        run(fixture_command(args, partial, "--layout", layout))
        partial.rename(download)
    return download


def no_boxes(download: Path) -> Path:
    """The official download without its box archives: a folder of symbolic links to the
    image archives and the devkit, beside it (what Hugging Face's forms build the same as)."""
    folder = download.with_name(f"{download.name}-noboxes")
    folder.mkdir(exist_ok=True)
    for name in (*IMAGE_ARCHIVES, DEVKIT_ARCHIVE):
        link = folder / name
        if not link.is_symlink():
            link.symlink_to(download.resolve() / name)
    return folder


def zip_image_stats(path: Path) -> tuple[int, int]:
    """(images, bytes of image data) under the Kaggle zip's image folders (Python's zipfile:
    not the code measured)."""
    images = nbytes = 0
    with zipfile.ZipFile(path) as z:
        for info in z.infolist():
            if info.filename.startswith(KAGGLE_IMAGES) and not info.is_dir():
                images += 1
                nbytes += info.file_size
    return images, nbytes


def image_stats(download: Path) -> tuple[int, int]:
    """(images, bytes of image data) in the download's two image archives."""
    images = nbytes = 0
    with tarfile.open(download / TRAIN_ARCHIVE) as outer:
        for member in outer:
            f = outer.extractfile(member)
            if f is None:
                continue
            with tarfile.open(fileobj=f) as inner:
                for m in inner:
                    images += 1
                    nbytes += m.size
    with tarfile.open(download / VAL_ARCHIVE) as val:
        for m in val:
            images += 1
            nbytes += m.size
    return images, nbytes


def archives(download: Path) -> list[Path]:
    return [download / n for n in COPIED_ARCHIVES]


def warm(download: Path, *more: Path) -> None:
    """Read the archives a build reads in full, and the files ``more``, into the page cache,
    twice: a page read once is on the inactive list, the first that reclaim takes, and the
    memory state's fill (bench/memstate.py) and the runs' output would push it out before a
    run reads it (a first run of the Kaggle zip's build read 1.8 GB of its 1.95 GB zip from
    disk so); read again, it is on the active list, which reclaim leaves alone while the
    inactive one holds the fill and the output."""
    for _ in range(2):
        for path in [*archives(download), *more]:
            with open(path, "rb") as f:
                while f.read(16 << 20):
                    pass


def extract_tree(download: Path, out: Path) -> Path:
    """The seed recipe's extraction step (untimed): the raw-data layout its builder reads."""
    tree = out / (download.name.replace("download", "extracted"))
    if (tree / ".done").exists():
        return tree
    shutil.rmtree(tree, ignore_errors=True)
    with tarfile.open(download / TRAIN_ARCHIVE) as outer:
        for member in outer:
            f = outer.extractfile(member)
            if f is None:
                continue
            wnid = member.name.split(".")[0]
            with tarfile.open(fileobj=f) as inner:
                inner.extractall(tree / "train" / wnid, filter="data")
    labels = shipped_validation_labels()
    with tarfile.open(download / VAL_ARCHIVE) as val:
        for m in val:
            number = validation_number(m.name.rsplit(".", 1)[0])
            assert number is not None
            target = tree / "validation" / labels[number - 1] / m.name
            target.parent.mkdir(parents=True, exist_ok=True)
            g = val.extractfile(m)
            assert g is not None
            target.write_bytes(g.read())
    with tarfile.open(download / BOX_TRAIN_ARCHIVE) as boxes:
        boxes.extractall(tree / "bounding_boxes", filter="data")
    (tree / ".done").touch()
    return tree


def busy_seconds() -> float:
    """CPU time the whole machine has spent busy (user, system, interrupts), from /proc/stat.

    On a quiet machine the difference over a run is the command's CPU time in all its
    processes and in the kernel, including work no per-process counter sees (page cache
    writeback, the copy done by copy_file_range).
    """
    with open("/proc/stat") as f:
        fields = f.readline().split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq = (int(v) for v in fields[:7])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def disk_read_mb() -> float:
    """MB the machine has read from block devices so far (``pgpgin`` in /proc/vmstat, KiB)."""
    with open("/proc/vmstat") as f:
        for line in f:
            if line.startswith("pgpgin "):
                return int(line.split()[1]) * 1024 / 1e6
    return float("nan")


def digest(out: Path) -> dict[str, tuple[int, str]]:
    """Size and XXH3-128 of every file a build wrote, but for manifest.json and .imagenet-prep/."""
    files: dict[str, tuple[int, str]] = {}
    for folder, dirs, names in os.walk(out):
        here = Path(folder)
        if here == out:
            dirs[:] = [d for d in dirs if d not in NOT_COMPARED]
            names = [n for n in names if n not in NOT_COMPARED]
        for name in names:
            path = here / name
            files[path.relative_to(out).as_posix()] = hash_file(path)
    return files


Command = Callable[[Path], list[str]]


def timed(
    group: list[tuple[Row, Command]],
    runs: int,
    scratch: Path,
    memory: MemoryState,
    digests: tuple[Row, ...] = (),
    truncate: bool = False,
) -> None:
    """Run each ``command(out)`` ``runs`` times, each run into a folder of its own under
    ``scratch``, the machine's memory held in ``memory``'s state (bench/memstate.py).

    ``truncate``: each run's files are truncated to 0 right after it (after its digest), not
    kept whole until the group ends, for a group whose runs' output would not fit on the disk
    (the Hugging Face group: 15 runs of about 2 GB and the spills, against about 30 GB
    free). The files stay, so no inode is freed before the group ends (see below); the
    memory their pages held is filled with page cache again (``memory.top_up``).

    The rows in ``digests`` keep ``digest(out / "out")`` of their last run (untimed, right
    after it: ``--memory free`` truncates the output then; the last, so that the pages it
    reads again, which the page cache then keeps longer, are there for as few runs as can be).

    With memory full the rows of a group take turns (a run of each, then the next round), so
    that a slow or quick spell of this shared machine falls on all of them; with memory free
    each row runs all its runs in a row (taking turns there would have each command write
    into memory another one freed).

    The files are deleted after the group's last run, not before each run: on a file system
    without a journal (as here) ext4 skips every inode freed in the last minute or more when
    it allocates one, a scan that grows with each file deleted and cost a 1,158-file build
    about 0.3 CPU s (``recently_deleted`` in ``perf``), which a first build never pays.
    """
    shutil.rmtree(scratch, ignore_errors=True)
    # With ``truncate`` one run's output is on disk at a time, with a spill beside it.
    memory.before_group(2 if truncate else runs * len(group))
    if memory.mode == "full":
        order = [(i, n) for n in range(runs) for i in range(len(group))]
    else:
        order = [(i, n) for i in range(len(group)) for n in range(runs)]
    for i, run_no in order:
        row, command = group[i]
        if row.error:
            continue
        out = scratch / f"{i}-run-{run_no}"
        out.mkdir(parents=True)
        busy, read = busy_seconds(), disk_read_mb()
        result = measure(command(out), 0.01)
        busy, read = busy_seconds() - busy, disk_read_mb() - read
        if result["returncode"] != 0:
            row.error = f"exit {result['returncode']}"
            continue
        row.seconds.append(float(result["seconds"]))
        row.cpu.append(busy)
        row.peak_mb.append(float(result["peak_rss_mb"]))
        row.disk_mb.append(read)
        if run_no == runs - 1 and any(row is d for d in digests):
            row.digests = digest(out / "out")
        if truncate:
            release(out)
        memory.after_run(out)
        # What a run freed (its processes' memory; the Parquet build's 1.9 GB spill, deleted
        # as it finishes) would be free memory for the next one: fill it again.
        memory.top_up()
    shutil.rmtree(scratch, ignore_errors=True)


def archive_facts(download: Path) -> dict[str, dict[str, object]]:
    """Per image archive: its MD5 and what it holds (images, classes), as a build is told of
    the published archives, so that the generated ones can pass for official."""
    synsets = load_synsets()
    layout = discover(download)
    indexes = {
        TRAIN_ARCHIVE: index_train(layout, synsets, None),
        VAL_ARCHIVE: index_validation(layout, synsets, validation_labels(None), None),
    }
    return {
        name: {
            "md5": file_md5(download / name),
            "images": len(index),
            "classes": len(set(index.labels)),
        }
        for name, index in indexes.items()
    }


@dataclass
class Downloads:
    """The same images in each layout the suite builds from."""

    official: Path
    kaggle: Path
    hf: Path  # Hugging Face's tar.gz form
    parquet: Path  # and its Parquet form
    noboxes: Path  # the official one without the box archives (symbolic links)


def suite(
    args: argparse.Namespace, downloads: Downloads, scratch: Path, memory: MemoryState
) -> tuple[list[Row], Row, Row, Row | None, list[str]]:
    """Time every command: the rows, and among them ours, the floor and the baseline, and
    the lines on the tar.gz form's parts."""
    download, kaggle = downloads.official, downloads.kaggle
    ours = Row("imagenet-prep build", f"tfrecord + box CSV, {args.workers} workers", "ours")
    build = [PY, "-m", "imagenet_prep", "build", "--source", str(download), "--quiet"]
    # The same build from Kaggle's zip of the same images (read in place): its own row, in
    # the build's group (taking turns with it), given as its time over the official build's.
    zipped = Row(
        "imagenet-prep build, Kaggle zip",
        f"the same from Kaggle's zip of the same images, read in place, {args.workers} workers",
        "source",
        against=ours,
        ratio="zip / tars",
        equals=ours,
    )
    from_zip = [PY, "-m", "imagenet_prep", "build", "--source", str(kaggle), "--quiet"]
    floor = Row("I/O floor: cat", "cat of the three archives into one file", "floor")
    cat = " ".join(f"'{p}'" for p in archives(download))
    # GNU cat copies with copy_file_range (in the kernel, nothing read into user space);
    # dd reads each block into a buffer and writes it back: the floor for a program that
    # must look at every byte, shown beside the (cat) for context.
    copy = Row("I/O floor: dd", "dd bs=1M of the same archives (read into memory, write)", "floor")
    dd = "; ".join(f"dd if='{p}' bs=1M status=none" for p in archives(download))
    group: list[tuple[Row, Command]] = [
        (
            ours,
            lambda out: ([*build, "--output", str(out / "out"), "--workers", str(args.workers)]),
        ),
        (floor, lambda out: ["sh", "-c", f"cat {cat} > '{out}/cat.bin'"]),
        (copy, lambda out: ["sh", "-c", f"{{ {dd}; }} > '{out}/dd.bin'"]),
        (
            zipped,
            lambda out: [*from_zip, "--output", str(out / "out"), "--workers", str(args.workers)],
        ),
    ]
    timed(group, args.runs, scratch, memory, digests=(ours, zipped))
    rows = [ours, zipped, floor, copy]
    rows += hugging_face(args, downloads, scratch, memory)
    parts = gz_parts(args, downloads, scratch, memory)
    # The same build writing each other format (every format in the registry), for its cost.
    formats: list[tuple[Row, Command]] = []
    for name in NAMES:
        if name == "tfrecord":
            continue
        row = Row(
            f"imagenet-prep build --formats {name}", f"{name}, {args.workers} workers", "format"
        )
        command = [*build, "--workers", str(args.workers), "--formats", name]
        formats.append((row, lambda out, command=command: [*command, "--output", str(out / "out")]))
        rows.append(row)
    timed(formats, args.runs, scratch, memory)
    # The MD5 check of official archives, on the generated ones (told their own MD5s):
    # beside the shard work, as the build does it, and first, as it did in the index pass.
    md5s = args.out / f"{download.name}.archives.json"
    if not md5s.exists():
        md5s.write_text(json.dumps(archive_facts(download)))
    md5_build = [PY, str(ROOT / "bench" / "md5_build.py"), str(download)]
    md5_group: list[tuple[Row, Command]] = []
    for name, note, extra in (
        ("imagenet-prep build, MD5 checked", "the MD5 beside the shard work", []),
        ("MD5 first, then build", "the MD5 of both archives, then the build", ["--hash-first"]),
    ):
        row = Row(name, note, "md5")
        md5_group.append(
            (
                row,
                lambda out, extra=extra: [
                    *md5_build,
                    str(out / "out"),
                    str(md5s),
                    "--workers",
                    str(args.workers),
                    *extra,
                ],
            )
        )
        rows.append(row)
    timed(md5_group, args.runs, scratch, memory)
    baseline = None
    if not args.skip_baseline:
        tree = extract_tree(download, args.out)
        baseline = Row(
            "reference scripts' per-image work", "TF decode + Example objects, 2 threads"
        )
        seed = [PY, str(ROOT / "bench" / "baseline_reference.py"), str(tree)]
        timed(
            [(baseline, lambda out: [*seed, str(out / "out")])],
            1 if args.runs < 3 else 2,
            scratch,
            memory,
        )
        rows.append(baseline)
    if not args.skip_peers:
        for peer, note in (
            ("tfds", "tensorflow-datasets imagenet2012 builder, manual_dir"),
            ("torchvision", "torchvision ImageNet archive parsing into folders"),
        ):
            row = Row(peer, note)
            peers = [PY, str(ROOT / "bench" / "peers.py"), peer, str(download)]
            timed([(row, lambda out, peers=peers: [*peers, str(out)])], 1, scratch, memory)
            rows.append(row)

    return rows, ours, floor, baseline, parts


def hugging_face(
    args: argparse.Namespace,
    downloads: Downloads,
    scratch: Path,
    memory: MemoryState,
) -> list[Row]:
    """The builds from Hugging Face's two forms, in a group of their own (the build group
    with them would keep more output than this disk holds), taking turns with the build from
    the official tars (their ratio is to it) and from the same tars without the box archives
    (their output must equal that one's: the Hub has no boxes). Each run starts from an empty
    output: the tar.gz form's index pass and the Parquet form's spill are in every run. The
    tar.gz form is built twice: as a user with disk room gets it (OUT has 2.2x the archives
    free, ``imagenet_prep.sources.hf.UNPACK_FACTOR``: the index pass unpacks each archive
    into OUT/.imagenet-prep/spill/ and images are read from those plain tars by offset), and
    without that room, each image inflated from its seek point: the same build with
    ``UNPACK_FACTOR`` set to infinity (``SEEK_POINTS_BUILD``; the build's main process decides,
    so with any --workers). Each run's output is truncated after it (``timed``'s
    ``truncate``): 15 runs' output would not fit on this disk."""
    workers = ["--workers", str(args.workers)]
    tars = Row(
        "imagenet-prep build, beside the Hugging Face rows",
        f"the first row's command, taking turns with the next four, {args.workers} workers",
        "again",
    )
    bare = Row(
        "imagenet-prep build, no box archives",
        "the same tars and devkit without ILSVRC2012_bbox_* (what the Hub's forms must equal)",
        "source",
        against=tars,
        ratio="no boxes / tars",
    )
    gz = Row(
        "imagenet-prep build, Hugging Face tar.gz",
        "train_images_*.tar.gz, val_images.tar.gz: the index pass unpacks each archive into "
        f"OUT (room for 2.2x the archives), images read by offset, {args.workers} workers",
        "source",
        against=tars,
        ratio="tar.gz / tars",
        equals=bare,
        equals_what="the no-boxes build",
    )
    seek = Row(
        "imagenet-prep build, Hugging Face tar.gz, seek points",
        "the same without room to unpack (UNPACK_FACTOR = inf): the index pass, then each "
        f"image inflated from its seek point, {args.workers} workers",
        "source",
        against=tars,
        ratio="seek points / tars",
        equals=bare,
        equals_what="the no-boxes build",
    )
    parquet = Row(
        "imagenet-prep build, Hugging Face Parquet",
        "{train,validation}-*.parquet: each row group read once into a spill, read by offset, "
        f"{args.workers} workers",
        "source",
        against=tars,
        ratio="Parquet / tars",
        equals=bare,
        equals_what="the no-boxes build",
    )

    def of(source: Path, program: tuple[str, ...] = ("-m", "imagenet_prep")) -> Command:
        build = [PY, *program, "build", "--source", str(source), "--quiet"]
        return lambda out: [*build, "--output", str(out / "out"), *workers]

    warm(downloads.official, *gzreads.gz_archives(downloads.hf))
    warm(downloads.official, *gzreads.parquet_files(downloads.parquet))
    group: list[tuple[Row, Command]] = [
        (tars, of(downloads.official)),
        (bare, of(downloads.noboxes)),
        (gz, of(downloads.hf)),
        (seek, of(downloads.hf, ("-c", SEEK_POINTS_BUILD))),
        (parquet, of(downloads.parquet)),
    ]
    timed(group, args.runs, scratch, memory, digests=(bare, gz, seek, parquet), truncate=True)
    return [tars, bare, gz, seek, parquet]


def gz_parts(
    args: argparse.Namespace, downloads: Downloads, scratch: Path, memory: MemoryState
) -> list[str]:
    """The tar.gz form in parts: the index pass alone against ``gzip -dc`` of the same files
    (taking turns), the seek points, one image's read through them against a plain tar's."""
    archives_gz = gzreads.gz_archives(downloads.hf)
    names = " ".join(f"'{p}'" for p in archives_gz)
    index_pass = Row("index pass", "gzindex.index_gzip_tar on each archive", "parts")
    gunzip = Row("gzip -dc", "gzip -dc > /dev/null of the same files", "parts")
    warm(downloads.official, *archives_gz)
    timed(
        [
            (
                index_pass,
                lambda out: [PY, "-c", gzreads.INDEX_PASS, str(out), *map(str, archives_gz)],
            ),
            (gunzip, lambda out: ["sh", "-c", f"gzip -dc {names} > /dev/null"]),
        ],
        args.runs,
        scratch,
        memory,
    )
    if index_pass.error or gunzip.error:
        return [f"The tar.gz form's index pass failed ({index_pass.error or gunzip.error}).", ""]
    kept = scratch / "gzindex"
    try:
        points = gzreads.seek_points(downloads.hf, kept)
        reads = gzreads.read_costs(downloads.hf, downloads.official, kept, args.reads)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return gzreads.report(
        (index_pass.median, index_pass.spread, index_pass.cpu_median),
        (gunzip.median, gunzip.spread, gunzip.cpu_median),
        points,
        reads,
    )


def add_download_options(parser: argparse.ArgumentParser) -> None:
    """The generated download's size and the folder it is kept in (``fixture``'s arguments);
    bench/ab.py takes the same."""
    parser.add_argument("--classes", type=int, default=100, help="classes (default: %(default)s)")
    parser.add_argument(
        "--per-class", type=int, default=200, help="training images a class (default: %(default)s)"
    )
    parser.add_argument(
        "--val-per-class",
        type=int,
        default=10,
        help="validation images a class (default: %(default)s)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=ROOT / "bench" / "out",
        help="where the download is kept between runs, and scratch space (default: bench/out)",
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_download_options(parser)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--skip-peers", action="store_true")
    parser.add_argument(
        "--memory",
        choices=MODES,
        default="full",
        help="the memory state every run starts in (bench/memstate.py): full of clean page "
        "cache, as on a busy machine (default), or free",
    )
    parser.add_argument(
        "--reads",
        type=int,
        default=2000,
        help="images read through the tar.gz form's seek points (default: %(default)s)",
    )
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    download = fixture(args, args.out)
    downloads = Downloads(
        official=download,
        kaggle=layout_fixture(args, args.out, "kaggle", "Kaggle's download"),
        hf=layout_fixture(args, args.out, "hf", "Hugging Face's tar.gz form"),
        parquet=layout_fixture(args, args.out, "hf-parquet", "Hugging Face's Parquet form"),
        noboxes=no_boxes(download),
    )
    kaggle = downloads.kaggle
    images, nbytes = image_stats(download)
    print(f"download: {images:,} images, {nbytes / 1e9:.2f} GB of image data", flush=True)
    for where, found in (
        (kaggle / KAGGLE_ZIP, zip_image_stats(kaggle / KAGGLE_ZIP)),
        (downloads.hf, gzreads.gz_image_stats(downloads.hf)),
        (downloads.parquet, gzreads.parquet_image_stats(downloads.parquet)),
    ):
        if found != (images, nbytes):
            raise SystemExit(
                f"{where}: {found[0]:,} images, {found[1]:,} bytes; the archives hold "
                f"{images:,}, {nbytes:,}: not the same images (delete it to make it again)"
            )
    scratch = args.out / "scratch"
    warm(download, kaggle / KAGGLE_ZIP)

    # What one run writes, about: the archives (cat), or shards of the same images (any
    # build); the other layouts add to what the page cache holds, not to what a run writes.
    memory = MemoryState(args.memory, args.out, sum(p.stat().st_size for p in archives(download)))
    try:
        rows, ours, floor, baseline, parts = suite(args, downloads, scratch, memory)
    finally:
        memory.close()
    text = report(rows, images, nbytes, ours, floor, baseline, parts)
    for r in rows:
        if r.disk_mb:
            each = ", ".join(f"{mb:,.0f}" for mb in r.disk_mb)
            print(f"read from disk in the runs of {r.name} (MB, whole machine): {each}")
    print(text)
    if args.write_docs:
        write_docs(text, args)
    return 0


def report(
    rows: list[Row],
    images: int,
    nbytes: int,
    ours: Row,
    floor: Row,
    baseline: Row | None,
    parts: list[str],
) -> str:
    lines = [
        f"{images:,} images, {nbytes / 1e9:.2f} GB of image data; page cache warm; "
        "median of the runs.",
        "",
        "| command | what | wall s | runs (min-max) | CPU s | images/s | MB/s "
        "| peak MB (all processes) | ours is |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r.error or not r.seconds:
            lines.append(f"| {r.name} | {r.note} | failed: {r.error} | | | | | | |")
            continue
        against = r.against or ours
        ratio = {
            "ours": "",
            "again": "",
            "source": f"{r.ratio}: {r.median / against.median:.2f}x",
            "md5": "",
            "format": "",
            "floor": f"{ours.median / r.median:.2f}x the floor",
        }.get(r.role, f"{r.median / ours.median:.1f}x faster")
        lines.append(
            f"| {r.name} | {r.note} | {r.median:.2f} | {r.spread} | {r.cpu_median:.2f} "
            f"| {images / r.median:,.0f} "
            f"| {nbytes / 1e6 / r.median:,.0f} | {r.peak:,.0f} | {ratio} |"
        )
    lines += [
        "",
        "CPU s: the machine's busy time during the run (all processes and the kernel, from "
        "/proc/stat), median.",
        "",
        *source_lines(rows),
        *parts,
        *disk_lines(rows),
        f"Projection to the full {FULL_IMAGES:,} images (measured seconds per image):",
        "",
    ]
    for r in rows:
        if r.seconds and r.role not in ("floor", "again"):
            projected = r.median / images * FULL_IMAGES
            lines.append(f"- {r.name}: {projected / 60:,.0f} min")
    md5_rows = [r for r in rows if r.role == "md5" and r.seconds]
    lines.append(
        f"- imagenet-prep also hashes the official archives (MD5, {OFFICIAL_BYTES / 1e9:.0f} GB "
        f"at about {MD5_GBPS} GB/s, about {OFFICIAL_BYTES / (MD5_GBPS * 1e9) / 60:.0f} min of "
        "one core; none with --no-md5), in a helper process beside the shard work."
    )
    if len(md5_rows) == 2:
        beside, first = md5_rows
        lines.append(
            f"  Measured here with the MD5 check: {beside.median:.2f} s beside the shards, "
            f"{first.median:.2f} s hashing first ({1 - beside.median / first.median:.0%} less)."
        )
    lines += ["", "Targets (issue 4):", ""]
    seed_speedup = REFERENCE_SECONDS_21K / ours.median * images / 21_000
    checks = [
        (
            f"10x faster than the reference scripts' own pipeline (31 s here): {seed_speedup:.1f}x",
            seed_speedup >= 10,
        ),
        (
            f"at most 3x the I/O floor: {ours.median / floor.median:.2f}x",
            ours.median <= 3 * floor.median,
        ),
        (f"peak memory under 500 MB: {ours.peak:.0f} MB", ours.peak < 500),
    ]
    if baseline is not None and baseline.seconds:
        scaled = baseline.median * 21_000 / images
        checks.append(
            (
                f"baseline within 25% of the reference scripts' 31 s: {scaled:.1f} s "
                f"({scaled / REFERENCE_SECONDS_21K:.2f}x)",
                abs(scaled / REFERENCE_SECONDS_21K - 1) <= 0.25,
            )
        )
    lines += [f"- {'PASS' if ok else 'FAIL'}: {text}" for text, ok in checks]
    return "\n".join(lines)


def source_lines(rows: list[Row]) -> list[str]:
    """The builds from another download (the Kaggle zip, Hugging Face's forms, the tars
    without boxes) against the official tars' build of their group: the ratio of the
    medians, of each round's pair of runs, and whether the outputs are the same bytes."""
    lines: list[str] = []
    for r in rows:
        ours = r.against
        if r.role != "source" or ours is None or not r.seconds or not ours.seconds:
            continue
        pairs = [z / t for t, z in zip(ours.seconds, r.seconds, strict=False)]
        lines.append(
            f"{r.name} against the official tars' build, taking turns in the same group: "
            f"{r.median:.2f} s against {ours.median:.2f} s, {r.median / ours.median:.2f}x "
            f"(each round: {min(pairs):.2f}-{max(pairs):.2f}x); CPU s {r.cpu_median:.2f} "
            f"against {ours.cpu_median:.2f}; peak {r.peak:,.0f} MB against {ours.peak:,.0f} MB."
        )
        if r.equals is not None:
            lines.append(f"Output against {r.equals_what} (last runs): {same_output(r.equals, r)}.")
        lines.append("")
    return lines


def disk_lines(rows: list[Row]) -> list[str]:
    """How much the machine read from disk during the build group's runs: about 0 when the
    page cache held their input, as the table's "page cache warm" says."""
    group = [r for r in rows if r.role in ("ours", "again", "source", "floor") and r.disk_mb]
    if not group:
        return []
    most = ", ".join(f"{r.name} {max(r.disk_mb):,.0f} MB" for r in group)
    return [
        "Read from disk during a run of the build's groups (/proc/vmstat pgpgin, the whole "
        f"machine), the most in any run: {most}.",
        "",
    ]


def same_output(a: Row, b: Row) -> str:
    """MATCH or DIFFER, for the two rows' digests."""
    x, y = a.digests or {}, b.digests or {}
    if not x or not y:
        return "not compared"
    skipped = "manifest.json and .imagenet-prep/ not compared"
    if x == y:
        mb = sum(size for size, _ in x.values()) / 1e6
        shards = sum(1 for n in x if n.startswith("tfrecord/"))
        return (
            f"MATCH, byte for byte ({len(x):,} files, {shards:,} of them TFRecord shards, "
            f"{mb:,.0f} MB; {skipped})"
        )
    differ = sorted(n for n in x.keys() & y.keys() if x[n] != y[n])
    only = sorted(x.keys() ^ y.keys())
    names = ", ".join([*differ, *only][:5])
    return f"DIFFER ({len(differ):,} files differ, {len(only):,} in one only: {names}; {skipped})"


def write_docs(text: str, args: argparse.Namespace) -> None:
    command = "python bench/run.py " + " ".join(sys.argv[1:])
    write_section(
        "build-bench",
        f"## Build\n\nMachine: {machine()}. Date: {date.today()}. Command: `{command}` "
        f"(`make bench`).\n\n{text}",
    )
    print(json.dumps({"wrote": str(DOCS)}))


if __name__ == "__main__":
    sys.exit(main())
