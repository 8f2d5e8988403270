"""Phase 4, finish: the checks that ran beside the shards, the formats' final files, the
manifest (written last: its presence means the build is complete), the summary."""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any

from .. import __version__
from ..config import BuildConfig
from ..errors import DataError
from ..formats import get_format, get_sink
from ..formats.base import SinkOptions
from ..fsutil import read_bytes
from ..labels import Synsets
from ..manifest import Journal, Manifest, OutputState, ShardResult, write_manifest
from ..outdir import LABELS_TXT
from ..sources import SourceLayout, SplitIndex
from ..storage import is_url, redact, tally_writes
from .checks import check_devkit, finish_md5
from .inputs import Inputs, file_entry
from .report import BuildResult
from .resume import ResumePoint, output_files

log = logging.getLogger(__name__)


def finish(
    config: BuildConfig,
    layout: SourceLayout,
    inputs: Inputs,
    synsets: Synsets,
    point: ResumePoint,
    results: dict[str, ShardResult],
    state: OutputState,
    journal: Journal,
    started: float,
    phases: dict[str, float] | None = None,
) -> BuildResult:
    """Check the MD5s and the devkit, keep the original sizes, write the manifest (with
    ``phases``, the seconds each earlier phase took), drop what it makes redundant."""
    finishing = time.perf_counter()
    finish_md5(config, layout, state, inputs.md5_pending, inputs.download_of, journal)
    if inputs.devkit is not None:
        if not inputs.devkit.done():
            log.info("waiting for the devkit check of the validation labels")
        inputs.validation_labels = check_devkit(inputs.devkit)
    if config.resizes:
        _keep_original_sizes(config, state, results)
    manifest = build_manifest(config, layout, inputs, synsets, results)
    now = time.perf_counter()
    manifest = replace(
        manifest,
        timings=timings(config, point, results, phases or {}, now - finishing, now - started),
    )
    write_manifest(config.output, manifest)
    journal.remove()
    state.remove_parts()  # joined into the formats' files
    state.remove_spill()  # the Parquet files' images, read into the shards
    return summary(config, inputs, point, results, manifest, started)


def _keep_original_sizes(
    config: BuildConfig, state: OutputState, results: dict[str, ShardResult]
) -> None:
    """Each split's original sizes, from the parts its shards' workers wrote."""
    shards: dict[str, list[str]] = {}
    for name, result in sorted(results.items()):
        if config.formats[0] in result.outputs:  # the group that kept them
            shards.setdefault(result.split, []).append(name)
    for split, names in shards.items():
        state.join_sizes(split, names)


def timings(
    config: BuildConfig,
    point: ResumePoint,
    results: dict[str, ShardResult],
    phases: dict[str, float],
    finishing: float,
    total: float,
) -> dict[str, Any]:
    """The manifest's record of the run that finished the build: seconds per phase (this
    run's only, when it resumed an earlier one), and what ran them."""
    seconds = {**phases, "finish": finishing, "total": total}
    return {
        "seconds": {name: round(value, 3) for name, value in seconds.items()},
        "executor": config.executor,
        "workers": config.workers,
        "shards_written": len(results) - len(point.done),
        "shards_reused": len(point.done),
    }


def summary(
    config: BuildConfig,
    inputs: Inputs,
    point: ResumePoint,
    results: dict[str, ShardResult],
    manifest: Manifest,
    started: float,
) -> BuildResult:
    done = point.done
    new = [r for k, r in results.items() if k not in done]
    fresh = [r for r in new if config.formats[0] in r.outputs]  # each image once
    side_files = sum(len(f.get("side_files", ())) for f in manifest.formats.values())
    return BuildResult(
        output=config.output,
        images={s: len(i) for s, i in inputs.indexes.items()},
        shards_written=len(new),
        shards_reused=len(done),
        reencoded=manifest.reencoded,
        skipped=manifest.skipped,
        warnings=inputs.warnings,
        seconds=time.perf_counter() - started,
        bytes_in=sum(r.bytes_in for r in fresh),
        images_written=sum(r.images for r in fresh),
        files_written=sum(output_files(r) for r in new) + side_files,
        files_reused=sum(output_files(r) for r in done.values()),
        manifest=manifest,
        store_index=(
            sum(i.requests for i in inputs.indexes.values()),
            sum(i.bytes_fetched for i in inputs.indexes.values()),
        ),
        store_images=(sum(r.requests for r in new), sum(r.bytes_fetched for r in new)),
        store_writes=(
            sum(r.writes for r in new) + tally_writes()[0],
            sum(r.bytes_stored for r in new) + tally_writes()[1],
        ),
    )


def build_manifest(
    config: BuildConfig,
    layout: SourceLayout,
    inputs: Inputs,
    synsets: Synsets,
    results: dict[str, ShardResult],
) -> Manifest:
    ordered = [results[k] for k in sorted(results)]
    # Every image passes through each plan group; count and list it once, from one group.
    primary = [r for r in ordered if config.formats[0] in r.outputs]
    labels = read_bytes(config.output / LABELS_TXT)
    if labels is None:
        raise DataError(f"{config.output / LABELS_TXT}: missing (written at the build's start)")
    return Manifest(
        tool={"name": "imagenet-prep", "version": __version__},
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        options=config.output_options(),
        source={
            "root": redact(str(layout.root)) if is_url(layout.root) else str(layout.root.resolve()),
            **layout.entry(),
            "archives": [{"name": p.name, "bytes": p.stat().st_size} for p in layout.archives()],
        },
        splits={
            split: _split_entry(config, split, index, synsets, primary)
            for split, index in inputs.indexes.items()
        },
        labels=file_entry(LABELS_TXT, labels, label_offset=config.label_offset),
        formats=_formats(config, inputs, ordered),
        downloads=inputs.downloads,
        warnings=inputs.warnings,
        reencoded=[
            {"image": origin, "reason": reason} for r in primary for origin, reason in r.reencoded
        ],
        skipped=inputs.skipped
        + [{"image": origin, "reason": reason} for r in primary for origin, reason in r.skipped],
        bounding_boxes=inputs.bounding_boxes,
        validation_bounding_boxes=inputs.validation_bounding_boxes,
        validation_labels=inputs.validation_labels,
    )


def _formats(
    config: BuildConfig, inputs: Inputs, ordered: list[ShardResult]
) -> dict[str, dict[str, Any]]:
    """Each format's section, from its ``finalize`` (which writes its files beside the shards)."""
    options = SinkOptions(out=config.output, label_offset=config.label_offset)
    formats = {}
    for name in config.formats:
        sink = get_sink(name, options)
        formats[name] = sink.finalize([r.outputs[name] for r in ordered if name in r.outputs])
        folder = sink.root.relative_to(config.output).as_posix() + "/"
        # A user's files that --overwrite left in the format's folder: named, not checked.
        mine = [path for path in inputs.foreign if path.startswith(folder)]
        if mine:
            formats[name]["foreign"] = mine
        formats[name].update(get_format(name).manifest_extra(config, inputs.indexes))
    return formats


def _split_entry(
    config: BuildConfig,
    split: str,
    index: SplitIndex,
    synsets: Synsets,
    primary: list[ShardResult],
) -> dict[str, Any]:
    """A split's counts. The test split has no classes (its labels are all -1), so its entry
    has no ``classes`` and ``per_class``."""
    split_results = [r for r in primary if r.split == split]
    entry: dict[str, Any] = {
        "images": len(index),
        "written": sum(r.images for r in split_results),
        "skipped": sum(len(r.skipped) for r in split_results),
        "bytes": index.total_bytes(),
    }
    if split != "test":
        per_class: dict[str, int] = {}
        for label in index.labels:
            wnid = synsets.wnids[label]
            per_class[wnid] = per_class.get(wnid, 0) + 1
        entry["classes"] = len(per_class)
        entry["per_class"] = dict(sorted(per_class.items()))
    entry["shards"] = config.shards(split)
    entry["ignored_inputs"] = len(index.ignored)
    return entry
