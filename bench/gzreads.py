"""Hugging Face's tar.gz form, in parts (bench/run.py): its images against the official
download's, the index pass's command, one image's read through the seek points against a
plain tar's ``pread``, and the seek points' figures.

The index pass is timed by bench/run.py (it runs :data:`INDEX_PASS` as a command, taking
turns with ``gzip -dc > /dev/null`` of the same files). :func:`read_costs` times reads in
this process, page cache warm: for each of ``count`` images drawn at random from every
archive, :func:`imagenet_prep.gzindex.read_range` through the kept index, and ``os.pread`` of
the same image from the official tar at the offset :func:`imagenet_prep.archive.index_tar`
gives (taking turns, the order swapped every image); the bytes are compared, untimed.
"""

from __future__ import annotations

import os
import random
import statistics
import tarfile
import time
from bisect import bisect_right
from dataclasses import dataclass
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq

from imagenet_prep.archive import index_tar
from imagenet_prep.gzindex import (
    DEFAULT_SPACING,
    WINDOW,
    index_gzip_tar,
    load_gzip_index,
    read_range,
    windows_path,
)
from imagenet_prep.sources import TRAIN_ARCHIVE, VAL_ARCHIVE
from imagenet_prep.sources.hf import original_name

#: ``python -c`` code: index each archive (``sys.argv[2:]``) into the folder ``sys.argv[1]``.
INDEX_PASS = (
    "import sys\n"
    "from pathlib import Path\n"
    "from imagenet_prep.gzindex import index_gzip_tar\n"
    "for p in sys.argv[2:]:\n"
    "    index_gzip_tar(Path(p), Path(sys.argv[1]) / (Path(p).name + '.idx'))\n"
)


def gz_archives(download: Path) -> list[Path]:
    """The tar.gz form's archives (``data/*.tar.gz``), by name."""
    return sorted((download / "data").glob("*.tar.gz"))


def parquet_files(download: Path) -> list[Path]:
    """The Parquet form's files (``data/*.parquet``), by name."""
    return sorted((download / "data").glob("*.parquet"))


def gz_image_stats(download: Path) -> tuple[int, int]:
    """(images, bytes of image data) in the tar.gz form (Python's tarfile and gzip: not the
    code measured)."""
    images = nbytes = 0
    for path in gz_archives(download):
        with tarfile.open(path, "r|gz") as tar:
            for m in tar:
                if m.isfile():
                    images += 1
                    nbytes += m.size
    return images, nbytes


def parquet_image_stats(download: Path) -> tuple[int, int]:
    """(images, bytes of image data) in the Parquet form (pyarrow: the image column's bytes)."""
    images = nbytes = 0
    for path in parquet_files(download):
        column = pq.read_table(path, columns=["image"]).column("image")
        lengths = pc.binary_length(pc.struct_field(column, "bytes"))
        images += len(column)
        nbytes += pc.sum(lengths).as_py() or 0
    return images, nbytes


def index_files(index_dir: Path, archive: Path) -> tuple[Path, Path]:
    """The index file the index pass writes for ``archive``, and its window file."""
    index_file = index_dir / f"{archive.name}.idx"
    return index_file, windows_path(index_file)


@dataclass
class SeekPoints:
    archives: int
    archive_bytes: int
    uncompressed_bytes: int
    points: int
    index_bytes: int  # the index files
    windows_bytes: int  # their window files
    spacing: int

    @property
    def per_gb(self) -> float:
        return self.points / (self.archive_bytes / 1e9)

    @property
    def mb_per_gb(self) -> float:
        return (self.index_bytes + self.windows_bytes) / 1e6 / (self.archive_bytes / 1e9)


def seek_points(download: Path, index_dir: Path) -> SeekPoints:
    """Index every archive into ``index_dir`` (or reuse what is kept there) and count."""
    index_dir.mkdir(parents=True, exist_ok=True)
    total = SeekPoints(0, 0, 0, 0, 0, 0, DEFAULT_SPACING)
    for path in gz_archives(download):
        index_file, windows = index_files(index_dir, path)
        index, _members = index_gzip_tar(path, index_file)
        total.archives += 1
        total.archive_bytes += path.stat().st_size
        total.uncompressed_bytes += index.uncompressed_size
        total.points += len(index)
        total.index_bytes += index_file.stat().st_size
        total.windows_bytes += windows.stat().st_size
        assert index.spacing == DEFAULT_SPACING
    return total


@dataclass
class ReadCosts:
    count: int
    gz_ms: list[float]
    tar_ms: list[float]
    # uncompressed bytes inflated before each image (from its seek point) and in all
    skipped: list[int]
    inflated: list[int]

    @staticmethod
    def p90(values: list[float]) -> float:
        return statistics.quantiles(values, n=10)[-1]

    @property
    def ns_per_byte(self) -> float:
        """The median of each read's time over the bytes it inflated."""
        return statistics.median(
            t * 1e6 / n for t, n in zip(self.gz_ms, self.inflated, strict=True)
        )


def read_costs(
    hf: Path, official: Path, index_dir: Path, count: int = 2000, seed: int = 0
) -> ReadCosts:
    """Time ``count`` random images read through the kept seek points and from the official
    tars (see the module's docstring); the bytes must agree."""
    train = index_tar(official / TRAIN_ARCHIVE, nested=True)
    val = index_tar(official / VAL_ARCHIVE)
    plain = {m.name: (official / TRAIN_ARCHIVE, m) for m in train.members}
    plain.update({m.name: (official / VAL_ARCHIVE, m) for m in val.members})
    members = []
    for path in gz_archives(hf):
        kept = load_gzip_index(path, index_files(index_dir, path)[0])
        assert kept is not None, f"{path}: no kept index in {index_dir}"
        index, listed = kept
        members += [(path, index, m) for m in listed]
    sample = random.Random(seed).sample(members, count)
    fds: dict[Path, int] = {}

    def fd(path: Path) -> int:
        if path not in fds:
            fds[path] = os.open(path, os.O_RDONLY)
        return fds[path]

    costs = ReadCosts(count, [], [], [], [])
    try:
        for n, (path, index, m) in enumerate(sample):
            tar_path, ref = plain[original_name(m.name)[0]]
            gz_fd, win_fd, tar_fd = fd(path), fd(Path(index.windows)), fd(tar_path)
            gz_ns = tar_ns = 0
            data = expected = b""
            for turn in (n % 2, 1 - n % 2):
                t = time.perf_counter_ns()
                if turn == 0:
                    data = read_range(gz_fd, win_fd, index, m.offset, m.size, m.name)
                    gz_ns = time.perf_counter_ns() - t
                else:
                    expected = os.pread(tar_fd, ref.size, ref.offset)
                    tar_ns = time.perf_counter_ns() - t
            if data != expected:
                raise SystemExit(f"{path}: {m.name} differs from {ref.name} in {tar_path}")
            point = index.uncompressed[bisect_right(index.uncompressed, m.offset) - 1]
            costs.gz_ms.append(gz_ns / 1e6)
            costs.tar_ms.append(tar_ns / 1e6)
            costs.skipped.append(m.offset - point)
            costs.inflated.append(m.offset - point + m.size)
    finally:
        for f in fds.values():
            os.close(f)
    return costs


def report(
    index_pass: tuple[float, str, float],
    gunzip: tuple[float, str, float],
    points: SeekPoints,
    reads: ReadCosts,
) -> list[str]:
    """The lines under the build table: (median s, spread, CPU s) of the index pass and of
    ``gzip -dc``, the seek points, the reads."""
    gb = points.archive_bytes / 1e9
    mb = points.archive_bytes / 1e6
    (pass_s, pass_spread, pass_cpu), (gz_s, gz_spread, gz_cpu) = index_pass, gunzip
    gz_med, tar_med = statistics.median(reads.gz_ms), statistics.median(reads.tar_ms)
    skipped = statistics.median(reads.skipped) / 1024
    return [
        f"Hugging Face's tar.gz form in parts ({points.archives} archives, {gb:.2f} GB, "
        f"{points.uncompressed_bytes / 1e9:.2f} GB uncompressed; page cache warm):",
        "",
        f"- the index pass alone (`imagenet_prep.gzindex.index_gzip_tar` on each archive, one "
        f"process, taking turns with `gzip -dc`): {pass_s:.2f} s, runs {pass_spread}, "
        f"{mb / pass_s:,.0f} MB/s of archive, CPU s {pass_cpu:.2f}; `gzip -dc > /dev/null` "
        f"of the same files: {gz_s:.2f} s, runs {gz_spread}, {mb / gz_s:,.0f} MB/s, CPU s "
        f"{gz_cpu:.2f}; the pass is {gz_s / pass_s:.2f}x gzip's rate.",
        f"- one image read through the seek points (`read_range`, the kept index; "
        f"{reads.count:,} images drawn at random, in turns with the plain tar): median "
        f"{gz_med:.2f} ms, p90 {reads.p90(reads.gz_ms):.2f} ms; `os.pread` of the same image "
        f"from the official tar (offsets from `index_tar`): median {tar_med:.3f} ms, p90 "
        f"{reads.p90(reads.tar_ms):.3f} ms ({gz_med / tar_med:,.0f}x the median). A read "
        f"inflated a median {skipped:,.0f} KiB before its image (half the spacing is "
        f"{points.spacing / 2048:,.0f} KiB) and {statistics.median(reads.inflated) / 1024:,.0f} "
        f"KiB in all, {reads.ns_per_byte:.1f} ns a byte.",
        f"- seek points: spacing {points.spacing / (1 << 20):g} MiB (`gzindex.DEFAULT_SPACING`), "
        f"{points.points:,} points, {points.per_gb:,.0f} per GB of archive; index "
        f"{points.index_bytes / 1e6:.2f} MB + windows {points.windows_bytes / 1e6:.1f} MB "
        f"({WINDOW // 1024} KiB a point) = {points.mb_per_gb:.1f} MB per GB of archive.",
        "",
    ]
