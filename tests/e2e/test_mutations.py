"""Mutated downloads: the CLI builds a verifiable output or fails with one line, never a traceback.

A few hundred seeded mutations (bytes flipped, zeroed, cut off or cut out) of one small
generated download, aimed at what the build reads: JPEG headers, bodies and tails and the sizes
in image headers (decompression bombs) inside the training and validation tars, the tar headers
of the outer and the per-class tars, their end-of-archive blocks, the box XMLs inside the gzip'd
box archive (and the gzip stream itself), the devkit's ``meta.mat`` and ground truth, and the
same files of an extracted tree.
Each case must end in one of two ways:

- exit 0, an output that ``verify`` accepts, and every image and box file of the download
  accounted for (the manifest's counts are the clean build's, or ``--on-error skip`` lists what
  it left out): a truncated archive that loses images silently is a failure, not a success, and
  so is a gzip stream whose CRC or length no longer matches, read as good;
- exit 1 or 2 with exactly one line on stderr, ``imagenet-prep build: error: ...``, and no
  traceback or raw Python warning.

Most cases call ``cli.main`` in this process with stderr, the log and warnings captured as the
real command would print them; about twenty run ``python -m imagenet_prep`` with two workers, so
that the process pool's path is exercised too. Every misbehaving case is reported, with its id
(which says what was mutated where, and with which options), exit status and stderr.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import logging
import os
import random
import shutil
import subprocess
import sys
import traceback
import warnings
import zlib
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from imagenet_prep.archive import BLOCK, TarMember, index_tar, iter_tar_view
from imagenet_prep.cli import main
from imagenet_prep.fixture import FixtureConfig, generate
from imagenet_prep.fixture.config import Layout
from imagenet_prep.manifest import read_manifest

SEED = 13
IN_PROCESS_CASES = 280
SUBPROCESS_CASES = 20
SUBPROCESS_TIMEOUT = 120

TRAIN_TAR = "ILSVRC2012_img_train.tar"
VAL_TAR = "ILSVRC2012_img_val.tar"
BOX_TRAIN = "ILSVRC2012_bbox_train_v2.tar.gz"
BOX_VAL = "ILSVRC2012_bbox_val_v3.tgz"
DEVKIT = "ILSVRC2012_devkit_t12.tar.gz"

ERROR_PREFIX = "imagenet-prep build: error: "

# Fields of a ustar header: (name, start, end).
HEADER_FIELDS = (
    ("name", 0, 100),
    ("mode", 100, 108),
    ("size", 124, 136),
    ("mtime", 136, 148),
    ("chksum", 148, 156),
    ("typeflag", 156, 157),
    ("magic", 257, 265),
    ("prefix", 345, 500),
)

FORMAT_CHOICES = ("tfrecord", "webdataset", "imagefolder", "tfrecord,webdataset,imagefolder")
EXTRA_CHOICES: tuple[tuple[str, ...], ...] = (
    (),
    (),
    ("--on-error", "skip"),
    ("--decode-check",),
    ("--resize-shorter", "32"),
    ("--on-error", "skip", "--decode-check"),
)


@dataclass(frozen=True)
class Region:
    """A byte range of one file of the download that a mutation may hit.

    ``inner``: the range is in the decompressed tar of a gzip'd file, which is recompressed
    after the mutation. ``cut_only``: a single offset where the file is cut (a member boundary).
    """

    layout: str
    file: str
    target: str
    start: int
    end: int
    inner: bool = False
    cut_only: bool = False

    @property
    def kind(self) -> str:
        """What the bytes are, broadly: each kind of a file is hit about as often."""
        if ":header" in self.target:
            return "tar-header"
        if "end-of-archive" in self.target:
            return "end-of-archive"
        return self.target.split(":")[0]  # jpeg, xml, meta.mat, ground-truth, gzip


@dataclass(frozen=True)
class Mutation:
    """One mutated download and the build options it is given."""

    number: int
    layout: str
    file: str
    target: str
    op: str  # flip (XOR with ``xor``), zero, cut (truncate at offset), drop (remove the range)
    offset: int
    length: int
    xor: int
    inner: bool
    options: tuple[str, ...]
    quiet: bool
    subprocess: bool

    @property
    def id(self) -> str:
        where = "tar:" if self.inner else ""
        what = {
            "flip": f"flip@{where}{self.offset}+{self.length}^{self.xor:#04x}",
            "zero": f"zero@{where}{self.offset}+{self.length}",
            "cut": f"cut@{where}{self.offset}",
            "drop": f"drop@{where}{self.offset}+{self.length}",
        }[self.op]
        opts = " ".join(self.options) + ("" if self.quiet else " (not quiet)")
        run = "subprocess" if self.subprocess else "in-process"
        return f"#{self.number:03d} {self.layout}/{self.file} {self.target} {what} [{opts}] {run}"

    def apply(self, data: bytes) -> bytes:
        if not self.inner:
            return self._apply(data)
        return gzip.compress(self._apply(gzip.decompress(data)), mtime=0)

    def must_fail(self, original: bytes) -> str | None:
        """Why the build must not succeed, or None: a gzip stream the build reads, made to fail
        its CRC or length check (a reader that stops at the tar's end blocks misses that)."""
        if self.inner or self.file not in (BOX_TRAIN, DEVKIT):
            return None
        try:
            if gzip.decompress(self.apply(original)) == gzip.decompress(original):
                return None
        except (OSError, EOFError, zlib.error):
            pass
        return "a damaged gzip stream (its CRC or length check fails) was read as good"

    def _apply(self, data: bytes) -> bytes:
        start, end = self.offset, self.offset + self.length
        if self.op == "cut":
            return data[:start]
        if self.op == "drop":
            return data[:start] + data[end:]
        chunk = (
            bytes(len(data[start:end]))
            if self.op == "zero"
            else bytes(b ^ self.xor for b in data[start:end])
        )
        return data[:start] + chunk + data[end:]


# --- where the bytes are ------------------------------------------------------------------------


_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _size_field(data: bytes) -> tuple[str, int, int] | None:
    """Where an image's header gives its size: the JPEG SOF's height and width, PNG's IHDR."""
    if data.startswith(b"\x89PNG"):
        return "ihdr", 16, 24
    at = 2
    while at + 4 <= len(data) and data[at] == 0xFF:
        marker, length = data[at + 1], int.from_bytes(data[at + 2 : at + 4], "big")
        if marker in _SOF:
            return "sof", at + 5, at + 9
        at += 2 + length
    return None


def _image_regions(layout: str, file: str, m: TarMember, data: bytes) -> Iterator[Region]:
    """Head (the first 600 bytes: markers, tables), body, tail (the end-of-image marker) and
    the size in the header (huge sizes are decompression bombs, zero sizes nonsense)."""
    head_end = m.offset + min(600, m.size)
    tail_start = max(head_end, m.offset + m.size - 64)
    yield Region(layout, file, f"jpeg:{m.name}:head", m.offset, head_end)
    if tail_start > head_end:
        yield Region(layout, file, f"jpeg:{m.name}:body", head_end, tail_start)
    yield Region(layout, file, f"jpeg:{m.name}:tail", tail_start, m.offset + m.size)
    field = _size_field(data)
    if field is not None:
        what, start, end = field
        yield Region(layout, file, f"image-size:{m.name}:{what}", m.offset + start, m.offset + end)


def _header_regions(
    layout: str, file: str, what: str, header_at: int, inner: bool = False
) -> Iterator[Region]:
    for field, start, end in HEADER_FIELDS:
        yield Region(
            layout, file, f"{what}:header:{field}", header_at + start, header_at + end, inner
        )
    # Zeroing a whole header turns it into an end-of-archive block.
    yield Region(layout, file, f"{what}:header:whole", header_at, header_at + BLOCK, inner)
    yield Region(layout, file, f"{what}:header-boundary", header_at, header_at + 1, inner, True)


def _padded_end(m: TarMember) -> int:
    return m.offset + (m.size + BLOCK - 1) // BLOCK * BLOCK


def _tar_regions(
    layout: str, file: str, members: Sequence[TarMember], size: int, inner: bool
) -> Iterator[Region]:
    """Headers and end-of-archive blocks of a flat tar (its members' data is the caller's)."""
    for m in members:
        yield from _header_regions(layout, file, m.name, m.offset - BLOCK, inner)
    end = _padded_end(members[-1])
    yield Region(layout, file, "end-of-archive", end, size, inner)
    yield Region(layout, file, "end-of-archive:boundary", end, end + 1, inner, True)


def _member_bytes(path: Path, m: TarMember) -> bytes:
    with open(path, "rb") as f:
        f.seek(m.offset)
        return f.read(m.size)


def _archive_regions(download: Path) -> list[Region]:
    layout = "archives"
    regions: list[Region] = []
    train = download / TRAIN_TAR
    classes = index_tar(train).members
    images = index_tar(train, nested=True).members
    for c in classes:
        regions += _header_regions(layout, TRAIN_TAR, c.name, c.offset - BLOCK)
        last = max((m for m in images if m.parent == c.name), key=lambda m: m.offset)
        end = _padded_end(last)
        regions.append(Region(layout, TRAIN_TAR, f"{c.name}:end-of-archive", end, _padded_end(c)))
        regions.append(
            Region(
                layout, TRAIN_TAR, f"{c.name}:end-of-archive:boundary", end, end + 1, False, True
            )
        )
    for m in images:
        regions += _image_regions(layout, TRAIN_TAR, m, _member_bytes(train, m))
        regions += _header_regions(layout, TRAIN_TAR, f"{m.parent}:{m.name}", m.offset - BLOCK)
    end = _padded_end(classes[-1])
    regions.append(Region(layout, TRAIN_TAR, "end-of-archive", end, train.stat().st_size))
    regions.append(Region(layout, TRAIN_TAR, "end-of-archive:boundary", end, end + 1, False, True))

    val = download / VAL_TAR
    for m in index_tar(val).members:
        regions += _image_regions(layout, VAL_TAR, m, _member_bytes(val, m))
    regions += _tar_regions(layout, VAL_TAR, index_tar(val).members, val.stat().st_size, False)

    for name in (BOX_TRAIN, BOX_VAL, DEVKIT):
        raw = (download / name).read_bytes()
        tar = gzip.decompress(raw)
        members = list(iter_tar_view(tar, name))
        for m in members:
            if m.name.endswith(".xml"):
                regions.append(
                    Region(layout, name, f"xml:{m.name}", m.offset, m.offset + m.size, True)
                )
            elif m.name.endswith("meta.mat"):
                regions.append(
                    Region(layout, name, "meta.mat:head", m.offset, m.offset + 128, True)
                )
                regions.append(
                    Region(layout, name, "meta.mat:body", m.offset + 128, m.offset + m.size, True)
                )
            elif m.name.endswith("ground_truth.txt"):
                regions.append(
                    Region(layout, name, "ground-truth", m.offset, m.offset + m.size, True)
                )
        regions += _tar_regions(layout, name, members, len(tar), True)
        regions.append(Region(layout, name, "gzip:header", 0, 10))
        regions.append(Region(layout, name, "gzip:data", 10, len(raw) - 8))
        regions.append(Region(layout, name, "gzip:trailer", len(raw) - 8, len(raw)))
    return regions


def _extracted_regions(tree: Path) -> list[Region]:
    layout = "extracted"
    regions: list[Region] = []
    for path in sorted(tree.rglob("*")):
        if not path.is_file():
            continue
        rel = path.relative_to(tree).as_posix()
        size = path.stat().st_size
        if path.suffix.lower() == ".jpeg":
            m = TarMember(name=path.name, offset=0, size=size)
            regions += [
                Region(layout, rel, r.target.replace(f":{path.name}", ""), r.start, r.end)
                for r in _image_regions(layout, rel, m, path.read_bytes())
            ]
        elif path.suffix == ".xml":
            regions.append(Region(layout, rel, "xml", 0, size))
        elif path.name == "meta.mat":
            regions.append(Region(layout, rel, "meta.mat:head", 0, 128))
            regions.append(Region(layout, rel, "meta.mat:body", 128, size))
        elif path.name.endswith("ground_truth.txt"):
            regions.append(Region(layout, rel, "ground-truth", 0, size))
    return regions


# --- the cases ----------------------------------------------------------------------------------

# How often each file (or the extracted tree) is the one mutated.
WEIGHTS = {
    TRAIN_TAR: 34,
    VAL_TAR: 12,
    BOX_TRAIN: 14,
    BOX_VAL: 3,
    DEVKIT: 14,
    "extracted": 23,
}


def make_cases(
    regions: Sequence[Region], count: int, first: int, in_subprocess: bool, seed: int
) -> list[Mutation]:
    """``count`` mutations drawn from ``regions`` by a seeded generator, numbered from ``first``."""
    rng = random.Random(seed)
    groups: dict[str, dict[str, list[Region]]] = {}
    for r in regions:
        group = groups.setdefault("extracted" if r.layout == "extracted" else r.file, {})
        group.setdefault(r.kind, []).append(r)
    names = sorted(groups)
    weights = [WEIGHTS[n] for n in names]
    cases = []
    for number in range(first, first + count):
        kinds = groups[rng.choices(names, weights)[0]]
        region = rng.choice(kinds[rng.choice(sorted(kinds))])
        op = "cut" if region.cut_only else rng.choice(("flip", "flip", "zero", "cut", "drop"))
        offset = rng.randrange(region.start, region.end)
        span = region.end - offset
        if op == "flip":
            length = min(span, rng.choice((1, 1, 2, 4, 8, 32)))
        elif op == "zero":
            length = min(span, rng.choice((1, 4, 16, 64, 512)))
        elif op == "drop":
            length = min(span, rng.choice((1, 3, 100, 600)))
        else:
            length = 0
        options = ("--formats", rng.choice(FORMAT_CHOICES), *rng.choice(EXTRA_CHOICES))
        cases.append(
            Mutation(
                number=number,
                layout=region.layout,
                file=region.file,
                target=region.target,
                op=op,
                offset=offset,
                length=length,
                xor=rng.randrange(1, 256),
                inner=region.inner,
                options=options,
                quiet=rng.random() < 0.85,
                subprocess=in_subprocess,
            )
        )
    return cases


# --- running a case -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Download:
    """The clean downloads, the regions to mutate and the clean build's counts."""

    roots: dict[str, Path]
    regions: tuple[Region, ...]
    splits: dict[str, dict[str, Any]]
    box_files: dict[str, int]  # per layout


@pytest.fixture(scope="module")
def download(tmp_path_factory: pytest.TempPathFactory) -> Download:
    """The small download in both layouts, and what a clean build of each makes of it."""
    base = tmp_path_factory.mktemp("mutations")
    layouts: tuple[Layout, ...] = ("archives", "extracted")
    roots: dict[str, Path] = {layout: base / layout for layout in layouts}
    for layout in layouts:
        config = FixtureConfig(
            out=roots[layout],
            classes=3,
            per_class=4,
            val_per_class=2,
            seed=SEED,
            pool_size=8,
            layout=layout,
        )
        generate(config)
    regions = _archive_regions(roots["archives"]) + _extracted_regions(roots["extracted"])
    clean = {}
    for layout in layouts:
        out = base / f"clean-{layout}"
        argv = _build_argv(roots[layout], out, ("--formats", "tfrecord"), 1, True)
        code, err = _run_in_process(argv)
        assert code == 0 and not err, err
        clean[layout] = read_manifest(out)
    splits = clean["archives"].splits
    assert clean["extracted"].splits == splits, "the two layouts of the clean download differ"
    return Download(
        roots=roots,
        regions=tuple(regions),
        splits=splits,
        box_files={
            layout: m.bounding_boxes["files"] if m.bounding_boxes else 0
            for layout, m in clean.items()
        },
    )


def _build_argv(
    src: Path, out: Path, options: Sequence[str], workers: int, quiet: bool
) -> list[str]:
    argv = ["build", "--source", str(src), "--output", str(out), "--workers", str(workers)]
    argv += ["--train-shards", "2", "--validation-shards", "1", *options]
    return argv + (["--quiet"] if quiet else [])


def _mutated_copy(case: Mutation, download: Download, dest: Path) -> str | None:
    """Hard links to the clean download, except the mutated file, written fresh.

    Returns why the build must fail on this copy, if it must (``Mutation.must_fail``).
    """
    must_fail = None
    root = download.roots[case.layout]
    for path in root.rglob("*"):
        target = dest / path.relative_to(root)
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if path.relative_to(root).as_posix() == case.file:
            original = path.read_bytes()
            target.write_bytes(case.apply(original))
            must_fail = case.must_fail(original)
        else:
            os.link(path, target)
    return must_fail


# Warnings the interpreter hides by default; any other would be printed raw on stderr.
_HIDDEN_WARNINGS = (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning)


def _run_in_process(argv: Sequence[str]) -> tuple[int | None, str]:
    """``main(argv)`` with stderr as the real command prints it: log lines, warnings, traceback.

    ``main`` sets up logging on the stderr of the moment (ours); the root logger's handlers
    and level are put back afterwards.
    """
    err = io.StringIO()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    code: int | None = None
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("default")
            for category in _HIDDEN_WARNINGS:
                warnings.simplefilter("ignore", category)
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(err):
                try:
                    code = main(argv)
                except (Exception, SystemExit):  # what Python would print as a traceback
                    err.write(traceback.format_exc())
        for w in caught:
            err.write(warnings.formatwarning(w.message, w.category, w.filename, w.lineno))
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    return code, err.getvalue()


def _run_subprocess(argv: Sequence[str]) -> tuple[int | None, str]:
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "imagenet_prep", *argv],
            capture_output=True,
            encoding="utf-8",
            errors="backslashreplace",
            timeout=SUBPROCESS_TIMEOUT,
        )
    except subprocess.TimeoutExpired as exc:
        out = (
            exc.stderr.decode("utf-8", "backslashreplace") if isinstance(exc.stderr, bytes) else ""
        )
        return None, f"{out}\n(timed out after {SUBPROCESS_TIMEOUT} s)"
    return proc.returncode, proc.stderr


def _accounted(case: Mutation, out: Path, download: Download) -> list[str]:
    """Every image and box file of the download is in the output or listed as left out.

    Entries that are not images by name are counted in the manifest (``ignored_inputs``)
    and so accounted for; box files are counted as read whether parsed or skipped.
    """
    problems = []
    manifest = read_manifest(out)
    skip = "skip" in case.options
    for split, clean in download.splits.items():
        got = manifest.splits.get(split)
        if got is None:
            problems.append(f"split {split} missing from the manifest")
            continue
        if got["images"] + got["ignored_inputs"] != clean["images"] or any(
            got["per_class"].get(wnid, 0) > n for wnid, n in clean["per_class"].items()
        ):
            problems.append(
                f"{split}: {got['images']} images {got['per_class']} and {got['ignored_inputs']} "
                f"ignored inputs in the manifest, the clean download has {clean['images']} "
                f"{clean['per_class']} (images lost silently)"
            )
        if got["written"] + got["skipped"] != got["images"]:
            problems.append(
                f"{split}: written {got['written']} + skipped {got['skipped']} != images"
            )
        if got["skipped"] and not skip:
            problems.append(f"{split}: {got['skipped']} skipped without --on-error skip")
    skipped_images = sum(1 for s in manifest.skipped if "image" in s)
    if skipped_images != sum(s["skipped"] for s in manifest.splits.values()):
        problems.append(f"{skipped_images} images listed as skipped, the split counts differ")
    skipped_files = sum(1 for s in manifest.skipped if "file" in s)
    if skipped_files and not skip:
        problems.append(f"{skipped_files} box files skipped without --on-error skip")
    files = manifest.bounding_boxes["files"] if manifest.bounding_boxes else 0
    if files != download.box_files[case.layout]:
        problems.append(
            f"{files} box files read ({skipped_files} of them skipped), the clean download has "
            f"{download.box_files[case.layout]} (box files lost silently)"
        )
    return problems


def _judge(
    case: Mutation, code: int | None, err: str, out: Path, download: Download, must_fail: str | None
) -> list[str]:
    """What is wrong with how the CLI handled ``case``; empty when it behaved."""
    lines = err.splitlines()
    problems = []
    if "Traceback (most recent call last)" in err:
        problems.append("a traceback on stderr")
    raw = [line for line in lines if "Warning: " in line and not line.startswith(ERROR_PREFIX)]
    if raw:
        problems.append(f"a raw Python warning on stderr: {raw[0][:200]}")
    if code in (1, 2):
        errors = [line for line in lines if line.startswith(ERROR_PREFIX)]
        if len(errors) != 1:
            problems.append(f"{len(errors)} error lines, not one")
        elif case.quiet and len(lines) != 1:
            problems.append(f"{len(lines)} lines on stderr under --quiet, not one")
        elif lines[-1] != errors[0]:
            problems.append("the error line is not the last line on stderr")
    elif code == 0:
        if must_fail:
            problems.append(must_fail)
        if case.quiet and err:
            problems.append("exit 0 under --quiet, but stderr is not empty")
        if not (out / "manifest.json").is_file():
            problems.append("exit 0 without manifest.json")
        else:
            verified, verr = _run_in_process(["verify", "--quiet", str(out)])
            if verified != 0:
                problems.append(f"verify exits {verified}: {verr.strip()[-300:]}")
            problems += _accounted(case, out, download)
    else:
        problems.append(f"exit status {code}")
    return problems


def _run_cases(cases: Sequence[Mutation], download: Download, tmp: Path) -> None:
    failures = []
    outcomes: Counter[int | None] = Counter()
    for case in cases:
        src, out = tmp / f"src-{case.number}", tmp / f"out-{case.number}"
        must_fail = _mutated_copy(case, download, src)
        workers = 2 if case.subprocess else 1
        argv = _build_argv(src, out, case.options, workers, case.quiet)
        code, err = (_run_subprocess if case.subprocess else _run_in_process)(argv)
        outcomes[code] += 1
        problems = _judge(case, code, err, out, download, must_fail)
        if problems:
            tail = "\n      ".join(err.strip().splitlines()[-12:])
            failures.append(
                f"{case.id}\n  exit {code}: {'; '.join(problems)}\n  stderr:\n      {tail}"
            )
        else:  # a misbehaving case's folders are kept for a look
            shutil.rmtree(src)
            shutil.rmtree(out, ignore_errors=True)
    summary = ", ".join(f"exit {code}: {n}" for code, n in sorted(outcomes.items(), key=str))
    print(f"{len(cases)} mutated downloads: {summary}")
    assert not failures, (
        f"{len(failures)} of {len(cases)} mutated downloads misbehaved ({summary}); sources and "
        f"outputs kept under {tmp}:\n\n" + "\n\n".join(failures)
    )


def test_mutated_downloads_in_process(download: Download, tmp_path: Path) -> None:
    cases = make_cases(download.regions, IN_PROCESS_CASES, 0, False, SEED)
    _run_cases(cases, download, tmp_path)


def test_mutated_downloads_in_subprocesses(download: Download, tmp_path: Path) -> None:
    cases = make_cases(download.regions, SUBPROCESS_CASES, IN_PROCESS_CASES, True, SEED + 1)
    _run_cases(cases, download, tmp_path)
