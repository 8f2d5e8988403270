"""Phase 3, the shards: the shard jobs left, mapped over the executor, each journaled as it ends."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

from ..config import BuildConfig
from ..executors import Executor
from ..formats.base import SinkOptions
from ..labels import Synsets
from ..manifest import PARTS_DIR, Journal, OutputState, ShardResult
from ..plan import shuffled_order
from ..resize import ResizeSpec
from ..worker import ShardJob, process_shards
from .inputs import Inputs
from .report import Reporter
from .resume import ResumePoint, share

# Consecutive small shards go to a worker together, up to about this many images.
TASK_IMAGES = 256
# A job with more images than this goes to a worker of this machine in a local file, not
# pickled: the jobs waiting for a worker then cost the build no memory (a WebDataset shard
# of 64x48 images holds 433,000, 15 MB of columns; four wait or run at a time).
SPILL_IMAGES = 16384


def batched(jobs: Iterator[ShardJob], images: int) -> Iterator[tuple[ShardJob, ...]]:
    """Group consecutive jobs until a group holds at least ``images`` images.

    >>> from pathlib import Path
    >>> from imagenet_prep.plan import plan_split
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


def shard_jobs(
    config: BuildConfig,
    inputs: Inputs,
    synsets: Synsets,
    point: ResumePoint,
    spill_to: Path | None = None,
) -> Iterator[ShardJob]:
    """A job for every shard not finished yet, in plan order; a job of more than
    :data:`SPILL_IMAGES` images carries them in a file of the folder ``spill_to`` (when given:
    the workers share this machine's disk)."""
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
    indexes = inputs.indexes
    orders = {split: shuffled_order(len(index), config.seed) for split, index in indexes.items()}
    for formats, specs in point.plans:
        for spec in specs:
            if spec.name in point.done:
                continue
            order = orders[spec.split]
            refs = indexes[spec.split].block(
                order[spec.start : spec.stop], synsets, inputs.boxes.get(spec.split)
            )
            if spill_to is not None and len(refs) > SPILL_IMAGES:
                refs = refs.spill(spill_to / f"{spec.name}.block")
            yield ShardJob(
                spec=spec,
                refs=refs,
                formats=formats,
                options=options,
                skip_bad=config.on_error == "skip",
                decode_check=config.decode_check,
                resize=resize,
                max_pixels=config.max_pixels,
                # Once per image: by the group of the first format, the manifest's too.
                original_sizes=resize is not None and config.formats[0] in formats,
            )


def write_shards(
    config: BuildConfig,
    inputs: Inputs,
    synsets: Synsets,
    point: ResumePoint,
    executor: Executor,
    reporter: Reporter,
    journal: Journal,
    state: OutputState,
) -> dict[str, ShardResult]:
    """Write every shard left; the results of all shards (earlier ones included), by name."""
    results = dict(point.done)
    reporter.start(
        sum(len(index) for index in inputs.indexes.values()),
        sum(index.total_bytes() for index in inputs.indexes.values()),
        round(point.done_images),
        round(point.done_bytes),
    )
    # A plan's shard names are unique (another plan has another count): one file a job.
    spill_to = state.local / PARTS_DIR / "blocks" if executor.same_machine else None
    try:
        jobs = shard_jobs(config, inputs, synsets, point, spill_to)
        for batch in executor.map_unordered(process_shards, batched(jobs, TASK_IMAGES)):
            journal.extend(batch)
            for result in batch:
                results[result.shard] = result
                reporter.update(
                    share(result, point.groups, result.images + len(result.skipped)),
                    share(result, point.groups, result.bytes_in),
                )
    finally:
        reporter.close()
        journal.close()
        if spill_to is not None:  # the files of jobs that never ran (a failed run)
            shutil.rmtree(spill_to, ignore_errors=True)
    return results
