"""``build``: sources -> index -> plan -> executor maps process_shard -> manifest."""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO

from . import __version__, imagefix
from .archive import read_at
from .config import BuildConfig
from .errors import DataError, UsageError
from .executors import Executor, make_executor
from .fsutil import write_bytes_atomic, xxh3_of
from .labels import Synsets, load_synsets, read_devkit, validation_labels
from .manifest import (
    FORMAT_VERSION,
    MANIFEST,
    OPTIONS_FILE,
    STATE_DIR,
    read_done,
    read_json,
    state_dir,
    write_done,
    write_json,
    write_manifest,
)
from .plan import ShardSpec, plan_split, shuffled_order
from .sample import ImageRef, Sample
from .sinks import SinkOptions, get_sink
from .sources import (
    BoxTable,
    SourceLayout,
    SplitIndex,
    discover,
    index_train,
    index_validation,
    load_boxes,
)

log = logging.getLogger(__name__)

BOX_CSV = "imagenet_2012_bounding_boxes.csv"
LABELS_TXT = "labels.txt"
_EXPECTED_INPUT = {
    "train": "ILSVRC2012_img_train.tar or a train/ folder",
    "validation": "ILSVRC2012_img_val.tar, or a validation/ or val/ folder",
}


@dataclass(frozen=True)
class ShardJob:
    """One unit of work: a shard's images and where to write them. Picklable."""

    spec: ShardSpec
    refs: tuple[ImageRef, ...]
    formats: tuple[str, ...]
    options: SinkOptions


@dataclass(frozen=True)
class ShardResult:
    """What a finished shard reports back (and what its done marker keeps)."""

    shard: str
    split: str
    images: int
    bytes_in: int
    reencoded: list[list[str]]
    outputs: dict[str, dict[str, Any]]
    seconds: float = 0.0


@dataclass
class BuildResult:
    """Summary of a finished build."""

    output: Path
    images: dict[str, int]
    shards_written: int
    shards_reused: int
    reencoded: list[dict[str, str]]
    seconds: float
    bytes_in: int
    manifest: dict[str, Any] = field(repr=False)


Progress = Callable[[ShardResult, bool], None]


def process_shard(job: ShardJob) -> ShardResult:
    """Read a shard's images, fix their bytes, and hand each to every format's writer."""
    start = time.perf_counter()
    sinks = [get_sink(name, job.options) for name in job.formats]
    writers = [s.open_shard(job.spec) for s in sinks]
    reencoded: list[list[str]] = []
    bytes_in = 0
    current: tuple[str, BinaryIO] | None = None
    try:
        for ref in job.refs:
            if current is None or current[0] != ref.path:
                if current is not None:
                    current[1].close()
                try:
                    current = (ref.path, open(ref.path, "rb"))  # noqa: SIM115
                except OSError as exc:
                    raise DataError(f"{ref.origin}: cannot read ({exc.strerror})") from None
            raw = read_at(current[1], ref.offset, ref.size, ref.origin)
            bytes_in += len(raw)
            imagefix.check(raw, ref.origin)
            fixed = imagefix.fix(raw, ref.origin)
            if fixed.reencoded is not None:
                reencoded.append([ref.origin, fixed.reencoded])
            sample = Sample(
                ref=ref,
                raw=raw,
                data=fixed.data,
                width=fixed.width,
                height=fixed.height,
                reencoded=fixed.reencoded,
            )
            for writer in writers:
                writer.add(sample)
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
        images=len(job.refs),
        bytes_in=bytes_in,
        reencoded=reencoded,
        outputs=outputs,
        seconds=time.perf_counter() - start,
    )


# --- the output folder ---------------------------------------------------------------


def _prepare_output(config: BuildConfig, overwrite: bool) -> None:
    """Create OUT, or check that it holds a build with the same byte-changing options."""
    out = config.output
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out}: output path exists and is not a folder")
    options = config.output_options()
    recorded_path = state_dir(out) / OPTIONS_FILE
    if out.is_dir():
        recorded = read_json(recorded_path)
        if recorded is None and any(out.iterdir()):
            raise UsageError(
                f"{out}: output folder is not empty and holds no imagenet-prep build; "
                "choose a new or empty folder"
            )
        if recorded is not None and recorded != options:
            if not overwrite:
                changed = sorted(k for k in options if recorded.get(k) != options[k])
                raise UsageError(
                    f"{out}: holds a build made with different options ({', '.join(changed)}); "
                    "use --overwrite to replace it, or a new output folder"
                )
            _clear_output(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        write_json(recorded_path, options)
    except OSError as exc:
        raise UsageError(f"{out}: cannot write to the output folder ({exc.strerror})") from None


def _clear_output(out: Path) -> None:
    """Remove what an earlier build wrote (only the names this tool writes)."""
    log.info("removing the earlier build in %s", out)
    for name in ("tfrecord", "imagefolder", STATE_DIR):
        shutil.rmtree(out / name, ignore_errors=True)
    for name in (MANIFEST, BOX_CSV, LABELS_TXT):
        (out / name).unlink(missing_ok=True)


def _remove_temporaries(out: Path) -> None:
    """Delete files left under temporary names by an interrupted run."""
    for dirpath, _dirs, files in os.walk(out):
        for name in files:
            if name.startswith(".") and name.endswith(".incomplete"):
                os.unlink(os.path.join(dirpath, name))


def _labels_txt(synsets: Synsets, offset: int) -> bytes:
    lines = [f"{i + offset}\t{w}\t{synsets.text(w)}\n" for i, w in enumerate(synsets.wnids)]
    return "".join(lines).encode("utf-8")


def _file_entry(out: Path, name: str, data: bytes, **extra: Any) -> dict[str, Any]:
    return {"file": name, "bytes": len(data), "xxh3_128": xxh3_of(data), **extra}


# --- build ---------------------------------------------------------------------------


def _jobs(
    config: BuildConfig,
    indexes: dict[str, SplitIndex],
    synsets: Synsets,
    boxes: BoxTable | None,
    done: dict[str, ShardResult],
) -> Iterator[ShardJob]:
    options = SinkOptions(out=config.output, label_offset=config.label_offset)
    for split, index in indexes.items():
        order = shuffled_order(len(index), config.seed)
        for spec in plan_split(split, len(index), config.shards(split)):
            if spec.name in done:
                continue
            refs = tuple(index.ref(order[j], synsets, boxes) for j in range(spec.start, spec.stop))
            yield ShardJob(spec=spec, refs=refs, formats=config.formats, options=options)


def _finished(config: BuildConfig, spec: ShardSpec) -> ShardResult | None:
    """The recorded result of a shard finished by an earlier run, if its outputs are all there."""
    data = read_done(config.output, spec.name)
    if data is None:
        return None
    try:
        result = ShardResult(**data)
    except TypeError:
        return None
    if set(result.outputs) != set(config.formats):
        return None
    tf = result.outputs.get("tfrecord")
    if tf is not None:
        path = config.output / tf["file"]
        if not path.is_file() or path.stat().st_size != tf["bytes"]:
            return None
    return result


def build(
    config: BuildConfig,
    *,
    overwrite: bool = False,
    executor: Executor | None = None,
    progress: Progress | None = None,
) -> BuildResult:
    """Run the whole flow for ``config``; return a summary. Raises DataError/UsageError."""
    started = time.perf_counter()
    out = config.output
    layout = discover(config.source)
    for split in config.splits:
        if (layout.train if split == "train" else layout.validation) is None:
            raise DataError(
                f"{config.source}: the {split} split was requested but its input is missing "
                f"({_EXPECTED_INPUT[split]})"
            )
    _prepare_output(config, overwrite)
    _remove_temporaries(out)
    synsets = load_synsets()
    state = state_dir(out)

    boxes = load_boxes(layout, synsets)
    extra: dict[str, Any] = {}
    if boxes is not None:
        csv = boxes.csv_bytes()
        write_bytes_atomic(out / BOX_CSV, csv)
        extra["bounding_boxes"] = _file_entry(
            out,
            BOX_CSV,
            csv,
            images=len(boxes),
            **asdict(boxes.stats),
        )
        log.info(
            "boxes: %d kept for %d images from %d XML files",
            boxes.stats.boxes_kept,
            len(boxes),
            boxes.stats.files,
        )

    indexes: dict[str, SplitIndex] = {}
    for split in config.splits:
        if split == "train":
            indexes[split] = index_train(layout, synsets, state)
        else:
            devkit = read_devkit(layout.devkit) if layout.devkit is not None else None
            extra["validation_labels"] = "devkit" if devkit is not None else "shipped"
            indexes[split] = index_validation(layout, synsets, validation_labels(devkit), state)
        log.info("%s: %d images", split, len(indexes[split]))

    labels = _labels_txt(synsets, config.label_offset)
    write_bytes_atomic(out / LABELS_TXT, labels)

    done: dict[str, ShardResult] = {}
    for split, index in indexes.items():
        for spec in plan_split(split, len(index), config.shards(split)):
            result = _finished(config, spec)
            if result is not None:
                done[spec.name] = result
    reused = len(done)
    if reused:
        log.info("resuming: %d shards already finished", reused)

    executor = executor or make_executor(config.workers)
    results = dict(done)
    written = 0
    for result in executor.map_unordered(
        process_shard, _jobs(config, indexes, synsets, boxes, done)
    ):
        write_done(out, result.shard, asdict(result))
        results[result.shard] = result
        written += 1
        if progress is not None:
            progress(result, False)

    manifest = _manifest(config, layout, indexes, synsets, results, labels, extra)
    write_manifest(out, manifest)
    return BuildResult(
        output=out,
        images={s: len(i) for s, i in indexes.items()},
        shards_written=written,
        shards_reused=reused,
        reencoded=manifest["reencoded"],
        seconds=time.perf_counter() - started,
        bytes_in=sum(r.bytes_in for r in results.values()),
        manifest=manifest,
    )


def _manifest(
    config: BuildConfig,
    layout: SourceLayout,
    indexes: dict[str, SplitIndex],
    synsets: Synsets,
    results: dict[str, ShardResult],
    labels: bytes,
    extra: dict[str, Any],
) -> dict[str, Any]:
    options = SinkOptions(out=config.output, label_offset=config.label_offset)
    ordered = [results[k] for k in sorted(results)]
    formats = {}
    for name in config.formats:
        sink = get_sink(name, options)
        formats[name] = sink.finalize([r.outputs[name] for r in ordered])
    splits = {}
    for split, index in indexes.items():
        per_class: dict[str, int] = {}
        for label in index.labels:
            wnid = synsets.wnids[label]
            per_class[wnid] = per_class.get(wnid, 0) + 1
        splits[split] = {
            "images": len(index),
            "bytes": index.total_bytes(),
            "classes": len(per_class),
            "per_class": dict(sorted(per_class.items())),
            "shards": config.shards(split),
            "ignored_inputs": len(index.ignored),
        }
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
        "labels": _file_entry(config.output, LABELS_TXT, labels, label_offset=config.label_offset),
        **extra,
        "formats": formats,
        "reencoded": [
            {"image": origin, "reason": reason} for r in ordered for origin, reason in r.reencoded
        ],
        "skipped": [],
    }
