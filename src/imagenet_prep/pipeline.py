"""``build``: sources -> index -> plan -> executor maps process_shard -> manifest."""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Iterator
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO, Protocol, TypeVar

from . import __version__, imagefix
from .archive import read_at
from .config import OFFICIAL_BOX_FILES, BuildConfig
from .errors import DataError, ImagenetPrepError, UsageError
from .executors import Executor, WorkerDied, make_executor
from .fsutil import write_bytes_atomic, xxh3_of
from .labels import Synsets, load_synsets, read_devkit, validation_labels
from .manifest import (
    FORMAT_VERSION,
    MANIFEST,
    OPTIONS_FILE,
    STATE_DIR,
    Journal,
    read_json,
    state_dir,
    write_json,
    write_manifest,
)
from .plan import ShardSpec, plan_split, shuffled_order
from .resize import ResizeSpec, resize_jpeg
from .sample import ImageRef, Sample
from .sinks import SinkOptions, get_sink
from .sources import (
    TRAIN_ARCHIVE,
    BoxTable,
    SourceLayout,
    SplitIndex,
    discover,
    index_train,
    index_validation,
    load_boxes,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

BOX_CSV = "imagenet_2012_bounding_boxes.csv"
LABELS_TXT = "labels.txt"
_EXPECTED_INPUT = {
    "train": "ILSVRC2012_img_train.tar or a train/ folder",
    "validation": "ILSVRC2012_img_val.tar, or a validation/ or val/ folder",
}
# Output bytes per input byte, per image format, for the disk-space estimate.
_SIZE_FACTOR = {"tfrecord": 1.01, "imagefolder": 1.0, "webdataset": 1.03}
_DISK_MARGIN = 64 << 20


class ResourceError(ImagenetPrepError):
    """The machine lacks something the build needs (disk space)."""


@dataclass(frozen=True)
class ShardJob:
    """One unit of work: a shard's images, where to write them, and the error policy."""

    spec: ShardSpec
    refs: tuple[ImageRef, ...]
    formats: tuple[str, ...]
    options: SinkOptions
    skip_bad: bool = False
    decode_check: bool = False
    resize: ResizeSpec | None = None


@dataclass(frozen=True)
class ShardResult:
    """What a finished shard reports back (and what its done marker keeps)."""

    shard: str
    split: str
    images: int
    bytes_in: int
    reencoded: list[list[str]]
    skipped: list[list[str]]
    outputs: dict[str, dict[str, Any]]


@dataclass
class BuildResult:
    """Summary of a finished build."""

    output: Path
    images: dict[str, int]
    shards_written: int
    shards_reused: int
    reencoded: list[dict[str, str]]
    skipped: list[dict[str, str]]
    warnings: list[str]
    seconds: float
    bytes_in: int
    images_written: int
    already_complete: bool = False
    manifest: dict[str, Any] = field(default_factory=dict, repr=False)


class Reporter(Protocol):
    """Receives progress; the CLI draws a bar or logs lines, the library stays silent."""

    def start(self, images: int, nbytes: int, done_images: int, done_bytes: int) -> None: ...

    def update(self, result: ShardResult) -> None: ...

    def close(self) -> None: ...


class _Silent:
    def start(self, images: int, nbytes: int, done_images: int, done_bytes: int) -> None:
        pass

    def update(self, result: ShardResult) -> None:
        pass

    def close(self) -> None:
        pass


def _read_fixed(
    f: BinaryIO, ref: ImageRef, decode_check: bool
) -> tuple[bytes, imagefix.FixedImage]:
    raw = read_at(f, ref.offset, ref.size, ref.origin)
    imagefix.check(raw, ref.origin)
    if decode_check:
        imagefix.decode_check(raw, ref.origin)
    return raw, imagefix.fix(raw, ref.origin)


def process_shard(job: ShardJob) -> ShardResult:
    """Read a shard's images, fix their bytes, and hand each to every format's writer."""
    sinks = [get_sink(name, job.options) for name in job.formats]
    writers = [s.open_shard(job.spec) for s in sinks]
    reencoded: list[list[str]] = []
    skipped: list[list[str]] = []
    bytes_in = 0
    written = 0
    current: tuple[str, BinaryIO] | None = None
    try:
        for ref in job.refs:
            if current is None or current[0] != ref.path:
                if current is not None:
                    current[1].close()
                    current = None
                try:
                    current = (ref.path, open(ref.path, "rb"))  # noqa: SIM115
                except OSError as exc:
                    raise DataError(f"{ref.origin}: cannot read ({exc.strerror})") from None
            try:
                raw, fixed = _read_fixed(current[1], ref, job.decode_check)
            except DataError as exc:
                if not job.skip_bad:
                    raise
                skipped.append([ref.origin, str(exc)])
                continue
            bytes_in += len(raw)
            if fixed.reencoded is not None:
                reencoded.append([ref.origin, fixed.reencoded])
            data, width, height = fixed.data, fixed.width, fixed.height
            resized = None
            if job.resize is not None:
                resized = resize_jpeg(data, width, height, job.resize, ref.origin)
                if resized is not None:
                    data, width, height = resized
            sample = Sample(
                ref=ref,
                raw=raw,
                data=data,
                width=width,
                height=height,
                reencoded=fixed.reencoded,
                resized=resized is not None,
            )
            for writer in writers:
                writer.add(sample)
            written += 1
        outputs = {s.name: w.commit() for s, w in zip(sinks, writers, strict=True)}
    except BaseException:
        for writer in writers:
            writer.abort()
        raise
    finally:
        if current is not None:
            current[1].close()
    return ShardResult(
        shard=job.spec.name,
        split=job.spec.split,
        images=written,
        bytes_in=bytes_in,
        reencoded=reencoded,
        skipped=skipped,
        outputs=outputs,
    )


# --- the output folder ---------------------------------------------------------------


def _recorded_options(config: BuildConfig, layout: SourceLayout) -> dict[str, Any]:
    """What decides the output's bytes: the options and the identity of the input archives."""
    return {
        **config.output_options(),
        "source_archives": {p.name: p.stat().st_size for p in layout.archives()},
    }


def _prepare_output(config: BuildConfig, options: dict[str, Any]) -> bool:
    """Create OUT, or check it holds a build with the same options. True if it is finished."""
    out = config.output
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out}: output path exists and is not a folder")
    recorded_path = state_dir(out) / OPTIONS_FILE
    if out.is_dir():
        try:
            recorded = read_json(recorded_path)
        except DataError:
            recorded = {}
        if recorded is None and any(out.iterdir()):
            raise UsageError(
                f"{out}: output folder is not empty and holds no imagenet-prep build; "
                "choose a new or empty folder"
            )
        if recorded is not None and recorded != options:
            if not config.overwrite:
                changed = sorted(k for k in options if recorded.get(k) != options[k])
                raise UsageError(
                    f"{out}: holds a build made with different options "
                    f"({', '.join(changed) or 'unreadable record'}); use --overwrite to replace "
                    "it, or a new output folder"
                )
            _clear_output(out)
        elif recorded is not None and (out / MANIFEST).is_file():
            return True
    try:
        out.mkdir(parents=True, exist_ok=True)
        write_json(recorded_path, options)
    except OSError as exc:
        raise UsageError(f"{out}: cannot write to the output folder ({exc.strerror})") from None
    return False


def _clear_output(out: Path) -> None:
    """Remove what an earlier build wrote (only the names this tool writes)."""
    log.info("removing the earlier build in %s", out)
    (out / MANIFEST).unlink(missing_ok=True)
    for name in ("tfrecord", "imagefolder", STATE_DIR):
        shutil.rmtree(out / name, ignore_errors=True)
    for name in (BOX_CSV, LABELS_TXT):
        (out / name).unlink(missing_ok=True)


def _remove_temporaries(out: Path) -> None:
    """Delete files left under temporary names by an interrupted run."""
    for dirpath, _dirs, files in os.walk(out):
        for name in files:
            if name.startswith(".") and name.endswith(".incomplete"):
                os.unlink(os.path.join(dirpath, name))


def _write_if_changed(path: Path, data: bytes) -> None:
    """Write ``data`` atomically unless ``path`` already holds exactly it."""
    try:
        if path.stat().st_size == len(data) and path.read_bytes() == data:
            return
    except OSError:
        pass
    write_bytes_atomic(path, data)


def _labels_txt(synsets: Synsets, offset: int) -> bytes:
    lines = [f"{i + offset}\t{w}\t{synsets.text(w)}\n" for i, w in enumerate(synsets.wnids)]
    return "".join(lines).encode("utf-8")


def _file_entry(name: str, data: bytes, **extra: Any) -> dict[str, Any]:
    return {"file": name, "bytes": len(data), "xxh3_128": xxh3_of(data), **extra}


def _check_download(
    config: BuildConfig, index: SplitIndex, warnings: list[str]
) -> dict[str, Any] | None:
    """Compare an archive with the published one of the same name and size (MD5, counts)."""
    archive = index.archive
    if archive is None:
        return None
    name = os.path.basename(archive.path)
    known = config.known_archive(name, archive.size)
    entry: dict[str, Any] = {"name": name, "bytes": archive.size, "md5": archive.md5}
    if known is None:
        return entry
    entry["official"] = True
    if config.check_md5 and archive.md5 is not None:
        if archive.md5 != known.md5:
            raise DataError(
                f"{archive.path}: MD5 {archive.md5} differs from the published {known.md5} for "
                "this file: the download is damaged (download it again, or pass --no-md5 to "
                "use it anyway)"
            )
        entry["md5_verified"] = True
    classes = len(set(index.labels))
    if len(index) != known.images or classes != known.classes:
        warnings.append(
            f"{archive.path}: {len(index):,} images in {classes} classes, the official archive "
            f"holds {known.images:,} in {known.classes}"
        )
    return entry


def _aside_result(future: Future[T]) -> T:
    """The result of a task run beside the pool; its own errors are re-raised as they were."""
    try:
        return future.result()
    except BrokenProcessPool:
        raise WorkerDied("a helper process died (killed, or out of memory)") from None


def _load_boxes(layout: SourceLayout, skip_bad: bool) -> BoxTable | None:
    """Picklable entry point: the training boxes, parsed in whichever process runs it."""
    return load_boxes(layout, load_synsets(), skip_bad=skip_bad)


def _check_disk(config: BuildConfig, indexes: dict[str, SplitIndex], done_bytes: int) -> None:
    need = sum(_SIZE_FACTOR[f] for f in config.formats) * sum(
        i.total_bytes() for i in indexes.values()
    )
    need = int(need) - done_bytes + _DISK_MARGIN
    free = shutil.disk_usage(config.output).free
    if need > free and not config.force:
        raise ResourceError(
            f"{config.output}: the build needs about {need / 1e9:,.1f} GB more and the file "
            f"system has {free / 1e9:,.1f} GB free; free some space, or pass --force to start "
            "anyway"
        )


# --- build ---------------------------------------------------------------------------


def shard_plans(
    config: BuildConfig, indexes: dict[str, SplitIndex]
) -> list[tuple[tuple[str, ...], list[ShardSpec]]]:
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


def _jobs(
    config: BuildConfig,
    indexes: dict[str, SplitIndex],
    synsets: Synsets,
    boxes: BoxTable | None,
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
    for formats, specs in shard_plans(config, indexes):
        for spec in specs:
            if spec.name in done:
                continue
            index, order = indexes[spec.split], orders[spec.split]
            refs = tuple(index.ref(order[j], synsets, boxes) for j in range(spec.start, spec.stop))
            yield ShardJob(
                spec=spec,
                refs=refs,
                formats=formats,
                options=options,
                skip_bad=config.on_error == "skip",
                decode_check=config.decode_check,
                resize=resize,
            )


def _finished(
    config: BuildConfig,
    formats: tuple[str, ...],
    spec: ShardSpec,
    records: dict[str, dict[str, Any]],
) -> ShardResult | None:
    """The recorded result of a shard finished by an earlier run, if its outputs are all there."""
    data = records.get(spec.name)
    if data is None:
        return None
    try:
        result = ShardResult(**data)
    except TypeError:
        return None
    if set(result.outputs) != set(formats):
        return None
    for output in result.outputs.values():
        if "file" in output:
            path = config.output / output["file"]
            if not path.is_file() or path.stat().st_size != output["bytes"]:
                return None
    return result


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
    started = time.perf_counter()
    out = config.output
    layout = discover(config.source)
    for split in config.splits:
        if (layout.train if split == "train" else layout.validation) is None:
            raise DataError(
                f"{config.source}: the {split} split was requested but its input is missing "
                f"({_EXPECTED_INPUT[split]})"
            )
    if _prepare_output(config, _recorded_options(config, layout)):
        return _complete_result(config, started)
    _remove_temporaries(out)
    # Entering the executor starts its workers, which boot while the inputs are indexed.
    with executor or make_executor(config.workers) as pool:
        return _build(config, layout, pool, reporter or _Silent(), started)


def _build(
    config: BuildConfig,
    layout: SourceLayout,
    executor: Executor,
    reporter: Reporter,
    started: float,
) -> BuildResult:
    out = config.output
    synsets = load_synsets()
    state = state_dir(out)
    warnings: list[str] = []
    skipped: list[dict[str, str]] = []

    # The box XMLs are parsed beside the pool while this process indexes the image archives.
    boxes_future = executor.run_aside(_load_boxes, layout, config.on_error == "skip")
    devkit_future = (
        executor.run_aside(read_devkit, layout.devkit)
        if layout.devkit is not None and "validation" in config.splits
        else None
    )
    indexes: dict[str, SplitIndex] = {}
    downloads = []
    extra: dict[str, Any] = {}
    for split in config.splits:
        archive = layout.train if split == "train" else layout.validation
        if archive is None:  # pragma: no cover - build() checked every requested split
            raise DataError(f"{layout.root}: no input for the {split} split")
        md5 = (
            config.check_md5
            and archive.is_file()
            and config.known_archive(archive.name, archive.stat().st_size) is not None
        )
        if split == "train":
            indexes[split] = index_train(layout, synsets, state, md5=md5)
        else:
            devkit = _aside_result(devkit_future) if devkit_future is not None else None
            extra["validation_labels"] = "devkit" if devkit is not None else "shipped"
            labels = validation_labels(devkit)
            indexes[split] = index_validation(layout, synsets, labels, state, md5=md5)
        entry = _check_download(config, indexes[split], warnings)
        if entry is not None:
            downloads.append(entry)
        log.info("%s: %d images", split, len(indexes[split]))
    boxes = _aside_result(boxes_future)
    if boxes is not None:
        csv = boxes.csv_bytes()
        _write_if_changed(out / BOX_CSV, csv)
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
    for message in warnings:
        log.warning("%s", message)

    _write_if_changed(out / LABELS_TXT, _labels_txt(synsets, config.label_offset))

    journal = Journal(out)
    records = journal.load()
    done: dict[str, ShardResult] = {}
    for formats, specs in shard_plans(config, indexes):
        for spec in specs:
            result = _finished(config, formats, spec, records)
            if result is not None:
                done[spec.name] = result
    reused = len(done)
    plans = shard_plans(config, indexes)
    done_images = sum(r.images + len(r.skipped) for r in done.values())
    done_bytes = sum(r.bytes_in for r in done.values())
    if reused:
        log.info("resuming: %d shards (%d images) already finished", reused, done_images)
    _check_disk(config, indexes, sum(_output_bytes(r) for r in done.values()))

    results = dict(done)
    written = 0
    reporter.start(
        sum(len(indexes[specs[0].split]) for _f, specs in plans),
        sum(indexes[specs[0].split].total_bytes() for _f, specs in plans),
        done_images,
        done_bytes,
    )
    try:
        for result in executor.map_unordered(
            process_shard, _jobs(config, indexes, synsets, boxes, done)
        ):
            journal.append(asdict(result))
            results[result.shard] = result
            written += 1
            reporter.update(result)
    finally:
        reporter.close()
        journal.close()

    manifest = _manifest(config, layout, indexes, synsets, results, extra)
    manifest["downloads"] = downloads
    manifest["warnings"] = warnings
    manifest["skipped"] = skipped + manifest["skipped"]
    write_manifest(out, manifest)
    journal.remove()
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
        manifest=manifest,
    )


def _manifest(
    config: BuildConfig,
    layout: SourceLayout,
    indexes: dict[str, SplitIndex],
    synsets: Synsets,
    results: dict[str, ShardResult],
    extra: dict[str, Any],
) -> dict[str, Any]:
    options = SinkOptions(out=config.output, label_offset=config.label_offset)
    ordered = [results[k] for k in sorted(results)]
    # Every image passes through each plan group; count and list it once, from one group.
    primary = [r for r in ordered if config.formats[0] in r.outputs]
    formats = {}
    for name in config.formats:
        sink = get_sink(name, options)
        formats[name] = sink.finalize([r.outputs[name] for r in ordered if name in r.outputs])
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
