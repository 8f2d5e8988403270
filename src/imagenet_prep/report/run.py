"""``make_report``: read a finished build once (in parallel), then write its report folder:
``index.html``, ``stats.json``, the plots, thumbnails and contact sheets."""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..errors import UsageError
from ..executors import Executor, InlineExecutor, ProcessExecutor
from ..labels import Synsets, load_synsets
from ..loaders.readers import detect_format, open_reader
from ..manifest import Manifest, OriginalSizes, OutputState, read_manifest
from ..storage import as_location, is_url, redact
from . import gallery, plots, stats, tables
from .folder import STATS, fresh_folder, replace_folder
from .options import Progress, ReportOptions, Silent
from .page import PageData, render
from .scan import ScanTask, SplitScan, scan
from .select import contact_classes, key_of, sample_positions, unit_ranges

log = logging.getLogger(__name__)

STATS_VERSION = 1
# A task reads at least this many records (consecutive units: files of the image folder).
TASK_RECORDS = 256
# Splits whose pixels are counted.
PIXEL_SPLITS = ("train", "validation")
# Problems listed in stats.json and on the page; the count says how many there were.
_LISTED = 200


@dataclass(frozen=True)
class ReportResult:
    """A written report: its folder, page and statistics, and what it found amiss."""

    folder: Path
    page: Path
    stats: Path
    format: str
    images: int
    seconds: float
    problems: list[str]


def default_format(manifest: Manifest) -> str:
    """The output with the original bytes: the image folder (when the build did not resize
    and wrote one), else the first format the build wrote."""
    options = manifest.options
    resized = options.get("resize_shorter") or options.get("resize_longer")
    if "imagefolder" in manifest.formats and not resized:
        return "imagefolder"
    return detect_format("", manifest)


def make_report(
    options: ReportOptions,
    progress: Progress | None = None,
    executor: Executor | None = None,
) -> ReportResult:
    """Write the report of the finished build at ``options.output``; return where it is."""
    plots.require_matplotlib()
    started = time.perf_counter()
    root = as_location(options.output)
    manifest = read_manifest(root)
    fmt = options.format or default_format(manifest)
    if fmt not in manifest.formats:
        raise UsageError(
            f"{options.output}: the build wrote no {fmt} output (it wrote "
            f"{', '.join(manifest.formats)})"
        )
    synsets = load_synsets()
    splits = sorted(manifest.splits, key=stats.split_order)
    contact = _contact_wnids(options, manifest)
    wanted = frozenset(key_of(e.get("image", "")) for e in manifest.reencoded)
    tasks, total = _tasks(options, str(root), fmt, splits, synsets, contact, wanted)
    progress = progress or Silent()
    folder = options.folder
    work = fresh_folder(folder)  # before the scan: a folder it cannot use fails fast
    try:
        progress.start(total)
        try:
            with executor or _executor(options.workers) as pool:
                scans = scan(
                    pool,
                    tasks,
                    {split: split in PIXEL_SPLITS for split in splits},
                    options.contact_images,
                    progress.update,
                )
        finally:
            progress.close()
        result = _write(options, manifest, fmt, synsets, scans, contact, work, started)
        replace_folder(work, folder)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return ReportResult(
        folder=folder,
        page=folder / "index.html",
        stats=folder / "stats.json",
        format=fmt,
        images=sum(len(s) for s in scans.values()),
        seconds=time.perf_counter() - started,
        problems=result,
    )


def _executor(workers: int) -> Executor:
    if workers <= 1:
        return InlineExecutor()
    return ProcessExecutor(workers, preload=("imagenet_prep.report.scan",))


def _contact_wnids(options: ReportOptions, manifest: Manifest) -> list[str]:
    """The classes of the contact sheets: those asked for (each must be in the build), or
    ``contact_sheets`` drawn with the seed from the classes built."""
    built = sorted({w for e in manifest.splits.values() for w in e.get("per_class", {})})
    if options.contact_classes is not None:
        missing = [w for w in options.contact_classes if w not in built]
        if missing:
            raise UsageError(
                f"--contact-classes: {', '.join(missing)} not in the build "
                f"({len(built)} classes, e.g. {', '.join(built[:3])})"
            )
        return list(dict.fromkeys(options.contact_classes))
    return contact_classes(built, options.contact_sheets, options.seed)


def _tasks(
    options: ReportOptions,
    root: str,
    fmt: str,
    splits: list[str],
    synsets: Synsets,
    contact: list[str],
    wanted: frozenset[str],
) -> tuple[Iterator[ScanTask], int]:
    """The scan's tasks (made as the pool asks for them) and the number of records."""
    plans = []
    total = 0
    for split in splits:
        sizes = open_reader(root, split, fmt).sizes
        count = int(np.sum(sizes))
        total += count
        plans.append((split, sizes, count))
    labels = tuple(synsets.index(w) for w in contact)

    def made() -> Iterator[ScanTask]:
        for n, (split, sizes, count) in enumerate(plans):
            pixels = split in PIXEL_SPLITS
            chosen = sample_positions(count, options.sample, options.seed + n) if pixels else None
            starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
            for first, stop in unit_ranges(sizes, TASK_RECORDS):
                lo, hi = int(starts[first]), int(starts[stop])
                positions = None
                if chosen is not None:
                    positions = chosen[(chosen >= lo) & (chosen < hi)]
                yield ScanTask(
                    root=root,
                    split=split,
                    format=fmt,
                    first=first,
                    stop=stop,
                    offset=lo,
                    pixels=pixels,
                    positions=positions,
                    wanted=wanted,
                    contact=labels if split != "test" else (),
                    contact_images=options.contact_images,
                    seed=options.seed,
                )

    return made(), total


def _numbers(
    options: ReportOptions, manifest: Manifest, synsets: Synsets, scans: dict[str, SplitScan]
) -> tuple[dict[str, dict[str, Any]], dict[str, OriginalSizes | None], list[str], list[str]]:
    """Each split's entry of stats.json and the original sizes kept by a resized build; the
    problems found (disagreements with the manifest, images that did not decode); notes."""
    state = OutputState(as_location(options.output))
    resized = _resized(manifest)
    entries: dict[str, dict[str, Any]] = {}
    originals: dict[str, OriginalSizes | None] = {}
    problems: list[str] = []
    notes: list[str] = []
    for split, found in scans.items():
        originals[split] = state.read_sizes(split) if resized else None
        if resized and originals[split] is None:
            notes.append(f"{split}: the build resized but kept no original sizes (older build)")
        entry, disagree = stats.split_stats(
            found, synsets, manifest, originals[split], options.sample, options.seed
        )
        entries[split] = entry
        problems.extend(disagree)
        problems.extend(found.problems)
    return entries, originals, problems, notes


def _resized(manifest: Manifest) -> bool:
    return bool(manifest.options.get("resize_shorter") or manifest.options.get("resize_longer"))


def _write(
    options: ReportOptions,
    manifest: Manifest,
    fmt: str,
    synsets: Synsets,
    scans: dict[str, SplitScan],
    contact: list[str],
    folder: Path,
    started: float,
) -> list[str]:
    """Write the plots, pictures, stats.json and index.html into ``folder``; the problems."""
    entries, originals, problems, notes = _numbers(options, manifest, synsets, scans)
    if not _resized(manifest):
        notes.append(
            "The build did not resize: the sizes shown are the images' own."
            if fmt == "imagefolder"
            else f"Sizes as the {fmt} records store them (the build did not resize)."
        )
    per_class = {s: e["per_class"] for s, e in entries.items() if "per_class" in e}
    made: dict[str, list[plots.Plot]] = {
        "classes": plots.class_counts(folder, per_class, synsets),
        "sizes": [p for s in scans.values() for p in plots.sizes(folder, s, originals[s.split])],
        "boxes": [p for s in scans.values() for p in plots.boxes(folder, s)],
        "pixels": plots.pixels(folder, list(scans.values())),
    }
    skipped, skipped_note = gallery.skipped(folder, options.output, manifest)
    page = PageData(
        output=_shown(options.output),
        format=fmt,
        created=manifest.created,
        seconds=time.perf_counter() - started,
        splits=entries,
        plots=made,
        label_ranges=stats.label_ranges(manifest, synsets),
        reencoded=gallery.reencoded(folder, manifest, scans),
        skipped=skipped,
        skipped_note=skipped_note,
        sheets=gallery.contact_sheets(folder, synsets, scans, contact, entries),
        build_tables=[tables.options(manifest), tables.source(manifest), tables.timings(manifest)],
        checksum_tables=tables.checksums(manifest),
        problems=problems[:_LISTED]
        + ([f"... and {len(problems) - _LISTED:,} more"] if len(problems) > _LISTED else []),
        warnings=manifest.warnings,
        notes=notes,
    )
    document = _document(options, manifest, page, problems)
    (folder / STATS).write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
    (folder / "index.html").write_text(render(page), encoding="utf-8")
    return problems


def _document(
    options: ReportOptions, manifest: Manifest, page: PageData, problems: list[str]
) -> dict[str, Any]:
    """stats.json: what the page shows, as numbers."""
    return {
        "report": {
            "version": STATS_VERSION,
            "tool": {"name": "imagenet-prep", "version": __version__},
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "format": page.format,
            "seconds": round(page.seconds, 3),
            "workers": options.workers,
            "sample": options.sample,
            "seed": options.seed,
        },
        "build": {
            "output": page.output,
            "created": manifest.created,
            "tool": manifest.tool,
            "options": manifest.options,
            "source": manifest.source,
            "timings": manifest.timings,
        },
        "splits": page.splits,
        "label_ranges": page.label_ranges,
        "reencoded": [
            {"image": t.name, "reason": t.reason, "thumbnail": t.file} for t in page.reencoded
        ],
        "skipped": [
            {"image": t.name, "reason": t.reason, "thumbnail": t.file} for t in page.skipped
        ],
        "contact_sheets": [
            {"wnid": s.wnid, "name": s.name, "split": s.split, "file": s.file, "shown": s.shown}
            for s in page.sheets
        ],
        "problems": problems[:_LISTED],
        "problem_count": len(problems),
    }


def _shown(output: Path | str) -> str:
    """The build's place as the page names it: a URL, or the folder's absolute path."""
    return redact(str(output)) if is_url(str(output)) else str(Path(output).resolve())
