"""``build``: sources -> index -> plan -> executor maps process_shard -> manifest."""

from __future__ import annotations

import errno
import logging
import os
import sys
import time
from collections.abc import Iterator
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any, Protocol, TypeVar

from . import __version__
from .archive import file_md5
from .config import OFFICIAL_BOX_FILES, BuildConfig
from .errors import DataError, UsageError
from .executors import Executor, WorkerDied, make_executor, refuse_while_importing_main
from .fsutil import xxh3_of
from .labels import Devkit, Synsets, load_synsets, read_devkit, validation_labels
from .manifest import (
    FORMAT_VERSION,
    MANIFEST,
    Journal,
    OutputState,
    RecordedSources,
    ShardResult,
    write_manifest,
)
from .outdir import (
    BOX_CSV,
    LABELS_TXT,
    check_disk,
    disk_need,
    make_output,
    out_of_space,
    prepare_output,
    recorded_options,
    remove_temporaries,
    write_if_changed,
)
from .plan import ShardSpec, plan_split, shuffled_order
from .resize import ResizeSpec
from .sinks import SinkOptions, get_sink
from .sources import (
    TRAIN_ARCHIVE,
    BoxTable,
    SourceLayout,
    SplitIndex,
    cached_md5,
    discover,
    index_train_detached,
    index_validation,
    load_boxes,
    record_md5,
)
from .worker import ShardJob, process_shards

log = logging.getLogger(__name__)
T = TypeVar("T")
# Consecutive small shards go to a worker together, up to about this many images.
TASK_IMAGES = 256


def batched(jobs: Iterator[ShardJob], images: int) -> Iterator[tuple[ShardJob, ...]]:
    """Group consecutive jobs until a group holds at least ``images`` images.

    >>> from imagenet_prep.plan import plan_split
    >>> from imagenet_prep.sinks import SinkOptions
    >>> opts = SinkOptions(out=Path("o"))
    >>> jobs = [ShardJob(s, (None,) * s.size, (), opts) for s in plan_split("train", 100, 10)]
    >>> [len(g) for g in batched(iter(jobs), 25)]
    [3, 3, 3, 1]
    """
    group: list[ShardJob] = []
    count = 0
    for job in jobs:
        group.append(job)
        count += len(job.refs)
        if count >= images:
            yield tuple(group)
            group, count = [], 0
    if group:
        yield tuple(group)


_EXPECTED_INPUT = {
    "train": "ILSVRC2012_img_train.tar or a train/ folder",
    "validation": "ILSVRC2012_img_val.tar, or a validation/ or val/ folder",
}


@dataclass
class BuildResult:
    """Summary of a finished build."""

    output: Path
    images: dict[str, int]
    shards_written: int  # shard jobs run (one per plan group's shard)
    shards_reused: int
    reencoded: list[dict[str, str]]
    skipped: list[dict[str, str]]
    warnings: list[str]
    seconds: float
    bytes_in: int
    images_written: int
    files_written: int = 0  # output files made by this run (shards, indexes, images in folders)
    files_reused: int = 0  # output files an earlier run finished
    already_complete: bool = False
    manifest: dict[str, Any] = field(default_factory=dict, repr=False)


class Reporter(Protocol):
    """Receives progress; the CLI draws a bar or logs lines, the library stays silent."""

    def start(self, images: int, nbytes: int, done_images: int, done_bytes: int) -> None: ...

    def update(self, images: float, nbytes: float) -> None:
        """More work done: ``images`` (each image counted once, whatever the number of
        formats) and the input bytes they hold."""
        ...

    def close(self) -> None: ...


class _Silent:
    def start(self, images: int, nbytes: int, done_images: int, done_bytes: int) -> None:
        pass

    def update(self, images: float, nbytes: float) -> None:
        pass

    def close(self) -> None:
        pass


def _labels_txt(synsets: Synsets, offset: int) -> bytes:
    lines = [f"{i + offset}\t{w}\t{synsets.text(w)}\n" for i, w in enumerate(synsets.wnids)]
    return "".join(lines).encode("utf-8")


def _file_entry(name: str, data: bytes, **extra: Any) -> dict[str, Any]:
    return {"file": name, "bytes": len(data), "xxh3_128": xxh3_of(data), **extra}


def _check_download(
    config: BuildConfig, index: SplitIndex, md5: str | None
) -> dict[str, Any] | None:
    """Compare an archive with the published one of the same name and size (counts, and the
    MD5 when it is known already: from an earlier run, or an inline executor's hashing).

    Other counts than the published ones are an error: such a file is incomplete.
    """
    archive = index.archive
    if archive is None:
        return None
    name = os.path.basename(archive.path)
    known = config.known_archive(name, archive.size)
    entry: dict[str, Any] = {"name": name, "bytes": archive.size, "md5": md5}
    if known is None:
        return entry
    entry["official"] = True
    if config.check_md5 and md5 is not None:
        _compare_md5(Path(archive.path), md5, known.md5)
        entry["md5_verified"] = True
    classes = len(set(index.labels))
    if len(index) != known.images or classes != known.classes:
        raise DataError(
            f"{archive.path}: {len(index):,} images in {classes} classes, the official archive "
            f"holds {known.images:,} in {known.classes}: the download is incomplete or damaged"
        )
    return entry


def _compare_md5(path: Path, md5: str, published: str, after: str = "") -> None:
    if md5 != published:
        raise DataError(
            f"{path}: MD5 {md5} differs from the published {published} for this file: the "
            f"download is damaged (download it again, or pass --no-md5 to use it anyway){after}"
        )


def _hash_aside(
    config: BuildConfig, layout: SourceLayout, state: OutputState, executor: Executor
) -> dict[str, Future[str]]:
    """Start hashing each official archive whose MD5 no earlier run kept, beside the build.

    The shards are written meanwhile: at full size the MD5 of the 155 GB takes minutes, and
    they no longer wait for it. The build checks the result before its manifest (see
    :func:`_finish_md5`).
    """
    pending: dict[str, Future[str]] = {}
    for split in config.splits:
        path = layout.images(split)
        if path is None or not _md5_wanted(config, path):
            continue
        if cached_md5(state, path) is None:
            log.info("computing the MD5 of %s beside the rest of the build", path)
            pending[split] = executor.run_aside(file_md5, path)
    return pending


def _of_split(split: str, result: ShardResult) -> bool:
    return result.split == split


def _finish_md5(
    config: BuildConfig,
    layout: SourceLayout,
    state: OutputState,
    pending: dict[str, Future[str]],
    download_of: dict[str, dict[str, Any]],
    journal: Journal,
) -> None:
    """Wait for the MD5s computed beside the build and compare them with the published ones.

    On a mismatch the split's shards are struck from the journal, so that a rerun (with a
    new download, or with --no-md5) makes them again, and the build fails without a manifest.
    """
    for split, future in pending.items():
        path = layout.images(split)
        assert path is not None
        entry = download_of[split]  # the archive's name and size as indexed
        if not future.done():
            log.info(
                "waiting for the MD5 of %s (%.1f GB: MD5 reads about 0.6 GB/s on one core, "
                "and has run since the index was started)",
                path,
                entry["bytes"] / 1e9,
            )
        md5 = _aside_result(future)
        record_md5(state, path, md5)
        entry["md5"] = md5
        known = config.known_archive(entry["name"], entry["bytes"])
        assert known is not None
        try:
            _compare_md5(path, md5, known.md5, f"; its {split} shards will be made again")
        except DataError:
            journal.forget(partial(_of_split, split))
            raise
        entry["md5_verified"] = True


def _aside_result(future: Future[T]) -> T:
    """The result of a task run beside the pool; its own errors are re-raised as they were."""
    try:
        return future.result()
    except BrokenProcessPool:
        raise WorkerDied("a helper process died (killed, or out of memory)") from None


def _md5_wanted(config: BuildConfig, archive: Path | None) -> bool:
    """Hash an archive only when it could be an official one (a published name and size)."""
    return (
        config.check_md5
        and archive is not None
        and archive.is_file()
        and config.known_archive(archive.name, archive.stat().st_size) is not None
    )


# --- build ---------------------------------------------------------------------------


#: The shards to write: per plan group, its formats and its shards.
Plans = list[tuple[tuple[str, ...], list[ShardSpec]]]


def shard_plans(config: BuildConfig, indexes: dict[str, SplitIndex]) -> Plans:
    """The shards to write: per split, the formats that share a shard count share the work.

    TFRecords and ImageFolder follow ``--train-shards``/``--validation-shards``; WebDataset
    has its own count (``--shard-size``). Every plan cuts the same shuffled order, so a
    shard's name (``train-00003-of-00016``) identifies its group within a split.
    """
    plans = []
    for split, index in indexes.items():
        counts: dict[int, list[str]] = {}
        for fmt in config.formats:
            if fmt == "webdataset":
                count = config.webdataset_shards(len(index), index.total_bytes())
            else:
                count = config.shards(split)
            counts.setdefault(count, []).append(fmt)
        for count, formats in counts.items():
            plans.append((tuple(formats), plan_split(split, len(index), count)))
    return plans


def _planned_files(
    config: BuildConfig,
    indexes: dict[str, SplitIndex],
    synsets: Synsets,
    plans: Plans,
) -> Iterator[str]:
    """Every file the build may write, relative to OUT (see
    :meth:`~imagenet_prep.manifest.OutputState.record_outputs`)."""
    yield from (MANIFEST, LABELS_TXT, BOX_CSV)
    options = SinkOptions(out=config.output, dali_index=config.dali_index)
    for name in config.formats:
        yield from get_sink(name, options).side_files(list(indexes))
    for formats, specs in plans:
        index = indexes[specs[0].split]
        for name in formats:
            sink = get_sink(name, options)
            for spec in specs:
                images = (
                    (synsets.wnids[index.labels[i]], index.names[i])
                    for i in range(spec.start, spec.stop)
                )
                yield from sink.planned_files(spec, images)


def _jobs(
    config: BuildConfig,
    indexes: dict[str, SplitIndex],
    synsets: Synsets,
    boxes: BoxTable | None,
    plans: Plans,
    done: dict[str, ShardResult],
) -> Iterator[ShardJob]:
    options = SinkOptions(
        out=config.output,
        label_offset=config.label_offset,
        link=config.link,
        dali_index=config.dali_index,
    )
    resize = (
        ResizeSpec(
            shorter=config.resize_shorter, longer=config.resize_longer, quality=config.quality
        )
        if config.resizes
        else None
    )
    orders = {split: shuffled_order(len(index), config.seed) for split, index in indexes.items()}
    for formats, specs in plans:
        for spec in specs:
            if spec.name in done:
                continue
            index, order = indexes[spec.split], orders[spec.split]
            refs = index.block(order[spec.start : spec.stop], synsets, boxes)
            yield ShardJob(
                spec=spec,
                refs=refs,
                formats=formats,
                options=options,
                skip_bad=config.on_error == "skip",
                decode_check=config.decode_check,
                resize=resize,
                max_pixels=config.max_pixels,
            )


def _finished(
    config: BuildConfig,
    formats: tuple[str, ...],
    spec: ShardSpec,
    records: dict[str, ShardResult],
) -> ShardResult | None:
    """The recorded result of a shard finished by an earlier run, if its outputs are all there."""
    result = records.get(spec.name)
    if result is None or set(result.outputs) != set(formats):
        return None
    for output in result.outputs.values():
        if "file" in output:
            path = config.output / output["file"]
            if not path.is_file() or path.stat().st_size != output["bytes"]:
                return None
    return result


def _share(result: ShardResult, groups: dict[str, int], amount: int) -> float:
    """A shard's part of its split's progress: ``amount`` over the split's plan groups."""
    return amount / groups[result.split]


def _output_files(result: ShardResult) -> int:
    """The files a shard wrote: shard files and their indexes, one per image in folders."""
    return sum(
        ("file" in o) + ("index" in o) + sum(c["count"] for c in o.get("classes", {}).values())
        for o in result.outputs.values()
    )


def _output_bytes(result: ShardResult) -> int:
    return sum(
        int(o.get("bytes", 0)) + sum(c["bytes"] for c in o.get("classes", {}).values())
        for o in result.outputs.values()
    )


def _complete_result(config: BuildConfig, started: float) -> BuildResult:
    from .manifest import read_manifest

    manifest = read_manifest(config.output)
    return BuildResult(
        output=config.output,
        images={s: v["images"] for s, v in manifest["splits"].items()},
        shards_written=0,
        shards_reused=sum(v["shards"] for v in manifest["splits"].values()),
        reencoded=manifest["reencoded"],
        skipped=manifest["skipped"],
        warnings=manifest.get("warnings", []),
        seconds=time.perf_counter() - started,
        bytes_in=0,
        images_written=0,
        already_complete=True,
        manifest=manifest,
    )


def build(
    config: BuildConfig,
    *,
    executor: Executor | None = None,
    reporter: Reporter | None = None,
) -> BuildResult:
    """Run the whole flow for ``config``; return a summary.

    Raises :class:`DataError` for bad input, :class:`UsageError` for options or an output
    folder that cannot be used, :class:`ResourceError` when the disk is too small. A run
    that stops leaves every finished shard in place; the same call again resumes.
    """
    # First: in a worker importing a script that calls this unguarded, it must touch nothing.
    refuse_while_importing_main("imagenet_prep.build()")
    started = time.perf_counter()
    out = config.output
    layout = discover(config.source)
    for split in config.splits:
        if layout.images(split) is None:
            raise DataError(
                f"{config.source}: the {split} split was requested but its input is missing "
                f"({_EXPECTED_INPUT[split]})"
            )
    make_output(out)
    with OutputState(out).lock():
        if prepare_output(config, recorded_options(config, layout)):
            return _complete_result(config, started)
        remove_temporaries(out)
        need = _Need()
        try:
            # Entering the executor starts its workers, which boot while the inputs are indexed.
            with executor or make_executor(config.workers) as pool:
                return _build(config, layout, pool, reporter or _Silent(), started, need)
        except OSError as exc:
            raise _os_error(config, exc, need.bytes) from None


@dataclass
class _Need:
    """What the build still had to write when it started its shard work (for messages)."""

    bytes: int = 0


def _os_error(config: BuildConfig, exc: OSError, need: int) -> Exception:
    """One line for an error of the file system that no earlier check turned into one."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return out_of_space(config, exc, need)
    where = exc.filename if exc.filename is not None else config.output
    inside = str(where).startswith(str(config.output))
    what = "cannot write" if inside else "cannot read"
    error = f"{where}: {what} ({exc.strerror or exc})"
    return UsageError(error) if inside else DataError(error)


def _forget_changed_sources(
    config: BuildConfig, layout: SourceLayout, state: OutputState, journal: Journal
) -> None:
    """Strike from the journal the shards of a split whose archives changed since they were made.

    A resume takes the recorded options, which know the archives by name and size, as proof
    that OUT holds the same build; a new download of the same size (another modification
    time) would otherwise keep shards made from the old file. The archives of each split are
    recorded in OUT (the training shards also carry the boxes).
    """
    now: dict[str, tuple[tuple[str, int, int], ...]] = {}
    for split, paths in (
        ("train", (layout.train, layout.boxes)),
        ("validation", (layout.validation,)),
    ):
        files = [(p.name, p.stat()) for p in paths if p is not None and p.is_file()]
        if split in config.splits and files:
            now[split] = tuple((name, st.st_size, st.st_mtime_ns) for name, st in files)
    recorded = state.read_sources().splits
    for split, identity in now.items():
        if recorded.get(split) not in (None, identity):
            log.warning(
                "the %s archives changed since the earlier run (%s): its shards will be made again",
                split,
                ", ".join(name for name, _size, _mtime in identity),
            )
            journal.forget(partial(_of_split, split))
    state.write_sources(RecordedSources({**recorded, **now}))


def _check_devkit(future: Future[Devkit], extra: dict[str, Any]) -> None:
    """The devkit's validation labels must be the shipped ones (they label the records)."""
    validation_labels(_aside_result(future))
    extra["validation_labels"] = "devkit"


def _read_devkit_aside(path: Path) -> Devkit:
    """``read_devkit`` in a helper process: its scipy import brings OpenBLAS, whose idle
    threads spin for a while after starting (about 0.1 CPU s on this 2-core machine) though
    the build does no linear algebra. A process of its own is told to start one thread; in
    any other process (an inline executor) the environment is left alone.
    """
    import multiprocessing

    if multiprocessing.parent_process() is not None and "numpy" not in sys.modules:
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    return read_devkit(path)


def _build(
    config: BuildConfig,
    layout: SourceLayout,
    executor: Executor,
    reporter: Reporter,
    started: float,
    need: _Need,
) -> BuildResult:
    out = config.output
    synsets = load_synsets()
    state = OutputState(out)
    warnings: list[str] = []
    skipped: list[dict[str, str]] = []

    # The training archive is indexed beside the pool (its fork server boots meanwhile)
    # while this process parses the box XMLs, then indexes the small validation archive.
    train_future = None
    if "train" in config.splits:
        # Said here: the helper process has no log handler of its own.
        log.info(
            "indexing %s in a helper process (or reusing its index from an earlier run)",
            layout.train,
        )
        train_future = executor.run_aside(index_train_detached, layout, state)
    md5_pending = _hash_aside(config, layout, state, executor)
    boxes = load_boxes(
        layout, synsets, skip_bad=config.on_error == "skip", map_unordered=executor.map_unordered
    )
    # The devkit can only confirm the shipped validation labels (a disagreement is an error),
    # so the shards do not wait for it: it is read beside them, once the start-up it would
    # slow down is over, and checked as soon as it is read, at the latest before the manifest.
    devkit_future = (
        executor.run_aside(_read_devkit_aside, layout.devkit)
        if layout.devkit is not None and "validation" in config.splits
        else None
    )
    found: dict[str, SplitIndex] = {}
    download_of: dict[str, dict[str, Any]] = {}
    extra: dict[str, Any] = {}
    # Validation first: it is indexed here while the training archive still is over there.
    for split in sorted(config.splits, key=lambda name: name == "train"):
        if split == "train":
            assert train_future is not None
            found[split] = _aside_result(train_future)
        else:
            extra["validation_labels"] = "shipped"
            if devkit_future is not None and devkit_future.done():
                _check_devkit(devkit_future, extra)
                devkit_future = None
            labels = validation_labels(None)
            found[split] = index_validation(layout, synsets, labels, state)
        archive = layout.images(split)
        md5 = None
        if archive is not None and _md5_wanted(config, archive):
            future = md5_pending.get(split)
            if future is None:
                md5 = cached_md5(state, archive)
            elif future.done():  # hashed already (an inline executor, a small file): check now
                md5 = _aside_result(md5_pending.pop(split))
                record_md5(state, archive, md5)
        entry = _check_download(config, found[split], md5)
        if entry is not None:
            download_of[split] = entry
        log.info("%s: %d images", split, len(found[split]))
    indexes = {split: found[split] for split in config.splits}
    downloads = [download_of[split] for split in config.splits if split in download_of]
    if boxes is not None:
        csv = boxes.csv_bytes()
        write_if_changed(out / BOX_CSV, csv)
        extra["bounding_boxes"] = _file_entry(
            BOX_CSV, csv, images=len(boxes), **asdict(boxes.stats)
        )
        skipped.extend({"file": where, "reason": why} for where, why in boxes.skipped)
        log.info(
            "boxes: %d kept for %d images from %d XML files",
            boxes.stats.boxes_kept,
            len(boxes),
            boxes.stats.files,
        )
        official = any(d.get("official") and d["name"] == TRAIN_ARCHIVE for d in downloads)
        if official and boxes.stats.files != OFFICIAL_BOX_FILES:
            warnings.append(
                f"{layout.boxes}: {boxes.stats.files:,} XML files, the official box archive "
                f"holds {OFFICIAL_BOX_FILES:,}"
            )
    foreign = [path for path in state.read_foreign() if (out / path).exists()]
    if foreign:
        shown = ", ".join(foreign[:5]) + (
            f" and {len(foreign) - 5} more" if len(foreign) > 5 else ""
        )
        warnings.append(
            f"{out}: {len(foreign)} files that imagenet-prep did not write were left alone "
            f"(--overwrite removes only a build's own files): {shown}"
        )
    for message in warnings:
        log.warning("%s", message)

    write_if_changed(out / LABELS_TXT, _labels_txt(synsets, config.label_offset))

    journal = state.journal()
    _forget_changed_sources(config, layout, state, journal)
    records = journal.load()
    plans = shard_plans(config, indexes)
    done: dict[str, ShardResult] = {}
    for formats, specs in plans:
        for spec in specs:
            result = _finished(config, formats, spec, records)
            if result is not None:
                done[spec.name] = result
    reused = len(done)
    # An image passes through each plan group of its split (formats with their own shard
    # counts); progress counts it once, a share per group.
    groups = {split: sum(specs[0].split == split for _f, specs in plans) for split in indexes}
    done_images = sum(_share(r, groups, r.images + len(r.skipped)) for r in done.values())
    done_bytes = sum(_share(r, groups, r.bytes_in) for r in done.values())
    total_images = sum(len(index) for index in indexes.values())
    if reused:
        log.info(
            "resuming: %s of %s images already written (%s output files kept)",
            f"{round(done_images):,}",
            f"{total_images:,}",
            f"{sum(_output_files(r) for r in done.values()):,}",
        )
    done_output = sum(_output_bytes(r) for r in done.values())
    check_disk(config, indexes, done_output)
    need.bytes = disk_need(config, indexes, done_output)
    state.record_outputs(_planned_files(config, indexes, synsets, plans))

    results = dict(done)
    written = 0
    reporter.start(
        total_images,
        sum(index.total_bytes() for index in indexes.values()),
        round(done_images),
        round(done_bytes),
    )
    try:
        jobs = _jobs(config, indexes, synsets, boxes, plans, done)
        for batch in executor.map_unordered(process_shards, batched(jobs, TASK_IMAGES)):
            journal.extend(batch)
            for result in batch:
                results[result.shard] = result
                written += 1
                reporter.update(
                    _share(result, groups, result.images + len(result.skipped)),
                    _share(result, groups, result.bytes_in),
                )
    finally:
        reporter.close()
        journal.close()
    _finish_md5(config, layout, state, md5_pending, download_of, journal)
    if devkit_future is not None:
        if not devkit_future.done():
            log.info("waiting for the devkit check of the validation labels")
        _check_devkit(devkit_future, extra)

    manifest = _manifest(config, layout, indexes, synsets, results, extra, foreign)
    manifest["downloads"] = downloads
    manifest["warnings"] = warnings
    manifest["skipped"] = skipped + manifest["skipped"]
    write_manifest(out, manifest)
    journal.remove()
    state.remove_parts()  # joined into the formats' files
    fresh = [r for k, r in results.items() if k not in done and config.formats[0] in r.outputs]
    return BuildResult(
        output=out,
        images={s: len(i) for s, i in indexes.items()},
        shards_written=written,
        shards_reused=reused,
        reencoded=manifest["reencoded"],
        skipped=manifest["skipped"],
        warnings=warnings,
        seconds=time.perf_counter() - started,
        bytes_in=sum(r.bytes_in for r in fresh),
        images_written=sum(r.images for r in fresh),
        files_written=sum(_output_files(r) for k, r in results.items() if k not in done)
        + sum(len(f.get("side_files", ())) for f in manifest["formats"].values()),
        files_reused=sum(_output_files(r) for r in done.values()),
        manifest=manifest,
    )


def _manifest(
    config: BuildConfig,
    layout: SourceLayout,
    indexes: dict[str, SplitIndex],
    synsets: Synsets,
    results: dict[str, ShardResult],
    extra: dict[str, Any],
    foreign: list[str],
) -> dict[str, Any]:
    options = SinkOptions(out=config.output, label_offset=config.label_offset)
    ordered = [results[k] for k in sorted(results)]
    # Every image passes through each plan group; count and list it once, from one group.
    primary = [r for r in ordered if config.formats[0] in r.outputs]
    formats = {}
    for name in config.formats:
        sink = get_sink(name, options)
        formats[name] = sink.finalize([r.outputs[name] for r in ordered if name in r.outputs])
        folder = sink.root.relative_to(config.output).as_posix() + "/"
        # A user's files that --overwrite left in the format's folder: named, not checked.
        mine = [path for path in foreign if path.startswith(folder)]
        if mine:
            formats[name]["foreign"] = mine
    if "webdataset" in formats:
        formats["webdataset"]["shard_size"] = {
            split: -(-len(index) // config.webdataset_shards(len(index), index.total_bytes()))
            for split, index in indexes.items()
        }
    splits = {}
    for split, index in indexes.items():
        per_class: dict[str, int] = {}
        for label in index.labels:
            wnid = synsets.wnids[label]
            per_class[wnid] = per_class.get(wnid, 0) + 1
        split_results = [r for r in primary if r.split == split]
        splits[split] = {
            "images": len(index),
            "written": sum(r.images for r in split_results),
            "skipped": sum(len(r.skipped) for r in split_results),
            "bytes": index.total_bytes(),
            "classes": len(per_class),
            "per_class": dict(sorted(per_class.items())),
            "shards": config.shards(split),
            "ignored_inputs": len(index.ignored),
        }
    labels = (config.output / LABELS_TXT).read_bytes()
    return {
        "format_version": FORMAT_VERSION,
        "tool": {"name": "imagenet-prep", "version": __version__},
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "options": config.output_options(),
        "source": {
            "root": str(layout.root.resolve()),
            "archives": [{"name": p.name, "bytes": p.stat().st_size} for p in layout.archives()],
        },
        "splits": splits,
        "labels": _file_entry(LABELS_TXT, labels, label_offset=config.label_offset),
        **extra,
        "formats": formats,
        "reencoded": [
            {"image": origin, "reason": reason} for r in primary for origin, reason in r.reencoded
        ],
        "skipped": [
            {"image": origin, "reason": reason} for r in primary for origin, reason in r.skipped
        ],
    }
