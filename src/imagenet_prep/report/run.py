"""``make_report``: read a finished build once (in parallel), then write its report folder:
``index.html``, ``stats.json``, the plots, thumbnails and contact sheets."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import xxhash

from .. import __version__
from ..errors import UsageError
from ..executors import Executor, InlineExecutor, ProcessExecutor
from ..labels import Synsets, load_synsets
from ..loaders.readers import detect_format, open_reader
from ..manifest import Manifest, OriginalSizes, OutputState, read_manifest
from ..storage import as_location, is_url, redact
from . import plots, stats, tables
from .options import Progress, ReportOptions, Silent
from .page import ContactSheet, PageData, Thumb, render
from .scan import ScanTask, SplitScan, scan
from .select import contact_classes, key_of, sample_positions, unit_ranges
from .skipped import skipped_images
from .thumbs import Sheet, contact_sheet, thumbnail

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
    wanted = {key_of(e["image"]): e for e in manifest.reencoded if isinstance(e.get("image"), str)}
    tasks, total = _tasks(options, str(root), fmt, splits, synsets, contact, frozenset(wanted))
    progress = progress or Silent()
    folder = options.folder
    work = _fresh_folder(folder)  # before the scan: a folder it cannot use fails fast
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
        result = _write(options, manifest, fmt, synsets, scans, contact, wanted, work, started)
        _replace(work, folder)
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


def _fresh_folder(folder: Path) -> Path:
    """An empty folder beside ``folder`` to write the report into (renamed at the end);
    ``folder`` itself may only hold an earlier report, which is replaced."""
    ours = (folder / "stats.json").is_file()
    if folder.exists() and not ours and (not folder.is_dir() or any(folder.iterdir())):
        raise UsageError(
            f"{folder}: exists and holds no imagenet-prep report; choose another folder (--to)"
        )
    work = folder.with_name(f".{folder.name}.incomplete")
    shutil.rmtree(work, ignore_errors=True)
    try:
        work.mkdir(parents=True)
    except OSError as exc:
        raise UsageError(f"{work}: cannot write the report ({exc.strerror})") from None
    return work


def _replace(work: Path, folder: Path) -> None:
    """Put the finished report in place of an earlier one."""
    if folder.exists():
        old = folder.with_name(f".{folder.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(folder, old)
        os.replace(work, folder)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(work, folder)


_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def _file_name(key: str, suffix: str) -> str:
    """A file name for ``key``: its safe characters and a hash (keys may hold anything).

    >>> _file_name("n01440764_10026", ".jpg")
    'n01440764_10026-282572a1.jpg'
    """
    digest = xxhash.xxh32_hexdigest(key.encode("utf-8"))
    return f"{_UNSAFE.sub('_', key)[:80]}-{digest}{suffix}"


def _write(
    options: ReportOptions,
    manifest: Manifest,
    fmt: str,
    synsets: Synsets,
    scans: dict[str, SplitScan],
    contact: list[str],
    wanted: dict[str, dict[str, str]],
    folder: Path,
    started: float,
) -> list[str]:
    """Write everything into ``folder``; the problems found."""
    state = OutputState(as_location(options.output))
    resized = bool(manifest.options.get("resize_shorter") or manifest.options.get("resize_longer"))
    problems: list[str] = []
    split_entries: dict[str, dict[str, Any]] = {}
    originals: dict[str, OriginalSizes | None] = {}
    notes: list[str] = []
    for split, found in scans.items():
        originals[split] = state.read_sizes(split) if resized else None
        if resized and originals[split] is None:
            notes.append(
                f"{split}: the build resized, but kept no original sizes (it predates them)"
            )
        entry, disagree = stats.split_stats(
            found, synsets, manifest, originals[split], options.sample, options.seed
        )
        split_entries[split] = entry
        problems.extend(disagree)
        problems.extend(found.problems)
    made: dict[str, list[plots.Plot]] = {
        "classes": plots.class_counts(
            folder,
            {s: e["per_class"] for s, e in split_entries.items() if "per_class" in e},
            synsets,
        ),
        "sizes": [p for s in scans.values() for p in plots.sizes(folder, s, originals[s.split])],
        "boxes": [p for s in scans.values() for p in plots.boxes(folder, s)],
        "pixels": plots.pixels(folder, list(scans.values())),
    }
    reencoded = _reencoded(folder, manifest, scans, wanted)
    skipped, skipped_note = _skipped(folder, options, manifest)
    sheets = _contact_sheets(folder, options, synsets, scans, contact, split_entries)
    label_ranges = stats.label_ranges(manifest, synsets)
    created = datetime.now(timezone.utc).isoformat(timespec="seconds")
    seconds = time.perf_counter() - started
    if not resized:
        notes.append(
            "The build did not resize: the sizes shown are the images' own."
            if fmt == "imagefolder"
            else f"Sizes as the {fmt} records store them (the build did not resize)."
        )
    document = {
        "report": {
            "version": STATS_VERSION,
            "tool": {"name": "imagenet-prep", "version": __version__},
            "created": created,
            "format": fmt,
            "seconds": round(seconds, 3),
            "workers": options.workers,
            "sample": options.sample,
            "seed": options.seed,
        },
        "build": {
            "output": _shown(options.output),
            "created": manifest.created,
            "tool": manifest.tool,
            "options": manifest.options,
            "source": manifest.source,
            "timings": manifest.timings,
        },
        "splits": split_entries,
        "label_ranges": label_ranges,
        "reencoded": [
            {"image": t.name, "reason": t.reason, "thumbnail": t.file} for t in reencoded
        ],
        "skipped": [{"image": t.name, "reason": t.reason, "thumbnail": t.file} for t in skipped],
        "contact_sheets": [
            {"wnid": s.wnid, "name": s.name, "split": s.split, "file": s.file, "shown": s.shown}
            for s in sheets
        ],
        "problems": problems[:_LISTED],
        "problem_count": len(problems),
    }
    (folder / "stats.json").write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
    shown = problems[:_LISTED] + (
        [f"... and {len(problems) - _LISTED:,} more (stats.json lists {_LISTED})"]
        if len(problems) > _LISTED
        else []
    )
    page = PageData(
        output=_shown(options.output),
        format=fmt,
        created=manifest.created,
        seconds=seconds,
        splits=split_entries,
        plots=made,
        label_ranges=label_ranges,
        reencoded=reencoded,
        skipped=skipped,
        skipped_note=skipped_note,
        sheets=sheets,
        build_tables=[tables.options(manifest), tables.source(manifest), tables.timings(manifest)],
        checksum_tables=tables.checksums(manifest),
        problems=shown,
        warnings=manifest.warnings,
        notes=notes,
    )
    (folder / "index.html").write_text(render(page), encoding="utf-8")
    return problems


def _shown(output: Path | str) -> str:
    """The build's place as the page names it: a URL, or the folder's absolute path."""
    return redact(str(output)) if is_url(str(output)) else str(Path(output).resolve())


def _reencoded(
    folder: Path,
    manifest: Manifest,
    scans: dict[str, SplitScan],
    wanted: dict[str, dict[str, str]],
) -> list[Thumb]:
    made = {k: v for s in scans.values() for k, v in s.thumbs.items()}
    out = []
    for entry in manifest.reencoded:
        image = entry.get("image", "")
        key = key_of(image)
        data = made.get(key)
        name = _save(folder, "thumbs", key, data) if data is not None and key in wanted else None
        out.append(Thumb(name, image, entry.get("reason", "")))
    return out


def _skipped(
    folder: Path, options: ReportOptions, manifest: Manifest
) -> tuple[list[Thumb], str | None]:
    if is_url(str(options.output)):
        images: dict[str, bytes] = {}
        note = None if not manifest.skipped else "thumbnails of skipped images need a local build"
    else:
        images, note = skipped_images(Path(options.output), manifest, thumbnail)
    out = []
    for entry in manifest.skipped:
        where = entry.get("image") or entry.get("file") or "?"
        data = images.get(where)
        name = _save(folder, "thumbs", key_of(where), data) if data is not None else None
        out.append(Thumb(name, where, entry.get("reason", "")))
    return out, note


def _save(folder: Path, sub: str, key: str, data: bytes) -> str:
    name = f"{sub}/{_file_name(key, '.jpg')}"
    (folder / sub).mkdir(exist_ok=True)
    (folder / name).write_bytes(data)
    return name


def _contact_sheets(
    folder: Path,
    options: ReportOptions,
    synsets: Synsets,
    scans: dict[str, SplitScan],
    contact: list[str],
    entries: dict[str, dict[str, Any]],
) -> list[ContactSheet]:
    sheets = []
    for wnid in contact:
        label = synsets.index(wnid)
        for split, found in scans.items():
            kept = found.contact.get(label, [])
            if not kept:
                continue
            images = entries[split].get("per_class", {}).get(wnid, 0)
            name = synsets.text(wnid)
            title = f"{wnid} · {name} · {split}"
            sheet = Sheet(title if len(title) < 90 else title[:89] + "…", [t for _, _, t in kept])
            data = contact_sheet(sheet)
            file = _save(folder, "sheets", f"{wnid}-{split}", data)
            sheets.append(ContactSheet(wnid, name, split, file, len(kept), images))
    return sheets
