"""Phase 2, resume: the shard plans, which shards an earlier run finished, what is left.

A shard is finished when the journal has its line and its files are in place. The shards
of a split whose archives changed since are struck first, and the disk is checked.
:func:`planned_files` names every file the build may write (recorded for ``--overwrite``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from ..config import BuildConfig
from ..formats import get_format, get_sink
from ..formats.base import SinkOptions
from ..fsutil import file_size, sizes_under
from ..labels import Synsets
from ..manifest import MANIFEST, Journal, OutputState, RecordedSources, ShardResult
from ..outdir import BOX_CSV, LABELS_TXT, VALIDATION_BOX_CSV, check_disk, disk_need
from ..plan import ShardSpec, plan_split
from ..sources import SourceLayout, SplitIndex
from ..storage import is_url
from .checks import of_split

log = logging.getLogger(__name__)

#: The shards to write: per plan group, its formats and its shards.
Plans = list[tuple[tuple[str, ...], list[ShardSpec]]]


@dataclass
class ResumePoint:
    """Where the build starts: its plans, the shards already finished, the work they did."""

    plans: Plans
    done: dict[str, ShardResult]
    groups: dict[str, int]  # per split: its plan groups (an image passes through each)
    done_images: float
    done_bytes: float
    need: int  # bytes the build still writes, about


def shard_plans(config: BuildConfig, indexes: dict[str, SplitIndex]) -> Plans:
    """The shards to write: per split, the formats that share a shard count share the work.

    Each format counts its shards (:meth:`~imagenet_prep.formats.Format.shard_count`):
    TFRecords and ImageFolder by ``--train-shards``/``--validation-shards``, WebDataset by
    ``--shard-size``. Every plan cuts the same shuffled order, so a
    shard's name (``train-00003-of-00016``) identifies its group within a split.
    """
    plans = []
    for split, index in indexes.items():
        counts: dict[int, list[str]] = {}
        for fmt in config.formats:
            count = get_format(fmt).shard_count(config, split, index)
            counts.setdefault(count, []).append(fmt)
        for count, formats in counts.items():
            plans.append((tuple(formats), plan_split(split, len(index), count)))
    return plans


def share(result: ShardResult, groups: dict[str, int], amount: int) -> float:
    """A shard's part of its split's progress: ``amount`` over the split's plan groups."""
    return amount / groups[result.split]


def output_files(result: ShardResult) -> int:
    """The files a shard wrote: shard files and their indexes, one per image in folders
    (``files``; per class in ``classes`` in an earlier version's results)."""
    return sum(
        ("file" in o)
        + ("index" in o)
        + int(o.get("files", 0))
        + sum(c["count"] for c in o.get("classes", {}).values())
        for o in result.outputs.values()
    )


def output_bytes(result: ShardResult) -> int:
    return sum(
        int(o.get("bytes", 0)) + sum(c["bytes"] for c in o.get("classes", {}).values())
        for o in result.outputs.values()
    )


def finished(
    config: BuildConfig,
    formats: tuple[str, ...],
    spec: ShardSpec,
    records: dict[str, ShardResult],
    sizes: Callable[[str], int | None],
) -> ShardResult | None:
    """The recorded result of a shard finished by an earlier run, if its outputs are all there
    (``sizes`` gives a file's size, None for a missing one)."""
    result = records.get(spec.name)
    if result is None or set(result.outputs) != set(formats):
        return None
    for output in result.outputs.values():
        if "file" in output and sizes(output["file"]) != output["bytes"]:
            return None
    return result


def output_sizes(out: Path) -> Callable[[str], int | None]:
    """The size of a file of OUT by its relative name: asked of the file system, or for a
    store looked up in one listing of the output's prefix."""
    if is_url(out):
        listed = sizes_under(out)
        return listed.get
    return lambda name: file_size(out / name)


def planned_files(
    config: BuildConfig,
    indexes: dict[str, SplitIndex],
    synsets: Synsets,
    plans: Plans,
) -> Iterator[str]:
    """Every file the build may write, relative to OUT (see
    :meth:`~imagenet_prep.manifest.OutputState.record_outputs`)."""
    yield from (MANIFEST, LABELS_TXT, BOX_CSV)
    if config.validation_boxes:
        yield VALIDATION_BOX_CSV
    options = SinkOptions(out=config.output, dali_index=config.dali_index)
    for name in config.formats:
        yield from get_sink(name, options).side_files(list(indexes))
    for formats, specs in plans:
        index = indexes[specs[0].split]
        for name in formats:
            sink = get_sink(name, options)
            for spec in specs:
                images = (  # a test image has no class (label -1): no wnid
                    (synsets.wnids[index.labels[i]] if index.labels[i] >= 0 else "", index.names[i])
                    for i in range(spec.start, spec.stop)
                )
                yield from sink.planned_files(spec, images)


def forget_changed_sources(
    config: BuildConfig, layout: SourceLayout, state: OutputState, journal: Journal
) -> None:
    """Strike from the journal the shards of a split whose archives changed since they were made.

    A resume takes the recorded options, which know the archives by name and size, as proof
    that OUT holds the same build; a new download of the same size (another modification
    time) would otherwise keep shards made from the old file. The archives of each split are
    recorded in OUT (the training shards also carry the boxes).
    """
    now: dict[str, tuple[tuple[str, int, int], ...]] = {}
    for split in config.splits:
        boxes = split == "train" or (split == "validation" and config.validation_boxes)
        paths = dict.fromkeys([*layout.files(split), layout.boxes.get(split) if boxes else None])
        files = [(p.name, p.stat()) for p in paths if p is not None and p.is_file()]
        if files:
            now[split] = tuple((name, st.st_size, st.st_mtime_ns) for name, st in files)
    recorded = state.read_sources().splits
    for split, identity in now.items():
        if recorded.get(split) not in (None, identity):
            log.warning(
                "the %s archives changed since the earlier run (%s): its shards will be made again",
                split,
                ", ".join(name for name, _size, _mtime in identity),
            )
            journal.forget(partial(of_split, split))
    state.write_sources(RecordedSources({**recorded, **now}))


def resume(
    config: BuildConfig,
    layout: SourceLayout,
    indexes: dict[str, SplitIndex],
    synsets: Synsets,
    state: OutputState,
    journal: Journal,
) -> ResumePoint:
    """The plans and the shards already finished; checks the disk."""
    forget_changed_sources(config, layout, state, journal)
    records = journal.load()
    plans = shard_plans(config, indexes)
    done: dict[str, ShardResult] = {}
    sizes = output_sizes(config.output) if records else (lambda _name: None)
    for formats, specs in plans:
        for spec in specs:
            result = finished(config, formats, spec, records, sizes)
            if result is not None:
                done[spec.name] = result
    # An image passes through each plan group of its split (formats with their own shard
    # counts); progress counts it once, a share per group.
    groups = {split: sum(specs[0].split == split for _f, specs in plans) for split in indexes}
    done_images = sum(share(r, groups, r.images + len(r.skipped)) for r in done.values())
    done_bytes = sum(share(r, groups, r.bytes_in) for r in done.values())
    if done:
        log.info(
            "resuming: %s of %s images already written (%s output files kept)",
            f"{round(done_images):,}",
            f"{sum(len(index) for index in indexes.values()):,}",
            f"{sum(output_files(r) for r in done.values()):,}",
        )
    done_output = sum(output_bytes(r) for r in done.values())
    check_disk(config, indexes, done_output)
    return ResumePoint(
        plans, done, groups, done_images, done_bytes, disk_need(config, indexes, done_output)
    )
